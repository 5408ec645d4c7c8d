"""The computations the slides do by hand, step by step, on small matrices (``cnnlab explain``).

Every function returns an :class:`~cnnlab.analysis.explain_text.Explanation`: the grids (input,
padded input, kernel, output ...), one line per computed value showing its multiply-and-add, and
notes (output-size formula, convention). Numbers come from :mod:`cnnlab.reference`.

Example (lecture 000, "2D Convolution with Padding"; the slide's last value -2 should be -4):
    >>> e = explain_conv(np.array([[1, 3, 1], [0, -1, 1], [2, 2, -1]]),
    ...                  np.array([[-2, -2, 1], [-2, 0, 1], [1, 1, 1]]), padding=1)
    >>> e.grids["output"].tolist()
    [[2.0, -1.0, -6.0], [4.0, -3.0, -5.0], [1.0, -2.0, -4.0]]
    >>> e.steps[0]
    'y[0,0] = 3*1 + (-1)*1 = 2'
"""

from __future__ import annotations

import numpy as np

from cnnlab import reference as ref
from cnnlab.analysis.explain_text import Explanation, fmt, is_integral, term
from cnnlab.analysis.window_checks import check_window as window_warnings
from cnnlab.errors import ConfigError


class Style:
    """Number formatting shared by grids and steps."""

    def __init__(self, decimals: int = 2, truncate: bool = False, rounding: str = "half-up"
                 ) -> None:
        self.decimals, self.truncate, self.rounding = decimals, truncate, rounding

    def value(self, v: float, integral: bool) -> str:
        return fmt(v, self.decimals, self.truncate, integral, self.rounding)


def _as_image(x: np.ndarray) -> np.ndarray:
    """(H, W) or (C, H, W) -> (1, C, H, W)."""
    if x.ndim not in (2, 3):
        raise ConfigError(f"input: expected a 2-D matrix or a 3-D (channels, rows, cols) array, "
                          f"got shape {x.shape}")
    return (x[None] if x.ndim == 2 else x)[None].astype(float)


def _as_filters(kernel: np.ndarray, channels: int) -> np.ndarray:
    """(F, F), (C, F, F) or (K, C, F, F) -> (K, C, F, F), checking C against the input."""
    w = kernel[None, None] if kernel.ndim == 2 else kernel[None] if kernel.ndim == 3 else kernel
    if w.ndim != 4 or w.shape[1] != channels:
        raise ConfigError(f"kernel of shape {kernel.shape} does not match an input with "
                          f"{channels} channel(s): use (F, F), ({channels}, F, F) or "
                          f"(K, {channels}, F, F)")
    return w.astype(float)


def check_window(what: str, size: tuple[int, int], kernel: tuple[int, int], stride: int,
                 padding: int) -> None:
    """ConfigError (one line) for a stride < 1, a negative padding, or a window larger than
    the padded input (lecture 004: the output size (W - F + 2P)/S + 1 must be at least 1)."""
    if stride < 1:
        raise ConfigError(f"--stride {stride}: the stride must be at least 1")
    if padding < 0:
        raise ConfigError(f"--padding {padding}: the padding must be 0 or more")
    if min(kernel) < 1:
        raise ConfigError(f"{what} {kernel[0]}x{kernel[1]}: the window must be at least 1x1")
    for n, f in zip(size, kernel, strict=True):
        if f > n + 2 * padding:
            need = -(-(f - n) // 2)
            raise ConfigError(f"{what} {kernel[0]}x{kernel[1]} is larger than the {size[0]}x"
                              f"{size[1]} input padded by {padding}: (W - F + 2P)/S + 1 = "
                              f"({n} - {f} + 2*{padding})/{stride} + 1 < 1; use padding >= "
                              f"{need} or a window of at most {n + 2 * padding}")


def fit_warnings(op: str, size: tuple[int, int], kernel: tuple[int, int], stride: int,
                 padding: int) -> list[str]:
    """The summary's warnings for hyper-parameters that do not fit (lecture 001: 6x6 input,
    3x3 filter, stride 2 -> 2.5), without the layer name."""
    found, _ = window_warnings("explain", op, tuple(size), tuple(kernel), (stride, stride),
                               (padding, padding))
    return [w.split(": ", 1)[1] for w in found]


def _index(k: int, i: int, j: int, many: bool) -> str:
    return f"[{k},{i},{j}]" if many else f"[{i},{j}]"


def _size_note(name: str, size: tuple[int, int], kernel: tuple[int, int], stride: int,
               padding: int) -> str:
    parts = [f"({n} - {f} + 2*{padding})/{stride} + 1 = {ref.output_size(n, f, stride, padding):g}"
             for n, f in zip(size, kernel, strict=False)]
    return f"{name} size per axis (W - F + 2P)/S + 1: " + " and ".join(dict.fromkeys(parts))


def explain_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | float | None = None,
                 stride: int = 1, padding: int = 0, flip: bool = False,
                 normalize: bool = False, all_terms: bool = False,
                 style: Style | None = None) -> Explanation:
    """Each output element as its multiply-and-add.

    ``flip=False`` is the frameworks' convention (cross-correlation); ``flip=True`` is true
    convolution, the same sum with the kernel rotated 180 degrees. ``normalize`` divides by the
    number of kernel pixels (lecture 003: "Divide by the total number of pixels in the
    feature"). Steps list only the non-zero products unless ``all_terms``.
    """
    style = style or Style()
    image = _as_image(x)  # (1, C, H, W)
    w = _as_filters(kernel, image.shape[1])  # (K, C, F, F)
    check_window("kernel", image.shape[2:], w.shape[2:], stride, padding)
    used = ref.flip_kernel(w) if flip else w
    k = w.shape[0]
    b = np.broadcast_to(np.asarray(0.0 if bias is None else bias, dtype=float), (k,))
    divisor = used[0].size if normalize else 1
    y = ref.conv2d(image, used, stride=stride, padding=padding)[0] / divisor + b[:, None, None]
    padded = ref.pad2d(image, padding)[0]
    whole = is_integral(y)
    steps = []
    for kk in range(k):
        for i in range(y.shape[1]):
            for j in range(y.shape[2]):
                window = padded[:, i * stride:i * stride + w.shape[2],
                                j * stride:j * stride + w.shape[3]]
                pairs = zip(window.ravel(), used[kk].ravel(), strict=True)
                products = [f"{term(a)}*{term(c)}" for a, c in pairs if all_terms or a * c != 0]
                text = " + ".join(products) or "0"
                if normalize:
                    text = f"({text}) / {divisor}"
                if bias is not None:
                    text += f" + {term(b[kk])}"
                steps.append(f"y{_index(kk, i, j, k > 1)} = {text} = "
                             f"{style.value(y[kk, i, j], whole)}")
    grids = {"input": image[0, 0] if image.shape[1] == 1 else image[0]}
    if padding:
        grids[f"input zero-padded by {padding}"] = padded[0] if padded.shape[0] == 1 else padded
    grids["kernel"] = kernel.astype(float)
    if flip:
        grids["kernel flipped (true convolution)"] = used[0, 0] if kernel.ndim == 2 else used
    grids["output"] = y[0] if k == 1 else y
    notes = [_size_note("output", image.shape[2:], w.shape[2:], stride, padding),
             "true convolution: the kernel is flipped (rotated 180 degrees) before the "
             "multiply-and-add" if flip else "cross-correlation, the frameworks' convention "
             "(kernel not flipped); --flip gives true convolution"]
    return Explanation("convolution", grids, steps, notes,
                       warnings=fit_warnings("conv2d", image.shape[2:], w.shape[2:], stride,
                                             padding))


def explain_pool(x: np.ndarray, size: int = 2, stride: int | None = None, mode: str = "max",
                 ceil_mode: bool = False, style: Style | None = None) -> Explanation:
    """Max or average of each window (lecture 003: "Walk your window across your filtered
    images. From each window, take the maximum value")."""
    style = style or Style()
    if size is None or size < 1:
        raise ConfigError(f"--size {size}: the pooling window must be at least 1x1")
    stride = size if stride is None else stride
    image = _as_image(x)
    check_window("pooling window", image.shape[2:], (size, size), stride, 0)
    if mode == "max":
        y = ref.max_pool2d(image, size, stride, ceil_mode=ceil_mode)[0][0]
    elif mode == "avg":
        y = ref.avg_pool2d(image, size, stride, ceil_mode=ceil_mode)[0]
    else:
        raise ConfigError(f"pool mode {mode!r}: choose max or avg")
    whole = is_integral(image) and is_integral(y)
    steps = []
    for c in range(y.shape[0]):
        for i in range(y.shape[1]):
            for j in range(y.shape[2]):
                window = image[0, c, i * stride:i * stride + size, j * stride:j * stride + size]
                values = ", ".join(style.value(v, whole) for v in window.ravel())
                name = "max" if mode == "max" else "mean"
                steps.append(f"y{_index(c, i, j, y.shape[0] > 1)} = {name}({values}) = "
                             f"{style.value(y[c, i, j], whole)}")
    notes = [f"{size}x{size} windows, stride {stride}" +
             (", partial windows at the border kept (ceil mode)" if ceil_mode else ""),
             *_floor_note(image.shape[2:], size, stride, ceil_mode)]
    return Explanation(f"{mode} pooling", {"input": np.squeeze(image[0], 0) if image.shape[1] == 1
                                            else image[0], "output": y[0] if y.shape[0] == 1
                                            else y}, steps, notes)


def _floor_note(hw: tuple[int, int], size: int, stride: int, ceil_mode: bool) -> list[str]:
    """Say when pooling drops a partial border window, and that ``--ceil`` keeps it."""
    exact = [(n - size) / stride + 1 for n in hw]
    if ceil_mode or all(v.is_integer() for v in exact):
        return []
    floor = [ref.pool_output_size(n, size, stride) for n in hw]
    ceil = [ref.pool_output_size(n, size, stride, ceil_mode=True) for n in hw]
    formula = " and ".join(dict.fromkeys(f"({n} - {size})/{stride} + 1 = {v:g}"
                                         for n, v in zip(hw, exact, strict=True)))
    return [f"output size {formula}, floored to {floor[0]}x{floor[1]}: the last partial "
            f"window is dropped; --ceil keeps it ({ceil[0]}x{ceil[1]}, as the slides pool "
            "lecture 003's 7x7 maps to 4x4)"]


def explain_relu(x: np.ndarray, style: Style | None = None) -> Explanation:
    """``max(0, x)`` everywhere; steps for the values that change."""
    style = style or Style()
    y = ref.relu(x.astype(float))
    whole = is_integral(x)
    steps = [f"y[{','.join(map(str, idx))}] = max(0, {style.value(v, whole)}) = 0"
             for idx, v in np.ndenumerate(x) if v < 0]
    return Explanation("ReLU", {"input": x.astype(float), "output": y},
                       steps or ["no negative values: the output equals the input"],
                       ["lecture 003: 'Change everything negative to zero'"])


def explain_fc(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None = None,
               style: Style | None = None) -> Explanation:
    """``y = W x + b``: each output a dot product of a row of W with the (flattened) input."""
    style = style or Style()
    v = x.astype(float).ravel()
    w = weights.reshape(-1, v.size) if weights.size % v.size == 0 else None
    if w is None or weights.ndim > 2:
        raise ConfigError(f"weights of shape {weights.shape} do not fit an input of {v.size} "
                          f"values: expected ({'M'}, {v.size})")
    b = np.zeros(w.shape[0]) if bias is None else np.broadcast_to(bias, (w.shape[0],))
    y = ref.linear(v[None], w, b)[0]
    whole = is_integral(y)
    steps = []
    for m in range(w.shape[0]):
        text = " + ".join(f"{term(a)}*{term(c)}" for a, c in zip(w[m], v, strict=False))
        text += f" + {term(b[m])}" if bias is not None else ""
        steps.append(f"y[{m}] = {text} = {style.value(y[m], whole)}")
    notes = [f"{w.size} weights + {w.shape[0]} biases = {w.size + w.shape[0]} parameters"]
    return Explanation("fully connected", {"input": v, "weights": w, "output": y}, steps, notes)
