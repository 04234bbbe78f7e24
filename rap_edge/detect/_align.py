"""Face alignment: dlib's aligned face chip rebuilt from 5 landmark points with OpenCV.

The face embedder expects the chip that ``dlib.get_face_chip(img, shape5, size, padding)`` cuts.
dlib fits, by least squares, a similarity transform (rotation, uniform scale, translation) from
a fixed 5-point template in chip coordinates to the 5 landmarks, then samples the image
bilinearly along that transform. This module does the same with ``cv2.warpAffine`` on a float32
copy of the image (a uint8 warp rounds differently on about half the pixels).

Geometry, as measured on dlib 20 (see :data:`TEMPLATE_5`):

* chip-normalised coordinates ``q`` run from 0 at the centre of the first chip pixel to 1 at the
  centre of the last one (pixel ``i`` is ``q = i / (size - 1)``);
* padding enters as ``q = (t + padding) / (1 + 2 * padding)`` where ``t`` is the template point
  for padding 0; the chip size does not change the fitted rectangle, only the sampling density;
* the fit maps template → landmarks (not landmarks → template) over all 5 points, equal weights.

KNOWN GAP (unresolved): the geometry matches dlib (mean offset of sampled coordinates < 1e-3 px on
obama.jpg) but the pixel sampling does not. When the chip shrinks the face by ~2x (the usual case:
a ~300 px face into 150 px), dlib does not sample bilinearly at the exact coordinates: on a float
coordinate ramp its samples scatter by +-0.5 px (std 0.29) around them, and its chips differ from
this bilinear warp by up to 60-90 grey levels (only 29-53 % of pixels within 1 level; descriptor
cosine 0.998-0.9996 on the 4 check photos). Neither cv2.pyrDown + warp nor nearest-neighbour
reproduced it; the resampling still has to be measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["TEMPLATE_5", "align_face", "chip_transform"]

# Template of dlib's 5-point landmark model (order: eye corners 0-1, eye corners 2-3, nose 4) in
# chip-normalised coordinates at padding 0. MEASURED, not copied: landmarks that are an exact
# similarity image of a candidate template (scaled by 1e6 so dlib's integer points lose
# nothing) were fed to ``dlib.get_face_chip_details``; mapping them back through the returned
# rect/angle gives the template dlib fits to, iterated to a fixed point and averaged over 30
# random similarities (spread 3e-7). With this template, a least-squares similarity fit
# reproduces dlib's rect and angle to <= 5e-5 (relative) for landmarks within a few chip pixels
# of a face shape. ``tests/export/test_align.py::measure_template`` re-measures it.
TEMPLATE_5: np.ndarray = np.array(
    [
        [0.859528, 0.213413],
        [0.645990, 0.228959],
        [0.120706, 0.213584],
        [0.334040, 0.229141],
        [0.490137, 0.627957],
    ],
    dtype=np.float64,
)
TEMPLATE_5.setflags(write=False)


def _check_landmarks(landmarks: npt.ArrayLike) -> np.ndarray:
    pts = np.asarray(landmarks)
    if pts.shape != (5, 2):
        msg = f"landmarks must have shape (5, 2) (dlib's 5-point order), got {pts.shape}"
        raise InvalidInputError(msg)
    if not (np.issubdtype(pts.dtype, np.floating) or np.issubdtype(pts.dtype, np.integer)):
        msg = f"landmarks must be numeric, got dtype {pts.dtype}"
        raise InvalidInputError(msg)
    pts = pts.astype(np.float64)
    if not np.isfinite(pts).all():
        msg = "landmarks must be finite"
        raise InvalidInputError(msg)
    if np.ptp(pts, axis=0).max() <= 0:
        msg = "landmarks are all at one point; no transform fits them"
        raise InvalidInputError(msg)
    return pts


def chip_transform(
    landmarks: npt.ArrayLike, *, size: int = 150, padding: float = 0.25
) -> np.ndarray:
    """Affine matrix mapping chip pixels to image pixels, as dlib's ``get_face_chip_details``.

    Args:
        landmarks: [5, 2] points (x, y in pixels) in dlib's 5-point order.
        size: Side of the square chip in pixels.
        padding: Margin around the template, as a fraction of the template's extent.

    Returns:
        A float64 [2, 3] matrix ``M`` with ``image_xy = M @ (col, row, 1)``.

    Raises:
        InvalidInputError: if the landmarks are not finite [5, 2] numbers, or size or padding
            is out of range.
    """
    pts = _check_landmarks(landmarks)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:  # noqa: PLR2004
        msg = f"size must be an integer >= 2, got {size!r}"
        raise InvalidInputError(msg)
    if not np.isfinite(padding) or padding < 0:
        msg = f"padding must be a finite number >= 0, got {padding!r}"
        raise InvalidInputError(msg)
    src = (TEMPLATE_5 + padding) / (1.0 + 2.0 * padding)  # chip-normalised, 0..1
    # Least-squares similarity src -> pts: pts ~ [[a, -b], [b, a]] @ src + (tx, ty).
    n = src.shape[0]
    design = np.zeros((2 * n, 4))
    design[0::2, 0] = src[:, 0]
    design[0::2, 1] = -src[:, 1]
    design[0::2, 2] = 1.0
    design[1::2, 0] = src[:, 1]
    design[1::2, 1] = src[:, 0]
    design[1::2, 3] = 1.0
    a, b, tx, ty = np.linalg.lstsq(design, pts.reshape(-1), rcond=None)[0]
    step = 1.0 / (size - 1)  # chip pixel i sits at q = i / (size - 1)
    return np.array([[a * step, -b * step, tx], [b * step, a * step, ty]], dtype=np.float64)


def align_face(
    image_bgr: np.ndarray, landmarks: npt.ArrayLike, *, size: int = 150, padding: float = 0.25
) -> np.ndarray:
    """Cut the aligned face chip that ``dlib.get_face_chip`` cuts, from 5 landmark points.

    Args:
        image_bgr: HxWx3 uint8 image (BGR; the channels are warped independently, so RGB in
            gives RGB out).
        landmarks: [5, 2] points (x, y in pixels) in dlib's 5-point order, as
            ``shape_predictor_5_face_landmarks`` returns them.
        size: Side of the square chip in pixels (150 for dlib's face ResNet).
        padding: Margin around the template, as a fraction of its extent (0.25 for the ResNet).

    Returns:
        The chip, uint8 [size, size, 3], same channel order as the input. Pixels that fall
        outside the image are black.

    Raises:
        InvalidInputError: if the image is not HxWx3 uint8, or the landmarks, size or padding
            are invalid.
    """
    if image_bgr.dtype != np.uint8:
        msg = f"image must be uint8, got {image_bgr.dtype}"
        raise InvalidInputError(msg)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or 0 in image_bgr.shape:  # noqa: PLR2004
        msg = f"image must be HxWx3, got shape {image_bgr.shape}"
        raise InvalidInputError(msg)
    matrix = chip_transform(landmarks, size=size, padding=padding)
    import cv2

    # Warp only the part of the image the chip samples (its corners' bounding box plus a pixel
    # for bilinear taps): converting a whole large frame to float32 costs more than the warp.
    corners = (
        matrix
        @ np.array(
            [[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]],
            dtype=np.float64,
        ).T
    )
    h, w = image_bgr.shape[:2]
    x0 = int(np.clip(np.floor(corners[0].min()) - 1, 0, w - 1))
    y0 = int(np.clip(np.floor(corners[1].min()) - 1, 0, h - 1))
    x1 = int(np.clip(np.ceil(corners[0].max()) + 2, x0 + 1, w))
    y1 = int(np.clip(np.ceil(corners[1].max()) + 2, y0 + 1, h))
    matrix = matrix.copy()
    matrix[:, 2] -= (x0, y0)
    chip = cv2.warpAffine(
        image_bgr[y0:y1, x0:x1].astype(np.float32),
        matrix,
        (int(size), int(size)),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0.0, 0.0, 0.0),
    )
    return np.clip(np.rint(chip), 0, 255).astype(np.uint8)
