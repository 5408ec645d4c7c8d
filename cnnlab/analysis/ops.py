"""What :func:`cnnlab.analysis.summary.summary` knows about each torch operation it sees.

For every torch function called while the model runs (``F.conv2d``, ``x + y``, ``torch.cat``
...), :func:`describe` returns an :class:`Op`: its multiply-adds, how it changes the receptive
field, and the window hyper-parameters (F, S, P) to check. Multiply-adds (MACs) are counted for
one image, the way the lectures count "operations":

- convolution: output elements x (C_in / groups) x F_h x F_w; transposed convolution: input
  elements x (C_out / groups) x F_h x F_w; fully connected / matrix products: output elements x
  the inner dimension; einsum: the product of all index sizes;
- normalisation layers: one multiply-add per element (scale and shift); local response
  normalisation (AlexNet's LRN): ``size`` per element, the sum of squares over its window of
  ``size`` channels;
- activations, pooling, unpooling, padding, shape changes and element-wise arithmetic: none.

Any other operation has ``macs=None``: the summary names it in a warning instead of counting 0.

*Connections*, as LeCun et al. count them ("C3 ... has 151,600 connections"): the multiply-adds
of layers with weights plus one per unit with a bias (or per element scaled or shifted by a
parameter, e.g. an unshared bias). Layers with weights (convolutions, fully connected) also
create *units* (neurons, the AlexNet paper's count) and add one to the depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnlab.analysis.fields import Field

ZERO_MAC_OPS = frozenset("""
relu relu_ relu6 leaky_relu leaky_relu_ elu elu_ selu celu gelu silu mish sigmoid tanh hardtanh
hardtanh_ hardswish hardsigmoid softplus softsign threshold threshold_ prelu rrelu glu logsigmoid
softmax log_softmax softmin dropout dropout1d dropout2d dropout3d alpha_dropout
feature_alpha_dropout max_pool1d max_pool2d max_pool3d max_pool1d_with_indices
max_pool2d_with_indices max_pool3d_with_indices avg_pool1d avg_pool2d avg_pool3d
adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d
adaptive_max_pool2d adaptive_max_pool3d adaptive_max_pool1d_with_indices
adaptive_max_pool2d_with_indices lp_pool1d lp_pool2d max_unpool1d max_unpool2d max_unpool3d
interpolate upsample upsample_nearest upsample_bilinear pad cat concat concatenate stack
hstack vstack flatten unflatten view view_as reshape reshape_as permute transpose t contiguous
squeeze unsqueeze expand expand_as repeat repeat_interleave narrow chunk split unbind select
index_select gather __getitem__ __setitem__ clone detach to float double half bfloat16 type
type_as cpu cuda add add_ sub sub_ mul mul_ div div_ __add__ __iadd__ __radd__ __sub__ __rsub__
__isub__ __mul__ __rmul__ __imul__ __truediv__ __itruediv__ __rtruediv__ __neg__ neg abs pow
__pow__ exp log sqrt rsqrt clamp clamp_ clamp_min clamp_max maximum minimum max min amax amin
argmax argmin mean sum cumsum zeros_like ones_like full_like empty_like rand_like randn_like
new_zeros new_ones new_full new_empty fill_ zero_ masked_fill masked_fill_ where copy_ flip
roll pixel_shuffle pixel_unshuffle channel_shuffle unfold fold normalize bernoulli bernoulli_
__and__ __or__ __invert__ lt le gt ge eq ne __lt__ __le__ __gt__ __ge__ __eq__ __ne__ sign
floor ceil round __floordiv__ __mod__ std var mul_scalar tile movedim diagonal
""".split())

NORM_OPS = frozenset({"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"})
WINDOW_OPS = frozenset({"conv2d", "max_pool2d", "max_pool2d_with_indices", "avg_pool2d",
                        "lp_pool2d"})


@dataclass
class Op:
    """One torch call: MACs (None = cannot count), field transform, window hyper-parameters."""

    name: str
    macs: int | None
    transform: Callable[[Field], Field] | None = None  # None: element-wise (union of inputs)
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    weighted: bool = False  # a layer with weights: creates units, one level of depth
    connections: int = 0  # weighted multiply-adds + biased units (LeCun et al.'s count)
    groups: int | None = None


def _pair(value: object, default: int = 1) -> tuple[int, int]:
    if value is None:
        return (default, default)
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)  # type: ignore[union-attr]
    return values if len(values) == 2 else (values[0], values[0])  # type: ignore[return-value]


def _arg(args: Sequence, kwargs: dict, index: int, name: str, default: object = None) -> object:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _einsum_macs(args: Sequence) -> int | None:
    equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    if not isinstance(equation, str) or "..." in equation:
        return None
    sizes: dict[str, int] = {}
    for term, tensor in zip(equation.split("->")[0].split(","), operands, strict=False):
        sizes.update(zip(term.strip(), tensor.shape, strict=False))
    return math.prod(sizes.values())


def _matmul_macs(name: str, args: Sequence, out: torch.Tensor) -> int:
    a = args[1] if name in ("addmm", "baddbmm", "addmv") else args[0]
    return out.numel() * (a.shape[-1] if a.dim() > 0 else 1)


def _window_op(name: str, args: Sequence, kwargs: dict) -> Op:
    """conv2d and 2-D pooling: F, S, P (and dilation) from the call's arguments."""
    x = args[0]
    if name == "conv2d":
        w = _arg(args, kwargs, 1, "weight")
        kernel = tuple(w.shape[2:])
        stride = _pair(_arg(args, kwargs, 3, "stride", 1))
        padding_arg = _arg(args, kwargs, 4, "padding", 0)
        dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
        if isinstance(padding_arg, str):  # "same" / "valid"
            padding = tuple(d * (k - 1) // 2 if padding_arg == "same" else 0
                            for k, d in zip(kernel, dilation, strict=False))
        else:
            padding = _pair(padding_arg, 0)
        return Op(name, None, None, kernel, stride, padding, dilation)  # MACs set by caller
    kernel = _pair(_arg(args, kwargs, 1, "kernel_size"))
    stride_arg = _arg(args, kwargs, 2, "stride", None)
    stride = _pair(stride_arg) if stride_arg not in (None, ()) else kernel
    padding = _pair(_arg(args, kwargs, 3, "padding", 0), 0)
    dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if "max" in name else (1, 1)
    ceil_index = 5 if "max" in name else 4
    ceil_mode = bool(_arg(args, kwargs, ceil_index, "ceil_mode", False))
    if name == "lp_pool2d":
        kernel = _pair(_arg(args, kwargs, 2, "kernel_size"))
        stride_arg = _arg(args, kwargs, 3, "stride", None)
        stride, padding = (_pair(stride_arg) if stride_arg else kernel), (0, 0)
        ceil_mode = bool(_arg(args, kwargs, 4, "ceil_mode", False))
    del x
    return Op(name, 0, None, kernel, stride, padding, dilation, ceil_mode)


def _spatial(tensor: torch.Tensor) -> tuple[int, int]:
    return (int(tensor.shape[-2]), int(tensor.shape[-1]))


def _resample(sources: list, used: list, scale: tuple[float, float], periodic: tuple[bool, bool]
              ) -> Callable[[Field], Field]:
    return lambda f: f.resample(tuple(sources), tuple(used), scale, periodic)


def _interpolation_support(name: str, args: Sequence, kwargs: dict, x: torch.Tensor,
                           out_hw: tuple[int, int]) -> Callable[[Field], Field]:
    """Exact per-axis support of an interpolation: interpolate one-hot rows with torch itself
    (nearest, bilinear, bicubic, area, antialias alike) and see which outputs they reach."""
    import torch.nn.functional as F

    in_hw = _spatial(x)
    options = {k: v for k, v in kwargs.items() if k in ("mode", "align_corners", "antialias")}
    if name == "interpolate" or name == "upsample":
        for index, key in ((3, "mode"), (4, "align_corners")):
            if len(args) > index and key not in options:
                options[key] = args[index]
    elif name == "upsample_bilinear":
        options = {"mode": "bilinear", "align_corners": True}
    else:
        options = {"mode": "nearest"}
    sources, used = [], []
    for a in range(2):
        n = in_hw[a]
        basis = torch.eye(n, dtype=torch.float64)
        basis = basis.view(1, n, n, 1) if a == 0 else basis.view(1, n, 1, n)
        size = (out_hw[0], 1) if a == 0 else (1, out_hw[1])
        reached = F.interpolate(basis, size=size, **options)  # (1, n_in, out0, out1)
        weights = reached[0, :, :, 0] if a == 0 else reached[0, :, 0, :]  # (n_in, out)
        used.append((weights.abs() > 1e-12).T.numpy())
        sources.append(np.broadcast_to(np.arange(n), (out_hw[a], n)))
    scale = (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    corners = bool(options.get("align_corners"))
    periodic = tuple(not corners and float(s).is_integer() for s in scale)
    return _resample(sources, used, scale, periodic)  # type: ignore[arg-type]


def _upsampling_op(name: str, args: Sequence, kwargs: dict, out: torch.Tensor) -> Op:
    x = args[0]
    h_in, w_in = _spatial(x)
    out_hw = _spatial(out)
    if name == "conv_transpose2d":
        w = _arg(args, kwargs, 1, "weight")
        kernel, stride = tuple(w.shape[2:]), _pair(_arg(args, kwargs, 3, "stride", 1))
        padding = _pair(_arg(args, kwargs, 4, "padding", 0), 0)
        dilation = _pair(_arg(args, kwargs, 7, "dilation", 1))
        macs = x[0].numel() * w[0].numel()
        return Op(name, macs, lambda f: f.transposed(kernel, stride, padding, out_hw, dilation),
                  kernel, stride, padding)
    if name == "max_unpool2d":
        kernel = _pair(_arg(args, kwargs, 2, "kernel_size"))
        stride_arg = _arg(args, kwargs, 3, "stride", None)
        stride = _pair(stride_arg) if stride_arg else kernel
        padding = _pair(_arg(args, kwargs, 4, "padding", 0), 0)
        return Op(name, 0, lambda f: f.transposed(kernel, stride, padding, out_hw), kernel,
                  stride, padding)
    if name == "pixel_shuffle":
        r = out_hw[0] // h_in
        sources = [np.arange(n)[:, None] // r for n in out_hw]
        return Op(name, 0, _resample(sources, [None, None], (float(r), float(r)), (True, True)))
    return Op(name, 0, _interpolation_support(name, args, kwargs, x, out_hw))


def _pad_sources(n: int, out: int, before: int, mode: str) -> np.ndarray:
    src = np.arange(out) - before
    if mode == "replicate":
        src = np.clip(src, 0, n - 1)
    elif mode == "reflect" and n > 1:
        period = 2 * (n - 1)
        src = np.mod(src, period)
        src = np.where(src >= n, period - src, src)
    elif mode == "circular":
        src = np.mod(src, n)
    return src[:, None]  # constant: positions outside are zero padding (virtual positions)


def _pad_op(args: Sequence, kwargs: dict, x: torch.Tensor, out: torch.Tensor) -> Op:
    pads = list(_arg(args, kwargs, 1, "pad")) + [0, 0, 0, 0]
    mode = str(_arg(args, kwargs, 2, "mode", "constant"))
    in_hw, out_hw = _spatial(x), _spatial(out)
    sources = [_pad_sources(in_hw[0], out_hw[0], pads[2], mode),
               _pad_sources(in_hw[1], out_hw[1], pads[0], mode)]
    return Op("pad", 0, _resample(sources, [None, None], (1.0, 1.0), (True, True)))


def _getitem_op(args: Sequence, out: torch.Tensor) -> Op:
    """``x[..., ::2, ::2]`` and other slicing of the spatial axes: output ``o`` is input
    ``start + o * step``."""
    x, index = args[0], args[1]
    index = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(i, slice) or i is Ellipsis for i in index) or out.dim() != x.dim():
        return Op("__getitem__", 0)
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (x.dim() - len(index) + 1) + index[at + 1:]
    index = index + (slice(None),) * (x.dim() - len(index))
    sources, scale = [], []
    for i, n, m in zip(index[-2:], x.shape[-2:], out.shape[-2:], strict=False):
        start, _, step = i.indices(int(n))
        sources.append((start + np.arange(int(m)) * step)[:, None])
        scale.append(1 / step)
    return Op("__getitem__", 0, _resample(sources, [None, None], tuple(scale), (True, True)))


def _adaptive_op(name: str, x: torch.Tensor, out: torch.Tensor) -> Op:
    """Adaptive pooling: output ``o`` pools inputs ``floor(o n / m) .. ceil((o + 1) n / m) - 1``
    (PyTorch's windows); a 1x1 output sees everything."""
    spatial, target = _spatial(x), _spatial(out)
    if target == (1, 1):
        return Op(name, 0, lambda f: f.collapse())
    sources, used = [], []
    for n, m in zip(spatial, target, strict=True):
        o = np.arange(m)
        first, last = (o * n) // m, -((-(o + 1) * n) // m)
        width = int((last - first).max())
        cols = first[:, None] + np.arange(width)[None]
        sources.append(np.minimum(cols, n - 1))
        used.append(cols < last[:, None])
    scale = (target[0] / spatial[0], target[1] / spatial[1])
    periodic = tuple(n % m == 0 for n, m in zip(spatial, target, strict=True))
    return Op(name, 0, _resample(sources, used, scale, periodic))  # type: ignore[arg-type]


CONSTANT_OPS = frozenset({"zeros_like", "ones_like", "full_like", "empty_like", "rand_like",
                          "randn_like", "new_zeros", "new_ones", "new_full", "new_empty"})
PARAMETER_ADDS = frozenset({"add", "add_", "sub", "sub_", "__add__", "__iadd__", "__radd__",
                            "__sub__", "__isub__", "__rsub__", "mul", "mul_", "__mul__",
                            "__rmul__", "__imul__"})


def _per_image(out: torch.Tensor) -> int:
    """Elements of one image's output (batch 1)."""
    return out[0].numel() if out.dim() > 1 else out.numel()


def _has_parameter(args: Sequence) -> bool:
    return any(isinstance(a, nn.Parameter) for a in args)


def _weighted(op: Op, bias: object, out: torch.Tensor, groups: object = None) -> Op:
    """Mark ``op`` as a layer with weights: its connections are its multiply-adds plus one per
    biased unit."""
    op.weighted = True
    op.connections = (op.macs or 0) + (_per_image(out) if bias is not None else 0)
    op.groups = int(groups) if groups is not None else None
    return op


def _repeat_op(args: Sequence, kwargs: dict, x: torch.Tensor, out: torch.Tensor) -> Op:
    """``x.repeat_interleave(r, dim)`` along a spatial axis (nearest-neighbour upsampling):
    output ``o`` copies input ``o // r``."""
    repeats, dim = _arg(args, kwargs, 1, "repeats"), _arg(args, kwargs, 2, "dim")
    if not isinstance(repeats, int) or dim is None or out.dim() != x.dim():
        return Op("repeat_interleave", 0)
    axis = int(dim) % x.dim() - (x.dim() - 2)  # 0: rows, 1: columns, < 0: not spatial
    if axis < 0:
        return Op("repeat_interleave", 0)
    sources = [np.arange(n)[:, None] for n in _spatial(out)]
    sources[axis] = sources[axis] // repeats
    scale = (float(repeats), 1.0) if axis == 0 else (1.0, float(repeats))
    return Op("repeat_interleave", 0, _resample(sources, [None, None], scale, (True, True)))


def _constant_op(name: str, out: torch.Tensor) -> Op:
    """A tensor made without reading the input's values: it sees no pixel."""
    if out.dim() < 3:
        return Op(name, 0, lambda f: Field.constant((1, 1), f.jump).collapse())
    hw = _spatial(out)
    return Op(name, 0, lambda f: Field.constant(hw, f.jump))


def setitem_field(target: Field, index: object, value: Field, ndim: int) -> Field | None:
    """The field of ``target`` after ``target[index] = value`` (None: not followed); basic
    slices of the spatial axes are followed exactly ("bed of nails": ``out[..., ::2, ::2] = x``).
    """
    index = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(i, slice) or i is Ellipsis for i in index):
        return None
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (ndim - len(index) + 1) + index[at + 1:]
    index = index + (slice(None),) * (ndim - len(index))
    spots = []
    for a, i in enumerate(index[-2:]):
        positions = np.arange(target.length(a))[i]
        spots.append(None if len(positions) == target.length(a) and i.step in (None, 1)
                     else positions)
    return target.assign((spots[0], spots[1]), value)


def describe(name: str, args: Sequence, kwargs: dict, out: torch.Tensor) -> Op:
    """The :class:`Op` for a call of torch function ``name`` that returned tensor ``out``."""
    if name == "__getitem__" and len(args) == 2 and out.dim() >= 3:
        return _getitem_op(args, out)
    if name in WINDOW_OPS:
        op = _window_op(name, args, kwargs)
        if name == "conv2d":
            op.macs = out[0].numel() * _arg(args, kwargs, 1, "weight")[0].numel()
            _weighted(op, _arg(args, kwargs, 2, "bias"), out, _arg(args, kwargs, 6, "groups", 1))
        kernel, stride, padding, dilation = op.kernel, op.stride, op.padding, op.dilation
        out_hw = _spatial(out)
        op.transform = lambda f: f.window(kernel, stride, padding, out_hw, dilation)
        return op
    if name in ("conv_transpose2d", "max_unpool2d", "interpolate", "upsample",
                "upsample_nearest", "upsample_bilinear", "pixel_shuffle"):
        op = _upsampling_op(name, args, kwargs, out)
        if name == "conv_transpose2d":
            _weighted(op, _arg(args, kwargs, 2, "bias"), out, _arg(args, kwargs, 6, "groups", 1))
        return op
    if name == "pad" and args[0].dim() >= 3 and out.dim() == args[0].dim():
        return _pad_op(args, kwargs, args[0], out)
    if name == "repeat_interleave" and out.dim() >= 3:
        return _repeat_op(args, kwargs, args[0], out)
    if name in CONSTANT_OPS:
        return _constant_op(name, out)
    if name.startswith("adaptive_") and out.dim() >= 3:
        return _adaptive_op(name, args[0], out)
    if name in ("conv1d", "conv3d", "conv_transpose1d", "conv_transpose3d"):
        w = _arg(args, kwargs, 1, "weight")
        base = args[0] if "transpose" in name else out
        return _weighted(Op(name, base[0].numel() * w[0].numel()), _arg(args, kwargs, 2, "bias"),
                         out)
    if name in ("linear", "bilinear"):
        w = _arg(args, kwargs, 1, "weight") if name == "linear" else args[2]
        inner = w.shape[-1] if name == "linear" else w.shape[1] * w.shape[2]
        bias = _arg(args, kwargs, 2, "bias") if name == "linear" else _arg(args, kwargs, 3, "bias")
        return _weighted(Op(name, _per_image(out) * inner), bias, out)
    if name in ("matmul", "mm", "bmm", "addmm", "baddbmm", "mv", "addmv", "dot", "__matmul__",
                "einsum"):
        op = Op(name, _einsum_macs(args) if name == "einsum" else _matmul_macs(name, args, out))
        flat = list(args[1]) if name == "einsum" and isinstance(args[1], (list, tuple)) else args
        return _weighted(op, None, out) if _has_parameter(flat) else op
    if name in NORM_OPS:
        return Op(name, out.numel())
    if name == "local_response_norm":
        return Op(name, out.numel() * int(_arg(args, kwargs, 1, "size")))
    if name in PARAMETER_ADDS and _has_parameter(args):
        return Op(name, 0, connections=_per_image(out))  # an unshared bias, a trainable scale
    return Op(name, 0 if name in ZERO_MAC_OPS else None)
