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
from rap_edge.cli._gen_opts import add_generation_options, load_generator

if TYPE_CHECKING:
    import argparse

__all__ = ["register"]


def cmd_ask(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from rap_edge.errors import InvalidInputError
    from rap_edge.generate import frame_prompt
    from rap_edge.pipeline import Pipeline, PipelineConfig

    img = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if img is None:
        msg = f"{args.image}: cannot read the image (missing, corrupt or not an image)"
        raise InvalidInputError(msg)
    models = load_models(args)
    thresholds = load_thresholds(args, models)
    memory, _ = open_optional_memory(args, readonly=True)
    pipe = Pipeline(
        models,
        memory,
        thresholds=thresholds,
        config=PipelineConfig(track=False, tiles=args.tiles or 1, margin=thresholds.margin),
        objects=load_objects(args) if args.objects else None,
    )
    result = pipe.process(np.asarray(img, dtype=np.uint8))
    prompt = frame_prompt(result, memory, args.question, max_concepts=args.max_concepts)
    generator, note = load_generator(args, memory)
    if args.show_prompt:
        print(f"--- prompt ({note}) ---\n{prompt.text}\n---", file=sys.stderr)

    def stream(kind: str, text: str) -> None:
        if kind == "token":
            print(text, end="", flush=True)
        elif kind == "reset":
            print(f"\n[{text}]", file=sys.stderr, flush=True)

    answer = generator.answer(prompt, stream if args.stream and not args.json else None)
    if args.json:
        print(
            json.dumps(
                {
                    "answer": answer.text,
                    "backend": answer.backend,
                    "llm": note,
                    "regenerated": answer.regenerated,
                    "fell_back": answer.fell_back,
                    "unfaithful": answer.unfaithful,
                    "rejected": answer.rejected,
                    "recognitions": [r.to_json() for r in result.recognitions],
                    "dropped": prompt.dropped,
                    "timings_ms": result.timings_ms,
                    "first_token_ms": answer.first_token_ms,
                    "generate_ms": answer.total_ms,
                },
                indent=1,
            )
        )
        return 0
    if args.stream:
        print()
        if answer.regenerated:  # what streamed included the rejected attempt
            print(f"final ({answer.backend}): {answer.text}")
    else:
        print(answer.text)
    print(
        f"[{answer.backend}; first token {answer.first_token_ms or 0:.0f} ms, "
        f"total {answer.total_ms:.0f} ms{'; regenerated' if answer.regenerated else ''}"
        f"{'; template fallback' if answer.fell_back else ''}]",
        file=sys.stderr,
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ask``."""
    p = sub.add_parser(
        "ask",
        help="answer a question about a photo with the memory's concepts (RAP)",
        description="Recognises the faces (and with --objects the objects) in IMAGE, "
        "retrieves their concepts and any concept the question names, builds the RAP prompt "
        "and answers with the chosen backend behind the faithful-name guard (an answer naming "
        "anyone the retriever did not return is regenerated once, then replaced by the "
        "template's sentences).",
    )
    p.add_argument("image", help="a photo")
    p.add_argument("question", help='e.g. "Is Bo in this photo?"')
    add_memory_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--show-prompt", action="store_true", help="print the prompt to stderr")
    p.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    add_generation_options(p)
    add_model_options(p)
    add_object_options(p)
    p.set_defaults(func=cmd_ask)
