"""``explain backward``: gradients through a convolution and through pooling.

Lecture 000, "Backpropagation for the convolution operator" (dZ/dX, dZ/dW); lecture 001, the
max-pooling subgradient (1 at the arg-max, 0 elsewhere) and average pooling's 1/(r*c).
"""

from __future__ import annotations

import numpy as np

from cnnlab import reference as ref
from cnnlab.analysis.explain import Style, _as_filters, _as_image
from cnnlab.analysis.explain_text import Explanation, is_integral, term
from cnnlab.errors import ConfigError


def _check_grad(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    g = grad.reshape(1, 1, *grad.shape) if grad.ndim == 2 else grad
    if g.shape != shape:
        raise ConfigError(f"--grad has shape {grad.shape}; the layer's output is "
                          f"{shape[2:] if shape[1] == 1 else shape[1:]}")
    return g.astype(float)


def explain_conv_backward(x: np.ndarray, kernel: np.ndarray, grad: np.ndarray, stride: int = 1,
                          padding: int = 0, style: Style | None = None) -> Explanation:
    """dX, dW, db of a (single-filter) convolution given the upstream gradient ``grad``."""
    style = style or Style()
    image = _as_image(x)
    w = _as_filters(kernel, image.shape[1])
    y = ref.conv2d(image, w, stride=stride, padding=padding)
    g = _check_grad(grad, y.shape)
    dx, dw, db = ref.conv2d_backward(image, w, g, stride=stride, padding=padding)
    padded = ref.pad2d(image, padding)[0, 0]
    whole = is_integral(dw)
    steps = []
    for (u, v), value in np.ndenumerate(dw[0, 0]):
        window = padded[u:u + stride * (g.shape[2] - 1) + 1:stride,
                        v:v + stride * (g.shape[3] - 1) + 1:stride]
        pairs = zip(g[0, 0].ravel(), window.ravel(), strict=True)
        products = [f"{term(a)}*{term(b)}" for a, b in pairs if a * b != 0]
        steps.append(f"dW[{u},{v}] = {' + '.join(products) or '0'} = "
                     f"{style.value(value, whole)}")
    steps.append(f"db = sum of dY = {style.value(db[0], is_integral(db))}")
    notes = ["dW[u,v] = sum_ij dY[i,j] * X_pad[S*i + u, S*j + v] (correlate the input with dY)",
             "dX_pad[S*i + u, S*j + v] += dY[i,j] * W[u,v] (dY spread back through the kernel; "
             "for stride 1 a full convolution of dY with the kernel)"]
    return Explanation("convolution backward", {"input": image[0, 0], "kernel":
                       kernel.astype(float), "upstream gradient dY": g[0, 0], "dX": dx[0, 0],
                       "dW": dw[0, 0]}, steps, notes, result="dX")


def explain_pool_backward(x: np.ndarray, grad: np.ndarray, size: int = 2,
                          stride: int | None = None, mode: str = "max",
                          style: Style | None = None) -> Explanation:
    """Max: each dY goes to its window's arg-max. Average: dY / (r*c) to every window pixel."""
    style = style or Style()
    stride = stride or size
    image = _as_image(x)
    pooled, where = ref.max_pool2d(image, size, stride)
    g = _check_grad(grad, pooled.shape)
    width = image.shape[3]
    if mode == "max":
        dx = ref.max_pool2d_backward(g, where, image.shape)
        steps = [f"dY[{i},{j}] = {term(v)} goes to x[{p // width},{p % width}] (the max, "
                 f"{style.value(pooled[0, 0, i, j], is_integral(pooled))}); the other "
                 f"{size * size - 1} pixels of the window get 0"
                 + _ties(image[0, 0], i * stride, j * stride, size, p)
                 for ((i, j), v), p in zip(np.ndenumerate(g[0, 0]), where[0, 0].ravel(),
                                           strict=True)]
        note = "max pooling: da/dx = 1 at the arg-max, 0 elsewhere (lecture 001)"
        if any("tie" in step for step in steps):
            note += ("; where several pixels hold the maximum (a tie) the subgradient may go "
                     "to any of them: cnnlab, like PyTorch, gives it to the first in row-major "
                     "order")
    elif mode == "avg":
        dx = ref.avg_pool2d_backward(g, image.shape, size, stride)
        steps = [f"dY[{i},{j}] = {term(v)}: each of the {size * size} window pixels gets "
                 f"{term(v)} / {size * size} = {style.value(v / size ** 2, False)}"
                 for (i, j), v in np.ndenumerate(g[0, 0])]
        note = f"average pooling: da/dx = 1/(r*c) = 1/{size * size} (lecture 001)"
    else:
        raise ConfigError(f"pool mode {mode!r}: choose max or avg")
    return Explanation(f"{mode} pooling backward", {"input": image[0, 0], "upstream gradient dY":
                       g[0, 0], "dX": dx[0, 0]}, steps, [note], result="dX")


def _ties(plane: np.ndarray, top: int, left: int, size: int, chosen: int) -> str:
    """``" (a tie: x[1,0] holds the max too)"`` when the window has several maxima."""
    window = plane[top:top + size, left:left + size]
    rows, cols = np.nonzero(window == window.max())
    width = plane.shape[1]
    others = [f"x[{top + r},{left + c}]" for r, c in zip(rows, cols, strict=True)
              if (top + r) * width + left + c != chosen]
    if not others:
        return ""
    return (f" (a tie: {', '.join(others)} {'holds' if len(others) == 1 else 'hold'} the "
            "max too and get 0)")
