"""The one front door to every model: ``create(name, ...)`` and ``list_models()``.

A family module registers each public builder with :func:`register`; builders are plain,
keyword-only functions ``builder(*, num_classes, in_channels, **options) -> nn.Module`` whose
signature is their documentation. ``create`` validates the name, drops ``None`` options (so CLI
defaults never override a model's own), builds, and optionally loads weights.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cnnlab.errors import ModelError, choices_hint

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What ``cnnlab models`` shows for one registered model."""

    name: str
    builder: Builder
    input_size: tuple[int, int, int]  # default (C, H, W)
    paper: str
    family: str


_MODELS: dict[str, ModelInfo] = {}


def register(
    name: str, *, input_size: tuple[int, int, int], paper: str
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` with its default input and paper."""

    def add(builder: Builder) -> Builder:
        assert name not in _MODELS, f"model {name} registered twice"
        family = builder.__module__.rsplit(".", 1)[-1]
        _MODELS[name] = ModelInfo(name, builder, input_size, paper, family)
        return builder

    return add


def _load_families() -> None:
    # Importing the package registers every family module (see cnnlab/models/__init__.py).
    import cnnlab.models  # noqa: F401


def list_models() -> list[ModelInfo]:
    """All registered models, sorted by family then name."""
    _load_families()
    return sorted(_MODELS.values(), key=lambda m: (m.family, m.name))


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name`` (raises ModelError listing the choices)."""
    _load_families()
    if name not in _MODELS:
        raise ModelError(f"unknown model {choices_hint(name, list(_MODELS))}")
    return _MODELS[name]


def is_spec(name: str) -> bool:
    """True when ``name`` is a layer spec string or a YAML file rather than a zoo name."""
    # the first layer of a spec is a window or fc token, e.g. c3x1s3 or lc7x5 in lc7x5-relu-f10
    first_layer = re.fullmatch(r"(c|lc|p|a|f)\d[\dxsp]*", name.split("-", 1)[0]) is not None
    return name.endswith((".yaml", ".yml")) or (name not in _MODELS and first_layer)


def create(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int | None = None,
    weights: str | None = None,
    input_size: tuple[int, int, int] | None = None,
    **options: object,
) -> nn.Module:
    """Build a model by zoo name, spec string (``c5x6-relu-p2-f10``) or YAML layer file.

    Args:
        name: registry name (see ``cnnlab models``), spec string or ``.yaml`` path.
        num_classes: size of the output layer.
        in_channels: input channels; ``None`` keeps the model's default.
        weights: optional weight file (``.safetensors`` or a torchvision-layout ``.pth``).
        input_size: ``(C, H, W)``, needed only by spec/YAML models to size their first FC layer.
        **options: model-specific keyword options; ``None`` values are dropped.

    Example:
        >>> model = create("lenet5", num_classes=10, activation="relu")
    """
    _load_families()
    options = {k: v for k, v in options.items() if v is not None}
    if is_spec(name):
        from cnnlab.models.spec import build_from_spec

        strict = bool(options.pop("strict", True))
        if options:
            raise ModelError(f"'{name}' is a layer spec: options like {next(iter(options))!r} "
                             "do not apply (write them into the spec)")

        c = in_channels if in_channels is not None else (input_size[0] if input_size else 1)
        size = input_size if input_size is not None else (c, 32, 32)
        model = build_from_spec(name, num_classes=num_classes, input_size=(c, *size[1:]),
                                strict=strict)
    else:
        info = model_info(name)
        kwargs: dict[str, object] = {"num_classes": num_classes, **options}
        if in_channels is not None:
            kwargs["in_channels"] = in_channels
        _check_options(info, kwargs)
        model = info.builder(**kwargs)
    if weights is not None:
        from cnnlab.models.weights import load_weights

        load_weights(model, weights, num_classes=num_classes)
    return model


def _check_options(info: ModelInfo, kwargs: dict[str, object]) -> None:
    params = inspect.signature(info.builder).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        allowed = [p for p in params if p not in ("num_classes", "in_channels")]
        raise ModelError(
            f"model '{info.name}' has no option {unknown[0]!r}; its options are: "
            f"{', '.join(allowed) or '(none)'}"
        )


def default_input_size(name: str) -> tuple[int, int, int]:
    """The ``(C, H, W)`` a zoo model is designed for (spec models: 1x32x32)."""
    if is_spec(name):
        return (1, 32, 32)
    return model_info(name).input_size
