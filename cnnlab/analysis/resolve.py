"""Turn what a user types (zoo name, spec string, run directory, ``lecture:NAME``) into a module.

This is what ``cnnlab summary`` calls; from Python, pass modules to
:func:`cnnlab.analysis.summary.summary` directly.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from cnnlab.analysis.lecture_models import LECTURE_MODELS, build_lecture_model
from cnnlab.errors import ConfigError
from cnnlab.models import create, default_input_size, is_spec
from cnnlab.runs.reader import load_model


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``"3x32x32" -> (3, 32, 32)``; raises ConfigError with the expected form."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ConfigError(f"--input {text!r}: expected CxHxW with positive integers, e.g. 1x28x28")
    return values  # type: ignore[return-value]


def resolve_model(name: str, input_size: tuple[int, int, int] | None,
                  num_classes: int | None = None, options: dict | None = None
                  ) -> tuple[nn.Module, tuple[int, int, int]]:
    """The module named by ``name`` and the input size to summarise it on.

    ``num_classes`` ``None`` keeps the model's own default (:func:`cnnlab.models.create`: 1000
    for the ImageNet nets, a spec's final ``fN``); lecture models and saved runs keep theirs.
    ``options`` are a zoo model's builder options (``{"partial_c3": True}`` for LeNet-5).

    ``name`` is a run directory or checkpoint file (``cnnlab.runs.load_model``),
    ``lecture:NAME`` (:mod:`cnnlab.analysis.lecture_models`, built on the meta device), or
    anything :func:`cnnlab.models.create` accepts (zoo name, spec string, YAML file).
    """
    if options and (name.startswith("lecture:") or Path(name).exists()):
        raise ConfigError(f"--option applies to zoo models; '{name}' has its own settings")
    if name.startswith("lecture:"):
        model = build_lecture_model(name.split(":", 1)[1])
        return model, input_size or LECTURE_MODELS[name.split(":", 1)[1]][1]
    path = Path(name)
    if path.is_dir() or (path.is_file() and path.suffix == ".safetensors"):
        model, meta = load_model(path)
        saved = (meta.get("model") or {}).get("input_size")
        return model, input_size or tuple(saved)  # type: ignore[return-value]

    size = input_size or default_input_size(name)
    lenient = {"strict": False} if is_spec(name) else {}  # build it, then warn what does not fit
    model = create(name, num_classes=num_classes, in_channels=size[0], input_size=size,
                   **lenient, **(options or {}))
    return model, size
