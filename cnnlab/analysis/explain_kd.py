"""``cnnlab explain conv|pool`` on a 1-D sequence: each output as its multiply-and-add.

Lecture 003, "Not just images": sound and text are 1-D, and a 1-D convolution is the 2-D one
with one row: ``y[i] = sum_f x[i*S + f] w[f] + b`` over the zero-padded input, output length
``(L - F + 2P)/S + 1`` (lecture 004). Pooling takes the max or mean of each window.

    >>> import numpy as np
    >>> e = explain_conv1d(np.array([1., 3., 1., 0., -1.]), np.array([1., 0., -1.]))
    >>> e.grids["output"].tolist(), e.steps[0]
    ([0.0, 3.0, 2.0], 'y[0] = 1*1 + 1*(-1) = 0')
"""

from __future__ import annotations

import numpy as np

from cnnlab import reference as ref
from cnnlab.analysis.explain import Style, check_window
from cnnlab.analysis.explain_text import Explanation, is_integral, term
from cnnlab.errors import ConfigError


def _windows(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """``(positions, size)``: the windows of a 1-D array."""
    count = (len(x) - size) // stride + 1
    return np.stack([x[i * stride:i * stride + size] for i in range(count)])


def explain_conv1d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | float | None = None,
                   stride: int = 1, padding: int = 0, flip: bool = False,
                   style: Style | None = None) -> Explanation:
    """A 1-D input ``(L,)`` with one kernel ``(F,)`` or ``K`` kernels ``(K, F)``."""
    style = style or Style()
    filters = kernel[None] if kernel.ndim == 1 else kernel
    if filters.ndim != 2:
        raise ConfigError(f"kernel of shape {kernel.shape} does not fit a 1-D input: use (F,) "
                          "or (K, F)")
    check_window("kernel", (1, len(x)), (1, filters.shape[1]), stride, padding)
    used = filters[:, ::-1] if flip else filters
    padded = np.pad(x.astype(float), padding)
    windows = _windows(padded, used.shape[1], stride)  # (positions, F)
    b = np.broadcast_to(np.asarray(0.0 if bias is None else bias, dtype=float), (len(used),))
    y = used @ windows.T + b[:, None]  # (K, positions)
    whole = is_integral(y)
    steps = []
    for k, row in enumerate(y):
        for i, value in enumerate(row):
            products = [f"{term(a)}*{term(c)}" for a, c in zip(windows[i], used[k], strict=True)
                        if a * c != 0]
            text = " + ".join(products) or "0"
            text += f" + {term(b[k])}" if bias is not None else ""
            index = f"[{k},{i}]" if len(y) > 1 else f"[{i}]"
            steps.append(f"y{index} = {text} = {style.value(value, whole)}")
    grids = {"input": x.astype(float)}
    if padding:
        grids[f"input zero-padded by {padding}"] = padded
    grids["kernel"] = kernel.astype(float)
    grids["output"] = y[0] if len(y) == 1 else y
    size = ref.output_size(len(x), used.shape[1], stride, padding)
    notes = [f"output length (L - F + 2P)/S + 1 = ({len(x)} - {used.shape[1]} + 2*{padding})"
             f"/{stride} + 1 = {size:g}",
             "true convolution: the kernel is flipped" if flip else
             "cross-correlation, the frameworks' convention (Conv1d); --flip flips the kernel"]
    return Explanation("1-D convolution", grids, steps, notes)


def explain_pool1d(x: np.ndarray, size: int = 2, stride: int | None = None, mode: str = "max",
                   style: Style | None = None) -> Explanation:
    """Max or mean of each window of a 1-D input ``(L,)`` (MaxPool1d / AvgPool1d)."""
    style = style or Style()
    stride = size if stride is None else stride
    check_window("pooling window", (1, len(x)), (1, size), stride, 0)
    if mode not in ("max", "avg"):
        raise ConfigError(f"pool mode {mode!r}: choose max or avg")
    windows = _windows(x.astype(float), size, stride)
    y = windows.max(axis=1) if mode == "max" else windows.mean(axis=1)
    whole = is_integral(x) and is_integral(y)
    name = "max" if mode == "max" else "mean"
    steps = [f"y[{i}] = {name}({', '.join(style.value(v, whole) for v in window)}) = "
             f"{style.value(value, whole)}" for i, (window, value) in enumerate(zip(windows, y,
                                                                                 strict=True))]
    notes = [f"windows of {size}, stride {stride}; output length (L - F)/S + 1 = "
             f"({len(x)} - {size})/{stride} + 1 = {(len(x) - size) / stride + 1:g}"
             + (", floored" if (len(x) - size) % stride else "")]
    return Explanation(f"1-D {mode} pooling", {"input": x.astype(float), "output": y}, steps,
                       notes)
