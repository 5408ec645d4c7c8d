"""How much memory one data set may take: min(8 GiB, half the RAM) unless raised.

Every reader that builds a large array asks :func:`check_budget` first (an IDX header, a scene
set's size) or as it goes (the decoded images of a folder), so a small file that declares a
huge payload, or a folder of a few giant images, stops with one line naming the data set, the
size and ``--data-budget`` instead of exhausting the machine. The budget is a scoped setting
(:func:`data_budget`), like ``--overwrite``: ``with data_budget(20): load_dataset(...)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

from cnnlab.errors import DataError

GIB = 1 << 30
DEFAULT_CAP = 8 * GIB

_BUDGET = contextvars.ContextVar("cnnlab_data_budget", default=None)


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 * DEFAULT_CAP


def budget_bytes() -> int:
    """The budget in force: the scoped one, else min(8 GiB, half the RAM)."""
    scoped = _BUDGET.get()
    return int(scoped * GIB) if scoped is not None else min(DEFAULT_CAP, physical_memory() // 2)


@contextlib.contextmanager
def data_budget(gib: float | None) -> Iterator[None]:
    """Within the block, data sets may take ``gib`` GiB (None: the default)."""
    if gib is not None and not gib > 0:
        raise DataError(f"--data-budget {gib}: expected a positive number of GiB")
    token = _BUDGET.set(gib)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def check_budget(nbytes: int, what: str) -> None:
    """DataError when ``what`` needs more than the budget."""
    budget = budget_bytes()
    if nbytes > budget:
        raise DataError(f"{what} needs {nbytes / GIB:.2f} GiB of memory, more than the data "
                        f"budget of {budget / GIB:.2f} GiB (min(8 GiB, half the RAM)); raise it "
                        f"with --data-budget GIB if the machine has the room")
