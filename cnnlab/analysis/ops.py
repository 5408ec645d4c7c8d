"""What :func:`cnnlab.analysis.summary.summary` knows about each torch operation it sees.

For every torch function called while the model runs (``F.conv2d``, ``x + y``, ``torch.cat``
...), :func:`describe` returns an :class:`Op`: its multiply-adds, how it changes the receptive
field, and the window hyper-parameters (F, S, P) to check. Multiply-adds (MACs) are counted for
one image, the way the lectures count "operations":

- convolution: output elements x (C_in / groups) x F_h x F_w; transposed convolution: input
  elements x (C_out / groups) x F_h x F_w; fully connected / matrix products: output elements x
  the inner dimension; einsum: the product of all index sizes;
- normalisation layers: one multiply-add per element (scale and shift);
- activations, pooling, unpooling, padding, shape changes and element-wise arithmetic: none.

Any other operation has ``macs=None``: the summary names it in a warning instead of counting 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from cnnlab.analysis.receptive import Field

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


def _upsampling_op(name: str, args: Sequence, kwargs: dict, out: torch.Tensor) -> Op:
    x = args[0]
    h_in, w_in = _spatial(x)
    h_out, w_out = _spatial(out)
    scale = (h_out / h_in, w_out / w_in)
    if name == "conv_transpose2d":
        w = _arg(args, kwargs, 1, "weight")
        kernel, stride = tuple(w.shape[2:]), _pair(_arg(args, kwargs, 3, "stride", 1))
        padding = _pair(_arg(args, kwargs, 4, "padding", 0), 0)
        macs = x[0].numel() * w[0].numel()
        return Op(name, macs, lambda f: f.upsample(kernel, stride, padding), kernel, stride,
                  padding)
    if name == "max_unpool2d":
        kernel = _pair(_arg(args, kwargs, 2, "kernel_size"))
        stride_arg = _arg(args, kwargs, 3, "stride", None)
        stride = _pair(stride_arg) if stride_arg else kernel
        padding = _pair(_arg(args, kwargs, 4, "padding", 0), 0)
        return Op(name, 0, lambda f: f.upsample(kernel, stride, padding), kernel, stride,
                  padding)
    if name == "pixel_shuffle":
        return Op(name, 0, lambda f: f.resize(scale, 0))
    mode = str(_arg(args, kwargs, 3, "mode", "nearest"))
    extra = {"bilinear": 1, "bicubic": 3}.get(mode, 0)
    return Op(name, 0, lambda f: f.resize(scale, extra))


def _pad_op(args: Sequence, kwargs: dict) -> Op:
    pads = list(_arg(args, kwargs, 1, "pad")) + [0, 0, 0, 0]
    left, top = pads[0], pads[2]
    return Op("pad", 0, lambda f: f.shift((top, left)))


def _getitem_op(args: Sequence, out: torch.Tensor) -> Op:
    """``x[..., ::2, ::2]`` and other slicing of the spatial axes: a 1x1 window with a stride."""
    x, index = args[0], args[1]
    index = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(i, slice) or i is Ellipsis for i in index) or out.dim() != x.dim():
        return Op("__getitem__", 0)
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (x.dim() - len(index) + 1) + index[at + 1:]
    index = index + (slice(None),) * (x.dim() - len(index))
    steps, starts = [], []
    for i, n in zip(index[-2:], x.shape[-2:], strict=False):
        start, _, step = i.indices(int(n))
        steps.append(step)
        starts.append(-start)
    return Op("__getitem__", 0, lambda f: f.window((1, 1), tuple(steps), tuple(starts)))


def describe(name: str, args: Sequence, kwargs: dict, out: torch.Tensor) -> Op:
    """The :class:`Op` for a call of torch function ``name`` that returned tensor ``out``."""
    if name == "__getitem__" and len(args) == 2 and out.dim() >= 3:
        return _getitem_op(args, out)
    if name in WINDOW_OPS:
        op = _window_op(name, args, kwargs)
        if name == "conv2d":
            op.macs = out[0].numel() * _arg(args, kwargs, 1, "weight")[0].numel()
        kernel, stride, padding, dilation = op.kernel, op.stride, op.padding, op.dilation
        op.transform = lambda f: f.window(kernel, stride, padding, dilation)
        return op
    if name in ("conv_transpose2d", "max_unpool2d", "interpolate", "upsample",
                "upsample_nearest", "upsample_bilinear", "pixel_shuffle"):
        return _upsampling_op(name, args, kwargs, out)
    if name == "pad":
        return _pad_op(args, kwargs)
    if name.startswith("adaptive_"):
        spatial = _spatial(args[0])
        target = _spatial(out)
        kernel = (math.ceil(spatial[0] / target[0]), math.ceil(spatial[1] / target[1]))
        stride = (spatial[0] / target[0], spatial[1] / target[1])
        return Op(name, 0, lambda f: f.collapse(spatial) if target == (1, 1)
                  else f.window(kernel, stride, (0, 0)))
    if name in ("conv1d", "conv3d", "conv_transpose1d", "conv_transpose3d"):
        w = _arg(args, kwargs, 1, "weight")
        base = args[0] if "transpose" in name else out
        return Op(name, base[0].numel() * w[0].numel())
    if name in ("linear", "bilinear"):
        w = _arg(args, kwargs, 1, "weight") if name == "linear" else args[2]
        inner = w.shape[-1] if name == "linear" else w.shape[1] * w.shape[2]
        return Op(name, out[0].numel() * inner if out.dim() > 1 else out.numel() * inner)
    if name in ("matmul", "mm", "bmm", "addmm", "baddbmm", "mv", "addmv", "dot", "__matmul__"):
        return Op(name, _matmul_macs(name, args, out))
    if name == "einsum":
        return Op(name, _einsum_macs(args))
    if name in NORM_OPS:
        return Op(name, out.numel())
    if name == "local_response_norm":
        return Op(name, out.numel() * int(_arg(args, kwargs, 1, "size")))
    return Op(name, 0 if name in ZERO_MAC_OPS else None)
