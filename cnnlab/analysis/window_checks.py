"""Hyper-parameters that do not fit: the checks behind the summary's warnings, each with a fix.

(Supersedes ``cnnlab.analysis.checks``: same checks, advice for every warning, and one accurate
note for a strided 1x1 convolution, ResNet's downsampling shortcut, which skips pixels by design.)
An output size that is fractional only because padding is cut (ResNet's 7x7 stride-2 conv1 on
224: (224 - 7 + 6)/2 + 1 = 112.5, the last window would start in the padding) is silent: no
image pixel is ignored.

Lecture 004: "7x7 input, 3x3 filter, stride 3? It doesn't fit! ... Pad with 1 pixel border
-> 3x3 output". Lecture 001: "avoid combinations of hyper-parameters that do not click, e.g.
s = 2, 3x3 filter, 6x6 image -> 2.5x2.5 ... worse accuracy because borders are ignored".
Output size per axis: ``(W - F + 2P) / S + 1`` (F is the dilated extent ``D (F - 1) + 1``).

Example:
    >>> check_window("conv1", "conv2d", (7, 7), (3, 3), (3, 3), (0, 0))[0][0][:52]
    'conv1 (conv2d): 7x7 input, 3x3 filter, stride 3, pad'
"""

from __future__ import annotations


def _hw(values: tuple[int, int]) -> str:
    return f"{values[0]}x{values[1]}"


def _one(values: tuple[int, int]) -> str:
    return str(values[0]) if values[0] == values[1] else _hw(values)


def fitting_padding(size: int, span: int, stride: int, padding: int) -> int | None:
    """Smallest symmetric padding >= ``padding`` making ``(W - F + 2P) / S`` an integer."""
    lowest = max(padding, -(-(span - size) // 2))  # enough padding for one window
    for candidate in range(lowest, lowest + stride + 1):
        if size - span + 2 * candidate >= 0 and (size - span + 2 * candidate) % stride == 0:
            return candidate
    return None


def _fit_advice(size: tuple[int, int], span: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int]) -> str:
    fits = [fitting_padding(size[a], span[a], stride[a], padding[a]) for a in range(2)]
    if None in fits:
        need = [(-(size[a] - span[a] + 2 * padding[a])) % stride[a] for a in range(2)]
        return (f"no symmetric padding fits; pad {_one(tuple(need))} pixel(s) on one side "
                f"only, or resize the input to {_hw((size[0] + need[0], size[1] + need[1]))}")
    outs = tuple((size[a] - span[a] + 2 * fits[a]) // stride[a] + 1 for a in range(2))
    return f"padding={_one(tuple(fits))} fits (output {_hw(outs)})"  # type: ignore[arg-type]


def check_window(layer: str, op: str, size: tuple[int, int], kernel: tuple[int, int],
                 stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int] = (1, 1), ceil_mode: bool = False
                 ) -> tuple[list[str], str | None]:
    """Warnings for one sliding window, and an error text if the output would be empty.

    Returns ``(warnings, error)``; ``error`` is not None when the kernel does not fit even
    once (the output size would be zero or negative).
    """
    span = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in range(2))
    where = (f"{layer} ({op}): {_hw(size)} input, {_hw(kernel)} filter, stride {_one(stride)}, "
             f"padding {_one(padding)}")
    exact = [(size[a] - span[a] + 2 * padding[a]) / stride[a] + 1 for a in range(2)]
    formula = " and ".join(dict.fromkeys(
        f"({size[a]} - {span[a]} + 2*{padding[a]})/{stride[a]} + 1 = {exact[a]:.4g}"
        for a in range(2)))
    if min(exact) < 1:
        return [], (f"{where}: the output shrinks to zero, {formula}; the kernel is larger "
                    f"than the padded input; {_fit_advice(size, span, stride, padding)}")
    if all(span[a] == 1 for a in range(2)) and max(stride) > 1:
        return [f"{where}: a strided 1x1 convolution (as in ResNet's downsampling shortcut) "
                f"reads one row/column in every {_one(stride)} and skips the others by design; "
                "the main path's strided 3x3 sees them"], None
    warnings = []
    if any(span[a] > size[a] for a in range(2)):
        same = tuple((span[a] - 1) // 2 for a in range(2))
        warnings.append(f"{where}: the kernel is larger than its input; most of each window "
                        f"is zero padding; use a kernel of at most {_hw(size)} (padding="
                        f"{_one(same)} then keeps the size) or a larger input")
    # rows left over at the bottom/right; only those that are image pixels, not padding, count
    ignored = tuple(max(int((size[a] - span[a] + 2 * padding[a]) % stride[a]) - padding[a], 0)
                    for a in range(2))
    if not ceil_mode and any(ignored):
        warnings.append(
            f"{where}: does not fit, {formula} is not an integer; the last "
            f"{_one(ignored)} row(s)/column(s) of the input are ignored (border pixels never "
            f"seen); {_fit_advice(size, span, stride, padding)}")
    if any(stride[a] > span[a] for a in range(2)):
        gap = tuple(max(stride[a] - span[a], 0) for a in range(2))
        fit = tuple(max(stride[a], span[a]) for a in range(2))
        warnings.append(f"{where}: stride larger than the kernel; {_one(gap)} of every "
                        f"{_one(stride)} rows/columns are never seen; use a kernel of at least "
                        f"{_hw(fit)} (at least the stride) or stride {_one(span)}")
    return warnings, None
