"""Optional dependencies, grouped into pip extras, and the one-line error when one is missing.

| extra       | packages                               | for                                  |
|-------------|----------------------------------------|--------------------------------------|
| export      | onnx, onnxruntime                      | ``cnnlab export --format onnx``      |
| tensorboard | tensorboard                            | ``cnnlab train --tensorboard``       |
| bovw        | opencv-python-headless, scikit-image   | ``cnnlab bovw``                      |
| test        | all of the above, pytest, hypothesis   | ``scripts/test``                     |
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cnnlab.errors import ConfigError

PACKAGES = {"cv2": "opencv-python-headless", "skimage": "scikit-image", "onnx": "onnx",
            "onnxruntime": "onnxruntime", "tensorboard": "tensorboard"}


def import_extra(module: str, extra: str, feature: str) -> ModuleType:
    """``import module``, or a ConfigError saying which ``pip install 'cnnlab[extra]'`` gives
    it (``feature``: what needs it, e.g. ``cnnlab bovw``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_extra(module, extra, feature) from None


def missing_extra(module: str, extra: str, feature: str) -> ConfigError:
    """The one-line error for a missing optional package."""
    top = module.split(".")[0]
    return ConfigError(f"{feature} needs {PACKAGES.get(top, top)}: pip install 'cnnlab[{extra}]'")
