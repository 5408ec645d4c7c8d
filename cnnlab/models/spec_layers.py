"""The parsed layer both spec strings (:mod:`cnnlab.models.spec`) and YAML layer lists
(:mod:`cnnlab.models.spec_yaml`) produce, and the reader of model definition files they and
Caffe's prototxt reader share. No torch here: the parsers below it stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import ModelError

ACTIVATION_NAMES = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "lrelu": "leaky_relu",
                    "leaky_relu": "leaky_relu", "elu": "elu", "maxout": "maxout"}
MAX_MODEL_FILE_BYTES = 1 << 20  # a layer list is a few kB; more is not a model file


@dataclass(frozen=True)
class Layer:
    """One parsed layer; ``where`` names it in error messages (``layer 3 'c5x16'``)."""

    kind: str  # conv, lc, maxpool, avgpool, gap, fc, flatten, act, bn, drop
    where: str
    units: int = 0  # filters or fully connected units
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    activation: str = ""
    rate: float = 0.5
    tf_padding: str = ""  # "same" or "valid": TensorFlow's rule instead of ``padding``
    slope: float = 0.1  # leaky_relu's negative slope (lecture 003: 0.1; TensorFlow: 0.2)
    bias: bool = True
    eps: float = 1e-5  # batch norm
    momentum: float = 0.1  # batch norm, torch's meaning


def read_model_file(path: Path) -> str:
    """The text of a model definition file (UTF-8, at most 1 MiB), or a ModelError."""
    if not path.is_file():
        raise ModelError(f"no model file at {path}")
    if path.stat().st_size > MAX_MODEL_FILE_BYTES:
        raise ModelError(f"{path}: {path.stat().st_size} bytes is too large for a model "
                         f"definition (at most {MAX_MODEL_FILE_BYTES})")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a UTF-8 text file") from None
