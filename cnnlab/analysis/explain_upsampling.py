"""``explain`` for lecture 002's upsampling: transposed convolution and unpooling (nearest
neighbour, "bed of nails", max-unpooling with the positions remembered by a max-pool)."""

from __future__ import annotations

import numpy as np

from cnnlab import reference as ref
from cnnlab.analysis.explain import Style, _as_filters, _as_image
from cnnlab.analysis.explain_text import Explanation, is_integral, term
from cnnlab.errors import ConfigError


def explain_transpose_conv(x: np.ndarray, kernel: np.ndarray, stride: int = 2, padding: int = 1,
                           output_padding: int = 0, style: Style | None = None) -> Explanation:
    """Each input value weights a copy of the filter placed ``stride`` pixels apart; copies sum
    where they overlap, then ``padding`` pixels are cropped from each border."""
    style = style or Style()
    image = _as_image(x)
    if kernel.ndim != 2 or image.shape[1] != 1:
        raise ConfigError("transpose-conv: give a 2-D input and a 2-D kernel")
    sizes = [(n - 1) * stride - 2 * padding + f + output_padding
             for n, f in zip(image.shape[2:], kernel.shape, strict=True)]
    formulas = " and ".join(dict.fromkeys(
        f"({n} - 1)*{stride} - 2*{padding} + {f} + {output_padding} = {v}"
        for n, f, v in zip(image.shape[2:], kernel.shape, sizes, strict=True)))
    if min(sizes) < 1:
        raise ConfigError(f"transpose-conv: the output would be empty, (H - 1)*S - 2P + F + "
                          f"output_padding: {formulas}; use a smaller --padding (at most "
                          f"{max(0, (min(sizes) - 1 + 2 * padding) // 2)}) or a larger kernel")
    w = _as_filters(kernel, 1)  # (1, 1, F, F), torch layout (C_in, C_out, F, F) alike
    y = ref.conv_transpose2d(image, w, stride=stride, padding=padding,
                             output_padding=output_padding)[0, 0]
    fh, fw = kernel.shape
    steps = []
    for (i, j), v in np.ndenumerate(image[0, 0]):
        top, left = i * stride - padding, j * stride - padding
        outside = min(top, left) < 0 or top + fh > y.shape[0] or left + fw > y.shape[1]
        steps.append(f"x[{i},{j}] = {term(v)}: adds {term(v)} * kernel at output rows "
                     f"{top}..{top + fh - 1}, columns {left}..{left + fw - 1}"
                     + (" (the part outside the output is cropped)" if outside else ""))
    notes = [f"output size (H - 1)*S - 2P + F + output_padding: {formulas}",
             "it is the input gradient of the matching strided convolution"]
    return Explanation("transposed convolution", {"input": image[0, 0], "kernel":
                       kernel.astype(float), "output": y}, steps, notes)


def explain_unpool(x: np.ndarray, mode: str = "nearest", scale: int = 2,
                   pool_input: np.ndarray | None = None, style: Style | None = None
                   ) -> Explanation:
    """Nearest neighbour, bed of nails, or max-unpooling (``pool_input``: what the matching
    max-pool saw, to recover where each maximum was)."""
    style = style or Style()
    image = _as_image(x)
    whole = is_integral(image)
    grids: dict[str, np.ndarray] = {"input": image[0, 0]}
    steps = []
    if mode == "nearest":
        y = ref.nearest_upsample(image, scale)[0, 0]
        steps = [f"x[{i},{j}] = {style.value(v, whole)} copied into rows {i * scale}.."
                 f"{i * scale + scale - 1}, columns {j * scale}..{j * scale + scale - 1}"
                 for (i, j), v in np.ndenumerate(image[0, 0])]
    elif mode == "nails":
        y = ref.bed_of_nails(image, scale)[0, 0]
        steps = [f"x[{i},{j}] = {style.value(v, whole)} placed at ({i * scale},{j * scale}), "
                 "zeros around it" for (i, j), v in np.ndenumerate(image[0, 0])]
    elif mode == "max":
        if pool_input is None:
            raise ConfigError("unpool --mode max needs --pool-input: the matrix the matching "
                              "max-pool saw (lecture 002: 'Remember which element was max!')")
        seen = _as_image(pool_input)
        pooled, where = ref.max_pool2d(seen, scale)
        if pooled.shape[2:] != image.shape[2:]:
            raise ConfigError(f"input {image.shape[2:]} does not match the {pooled.shape[2:]} "
                              f"output of a {scale}x{scale} max-pool of --pool-input")
        y = ref.max_unpool2d(image, where, seen.shape[2:])[0, 0]
        width = seen.shape[3]
        grids.update({"pool input": seen[0, 0], "pooled": pooled[0, 0]})
        steps = [f"x[{i},{j}] = {style.value(v, whole)} goes to ({p // width},{p % width}), "
                 f"where the max {style.value(pooled[0, 0, i, j], whole)} was"
                 for ((i, j), v), p in zip(np.ndenumerate(image[0, 0]), where[0, 0].ravel(),
                                           strict=True)]
    else:
        raise ConfigError(f"unpool mode {mode!r}: choose nearest, nails or max")
    grids["output"] = y
    return Explanation(f"unpooling ({mode})", grids, steps)
