"""The one front door to every model: ``create(name, ...)`` and ``list_models()``.

A family module registers each public builder with :func:`register`; builders are plain,
keyword-only functions ``builder(*, num_classes, in_channels, **options) -> nn.Module`` whose
signature is their documentation. ``create`` validates the name, drops ``None`` options (so CLI
defaults never override a model's own), builds, and optionally loads weights.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cnnlab.errors import ModelError, choices_hint
from cnnlab.models.base import ImageClassifier

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What ``cnnlab models`` shows for one registered model."""

    name: str
    builder: Builder
    input_size: tuple[int, ...]  # default (C, H, W); (C, L) for 1-D, (C, D, H, W) for 3-D
    paper: str
    family: str

    @property
    def dims(self) -> int:
        """Spatial dimensions of the input: 1 (sequences), 2 (images), 3 (clips, volumes)."""
        return len(self.input_size) - 1


_MODELS: dict[str, ModelInfo] = {}


def register(
    name: str, *, input_size: tuple[int, ...], paper: str
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` with its default input and paper."""

    def add(builder: Builder) -> Builder:
        assert name not in _MODELS, f"model {name} registered twice"
        family = builder.__module__.rsplit(".", 1)[-1]
        _MODELS[name] = ModelInfo(name, builder, input_size, paper, family)
        return builder

    return add


# The family modules; each registers its builders with @register when imported. A new family
# is one module plus one name here.
FAMILIES = ("airbench", "alexnet", "cifarnets", "googlenet", "lenet", "resnet", "segmentation",
            "sequence", "vgg", "xonet")


def _load_families() -> None:
    """Import every family module (once; the registry itself depends on no family)."""
    for family in FAMILIES:
        importlib.import_module(f"cnnlab.models.{family}")


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


_SPEC_TOKEN = re.compile(r"(c|lc|p|a|f)\d[\dxsp]*", re.IGNORECASE)  # c3x1s3, lc7x5, p2, f10


MODEL_FILE_SUFFIXES = (".yaml", ".yml", ".prototxt")  # models defined by a file (kept in runs)
CAFFE_SUFFIX = ".prototxt"  # Caffe network definitions (cnnlab.models.caffe)


def is_model_file(name: str) -> bool:
    """True when ``name`` names a model definition file (YAML layer list, Caffe prototxt)."""
    return str(name).lower().endswith(MODEL_FILE_SUFFIXES)


def is_caffe_file(name: str) -> bool:
    """True when ``name`` names a Caffe network definition (``.prototxt``)."""
    return str(name).lower().endswith(CAFFE_SUFFIX)


def model_definition(name: str) -> dict | None:
    """``{"file", "format", "text"}`` of a file-defined model, read now so that a run keeps
    the definition it was trained with; None for zoo names and spec strings."""
    if not is_model_file(name):
        return None
    from pathlib import Path

    from cnnlab.models.spec import read_model_file

    path = Path(name).expanduser()
    return {"file": str(name), "format": path.suffix.lower(), "text": read_model_file(path)}


def is_spec(name: str) -> bool:
    """True when ``name`` is a layer spec string or a model file (YAML, Caffe ``.prototxt``)
    rather than a zoo name.

    Zoo names never contain ``-``, so any other name with a ``-`` is a spec (``relu-c3x4-f10``,
    ``C5x6-relu-f10``): its parser then names the layer it cannot read. A one-token spec must be a
    window or fc token (``f10``), so a mistyped model name is reported as an unknown model.

    Example:
        >>> is_spec("bn-c3x4-f10"), is_spec("f10"), is_spec("resnet18"), is_spec("resnet")
        (True, True, False, False)
    """
    if is_model_file(name):
        return True
    _load_families()
    return name not in _MODELS and ("-" in name or _SPEC_TOKEN.fullmatch(name) is not None)


def create(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    weights: str | None = None,
    input_size: tuple[int, int, int] | None = None,
    definition: str | None = None,
    **options: object,
) -> nn.Module:
    """Build a model by zoo name, spec string (``c5x6-relu-p2-f10``), YAML layer file or Caffe
    ``.prototxt`` (:mod:`cnnlab.models.caffe`).

    Args:
        name: registry name (see ``cnnlab models``), spec string, ``.yaml`` or ``.prototxt``
            path.
        num_classes: size of the output layer; ``None`` keeps the model's own default (its
            paper's: 1000 for the ImageNet nets, 10 for LeNet, as ``cnnlab models`` counts them),
            or with ``weights`` the class count of the file's head; spec models default to
            their final ``fN`` layer's N, else 10; Caffe files to their output layer's
            ``num_output`` (another value resizes that layer).
        in_channels: input channels; ``None`` keeps the model's default.
        weights: optional weight file (``.safetensors`` or a torchvision-layout ``.pth``).
        input_size: ``(C, H, W)``, needed only by spec/YAML models to size their first FC
            layer (Caffe files default to the size their input layer declares).
        definition: the text of the model file ``name`` as stored in a run; when given, the
            model is built from it and the file itself is not read.
        **options: model-specific keyword options; ``None`` values are dropped.

    Example:
        >>> model = create("lenet5", num_classes=10, activation="relu")
    """
    _load_families()
    options = {k: v for k, v in options.items() if v is not None}
    if is_spec(name):
        strict = bool(options.pop("strict", True))
        if options:
            kind = "model file" if is_model_file(name) else "layer spec"
            raise ModelError(f"'{name}' is a {kind}: options like {next(iter(options))!r} "
                             f"do not apply (write them into the {kind.split()[-1]})")

        if is_caffe_file(name):  # Caffe's own rounding applies: ``strict`` has no effect
            from cnnlab.models.caffe import build_caffe

            model = build_caffe(name, num_classes=num_classes, in_channels=in_channels,
                                input_size=input_size, text=definition)
            c, size = model.input_size[0], model.input_size
        else:
            c = in_channels if in_channels is not None else (input_size[0] if input_size else 1)
            size = input_size if input_size is not None else (c, 32, 32)
            model = _build_spec(name, num_classes, (c, *size[1:]), strict, definition)
    else:
        info = model_info(name)
        kwargs: dict[str, object] = dict(options)
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        if in_channels is not None:
            kwargs["in_channels"] = in_channels
        _check_options(info, kwargs)
        model = info.builder(**kwargs)
        c = in_channels if in_channels is not None else info.input_size[0]
        size = input_size if input_size is not None else (c, *info.input_size[1:])
    if weights is not None:
        from cnnlab.models.weights import load_weights

        load_weights(model, weights, num_classes=num_classes)
    if isinstance(model, ImageClassifier):
        model.input_shape = (c, *size[1:])  # what feature_info() traces the stages at
    return model


def _build_spec(name: str, num_classes: int | None, input_size: tuple[int, int, int],
                strict: bool, definition: str | None = None) -> nn.Module:
    """:func:`build_from_spec`; a first layer it cannot read also suggests a close zoo name."""
    from cnnlab.models.spec import build_from_spec

    try:
        return build_from_spec(name, num_classes=num_classes, input_size=input_size, strict=strict,
                               text=definition)
    except ModelError as error:
        _load_families()
        close = difflib.get_close_matches(name, list(_MODELS), n=1)
        if close and str(error).startswith("layer 1 "):  # e.g. resnet-18
            raise ModelError(f"{error} (or did you mean the model '{close[0]}'?)") from None
        raise


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
    """The ``(C, H, W)`` a zoo model is designed for (spec models: 1x32x32; Caffe files: the
    size their input layer declares, a ModelError when it declares none)."""
    if is_caffe_file(name):
        from cnnlab.models.caffe import declared_input_size

        size = declared_input_size(name)
        if size is None:
            raise ModelError(f"{name}: its input layer does not say the input size; give it "
                             "(e.g. cnnlab summary NET --input 1x28x28)")
        return size
    if is_spec(name):
        return (1, 32, 32)
    return model_info(name).input_size
