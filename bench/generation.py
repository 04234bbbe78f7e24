#!/usr/bin/env python3
"""Generation: speed of ORT GenAI INT4 against transformers fp32, and name faithfulness.

Speed: the same SmolLM2-135M-Instruct weights (the pinned Q4_1 GGUF, dequantised to the fp32
Hugging Face folder that `make models` keeps, and built from it into ORT GenAI INT4), the same
chat-templated RAP prompt (a two-concept text scene), greedy decoding forced to exactly N new
tokens, runs interleaved (ort, hf, ort, hf, ...) so machine noise hits both alike. Time to first
token = prompt processing plus the first token; decode tokens/s = the tokens after the first
over the time after the first. Medians are reported, with the ratio.

Faithfulness: a fixed, seeded set of scenes (1 to 3 retrieved concepts out of a 16-concept
memory of people, pets and things, with info text; questions that describe, ask about someone
in view, or ask about someone of the memory who is *not* in view). For each, the backend's raw
first answer and the guarded answer (regenerate once, then template) are scored by two
measures: a *memory leak* is a memory name that the retriever did not return for that scene
(exact, whole word); an *invented name* is a capitalised word that is neither a retrieved name
nor in the prompt's data (the guard's own heuristic, so the after-guard figure for it is not
independent evidence).

Stall: how long a loop that ticks every millisecond waits while a description is written, with
the backend in a worker thread and in a child process (ONNX Runtime GenAI holds the GIL while
it reads a prompt).

Example:
    python bench/generation.py --tokens 64 --reps 5 --scenes 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

from rap_edge.generate import (
    DESCRIBE,
    ConceptRef,
    Generator,
    build_prompt,
    chat_parts,
    default_llm_dir,
    open_backend,
    unfaithful_names,
)

_MEMORY = [
    ("Ana", "person", "Ana is the owner's sister; she loves green tea."),
    ("Bo", "dog", "Bo is a golden retriever puppy who chews shoes."),
    ("Carl", "person", "Carl is the neighbour; he fixes bicycles."),
    ("Dina", "person", "Dina is the owner's daughter, she is 7 and plays violin."),
    ("Eli", "person", "Eli is a colleague from the lab."),
    ("Fig", "cat", "Fig is a grey cat that sleeps on the sofa."),
    ("Gus", "person", "Gus is the owner's father; he walks with a cane."),
    ("Hana", "person", "Hana is the babysitter on Tuesdays."),
    ("Red mug", "mug", "The owner's red coffee mug with a chipped handle."),
    ("Kiwi", "parrot", "Kiwi is a green parrot who says hello."),
    ("Lena", "person", "Lena is the owner's best friend from school."),
    ("Milo", "person", "Milo is the owner's son; he likes football."),
    ("Nori", "dog", "Nori is a black labrador, very calm."),
    ("Otto", "person", "Otto is the postman."),
    ("Blue bike", "bicycle", "The owner's blue city bike."),
    ("Pia", "person", "Pia is the owner's wife; she is a doctor."),
]
_PLACES = ("left", "centre", "right", "top left", "bottom right")


def scenes(n: int, seed: int = 7) -> list[tuple[str, list[ConceptRef], list[str], int]]:
    """``(question, retrieved concepts, names asked about, unknown faces)`` per scene."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kept = rng.sample(_MEMORY, rng.randint(1, 3))
        refs = [
            ConceptRef(name, cat, info, round(rng.uniform(0.85, 0.99), 3), rng.choice(_PLACES))
            for name, cat, info in kept
        ]
        absent = rng.choice([m for m in _MEMORY if m not in kept])[0]
        kind = i % 3
        if kind == 0:
            q, asked = DESCRIBE, []
        elif kind == 1:
            q, asked = f"What is {kept[0][0]} doing?", [kept[0][0]]
        else:
            q, asked = f"Is {absent} here?", [absent]
        out.append((q, refs, asked, rng.choice([0, 0, 1])))
    return out


def _leaks(text: str, allowed: list[str]) -> list[str]:
    names = [m[0] for m in _MEMORY if m[0] not in allowed]
    return [n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text, re.IGNORECASE)]


def faithfulness(backend_name: str, model: str | None, n: int, max_tokens: int) -> dict[str, Any]:
    backend, note = open_backend(backend_name, model)
    known = [m[0] for m in _MEMORY]
    gen = Generator(backend, known_names=known, max_tokens=max_tokens)
    rows: list[dict[str, Any]] = []
    for q, refs, asked, unknown in scenes(n):
        prompt = build_prompt(q, refs, asked=asked, unknown=unknown)
        allowed = prompt.allowed_names  # retrieved from the frame, and by text from the question
        context = " ".join([prompt.question, *(c.info for c in prompt.concepts)])
        absent = [a for a in asked if a not in [c.name for c in prompt.concepts]]
        # The raw answer is the guard's first attempt: the pieces streamed before the first
        # "reset" (a rejection) or "done".
        pieces: list[str] = []
        first: list[float] = []

        def on_event(
            kind: str, text: str, pieces: list[str] = pieces, first: list[float] = first
        ) -> None:
            if first:
                return
            if kind == "token":
                pieces.append(text)
            else:
                first.append(time.perf_counter())

        t = time.perf_counter()
        res = gen.answer(prompt, on_event)
        raw = "".join(pieces).strip()
        raw_ms = (first[0] - t) * 1000
        rows.append(
            {
                "question": q,
                "retrieved": prompt.allowed_names,
                "raw": raw,
                "final": res.text,
                "raw_leaks": _leaks(raw, allowed),
                "final_leaks": _leaks(res.text, allowed),
                "raw_invented": unfaithful_names(raw, allowed, known, context, absent),
                "final_invented": unfaithful_names(res.text, allowed, known, context, absent),
                "regenerated": res.regenerated,
                "fell_back": res.fell_back,
                "raw_ms": raw_ms,
                "names_a_retrieved": any(
                    re.search(rf"(?<!\w){re.escape(c.name)}(?!\w)", res.text, re.IGNORECASE)
                    for c in prompt.concepts
                ),
            }
        )

    def rate(key: str) -> float:
        return round(sum(not r[key] for r in rows) / len(rows), 4)

    return {
        "backend": note,
        "scenes": len(rows),
        "faithful_raw_memory": rate("raw_leaks"),
        "faithful_final_memory": rate("final_leaks"),
        "faithful_raw_all": round(
            sum(not r["raw_leaks"] and not r["raw_invented"] for r in rows) / len(rows), 4
        ),
        "faithful_final_all": round(
            sum(not r["final_leaks"] and not r["final_invented"] for r in rows) / len(rows), 4
        ),
        "regenerated": sum(r["regenerated"] for r in rows),
        "fell_back": sum(r["fell_back"] for r in rows),
        "final_names_a_retrieved_concept": round(
            sum(r["names_a_retrieved"] for r in rows) / len(rows), 4
        ),
        "raw_ms_p50": round(statistics.median(r["raw_ms"] for r in rows), 1),
        "examples": rows[:6],
    }


def speed(ort_dir: Path, hf_dir: Path, tokens: int, reps: int) -> dict[str, Any]:
    # Heavy imports here, so that --help works without them.
    import onnxruntime_genai as og
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    prompt = build_prompt(
        DESCRIBE,
        [
            ConceptRef("Ana", "person", _MEMORY[0][2], 0.95, "left"),
            ConceptRef("Bo", "dog", _MEMORY[1][2], 0.93, "right"),
        ],
    )
    system, user = chat_parts(prompt)
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    from rap_edge.generate._ortgenai import genai_config

    t = time.perf_counter()
    om = og.Model(genai_config(ort_dir))  # as the backend loads it: one thread per core
    otok = og.Tokenizer(om)
    load_ort = time.perf_counter() - t
    ids = list(otok.encode(otok.apply_chat_template(json.dumps(msgs), add_generation_prompt=True)))
    t = time.perf_counter()
    htok = AutoTokenizer.from_pretrained(hf_dir)
    hm = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()  # type: ignore[no-untyped-call]
    load_hf = time.perf_counter() - t
    enc: Any = htok.apply_chat_template(  # a BatchEncoding (return_dict=True)
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    same_prompt = enc["input_ids"][0].tolist() == ids

    def run_ort() -> tuple[float, float]:
        p = og.GeneratorParams(om)
        p.set_search_options(
            max_length=len(ids) + tokens, min_length=len(ids) + tokens, do_sample=False
        )
        g = og.Generator(om, p)
        t0 = time.perf_counter()
        g.append_tokens(ids)
        n, first = 0, 0.0
        while not g.is_done():
            g.generate_next_token()
            g.get_next_tokens()
            n += 1
            if n == 1:
                first = time.perf_counter()
        end = time.perf_counter()
        return first - t0, (n - 1) / (end - first)

    class Times(BaseStreamer):
        def __init__(self) -> None:
            self.t: list[float] = []

        def put(self, value: object) -> None:  # noqa: ARG002
            self.t.append(time.perf_counter())

        def end(self) -> None:
            pass

    def run_hf() -> tuple[float, float]:
        s = Times()
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = hm.generate(
                **enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, streamer=s
            )
            end = time.perf_counter()
        n = out.shape[1] - enc["input_ids"].shape[1]
        first = s.t[1]  # t[0] is the prompt being pushed
        return first - t0, (n - 1) / (end - first)

    run_ort()
    run_hf()  # warm-up
    res: dict[str, list[tuple[float, float]]] = {"ort": [], "hf": []}
    for _ in range(reps):
        res["ort"].append(run_ort())
        res["hf"].append(run_hf())

    def med(k: str, i: int) -> float:
        return statistics.median(r[i] for r in res[k])

    return {
        "prompt_tokens": len(ids),
        "new_tokens": tokens,
        "reps": reps,
        "same_prompt_tokens": same_prompt,
        "torch_threads": torch.get_num_threads(),
        "ort_threads": len(os.sched_getaffinity(0)),
        "ortgenai_int4": {
            "ttft_s": round(med("ort", 0), 4),
            "decode_tok_s": round(med("ort", 1), 1),
            "load_s": round(load_ort, 2),
        },
        "transformers_fp32": {
            "ttft_s": round(med("hf", 0), 4),
            "decode_tok_s": round(med("hf", 1), 1),
            "load_s": round(load_hf, 2),
        },
        "decode_speedup": round(med("ort", 1) / med("hf", 1), 2),
        "ttft_speedup": round(med("hf", 0) / med("ort", 0), 2),
        "runs": res,
    }


def stall(reps: int) -> dict[str, Any]:
    """How long a 1 ms ticking loop (a stand-in for the camera loop) waits while a description
    is written: the backend in a worker thread of this process vs in a child process."""
    import threading

    prompt = build_prompt(DESCRIBE, [ConceptRef(n, c, i, 0.9, "left") for n, c, i in _MEMORY[:3]])
    out: dict[str, Any] = {}
    for label, isolate in (("thread", False), ("child_process", True)):
        backend, _ = open_backend("ortgenai", threads=1, isolate=isolate)
        gaps: list[float] = []
        for _ in range(reps):
            th = threading.Thread(target=lambda b=backend: list(b.generate(prompt, max_tokens=32)))
            th.start()
            last, worst = time.perf_counter(), 0.0
            while th.is_alive():
                time.sleep(0.001)
                now = time.perf_counter()
                worst, last = max(worst, now - last), now
            gaps.append(worst * 1000)
        backend.close()
        out[label] = {
            "max_gap_ms_median": round(statistics.median(gaps), 1),
            "max_gap_ms_worst": round(max(gaps), 1),
        }
    return out


# -- descriptions: a metric that does not grade itself ------------------------------------------

# Concepts of the scene memory: one per identity of the labelled set (enrolled from its _00
# photo), some with a relation in their info, some with a role, some with neither.
_PEOPLE = {
    "barack_obama": (
        "Barack",
        "Barack is a former president of the United States; he plays basketball.",
    ),
    "joe_biden": ("Joe", "Joe is the owner's uncle; he drinks tea in the morning."),
    "ben_affleck": ("Ben", "Ben is an actor from Boston."),
    "elton_john": ("Elton", "Elton is a singer who plays the piano."),
    "jerry_seinfeld": ("Jerry", "Jerry is the owner's neighbour; he collects old cars."),
    "madonna": ("Madonna", "Madonna sings and dances."),
    "mindy_kaling": ("Mindy", "Mindy is the owner's sister; she writes stories."),
    "john_salley": ("Salley", "Salley is a friend from the gym."),
    "john_savage": ("Savage", "Savage comes on Mondays to fix the garden."),
    "john_simm": ("Simm", "Simm is a colleague from work."),
}
# Relations and roles an answer must not claim unless some info in its prompt says so. This is
# the benchmark's own list (wider than anything in rap_edge), written from the issue's
# examples and common family, household and job words.
RELATIONS = (
    "owner|owners|neighbour|neighbor|neighbours|neighbors|friend|friends|sister|brother|"
    "mother|mom|mum|father|dad|son|daughter|wife|husband|uncle|aunt|cousin|nephew|niece|"
    "grandmother|grandfather|grandma|grandpa|grandson|granddaughter|boyfriend|girlfriend|"
    "partner|fiance|fiancee|colleague|coworker|co-worker|boss|employee|teacher|student|"
    "babysitter|nanny|roommate|flatmate|family|parent|parents|child|children|relative|"
    "president|actor|actress|singer|pianist|doctor|nurse|chef|officer|gardener|"
    "photographer|player|coach|guest|visitor|stranger|intruder|burglar|thief|host|manager"
)
_RELATION_RE = re.compile(rf"\b({RELATIONS})\b", re.IGNORECASE)
_NEG_RE = re.compile(r"\b(not|no|nobody|none|never|cannot)\b|n't\b", re.IGNORECASE)
DESC_QUESTIONS = ("Describe what you see.", "Who is in this photo?", "absent", "doing")


def _say(text: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def _sentences(text: str) -> list[str]:
    """The benchmark's own sentence split (independent of rap_edge.generate)."""
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if s.strip()]


def _repeats(text: str) -> bool:
    keys = [" ".join(re.findall(r"[a-z0-9']+", s.lower())) for s in _sentences(text)]
    keys = [k for k in keys if k]
    return len(keys) != len(set(keys))


def desc_scenes(labelled: Path, limit: int, seed: int = 11) -> list[dict[str, Any]]:
    """Scenes from real photos with known truth, recognised by the real session.

    Every non-enrolment photo of the 10 identities (one face), the distractors (a face nobody
    enrolled) and the ``two_people`` condition (two faces, each labelled); a question each,
    cycling through "describe", "who", "is <someone not in view> here?" and "what is <someone
    in view> doing?". Ground truth is the label, not the recognition.
    """
    import tempfile

    from rap_edge.app import Session, Settings
    from rap_edge.memory import Memory

    rng = random.Random(seed)
    photos: list[tuple[Path, list[str]]] = []
    for ident in sorted(_PEOPLE):
        photos += [(p, [ident]) for p in sorted((labelled / ident).glob("*.jpg"))[1:]]
    photos += [(p, []) for p in sorted((labelled / "_distractors").glob("*.jpg"))]
    two = labelled / "conditions" / "two_people"
    prov = json.loads((two / "provenance.json").read_text())["files"] if two.is_dir() else {}
    for rel, rec in sorted(prov.items()):
        if not rel.split("/")[-1].endswith("_00.jpg"):
            photos.append((two / rel, [f["label"] for f in rec["faces"] if f["label"] in _PEOPLE]))
    rng.shuffle(photos)
    photos = photos[:limit]
    out: list[dict[str, Any]] = []
    tmp = tempfile.TemporaryDirectory(prefix="rap-edge-desc-")
    with (
        Memory.init(Path(tmp.name) / "mem") as mem,
        Session.open(Settings(), memory=mem) as session,
    ):
        for ident, (name, info) in sorted(_PEOPLE.items()):
            session.add_concept(
                name,
                "person",
                info=info,
                files=[labelled / ident / f"{ident}_00.jpg"],
                largest=True,
            )
        import cv2

        for i, (path, truth_ids) in enumerate(photos):
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            frame = session.recognise(img, source=path.name)
            truth = [_PEOPLE[t][0] for t in truth_ids]
            kind = DESC_QUESTIONS[i % len(DESC_QUESTIONS)]
            recognised = [r.name for r in frame.recognitions if r.decision == "known" and r.name]
            if kind == "absent":
                others = sorted(n for n, _ in _PEOPLE.values() if n not in truth)
                question = f"Is {rng.choice(others)} here?"
            elif kind == "doing" and recognised:
                question = f"What is {recognised[0]} doing?"
            else:
                question = DESC_QUESTIONS[i % 2]
            prompt = session.prompt(frame, question)
            out.append(
                {
                    "photo": str(path.relative_to(labelled)),
                    "truth": truth,
                    "faces": len(truth_ids) or 1,
                    "recognised": recognised,
                    "question": question,
                    "prompt": prompt,
                    "split": "calibration" if i % 3 == 0 else "held-out",
                }
            )
    tmp.cleanup()
    return out


def score_answer(text: str, scene: dict[str, Any]) -> dict[str, Any]:
    """The metric: independent of the guard and of the decoder's stopping rules."""
    prompt = scene["prompt"]
    names = [n for n, _ in _PEOPLE.values()]
    truth = set(scene["truth"])
    should = [n for n in scene["recognised"] if n in truth]  # in view and recognised
    asked_absent = [a for a in prompt.asked if a not in truth]
    wrong = []
    said = [n for n in names if _say(text, n)]
    for n in said:
        if n in truth:
            continue
        if n in asked_absent and all(_NEG_RE.search(s) for s in _sentences(text) if _say(s, n)):
            continue  # "I do not see Joe here"
        wrong.append(n)
    given = " ".join([prompt.question, *(c.info for c in prompt.concepts)]).lower()
    relations = sorted(
        {
            m.lower()
            for m in _RELATION_RE.findall(text)
            if not re.search(rf"\b{m.lower()}\b", given)
        }
    )
    return {
        "named": [n for n in should if _say(text, n)],
        "should": should,
        "said": said,
        "wrong": wrong,
        "relations": relations,
        "repeats": _repeats(text),
        "words": len(text.split()),
        "sentences": len(_sentences(text)),
    }


def descriptions(  # noqa: PLR0913
    scenes: list[dict[str, Any]],
    backend_name: str,
    *,
    max_tokens: int,
    max_sentences: int = 2,
    split: str = "held-out",
    model: str | None = None,
    grounded: bool = True,
) -> dict[str, Any]:
    """Every scene of ``split`` answered by ``backend_name``; the metric over the final answers.

    With ``split="all"`` every scene is answered once and the summary holds the metric of each
    split (``by_split``), so that a choice made on the calibration split is reported held out.
    """
    from rap_edge.generate import unfaithful_names

    backend, note = open_backend(backend_name, model)
    known = [n for n, _ in _PEOPLE.values()]
    gen = Generator(
        backend,
        known_names=known,
        max_tokens=max_tokens,
        max_sentences=max_sentences,
        grounded=grounded,
    )
    rows = []
    chosen = [s for s in scenes if split == "all" or s["split"] == split]
    t0 = time.perf_counter()
    for sc in chosen:
        prompt = sc["prompt"]
        pieces: list[str] = []
        first: list[bool] = []

        def on_event(
            kind: str, text: str, pieces: list[str] = pieces, first: list[bool] = first
        ) -> None:
            if first:
                return
            if kind == "token":
                pieces.append(text)
            else:
                first.append(True)

        res = gen.answer(prompt, on_event)
        raw = "".join(pieces).strip()
        final = score_answer(res.text, sc)
        rawm = score_answer(raw, sc)
        raw_ok = not rawm["wrong"] and not rawm["relations"] and not rawm["repeats"]
        context = " ".join([prompt.question, *(c.info for c in prompt.concepts)])
        in_view = {c.name.lower() for c in prompt.concepts}
        absent = [a for a in prompt.asked if a.lower() not in in_view]
        old_guard = bool(
            unfaithful_names(raw, prompt.allowed_names, known, context, absent, world=False)
        )
        new_guard = bool(unfaithful_names(raw, prompt.allowed_names, known, context, absent))
        rows.append(
            {
                "photo": sc["photo"],
                "split": sc["split"],
                "question": sc["question"],
                "truth": sc["truth"],
                "recognised": sc["recognised"],
                "raw": raw,
                "final": res.text,
                "backend": res.backend,
                "regenerated": res.regenerated,
                "fell_back": res.fell_back,
                "stopped": res.stopped,
                "raw_correct": raw_ok,
                "raw_repeats": rawm["repeats"],
                "old_guard_rejects": old_guard,
                "new_guard_rejects": new_guard,
                "first_token_ms": res.first_token_ms,
                **final,
            }
        )
    out = summarise(rows)
    out.update(
        {
            "backend": note,
            "split": split,
            "grounded": grounded,
            "max_sentences": max_sentences,
            "seconds": round(time.perf_counter() - t0, 1),
            "rows": rows,
        }
    )
    if split == "all":
        out["by_split"] = {
            name: summarise([r for r in rows if r["split"] == name])
            for name in ("calibration", "held-out")
        }
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The metric over answered scenes (rows of :func:`descriptions`)."""
    n = len(rows)
    should = sum(len(r["should"]) for r in rows)
    said = sum(len(r["said"]) for r in rows)
    correct_raw = [r for r in rows if r["raw_correct"]]
    return {
        "scenes": n,
        "name_recall": round(sum(len(r["named"]) for r in rows) / max(should, 1), 4),
        "name_precision": round(1 - sum(len(r["wrong"]) for r in rows) / max(said, 1), 4),
        "invented_relation_rate": round(sum(bool(r["relations"]) for r in rows) / max(n, 1), 4),
        "repetition_rate": round(sum(r["repeats"] for r in rows) / max(n, 1), 4),
        # the model's first attempt, before the guard and grounding (with --max-sentences 0 or
        # the :raw variant: before the stopping rules too)
        "raw_repetition_rate": round(sum(r["raw_repeats"] for r in rows) / max(n, 1), 4),
        "words_mean": round(statistics.mean(r["words"] for r in rows), 1),
        "sentences_mean": round(statistics.mean(r["sentences"] for r in rows), 2),
        "raw_correct": len(correct_raw),
        "guard_false_rejections": round(
            sum(r["regenerated"] for r in correct_raw) / max(len(correct_raw), 1), 4
        ),
        "old_guard_false_rejections": round(
            sum(r["old_guard_rejects"] for r in correct_raw) / max(len(correct_raw), 1), 4
        ),
        "new_guard_false_rejections": round(
            sum(r["new_guard_rejects"] for r in correct_raw) / max(len(correct_raw), 1), 4
        ),
        "regenerated": sum(r["regenerated"] for r in rows),
        "fell_back": sum(r["fell_back"] for r in rows),
    }


def print_desc(results: list[dict[str, Any]]) -> None:
    print(
        "\n| backend | split | scenes | name recall | name precision | invented relations | "
        "repetition (first attempt) | words | guard false rejections |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for res in results:
        splits = res.get("by_split") or {res["split"]: res}
        for split, r in splits.items():
            print_desc_row(res["label"], split, r)


def print_desc_row(label: str, split: str, r: dict[str, Any]) -> None:
    print(
        f"| {label} | {split} | {r['scenes']} | {r['name_recall']:.3f} | "
        f"{r['name_precision']:.3f} | {r['invented_relation_rate']:.1%} | "
        f"{r['repetition_rate']:.1%} ({r['raw_repetition_rate']:.1%} raw) | {r['words_mean']} | "
        f"{r['guard_false_rejections']:.1%} ({r['raw_correct']} correct raw) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per timed run")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per runtime")
    parser.add_argument("--scenes", type=int, default=60, help="faithfulness scenes")
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="answer length in the faithfulness part"
    )
    parser.add_argument(
        "--faith-backend", default="ortgenai", choices=["ortgenai", "transformers", "template"]
    )
    parser.add_argument(
        "--parts",
        default="speed,stall,faith",
        help="comma-separated parts to run (default: all three)",
    )
    parser.add_argument(
        "--labelled",
        type=Path,
        default=None,
        help="labelled set from `python -m calibration.labelled` (descriptions part; default "
        "$RAP_EDGE_LABELLED)",
    )
    parser.add_argument("--desc-scenes", type=int, default=240, help="description scenes")
    parser.add_argument(
        "--desc-backends",
        default="ortgenai,transformers,template",
        help="backends for the descriptions part; NAME:free answers without grounding, NAME:raw "
        "without grounding nor the stopping rules (the raw decoding)",
    )
    parser.add_argument(
        "--desc-split", default="held-out", choices=["held-out", "calibration", "all"]
    )
    parser.add_argument(
        "--max-sentences", type=int, default=2, help="sentence cap (0: no stopping rules)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "generation.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ort_dir, hf_dir = default_llm_dir("ortgenai"), default_llm_dir("transformers")
    for d in (ort_dir, hf_dir):
        if not d.is_dir():
            raise SystemExit(f"{d} is missing: run `make models` first")
    parts = set(args.parts.split(","))
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    sp, st, fa = old.get("speed"), old.get("stall"), old.get("faithfulness")
    de = old.get("descriptions")
    if "speed" in parts:
        sp = speed(ort_dir, hf_dir, args.tokens, args.reps)
        print_speed(sp, args)
    if "stall" in parts:
        st = stall(args.reps)
        print_stall(st, args)
    if "faith" in parts:
        fa = faithfulness(args.faith_backend, None, args.scenes, args.max_tokens)
        print_faith(fa)
    if "desc" in parts:
        labelled = args.labelled or os.environ.get("RAP_EDGE_LABELLED")
        if not labelled:
            msg = "the descriptions part needs --labelled DIR (python -m calibration.labelled)"
            raise SystemExit(msg)
        scenes = desc_scenes(Path(labelled), args.desc_scenes)
        print(f"{len(scenes)} scenes", flush=True)
        de = []
        for label in args.desc_backends.split(","):
            name, _, variant = label.partition(":")
            if variant not in ("", "free", "raw"):
                raise SystemExit(f"unknown variant {variant!r} in {label!r} (free or raw)")
            r = descriptions(
                scenes,
                name,
                max_tokens=args.max_tokens,
                max_sentences=0 if variant == "raw" else args.max_sentences,
                split=args.desc_split,
                grounded=not variant,
            )
            r["label"] = label
            de.append(r)
            print_desc([r])
            write_out(args.out, {"speed": sp, "stall": st, "faithfulness": fa, "descriptions": de})
            # after each backend: a long run keeps its parts
        print_desc(de)
    write_out(args.out, {"speed": sp, "stall": st, "faithfulness": fa, "descriptions": de})


def write_out(out: Path, parts: dict[str, object]) -> None:
    """``bench/results/generation.json``; parts not run this time are kept from before."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                **parts,
                "machine": {"cpu": platform.processor(), "cores": os.cpu_count()},
                "date": time.strftime("%Y-%m-%d"),
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out} (parts not run this time are kept from the previous file)", flush=True)


def print_speed(sp: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nSmolLM2-135M-Instruct, {sp['prompt_tokens']}-token RAP prompt, "
        f"{args.tokens} new tokens, median of {args.reps} interleaved runs "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores)\n"
    )
    print("| runtime | TTFT | decode tok/s | load |\n|---|---:|---:|---:|")
    for key, label in (
        ("ortgenai_int4", "ORT GenAI INT4"),
        ("transformers_fp32", "transformers fp32"),
    ):
        r = sp[key]
        print(
            f"| {label} | {r['ttft_s'] * 1000:.0f} ms | {r['decode_tok_s']:.1f} | "
            f"{r['load_s']:.1f} s |"
        )
    print(f"\ndecode speed-up {sp['decode_speedup']}x, TTFT speed-up {sp['ttft_speedup']}x")


def print_stall(st: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        "\nlongest wait of a 1 ms loop while a description is written (one decoder thread), "
        f"{args.reps} runs:\n\n| backend runs in | median of max gaps | worst |\n"
        "|---|---:|---:|"
    )
    for key, label in (("thread", "a worker thread"), ("child_process", "a child process")):
        print(
            f"| {label} | {st[key]['max_gap_ms_median']:.0f} ms | "
            f"{st[key]['max_gap_ms_worst']:.0f} ms |"
        )


def print_faith(fa: dict[str, Any]) -> None:
    print(f"\nfaithfulness over {fa['scenes']} scenes ({fa['backend']}):\n")
    print("| measure | raw answer | after the guard |\n|---|---:|---:|")
    print(
        f"| no unretrieved memory name | {fa['faithful_raw_memory']:.3f} | "
        f"{fa['faithful_final_memory']:.3f} |"
    )
    print(
        f"| no unretrieved or invented name | {fa['faithful_raw_all']:.3f} | "
        f"{fa['faithful_final_all']:.3f} |"
    )
    print(
        f"\nregenerated {fa['regenerated']}, fell back to the template {fa['fell_back']}; "
        f"final answers naming a retrieved concept: {fa['final_names_a_retrieved_concept']}"
    )


if __name__ == "__main__":
    main()
