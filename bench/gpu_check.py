#!/usr/bin/env python3
"""GPU check: engines for the shipped encoders, parity against ORT-CPU, and one timing table.

For each shipped encoder in ``<store>/onnx`` (MobileNetV2 and the dlib face embedder, fp32 and
their ``int8-qdq`` variants) it times, at each batch size, ONNX Runtime on the CPU, on CUDA and
on TensorRT (the provider building its own engine), then the engines built by
``rap-edge export engine`` (fp16, int8 from the QDQ model, int8 from an entropy calibrator on a
set collected from the check photos) loaded through the runtime (``tensorrt-engine``) and run
raw through TensorRT's ``execute_async_v3`` (``trt-raw``). Every row has the median and p90
milliseconds per batch (host arrays in and out, so copies are included) and the least cosine
of its outputs to ORT-CPU fp32 on the same inputs. Failures are rows too (``error: ...``);
nothing aborts the run. A time budget (``--budget-s``) skips what would not fit, and the JSON
is rewritten after every row, so a run killed by the caller's timeout still leaves its table.

``--cpu-only`` times ORT-CPU and reports every other row as unavailable with its reason (this
is what runs on a machine without a GPU). ``scripts/gpu_check.sh`` installs the GPU packages
and calls this; CI never runs it.

``--lean --carry DIR`` is the lean mode instead (``bench/gpu_lean.py``): the exporters' torch
modules on CUDA in fp32, fp16 and bf16 against ORT-CPU, for a GPU machine without TensorRT or
internet; it takes the options of ``bench/gpu_lean.py``.

Example:
    python bench/gpu_check.py [--store DIR] [--cpu-only] [--batches 1,8] [--budget-s 400]
    python bench/gpu_check.py --lean --carry gpu-carry [--cpu-only] [--batches 1,8,64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rap_edge.models import ModelStore, load_manifest, preprocess
from rap_edge.runtime import Precision, Provider, create_session, gpu_name, tensorrt_capability

OUT = Path(__file__).resolve().parent / "results" / "gpu_check.json"
MODELS = ("mobilenetv2", "dlib_resnet")
BUILD_RESERVE_S = 75.0  # a TensorRT build is not started with less time than this left


class Skip(Exception):  # noqa: N818 - a row that is skipped, with its reason
    """A row that cannot run, with the reason (recorded as its note)."""


def _skip(message: str) -> NoReturn:
    raise Skip(message)


class Check:
    """Collects rows, keeps the budget, and rewrites the JSON after every row."""

    def __init__(self, out: Path, budget_s: float, meta: dict[str, Any]) -> None:
        self.out, self.deadline = out, time.monotonic() + budget_s
        self.meta, self.rows = meta, []  # type: tuple[dict[str, Any], list[dict[str, Any]]]

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def add(self, **row: Any) -> dict[str, Any]:  # noqa: ANN401
        self.rows.append(row)
        note = row.get("note") or ""
        ms = f"{row['median_ms']:.2f} ms" if row.get("median_ms") is not None else "-"
        print(
            f"  {row['provider']:<16} {row['precision']:<10} {row['model']:<12} "
            f"b{row['batch']:<3} {ms:>10}  {note}",
            flush=True,
        )
        self.save()
        return row

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**self.meta, "rows": self.rows}, indent=1) + "\n")
        tmp.replace(self.out)


def _inputs(store: Path, manifest: Any, batch: int) -> np.ndarray:  # noqa: ANN401
    """A batch of real photos (the check photos, cycled) preprocessed for ``manifest``."""
    import cv2

    photos = sorted((store / "check-photos").glob("*.jpg"))
    read = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in photos]
    images = [np.asarray(i, dtype=np.uint8) for i in read if i is not None]
    if not images:  # no photos pulled: deterministic noise still checks parity
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(4)]
    crops = []
    for n in range(batch):
        img = images[n % len(images)]
        h, w = img.shape[:2]
        k = n // len(images)
        crops.append(img if k == 0 else img[(k * 7) % (h // 4) :, (k * 11) % (w // 4) :])
    return preprocess(crops, manifest)


def _time(run: Any, x: np.ndarray, *, iters: int, max_s: float) -> tuple[float, float]:  # noqa: ANN401
    """Median and p90 milliseconds of ``run(x)`` after three warm-up calls."""
    for _ in range(3):
        run(x)
    times: list[float] = []
    stop = time.monotonic() + max_s
    while len(times) < iters and (time.monotonic() < stop or len(times) < 5):
        start = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def _cosine(ref: np.ndarray, got: np.ndarray) -> float:
    a = ref.reshape(len(ref), -1).astype(np.float64)
    b = got.reshape(len(got), -1).astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(((a * b).sum(1) / np.maximum(den, 1e-12)).min())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--lean" in argv:
        from bench.gpu_lean import main as lean_main

        return lean_main(argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    parser.add_argument(
        "--cpu-only",
        action="store_true",
        help="time ORT-CPU only; every other row says why it is unavailable",
    )
    parser.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    parser.add_argument("--iters", type=int, default=50, help="timed calls per row (default 50)")
    parser.add_argument(
        "--row-s",
        type=float,
        default=3.0,
        help="at most this many seconds of timed calls per row (default 3)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=400.0,
        help="stop starting new work after this many seconds (default 400)",
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"encoders in <store>/onnx (default {','.join(MODELS)})",
    )
    parser.add_argument(
        "--engines", type=Path, help="engine cache root (default: a fresh temporary folder)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON file (default {OUT})")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    store = ModelStore(args.store).path
    import onnxruntime as ort

    if not args.cpu_only and hasattr(ort, "preload_dlls"):
        try:  # CUDA and cuDNN from the nvidia-* wheels, where onnxruntime >= 1.21 finds them
            ort.preload_dlls()
        except Exception as err:  # noqa: BLE001
            print(f"onnxruntime.preload_dlls(): {err}")
    available = ort.get_available_providers()
    trt_ok, trt_why = tensorrt_capability()
    cuda_why = (
        None
        if "CUDAExecutionProvider" in available
        else (f"onnxruntime {ort.__version__} has no CUDA provider (install onnxruntime-gpu)")
    )
    if args.cpu_only:
        cuda_why = cuda_why or "skipped (--cpu-only)"
        trt_why = trt_why if not trt_ok else "skipped (--cpu-only)"
        trt_ok = False
    engines = args.engines or Path(tempfile.mkdtemp(prefix="rap-edge-engines-"))
    os.environ["RAP_EDGE_ENGINES"] = str(engines)
    meta = {
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "onnxruntime": ort.__version__,
            "providers": available,
            "gpu": gpu_name() if not args.cpu_only else None,
            "tensorrt": trt_why if trt_ok else None,
        },
        "mode": "full-cpu-only" if args.cpu_only else "full",
        "cpu_only": args.cpu_only,
        "store": str(store),
        "engines": str(engines),
        "batches": batches,
        "command": " ".join(sys.argv),
    }
    check = Check(args.out, args.budget_s, meta)
    print(
        f"== gpu_check: onnxruntime {ort.__version__} ({', '.join(available)}); TensorRT: "
        f"{trt_why}; engines in {engines}",
        flush=True,
    )
    if trt_ok:
        from export import engine as build_engine
    calib_set: Path | None = None

    def row(provider: str, precision: str, model: str, batch: int, **extra: Any) -> None:  # noqa: ANN401
        check.add(
            provider=provider,
            precision=precision,
            model=model,
            batch=batch,
            median_ms=None,
            p90_ms=None,
            cosine_vs_ort_cpu=None,
            ran_on=None,
            **extra,
        )

    for name in args.models.split(","):
        fp32_path = store / "onnx" / f"{name}.json"
        qdq_path = store / "onnx" / f"{name}.int8-qdq.json"
        print(f"-- {name}", flush=True)
        try:
            fp32 = load_manifest(fp32_path)
        except Exception as err:  # noqa: BLE001 - recorded, never fatal
            row("-", "-", name, 0, note=f"error: no exported model ({err}); run `make models`")
            continue
        qdq = load_manifest(qdq_path) if qdq_path.is_file() else None
        inputs = {b: _inputs(store, fp32, b) for b in batches}
        reference: dict[int, np.ndarray] = {}
        built: dict[str, Path | None] = {}

        def build(
            precision: str,
            source: Any,  # noqa: ANN401
            calib: Path | None = None,
            name: str = name,
            built: dict[str, Path | None] = built,
        ) -> Path | None:
            key = precision + ("-calib" if calib else "")
            if key in built:
                return built[key]
            built[key] = None
            if check.left() < BUILD_RESERVE_S:
                row("engine-build", key, name, 0, note="skipped: time budget")
                return None
            start = time.monotonic()
            try:
                folder = build_engine.build(
                    source.onnx,
                    precision=precision,
                    manifest=source,
                    calib=str(calib) if calib else None,
                    batch=(1, max(batches), max(batches)),
                    workspace_mb=2048,
                    say=lambda s: print("   ", s),
                )
            except Exception as err:  # noqa: BLE001
                row("engine-build", key, name, 0, note=f"error: {str(err)[:300]}")
                return None
            row(
                "engine-build",
                key,
                name,
                0,
                note=f"built in {time.monotonic() - start:.1f} s",
                build_s=round(time.monotonic() - start, 1),
            )
            built[key] = folder
            return folder

        plans: list[tuple[str, str, Any, str | None]] = [  # provider, precision, manifest, why not
            ("ort-cpu", "fp32", fp32, None),
            ("ort-cpu", "int8-qdq", qdq, None),
            ("ort-cuda", "fp32", fp32, cuda_why),
            ("ort-tensorrt", "fp16", fp32, None if trt_ok else trt_why),
            ("ort-tensorrt", "int8-qdq", qdq, None if trt_ok else trt_why),
            ("tensorrt-engine", "fp16", fp32, None if trt_ok else trt_why),
            ("tensorrt-engine", "int8-qdq", qdq, None if trt_ok else trt_why),
            ("tensorrt-engine", "int8-calib", fp32, None if trt_ok else trt_why),
            ("trt-raw", "fp16", fp32, None if trt_ok else trt_why),
            ("trt-raw", "int8-qdq", qdq, None if trt_ok else trt_why),
        ]
        for provider, precision, manifest, why in plans:
            if manifest is None:
                for b in batches:
                    row(
                        provider,
                        precision,
                        name,
                        b,
                        note=f"unavailable: no {qdq_path.name} (python -m export.quantize)",
                    )
                continue
            if why is not None:
                for b in batches:
                    row(provider, precision, name, b, note=f"unavailable: {why}")
                continue
            if check.left() <= 0:
                for b in batches:
                    row(provider, precision, name, b, note="skipped: time budget")
                continue
            trt_precision = cast(
                "Precision", "int8" if precision.startswith("int8") else precision
            )
            try:
                if provider == "ort-cpu":
                    session, used = create_session(manifest.onnx, provider=Provider.CPU)
                elif provider == "ort-cuda":
                    session, used = create_session(manifest.onnx, provider=Provider.CUDA)
                elif provider == "ort-tensorrt":
                    if check.left() < BUILD_RESERVE_S:
                        _skip("skipped: time budget (TensorRT would build)")
                    session, used = create_session(
                        manifest.onnx,
                        provider=Provider.TENSORRT,
                        model_sha256=manifest.onnx_sha256,
                        precision=trt_precision,
                        prebuilt=False,
                    )
                else:
                    calib = None
                    if precision == "int8-calib":
                        if calib_set is None:
                            from rap_edge.calibsets import collect

                            calib_set = engines / "calib-check-photos"
                            collect(
                                str(store / "check-photos"),
                                calib_set,
                                frames=50,
                                min_change=0.0,
                                force=True,
                                progress=False,
                            )
                        calib = calib_set
                    folder = build(trt_precision, manifest, calib)
                    if folder is None:
                        _skip("error: no engine (see the engine-build row)")
                    if provider == "trt-raw":
                        runner = build_engine.EngineRunner(folder / "model.engine")
                        session, used = runner, "trt-raw"
                    else:
                        session, used = create_session(
                            manifest.onnx,
                            provider=Provider.TENSORRT,
                            model_sha256=manifest.onnx_sha256,
                            precision=trt_precision,
                        )
            except Exception as err:  # noqa: BLE001
                first = str(err).splitlines()[0][:300] if str(err) else ""
                note = first if isinstance(err, Skip) else f"error: {type(err).__name__}: {first}"
                if not isinstance(err, Skip):
                    traceback.print_exc(limit=2)
                for b in batches:
                    row(provider, precision, name, b, note=note)
                continue
            in_name = manifest.input_name
            for b in batches:
                x = inputs[b]
                try:
                    out = np.asarray(session.run([manifest.output_name], {in_name: x})[0])
                    if provider == "ort-cpu" and precision == "fp32":
                        reference[b] = out
                    cos = _cosine(reference[b], out) if b in reference else None
                    med, p90 = _time(
                        lambda v, s=session, i=in_name, o=manifest.output_name: s.run([o], {i: v}),
                        x,
                        iters=args.iters,
                        max_s=args.row_s,
                    )
                except Exception as err:  # noqa: BLE001
                    row(
                        provider,
                        precision,
                        name,
                        b,
                        note=f"error: {type(err).__name__}: {str(err).splitlines()[0][:300]}",
                    )
                    continue
                check.add(
                    provider=provider,
                    precision=precision,
                    model=name,
                    batch=b,
                    median_ms=round(med, 3),
                    p90_ms=round(p90, 3),
                    cosine_vs_ort_cpu=None if cos is None else round(cos, 5),
                    ran_on=used,
                    note=""
                    if used in (provider.removeprefix("ort-"), provider)
                    else f"ran on {used}",
                )
            if provider == "trt-raw":
                session.close()
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
            "| provider | precision | model | batch | median ms | p90 ms | cosine vs ORT-CPU "
            "| note |"
        ),
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['provider']} | {r['precision']} | {r['model']} | "
            f"{r['batch'] or ''} | {f(r.get('median_ms'), '.2f')} | "
            f"{f(r.get('p90_ms'), '.2f')} | {f(r.get('cosine_vs_ort_cpu'), '.5f')} | "
            f"{(r.get('note') or '').replace('|', '/')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
