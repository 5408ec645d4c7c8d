"""Convolution in NumPy, forward and backward: the arithmetic of lectures 000, 001, 003 and 004.

Conventions are PyTorch's, so the tests can compare value for value:

- ``x`` is ``(N, C, H, W)``; ``w`` is ``(K, C / groups, F_h, F_w)``; ``b`` is ``(K,)``.
- ``conv2d`` is a *cross-correlation* (the kernel is not flipped), what every framework calls
  convolution. Lecture 000's padded 5x5 example is computed this way; a true convolution
  (lecture 004: ``(f * h)[n, m] = sum_{k,l} f[k, l] h[n - k, m - l]``) is ``conv2d`` with the
  kernel flipped in both axes (:func:`flip_kernel`).
- Output size per axis: ``(W - F + 2P) / S + 1``, floored (lecture 004, "Output volume size").

Each output element is a dot product of the kernel with one window of the padded input; the
windows are taken all at once with ``sliding_window_view`` so the tests run fast, while the
backward pass loops over the F_h x F_w kernel offsets, which is how it is derived by hand.

Example (lecture 000, "2D Convolution with Padding"; the slide prints -2 for the last value):
    >>> x = np.array([[[[1, 3, 1], [0, -1, 1], [2, 2, -1]]]])
    >>> w = np.array([[[[-2, -2, 1], [-2, 0, 1], [1, 1, 1]]]])
    >>> conv2d(x, w, padding=1)[0, 0].tolist()
    [[2, -1, -6], [4, -3, -5], [1, -2, -4]]
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Pair = int | np.integer | tuple[int, int]


def pair(value: Pair) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``; NumPy integers too (``np.int64(2) -> (2, 2)``)."""
    if isinstance(value, numbers.Integral):
        return (int(value), int(value))
    return (int(value[0]), int(value[1]))


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                dilation: int = 1) -> float:
    """``(W - F + 2P) / S + 1`` without flooring (a fraction means the layer does not fit).

    Example (lecture 001, "combinations of hyper-parameters that do not click"):
        >>> output_size(6, 3, stride=2)
        2.5
    """
    span = dilation * (kernel - 1) + 1
    return (size - span + 2 * padding) / stride + 1


def flip_kernel(w: np.ndarray) -> np.ndarray:
    """Rotate the kernel by 180 degrees (last two axes): true convolution = correlation with it."""
    return w[..., ::-1, ::-1].copy()


def pad2d(x: np.ndarray, padding: Pair, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes of ``x`` by ``padding`` on every side with ``value``."""
    ph, pw = pair(padding)
    widths = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    return np.pad(x, widths, constant_values=value)


def windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """All kernel-sized windows: ``(N, C, H, W) -> (N, C, H_out, W_out, F_h, F_w)`` (a view)."""
    view = sliding_window_view(x, kernel, axis=(-2, -1))  # (N, C, H-Fh+1, W-Fw+1, Fh, Fw)
    return view[:, :, ::stride[0], ::stride[1]]


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: Pair = 1,
           padding: Pair = 0, groups: int = 1) -> np.ndarray:
    """Cross-correlation ``(N, C, H, W) * (K, C/g, F_h, F_w) -> (N, K, H_out, W_out)``.

    ``y[n, k, i, j] = b[k] + sum_{c, u, v} x_pad[n, c, S*i + u, S*j + v] * w[k, c, u, v]``
    with ``c`` running over the input channels of filter ``k``'s group.
    """
    n, c, _, _ = x.shape
    k, c_per_group = w.shape[:2]
    assert c == c_per_group * groups and k % groups == 0, "channels do not match the groups"
    patches = windows(pad2d(x, padding), w.shape[2:], pair(stride))  # (N, C, Ho, Wo, Fh, Fw)
    k_per_group = k // groups
    outputs = []
    for g in range(groups):
        p = patches[:, g * c_per_group:(g + 1) * c_per_group]
        wg = w[g * k_per_group:(g + 1) * k_per_group]  # (K/g, C/g, Fh, Fw)
        outputs.append(np.einsum("ncijuv,kcuv->nkij", p, wg))
    y = np.concatenate(outputs, axis=1)  # (N, K, Ho, Wo)
    return y if b is None else y + b.reshape(1, k, 1, 1)


def conv2d_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray, stride: Pair = 1,
                    padding: Pair = 0, groups: int = 1
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dX, dW, db)`` of :func:`conv2d` given the upstream gradient ``dy``.

    Lecture 000, "Backpropagation for the convolution operator": each kernel offset ``(u, v)``
    touched the input window shifted by ``(u, v)``, so

    - ``dW[k, c, u, v] = sum_{n, i, j} dy[n, k, i, j] * x_pad[n, c, S*i + u, S*j + v]``
      (a correlation of the input with ``dy``),
    - ``dX_pad[n, c, S*i + u, S*j + v] += dy[n, k, i, j] * w[k, c, u, v]`` (``dy`` spread back
      through the kernel: a "full" convolution with the flipped kernel when S = 1),
    - ``db[k] = sum_{n, i, j} dy[n, k, i, j]``.
    """
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    k, c_per_group, fh, fw = w.shape
    k_per_group = k // groups
    x_pad = pad2d(x, padding)
    dx_pad = np.zeros_like(x_pad, dtype=np.result_type(x, w, dy))
    dw = np.zeros_like(w, dtype=np.result_type(x, w, dy))
    ho, wo = dy.shape[2:]
    for g in range(groups):
        cs = slice(g * c_per_group, (g + 1) * c_per_group)
        ks = slice(g * k_per_group, (g + 1) * k_per_group)
        for u in range(fh):
            for v in range(fw):
                rows = slice(u, u + sh * (ho - 1) + 1, sh)
                cols = slice(v, v + sw * (wo - 1) + 1, sw)
                seen = x_pad[:, cs, rows, cols]  # (N, C/g, Ho, Wo): pixels under w[:, :, u, v]
                dw[ks, :, u, v] = np.einsum("nkij,ncij->kc", dy[:, ks], seen)
                dx_pad[:, cs, rows, cols] += np.einsum("nkij,kc->ncij", dy[:, ks], w[ks, :, u, v])
    h, wd = x.shape[2:]
    dx = dx_pad[:, :, ph:ph + h, pw:pw + wd]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def conv_transpose2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                     stride: Pair = 1, padding: Pair = 0, output_padding: Pair = 0,
                     groups: int = 1) -> np.ndarray:
    """Transposed convolution ``(N, C, H, W) -> (N, K, H_out, W_out)``, ``w`` ``(C, K/g, F, F)``.

    Lecture 002, "Transpose Convolution": every input value weights a copy of the filter, the
    copies are placed ``S`` pixels apart in the output and summed where they overlap; then
    ``P`` pixels are cropped from each border. ``H_out = (H - 1) S - 2P + F + output_padding``.
    It is exactly the input gradient of :func:`conv2d` with the same weight.
    """
    (sh, sw), (ph, pw), (oph, opw) = pair(stride), pair(padding), pair(output_padding)
    n, c, h, wd = x.shape
    c_per_group, k_per_group, fh, fw = w.shape[0] // groups, w.shape[1], w.shape[2], w.shape[3]
    full = np.zeros((n, k_per_group * groups, (h - 1) * sh + fh + oph, (wd - 1) * sw + fw + opw),
                    dtype=np.result_type(x, w))
    for g in range(groups):
        cs = slice(g * c_per_group, (g + 1) * c_per_group)
        ks = slice(g * k_per_group, (g + 1) * k_per_group)
        for u in range(fh):
            for v in range(fw):
                rows = slice(u, u + sh * (h - 1) + 1, sh)
                cols = slice(v, v + sw * (wd - 1) + 1, sw)
                full[:, ks, rows, cols] += np.einsum("ncij,ck->nkij", x[:, cs], w[cs, :, u, v])
    y = full[:, :, ph:full.shape[2] - ph, pw:full.shape[3] - pw]
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def conv_transpose2d_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray, stride: Pair = 1,
                              padding: Pair = 0, groups: int = 1
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dX, dW, db)`` of :func:`conv_transpose2d`.

    The transposed convolution is the input gradient of a convolution, so its own input gradient
    is that convolution applied to ``dy`` (same weight, stride, padding), and its weight
    gradient is the convolution's weight gradient with the roles of ``x`` and ``dy`` swapped.
    """
    dx = conv2d(dy, w, stride=stride, padding=padding, groups=groups)
    _, dw, _ = conv2d_backward(dy, w, x, stride=stride, padding=padding, groups=groups)
    return dx, dw, dy.sum(axis=(0, 2, 3))
