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

import math
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import cache
from importlib.resources import files

import numpy as np
import yaml

from cnnlab.errors import ConfigError, choices_hint


@dataclass(frozen=True)
class Example:
    """One worked example of the catalogue."""

    id: str
    lecture: str
    slide: str
    what: str
    numbers: dict  # quantity -> the slide's number (see the module docstring)
    why: dict = field(default_factory=dict)  # quantity -> why cnnlab's differs
    command: str | None = None
    decimals: int | None = None  # grids of decimals: as the slide prints them
    truncate: bool = False


@dataclass(frozen=True)
class Difference:
    """One entry where the slide and cnnlab disagree (``index`` None: the whole quantity)."""

    quantity: str
    index: tuple[int, ...] | None
    slide: object
    cnnlab: object


@dataclass
class Comparison:
    """One quantity: the slide's value, cnnlab's, and how they compare."""

    quantity: str
    slide: object  # as transcribed (None: not on the slide)
    printed: str | None  # the slide's own text, where it writes the number in words
    cnnlab: object
    status: str  # "same", "rounded", "truncated", "differs", "cnnlab only"
    differences: list[Difference]
    why: str | None = None


@dataclass
class ExampleResult:
    example: Example
    comparisons: list[Comparison]

    @property
    def differences(self) -> list[Difference]:
        return [d for c in self.comparisons for d in c.differences]

    def to_dict(self) -> dict:
        e = self.example
        return {"id": e.id, "lecture": e.lecture, "lecture_title": lecture_titles()[e.lecture],
                "slide": e.slide, "what": e.what, "command": e.command,
                "quantities": [{"quantity": c.quantity, "slide": _plain(c.slide),
                                "printed": c.printed, "cnnlab": _plain(c.cnnlab),
                                "status": c.status, "why": c.why,
                                "differences": [{"index": d.index, "slide": _plain(d.slide),
                                                 "cnnlab": _plain(d.cnnlab)}
                                                for d in c.differences]}
                               for c in self.comparisons]}

    def render(self) -> str:
        from cnnlab.analysis.lecture_render import render_result

        return render_result(self)


@cache
def _catalogue() -> dict:
    text = (files("cnnlab.analysis") / "lecture_data" / "catalogue.yaml").read_text()
    return yaml.safe_load(text)


def lecture_titles() -> dict[str, str]:
    """Lecture number ("000") -> its course and title."""
    return dict(_catalogue()["lectures"])


def examples() -> list[Example]:
    """Every worked example, in lecture order."""
    return [Example(**entry) for entry in _catalogue()["examples"]]


def find_example(example_id: str) -> Example:
    """The example with this id (ConfigError listing the ids otherwise)."""
    found = {e.id: e for e in examples()}
    if example_id not in found:
        raise ConfigError(f"unknown worked example {choices_hint(example_id, list(found))} "
                          "(cnnlab lectures lists them)")
    return found[example_id]


def run_example(example_id: str) -> ExampleResult:
    """Compute cnnlab's numbers for one example and compare them with the slide's."""
    import cnnlab.analysis.lecture_examples_late  # noqa: F401  (registers lectures 003-004)
    from cnnlab.analysis.lecture_examples import COMPUTE

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


def as_printed(value: object, example: Example) -> object:
    """cnnlab's number as the slide prints it (decimals, truncation) for grids of decimals."""
    if example.decimals is None or isinstance(value, str):
        return value
    array = np.asarray(value, dtype=float)
    scale = 10 ** example.decimals
    if example.truncate:
        shown = np.trunc(np.round(array * scale, 9)) / scale
    else:  # half up, as the slides round (80.5 -> 81)
        shown = np.floor(np.abs(array) * scale + 0.5 + 1e-9) * np.sign(array) / scale
    return shown.tolist()


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
    return [Difference(name, tuple(int(i) for i in idx), _plain(a[tuple(idx)]),
                       _plain(b[tuple(idx)])) for idx in wrong]


def _shape(array: np.ndarray) -> str:
    return "x".join(str(n) for n in array.shape) if array.ndim else str(array.item())


def _plain(value: object) -> object:
    """JSON-friendly: whole floats as ints, arrays as lists."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value
