"""Text for ``cnnlab lectures``: the catalogue as a table, and one example's slide numbers beside
cnnlab's with every differing entry marked ``*`` and explained."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cnnlab.analysis.explain_text import fmt

if TYPE_CHECKING:
    from cnnlab.analysis.lectures import Comparison, Example, ExampleResult

STATUS = {"same": "same", "rounded": "same, rounded by the slide",
          "truncated": "same, truncated by the slide", "differs": "DIFFERS",
          "cnnlab only": "not on the slide"}


def render_catalogue(entries: list[Example]) -> str:
    """One line per example: id, lecture, slide title, what it shows."""
    width = max(len(e.id) for e in entries)
    slide = min(max(len(e.slide) for e in entries), 44)
    lines = [f"{'id':<{width}}  lecture  {'slide':<{slide}}  what", "-" * (width + slide + 60)]
    for e in entries:
        title = e.slide if len(e.slide) <= slide else e.slide[:slide - 3] + "..."
        lines.append(f"{e.id:<{width}}  {e.lecture:<7}  {title:<{slide}}  {e.what}")
    lines += ["", f"{len(entries)} worked examples; cnnlab lectures ID shows one (--json for "
              "machine-readable output)"]
    return "\n".join(lines)


def _number(value: object, decimals: int | None = None) -> str:
    """A scalar as the table shows it: thousands grouped, decimals as the example prints."""
    if isinstance(value, str):
        return value
    if value is None:
        return "-"
    v = float(value)  # type: ignore[arg-type]
    if v.is_integer():
        return f"{int(v):,}"
    return fmt(v, decimals, integral=False) if decimals is not None else f"{v:g}"


def _grid_lines(values: object, marks: set[tuple[int, ...]], decimals: int | None
                ) -> list[str]:
    array = np.asarray(values, dtype=float)
    rows = array.reshape(1, -1) if array.ndim <= 1 else array
    whole = bool(np.all(np.mod(rows, 1) == 0))
    cells = [[fmt(v, 2 if decimals is None else decimals, integral=whole)
              + ("*" if ((i, j) if array.ndim > 1 else (j,)) in marks else " ")
              for j, v in enumerate(row)] for i, row in enumerate(rows)]
    width = max(len(c) for row in cells for c in row)
    return ["  ".join(c.rjust(width) for c in row) for row in cells]


def _is_grid(value: object) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0


def _render_grid(c: Comparison, example: Example) -> list[str]:
    from cnnlab.analysis.lectures import as_printed

    decimals = example.decimals
    marks = {d.index for d in c.differences if d.index is not None}
    left = _grid_lines(c.slide, marks, decimals) if c.slide is not None else ["(not printed)"]
    right = _grid_lines(as_printed(c.cnnlab, example), marks, decimals)
    width = max(len(line) for line in left + ["slide"])
    out = [f"{c.quantity}: {STATUS[c.status]}" + _count(c), f"  {'slide':<{width}}    cnnlab"]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        out.append(f"  {a:<{width}}    {b}".rstrip())
    for d in c.differences:
        where = "[" + ",".join(str(i) for i in d.index) + "]" if d.index is not None else "shape"
        out.append(f"  {where}: slide {_number(d.slide, decimals)}, cnnlab "
                   f"{_number(d.cnnlab, decimals)}")
    return out


def _count(c: Comparison) -> str:
    n = len([d for d in c.differences if d.index is not None])
    return f" ({n} entr{'y' if n == 1 else 'ies'})" if n else ""


def _scalar_table(comparisons: list[Comparison], decimals: int | None) -> list[str]:
    rows = []
    for c in comparisons:
        slide = c.printed if c.printed is not None else _number(c.slide, decimals)
        if c.slide is None:
            slide = "(not printed)"
        status = STATUS[c.status]
        if c.status in ("rounded", "truncated"):
            status += f" ({_number(c.cnnlab)} -> {c.printed or _number(c.slide)})"
        rows.append((c.quantity, slide, _number(c.cnnlab, decimals), status))
    widths = [max(len(r[i]) for r in [("quantity", "slide", "cnnlab", ""), *rows])
              for i in range(3)]
    head = f"{'quantity':<{widths[0]}}  {'slide':>{widths[1]}}  {'cnnlab':>{widths[2]}}"
    return [head, "-" * (len(head) + 12)] + [
        f"{q:<{widths[0]}}  {s:>{widths[1]}}  {v:>{widths[2]}}  {st}" for q, s, v, st in rows]


def render_result(result: ExampleResult) -> str:
    """The example's header, its quantities side by side, the reasons, and a verdict."""
    from cnnlab.analysis.lectures import lecture_titles

    e = result.example
    out = [f"{e.id}: lecture {e.lecture}, {lecture_titles()[e.lecture]}",
           f"slide: {e.slide}", f"shows: {e.what}"]
    if e.command:
        out.append(f"step by step: {e.command}")
    grids = [c for c in result.comparisons if _is_grid(c.cnnlab) or _is_grid(c.slide)]
    scalars = [c for c in result.comparisons if c not in grids]
    if scalars:
        out += [""] + _scalar_table(scalars, e.decimals)
    for c in grids:
        out += [""] + _render_grid(c, e)
    reasons = [c for c in result.comparisons if c.why and c.status == "differs"]
    if reasons:
        out.append("")
        out += [f"why ({c.quantity}): {c.why}" for c in reasons]
    differing = [c for c in result.comparisons if c.status == "differs"]
    entries = len(result.differences)
    out += ["", f"verdict: {len(differing)} of {len(result.comparisons)} quantities differ from "
            f"the slide ({entries} entr{'y' if entries == 1 else 'ies'})" if differing else
            f"verdict: all {len(result.comparisons)} quantities agree with the slide"]
    return "\n".join(out)
