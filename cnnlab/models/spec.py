"""Architectures without Python: a one-line spec string or a YAML layer list.

Spec strings (one token per layer, joined by ``-``, any case; any layer may come first, e.g.
``bn-c3x4-f10``), e.g. LeNet-5 with ReLU and max-pooling::

    c5x6-relu-p2-c5x16-relu-p2-f120-relu-f84-relu-f10

| token          | layer                                                                  |
|----------------|------------------------------------------------------------------------|
| ``c3x16s2p1``  | conv, 3x3 kernel, 16 filters, stride 2 (default 1), padding 1 (def. 0) |
| ``lc7x5``      | locally connected (no weight sharing), same suffixes as ``c``          |
| ``p2``/``p3s2``| max-pool 2x2 (stride = kernel unless ``sN``; ``pN`` suffix pads)       |
| ``a2``         | average pool, same suffixes as ``p``                                   |
| ``gap``        | global average pool to 1x1                                             |
| ``f120``       | fully connected, 120 units (a flatten is inserted before the first)   |
| ``relu`` ``tanh`` ``sigmoid`` ``lrelu`` ``elu`` ``maxout`` | activations (lecture 003) |
| ``bn``         | batch norm (2-d before the first ``f``, 1-d after)                     |
| ``drop0.5``    | dropout with that rate (``drop`` alone: 0.5)                           |

``maxout`` must directly follow a ``c``/``lc``/``f`` layer, which then gets twice the units
(each unit is the max of its 2 affine pieces), so ``f84-maxout`` still outputs 84 values.

YAML files (lecture 004's Caffe ``layer { type: "Convolution" num_output: 96 kernel_size: 11
stride: 4 }`` and TensorFlow ``conv2d(filters=32, kernel_size=[5, 5], padding="same",
activation=relu)``) hold a ``layers:`` list of mappings with a ``type`` (conv, locally_connected,
max_pool, avg_pool, global_avg_pool, fc, batch_norm, dropout or an activation name) and keys
``filters``/``units`` (or Caffe's ``num_output``), ``kernel`` (or ``kernel_size``), ``stride``,
``padding`` (an int, ``same`` or ``valid``), ``activation``, ``rate`` and an optional ``name``.

The output layer: when the last layer is ``fN``, N must equal ``num_classes`` (a ModelError says
so otherwise); when it is anything else, a fully connected layer with ``num_classes`` outputs is
appended. Spatial sizes follow ``(W - F + 2P) / S + 1`` (lecture 004) and must stay positive
integers: a layer that does not fit raises a ModelError naming it (lecture 001: "avoid
combinations of hyper-parameters that do not click").

Example:
    >>> model = build_from_spec("c3x8p1-relu-p2-f10", num_classes=10, input_size=(1, 8, 8))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.local import LocallyConnected2d
from cnnlab.models.base import ImageClassifier, activation_pieces, make_activation

ACTIVATION_NAMES = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "lrelu": "leaky_relu",
                    "leaky_relu": "leaky_relu", "elu": "elu", "maxout": "maxout"}
WEIGHT_KINDS = ("conv", "lc", "fc")
DEFAULT_CLASSES = 10  # output units appended when neither the spec nor the caller sets them


@dataclass(frozen=True)
class Layer:
    """One parsed layer; ``where`` names it in error messages (``layer 3 'c5x16'``)."""

    kind: str  # conv, lc, maxpool, avgpool, gap, fc, act, bn, drop
    where: str
    units: int = 0  # filters or fully connected units
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    activation: str = ""
    rate: float = 0.5


# --- spec strings -----------------------------------------------------------------------------

_WINDOW = r"(\d+)x(\d+)(?:s(\d+))?(?:p(\d+))?"
_POOL = r"(\d+)(?:s(\d+))?(?:p(\d+))?"
_TOKEN_HELP = ("expected one of cKxN[sS][pP] (conv), lcKxN[sS][pP], pK[sS][pP] (max pool), "
               "aK[sS][pP] (avg pool), gap, fN, bn, drop[R], or an activation "
               f"({', '.join(ACTIVATION_NAMES)})")


def parse_token(token: str, where: str) -> Layer:
    """One spec token -> :class:`Layer` (e.g. ``c3x16s2p1`` -> 3x3 conv, 16 filters, s2, p1)."""
    if match := re.fullmatch("c" + _WINDOW, token):
        k, n, s, p = match.groups()
        return Layer("conv", where, int(n), int(k), int(s or 1), int(p or 0))
    if match := re.fullmatch("lc" + _WINDOW, token):
        k, n, s, p = match.groups()
        return Layer("lc", where, int(n), int(k), int(s or 1), int(p or 0))
    if match := re.fullmatch("([pa])" + _POOL, token):
        mode, k, s, p = match.groups()
        kind = "maxpool" if mode == "p" else "avgpool"
        return Layer(kind, where, kernel=int(k), stride=int(s or k), padding=int(p or 0))
    if match := re.fullmatch(r"f(\d+)", token):
        return Layer("fc", where, units=int(match.group(1)))
    if match := re.fullmatch(r"drop(\d*\.?\d+)?", token):
        return Layer("drop", where, rate=float(match.group(1) or 0.5))
    if token in ACTIVATION_NAMES:
        return Layer("act", where, activation=ACTIVATION_NAMES[token])
    if token in ("bn", "gap"):
        return Layer(token, where)
    raise ModelError(f"{where}: {_TOKEN_HELP}")


def parse_spec(spec: str) -> list[Layer]:
    """``"c5x6-relu-p2-f10"`` -> one :class:`Layer` per token (numbered from 1)."""
    tokens = spec.strip().split("-")  # case-insensitive: C5x6 is c5x6; messages quote as typed
    return [parse_token(t.lower(), f"layer {i} {t!r}") for i, t in enumerate(tokens, start=1)]


# --- YAML layer lists -------------------------------------------------------------------------

_TYPES = {"conv": "conv", "convolution": "conv", "conv2d": "conv", "locally_connected": "lc",
          "max_pool": "maxpool", "avg_pool": "avgpool", "global_avg_pool": "gap",
          "fc": "fc", "dense": "fc", "linear": "fc", "innerproduct": "fc",
          "batch_norm": "bn", "dropout": "drop", **{a: "act" for a in ACTIVATION_NAMES}}
_KEYS = {"conv": {"filters", "kernel", "stride", "padding", "activation"},
         "lc": {"filters", "kernel", "stride", "padding", "activation"},
         "maxpool": {"kernel", "stride", "padding"}, "avgpool": {"kernel", "stride", "padding"},
         "fc": {"units", "activation"}, "drop": {"rate"}, "gap": set(), "bn": set(), "act": set()}
_ALIASES = {"num_output": None, "kernel_size": "kernel", "p": "rate"}  # None: filters or units


def load_yaml_layers(path: str | Path, text: str | None = None) -> list[Layer]:
    """Read a YAML layer list (a ``layers:`` key or a bare list) into :class:`Layer` objects;
    ``text``: the file's content as stored in a run (then ``path`` only names it)."""
    import yaml

    path = Path(path)
    if text is None:
        text = read_model_file(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ModelError(f"{path}: not valid YAML ({error})") from None
    entries = data.get("layers") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ModelError(f"{path}: expected a non-empty list of layers under 'layers:'")
    layers: list[Layer] = []
    for i, entry in enumerate(entries, start=1):
        layers += _yaml_layer(entry, f"{path.name}: layer {i}")
    return layers


MAX_MODEL_FILE_BYTES = 1 << 20  # a layer list is a few kB; more is not a model file


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


def _yaml_layer(entry: object, where: str) -> list[Layer]:
    """One YAML mapping -> its layer, plus an activation layer when it has ``activation:``."""
    if not isinstance(entry, dict) or "type" not in entry:
        raise ModelError(f"{where}: expected a mapping with a 'type', got {entry!r}")
    values = dict(entry)
    type_name = str(values.pop("type"))
    if "name" in values:
        where = f"{where} {values.pop('name')!r}"
    kind = _TYPES.get(type_name.lower())
    if kind is None:
        raise ModelError(f"{where}: unknown type {type_name!r}; choose one of: "
                         f"{', '.join(sorted(_TYPES))}")
    where = f"{where} ({type_name})"
    values = _resolve_aliases(values, kind)
    unknown = set(values) - _KEYS[kind]
    if unknown:
        raise ModelError(f"{where}: unknown key {sorted(unknown)[0]!r}; this type takes: "
                         f"{', '.join(sorted(_KEYS[kind])) or '(no keys)'}")
    layer = _layer_from_values(kind, values, where, type_name.lower())
    activation = values.get("activation")
    if activation is None:
        return [layer]
    if activation not in ACTIVATION_NAMES:
        raise ModelError(f"{where}: unknown activation {activation!r}; choose one of: "
                         f"{', '.join(ACTIVATION_NAMES)}")
    return [layer, Layer("act", f"{where} activation", activation=ACTIVATION_NAMES[activation])]


def _resolve_aliases(values: dict, kind: str) -> dict:
    resolved = {}
    for key, value in values.items():
        if key in _ALIASES:
            key = _ALIASES[key] or ("units" if kind == "fc" else "filters")
        resolved[key] = value
    return resolved


def _layer_from_values(kind: str, values: dict, where: str, type_name: str) -> Layer:
    def integer(key: str, default: int | None = None) -> int:
        value = values.get(key, default)
        if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
            value = value[0]  # TensorFlow's kernel_size: [5, 5]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            need = "missing" if value is None else f"{value!r} is not a non-negative integer"
            raise ModelError(f"{where}: '{key}' {need} (square kernels only)")
        return value

    if kind in WEIGHT_KINDS:
        units = integer("units" if kind == "fc" else "filters")
        if kind == "fc":
            return Layer(kind, where, units=units)
        kernel = integer("kernel")
        padding = values.get("padding", 0)
        if padding in ("same", "valid"):
            if padding == "same" and (kernel % 2 == 0 or values.get("stride", 1) != 1):
                raise ModelError(f"{where}: padding 'same' needs an odd kernel and stride 1")
            values = {**values, "padding": (kernel - 1) // 2 if padding == "same" else 0}
        return Layer(kind, where, units, kernel, integer("stride", 1), integer("padding", 0))
    if kind in ("maxpool", "avgpool"):
        kernel = integer("kernel")
        return Layer(kind, where, kernel=kernel, stride=integer("stride", kernel),
                     padding=integer("padding", 0))
    if kind == "drop":
        rate = values.get("rate", 0.5)
        if not isinstance(rate, int | float) or isinstance(rate, bool):
            raise ModelError(f"{where}: 'rate' {rate!r} is not a number")
        return Layer(kind, where, rate=float(rate))
    if kind == "act":
        return Layer(kind, where, activation=ACTIVATION_NAMES[type_name])
    return Layer(kind, where)


# --- building -----------------------------------------------------------------------------------


def _positions(n: int, layer: Layer, axis: str, strict: bool = True) -> int:
    """Window positions along one axis: (W - F + 2P) / S + 1, a whole number >= 1.

    ``strict=False`` rounds down like torch does (the last rows are silently ignored), so
    ``cnnlab summary`` can build such a net and warn about it instead of refusing it.
    """
    span = n + 2 * layer.padding - layer.kernel
    if layer.kernel < 1 or layer.stride < 1:
        raise ModelError(f"{layer.where}: kernel and stride must be at least 1")
    if span < 0:
        raise ModelError(f"{layer.where}: a {layer.kernel}x{layer.kernel} window does not fit "
                         f"the {n}-pixel {axis} (padding {layer.padding}); the map has shrunk "
                         "too far: use padding, a smaller kernel or fewer pooling layers")
    if span % layer.stride and strict:
        raise ModelError(f"{layer.where}: {axis} ({n} - {layer.kernel} + 2*{layer.padding}) / "
                         f"{layer.stride} + 1 = {span / layer.stride + 1:g} is not a whole number "
                         "of positions; change the stride, padding or input size")
    return span // layer.stride + 1


class _Builder:
    """Turns layers into ``features`` (until the first fc) and ``classifier``, tracking shapes."""

    def __init__(self, input_size: tuple[int, int, int], strict: bool = True) -> None:
        self.strict = strict
        self.shape: tuple[int, ...] = tuple(input_size)  # (C, H, W), or (F,) once flattened
        self.features: list[nn.Module] = []
        self.classifier: list[nn.Module] = []

    @property
    def flat(self) -> bool:
        return len(self.shape) == 1

    def add(self, module: nn.Module, shape: tuple[int, ...] | None = None) -> None:
        (self.classifier if self.flat else self.features).append(module)
        self.shape = shape or self.shape

    def spatial(self, layer: Layer, grow: int = 1) -> None:
        if self.flat:
            raise ModelError(f"{layer.where}: spatial layers must come before the first fc")
        if layer.kind in WEIGHT_KINDS and layer.units < 1:
            raise ModelError(f"{layer.where}: needs at least 1 filter")
        if layer.kind not in WEIGHT_KINDS and 2 * layer.padding > layer.kernel:
            raise ModelError(f"{layer.where}: pooling padding may be at most half the window")
        c, h, w = self.shape
        out = (layer.units * grow or c, _positions(h, layer, "height", self.strict),
               _positions(w, layer, "width", self.strict))
        if layer.kind == "conv":
            module: nn.Module = nn.Conv2d(c, out[0], layer.kernel, layer.stride, layer.padding)
        elif layer.kind == "lc":
            module = LocallyConnected2d(c, out[0], (h, w), layer.kernel, layer.stride,
                                        layer.padding)
        elif layer.kind == "maxpool":
            module = nn.MaxPool2d(layer.kernel, layer.stride, layer.padding)
        else:
            module = nn.AvgPool2d(layer.kernel, layer.stride, layer.padding)
        self.add(module, out)

    def fc(self, layer: Layer, grow: int = 1) -> None:
        if layer.units < 1:
            raise ModelError(f"{layer.where}: needs at least 1 unit")
        if not self.flat:
            self.classifier.append(nn.Flatten())  # (B, C, H, W) -> (B, C*H*W)
            self.shape = (self.shape[0] * self.shape[1] * self.shape[2],)
        self.add(nn.Linear(self.shape[0], layer.units * grow), (layer.units * grow,))

    def other(self, layer: Layer) -> None:
        if layer.kind == "gap":
            if self.flat:
                raise ModelError(f"{layer.where}: global pooling must come before the first fc")
            self.add(nn.AdaptiveAvgPool2d(1), (self.shape[0], 1, 1))
        elif layer.kind == "bn":
            self.add(nn.BatchNorm1d(self.shape[0]) if self.flat else nn.BatchNorm2d(self.shape[0]))
        elif layer.kind == "drop":
            if not 0.0 <= layer.rate < 1.0:
                raise ModelError(f"{layer.where}: dropout rate must be in [0, 1)")
            self.add(nn.Dropout(layer.rate))
        else:
            pieces = activation_pieces(layer.activation)  # maxout: (2C, ...) -> (C, ...)
            self.add(make_activation(layer.activation),
                     (self.shape[0] // pieces, *self.shape[1:]))


class SpecNet(ImageClassifier):
    """A network built from a spec: ``features`` (conv part) then ``classifier`` (flatten, fc).

    The same layout as :class:`cnnlab.models.lenet.LeNet`, so the LeNet-5 spec string and
    ``lenet5(activation="relu", pooling="max")`` share parameter names.
    """

    def __init__(self, builder: _Builder, input_size: tuple[int, int, int], spec: str) -> None:
        super().__init__()
        self.features = nn.Sequential(*builder.features)
        self.classifier = nn.Sequential(*builder.classifier)
        self.head_path = f"classifier.{len(self.classifier) - 1}"
        self.input_size, self.spec = tuple(input_size), spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_size:
            raise ModelError(f"model {self.spec!r} was built for inputs "
                             f"{'x'.join(map(str, self.input_size))}, got "
                             f"{'x'.join(map(str, x.shape[1:]))}; pass input_size to create()")
        return self.classifier(self.features(x))  # (B, num_classes)


def build_layers(layers: list[Layer], *, num_classes: int | None,
                 input_size: tuple[int, int, int], strict: bool = True) -> _Builder:
    """Build every layer in order, appending an fc head unless the last layer is one.

    ``num_classes=None``: the last layer's units when it is ``fN``, else :data:`DEFAULT_CLASSES`.
    """
    last = layers[-1]
    if num_classes is None:
        num_classes = last.units if last.kind == "fc" else DEFAULT_CLASSES
    builder = _Builder(input_size, strict)
    for index, layer in enumerate(layers):
        following = layers[index + 1] if index + 1 < len(layers) else None
        # a weight layer followed by maxout gets one unit per affine piece
        grow = activation_pieces(following.activation) if following else 1
        if layer.kind in ("conv", "lc", "maxpool", "avgpool"):
            builder.spatial(layer, grow)
        elif layer.kind == "fc":
            builder.fc(layer, grow)
        elif layer.activation == "maxout" and (index == 0 or
                                               layers[index - 1].kind not in WEIGHT_KINDS):
            raise ModelError(f"{layer.where}: maxout must directly follow a c, lc or f layer "
                             "(it takes the max over pairs of that layer's units)")
        else:
            builder.other(layer)
    if last.kind == "fc" and last.units != num_classes:
        raise ModelError(f"{last.where}: the output layer has {last.units} units but there are "
                         f"{num_classes} classes; end the spec with f{num_classes}, or leave "
                         "the final f layer out to get one sized automatically")
    if last.kind != "fc":
        builder.fc(Layer("fc", "output layer", units=num_classes))
    return builder


def build_from_spec(spec: str, *, num_classes: int | None, input_size: tuple[int, int, int],
                    strict: bool = True, text: str | None = None) -> SpecNet:
    """Build a model from a spec string or a ``.yaml``/``.yml`` layer file (see module doc).

    Args:
        spec: e.g. ``"c5x6-relu-p2-c5x16-relu-p2-f120-relu-f84-relu-f10"`` or ``"net.yaml"``.
        num_classes: outputs of the final layer (``None``: the final ``fN``'s N, else 10).
        input_size: ``(C, H, W)`` of the inputs; fixes the sizes of fc and lc layers.
        strict: refuse a layer whose output size is not a whole number (False: round down).
        text: a YAML file's content stored in a run (``spec`` then only names the file).

    Example:
        >>> build_from_spec("c3x8p1-relu-p2-f10", num_classes=10, input_size=(1, 8, 8))(
        ...     torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    if spec.lower().endswith((".yaml", ".yml")):
        layers = load_yaml_layers(spec, text)
    else:
        layers = parse_spec(spec)
    builder = build_layers(layers, num_classes=num_classes, input_size=input_size, strict=strict)
    return SpecNet(builder, input_size, spec)
