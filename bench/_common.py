"""Small pieces the object and detector benches share."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from pathlib import Path


def frame_640x480(img: np.ndarray) -> np.ndarray:
    """``img`` scaled into the top-left of a black 640x480 frame, aspect kept."""
    scale = min(640 / img.shape[1], 480 / img.shape[0])
    small = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)))
    out = np.zeros((480, 640, 3), np.uint8)
    out[: small.shape[0], : small.shape[1]] = small
    return out


def write_report(report: dict[str, Any], out: Path) -> None:
    """Print the report as JSON and write it to ``out`` (its folder created)."""
    text = json.dumps(report, indent=1)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
