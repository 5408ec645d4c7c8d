"""One builder per Caffe layer type: the layer's ``*_param`` block -> a torch module and the
shapes of its tops, by Caffe's rules (``caffe.proto``, ``conv_layer.cpp``,
``pooling_layer.cpp``, ...).

Shapes are per sample: ``(C, H, W)``, or ``(D,)`` after an InnerProduct. Convolutions round
down, ``(H + 2p - (d(k-1)+1)) / s + 1``; pooling rounds *up* (``round_mode: CEIL``, Caffe's
default) and, when padded, drops a last window that would start in the padding; torch's
``ceil_mode`` implements the same rule, and the one case where the two differ (an unpadded
stride larger than the window) is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.caffe_ops import (
    CaffeBatchNorm,
    Concat,
    Eltwise,
    InnerProduct,
    Scale,
    Split,
    WithinChannelLRN,
    fill,
)
from cnnlab.models.caffe_params import Built, CaffeLayer, Params, Shape


def _uninitialised(module: type[nn.Module], *args: object) -> nn.Module:
    """``module(*args)`` on the current default device without torch's initialisation (the
    Caffe fillers set every parameter next): halves the time to build CaffeNet."""
    return nn.utils.skip_init(module, *args, device=torch.empty(0).device)


def spatial(layer: CaffeLayer, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ModelError(f"{layer.where}: needs a C x H x W input, got a vector of "
                         f"{shape[0]} values (it comes after an InnerProduct or Flatten)")
    return shape  # type: ignore[return-value]


def _window(layer: CaffeLayer, p: Params) -> tuple:
    kernel = p.pair("kernel", None, 1)
    stride, pad = p.pair("stride", 1, 1), p.pair("pad", 0)
    return kernel, stride, pad


def _fits(layer: CaffeLayer, size: tuple[int, int], out: tuple[int, int], what: str) -> None:
    if min(out) < 1:
        raise ModelError(f"{layer.where}: {what} does not fit the {size[0]}x{size[1]} input "
                         f"(output {out[0]}x{out[1]}); use padding or a larger input")


CONV_KEYS = {"num_output", "bias_term", "pad", "pad_h", "pad_w", "kernel_size", "kernel_h",
             "kernel_w", "stride", "stride_h", "stride_w", "dilation", "group", "weight_filler",
             "bias_filler", "engine", "axis", "force_nd_im2col"}


def convolution(layer: CaffeLayer, p: Params, shapes: list[Shape],
                transposed: bool = False) -> Built:
    """Convolution (``(H + 2p - (d(k-1)+1)) // s + 1``) or Deconvolution
    (``s(H-1) + d(k-1)+1 - 2p``), with groups, dilation and Caffe's fillers."""
    c, h, w = spatial(layer, shapes[0])
    n = layer.num_output or p.integer("num_output", None, 1)
    groups, bias = p.integer("group", 1, 1), p.flag("bias_term", True)
    kernel, stride, pad = _window(layer, p)
    dilations = p.message.all("dilation") or [1]
    dilation = (dilations[0], dilations[-1])
    if p.integer("axis", 1) != 1:
        raise p.error("only axis 1 (channels) is supported")
    if c % groups or n % groups:
        raise p.error(f"group {groups} must divide the input channels ({c}) and num_output "
                      f"({n})")
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True)]
    if transposed:
        out = tuple(s * (i - 1) + e - 2 * q for s, i, e, q in zip(stride, (h, w), span, pad,
                                                                  strict=True))
        module: nn.Module = _uninitialised(nn.ConvTranspose2d, c, n, kernel, stride, pad, 0,
                                           groups, bias, dilation)
    else:
        out = tuple((i + 2 * q - e) // s + 1 for i, q, e, s in zip((h, w), pad, span, stride,
                                                                   strict=True))
        module = _uninitialised(nn.Conv2d, c, n, kernel, stride, pad, dilation, groups, bias)
    _fits(layer, (h, w), out, f"a {kernel[0]}x{kernel[1]} kernel")
    fill(module.weight, p.filler("weight_filler"), f"{layer.where} weight_filler")
    if bias:
        fill(module.bias, p.filler("bias_filler"), f"{layer.where} bias_filler")
    return Built(module, [(n, *out)], ("weight", "bias") if bias else ("weight",))


def pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool, padded: bool) -> int:
    """Caffe's pooled size: ``ceil((H + 2p - k) / s) + 1`` (floor with ``round_mode: FLOOR``),
    minus one when the layer is padded and the last window would start at or past ``H + p``."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if padded and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _torch_pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """torch's rule: the same, but the start-in-padding clip applies even without padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


POOL_KEYS = {"pool", "pad", "pad_h", "pad_w", "kernel_size", "kernel_h", "kernel_w", "stride",
             "stride_h", "stride_w", "engine", "global_pooling", "round_mode"}


def pooling(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    """MAX or AVE pooling (AVE divides by the window clipped to the padded input, as Caffe and
    torch's ``count_include_pad`` do); ``global_pooling`` pools each whole map to 1x1."""
    c, h, w = spatial(layer, shapes[0])
    method = p.choice("pool", "MAX", ("MAX", "AVE", "STOCHASTIC"))
    if method == "STOCHASTIC":
        raise p.error("STOCHASTIC pooling is not supported; use MAX or AVE")
    if p.flag("global_pooling", False):
        if p.has("kernel_size") or p.has("kernel_h") or p.pair("pad", 0) != (0, 0) or \
                p.pair("stride", 1, 1) != (1, 1):
            raise p.error("global_pooling takes no kernel_size, pad or stride (as in Caffe)")
        module: nn.Module = nn.AdaptiveMaxPool2d(1) if method == "MAX" else nn.AdaptiveAvgPool2d(1)
        return Built(module, [(c, 1, 1)])
    kernel, stride, pad = _window(layer, p)
    ceil = p.choice("round_mode", "CEIL", ("CEIL", "FLOOR")) == "CEIL"
    if any(q >= k for q, k in zip(pad, kernel, strict=True)):
        raise p.error(f"pad {pad} must be smaller than the kernel {kernel} (as in Caffe)")
    if any(2 * q > k for q, k in zip(pad, kernel, strict=True)):
        raise p.error(f"pad {pad} is more than half the kernel {kernel}, which torch's pooling "
                      "cannot do")
    padded = pad != (0, 0)
    out = tuple(pooled_size(i, k, s, q, ceil, padded)
                for i, k, s, q in zip((h, w), kernel, stride, pad, strict=True))
    _fits(layer, (h, w), out, f"a {kernel[0]}x{kernel[1]} window")
    if out != tuple(_torch_pooled_size(i, k, s, q, ceil)
                    for i, k, s, q in zip((h, w), kernel, stride, pad, strict=True)):
        raise p.error(f"Caffe would give a {out[0]}x{out[1]} output whose last window lies "
                      "outside the unpadded input (stride > kernel); use a stride no larger "
                      "than the kernel, or round_mode: FLOOR")
    if method == "MAX":
        module = nn.MaxPool2d(kernel, stride, pad, ceil_mode=ceil)
    else:
        module = nn.AvgPool2d(kernel, stride, pad, ceil_mode=ceil, count_include_pad=True)
    return Built(module, [(c, *out)])


def lrn(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    """Local response normalisation: ACROSS_CHANNELS ``x (k + alpha/n sum_c' x^2)^-beta`` over
    n neighbouring channels (torch's LocalResponseNorm is exactly this), or WITHIN_CHANNEL."""
    spatial(layer, shapes[0])
    size = p.integer("local_size", 5, 1)
    alpha, beta, k = p.number("alpha", 1.0), p.number("beta", 0.75), p.number("k", 1.0)
    if size % 2 == 0:
        raise p.error(f"local_size {size}: Caffe's LRN takes odd sizes only")
    region = p.choice("norm_region", "ACROSS_CHANNELS", ("ACROSS_CHANNELS", "WITHIN_CHANNEL"))
    if region == "ACROSS_CHANNELS":
        return Built(nn.LocalResponseNorm(size, alpha, beta, k), [shapes[0]])
    notes = [f"{layer.name}: k does not apply to WITHIN_CHANNEL LRN (Caffe uses 1)"] \
        if p.has("k") else []
    return Built(WithinChannelLRN(size, alpha, beta), [shapes[0]], notes=notes)


def inner_product(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    """Fully connected: flattens from the channel axis, ``num_output`` outputs."""
    n = layer.num_output or p.integer("num_output", None, 1)
    bias = p.flag("bias_term", True)
    if p.integer("axis", 1) != 1 or p.flag("transpose", False):
        raise p.error("only axis 1 and transpose: false are supported")
    module = _uninitialised(InnerProduct, math.prod(shapes[0]), n, bias)
    fill(module.weight, p.filler("weight_filler"), f"{layer.where} weight_filler")
    if bias:
        fill(module.bias, p.filler("bias_filler"), f"{layer.where} bias_filler")
    return Built(module, [(n,)], ("weight", "bias") if bias else ("weight",))


def relu(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    slope = p.number("negative_slope", 0.0)
    return Built(nn.LeakyReLU(slope) if slope else nn.ReLU(), [shapes[0]])


def dropout(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    ratio = p.number("dropout_ratio", 0.5)
    if not 0.0 <= ratio < 1.0 or not p.flag("scale_train", True):
        raise p.error("dropout_ratio must be in [0, 1) and scale_train true")
    return Built(nn.Dropout(ratio), [shapes[0]])


def _axis(p: Params, key: str, default: int, rank: int) -> int:
    """A Caffe axis (0 is the batch, -1 the last) as an index into a per-sample shape of
    ``rank`` dims."""
    axis = p.message.get(key, default)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise p.error(f"{key} {axis!r} is not an integer")
    index = axis + rank + 1 if axis < 0 else axis
    if not 1 <= index <= rank:
        raise p.error(f"{key} {axis}: must be a non-batch axis (1 to {rank})")
    return index - 1


def flatten(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    shape = shapes[0]
    start = _axis(p, "axis", 1, len(shape))
    end = _axis(p, "end_axis", -1, len(shape))
    out = (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
    return Built(nn.Flatten(start + 1, end + 1), [out])


def concat(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    key = "concat_dim" if p.has("concat_dim") else "axis"
    dim = _axis(p, key, 1, len(shapes[0]))
    rest = {s[:dim] + s[dim + 1:] for s in shapes}
    if len(rest) > 1 or len({len(s) for s in shapes}) > 1:
        raise p.error(f"inputs {', '.join('x'.join(map(str, s)) for s in shapes)} differ "
                      f"outside the concatenation axis {dim + 1}")
    out = list(shapes[0])
    out[dim] = sum(s[dim] for s in shapes)
    return Built(Concat(dim + 1), [tuple(out)])


def eltwise(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    operation = p.choice("operation", "SUM", ("SUM", "PROD", "MAX"))
    coeffs = tuple(float(c) for c in p.message.all("coeff")) or (1.0,) * len(shapes)
    if len(coeffs) != len(shapes) or (operation != "SUM" and p.has("coeff")):
        raise p.error("coeff needs one value per bottom, and only with operation SUM")
    if len(set(shapes)) > 1 or len(shapes) < 2:
        raise p.error(f"needs two or more inputs of one shape, got "
                      f"{', '.join('x'.join(map(str, s)) for s in shapes)}")
    return Built(Eltwise(operation, coeffs), [shapes[0]])


def batch_norm(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    module = CaffeBatchNorm(shapes[0][0],
                            moving_average_fraction=p.number("moving_average_fraction", 0.999),
                            eps=p.number("eps", 1e-5),
                            use_global_stats=p.flag("use_global_stats", False))
    return Built(module, [shapes[0]])


def scale(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    if p.integer("axis", 1) != 1 or p.integer("num_axes", 1) != 1:
        raise p.error("only axis 1 and num_axes 1 (one factor per channel) are supported")
    bias = p.flag("bias_term", False)
    module = Scale(shapes[0][0], bias)
    fill(module.weight, p.filler("filler"), f"{layer.where} filler", default=1.0)
    if bias:
        fill(module.bias, p.filler("bias_filler"), f"{layer.where} bias_filler")
    return Built(module, [shapes[0]], ("weight", "bias") if bias else ("weight",))


def softmax(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    return Built(nn.Softmax(_axis(p, "axis", 1, len(shapes[0])) + 1), [shapes[0]])


def _same(module: Callable[[], nn.Module]) -> Callable:
    return lambda layer, p, shapes: Built(module(), [shapes[0]])


def _split(layer: CaffeLayer, p: Params, shapes: list[Shape]) -> Built:
    return Built(Split(len(layer.tops)), [shapes[0]] * len(layer.tops))


# type -> (its parameter block, the keys it takes, builder, bottoms (min, max), tops (min, max))
LAYER_TYPES: dict[str, tuple] = {
    "Convolution": ("convolution_param", CONV_KEYS, convolution, (1, 1), (1, 1)),
    "Deconvolution": ("convolution_param", CONV_KEYS,
                      lambda layer, p, s: convolution(layer, p, s, transposed=True), (1, 1), (1, 1)),
    "Pooling": ("pooling_param", POOL_KEYS, pooling, (1, 1), (1, 1)),
    "LRN": ("lrn_param", {"local_size", "alpha", "beta", "norm_region", "k", "engine"}, lrn,
            (1, 1), (1, 1)),
    "InnerProduct": ("inner_product_param", {"num_output", "bias_term", "weight_filler",
                                             "bias_filler", "axis", "transpose"}, inner_product,
                     (1, 1), (1, 1)),
    "ReLU": ("relu_param", {"negative_slope", "engine"}, relu, (1, 1), (1, 1)),
    "Sigmoid": ("sigmoid_param", {"engine"}, _same(nn.Sigmoid), (1, 1), (1, 1)),
    "TanH": ("tanh_param", {"engine"}, _same(nn.Tanh), (1, 1), (1, 1)),
    "Dropout": ("dropout_param", {"dropout_ratio", "scale_train"}, dropout, (1, 1), (1, 1)),
    "Flatten": ("flatten_param", {"axis", "end_axis"}, flatten, (1, 1), (1, 1)),
    "Split": (None, set(), _split, (1, 1), (1, 99)),
    "Concat": ("concat_param", {"axis", "concat_dim"}, concat, (1, 99), (1, 1)),
    "Eltwise": ("eltwise_param", {"operation", "coeff", "stable_prod_grad"}, eltwise, (2, 99),
                (1, 1)),
    "BatchNorm": ("batch_norm_param", {"use_global_stats", "moving_average_fraction", "eps"},
                  batch_norm, (1, 1), (1, 1)),
    "Scale": ("scale_param", {"axis", "num_axes", "filler", "bias_term", "bias_filler"}, scale,
              (1, 1), (1, 1)),
    "Softmax": ("softmax_param", {"axis", "engine"}, softmax, (1, 1), (1, 1)),
}
WEIGHT_TYPES = ("Convolution", "Deconvolution", "InnerProduct")  # what can be an output layer


def build_layer(layer: CaffeLayer, shapes: list[Shape]) -> Built:
    """The module of ``layer`` given the shapes of its bottoms."""
    block, keys, builder, bottoms, tops = LAYER_TYPES[layer.type]
    for what, names, (low, high) in (("bottom", layer.bottoms, bottoms),
                                     ("top", layer.tops, tops)):
        if not low <= len(names) <= high:
            want = str(low) if low == high else f"at least {low}"
            raise ModelError(f"{layer.where}: takes {want} {what}(s), got {len(names)}")
    return builder(layer, Params(layer, block, keys), shapes)
