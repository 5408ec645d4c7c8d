"""Shared pieces of ``explain``: the :class:`Explanation` record, number formatting, aligned
grids like the slides, and reading matrices typed on the command line or in a file."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np

from cnnlab.errors import ConfigError, choices_hint


@dataclass
class Explanation:
    """One worked example: named grids, one line per computed value, and notes."""

    title: str
    grids: dict[str, np.ndarray]  # name -> 1-D, 2-D or 3-D (channels) array, in display order
    steps: list[str]
    notes: list[str] = field(default_factory=list)
    result: str = "output"  # which grid is the answer
    warnings: list[str] = field(default_factory=list)  # hyper-parameters that do not fit

    def to_dict(self) -> dict:
        return {"title": self.title, "result": self.grids[self.result].tolist(),
                "grids": {k: v.tolist() for k, v in self.grids.items()},
                "steps": self.steps, "notes": self.notes, "warnings": self.warnings}

    def render(self, decimals: int = 2, truncate: bool = False, rounding: str = "half-up"
               ) -> str:
        out = [self.title, ""]
        for name, grid in self.grids.items():
            out += [f"{name} {'x'.join(str(s) for s in grid.shape)}:",
                    *format_grid(grid, decimals, truncate, rounding), ""]
        out += self.steps
        if self.notes or self.warnings:
            out += [""] + [f"note: {n}" for n in self.notes]
            out += [f"warning: {w}" for w in self.warnings]
        return "\n".join(out)


ROUNDINGS = {"half-up": ROUND_HALF_UP, "half-even": ROUND_HALF_EVEN}


def fmt(value: float, decimals: int = 2, truncate: bool = False, integral: bool = True,
        rounding: str = "half-up") -> str:
    """A number as the slides print it: integers plain when ``integral`` (the whole grid is
    whole numbers), else ``decimals`` places, exact zeros as ``0``; ``truncate`` cuts digits
    instead of rounding (lecture 003 prints 7/9 as 0.77). ``rounding`` decides ties:
    ``"half-up"`` (halves away from zero, as the slides and school arithmetic round: lecture
    003's box filter prints 80.5 as 81) or ``"half-even"`` (Python's and NumPy's: 80.5 -> 80).

    Example: ``fmt(80.5, 0) == '81'``, ``fmt(80.5, 0, rounding="half-even") == '80'``,
    ``fmt(7 / 9, truncate=True) == '0.77'``.
    """
    if rounding not in ROUNDINGS:
        raise ConfigError(f"--round {rounding!r}: expected one of {', '.join(ROUNDINGS)}")
    value = float(value)
    if value == 0 or (integral and value.is_integer()):
        return str(int(value))
    if truncate:
        scale = 10 ** decimals
        value = math.trunc(round(value * scale, 9)) / scale
        text = f"{value:.{decimals}f}"
    else:  # round to 9 places first so float noise (80.49999999999) does not decide a tie
        exact = Decimal(repr(round(value, 9)))
        text = f"{exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUNDINGS[rounding])}"
    return "0" if float(text) == 0 else text


def is_integral(array: np.ndarray) -> bool:
    """True when every entry is a whole number."""
    return bool(np.all(np.mod(array, 1) == 0))


def term(value: float) -> str:
    """A factor in a product: up to 4 significant digits, negatives in parentheses, ``(-2)``."""
    value = float(value)
    text = str(int(value)) if value.is_integer() else f"{value:.4g}"
    return f"({text})" if text.startswith("-") else text


def format_grid(grid: np.ndarray, decimals: int = 2, truncate: bool = False,
                rounding: str = "half-up") -> list[str]:
    """Rows of right-aligned numbers; channels of a 3-D array one after another, and for a 4-D
    kernel (filters, channels, rows, cols) each filter with its channels, as the slides do."""
    if grid.ndim == 4:
        out: list[str] = []
        for k, one in enumerate(grid):
            out += [f"filter {k}:"] + format_grid(one, decimals, truncate, rounding)
        return out
    if grid.ndim == 3:
        lines: list[str] = []
        for c, plane in enumerate(grid):
            lines += [f"[{c}]"] + format_grid(plane, decimals, truncate, rounding)
        return lines
    rows = grid.reshape(1, -1) if grid.ndim == 1 else grid
    whole = is_integral(grid)
    cells = [[fmt(v, decimals, truncate, whole, rounding) for v in row] for row in rows]
    width = max((len(c) for row in cells for c in row), default=1)
    return ["  ".join(c.rjust(width) for c in row) for row in cells]


_FRACTION = re.compile(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")


def parse_matrix(text: str, what: str = "matrix", ndim: tuple[int, ...] = (1, 2, 3, 4)
                 ) -> np.ndarray:
    """``"[[1,3,1],[0,-1,1]]"`` (JSON; entries may be fractions like ``1/16``) -> float array.

    Raises ConfigError (one line) for anything that is not a rectangular array of numbers.
    """
    try:
        source = _FRACTION.sub(lambda m: repr(float(m.group(1)) / float(m.group(2))),
                               text.strip())
    except ZeroDivisionError:
        raise ConfigError(f"{what} {text!r}: a fraction divides by zero") from None
    try:
        array = np.array(json.loads(source), dtype=float)
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        reason = ("rows of different lengths" if "inhomogeneous" in str(exc)
                  else str(exc).split(";")[0].split("\n")[0])
        raise ConfigError(f"{what} {text!r}: not a rectangular array of numbers ({reason}); "
                          'write it like "[[1,3,1],[0,-1,1]]"') from None
    if array.ndim not in ndim or array.size == 0:
        dims = " or ".join(f"{d}-D" for d in ndim)
        raise ConfigError(f"{what} {text!r}: expected a non-empty {dims} array, got "
                          f"{array.ndim}-D with shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{what} {text!r}: entries must be finite numbers")
    return array


def read_matrix(text: str | None, path: str | None, what: str,
                ndim: tuple[int, ...] = (1, 2, 3, 4)) -> np.ndarray:
    """A matrix from ``--X`` text or ``--X-file`` path (exactly one of them)."""
    if (text is None) == (path is None):
        raise ConfigError(f"give the {what} either on the command line or with a file, "
                          "exactly one of the two")
    if path is not None and path.startswith("lecture:"):
        text = lecture_input(path.split(":", 1)[1], what)
    elif path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{what} file {path}: {exc.strerror}") from None
    return parse_matrix(text, what, ndim)


def lecture_inputs() -> list[str]:
    """Names of the lectures' matrices shipped with cnnlab (``--input-file lecture:NAME``)."""
    from importlib.resources import files

    folder = files("cnnlab.analysis") / "lecture_data"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def lecture_input(name: str, what: str = "--input-file") -> str:
    """The text of lecture matrix ``name`` (package data, so it works from any install)."""
    from importlib.resources import files


    names = lecture_inputs()
    if name not in names:
        raise ConfigError(f"{what} lecture:{name}: unknown lecture input "
                          f"{choices_hint(name, names)}")
    return (files("cnnlab.analysis") / "lecture_data" / f"{name}.json").read_text()
