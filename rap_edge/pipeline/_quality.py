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

__all__ = [
    "DENOISE_MAX_SIDE",
    "NOISY",
    "QUALITY_REFERENCE",
    "denoise",
    "denoise_if_grainy",
    "face_quality",
    "noise_ratio",
]

#: A frame whose noise is at least this share of its contrast is denoised before detection
#: (:func:`noise_ratio`). On the labelled set the clean photos reach 0.118 at most and the dim,
#: noisy copies start at 0.192; no other condition (JPEG, blur, tilt, far) passes 0.06.
NOISY = 0.15
#: Frames larger than this (longest side) are not denoised: non-local means would take over a
#: second on them.
DENOISE_MAX_SIDE = 1280

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


def noise_ratio(image: npt.NDArray[np.uint8]) -> float:
    """The frame's noise over its contrast: Immerkaer's noise estimate over the grey std.

    Immerkaer's estimate (the mean absolute response of a 3x3 kernel that cancels smooth
    image structure, scaled to a Gaussian sigma) reads fine texture as noise too, so it is
    divided by the frame's grey-level spread: a dark, grainy frame, whose noise is a large
    share of its little contrast, stands out from a sharp, textured one. Frames over 640 px
    are read at every n-th pixel (no averaging, which would hide the noise). About 0.5 ms.
    """
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image  # noqa: PLR2004
    step = max(1, -(-max(grey.shape[:2]) // 640))  # large frames: every step-th pixel
    g = np.asarray(grey[::step, ::step], np.float32)  # subsampling keeps per-pixel noise
    h, w = g.shape[:2]
    if h < 3 or w < 3:  # noqa: PLR2004
        return 0.0
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(g, -1, kernel)[1:-1, 1:-1]
    sigma = float(np.abs(r).sum()) * float(np.sqrt(np.pi / 2)) / (6 * (w - 2) * (h - 2))
    return float(sigma / max(float(g.std()), 1.0))


def denoise(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The frame after non-local means (strength 7, 5x5 patches, 9x9 search).

    About 40 ms at 330x330 and 80 ms at 640x480 on 2 cores (``bench/detect_passes.py``).
    """
    import cv2

    return np.asarray(cv2.fastNlMeansDenoisingColored(image, None, 7, 7, 5, 9), np.uint8)


def denoise_if_grainy(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8] | None:
    """The denoised frame if it is dark and grainy, else None.

    Dark and grainy: :func:`noise_ratio` at least :data:`NOISY`, and no side over
    :data:`DENOISE_MAX_SIDE`. The gate the pipeline and enrollment share.
    """
    if max(image.shape[:2]) > DENOISE_MAX_SIDE or noise_ratio(image) < NOISY:
        return None
    return denoise(image)
