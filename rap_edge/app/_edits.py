"""Concept edits for a session: the one-face check, embedding at once, rollback on failure.

:class:`ConceptEditor` is where a concept is added, changed or forgotten for every front end
(the CLI, the demo, the live runtime and so the ROS node); :class:`~rap_edge.app.Session`
exposes it as ``add_concept``, ``update_concept``, ``remove_concept`` and ``enroll_unknown``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rap_edge.errors import ConceptNotFoundError, FaceCountError, InvalidInputError, RapEdgeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    import numpy.typing as npt

    from rap_edge.detect import Detection
    from rap_edge.interfaces import Concept
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FaceModels, ObjectModels, UnknownClusters

__all__ = ["MAX_IMAGES", "ConceptEditor"]

log = logging.getLogger("rap_edge")

MAX_IMAGES = 32  # reference images per edit


class ConceptEditor:
    """Edits of one memory, one at a time, each embedded at once or taken back.

    Args:
        memory: The memory to edit.
        models: The face models (the one-face check).
        embed: Embeds the memory's pending images with the encoders in use.
        edited: Called after every successful edit (names for the guard, votes forgotten).
        objects: The object models; with a detector, an object's reference photo is stored
            as the crop of the detected object (:meth:`ObjectModels.enrollment_crop`).
        load_objects: Without ``objects`` (objects off), called once on the first object
            photo for models to crop it with (None: none available, the photo stays whole).
    """

    def __init__(  # noqa: PLR0913 - the editor's collaborators
        self,
        memory: Memory,
        models: FaceModels,
        *,
        embed: Callable[[], object],
        edited: Callable[[], None],
        objects: ObjectModels | None = None,
        load_objects: Callable[[], ObjectModels | None] | None = None,
    ) -> None:
        self.memory = memory
        self.models = models
        self.objects = objects
        self._load_objects = load_objects
        self._embed = embed
        self._edited = edited
        self._edit = threading.Lock()  # one memory edit at a time

    def add(  # noqa: PLR0913 - the fields of a concept
        self,
        name: str,
        category: str,
        *,
        info: str = "",
        aliases: Sequence[str] = (),
        images: Sequence[npt.NDArray[np.uint8]] = (),
        files: Sequence[Path] = (),
        face: int | None = None,
        largest: bool = False,
        whole_image: bool = False,
    ) -> Concept:
        """Add a concept and embed its images now: the next frame can name it.

        Images of a face category (``person``, ``face``, ...) must each show exactly one face,
        or ``face`` / ``largest`` must pick one: the image is then stored as a crop around the
        chosen face, so that the face embedder (which enrols the largest face of a reference
        image) embeds that face and no other. Other categories' images go to the object
        embedder when objects are on (else they wait for ``memory embed-objects``); with an
        object detector each is stored as the square crop of the largest detected object of
        a class the category maps to (:meth:`ObjectModels.enrollment_crop`: a ``dog`` photo
        becomes the dog), and a photo without one is refused unless ``whole_image``. A
        category with no detector class, or no detector (window search), keeps the photo
        whole.

        Args:
            name: Unique name.
            category: ``person``, ``dog``, ``mug``, ...
            info: Free text about it.
            aliases: Other names.
            images: BGR uint8 photos (stored as PNG).
            files: Image files, stored as they are (after ``images``).
            face: In a photo with several faces, enrol the ``face``-th from the left (1 is the
                leftmost).
            largest: In a photo with several faces, enrol the largest.
            whole_image: An object's photos are stored and embedded whole, not cropped to
                the detected object.

        Raises:
            InvalidInputError: a bad field or image, a face image without a face, or one with
                several faces and no choice, an object photo without the object (and no
                ``whole_image``). Nothing is added then.
            ConflictError: the name is taken.
        """
        from rap_edge.pipeline import is_object_category

        memory = self.memory
        imgs = _check_images(images)
        _check_choice(face, largest=largest)
        _check_whole_image(whole_image)
        with self._edit, tempfile.TemporaryDirectory(prefix="rap-edge-edit-") as tmp:
            paths = _write_pngs(imgs, Path(tmp), name) + [Path(f) for f in files]
            labels = [""] * len(imgs) + [f" ({Path(f).name})" for f in files]
            if isinstance(category, str) and not is_object_category(category):
                if whole_image:
                    raise InvalidInputError(_WHOLE_IMAGE_FOR_OBJECTS)
                paths = self._one_face_each(
                    paths, labels, Path(tmp), name, face=face, largest=largest
                )
            elif isinstance(category, str) and not whole_image:
                paths = self._object_crops(paths, labels, Path(tmp), name, category)
            concept = memory.add(name, images=paths, category=category, info=info, aliases=aliases)
            try:
                self._embed()
            except BaseException:
                with contextlib.suppress(RapEdgeError):
                    memory.remove(concept.id)
                raise
            self._edited()
            return memory.get(concept.id)

    def update(  # noqa: PLR0913 - the fields of a concept
        self,
        ref: str,
        *,
        name: str | None = None,
        category: str | None = None,
        info: str | None = None,
        aliases: Sequence[str] | None = None,
        add_images: Sequence[npt.NDArray[np.uint8]] = (),
        add_files: Sequence[Path] = (),
        face: int | None = None,
        largest: bool = False,
        whole_image: bool = False,
    ) -> Concept:
        """Rename a concept, change its category, info or aliases, or add images.

        None leaves a field as it is. Added images (``add_images``, then the files
        ``add_files``) are embedded now. For a face concept each added photo follows the rule
        of :meth:`add`: one face, or ``face`` / ``largest`` picks one of several (stored as a
        crop around it), and a photo without a face is refused; a change into a face category
        requires a face in the old images too. For an object concept each added photo is
        cropped to the detected object as in :meth:`add` (in the new category's classes),
        unless ``whole_image``; the photos it already has stay as they are.

        Raises:
            ConceptNotFoundError: no such concept.
            InvalidInputError: a bad field or image, a face image without a face, or an
                object photo without the object (nothing changes then).
            ConflictError: the new name is taken, or an image is already the concept's.
        """
        from rap_edge.pipeline import is_object_category

        memory = self.memory
        imgs = _check_images(add_images)
        _check_choice(face, largest=largest)
        _check_whole_image(whole_image)
        if len(imgs) + len(add_files) > MAX_IMAGES:
            msg = f"at most {MAX_IMAGES} images per edit, got {len(imgs) + len(add_files)}"
            raise InvalidInputError(msg)
        with self._edit, tempfile.TemporaryDirectory(prefix="rap-edge-edit-") as tmp:
            old = memory.get(ref)
            new_category = old.category if category is None else category
            paths = _write_pngs(imgs, Path(tmp), old.name) + [Path(f) for f in add_files]
            labels = [""] * len(imgs) + [f" ({Path(f).name})" for f in add_files]
            if isinstance(new_category, str) and not is_object_category(new_category):
                if whole_image:
                    raise InvalidInputError(_WHOLE_IMAGE_FOR_OBJECTS)
                if is_object_category(old.category):  # becomes a face concept
                    self._require_faces(_read_images(rec.path for rec in old.images), old.name)
                paths = self._one_face_each(
                    paths, labels, Path(tmp), old.name, face=face, largest=largest
                )
            elif face is not None or largest:
                msg = "--face and --largest pick a face in a photo of a person; this is an object"
                raise InvalidInputError(msg)
            elif isinstance(new_category, str) and not whole_image:
                paths = self._object_crops(paths, labels, Path(tmp), old.name, new_category)
            added: list[int] = []
            updated = False
            try:
                if any(v is not None for v in (name, category, info, aliases)):
                    memory.update(old.id, name=name, category=category, info=info, aliases=aliases)
                    updated = True
                for path in paths:
                    added.append(memory.add_image(old.id, path).id)
                self._embed()
            except BaseException:
                self._undo_update(old, added, restore=updated)
                raise
            self._edited()
            return memory.get(old.id)

    def remove(self, ref: str) -> Concept:
        """Forget a concept (row, images, vectors); no later frame names it.

        Returns:
            The concept as it was.

        Raises:
            ConceptNotFoundError: no such concept.
        """
        memory = self.memory
        with self._edit:
            concept = memory.get(ref)
            memory.remove(concept.id)
            self._edited()
            return concept

    def remove_image(self, ref: str, image_id: int) -> Concept:
        """Remove one reference image of a concept (never its last one); re-decide live.

        Returns:
            The concept after the change.

        Raises:
            ConceptNotFoundError: no such concept, or the image is not one of its.
            InvalidInputError: the concept's only image (forget the concept instead).
        """
        memory = self.memory
        with self._edit:
            concept = memory.get(ref)
            if all(rec.id != image_id for rec in concept.images):
                msg = f"{concept.name} has no reference image {image_id}"
                raise ConceptNotFoundError(msg)
            if len(concept.images) == 1:
                msg = (
                    f"{concept.name}'s only photo cannot be removed; forget {concept.name} instead"
                )
                raise InvalidInputError(msg)
            memory.remove_image(image_id)
            self._edited()
            return memory.get(concept.id)

    def enroll_unknown(
        self,
        clusters: UnknownClusters,
        cluster: str,
        *,
        name: str,
        category: str = "person",
        info: str = "",
    ) -> tuple[Concept, int]:
        """Make an unknown-face cluster a concept from its best crops, then forget the cluster.

        The crops were cut around detected faces, so they are not checked for a face again
        (a tight crop can be too small for the detector; the embedder then uses it whole).

        Returns:
            The concept and how many crops it was enrolled from.
        """
        memory = self.memory
        crops = clusters.crop_paths(cluster)
        with self._edit:
            concept = memory.add(name, images=crops, category=category, info=info)
            try:
                self._embed()
            except BaseException:
                with contextlib.suppress(RapEdgeError):
                    memory.remove(concept.id)
                raise
            self._edited()
        clusters.forget(cluster)
        return memory.get(concept.id), len(crops)

    def _undo_update(self, old: Concept, added: list[int], *, restore: bool) -> None:
        """Best effort: take back the images added and the fields changed by a failed edit."""
        memory = self.memory
        try:
            for image_id in added:
                memory.remove_image(image_id)
            if restore:
                memory.update(
                    old.id,
                    name=old.name,
                    category=old.category,
                    info=old.info,
                    aliases=old.aliases,
                )
        except RapEdgeError:
            log.warning("undoing a failed edit of %s failed", old.id, exc_info=True)

    def _one_face_each(  # noqa: PLR0913
        self,
        paths: list[Path],
        labels: list[str],
        folder: Path,
        name: object,
        *,
        face: int | None,
        largest: bool,
    ) -> list[Path]:
        """Each reference photo of a face concept, with exactly the face to enrol.

        A photo with one face stays as it is; one with several is replaced by a crop around
        the face that ``face`` or ``largest`` picks (the face embedder enrols the largest face
        of a reference image, so the crop must make the chosen face the largest); a photo
        without a face, or with several and no choice, is refused. A file that cannot be
        decoded is left for the memory's own checks, which name it.
        """
        out: list[Path] = []
        for i, (path, label) in enumerate(zip(paths, labels, strict=True), 1):
            img = _decode(path)
            if img is None:
                out.append(path)
                continue
            dets = sorted(self.models.detect(img), key=lambda d: d.x1 + d.x2)
            if not dets:
                msg = (
                    f"{name!r}: no face found in image #{i}{label}; a face concept "
                    "needs photos that show the face (nothing was changed)"
                )
                raise FaceCountError(msg, image=i, faces=0, name=str(name))
            if len(dets) == 1:
                out.append(path)
                continue
            if face is None and not largest:
                msg = (
                    f"{name!r}: image #{i}{label} shows {len(dets)} faces; pick one "
                    f"with --face N (1..{len(dets)}, from the left) or --largest (nothing was "
                    "changed)"
                )
                raise FaceCountError(msg, image=i, faces=len(dets), name=str(name))
            if face is not None and face > len(dets):
                msg = (
                    f"{name!r}: image #{i}{label} shows {len(dets)} faces, so there "
                    f"is no face {face} (nothing was changed)"
                )
                raise InvalidInputError(msg)
            chosen = dets[face - 1] if face is not None else max(dets, key=_area)
            crop = self._crop_to(img, chosen)
            crop_path = folder / f"face-{i}-of-{path.stem[:40]}.png"
            out.append(_write_png(crop_path, crop, f"image #{i}: the face crop"))
        return out

    def _object_crops(
        self,
        paths: list[Path],
        labels: list[str],
        folder: Path,
        name: object,
        category: str,
    ) -> list[Path]:
        """Each reference photo of an object concept, cropped to the object to enrol.

        With an object detector a photo is replaced by the square crop of the largest
        detected object of a class ``category`` maps to (what the pipeline embeds for a
        detected box), so the object embedder embeds the dog and not the room around it; a
        photo without such an object is refused. Without a detector (window search), or for a
        category with no detector class (a warning is logged), the photos stay whole. A file
        the memory would refuse (unreadable, too small, too large) is refused first, with the
        memory's own message naming it.
        """
        if self.objects is None and self._load_objects is not None:
            self.objects, self._load_objects = self._load_objects(), None
        objects = self.objects
        if objects is None or objects.detector is None:
            return paths
        from rap_edge.pipeline._objects import detector_classes

        if not detector_classes(category, objects.detector.labels):
            log.warning(
                "%r: category %r has no detector class (see CATEGORY_CLASSES); its photos are "
                "enrolled whole",
                name,
                category,
            )
            return paths

        from rap_edge.memory._validate import check_image_file

        out: list[Path] = []
        for i, (path, label) in enumerate(zip(paths, labels, strict=True), 1):
            check_image_file(path)  # the memory's own checks first, naming the file
            img = _decode(path)
            if img is None:
                out.append(path)
                continue
            try:
                crop = objects.enrollment_crop(img, category, photo=f"image #{i}{label}")
            except InvalidInputError as err:
                msg = f"{name!r}: {err} (nothing was changed)"
                raise InvalidInputError(msg) from err
            crop_path = folder / f"object-{i}-of-{path.stem[:40]}.png"
            out.append(_write_png(crop_path, crop, f"image #{i}: the object crop"))
        return out

    def _crop_to(self, img: npt.NDArray[np.uint8], chosen: Detection) -> npt.NDArray[np.uint8]:
        """A crop of ``img`` whose largest detected face is ``chosen``.

        Wide margins first (context for the aligner); narrower when a neighbour's face would
        still be the largest in the crop.
        """
        h, w = img.shape[:2]
        bw, bh = chosen.x2 - chosen.x1, chosen.y2 - chosen.y1
        cx, cy = (chosen.x1 + chosen.x2) / 2, (chosen.y1 + chosen.y2) / 2
        for margin in (0.5, 0.3, 0.15):
            x1, x2 = max(0, int(chosen.x1 - margin * bw)), min(w, int(chosen.x2 + margin * bw) + 1)
            y1, y2 = max(0, int(chosen.y1 - margin * bh)), min(h, int(chosen.y2 + margin * bh) + 1)
            crop = np.ascontiguousarray(img[y1:y2, x1:x2])
            top = _largest(self.models.detect(crop))
            if top is not None and top.x1 <= cx - x1 <= top.x2 and top.y1 <= cy - y1 <= top.y2:
                return crop
        msg = "the chosen face cannot be cut out apart from its neighbours; use another photo"
        raise InvalidInputError(msg)

    def _require_faces(self, images: Sequence[npt.NDArray[np.uint8]], name: object) -> None:
        """Every image must show a face (the face embedder would use the whole image)."""
        missing = [i + 1 for i, img in enumerate(images) if not self.models.detect(img)]
        if missing:
            which = ", ".join(f"#{i}" for i in missing)
            msg = (
                f"{name!r}: no face found in image {which}; a face concept needs photos "
                "that show the face (nothing was changed)"
            )
            raise InvalidInputError(msg)

    # -- generation --------------------------------------------------------------------------


_WHOLE_IMAGE_FOR_OBJECTS = (
    "--whole-image keeps an object's or pet's whole photo; a person's photo is cut around the "
    "face (use --face N or --largest to pick one)"
)


def _check_whole_image(whole_image: object) -> None:
    if not isinstance(whole_image, bool):
        msg = f"whole_image must be true or false, got {whole_image!r}"
        raise InvalidInputError(msg)


def _check_choice(face: object, *, largest: bool) -> None:
    if face is not None and (isinstance(face, bool) or not isinstance(face, int) or face < 1):
        msg = f"face must be a whole number from 1 (the leftmost face), got {face!r}"
        raise InvalidInputError(msg)
    if face is not None and largest:
        msg = "give --face N or --largest, not both"
        raise InvalidInputError(msg)


def _area(d: Detection) -> float:
    return float((d.x2 - d.x1) * (d.y2 - d.y1))


def _largest(dets: Sequence[Detection]) -> Detection | None:
    from rap_edge.pipeline._faces import largest

    return largest(dets)


def _check_images(images: object) -> list[npt.NDArray[np.uint8]]:
    from rap_edge.sources import check_bgr_image

    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        msg = f"images must be a list of BGR images, got {type(images).__name__}"
        raise InvalidInputError(msg)
    if len(images) > MAX_IMAGES:
        msg = f"at most {MAX_IMAGES} images per edit, got {len(images)}"
        raise InvalidInputError(msg)
    return [check_bgr_image(img, f"image #{i + 1}") for i, img in enumerate(images)]


def _read_images(paths: Iterable[Path]) -> list[npt.NDArray[np.uint8]]:
    """Decode stored or given image files.

    A file that cannot be read is left out: the memory's own checks name it when it is added.
    """
    return [img for img in map(_decode, paths) if img is not None]


def _decode(path: Path) -> npt.NDArray[np.uint8] | None:
    """A photo as BGR, or None when it cannot be read or is refused.

    Its declared size is checked from the header before decoding: a decompression bomb is
    never decoded (the memory's own checks then name it).
    """
    from rap_edge.sources import normalize_frame, read_image_file

    try:
        return normalize_frame(read_image_file(Path(path)))
    except InvalidInputError:
        return None


def _write_png(path: Path, image: npt.NDArray[np.uint8], what: str) -> Path:
    """Write ``image`` as a PNG at ``path`` (``what`` names it if it cannot be encoded)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        msg = f"{what} could not be encoded as PNG"
        raise InvalidInputError(msg)
    path.write_bytes(buf.tobytes())
    return path


def _write_pngs(images: Sequence[npt.NDArray[np.uint8]], folder: Path, name: object) -> list[Path]:
    stem = "".join(ch if ch.isalnum() else "_" for ch in str(name))[:40] or "image"
    return [
        _write_png(folder / f"{stem}-{i + 1}.png", img, f"image #{i + 1}")
        for i, img in enumerate(images)
    ]
