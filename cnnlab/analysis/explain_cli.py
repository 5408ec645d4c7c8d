"""Dispatch of ``cnnlab explain OPERATION``: read the matrices, call one explain function."""

from __future__ import annotations

import argparse

from cnnlab.analysis.explain import Style, explain_conv, explain_fc, explain_pool, explain_relu
from cnnlab.analysis.explain_backward import explain_conv_backward, explain_pool_backward
from cnnlab.analysis.explain_kd import explain_conv1d, explain_pool1d
from cnnlab.analysis.explain_text import Explanation, read_matrix
from cnnlab.analysis.explain_upsampling import explain_transpose_conv, explain_unpool

OPERATIONS = ("conv", "pool", "relu", "fc", "transpose-conv", "unpool", "backward")


def _matrix(args: argparse.Namespace, name: str, required: bool = True, ndim=(1, 2, 3, 4)):
    text = getattr(args, name.replace("-", "_"))
    path = getattr(args, name.replace("-", "_") + "_file")
    if not required and text is None and path is None:
        return None
    return read_matrix(text, path, f"--{name}", ndim)


def _or(value: int | None, default: int) -> int:
    """``value`` unless it was not given: an explicit 0 stays 0 (``value or default`` would not)."""
    return default if value is None else value


def explain_from_args(args: argparse.Namespace) -> Explanation:
    """The :class:`Explanation` that ``cnnlab explain`` prints for these arguments."""
    style = Style(args.decimals, args.truncate, args.round)
    x = _matrix(args, "input")
    op = args.operation
    if op in ("conv", "pool") and x.ndim == 1:  # a 1-D sequence (issue 23)
        return explain_1d(args, x, style)
    if op == "conv":
        return explain_conv(x, _matrix(args, "kernel"), _matrix(args, "bias", False),
                            _or(args.stride, 1), _or(args.padding, 0), args.flip, args.normalize,
                            args.all_terms, style)
    if op == "pool":
        return explain_pool(x, args.size, args.stride, args.mode or "max", args.ceil, style)
    if op == "relu":
        return explain_relu(x, style)
    if op == "fc":
        return explain_fc(x, _matrix(args, "weights"), _matrix(args, "bias", False), style)
    if op == "transpose-conv":
        return explain_transpose_conv(x, _matrix(args, "kernel"), _or(args.stride, 2),
                                      _or(args.padding, 1),
                                      args.output_padding, style)
    if op == "unpool":
        return explain_unpool(x, args.mode or "nearest", args.size,
                              _matrix(args, "pool-input", False), style)
    grad = _matrix(args, "grad")
    if args.op == "conv":
        return explain_conv_backward(x, _matrix(args, "kernel"), grad, _or(args.stride, 1),
                                     _or(args.padding, 0), style)
    return explain_pool_backward(x, grad, args.size, args.stride, args.op[:3], style)


def explain_1d(args: argparse.Namespace, x, style: Style) -> Explanation:  # noqa: ANN001
    """``conv``/``pool`` on a 1-D input: :mod:`cnnlab.analysis.explain_kd`."""
    if args.operation == "conv":
        return explain_conv1d(x, _matrix(args, "kernel"), _matrix(args, "bias", False),
                              _or(args.stride, 1), _or(args.padding, 0), args.flip, style)
    return explain_pool1d(x, args.size, args.stride, args.mode or "max", style)
