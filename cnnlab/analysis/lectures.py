"""The lectures' worked examples, one command away: the slide's numbers beside cnnlab's.

The catalogue is data (``lecture_data/catalogue.yaml``, shipped with the package): one entry
per example with its lecture, slide title, what it shows, the slide's numbers as the transcript
has them, and why cnnlab's differ where they do. cnnlab's numbers come from the function of
the same id in :mod:`cnnlab.analysis.lecture_examples`, which uses ``summary``, ``explain``,
the NumPy reference operators and the zoo.

A slide number is compared exactly, or, where the slide rounds ("98.3 Million"), after
rounding cnnlab's value half up to the slide's significant digits (trailing zeros do not count:
"60 million" has one); grids of decimals are compared as the slide prints them (lecture 003
truncates to two decimals). Every differing entry is listed.

Example:
    >>> result = run_example("padded-conv")
    >>> [(d.quantity, d.index, d.slide, d.cnnlab) for d in result.differences]
    [('output', (2, 2), -2, -4)]
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import numpy as np

from cnnlab.analysis.lecture_catalogue import (
    Comparison,
    Difference,
    Example,
    as_printed,
    examples,
    find_example,
    lecture_titles,
    plain_json,
)
from cnnlab.analysis.lecture_examples import COMPUTE
from cnnlab.analysis.lecture_render import ExampleResult

__all__ = ["Comparison", "Difference", "Example", "ExampleResult", "as_printed", "compare_quantity",
           "examples", "find_example", "lecture_titles", "run_example"]


def run_example(example_id: str) -> ExampleResult:
    """Compute cnnlab's numbers for one example and compare them with the slide's."""
    import cnnlab.analysis.lecture_examples_late  # noqa: F401  (registers lectures 003-004)

    example = find_example(example_id)
    computed = COMPUTE[example.id](example)
    missing = set(example.numbers) - set(computed)
    assert not missing, f"{example.id}: no cnnlab value for {sorted(missing)}"
    comparisons = [compare_quantity(name, spec, computed[name], example)
                   for name, spec in example.numbers.items()]
    return ExampleResult(example, comparisons)


def compare_quantity(name: str, spec: object, value: object, example: Example) -> Comparison:
    """Compare one of the slide's numbers (``spec``, see the module docstring) with cnnlab's."""
    printed = spec.get("printed") if isinstance(spec, dict) else None
    why = example.why.get(name)
    if spec is None:
        return Comparison(name, None, None, value, "cnnlab only", [], why)
    if isinstance(spec, dict) and "approx" in spec:
        slide = spec["approx"]
        shown = _round_to(float(value), slide, bool(spec.get("down")))
        if float(value) == slide:
            status = "same"
        elif shown == slide:
            status = "truncated" if spec.get("down") else "rounded"
        else:
            status = "differs"
        diffs = [] if status != "differs" else [Difference(name, None, slide, value)]
        return Comparison(name, slide, printed, value, status, diffs, why)
    slide = spec["value"] if isinstance(spec, dict) else spec
    diffs = _differences(name, slide, value, example)
    return Comparison(name, slide, printed, value, "differs" if diffs else "same", diffs, why)


def _round_to(value: float, like: float, down: bool) -> float:
    """``value`` rounded (half up, or down) to the significant digits of ``like``."""
    if like == 0:
        return round(value)
    digits = Decimal(repr(float(like))).normalize()
    unit = Decimal(1).scaleb(digits.adjusted() - len(digits.as_tuple().digits) + 1)
    rounded = (Decimal(repr(value)) / unit).quantize(Decimal(1), ROUND_DOWN if down
                                                      else ROUND_HALF_UP) * unit
    return float(rounded)


def _differences(name: str, slide: object, value: object, example: Example
                 ) -> list[Difference]:
    """Entries that differ; a whole-quantity difference when the shapes or kinds differ."""
    value = as_printed(value, example)
    if isinstance(slide, (str, bool)) or isinstance(value, (str, bool)):
        return [] if str(slide) == str(value) else [Difference(name, None, slide, value)]
    a, b = np.asarray(slide, dtype=float), np.asarray(value, dtype=float)
    if a.shape != b.shape:
        return [Difference(name, None, _shape(a), _shape(b))]
    if a.ndim == 0:
        same = bool(np.isclose(a, b, rtol=0, atol=1e-9))
        return [] if same else [Difference(name, None, slide, value)]
    wrong = np.argwhere(~np.isclose(a, b, rtol=0, atol=1e-9))
    return [Difference(name, tuple(int(i) for i in idx), plain_json(a[tuple(idx)]),
                       plain_json(b[tuple(idx)])) for idx in wrong]


def _shape(array: np.ndarray) -> str:
    return "x".join(str(n) for n in array.shape) if array.ndim else str(array.item())
