"""`run --out`: frames of another size than the first are letterboxed, not stretched."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from rap_edge.cli._run import _letterbox, _Writer
from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path


def test_letterbox_keeps_the_aspect_with_black_bars() -> None:
    wide = np.full((100, 400, 3), 200, np.uint8)  # 4:1 into a 200x200 frame: 200x50
    out = _letterbox(wide, (200, 200))
    assert out.shape == (200, 200, 3)
    assert (out[:70] == 0).all() and (out[130:] == 0).all()
    assert (out[80:120] == 200).all()
    tall = np.full((300, 30, 3), 50, np.uint8)  # into 200x100: 10x100, centred
    out = _letterbox(tall, (200, 100))
    assert (out[:, :90] == 0).all() and (out[:, 110:] == 0).all()
    assert (out[:, 96:104] == 50).all()
    assert _letterbox(np.full((1, 1, 3), 9, np.uint8), (4, 2)).shape == (2, 4, 3)


def test_a_folder_of_mixed_sizes_is_written_at_the_first_size(tmp_path: Path) -> None:
    path = tmp_path / "out.avi"
    writer = _Writer(path, 5.0)
    writer.write(np.full((120, 160, 3), 255, np.uint8))
    writer.write(np.full((120, 480, 3), 255, np.uint8))  # 4:1 -> 160x40, bars above and below
    writer.close()
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 2
    assert all(f.shape == (120, 160, 3) for f in frames)
    second = frames[1].astype(int)
    assert second[:30].mean() < 20 and second[90:].mean() < 20  # the bars (JPEG-coded)
    assert second[50:70].mean() > 235


def test_an_output_that_cannot_be_a_video_is_refused_before_any_frame(tmp_path: Path) -> None:
    for bad in (tmp_path / "out", tmp_path / "out.png", tmp_path / "missing" / "out.mp4"):
        with pytest.raises(InvalidInputError, match=r"use \.mp4 or \.avi in an existing folder"):
            _Writer(bad, 5.0)
    assert list(tmp_path.iterdir()) == []
    _Writer(tmp_path / "OUT.MP4", 5.0).close()  # nothing opened until the first frame
