"""The catalogue of the lectures' worked examples (``lecture_data/catalogue.yaml``, shipped with
the package) and the types :mod:`cnnlab.analysis.lectures` compares them with: one
:class:`Example` per entry (its lecture, slide title, what it shows, the slide's numbers as the
transcript has them, and why cnnlab's differ where they do), and per quantity a
:class:`Comparison` listing each :class:`Difference`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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


def plain_json(value: object) -> object:
    """JSON-friendly: whole floats as ints, arrays as lists."""
    if isinstance(value, np.ndarray):
        return plain_json(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value
