"""The application session: models, thresholds, memory and generation opened in one place.

Every front end (``rap-edge run``, ``ask``, ``memory add``, ``memory enroll-unknown``, the
demo, the live runtime and so the ROS node, the benches) drives one :class:`Session`:

* a frame becomes a recognition in :meth:`Session.pipeline` / :meth:`Session.recognise`;
* a concept is added, changed or forgotten in :meth:`Session.add_concept`,
  :meth:`Session.update_concept`, :meth:`Session.remove_concept` and
  :meth:`Session.enroll_unknown` (embedding, the one-face check and rollback included);
* a description or an answer is asked for in :meth:`Session.ask` and
  :meth:`Session.describer`.

Reference images that lack vectors from the encoders in use are embedded when the session
opens (:meth:`Session.embed_pending`), so a concept added offline is recognised by every
command, not only by ``run``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rap_edge.app._edits import ConceptEditor
from rap_edge.app._generation import Generation
from rap_edge.app._settings import RUNTIME_FIELDS, Settings
from rap_edge.app._strangers import DEFAULT_MAX_MB, DEFAULT_RETENTION_DAYS, LiveClusters
from rap_edge.errors import ConfigError, InvalidInputError, RapEdgeError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Self

    import numpy.typing as npt

    from rap_edge.embed import EmbedReport
    from rap_edge.generate import (
        Backend,
        Describer,
        GenerationResult,
        Generator,
        Prompt,
    )
    from rap_edge.interfaces import Concept
    from rap_edge.memory import Memory
    from rap_edge.pipeline import (
        FaceModels,
        FrameResult,
        ObjectModels,
        Pipeline,
        PipelineConfig,
        Thresholds,
        UnknownClusters,
    )

__all__ = ["THRESHOLDS_FILE", "Answer", "Session", "find_thresholds"]

log = logging.getLogger("rap_edge")

THRESHOLDS_FILE = "thresholds.json"
MAX_IMAGES = 32  # reference images per edit
LIVE_ORIGIN = "live setting"
MemoryMode = Literal["optional", "required", "none"]


def find_thresholds(
    settings: Settings, *, memory: Path | None, models: Path
) -> tuple[Path | None, str]:
    """The threshold file to use, and why; never the working directory.

    An explicit ``thresholds`` setting wins, then ``<memory>/thresholds.json``, then
    ``<models>/thresholds.json`` (``make models`` installs the calibrated file there and
    ``rap-edge calibrate thresholds`` writes there), else None: each manifest's value.
    """
    if settings.thresholds is not None:
        return settings.thresholds, "given"
    for folder, why in ((memory, "next to the memory"), (models, "next to the models")):
        if folder is not None and (folder / THRESHOLDS_FILE).is_file():
            return folder / THRESHOLDS_FILE, why
    return None, "no threshold file"


@dataclass(frozen=True, slots=True)
class Answer:
    """What :meth:`Session.ask` returns.

    Attributes:
        answer: The generated (guarded) answer.
        frame: The recognitions the answer is about.
        prompt: The RAP prompt it was given.
    """

    answer: GenerationResult
    frame: FrameResult
    prompt: Prompt


def _check_images(images: object) -> list[npt.NDArray[np.uint8]]:
    from rap_edge.sources import check_bgr_image

    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        msg = f"images must be a list of BGR images, got {type(images).__name__}"
        raise InvalidInputError(msg)
    if len(images) > MAX_IMAGES:
        msg = f"at most {MAX_IMAGES} images per edit, got {len(images)}"
        raise InvalidInputError(msg)
    return [check_bgr_image(img, f"image #{i + 1}") for i, img in enumerate(images)]


class Session:
    """Models, thresholds, memory and the generation backend, and what front ends do with them.

    Thread-safe for what the live runtime needs: recognition on one thread per pipeline, edits
    and questions on others (one edit at a time). Use as a context manager or call
    :meth:`close`.
    """

    def __init__(  # noqa: PLR0913 - the parts, already loaded
        self,
        settings: Settings,
        *,
        models: FaceModels,
        memory: Memory | None,
        thresholds: Thresholds | None = None,
        objects: ObjectModels | None = None,
        thresholds_note: str = "",
        owns_memory: bool = False,
        isolate: bool = False,
        models_dir: Path | None = None,
    ) -> None:
        """Assemble a session from loaded parts (:meth:`open` loads them from settings).

        Raises:
            ConfigError: ``settings.objects`` without ``objects``.
            InvalidInputError: bad settings.
        """
        from rap_edge.pipeline import Thresholds

        settings.check()
        if settings.objects and objects is None:
            msg = "objects is on but no ObjectModels were given (load them, or turn it off)"
            raise ConfigError(msg)
        self.settings = settings
        self.models = models
        self.memory = memory
        self.objects = objects if settings.objects else None
        self.thresholds_note = thresholds_note
        self.models_dir = models_dir or Path(models.encoder.manifest.onnx).parent
        self._owns_memory = owns_memory
        self._isolate = isolate
        base = thresholds or Thresholds()
        th = Thresholds(
            values=dict(base.values),
            origin=dict(base.origin),
            margin=base.margin,
            details=dict(base.details),
        )
        th.set_default(models.encoder_id, models.encoder.manifest.threshold)
        if self.objects is not None:
            th.set_default(self.objects.encoder_id, self.objects.encoder.manifest.threshold)
        self._base = (dict(th.values), dict(th.origin), th.margin)
        self.thresholds = th  # shared by every pipeline of this session (changed in place)
        self._apply_thresholds(settings)
        self.generation = Generation(lambda: self.settings, memory, isolate=isolate)
        self._edits: ConceptEditor | None = None
        self._edit_listeners: list[Callable[[], None]] = []
        self._strangers: list[LiveClusters] = []  # opened by strangers(): checked after edits
        self.embedded: EmbedReport | None = None  # what the last embed_pending did

    @classmethod
    def open(
        cls,
        settings: Settings | None = None,
        *,
        memory: MemoryMode | Memory = "optional",
        readonly: bool = False,
        embed: bool = True,
        isolate: bool = False,
    ) -> Self:
        """Load the models, thresholds and memory named by ``settings``.

        Args:
            settings: What to load (default :class:`Settings`).
            memory: ``optional`` (the settings' memory must exist; the default one is used
                if it exists), ``required`` (it must exist), ``none``, or an open memory
                (stays the caller's to close).
            readonly: Open the memory read-only (pending images then stay pending).
            embed: Embed reference images that lack vectors from the encoders in use.
            isolate: Run a model generation backend in a child process (next to a frame
                loop).

        Raises:
            ModelStoreError: a model is missing or damaged.
            ConfigError: a threshold file is unreadable.
            RapEdgeError: the memory cannot be opened.
        """
        from rap_edge.memory import Memory, default_memory_dir
        from rap_edge.models import default_store_dir
        from rap_edge.pipeline import DEFAULT_MARGIN, FaceModels, Thresholds

        settings = settings or Settings()
        settings.check()
        folder = settings.models or default_store_dir() / "onnx"
        models = FaceModels.load(
            folder,
            encoder=settings.face_encoder,
            provider=settings.provider,
            flip=settings.flip,
        )
        objects = _object_models(settings, folder) if settings.objects else None
        mem: Memory | None
        owns = False
        if isinstance(memory, str):
            path = settings.memory or default_memory_dir()
            if memory == "none" or (
                memory == "optional" and settings.memory is None and not path.exists()
            ):
                mem = None
            else:
                mem, owns = Memory(path, readonly=readonly), True
        else:
            mem = memory
        try:
            th_path, why = find_thresholds(
                settings, memory=None if mem is None else mem.path, models=folder
            )
            margin = DEFAULT_MARGIN if settings.margin is None else settings.margin
            thresholds = (
                Thresholds.load(th_path, margin=margin) if th_path else Thresholds(margin=margin)
            )
            session = cls(
                settings,
                models=models,
                memory=mem,
                thresholds=thresholds,
                objects=objects,
                thresholds_note=why,
                owns_memory=owns,
                isolate=isolate,
                models_dir=folder,
            )
            if embed and mem is not None and not readonly:
                session.embed_pending()
        except BaseException:
            if owns and mem is not None:
                mem.close()
            raise
        return session

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the session."""
        self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self.generation.closed

    def close(self) -> None:
        """Stop the generation backend (a running generation ends) and close an owned memory."""
        self.generation.closed = True
        self.generation.close_backend()
        if self._owns_memory and self.memory is not None:
            self.memory.close()

    def close_backend(self) -> None:
        """Stop the generation backend (a later question or description opens it again)."""
        self.generation.close_backend()

    def summary(self) -> list[str]:
        """Lines saying what was loaded and which thresholds decide (printed at start)."""
        m = self.models
        th = self.thresholds
        enc = m.encoder_id
        where = self.memory.path if self.memory is not None else "none (all unknown)"
        lines = [
            (
                f"models: {m.detector.manifest.name} + {m.landmarks.manifest.name} + {enc} "
                f"on {m.encoder.provider}"
            ),
            (
                f"threshold {th.get(enc):.4f} ({th.source(enc)}; {self.thresholds_note}), "
                f"margin {th.margin}; memory: {where}"
            ),
        ]
        done = self.embedded
        if done is not None and (done.faces or done.objects):
            lines.append(
                f"memory: embedded {done.faces} face and {done.objects} object reference "
                "image(s) with the encoders in use"
            )
        for s in done.skipped if done is not None else ():
            lines.append(
                f"memory: skipped {s.concept}'s reference image {s.image_id} ({s.path}): "
                f"{s.reason}"
            )
        if self.objects is not None:
            o = self.objects
            how = o.detector.manifest.name if o.detector is not None else "multi-scale windows"
            lines.append(
                f"objects: {o.encoder_id} over {how}, threshold {th.get(o.encoder_id):.4f} "
                f"({th.source(o.encoder_id)})"
            )
        return lines

    # -- recognition -------------------------------------------------------------------------

    def pipeline_config(self, *, track: bool | None = None) -> PipelineConfig:
        """The per-stream pipeline settings (``track`` overrides the settings')."""
        from rap_edge.pipeline import PipelineConfig

        s = self.settings
        return PipelineConfig(
            k=s.top_k,
            track=s.track if track is None else track,
            embed_every=s.embed_every,
            tiles=s.tiles,
            margin=self.thresholds.margin,
        )

    def pipeline(
        self, *, track: bool | None = None, unknown: UnknownClusters | None = None
    ) -> Pipeline:
        """A new stream: its own tracks; models, memory and thresholds shared."""
        from rap_edge.pipeline import Pipeline

        return Pipeline(
            self.models,
            self.memory,
            thresholds=self.thresholds,
            config=self.pipeline_config(track=track),
            unknown=unknown,
            objects=self.objects,
        )

    def recognise(self, image: object, *, source: str = "image") -> FrameResult:
        """Recognise one photo on its own (no tracks).

        Raises:
            InvalidInputError: not a BGR uint8 image.
        """
        from rap_edge.sources import check_bgr_image

        return self.pipeline(track=False).process(check_bgr_image(image, "image"), source=source)

    def embed_pending(self) -> EmbedReport:
        """Embed reference images lacking vectors from the encoders in use.

        An image that cannot be embedded (a 1x1 picture, no usable face) is skipped and
        reported with its concept; it never stops the others or the stream.

        Returns:
            How many face and object images were embedded, and what was skipped.
        """
        from rap_edge.embed import EmbedReport, embed_pending
        from rap_edge.pipeline import FaceEmbedder, ObjectEmbedder

        if self.memory is None:
            return EmbedReport()
        report = embed_pending(
            self.memory,
            faces=FaceEmbedder(self.models),
            objects=ObjectEmbedder(self.objects) if self.objects is not None else None,
        )
        for s in report.skipped:
            log.warning(
                "%s: reference image %s (%s) not embedded: %s",
                s.concept,
                s.image_id,
                s.path,
                s.reason,
            )
        self.embedded = report
        return report

    # -- run-time settings -------------------------------------------------------------------

    def set_runtime(self, **changes: Any) -> Settings:  # noqa: ANN401 - checked by Settings
        """Change what may change while frames flow (see ``RUNTIME_FIELDS``).

        Pipelines made by this session see new thresholds at once; callers that hold
        pipelines update their configs (:meth:`pipeline_config`).

        Raises:
            InvalidInputError: an unknown or fixed field, or a bad value (nothing changes).
        """
        names = {f.name for f in fields(Settings)}
        unknown = sorted(set(changes) - names)
        if unknown:
            msg = f"unknown setting(s): {', '.join(unknown)}"
            raise InvalidInputError(msg)
        fixed = sorted(set(changes) - RUNTIME_FIELDS)
        if fixed:
            msg = (
                f"{', '.join(fixed)} cannot change while running (create a new runtime); "
                f"changeable: {', '.join(sorted(RUNTIME_FIELDS))}"
            )
            raise InvalidInputError(msg)
        new = replace(self.settings, **changes)
        new.check()
        self.settings = new
        self._apply_thresholds(new)
        return new

    def _apply_thresholds(self, s: Settings) -> None:
        values, origin, margin = self._base
        th = self.thresholds
        th.margin = margin if s.margin is None else float(s.margin)
        encoders = [(self.models.encoder_id, s.face_threshold)]
        if self.objects is not None:
            encoders.append((self.objects.encoder_id, s.object_threshold))
        for enc, value in encoders:
            if value is None:
                th.values[enc], th.origin[enc] = values[enc], origin[enc]
            else:
                th.values[enc], th.origin[enc] = float(value), LIVE_ORIGIN

    # -- memory edits ------------------------------------------------------------------------

    def on_edit(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every edit (the live runtime forgets its votes)."""
        self._edit_listeners.append(listener)

    def _memory(self) -> Memory:
        if self.memory is None:
            msg = "this session has no memory (give --memory, or `rap-edge memory init`)"
            raise ConfigError(msg)
        return self.memory

    def list_concepts(self, category: str = "") -> list[Concept]:
        """The memory's concepts (of ``category`` when given), sorted by name."""
        return self._memory().list_concepts(category=category or None)

    def get_concept(self, ref: str) -> Concept:
        """The concept with this id or name.

        Raises:
            ConceptNotFoundError: if there is none.
        """
        return self._memory().get(ref)

    def add_concept(  # noqa: PLR0913 - the fields of a concept
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
        """Add a concept and embed its images now (see :meth:`ConceptEditor.add`)."""
        return self._editor().add(
            name,
            category,
            info=info,
            aliases=aliases,
            images=images,
            files=files,
            face=face,
            largest=largest,
            whole_image=whole_image,
        )

    def update_concept(  # noqa: PLR0913 - the fields of a concept
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
        """Change a concept (see :meth:`ConceptEditor.update`)."""
        return self._editor().update(
            ref,
            name=name,
            category=category,
            info=info,
            aliases=aliases,
            add_images=add_images,
            add_files=add_files,
            face=face,
            largest=largest,
            whole_image=whole_image,
        )

    def remove_concept(self, ref: str) -> Concept:
        """Forget a concept (see :meth:`ConceptEditor.remove`)."""
        return self._editor().remove(ref)

    def remove_image(self, ref: str, image_id: int) -> Concept:
        """Remove one reference image (see :meth:`ConceptEditor.remove_image`)."""
        return self._editor().remove_image(ref, image_id)

    def enroll_unknown(
        self,
        clusters: UnknownClusters,
        cluster: str,
        *,
        name: str,
        category: str = "person",
        info: str = "",
    ) -> tuple[Concept, int]:
        """Make an unknown-face cluster a concept (see :meth:`ConceptEditor.enroll_unknown`)."""
        return self._editor().enroll_unknown(
            clusters, cluster, name=name, category=category, info=info
        )

    def strangers(
        self,
        *,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        max_mb: float = DEFAULT_MAX_MB,
    ) -> LiveClusters:
        """The memory's unknown-face clusters (``<memory>/unknown``), shared by the front ends.

        Hand them to :class:`~rap_edge.live.LiveRuntime` (``unknown=``) to cluster the faces
        it cannot name; :meth:`enroll_unknown` names one.

        Raises:
            InvalidInputError: no memory, or a retention or cap that is not positive.
        """
        if not (0 < max_mb < math.inf):
            msg = f"strangers: the storage cap must be a positive number of MB, got {max_mb!r}"
            raise InvalidInputError(msg)
        clusters = LiveClusters(
            self._memory().path / "unknown",
            threshold=self.thresholds.get(self.models.encoder_id),
            retention_days=retention_days,
            max_bytes=int(max_mb * 1e6),
        )
        self._strangers.append(clusters)
        self.resolve_strangers(clusters)
        return clusters

    def resolve_strangers(self, clusters: LiveClusters) -> list[tuple[str, str]]:
        """Forget the strangers who now look like someone the memory knows.

        A cluster seen before its person was enrolled (or before a photo was added that
        matches it) would stay a "stranger" who is in fact known: its centroid is searched
        like a face, and a match at the face threshold deletes the cluster and its crops.
        Runs after every edit of this session, and when the clusters are opened.

        Returns:
            (cluster id, concept name) for each cluster forgotten.
        """
        memory = self.memory
        encoder = self.models.encoder_id
        with clusters.lock:
            ids = [c.id for c in clusters.clusters.values() if c.count]
            cents = [clusters.clusters[i].centroid for i in ids]
        if memory is None or not ids or encoder not in memory.encoders():
            return []
        vecs = np.stack(cents).astype(np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        threshold = self.thresholds.get(encoder)
        hits = memory.search(vecs, k=1, threshold=threshold, encoder=encoder)
        out = []
        for cid, found in zip(ids, hits, strict=True):
            if found:
                clusters.forget(cid)
                out.append((cid, found[0].name))
                log.info(
                    "strangers: %s looks like %s now: no longer a stranger", cid, found[0].name
                )
        return out

    def _editor(self) -> ConceptEditor:
        if self._edits is None:
            self._edits = ConceptEditor(
                self._memory(),
                self.models,
                embed=lambda: self.embed_pending(),  # noqa: PLW0108 - looked up at call time
                edited=self._edited,
                objects=self.objects,
                load_objects=None if self.objects is not None else self._enrollment_objects,
            )
        return self._edits

    def _enrollment_objects(self) -> ObjectModels | None:
        """Object models to crop enrolled photos with while objects are off (None: none).

        So a photo added through a front end started without objects (the web app, the ROS
        node) is stored as the crop of its object, as with objects on; it is embedded when
        objects are turned on or by ``memory embed-objects``.
        """
        try:
            return _object_models(self.settings, self.models_dir)
        except RapEdgeError as err:
            log.warning("objects are off and cannot be loaded to crop enrolled photos: %s", err)
            return None

    def _edited(self) -> None:
        self.generation.refresh_names()
        for clusters in list(self._strangers):
            try:
                self.resolve_strangers(clusters)
            except RapEdgeError:
                log.warning("strangers: checking them against the memory failed", exc_info=True)
        for listener in list(self._edit_listeners):
            listener()

    def backend(self) -> Backend:
        """The generation backend, opened on first use (see :meth:`Generation.backend`)."""
        return self.generation.backend()

    @property
    def backend_note(self) -> str:
        """One line saying which backend writes the words (empty before it is opened)."""
        return self.generation.backend_note

    def generator(self, purpose: str = "ask") -> Generator:
        """The guarded generator for ``purpose`` (``ask`` or ``describe``), on first use."""
        return self.generation.generator(purpose)

    def generator_stats(self, purpose: str) -> dict[str, int]:
        """A generator's counters (empty before its first use)."""
        return self.generation.generator_stats(purpose)

    def prompt(self, result: FrameResult, question: str | None) -> Prompt:
        """The RAP prompt for a frame's recognitions (and a question)."""
        from rap_edge.generate import frame_prompt

        return frame_prompt(
            result, self.memory, question or "", max_concepts=self.settings.max_concepts
        )

    def ask(
        self,
        question: str,
        *,
        image: object = None,
        frame: FrameResult | None = None,
        stream: Callable[[str, str], None] | None = None,
    ) -> Answer:
        """Answer ``question`` about a photo (recognised now) or an already recognised frame.

        Raises:
            InvalidInputError: an empty question, a bad image, or neither image nor frame.
            ModelStoreError: the backend cannot load.
        """
        if not isinstance(question, str) or not question.strip():
            msg = f"the question must be non-empty text, got {question!r}"
            raise InvalidInputError(msg)
        if image is not None:
            frame = self.recognise(image, source="ask")
        if frame is None:
            msg = "give an image or a recognised frame to ask about"
            raise InvalidInputError(msg)
        prompt = self.prompt(frame, question)
        return Answer(self.generator("ask").answer(prompt, stream), frame, prompt)

    def describer(
        self, on_result: Callable[[Any, GenerationResult], None] | None = None
    ) -> Describer:
        """A latest-first description worker for frames, per the settings' period and K."""
        from rap_edge.generate import Describer

        return Describer(
            self.generator("describe"),
            self.memory,
            every=self.settings.describe_every,
            on_result=on_result,
            max_concepts=self.settings.max_concepts,
        )


def _object_models(settings: Settings, folder: Path) -> ObjectModels:
    """The object models the settings name, from the models folder."""
    from rap_edge.pipeline import ObjectModels

    return ObjectModels.load(
        folder,
        encoder=settings.object_encoder,
        detector=settings.object_detector,
        provider=settings.provider,
    )
