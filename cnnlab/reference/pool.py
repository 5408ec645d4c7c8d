"""Pooling and unpooling in NumPy, forward and backward (lectures 000, 001, 002 and 003).

- Max pooling keeps the largest value of each window; its (sub)gradient goes to the arg-max
  only (lecture 001: ``da_rc/dx_ij = 1 if (i, j) = (i_max, j_max) else 0``; lecture 000,
  "What is the subgradient of this?").
- Average pooling takes the mean; its gradient is ``1 / (r * c)`` for every pixel of the window
  (lecture 001, "Average pooling").
- Unpooling (lecture 002): nearest neighbour, "bed of nails", and max-unpooling, which puts each
  value back where the matching max-pool found its maximum ("Remember which element was max!").

Arrays are ``(N, C, H, W)``; indices are flat positions ``row * W + col`` within each input plane,
the format of ``torch.nn.functional.max_pool2d(..., return_indices=True)``.

Example (lecture 003, X's and O's: 2x2 windows, stride 2, 7x7 -> 4x4 with a partial last window):
    >>> y, where = max_pool2d(np.arange(49.0).reshape(1, 1, 7, 7), 2, ceil_mode=True)
    >>> y.shape
    (1, 1, 4, 4)
"""

from __future__ import annotations

import math

import numpy as np

from cnnlab.reference.conv import Pair, pad2d, pair, windows


def pool_output_size(size: int, kernel: int, stride: int, padding: int = 0,
                     ceil_mode: bool = False) -> int:
    """``floor`` (or ``ceil``) of ``(W - F + 2P) / S + 1``; in ceil mode the last window must
    start inside the input or its left padding (PyTorch's rule)."""
    span = size + 2 * padding - kernel
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_windows(x: np.ndarray, kernel: Pair, stride: Pair | None, padding: Pair,
                  ceil_mode: bool, fill: float) -> np.ndarray:
    """Windows ``(N, C, H_out, W_out, F_h, F_w)`` of ``x`` padded with ``fill`` (partial windows
    of ceil mode are completed with ``fill`` too)."""
    (kh, kw) = pair(kernel)
    (sh, sw) = pair(stride if stride is not None else kernel)
    (ph, pw) = pair(padding)
    h, w = x.shape[2:]
    ho = pool_output_size(h, kh, sh, ph, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, ceil_mode)
    padded = pad2d(x.astype(float), (ph, pw), value=fill)
    extra_h = max(0, (ho - 1) * sh + kh - padded.shape[2])
    extra_w = max(0, (wo - 1) * sw + kw - padded.shape[3])
    padded = np.pad(padded, [(0, 0), (0, 0), (0, extra_h), (0, extra_w)], constant_values=fill)
    return windows(padded, (kh, kw), (sh, sw))[:, :, :ho, :wo]


def max_pool2d(x: np.ndarray, kernel: Pair, stride: Pair | None = None, padding: Pair = 0,
               ceil_mode: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling ``(N, C, H, W) -> (N, C, H_out, W_out)`` and the flat arg-max indices.

    Ties go to the first maximum in row-major window order, as in PyTorch.
    """
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride or kernel), pair(padding)
    win = _pool_windows(x, kernel, stride, padding, ceil_mode, fill=-np.inf)
    n, c, ho, wo = win.shape[:4]
    flat = win.reshape(n, c, ho, wo, kh * kw)
    best = flat.argmax(axis=-1)  # (N, C, Ho, Wo): position inside the window
    rows = np.arange(ho)[:, None] * sh - ph + best // kw  # input row of the maximum
    cols = np.arange(wo)[None, :] * sw - pw + best % kw
    y = np.take_along_axis(flat, best[..., None], axis=-1)[..., 0].astype(x.dtype)
    return y, rows * x.shape[3] + cols


def max_pool2d_backward(dy: np.ndarray, indices: np.ndarray,
                        input_shape: tuple[int, ...]) -> np.ndarray:
    """Route each upstream gradient to its window's arg-max; every other pixel gets 0.

    Overlapping windows that share an arg-max add their gradients there.
    """
    n, c, h, w = input_shape
    dx = np.zeros((n, c, h * w), dtype=dy.dtype)
    for i in range(n):
        for j in range(c):
            np.add.at(dx[i, j], indices[i, j].ravel(), dy[i, j].ravel())
    return dx.reshape(input_shape)


def _avg_divisors(size: int, kernel: int, stride: int, padding: int, out: int) -> np.ndarray:
    """Per output position, the window length that counts: the window clipped to the padded
    input (zero padding counts, ceil mode's overhang past it does not; PyTorch's rule)."""
    start = np.arange(out) * stride - padding
    return np.minimum(start + kernel, size + padding) - start


def avg_pool2d(x: np.ndarray, kernel: Pair, stride: Pair | None = None, padding: Pair = 0,
               ceil_mode: bool = False) -> np.ndarray:
    """Average pooling; zero padding counts in the divisor ``r * c`` (PyTorch's default). In
    ceil mode a partial last window is divided by the pixels it holds (padding included)."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride or kernel), pair(padding)
    win = _pool_windows(x, kernel, stride, padding, ceil_mode, fill=0.0)
    ho, wo = win.shape[2:4]
    divisor = np.outer(_avg_divisors(x.shape[2], kh, sh, ph, ho),
                       _avg_divisors(x.shape[3], kw, sw, pw, wo))
    return win.sum(axis=(-2, -1)) / divisor


def avg_pool2d_backward(dy: np.ndarray, input_shape: tuple[int, ...], kernel: Pair,
                        stride: Pair | None = None, padding: Pair = 0,
                        ceil_mode: bool = False) -> np.ndarray:
    """Spread each upstream gradient evenly, ``dy / (r * c)``, over its window (``r * c`` as
    in :func:`avg_pool2d`)."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride or kernel), pair(padding)
    n, c, h, w = input_shape
    ho, wo = dy.shape[2:]
    divisor = np.outer(_avg_divisors(h, kh, sh, ph, ho), _avg_divisors(w, kw, sw, pw, wo))
    rows, cols = (ho - 1) * sh + kh, (wo - 1) * sw + kw
    dx_pad = np.zeros((n, c, max(h + 2 * ph, rows), max(w + 2 * pw, cols)), dtype=float)
    share = dy / divisor
    for u in range(kh):
        for v in range(kw):
            dx_pad[:, :, u:u + sh * (ho - 1) + 1:sh, v:v + sw * (wo - 1) + 1:sw] += share
    return dx_pad[:, :, ph:ph + h, pw:pw + w]


def max_unpool2d(x: np.ndarray, indices: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Put each value at its remembered flat position in a zero ``(H, W)`` plane."""
    n, c = x.shape[:2]
    h, w = output_size
    out = np.zeros((n, c, h * w), dtype=x.dtype)
    for i in range(n):
        for j in range(c):
            out[i, j, indices[i, j].ravel()] = x[i, j].ravel()
    return out.reshape(n, c, h, w)


def max_unpool2d_backward(dy: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Gradient of :func:`max_unpool2d`: each input value was copied to one position, so its
    gradient is the upstream gradient there (``dy`` read back at the remembered indices)."""
    n, c = dy.shape[:2]
    flat = dy.reshape(n, c, -1)
    picked = np.take_along_axis(flat, indices.reshape(n, c, -1), axis=-1)
    return picked.reshape(indices.shape)


def nearest_upsample(x: np.ndarray, scale: int = 2) -> np.ndarray:
    """Copy each pixel into a ``scale x scale`` block (lecture 002, "Nearest Neighbor")."""
    return x.repeat(scale, axis=-2).repeat(scale, axis=-1)


def bed_of_nails(x: np.ndarray, scale: int = 2) -> np.ndarray:
    """Each pixel at the top-left of a ``scale x scale`` block of zeros ("Bed of Nails")."""
    out = np.zeros((*x.shape[:-2], x.shape[-2] * scale, x.shape[-1] * scale), dtype=x.dtype)
    out[..., ::scale, ::scale] = x
    return out
