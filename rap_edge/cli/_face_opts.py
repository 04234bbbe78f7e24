"""Options shared by the commands that run the face pipeline (run, eval, calibrate, enroll)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rap_edge.pipeline._scoring import REPO_THRESHOLDS, THRESHOLDS_ENV, default_thresholds_path

if TYPE_CHECKING:
    import argparse

    from rap_edge.memory import Memory
    from rap_edge.pipeline import FaceModels, ObjectModels, Thresholds

__all__ = [
    "add_memory_option",
    "add_model_options",
    "add_object_options",
    "default_thresholds_path",
    "load_models",
    "load_objects",
    "load_thresholds",
    "open_optional_memory",
]


def add_memory_option(p: argparse.ArgumentParser) -> None:
    """``--memory`` for commands that can also run without a memory."""
    p.add_argument(
        "--memory",
        metavar="DIR",
        default=None,
        help="concept memory (default: the user data folder's memory if it exists)",
    )


def open_optional_memory(
    args: argparse.Namespace, *, readonly: bool = False
) -> tuple[Memory | None, Path]:
    """``--memory`` (must exist), else the default memory if there is one, else None."""
    from rap_edge.memory import Memory, default_memory_dir

    path = Path(args.memory) if args.memory else default_memory_dir()
    memory = Memory(path, readonly=readonly) if args.memory or path.exists() else None
    return memory, path


def add_model_options(p: argparse.ArgumentParser, *, thresholds: bool = True) -> None:
    """``--models``, ``--face-encoder``, ``--provider`` (and ``--thresholds``, ``--margin``)."""
    p.add_argument(
        "--models",
        metavar="DIR",
        default=None,
        help="folder of exported models (default: <model store>/onnx, made by `make models`)",
    )
    p.add_argument(
        "--face-encoder",
        metavar="MANIFEST",
        default="dlib_resnet.json",
        help="face embedder manifest in --models, e.g. dlib_resnet.int8-qdq.json "
        "(default dlib_resnet.json, fp32)",
    )
    p.add_argument(
        "--provider",
        choices=["auto", "tensorrt", "cuda", "cpu"],
        default="auto",
        help="ONNX Runtime execution provider (default auto; the one actually used is printed)",
    )
    p.add_argument(
        "--no-flip",
        action="store_true",
        help="describe faces without mirror averaging (faster embedding; its vectors "
        "are a separate index, so embed the memory's faces again)",
    )
    p.add_argument(
        "--tiles",
        type=int,
        default=None,
        metavar="N",
        help="also detect faces on an N x N grid of tiles (2 or 3) to find small, far "
        "faces; costs N*N extra detector inputs per frame (default 1: off)",
    )
    if thresholds:
        p.add_argument(
            "--thresholds",
            metavar="FILE",
            default=None,
            help=f"calibrated thresholds (default: ${THRESHOLDS_ENV}, else "
            f"./{REPO_THRESHOLDS} if present, else each model's manifest value)",
        )
        p.add_argument(
            "--margin",
            type=float,
            default=None,
            help="best-vs-second cosine margin under which a match is 'uncertain' (default 0.02)",
        )


def add_object_options(p: argparse.ArgumentParser) -> None:
    """``--objects``, ``--object-encoder``, ``--object-detector``."""
    p.add_argument(
        "--objects",
        action="store_true",
        help="also recognise the memory's objects and pets (non-person categories) "
        "with the object embedder",
    )
    p.add_argument(
        "--object-encoder",
        metavar="MANIFEST",
        default="mobilenetv2.json",
        help="object embedder manifest in --models (default mobilenetv2.json)",
    )
    p.add_argument(
        "--object-detector",
        metavar="MANIFEST",
        default=None,
        help="YOLO-style detector manifest (task detect, decoder yolo); without one, "
        "multi-scale windows are searched (coarser and slower)",
    )


def load_objects(args: argparse.Namespace) -> ObjectModels:
    """The object path named by the options."""
    from rap_edge.models import default_store_dir
    from rap_edge.pipeline import ObjectModels

    folder = Path(args.models) if args.models else default_store_dir() / "onnx"
    return ObjectModels.load(
        folder, encoder=args.object_encoder, detector=args.object_detector, provider=args.provider
    )


def load_models(args: argparse.Namespace) -> FaceModels:
    """The face models named by the options."""
    from rap_edge.models import default_store_dir
    from rap_edge.pipeline import FaceModels

    folder = Path(args.models) if args.models else default_store_dir() / "onnx"
    return FaceModels.load(
        folder, encoder=args.face_encoder, provider=args.provider, flip=not args.no_flip
    )


def load_thresholds(args: argparse.Namespace, models: FaceModels) -> Thresholds:
    """Thresholds from ``--thresholds`` (or the default file), the manifest filling in."""
    from rap_edge.pipeline import DEFAULT_MARGIN, Thresholds

    margin = DEFAULT_MARGIN if args.margin is None else args.margin
    path = Path(args.thresholds) if args.thresholds else default_thresholds_path()
    th = Thresholds.load(path, margin=margin) if path else Thresholds(margin=margin)
    th.set_default(models.encoder_id, models.encoder.manifest.threshold)
    return th
