"""Drawing recognitions on a frame (the CLI's ``--out`` video, the node's ``~/annotated``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from rap_edge.pipeline._types import FrameResult

__all__ = ["annotate"]

_COLOURS = {"known": (60, 200, 60), "unknown": (60, 60, 230), "uncertain": (0, 200, 230)}


def annotate(
    image: npt.NDArray[np.uint8], result: FrameResult, fps: float | None
) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` with each recognition's box, name or decision, score and track."""
    import cv2
    import numpy as np

    out = image.copy()
    thick = max(1, round(max(out.shape[:2]) / 400))
    scale = max(0.4, max(out.shape[:2]) / 1200)
    for r in result.recognitions:
        colour = _COLOURS[r.decision]
        x1, y1, x2, y2 = (round(v) for v in r.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        label = r.name if r.decision == "known" and r.name else r.decision
        if r.score is not None:
            label += f" {r.score:.2f}"
        label += f" #{r.track_id}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = max(th + 4, y1 - 4)
        cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty + 2), colour, -1)
        cv2.putText(
            out,
            label,
            (x1 + 2, ty - 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            thick,
            cv2.LINE_AA,
        )
    if fps is not None:
        cv2.putText(
            out,
            f"{fps:.1f} FPS",
            (8, int(30 * scale) + 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thick + 1,
            cv2.LINE_AA,
        )
    return np.asarray(out, dtype=np.uint8)
