"""``rap-edge ask IMAGE "question"``: recognise, retrieve, and answer in words."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rap_edge.cli._options import (
    add_generation_options,
    add_memory_option,
    add_model_options,
    add_object_options,
    open_session,
)

if TYPE_CHECKING:
    import argparse

    import numpy as np
    import numpy.typing as npt

__all__ = ["register"]


def read_photo(path: str | Path) -> npt.NDArray[np.uint8]:
    """A photo file as a BGR image, or an input error naming the file."""
    from rap_edge.errors import InvalidInputError
    from rap_edge.sources import normalize_frame, read_image_file

    try:
        return normalize_frame(read_image_file(Path(path)))
    except InvalidInputError as err:
        msg = f"{path}: cannot read the image ({err})"
        raise InvalidInputError(msg) from err


def cmd_ask(args: argparse.Namespace) -> int:
    image = read_photo(args.image)

    def stream(kind: str, text: str) -> None:
        if kind == "token":
            print(text, end="", flush=True)
        elif kind == "reset":
            print(f"\n[{text}]", file=sys.stderr, flush=True)

    with open_session(args, say=args.show_prompt) as session:
        frame = session.recognise(image, source=str(args.image))
        if args.show_prompt:
            session.backend()
            prompt = session.prompt(frame, args.question)
            print(f"--- prompt ({session.backend_note}) ---\n{prompt.text}\n---", file=sys.stderr)
        out = session.ask(
            args.question, frame=frame, stream=stream if args.stream and not args.json else None
        )
        note = session.backend_note
    answer, result = out.answer, out.frame
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
                    "dropped": out.prompt.dropped,
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
