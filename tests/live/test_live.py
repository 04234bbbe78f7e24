"""The live runtime (the ROS node's core) on the real face models and check photos.

Frames are 640x480 canvases of face_recognition's test photos; Barack is enrolled from
obama.jpg, Biden is unknown until a test adds him live. Every wait polls with a bound, so a
regression fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest

from rap_edge.app import Session
from rap_edge.errors import (
    ConceptNotFoundError,
    ConfigError,
    ConflictError,
    InvalidInputError,
)
from rap_edge.live import LiveConfig, LiveRuntime
from rap_edge.memory import Memory
from rap_edge.pipeline import FaceEmbedder, FaceModels, Pipeline, embed_faces_in_memory
from tests.pipeline.test_face_pipeline import frame

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from rap_edge.generate import GenerationResult
    from rap_edge.pipeline import FrameResult
    from tests.conftest import Exported

WAIT_S = 30.0


def wait_for(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)


class Results:
    """``on_result`` and ``on_description`` recorders (called from the runtime's threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames: list[tuple[str, FrameResult, Any]] = []
        self.descriptions: list[tuple[str, int | None, GenerationResult, Any]] = []

    def on_result(self, source: str, result: FrameResult, meta: Any) -> None:
        with self.lock:
            self.frames.append((source, result, meta))

    def on_description(
        self, source: str, index: int | None, answer: GenerationResult, meta: Any
    ) -> None:
        with self.lock:
            self.descriptions.append((source, index, answer, meta))

    def of(self, source: str) -> list[tuple[FrameResult, Any]]:
        with self.lock:
            return [(r, m) for s, r, m in self.frames if s == source]

    def after(self, source: str, seq: int) -> list[FrameResult]:
        """Results of ``source`` whose meta (a sequence number) is above ``seq``."""
        return [r for r, m in self.of(source) if isinstance(m, int) and m > seq]


def names(result: FrameResult) -> list[tuple[str, str | None]]:
    return sorted((r.decision, r.name) for r in result.recognitions)


class Streamer:
    """Submits one image to one source every ``period`` s, meta = a growing sequence number."""

    def __init__(
        self, rt: LiveRuntime, source: str, image: np.ndarray, period: float = 0.02
    ) -> None:
        self.rt, self.source, self.image, self.period = rt, source, image, period
        self.seq = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.seq += 1
                self.rt.submit(self.source, self.image, self.seq)
            time.sleep(self.period)

    def mark(self) -> int:
        """Every frame submitted after this returns has a larger number."""
        with self.lock:
            return self.seq

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def models(face_models: Exported) -> FaceModels:
    return FaceModels.load(face_models.out, provider="cpu")


@pytest.fixture(scope="module")
def photos(face_models: Exported) -> dict[str, np.ndarray]:
    out = {}
    for p in face_models.photos:
        img = cv2.imread(str(p))
        assert img is not None
        out[p.stem] = img
    return out


@pytest.fixture
def memory(tmp_path: Path, face_models: Exported, models: FaceModels) -> Iterator[Memory]:
    with Memory.init(tmp_path / "mem") as mem:
        path = next(p for p in face_models.photos if p.name == "obama.jpg")
        mem.add("Barack", images=[path], category="person", info="Barack likes basketball.")
        assert embed_faces_in_memory(mem, FaceEmbedder(models)) == 1
        yield mem


@pytest.fixture
def results() -> Results:
    return Results()


@pytest.fixture
def runtime(
    models: FaceModels, memory: Memory, results: Results
) -> Iterator[Callable[..., LiveRuntime]]:
    """Make runtimes (template backend) that are closed after the test."""
    made: list[LiveRuntime] = []

    def make(**config: Any) -> LiveRuntime:
        rt = LiveRuntime.from_models(
            models,
            memory,
            LiveConfig(backend="template", **config),
            on_result=results.on_result,
            on_description=results.on_description,
        )
        made.append(rt)
        return rt

    yield make
    for rt in made:
        assert rt.close(10)


# -- settings (no models) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_k", 0),
        ("top_k", 101),
        ("top_k", True),
        ("top_k", 2.5),
        ("margin", 1.0),
        ("margin", -0.1),
        ("face_threshold", 1.5),
        ("face_threshold", math.nan),
        ("object_threshold", -2),
        ("describe_every", -1.0),
        ("describe_every", math.inf),
        ("embed_every", 0),
        ("tiles", 9),
        ("max_tokens", 0),
        ("max_concepts", 51),
        ("llm_threads", 0),
        ("backend", "gpt"),
        ("llm_provider", "tpu"),
        ("track", "yes"),
        ("describe", 1),
        ("llm", ""),
    ],
)
def test_config_check_names_the_bad_value(field: str, value: object) -> None:
    LiveConfig().check()
    with pytest.raises(InvalidInputError, match=field):
        LiveConfig(**{field: value}).check()  # type: ignore[arg-type]


# -- streams (real models: network, for the session's model export) --------------------------


@pytest.mark.network
@pytest.mark.slow
def test_two_sources_share_one_memory(
    runtime: Callable[..., LiveRuntime], results: Results, photos: dict[str, np.ndarray]
) -> None:
    rt = runtime()
    rt.submit("cam/left", frame(photos["obama2"]), "L", stamp=12.5)
    rt.submit("cam/right", frame(photos["obama3"], photos["biden"]), "R")
    wait_for(lambda: len(results.frames) == 2, "both frames")
    ((left, lmeta),), ((right, rmeta),) = results.of("cam/left"), results.of("cam/right")
    assert (lmeta, rmeta) == ("L", "R")
    assert names(left) == [("known", "Barack")]
    assert names(right) == [("known", "Barack"), ("unknown", None)]
    assert left.timestamp == 12.5 and (left.index, right.index) == (0, 0)  # per-source streams
    stats = rt.stats()
    for src in ("cam/left", "cam/right"):
        s = stats.sources[src]
        assert (s.received, s.processed, s.dropped, s.errors) == (1, 1, 0, 0)
        assert s.last_frame == 0 and s.last_ms is not None and s.last_ms > 0
    assert stats.to_json()["sources"]["cam/left"]["processed"] == 1
    with pytest.raises(InvalidInputError, match="source"):
        rt.submit("", frame(photos["obama2"]))


@pytest.mark.network
@pytest.mark.slow
def test_waiting_frames_are_replaced_by_the_newest_round_robin(
    models: FaceModels, memory: Memory, photos: dict[str, np.ndarray]
) -> None:
    order: list[tuple[str, Any]] = []
    entered, release = threading.Event(), threading.Event()

    def on_result(source: str, result: FrameResult, meta: Any) -> None:
        order.append((source, meta))
        if meta == 0:  # hold the processing thread while more frames arrive
            entered.set()
            assert release.wait(WAIT_S)

    img = frame(photos["obama2"])
    with LiveRuntime.from_models(models, memory, on_result=on_result) as rt:
        rt.submit("a", img, 0)
        assert entered.wait(WAIT_S)
        started = time.perf_counter()
        for i in range(1, 6):
            rt.submit("a", img, i)
        rt.submit("b", img, "b0")
        assert time.perf_counter() - started < 0.5  # submit never waits for processing
        s = rt.stats().sources["a"]
        assert (s.received, s.processed, s.dropped) == (6, 1, 4)  # a0 is in its callback
        release.set()
        wait_for(lambda: len(order) == 3, "the newest frames")
        # "a" was just served, so "b" goes first; of a1..a5 only the newest is processed.
        assert order == [("a", 0), ("b", "b0"), ("a", 5)]
        stats = rt.stats().sources
        assert (stats["a"].processed, stats["a"].dropped, stats["b"].processed) == (2, 4, 1)


@pytest.mark.network
@pytest.mark.slow
def test_concepts_added_and_removed_live_on_a_tracked_face(
    runtime: Callable[..., LiveRuntime],
    results: Results,
    memory: Memory,
    photos: dict[str, np.ndarray],
) -> None:
    rt = runtime(embed_every=10)  # the face's embedding is reused and its votes accumulate
    stream = Streamer(rt, "cam", frame(photos["biden"]))
    try:
        wait_for(lambda: len(results.of("cam")) >= 3, "unknown Biden frames")
        before = results.of("cam")
        assert all(names(r) == [("unknown", None)] for r, _ in before)
        track = before[-1][0].recognitions[0].track_id

        joe = rt.add_concept("Joe", "person", info="Joe drinks tea.", images=[photos["biden"]])
        assert joe.images and joe.images[0].encoders  # embedded right away
        mark = stream.mark()
        wait_for(lambda: len(results.after("cam", mark)) >= 3, "frames after the add")
        after_add = results.after("cam", mark)
        assert all(names(r) == [("known", "Joe")] for r in after_add)  # from the first one on
        assert {r.recognitions[0].track_id for r in after_add} == {track}

        removed = rt.remove_concept("Joe")
        assert removed.id == joe.id
        mark = stream.mark()
        wait_for(lambda: len(results.after("cam", mark)) >= 3, "frames after the removal")
        for r in results.after("cam", mark):
            (rec,) = r.recognitions
            assert (rec.decision, rec.name, rec.concept_id) == ("unknown", None, None)
            assert joe.id not in {c.concept_id for c in rec.candidates}
            assert rec.track_id == track  # the same tracked face, forgetting the name
    finally:
        stream.close()
    assert [c.name for c in rt.list_concepts()] == ["Barack"]
    assert rt.stats().edits == 2
    with pytest.raises(ConceptNotFoundError):
        rt.remove_concept("Joe")


@pytest.mark.network
@pytest.mark.slow
def test_a_face_concept_without_a_face_is_refused_and_nothing_is_left(
    runtime: Callable[..., LiveRuntime],
    memory: Memory,
    photos: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt = runtime()
    blank = np.full((240, 320, 3), 90, np.uint8)
    with pytest.raises(InvalidInputError, match="no face found in image #2"):
        rt.add_concept("Nobody", "person", images=[photos["biden"], blank])
    with pytest.raises(InvalidInputError, match="no face"):
        rt.update_concept("Barack", info="changed", add_images=[blank])
    # A failure after some writes takes them back (here the second, identical image).
    with pytest.raises(ConflictError, match="already has that image"):
        rt.update_concept("Barack", info="changed", add_images=[photos["obama3"]] * 2)
    barack = rt.get_concept("Barack")
    assert len(barack.images) == 1 and barack.info == "Barack likes basketball."
    # An object concept may have any picture; turning it into a person needs a face.
    poster = rt.add_concept("Poster", "poster", images=[blank])
    assert not poster.images[0].encoders  # objects are off: the image waits
    with pytest.raises(InvalidInputError, match="no face"):
        rt.update_concept("Poster", category="person")
    assert rt.get_concept("Poster").category == "poster"
    rt.remove_concept("Poster")
    for bad in (
        [np.zeros((8, 8), np.uint8)],
        [np.zeros((8, 8, 3), np.float32)],
        [np.zeros((0, 8, 3), np.uint8)],
        ["face.png"],
        np.zeros((2, 8, 8, 3)),
    ):
        with pytest.raises(InvalidInputError, match="image"):
            rt.add_concept("Bad", "person", images=bad)  # type: ignore[arg-type]

    def broken(*_: object, **__: object) -> int:
        msg = "embedder crashed"
        raise RuntimeError(msg)

    monkeypatch.setattr(Session, "embed_pending", broken)
    with pytest.raises(RuntimeError, match="embedder crashed"):  # added, then taken back
        rt.add_concept("Joe", "person", images=[photos["biden"]])
    assert [c.name for c in memory.list_concepts()] == ["Barack"]
    report = memory.verify()
    assert report.ok and not report.warnings, report


@pytest.mark.network
@pytest.mark.slow
def test_a_stranger_enrolled_later_is_no_longer_a_stranger(
    runtime: Callable[..., LiveRuntime], photos: dict[str, np.ndarray]
) -> None:
    rt = runtime()
    strangers = rt.session.strangers()
    rt.unknown = strangers  # before the first frame: each source's pipeline is made then
    stream = Streamer(rt, "cam", frame(photos["biden"]))
    try:
        wait_for(lambda: any(c["crops"] for c in strangers.listing()), "Biden clustered")
    finally:
        stream.close()
    (cluster,) = strangers.listing()
    crops = strangers.crop_paths(cluster["id"])
    rt.update_concept("Barack", info="Likes chess.")  # an edit about someone else
    assert [c["id"] for c in strangers.listing()] == [cluster["id"]]
    rt.add_concept("Joe", "person", images=[photos["biden"]])  # enrolled another way
    assert strangers.listing() == []  # known now: not a stranger any more
    assert crops and not any(p.exists() for p in crops)


@pytest.mark.network
@pytest.mark.slow
def test_removing_a_wrong_photo_re_decides_a_tracked_face_at_once(
    runtime: Callable[..., LiveRuntime], results: Results, photos: dict[str, np.ndarray]
) -> None:
    rt = runtime(embed_every=10)  # votes accumulate on the track: stale ones would linger
    # Joe was enrolled with a photo of Barack by mistake.
    joe = rt.add_concept("Joe", "person", images=[photos["biden"], photos["obama"]])
    stream = Streamer(rt, "cam", frame(photos["obama2"]))
    try:
        wait_for(lambda: len(results.of("cam")) >= 3, "frames of Barack")
        # Barack's face matches Barack and "Joe" alike: neither name is said.
        assert all(names(r) == [("uncertain", None)] for r, _ in results.of("cam"))
        wrong = joe.images[1].id
        with pytest.raises(ConceptNotFoundError, match="has no reference image"):
            rt.session.remove_image("Barack", wrong)  # not Barack's photo
        fixed = rt.session.remove_image("Joe", wrong)
        assert [i.id for i in fixed.images] == [joe.images[0].id]
        mark = stream.mark()
        wait_for(lambda: len(results.after("cam", mark)) >= 3, "frames after the removal")
        assert all(names(r) == [("known", "Barack")] for r in results.after("cam", mark))
        with pytest.raises(InvalidInputError, match="only photo cannot be removed"):
            rt.session.remove_image("Joe", fixed.images[0].id)
    finally:
        stream.close()
    assert rt.stats().edits == 2  # the add and the removal


@pytest.mark.network
@pytest.mark.slow
def test_edits_while_frames_flow_keep_the_memory_sound(
    runtime: Callable[..., LiveRuntime],
    results: Results,
    memory: Memory,
    photos: dict[str, np.ndarray],
) -> None:
    rt = runtime(describe=True)
    left = Streamer(rt, "left", frame(photos["obama2"]), period=0.01)
    right = Streamer(rt, "right", frame(photos["biden"], photos["obama3"]), period=0.01)
    failures: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:  # another service thread: lists, reads and asks meanwhile
        try:
            while not stop.is_set():
                for c in rt.list_concepts("person"):
                    with contextlib.suppress(ConceptNotFoundError):  # removed in between
                        rt.get_concept(c.id)
                with contextlib.suppress(InvalidInputError):  # no frame yet
                    rt.ask("Who is here?", source="left")
                time.sleep(0.01)
        except BaseException as err:  # noqa: BLE001 - reported below
            failures.append(err)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(results.of("right")) >= 1, "the first frames")
        for i in range(3):
            c = rt.add_concept(f"P{i}", "person", images=[photos["obama3"]])
            rt.update_concept(c.id, name=f"Q{i}", info=f"edit {i}", add_images=[photos["biden"]])
            assert [len(im.encoders) for im in rt.get_concept(c.id).images] == [1, 1]
            rt.remove_concept(f"Q{i}")
        marks = left.mark(), right.mark()
        wait_for(
            lambda: (
                len(results.after("left", marks[0])) >= 2
                and len(results.after("right", marks[1])) >= 2
            ),
            "frames after the edits",
        )
    finally:
        stop.set()
        left.close()
        right.close()
        thread.join(WAIT_S)
    assert not failures, failures
    later = results.after("left", marks[0]) + results.after("right", marks[1])
    assert not {r.name for res in later for r in res.recognitions} & {
        "P0",
        "Q0",
        "P1",
        "Q1",
        "P2",
        "Q2",
    }
    assert rt.close(10)
    stats = rt.stats()
    assert stats.edits == 9 and stats.callback_errors == 0
    assert all(s.errors == 0 and s.processed >= 3 for s in stats.sources.values())
    assert stats.described["requested"] >= 1
    assert [c.name for c in memory.list_concepts()] == ["Barack"]
    report = memory.verify()
    assert report.ok and not report.warnings, report


@pytest.mark.network
@pytest.mark.slow
def test_bad_frames_and_failing_callbacks_are_counted_and_the_stream_goes_on(
    models: FaceModels,
    memory: Memory,
    photos: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Any] = []

    def on_result(source: str, result: FrameResult, meta: Any) -> None:
        seen.append(meta)
        if meta == "boom":
            msg = "a callback bug"
            raise RuntimeError(msg)

    original = Pipeline.process

    def process(self: Pipeline, image: np.ndarray, **kw: Any) -> FrameResult:
        if isinstance(image, np.ndarray) and image.shape == (7, 7, 3):
            msg = "unexpected"
            raise ZeroDivisionError(msg)
        return original(self, image, **kw)

    monkeypatch.setattr(Pipeline, "process", process)
    bad: list[Any] = [
        None,
        np.zeros((48, 64, 3), np.float32),
        np.zeros((48, 64), np.uint8),
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((48, 64, 4), np.uint8),
        [[1, 2, 3]],
        "frame.png",
    ]
    with LiveRuntime.from_models(models, memory, on_result=on_result) as rt:
        for i, image in enumerate(bad):
            rt.submit("cam", image, i)
            wait_for(lambda n=i + 1: rt.stats().sources["cam"].errors == n, f"bad frame {i}")
        rt.submit("cam", np.zeros((7, 7, 3), np.uint8), "odd")
        wait_for(lambda: rt.stats().sources["cam"].errors == len(bad) + 1, "the odd frame")
        rt.submit("cam", frame(photos["obama2"]), "boom")
        wait_for(lambda: rt.stats().callback_errors == 1, "the failing callback")
        rt.submit("cam", frame(photos["obama2"]), "fine")
        wait_for(lambda: "fine" in seen, "a good frame after all that")
        s = rt.stats().sources["cam"]
        assert (s.received, s.processed, s.errors) == (len(bad) + 3, 2, len(bad) + 1)
        assert seen == ["boom", "fine"]
        assert len(s.last_errors) == 5
        assert any("BGR uint8" in e for e in s.last_errors)
        assert s.last_errors[-1] == "ZeroDivisionError: unexpected"


@pytest.mark.network
@pytest.mark.slow
def test_descriptions_arrive_per_source_with_their_meta(
    runtime: Callable[..., LiveRuntime], results: Results, photos: dict[str, np.ndarray]
) -> None:
    rt = runtime(describe=True)
    obama = frame(photos["obama2"])

    def step(source: str, image: np.ndarray, meta: Any, described: int) -> None:
        n = len(results.of(source))
        rt.submit(source, image, meta)
        wait_for(lambda: len(results.of(source)) == n + 1, f"frame {meta}")
        wait_for(lambda: rt.stats().described["delivered"] == described, f"description {meta}")

    header = {"stamp": 12.5, "frame_id": "cam_optical"}
    step("cam", obama, header, 1)
    ((source, index, answer, meta),) = results.descriptions
    assert (source, index) == ("cam", 0) and meta is header
    assert "Barack" in answer.text and "basketball" in answer.text
    step("cam", obama, "same set", 1)  # nothing changed: no new description
    step("cam2", obama, "other camera", 2)  # each source has its own change detection
    step("cam", frame(photos["obama2"], photos["biden"]), "joined", 3)
    source, index, answer, meta = results.descriptions[-1]
    assert (source, index, meta) == ("cam", 2, "joined")
    assert "1 person I do not know" in answer.text
    rt.set_config(describe_every=0.05)
    rt.set_describe_every("cam", 0.0)  # this camera's own period: only on changes
    time.sleep(0.1)
    step("cam2", obama, "period", 3 + 1)  # the period passed: described again
    step("cam", frame(photos["obama2"], photos["biden"]), "own period", 3 + 1)  # not here
    stats = rt.stats()
    assert stats.described["requested"] == 4 and stats.described["done"] == 4
    assert stats.generator["requests"] == 4
    with pytest.raises(InvalidInputError, match="describe_every of 'cam' must be 0..86400"):
        rt.set_describe_every("cam", -1.0)


@pytest.mark.network
@pytest.mark.slow
def test_ask_about_an_image_or_the_latest_frame(
    runtime: Callable[..., LiveRuntime], results: Results, photos: dict[str, np.ndarray]
) -> None:
    rt = runtime()
    with pytest.raises(InvalidInputError, match="no frame"):
        rt.ask("Who is here?")
    answer, result = rt.ask("Who is here?", image=frame(photos["obama2"], photos["biden"]))
    assert names(result) == [("known", "Barack"), ("unknown", None)]
    assert "Barack" in answer.text and answer.backend == "template"
    rt.submit("cam", frame(photos["obama3"]), "m")
    wait_for(lambda: len(results.of("cam")) == 1, "a frame")
    answer, result = rt.ask("Is Barack here?", source="cam")
    assert result is results.of("cam")[0][0]
    assert answer.text.startswith("Yes, Barack is here")
    assert rt.ask("Is Barack here?").frame is result  # the latest of any source
    with pytest.raises(InvalidInputError, match="nope"):
        rt.ask("Who?", source="nope")
    with pytest.raises(InvalidInputError, match="question"):
        rt.ask("  ", source="cam")
    with pytest.raises(InvalidInputError, match="BGR uint8"):
        rt.ask("Who?", image=np.zeros((4, 4), np.uint8))
    assert rt.stats().ask_generator["requests"] == 3


@pytest.mark.network
@pytest.mark.slow
def test_set_config_is_checked_and_applies_to_the_next_frame(
    runtime: Callable[..., LiveRuntime], results: Results, photos: dict[str, np.ndarray]
) -> None:
    rt = runtime(embed_every=1)  # every frame adds a vote: the old ones must not outvote
    img = frame(photos["obama2"])

    def next_frame(meta: str) -> FrameResult:
        rt.submit("cam", img, meta)
        wait_for(lambda: any(m == meta for _, m in results.of("cam")), f"frame {meta}")
        return next(r for r, m in results.of("cam") if m == meta)

    for i in range(4):
        assert names(next_frame(f"before{i}")) == [("known", "Barack")]
    rt.set_config(face_threshold=0.99)
    strict = next_frame("strict")  # the same track, now unknown at once
    assert names(strict) == [("unknown", None)]
    assert strict.recognitions[0].track_id == results.of("cam")[0][0].recognitions[0].track_id
    assert rt.config.face_threshold == 0.99
    rt.set_config(face_threshold=None, top_k=1)  # back to the calibrated value
    assert names(next_frame("calibrated")) == [("known", "Barack")]
    before = rt.config
    for changes, word in (
        ({"top_k": 0}, "top_k"),
        ({"face_threshold": 2.0}, "face_threshold"),
        ({"margin": 1.5}, "margin"),
        ({"describe_every": -1}, "describe_every"),
        ({"bogus": 1}, "bogus"),
        ({"describe": True}, "cannot change"),
        ({"backend": "auto"}, "cannot change"),
    ):
        with pytest.raises(InvalidInputError, match=word):
            rt.set_config(**changes)
    assert rt.config == before
    assert names(next_frame("after")) == [("known", "Barack")]


@pytest.mark.network
@pytest.mark.slow
def test_close_is_prompt_and_final(
    runtime: Callable[..., LiveRuntime],
    results: Results,
    models: FaceModels,
    memory: Memory,
    photos: dict[str, np.ndarray],
) -> None:
    rt = runtime(describe=True)
    img = frame(photos["obama2"])
    for i in range(20):
        rt.submit(f"cam{i % 3}", img, i)
    wait_for(lambda: len(results.frames) >= 1, "a frame")
    started = time.perf_counter()
    assert rt.close(10)
    assert time.perf_counter() - started < 5
    assert rt.closed and rt.close(1)  # twice is fine
    received = sum(s.received for s in rt.stats().sources.values())
    rt.submit("cam0", img, "late")  # ignored
    assert sum(s.received for s in rt.stats().sources.values()) == received
    time.sleep(0.2)
    assert all(m != "late" for _, _, m in results.frames)
    with pytest.raises(InvalidInputError, match="closed"):
        rt.ask("Who is here?", image=img)
    with pytest.raises(ConfigError, match="objects"):
        LiveRuntime.from_models(models, memory, LiveConfig(objects=True))
