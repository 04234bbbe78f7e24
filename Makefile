# rap-edge: `make demo` and `make test` set everything up in .venv and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
comma := ,
EXTRAS := dev,cpu,export,rosbag,llm,hf,web
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

# The quick loop: lint, types and the tests that need no model export and no ROS (< 3 min).
.PHONY: demo test check lint typecheck unit web-test-deps models ros bench-memory bench-encoders bench-pipeline bench-generation bench-ros venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $@

demo: models
	$(BIN)/rap-edge demo

PY_DIRS := rap_edge tests bench export calibration ros2_ws/src

lint: $(STAMP)
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)

# Pull the pinned weights and export every model that is missing or stale (into <store>/onnx).
models: $(STAMP)
	$(BIN)/python -m export.all

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) web-test-deps
	$(BIN)/python -m pytest

# The web tests' broker and browser (Debian packages; CI runs as root). Skipped when present.
web-test-deps:
	@test -x /usr/sbin/mosquitto -a -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto chromium chromium-driver; }

test: lint typecheck unit

check: lint typecheck
	$(BIN)/python -m pytest -q -m "not network and not ros" -p no:cacheprovider

bench-memory: $(STAMP)
	$(BIN)/python bench/memory_search.py
	$(BIN)/python bench/memory_ops.py

bench-encoders: $(STAMP)
	$(BIN)/python bench/encoders.py

bench-pipeline: $(STAMP)
	$(BIN)/python bench/pipeline.py

bench-generation: $(STAMP)
	$(BIN)/python bench/generation.py

# The ROS 2 workspace (ros2_ws/.venv with pip ROS 2 Jazzy wheels, colcon build); DDS only ever
# runs inside scripts/netns_run.sh.
ros:
	scripts/ros_build.sh

bench-ros: $(STAMP) ros
	$(BIN)/python bench/ros_node.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
