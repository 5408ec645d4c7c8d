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

The input's shape sets the dimension (lecture 001, "K-D filters"): on a ``(C, L)`` sequence
``c5x16`` is a Conv1d with a 5-wide kernel, ``p2`` a MaxPool1d, ``bn`` a BatchNorm1d, ``gap``
pools to length 1; on a ``(C, D, H, W)`` volume they are the 3-d layers with cubic windows.
``lc`` and TensorFlow's ``same``/``valid`` paddings are 2-D only.

``maxout`` must directly follow a ``c``/``lc``/``f`` layer, which then gets twice the units
(each unit is the max of its 2 affine pieces), so ``f84-maxout`` still outputs 84 values.

YAML files hold a layer list with cnnlab's, Caffe's or Keras/TensorFlow's names and keys,
computed as TensorFlow computes them (``padding: same`` with any stride); see
:mod:`cnnlab.models.spec_yaml`. Caffe's own ``.prototxt`` files: :mod:`cnnlab.models.caffe`.

The output layer: when the last layer is ``fN``, N must equal ``num_classes`` (a ModelError says
so otherwise); when it is anything else, a fully connected layer with ``num_classes`` outputs is
appended. Spatial sizes follow ``(W - F + 2P) / S + 1`` (lecture 004) and must stay positive
integers: a layer that does not fit raises a ModelError naming it (lecture 001: "avoid
combinations of hyper-parameters that do not click"). ``strict=False`` (what ``cnnlab summary``
builds with, to warn instead) rounds such a size down as torch does: the last rows and columns
that no window covers are ignored. TensorFlow's ``same``/``valid`` paddings have their own
rounding and are never refused.

Example:
    >>> model = build_from_spec("c3x8p1-relu-p2-f10", num_classes=10, input_size=(1, 8, 8))
"""

from __future__ import annotations

import logging
import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.local import LocallyConnected2d
from cnnlab.models.base import ImageClassifier, activation_pieces, make_activation
from cnnlab.models.spec_layers import (
    ACTIVATION_NAMES,
    Layer,
    read_model_file,  # noqa: F401  (registry reads it here)
)
from cnnlab.models.spec_yaml import load_layers

WEIGHT_KINDS = ("conv", "lc", "fc")
log = logging.getLogger(__name__)
_NOTED: set[int] = set()
DEFAULT_CLASSES = 10  # output units appended when neither the spec nor the caller sets them


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


# --- building -----------------------------------------------------------------------------------


def tf_same_padding(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``padding="same"`` along one axis of ``n`` pixels: ``out = ceil(n / s)``,
    ``total = max((out - 1) s + k - n, 0)``, split ``(total // 2, the rest)``: the extra pixel
    goes to the bottom/right.

    Example:
        >>> tf_same_padding(7, 4, 2)  # out 4: (4 - 1) * 2 + 4 - 7 = 3 -> 1 before, 2 after
        (1, 2)
    """
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


def _positions(n: int, layer: Layer, axis: str, strict: bool = True) -> int:
    """Window positions along one axis: (W - F + 2P) / S + 1, a whole number >= 1.

    ``strict=False`` rounds down like torch does (the last rows are silently ignored), so
    ``cnnlab summary`` can build such a net and warn about it instead of refusing it.
    TensorFlow's paddings round as TensorFlow does: ``same`` gives ``ceil(W / S)``, ``valid``
    ``ceil((W - F + 1) / S)``.
    """
    if layer.kernel < 1 or layer.stride < 1:
        raise ModelError(f"{layer.where}: kernel and stride must be at least 1")
    if layer.tf_padding == "same":
        return -(-n // layer.stride)
    span = n + 2 * layer.padding - layer.kernel
    if span < 0:
        raise ModelError(f"{layer.where}: a {layer.kernel}x{layer.kernel} window does not fit "
                         f"the {n}-pixel {axis} (padding {layer.padding}); the map has shrunk "
                         "too far: use padding, a smaller kernel or fewer pooling layers")
    if span % layer.stride and strict and not layer.tf_padding:
        raise ModelError(f"{layer.where}: {axis} ({n} - {layer.kernel} + 2*{layer.padding}) / "
                         f"{layer.stride} + 1 = {span / layer.stride + 1:g} is not a whole number "
                         "of positions; change the stride, padding or input size")
    return span // layer.stride + 1


class TFAvgPool2d(nn.Module):
    """TensorFlow's average pooling with ``same`` padding ``(left, right, top, bottom)``: each
    window's sum over the number of input pixels in it (padding not counted)."""

    def __init__(self, kernel_size: int, stride: int, padding: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = F.pad(torch.ones_like(x[:1, :1]), self.padding)  # (1, 1, H', W'): 1 = pixel
        return (F.avg_pool2d(F.pad(x, self.padding), self.kernel_size, self.stride)
                / F.avg_pool2d(inside, self.kernel_size, self.stride))  # (B, C, out_h, out_w)


def _window_modules(layer: Layer, c: int, out: int, hw: tuple[int, int]) -> list[nn.Module]:
    """The module(s) of one window layer; TensorFlow's asymmetric ``same`` padding becomes a
    padding module before it (zeros for conv, -inf for max pooling) or :class:`TFAvgPool2d`."""
    k, s = layer.kernel, layer.stride
    if layer.tf_padding == "same":
        (top, bottom), (left, right) = (tf_same_padding(n, k, s) for n in hw)
        pad4, padding = (left, right, top, bottom), (top, left)
        symmetric = top == bottom and left == right
    else:
        pad4, padding, symmetric = None, layer.padding, True
    if layer.kind == "lc":
        return [LocallyConnected2d(c, out, hw, k, s, pad4 or padding, bias=layer.bias)]
    if layer.kind == "conv":
        conv = nn.Conv2d(c, out, k, s, padding if symmetric else 0, bias=layer.bias)
        return [conv] if symmetric else [nn.ZeroPad2d(pad4), conv]
    if layer.kind == "maxpool":
        pool = nn.MaxPool2d(k, s, padding if symmetric else 0)
        return [pool] if symmetric else [nn.ConstantPad2d(pad4, float("-inf")), pool]
    if not layer.tf_padding:
        return [nn.AvgPool2d(k, s, padding)]
    return [nn.AvgPool2d(k, s, padding, count_include_pad=False) if symmetric
            else TFAvgPool2d(k, s, pad4)]


# k-D spec strings (lecture 001, "K-D filters"): the same tokens on a (C, L) input build 1-d
# layers, on a (C, D, H, W) input 3-d ones; 2-d layers are built by _window_modules.
AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
KD_WINDOWS = {"conv": {1: nn.Conv1d, 3: nn.Conv3d}, "maxpool": {1: nn.MaxPool1d, 3: nn.MaxPool3d},
              "avgpool": {1: nn.AvgPool1d, 3: nn.AvgPool3d}}
GLOBAL_AVGPOOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _kd_window_module(layer: Layer, c: int, out: int, dims: int) -> nn.Module:
    """The 1-d or 3-d conv/pool module of one window layer (cubic windows, symmetric padding)."""
    if layer.kind == "lc" or layer.tf_padding:
        what = "locally connected layers" if layer.kind == "lc" else "TensorFlow paddings"
        raise ModelError(f"{layer.where}: {what} are 2-D only; on {dims}-D input use c, p or a "
                         "layers")
    k, s, p = layer.kernel, layer.stride, layer.padding
    module = KD_WINDOWS[layer.kind][dims]
    if layer.kind == "conv":
        return module(c, out, k, s, p, bias=layer.bias)
    return module(k, s, p)


class _Builder:
    """Turns layers into ``features`` (until the first fc) and ``classifier``, tracking shapes."""

    def __init__(self, input_size: tuple[int, ...], strict: bool = True) -> None:
        if len(input_size) not in (2, 3, 4):
            raise ModelError(f"input size {'x'.join(map(str, input_size))}: give (C, L), "
                             "(C, H, W) or (C, D, H, W)")
        self.strict = strict
        self.shape: tuple[int, ...] = tuple(input_size)  # (C, H, W), or (F,) once flattened
        self.features: list[nn.Module] = []
        self.classifier: list[nn.Module] = []
        self.notes: list[str] = []

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
        c, *sizes = self.shape
        out = (layer.units * grow or c,
               *(_positions(n, layer, axis, self.strict)
                 for n, axis in zip(sizes, AXIS_NAMES[len(sizes)], strict=True)))
        if len(sizes) == 2:
            modules = _window_modules(layer, c, out[0], tuple(sizes))
        else:
            modules = [_kd_window_module(layer, c, out[0], len(sizes))]
        for module in modules[:-1]:
            self.add(module)  # TensorFlow's asymmetric padding
        self.add(modules[-1], out)

    def flatten(self) -> None:
        if not self.flat:
            self.classifier.append(nn.Flatten())  # (B, C, *spatial) -> (B, C*prod(spatial))
            self.shape = (math.prod(self.shape),)

    def fc(self, layer: Layer, grow: int = 1) -> None:
        if layer.units < 1:
            raise ModelError(f"{layer.where}: needs at least 1 unit")
        self.flatten()
        self.add(nn.Linear(self.shape[0], layer.units * grow, bias=layer.bias),
                 (layer.units * grow,))

    def other(self, layer: Layer) -> None:
        if layer.kind == "gap":
            if self.flat:
                raise ModelError(f"{layer.where}: global pooling must come before the first fc")
            dims = len(self.shape) - 1
            self.add(GLOBAL_AVGPOOL[dims](1), (self.shape[0], *[1] * dims))
        elif layer.kind == "flatten":
            self.flatten()
        elif layer.kind == "bn":
            norm = BATCHNORM[max(1, len(self.shape) - 1)]  # (B, F) and (B, C, L): 1-d
            self.add(norm(self.shape[0], eps=layer.eps, momentum=layer.momentum))
        elif layer.kind == "drop":
            if not 0.0 <= layer.rate < 1.0:
                raise ModelError(f"{layer.where}: dropout rate must be in [0, 1)")
            self.add(nn.Dropout(layer.rate))
        elif layer.activation == "softmax":
            raise ModelError(f"{layer.where}: softmax is accepted only as the last layer (it is "
                             "dropped there: training uses the logits)")
        elif layer.activation == "leaky_relu" and layer.slope != 0.1:
            self.add(nn.LeakyReLU(layer.slope, inplace=True))  # TensorFlow's 0.2, Keras's 0.3
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
        self.notes = list(builder.notes)  # what was dropped (a final softmax)

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
    A final softmax (Keras's ``Dense(10, activation="softmax")``) is left out: cnnlab trains on
    the logits (cross-entropy applies the softmax); ``builder.notes`` says so.
    """
    builder = _Builder(input_size, strict)
    if len(layers) > 1 and layers[-1].activation == "softmax":
        builder.notes.append(f"{layers[-1].where}: the final softmax is left out of the model: "
                             "training uses the logits (cross-entropy applies the softmax)")
        layers = layers[:-1]
    last = layers[-1]
    if num_classes is None:
        num_classes = last.units if last.kind == "fc" else DEFAULT_CLASSES
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

    Notes on what was left out (a final softmax) are in ``model.notes`` and logged once.

    Example:
        >>> build_from_spec("c3x8p1-relu-p2-f10", num_classes=10, input_size=(1, 8, 8))(
        ...     torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    if spec.lower().endswith((".yaml", ".yml")):
        layers = load_layers(spec, text)
    else:
        layers = parse_spec(spec)
    builder = build_layers(layers, num_classes=num_classes, input_size=input_size, strict=strict)
    model = SpecNet(builder, input_size, spec)
    if model.notes and hash((spec, text)) not in _NOTED:  # once per definition and process
        _NOTED.add(hash((spec, text)))
        log.warning("%s", "; ".join(model.notes))
    return model
