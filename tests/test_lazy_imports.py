"""Importing any rap_edge module must not load a heavy dependency (they load on first use)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "cv2", "onnxruntime", "onnxruntime_genai", "transformers", "rclpy", "usearch")

_PROBE = """
import importlib, json, pkgutil, sys
import rap_edge
names = sorted(
    m.name for m in pkgutil.walk_packages(rap_edge.__path__, "rap_edge.")
    if not m.name.endswith("__main__")
)
for name in names:
    importlib.import_module(name)
heavy = {h: [m for m in sys.modules if m == h or m.startswith(h + ".")][:1] for h in HEAVY}
print(json.dumps({"modules": names, "loaded": [h for h, hit in heavy.items() if hit]}))
"""


def test_importing_every_module_loads_no_heavy_dependency() -> None:
    code = f"HEAVY = {HEAVY!r}\n" + _PROBE
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(report["modules"]) > 40, report["modules"]
    assert report["loaded"] == [], f"imported at module level: {report['loaded']}"
