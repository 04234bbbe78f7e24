"""``rap-edge ask IMAGE "question"``: recognise, retrieve, and answer in words."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from rap_edge.cli._face_opts import (
    add_memory_option,
    add_model_options,
    add_object_options,
    load_models,
    load_objects,
    load_thresholds,
    open_optional_memory,
)

if TYPE_CHECKING:
    import argparse

    from rap_edge.generate import ConceptRef, Prompt
    from rap_edge.memory import Memory
    from rap_edge.pipeline import FrameResult

__all__ = ["frame_prompt", "register"]


def frame_prompt(result: FrameResult, memory: Memory | None, question: str, *,
                 max_concepts: int = 5, names_from_question: bool = True) -> Prompt:
    """The RAP prompt for a processed frame.

    Its known concepts (with info and place in the frame) plus the concepts the question names
    (text retrieval).
    """
    from rap_edge.generate import ConceptRef, build_prompt, where  # noqa: PLC0415
    from rap_edge.pipeline import mentioned_concepts  # noqa: PLC0415

    refs: dict[str, ConceptRef] = {}
    unknown = 0
    for r in result.recognitions:
        if r.decision != "known" or r.concept_id is None:
            unknown += r.kind == "face"
            continue
        info, category, image = "", "", None
        if memory is not None:
            c = memory.get(r.concept_id)
            info, category = c.info, c.category
            image = c.images[0].path if c.images else None
        ref = ConceptRef(r.name or "", category, info, r.score or 0.0,
                         where(r.box, result.width, result.height), image)
        if r.concept_id not in refs or ref.score > refs[r.concept_id].score:
            refs[r.concept_id] = ref
    asked = ([c.name for c in mentioned_concepts(question, memory)]
             if memory and names_from_question else [])
    return build_prompt(question, list(refs.values()), max_concepts=max_concepts,
                        unknown=unknown, asked=asked)


def cmd_ask(args: argparse.Namespace) -> int:
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from rap_edge.errors import InvalidInputError  # noqa: PLC0415
    from rap_edge.generate import Generator, TemplateBackend  # noqa: PLC0415
    from rap_edge.pipeline import Pipeline, PipelineConfig  # noqa: PLC0415

    img = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if img is None:
        msg = f"{args.image}: cannot read the image (missing, corrupt or not an image)"
        raise InvalidInputError(msg)
    models = load_models(args)
    thresholds = load_thresholds(args, models)
    memory, _ = open_optional_memory(args, readonly=True)
    pipe = Pipeline(models, memory, thresholds=thresholds,
                    config=PipelineConfig(track=False, tiles=args.tiles or 1,
                                          margin=thresholds.margin),
                    objects=load_objects(args) if args.objects else None)
    result = pipe.process(np.asarray(img, dtype=np.uint8))
    prompt = frame_prompt(result, memory, args.question)
    known = ([n for c in memory.list_concepts() for n in (c.name, *c.aliases)]
             if memory else [])
    generator = Generator(TemplateBackend(), known_names=known)
    answer = generator.answer(prompt)
    if args.json:
        print(json.dumps({"answer": answer.text, "backend": answer.backend,
                          "regenerated": answer.regenerated, "fell_back": answer.fell_back,
                          "recognitions": [r.to_json() for r in result.recognitions],
                          "dropped": prompt.dropped, "timings_ms": result.timings_ms,
                          "generate_ms": answer.total_ms}, indent=1))
    else:
        print(answer.text)
        if args.show_prompt:
            print("\n--- prompt ---\n" + prompt.text, file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ask``."""
    p = sub.add_parser(
        "ask", help="answer a question about a photo with the memory's concepts (RAP)",
        description="Recognises the faces (and with --objects the objects) in IMAGE, "
        "retrieves their concepts and any concept the question names, builds the RAP prompt "
        "and answers. Backend so far: template (deterministic sentences, never an invented "
        "name); model backends are still to come.",
    )
    p.add_argument("image", help="a photo")
    p.add_argument("question", help='e.g. "Is Bo in this photo?"')
    add_memory_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--show-prompt", action="store_true", help="print the prompt to stderr")
    add_model_options(p)
    add_object_options(p)
    p.set_defaults(func=cmd_ask)
