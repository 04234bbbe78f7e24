"""Generation options shared by ``ask``, ``run --describe`` and ``demo``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from rap_edge.generate import Generator


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """``--backend``, ``--llm``, ``--llm-provider``, ``--max-tokens``, ``--max-concepts``."""
    from rap_edge.generate import BACKENDS

    g = p.add_argument_group("generation")
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="who writes the words (default: $RAP_EDGE_BACKEND, else auto = "
        "ortgenai with SmolLM2-135M INT4 when `make models` has built it, else "
        "template)",
    )
    g.add_argument(
        "--llm",
        metavar="DIR",
        help="model folder: an ORT GenAI folder for ortgenai, a Hugging Face folder "
        "for transformers (default: the model store's SmolLM2)",
    )
    g.add_argument(
        "--llm-provider",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the LLM runs (default: auto)",
    )
    g.add_argument(
        "--llm-threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for the ortgenai decoder (default: every core; on a "
        "2-core device, 1 leaves a core to the camera loop)",
    )
    g.add_argument(
        "--vision-onnx",
        metavar="DIR",
        help="transformers backend with a LLaVA or Idefics3 model: run its image side "
        "from this `rap-edge export vision-tower` folder through ONNX Runtime "
        "(TensorRT, CUDA or CPU)",
    )
    g.add_argument(
        "--max-tokens",
        type=int,
        default=96,
        metavar="N",
        help="longest answer in tokens (default: 96)",
    )
    g.add_argument(
        "--max-concepts",
        type=int,
        default=5,
        metavar="K",
        help="most concepts in a prompt; the lowest-scoring go first (default: 5)",
    )


def load_generator(
    args: argparse.Namespace,
    memory: Any,  # noqa: ANN401 - a Memory or None
    *,
    isolate: bool = False,
) -> tuple[Generator, str]:
    """The guarded backend the options ask for, and a line saying which one it is.

    ``isolate`` runs the model in a child process (next to a frame loop; see ProcessBackend).
    """
    from rap_edge.errors import InvalidInputError
    from rap_edge.generate import Generator, memory_names, open_backend

    if not 1 <= args.max_tokens <= 4096:  # noqa: PLR2004
        msg = f"--max-tokens must be 1..4096, got {args.max_tokens}"
        raise InvalidInputError(msg)
    if not 0 <= args.max_concepts <= 50:  # noqa: PLR2004
        msg = f"--max-concepts must be 0..50, got {args.max_concepts}"
        raise InvalidInputError(msg)
    backend, note = open_backend(
        args.backend,
        args.llm,
        provider=args.llm_provider,
        threads=args.llm_threads,
        isolate=isolate,
        vision_onnx=getattr(args, "vision_onnx", None),
    )
    return Generator(backend, known_names=memory_names(memory), max_tokens=args.max_tokens), note
