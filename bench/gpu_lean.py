"""The lean GPU check: the exporters' torch modules on CUDA against ONNX Runtime on the CPU.

What a borrowed GPU machine without TensorRT or internet can measure with what it already has
(torch with CUDA, onnxruntime for the CPU, OpenCV, numpy) plus a carry folder made by
``bench/gpu_carry.py pack`` (``scripts/gpu_check.sh --pack-lean``). For the face embedder
(dlib ResNet), the object embedder (MobileNetV2) and, where its torch module exists, the face
detector (res10 SSD):

1. build the torch module from the pinned original weights, as the exporter does, and rebuild
   the exported ONNX file from it byte for byte (checked against the manifest's SHA-256);
2. run the ONNX file on ONNX Runtime's CPU provider on the real check photos: the reference
   outputs and the ``ort-cpu`` timings;
3. run the torch module on CUDA in fp32, fp16 and bf16 (``torch-cuda``), the same replayed as
   a CUDA graph (``torch-cuda-graph``) and, when time is left, ``torch.compile`` in fp16
   (``torch-compile``): per batch the least cosine of its outputs to ORT-CPU's, the median
   and p90 milliseconds with host arrays in and out (copies included, as ORT-CPU's), the
   median with the input already on the device (``device ms``) and the speed-up over ORT-CPU.

``--cpu-only`` runs the same path with torch on the CPU (``torch-cpu``; no CUDA graphs, no
compile): what ``make test`` runs so this cannot rot. Every row is written to the JSON as soon
as it exists; failures are rows too; nothing aborts the run.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gpu_carry import CarryError, build, read, rebuild
from bench.gpu_check import OUT, Check, _cosine, _inputs, _time
from rap_edge.errors import RapEdgeError
from rap_edge.models import load_manifest
from rap_edge.runtime import Provider, create_session

if TYPE_CHECKING:
    from collections.abc import Callable

BATCHES = "1,8,64"
PRECISIONS = ("fp32", "fp16", "bf16")
# The least cosine to ORT-CPU fp32 a row must reach (fp32: the exporters' own bar).
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "bf16": 0.99}
COMPILE_RESERVE_S = 120.0  # torch.compile is not started with less time than this left


def _driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else None


def _dtype(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _outputs(out: Any) -> list[torch.Tensor]:  # noqa: ANN401 - a tensor or a tuple of them
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _min_cosine(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    if len(ref) != len(got):
        msg = f"{len(got)} outputs, ORT-CPU gave {len(ref)}"
        raise RuntimeError(msg)
    return min(_cosine(r, g.reshape(r.shape)) for r, g in zip(ref, got, strict=True))


class Runner:
    """One torch variant of a module: host in/out and device-resident calls per batch."""

    def __init__(self, module: torch.nn.Module, device: str, precision: str) -> None:
        self.device, self.dtype = device, _dtype(precision)
        self.module = copy.deepcopy(module).to(device=device, dtype=self.dtype).eval()

    def to_device(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device).to(self.dtype)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode():
            return _outputs(self.module(x))

    def host(self, x: np.ndarray) -> list[np.ndarray]:
        return [o.float().cpu().numpy() for o in self.forward(self.to_device(x))]

    def device_call(self, x: np.ndarray) -> Callable[[object], None]:
        xd = self.to_device(x)

        def call(_: object) -> None:
            self.forward(xd)
            self.sync()

        return call

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


class GraphRunner(Runner):
    """The module captured as one CUDA graph per batch size, replayed."""

    def __init__(self, module: torch.nn.Module, device: str, precision: str) -> None:
        super().__init__(module, device, precision)
        self.graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, list[torch.Tensor]]] = {}

    def _graph(self, shape: tuple[int, ...]) -> tuple[Any, torch.Tensor, list[torch.Tensor]]:
        if shape not in self.graphs:
            static_in = torch.zeros(shape, device=self.device, dtype=self.dtype)
            stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    Runner.forward(self, static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                static_out = _outputs(self.module(static_in))
            self.graphs[shape] = (graph, static_in, static_out)
        return self.graphs[shape]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        graph, static_in, static_out = self._graph(tuple(x.shape))
        static_in.copy_(x)
        graph.replay()
        return static_out


class CompiledRunner(Runner):
    """``torch.compile`` (mode ``max-autotune-no-cudagraphs`` is too slow to build here)."""

    def __init__(self, module: torch.nn.Module, device: str, precision: str) -> None:
        super().__init__(module, device, precision)
        compiled = torch.compile(self.module, mode="reduce-overhead", dynamic=False)
        self.module = cast("torch.nn.Module", compiled)


@dataclass
class Subject:
    """One model under test: its torch module, inputs and ORT-CPU reference per batch."""

    name: str
    module: torch.nn.Module
    inputs: dict[int, np.ndarray]
    reference: dict[int, list[np.ndarray]] = field(default_factory=dict)
    ort_ms: dict[int, float] = field(default_factory=dict)


def _rows_for(  # noqa: PLR0913, PLR0917
    check: Check,
    subject: Subject,
    runtime: str,
    precision: str,
    make: Callable[[torch.nn.Module, str, str], Runner],
    args: argparse.Namespace,
) -> None:
    """One row per batch for ``make(module, device, precision)`` against ORT-CPU."""
    inputs, reference, ort_ms = subject.inputs, subject.reference, subject.ort_ms
    device = "cpu" if args.cpu_only else "cuda"

    def row(b: int, **extra: Any) -> None:  # noqa: ANN401
        check.add(provider=runtime, precision=precision, model=subject.name, batch=b, **extra)

    if check.left() <= 0:
        for b in inputs:
            row(b, median_ms=None, note="skipped: time budget")
        return
    try:
        start = time.monotonic()
        runner = make(subject.module, device, precision)
        setup_s = time.monotonic() - start
    except Exception as err:  # noqa: BLE001 - recorded, never fatal
        traceback.print_exc(limit=2)
        for b in inputs:
            row(b, median_ms=None, note=f"error: {type(err).__name__}: {str(err)[:300]}")
        return
    for b, x in inputs.items():
        if check.left() <= 0:
            row(b, median_ms=None, note="skipped: time budget")
            continue
        try:
            start = time.monotonic()
            got = runner.host(x)  # the first call also captures or compiles
            first_s = time.monotonic() - start
            cos = _min_cosine(reference[b], got)
            med, p90 = _time(runner.host, x, iters=args.iters, max_s=args.row_s)
            dev, _ = _time(runner.device_call(x), x, iters=args.iters, max_s=args.row_s)
        except Exception as err:  # noqa: BLE001
            traceback.print_exc(limit=2)
            first = str(err).splitlines()[0][:300] if str(err) else ""
            row(b, median_ms=None, note=f"error: {type(err).__name__}: {first}")
            continue
        floor = MIN_COSINE[precision]
        note = "" if cos >= floor else f"parity below {floor}"
        if first_s > 1.0:
            note = f"{note}; first call {first_s:.1f} s".lstrip("; ")
        row(
            b,
            median_ms=round(med, 3),
            p90_ms=round(p90, 3),
            device_ms=round(dev, 3),
            images_per_s=round(b * 1000 / med, 1),
            speedup_vs_ort_cpu=round(ort_ms[b] / med, 2) if b in ort_ms else None,
            cosine_vs_ort_cpu=round(cos, 6),
            parity_ok=cos >= floor,
            setup_s=round(setup_s, 2),
            note=note,
        )


def run(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    carry = Path(args.carry).resolve()
    record = read(carry)
    device = "cpu" if args.cpu_only else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print(
            f"gpu_check: error: torch {torch.__version__} sees no CUDA device "
            "(--cpu-only runs the same path on the CPU)",
            file=sys.stderr,
        )
        return 2
    batches = [int(b) for b in args.batches.split(",")]
    names = [m["name"] for m in record["models"]]
    if args.models:
        wanted = args.models.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            missing = ", ".join(unknown)
            print(f"gpu_check: error: not in the carry folder: {missing}", file=sys.stderr)
            return 1
        names = [n for n in names if n in wanted]
    compile_on = args.compile and device == "cuda"
    meta = {
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "lean-cpu-only" if args.cpu_only else "lean",
        "machine": {
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
            "driver": _driver() if device == "cuda" else None,
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,  # type: ignore[no-untyped-call]
            "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers(),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "cpu_only": args.cpu_only,
        "carry": str(carry),
        "batches": batches,
        "command": " ".join(sys.argv),
        "min_cosine": MIN_COSINE,
    }
    check = Check(args.out, args.budget_s, meta)
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "no GPU"
    print(
        f"== gpu_check (lean): torch {torch.__version__} on {device} ({gpu}); onnxruntime "
        f"{ort.__version__} CPU; models {', '.join(names)}; batches {batches}",
        flush=True,
    )
    torch.backends.cudnn.benchmark = True
    precisions = args.precisions.split(",")
    bad = sorted(set(precisions) - set(PRECISIONS))
    if bad:
        print(f"gpu_check: error: unknown precision {', '.join(bad)}", file=sys.stderr)
        return 1
    done: list[Subject] = []
    with tempfile.TemporaryDirectory(prefix="rap-edge-lean-") as tmp:
        for name in names:
            print(f"-- {name}", flush=True)
            try:
                start = time.monotonic()
                module = build(carry, name)
                manifest_path, module = rebuild(carry, Path(tmp), name, module)
                manifest = load_manifest(manifest_path)
            except (CarryError, RapEdgeError, OSError) as err:
                check.add(
                    provider="rebuild", precision="-", model=name, batch=0, median_ms=None,
                    note=f"error: {err}",
                )  # fmt: skip
                continue
            check.add(
                provider="rebuild", precision="fp32", model=name, batch=0, median_ms=None,
                note=f"ONNX rebuilt from the weights, SHA-256 {manifest.onnx_sha256[:12]} "
                f"as exported ({time.monotonic() - start:.1f} s)",
            )  # fmt: skip
            subject = Subject(name, module, {b: _inputs(carry, manifest, b) for b in batches})
            try:
                session, used = create_session(manifest.onnx, provider=Provider.CPU)
                feeds = manifest.input_name
                for b, x in subject.inputs.items():
                    subject.reference[b] = [np.asarray(o) for o in session.run(None, {feeds: x})]
                    med, p90 = _time(
                        lambda v, s=session, i=feeds: s.run(None, {i: v}),
                        x,
                        iters=args.iters,
                        max_s=args.row_s,
                    )
                    subject.ort_ms[b] = med
                    check.add(
                        provider="ort-cpu", precision="fp32", model=name, batch=b,
                        median_ms=round(med, 3), p90_ms=round(p90, 3),
                        images_per_s=round(b * 1000 / med, 1), speedup_vs_ort_cpu=1.0,
                        ran_on=used, note="the reference",
                    )  # fmt: skip
            except Exception as err:  # noqa: BLE001
                traceback.print_exc(limit=2)
                check.add(
                    provider="ort-cpu", precision="fp32", model=name, batch=0, median_ms=None,
                    note=f"error: {type(err).__name__}: {str(err)[:300]}",
                )  # fmt: skip
                continue
            plain = "torch-cpu" if device == "cpu" else "torch-cuda"
            for precision in precisions:
                _rows_for(check, subject, plain, precision, Runner, args)
            if device == "cuda":
                for precision in precisions:
                    _rows_for(check, subject, "torch-cuda-graph", precision, GraphRunner, args)
                torch.cuda.empty_cache()
            done.append(subject)
        # torch.compile last, for every model, with what time is left: a compile (one per
        # batch size) takes tens of seconds and must not starve the rows above.
        for subject in done if compile_on else []:
            if check.left() < COMPILE_RESERVE_S:
                check.add(
                    provider="torch-compile", precision="fp16", model=subject.name, batch=0,
                    median_ms=None, note="skipped: time budget",
                )  # fmt: skip
                continue
            _rows_for(check, subject, "torch-compile", "fp16", CompiledRunner, args)
    print()
    print(table(check.rows))
    print(f"\nwrote {args.out}")
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as one markdown table."""

    def f(v: Any, fmt: str) -> str:  # noqa: ANN401
        return "" if v is None else format(v, fmt)

    lines = [
        (
            "| runtime | precision | model | batch | median ms | p90 ms | device ms | img/s "
            "| vs ORT-CPU | cosine vs ORT-CPU | note |"
        ),
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        speed = r.get("speedup_vs_ort_cpu")
        lines.append(
            f"| {r['provider']} | {r['precision']} | {r['model']} | {r['batch'] or ''} | "
            f"{f(r.get('median_ms'), '.2f')} | {f(r.get('p90_ms'), '.2f')} | "
            f"{f(r.get('device_ms'), '.2f')} | {f(r.get('images_per_s'), '.0f')} | "
            f"{'' if speed is None else f'{speed:.2f}x'} | "
            f"{f(r.get('cosine_vs_ort_cpu'), '.6f')} | {(r.get('note') or '').replace('|', '/')} |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The lean mode's options (``bench/gpu_check.py --lean`` takes them too)."""
    parser.add_argument("--carry", required=True, help="carry folder (gpu_check.sh --pack-lean)")
    parser.add_argument("--cpu-only", action="store_true", help="torch on the CPU, not CUDA")
    parser.add_argument("--batches", default=BATCHES, help=f"batch sizes (default {BATCHES})")
    parser.add_argument("--iters", type=int, default=50, help="timed calls per row (default 50)")
    parser.add_argument(
        "--row-s", type=float, default=2.0, help="at most this many seconds per row (default 2)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=400.0, help="start no new row after this (default 400)"
    )
    parser.add_argument("--models", help="a subset of the carried models, comma-separated")
    parser.add_argument(
        "--precisions",
        default=",".join(PRECISIONS),
        help=f"torch precisions (default {','.join(PRECISIONS)})",
    )
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="skip torch.compile"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON file (default {OUT})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lean", action="store_true", help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (CarryError, RapEdgeError) as err:
        print(f"gpu_check: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
