"""Fuzzers (Hypothesis): a short budget in the test suite, a long one through bench/fuzz.py.

``RAP_EDGE_FUZZ_EXAMPLES`` sets the examples per fuzzer (default 60: the whole folder runs in
well under 30 s on two cores); bench/fuzz.py raises it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# rap_edge_ros.convert is pure numpy: fuzzed here without ROS, as tests/ros/test_convert.py does.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "rap_edge_ros"))

EXAMPLES = int(os.environ.get("RAP_EDGE_FUZZ_EXAMPLES", "60"))

settings.register_profile(
    "rap-edge-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("rap-edge-fuzz")
