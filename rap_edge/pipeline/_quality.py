"""Face quality: how much an aligned chip can be trusted, for abstaining on poor faces.

A match just above the threshold is as likely a mistake as a name when the face is small,
blurred or dim: the descriptor of a poor chip drifts towards everyone's. The quality of a
face is the least of three factors, each its measure over a reference value, capped at 1:

* size: the distance between the outer eye corners in frame pixels, over ``eye_px``;
* sharpness: the variance of the chip's grey Laplacian, over ``sharpness``;
* contrast: the standard deviation of the chip's grey levels, over ``contrast``.

A face with quality below 1 is *low quality*. ``rap-edge calibrate thresholds`` measures the
false-accept rate of low-quality faces (the labelled set's degraded copies, scored against
the clean photos of other identities) and writes the least threshold at which it meets the
same target as the main threshold (``low_quality_threshold``; never below the main one). A
low-quality face named between the two thresholds is ``uncertain`` instead: the pipeline
abstains rather than guesses. The reference values were read off the calibration fold's
near-threshold faces (about their lowest quarter), not tuned on any evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["QUALITY_REFERENCE", "face_quality"]

#: Reference values: a face at or above all three is of full quality (1.0).
QUALITY_REFERENCE = {"eye_px": 25.0, "sharpness": 30.0, "contrast": 20.0}


def face_quality(chip: npt.NDArray[np.uint8], landmarks: npt.ArrayLike) -> float:
    """The quality (0..1) of one face: its aligned chip and its 5 landmarks in frame pixels."""
    import cv2

    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    eye = float(np.linalg.norm(pts[0] - pts[2])) if len(pts) >= 3 else 0.0  # noqa: PLR2004
    grey = chip if chip.ndim == 2 else cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)  # noqa: PLR2004
    sharp = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    contrast = float(grey.std())
    ref = QUALITY_REFERENCE
    q = min(1.0, eye / ref["eye_px"], sharp / ref["sharpness"], contrast / ref["contrast"])
    return max(0.0, q) if np.isfinite(q) else 0.0
