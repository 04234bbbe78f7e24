"""rap-edge: Retrieval-Augmented Personalization for multimodal models, on the device.

Importing the package is cheap: heavy dependencies (OpenCV, USearch, ONNX Runtime) load on
first use inside the modules that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
