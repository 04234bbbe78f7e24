"""Labelled face sets: threshold calibration and the enroll-then-recognise evaluation.

Folder format (``DIR``):

* ``DIR/<identity>/*.jpg`` — photos of one person each (any image format); the first photo(s)
  in natural order are enrolled, the rest are test photos;
* ``DIR/_distractors/*.jpg`` — faces of people who are never enrolled (must come out unknown);
* ``DIR/conditions/<name>/`` — optional degraded copies in the same format (far away, dim,
  blurred, ...); they are tested against the enrollment of the clean set.

Scoring, per test photo: the set of names recognised as ``known`` in it. The photo's identity
in that set is a true positive; every other name is a false positive for that name (a distractor
photo's names are all false positives). A distractor photo is rejected when no face in it is
named. The confusion table counts one outcome per photo: the right name, else a wrong name,
else ``uncertain``, else ``unknown`` (faces, none named), else ``no face``.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rap_edge.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    import numpy.typing as npt

    from rap_edge.pipeline._faces import FaceModels
    from rap_edge.pipeline._pipeline import PipelineConfig
    from rap_edge.pipeline._scoring import Thresholds

__all__ = [
    "DISTRACTORS",
    "EvalReport",
    "LabelledSet",
    "PipelineRecognizer",
    "Recognizer",
    "calibrate_threshold",
    "evaluate",
    "face_vectors",
    "score",
]

DISTRACTORS = "_distractors"
CONDITIONS = "conditions"
NO_FACE = "no face"


@dataclass
class LabelledSet:
    """A labelled folder (see the module docstring)."""

    root: Path
    identities: dict[str, list[Path]]
    distractors: list[Path]

    @classmethod
    def load(cls, root: str | Path) -> LabelledSet:
        """Read the folder layout.

        Raises:
            InvalidInputError: if the folder is missing or holds fewer than two identities.
        """
        from rap_edge.sources import list_images

        base = Path(root).expanduser()
        if not base.is_dir():
            msg = f"{base}: labelled folder not found (format: DIR/<identity>/*.jpg)"
            raise InvalidInputError(msg)
        identities = {
            p.name: list_images(p)
            for p in sorted(base.iterdir())
            if p.is_dir()
            and p.name not in {DISTRACTORS, CONDITIONS}
            and not p.name.startswith(".")
        }
        identities = {k: v for k, v in identities.items() if v}
        if len(identities) < 2:  # noqa: PLR2004
            msg = (
                f"{base}: needs at least two identity folders with photos "
                f"(found {len(identities)}); format DIR/<identity>/*.jpg"
            )
            raise InvalidInputError(msg)
        d = base / DISTRACTORS
        return cls(base, identities, list_images(d) if d.is_dir() else [])

    def conditions(self) -> dict[str, LabelledSet]:
        """The degraded copies under ``conditions/``, by name."""
        folder = self.root / CONDITIONS
        if not folder.is_dir():
            return {}
        return {p.name: LabelledSet.load(p) for p in sorted(folder.iterdir()) if p.is_dir()}

    def split(
        self, enroll_per_identity: int
    ) -> tuple[dict[str, list[Path]], list[tuple[Path, str | None]]]:
        """(photos to enroll per identity, test photos with their identity; None: distractor).

        Raises:
            InvalidInputError: if ``enroll_per_identity`` is below 1.
        """
        if enroll_per_identity < 1:
            msg = f"--enroll-per-identity must be at least 1, got {enroll_per_identity}"
            raise InvalidInputError(msg)
        enroll = {k: v[:enroll_per_identity] for k, v in self.identities.items()}
        tests: list[tuple[Path, str | None]] = [
            (p, k) for k, v in self.identities.items() for p in v[enroll_per_identity:]
        ]
        tests += [(p, None) for p in self.distractors]
        return enroll, tests

    def tests_like(
        self, clean: LabelledSet, enroll_per_identity: int
    ) -> list[tuple[Path, str | None]]:
        """This (degraded) set's test photos, minus the copies of ``clean``'s enrolled ones.

        Photos whose identity ``clean`` does not enroll are skipped.
        """
        enrolled = {
            (k, p.stem) for k, v in clean.identities.items() for p in v[:enroll_per_identity]
        }
        tests: list[tuple[Path, str | None]] = [
            (p, k)
            for k, v in self.identities.items()
            if k in clean.identities
            for p in v
            if (k, p.stem) not in enrolled
        ]
        return tests + [(p, None) for p in self.distractors]


class Recognizer(Protocol):
    """Something that enrolls identities from photos and names the faces in a photo."""

    def enroll(self, identities: dict[str, list[Path]]) -> None:
        """Enroll each identity from its photos."""
        ...

    def recognize(self, photo: Path) -> list[str]:
        """One label per face found: the identity's name, ``unknown`` or ``uncertain``."""
        ...


@dataclass
class EvalReport:
    """What :func:`evaluate` measured (all counts are photos)."""

    per_identity: dict[str, dict[str, float]] = field(default_factory=dict)
    precision: float = 0.0
    recall: float = 0.0
    distractor_rejection: float | None = None
    tests: int = 0
    distractors: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    no_face: int = 0
    unreadable: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "distractor_rejection": self.distractor_rejection,
            "tests": self.tests,
            "distractors": self.distractors,
            "no_face": self.no_face,
            "unreadable": self.unreadable,
            "per_identity": self.per_identity,
            "confusion": self.confusion,
        }


def score(
    tests: Sequence[tuple[Path, str | None]],
    predictions: Sequence[list[str] | None],
    identities: Iterable[str],
) -> EvalReport:
    """Metrics from each test photo's labels (None: the photo could not be read)."""
    names = list(identities)
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    total: Counter[str] = Counter()
    confusion: dict[str, Counter[str]] = {}
    rep = EvalReport()
    rejected = 0
    for (_, truth), labels in zip(tests, predictions, strict=True):
        named = {lab for lab in labels or () if lab in names}
        if truth is None:
            rep.distractors += 1
            rejected += not named
        else:
            total[truth] += 1
            tp[truth] += truth in named
        for n in named - {truth}:
            fp[n] += 1
        if labels is None:
            rep.unreadable += 1
            outcome = "unreadable"
        elif truth in named:
            outcome = str(truth)
        elif named:
            outcome = min(named)
        elif "uncertain" in labels:
            outcome = "uncertain"
        elif labels:
            outcome = "unknown"
        else:
            outcome = NO_FACE
            rep.no_face += 1
        confusion.setdefault(truth or DISTRACTORS, Counter())[outcome] += 1
    rep.tests = len(tests)
    for n in names:
        prec = tp[n] / (tp[n] + fp[n]) if tp[n] + fp[n] else float("nan")
        rec = tp[n] / total[n] if total[n] else float("nan")
        rep.per_identity[n] = {
            "tests": total[n],
            "true_pos": tp[n],
            "false_pos": fp[n],
            "precision": prec,
            "recall": rec,
        }
    all_tp, all_fp, all_n = sum(tp.values()), sum(fp.values()), sum(total.values())
    rep.precision = all_tp / (all_tp + all_fp) if all_tp + all_fp else float("nan")
    rep.recall = all_tp / all_n if all_n else float("nan")
    rep.distractor_rejection = rejected / rep.distractors if rep.distractors else None
    rep.confusion = {k: dict(v) for k, v in confusion.items()}
    return rep


def evaluate(
    recognizer: Recognizer,
    labelled: LabelledSet,
    *,
    enroll_per_identity: int = 1,
    tests: Sequence[tuple[Path, str | None]] | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> EvalReport:
    """Enroll the first photo(s) of each identity, recognise the rest and the distractors.

    ``tests`` replaces the clean set's test photos (a degraded condition's); the enrollment is
    always from ``labelled``.
    """
    enroll, own = labelled.split(enroll_per_identity)
    recognizer.enroll(enroll)
    todo = own if tests is None else list(tests)
    wrap = progress or (lambda x: x)
    predictions: list[list[str] | None] = []
    for path, _ in wrap(todo):
        try:
            predictions.append(recognizer.recognize(path))
        except InvalidInputError:
            predictions.append(None)
    return score(todo, predictions, enroll)


def _read(path: Path) -> npt.NDArray[np.uint8]:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        msg = f"{path}: cannot read the image"
        raise InvalidInputError(msg)
    return np.asarray(img, dtype=np.uint8)


class PipelineRecognizer:
    """rap-edge's face pipeline as a :class:`Recognizer` (a fresh memory in a temp folder)."""

    def __init__(
        self,
        models: FaceModels,
        *,
        thresholds: Thresholds | None = None,
        config: PipelineConfig | None = None,
    ) -> None:
        from dataclasses import replace

        from rap_edge.pipeline._pipeline import PipelineConfig

        self.models = models
        self.thresholds = thresholds
        self.config = replace(config or PipelineConfig(), track=False)
        self._tmp = tempfile.TemporaryDirectory(prefix="rap-edge-eval-")
        self.pipeline: Any = None

    def enroll(self, identities: dict[str, list[Path]]) -> None:
        from rap_edge.memory import Memory
        from rap_edge.pipeline._faces import FaceEmbedder, embed_faces_in_memory
        from rap_edge.pipeline._pipeline import Pipeline

        folder = Path(self._tmp.name) / f"mem{len(list(Path(self._tmp.name).iterdir()))}"
        memory = Memory.init(folder)
        for name, photos in identities.items():
            memory.add(name, images=photos, category="person")
        embed_faces_in_memory(memory, FaceEmbedder(self.models))
        self.pipeline = Pipeline(
            self.models, memory, thresholds=self.thresholds, config=self.config
        )

    def recognize(self, photo: Path) -> list[str]:
        res = self.pipeline.process(_read(photo))
        return [
            r.name if r.decision == "known" and r.name else r.decision for r in res.recognitions
        ]


def face_vectors(
    models: FaceModels,
    photos: Sequence[Path],
    *,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> tuple[npt.NDArray[np.float32], list[bool]]:
    """The embedding of each photo's largest detected face, and whether one was found.

    Photos without a detected face (or unreadable) get a zero row and ``False``.
    """
    vectors, found, _ = face_probes(models, photos, progress=progress)
    return vectors, found


def face_probes(
    models: FaceModels,
    photos: Sequence[Path],
    *,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> tuple[npt.NDArray[np.float32], list[bool], list[float]]:
    """As :func:`face_vectors`, with each face's quality (0 where none was found)."""
    from rap_edge.pipeline._faces import largest
    from rap_edge.pipeline._quality import face_quality

    out = np.zeros((len(photos), models.encoder.dim), dtype=np.float32)
    found = [False] * len(photos)
    quality = [0.0] * len(photos)
    wrap = progress or (lambda x: x)
    for i, path in wrap(list(enumerate(photos))):
        try:
            img = _read(path)
        except InvalidInputError:
            continue
        face = largest(models.detect(img, fallback=True))
        if face is None:
            continue
        pts = models.landmarks_for_detections(img, [face])[0]
        chip = models.chip(img, pts)
        out[i] = models.embed_chips([chip])[0]
        found[i] = True
        quality[i] = face_quality(chip, pts)
    return out, found, quality


def calibrate_labelled(  # noqa: PLR0913
    models: FaceModels,
    labelled: LabelledSet,
    *,
    far: float,
    conditions: dict[str, LabelledSet] | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    probe_progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """:func:`calibrate_threshold` on a labelled set's photos (every photo's largest face).

    With ``conditions`` (degraded copies) also the quality gate's low-quality threshold
    (:func:`low_quality_threshold`, the clean identity photos as the gallery). Adds the photo
    counts (``photos``, ``photos_without_face``).
    """
    photos = [p for v in labelled.identities.values() for p in v] + labelled.distractors
    labels: list[str | None] = [k for k, v in labelled.identities.items() for _ in v]
    labels += [None] * len(labelled.distractors)
    vectors, found = face_vectors(models, photos, progress=progress)
    keep = [i for i, ok in enumerate(found) if ok]
    out = calibrate_threshold(vectors[keep], [labels[i] for i in keep], far=far)
    probes = degraded_probes(conditions) if conditions else []
    if probes:
        ids = [i for i in keep if labels[i] is not None]
        out.update(
            low_quality_threshold(
                models,
                vectors[ids],
                [str(labels[i]) for i in ids],
                probes,
                far=far,
                threshold=out["threshold"],
                progress=probe_progress,
            )
        )
    out["photos"] = len(photos)
    out["photos_without_face"] = len(photos) - len(keep)
    return out


#: Conditions whose photos hold more than one face: the largest face need not be the label's.
MULTI_FACE_CONDITIONS = frozenset({"two_people"})


def degraded_probes(conditions: dict[str, LabelledSet]) -> list[tuple[Path, str | None]]:
    """Every photo of the single-face conditions with its label (None: a distractor)."""
    out: list[tuple[Path, str | None]] = []
    for name, cond in conditions.items():
        if name in MULTI_FACE_CONDITIONS:
            continue
        out += [(p, k) for k, v in cond.identities.items() for p in v]
        out += [(p, None) for p in cond.distractors]
    return out


def low_quality_threshold(  # noqa: PLR0913
    models: FaceModels,
    gallery: npt.NDArray[np.float32],
    gallery_labels: Sequence[str],
    probes: Sequence[tuple[Path, str | None]],
    *,
    far: float,
    threshold: float,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """Embed the degraded ``probes`` and :func:`calibrate_low_quality` them on ``gallery``."""
    vectors, found, quality = face_probes(models, [p for p, _ in probes], progress=progress)
    keep = [i for i, ok in enumerate(found) if ok]
    return calibrate_low_quality(
        gallery,
        gallery_labels,
        vectors[keep],
        [probes[i][1] for i in keep],
        [quality[i] for i in keep],
        far=far,
        threshold=threshold,
    )


def calibrate_low_quality(  # noqa: PLR0913
    gallery: npt.NDArray[np.float32],
    gallery_labels: Sequence[str],
    probes: npt.NDArray[np.float32],
    probe_labels: Sequence[str | None],
    probe_quality: Sequence[float],
    *,
    far: float,
    threshold: float,
) -> dict[str, Any]:
    """The threshold at which *low-quality* faces meet the false-accept target ``far``.

    Impostor pairs: each low-quality probe (quality < 1; degraded photos) with every gallery
    photo (clean photos) of another identity; a distractor probe (label None) with all of
    them. The result's ``low_quality_threshold`` is the least threshold whose false-accept
    rate on those pairs is at most ``far``, and never below ``threshold`` (low-quality faces
    that are no riskier than the rest keep the main threshold). ``None`` when there are fewer
    impostor pairs than ``1 / far`` (too few to measure that rate).
    """
    g = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    low = [i for i, q in enumerate(probe_quality) if q < 1.0]
    p = probes[low] / np.maximum(np.linalg.norm(probes[low], axis=1, keepdims=True), 1e-12)
    sims = p @ g.T
    glab = np.array(list(gallery_labels), dtype=object)
    impostor_rows = [sims[j][glab != probe_labels[i]] for j, i in enumerate(low)]
    impostor = np.sort(np.concatenate(impostor_rows)) if impostor_rows else np.zeros(0)
    out: dict[str, Any] = {
        "low_quality_probes": len(low),
        "probes": len(probe_quality),
        "low_quality_impostor_pairs": len(impostor),
        "low_quality_far_at_threshold": float((impostor >= threshold).mean())
        if len(impostor)
        else None,
    }
    if len(impostor) < 1 / far:
        out["low_quality_threshold"] = None
        return out
    low_t = max(threshold, far_threshold(impostor, far))
    out["low_quality_threshold"] = low_t
    out["low_quality_far"] = float((impostor >= low_t).mean())
    return out


def far_threshold(impostor: npt.NDArray[np.floating], far: float) -> float:
    """The least threshold (6 decimals) whose false-accept rate on ``impostor`` is <= ``far``.

    ``impostor``: impostor scores sorted ascending, not empty. A score >= t is accepted.
    """
    # The (allowed+1)-th highest impostor score must be rejected: t just above it, rounded
    # *up* to 6 decimals for the file (rounding to nearest could land back on the impostor's
    # score and accept it).
    allowed = int(np.floor(far * len(impostor)))
    cut = float(impostor[len(impostor) - allowed - 1])
    return float(math.ceil(np.nextafter(cut, 2.0) * 1e6) / 1e6)


def calibrate_threshold(
    vectors: npt.NDArray[np.float32], labels: Sequence[str | None], *, far: float
) -> dict[str, Any]:
    """The least cosine threshold whose false-accept rate on impostor pairs is at most ``far``.

    Genuine pairs: two photos of one identity. Impostor pairs: photos of two identities, and
    each distractor with each identity photo. Returns the threshold with the pair counts, the
    false-reject rate there, the equal-error rate and a FAR/FRR curve.

    Raises:
        InvalidInputError: if ``far`` is outside (0, 1) or there are no genuine or impostor
            pairs.
    """
    if not 0 < far < 1:
        msg = f"target false-accept rate must be in (0, 1), got {far}"
        raise InvalidInputError(msg)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    iu = np.triu_indices(len(labels), k=1)
    lab = np.array([x if x is not None else "" for x in labels], dtype=object)
    same = (lab[iu[0]] == lab[iu[1]]) & (lab[iu[0]] != "")
    both_distractor = (lab[iu[0]] == "") & (lab[iu[1]] == "")
    genuine = np.sort(sims[iu][same])
    impostor = np.sort(sims[iu][~same & ~both_distractor])
    if not len(genuine) or not len(impostor):
        msg = (
            f"need genuine and impostor pairs, got {len(genuine)} and {len(impostor)} "
            "(at least two photos of one identity, and two identities)"
        )
        raise InvalidInputError(msg)
    threshold = far_threshold(impostor, far)

    def rates(t: float) -> tuple[float, float]:
        return (float((impostor >= t).mean()), float((genuine < t).mean()))

    grid = np.round(np.arange(0.60, 1.0001, 0.01), 4)
    curve = [{"threshold": float(t), "far": rates(t)[0], "frr": rates(t)[1]} for t in grid]
    diffs = [abs(c["far"] - c["frr"]) for c in curve]
    eer_at = curve[int(np.argmin(diffs))]
    far_at, frr_at = rates(threshold)
    return {
        "threshold": threshold,
        "target_far": far,
        "far": far_at,
        "frr": frr_at,
        "genuine_pairs": len(genuine),
        "impostor_pairs": len(impostor),
        "genuine_min": float(genuine[0]),
        "impostor_max": float(impostor[-1]),
        "eer": (eer_at["far"] + eer_at["frr"]) / 2,
        "eer_threshold": eer_at["threshold"],
        "curve": curve,
    }
