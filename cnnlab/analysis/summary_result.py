"""What :func:`cnnlab.analysis.summary.summary` returns: :class:`Summary` (and
:class:`Comparison` for two models), their JSON form (``to_dict()``) and text tables
(``render()``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

from cnnlab.analysis.fields import Field
from cnnlab.analysis.layer_field import plain_number
from cnnlab.analysis.tracer import LayerRow, rf_dict

HEADER = ("layer", "type", "F", "S", "P", "output", "units", "params", "MACs", "connections",
          "memory", "RF", "jump")


@dataclass
class Summary:
    """Rows, totals and warnings; ``render()`` gives the table, ``to_dict()`` the JSON form.

    Totals the lectures use: ``total_units`` (neurons: outputs of the layers with weights;
    ``input_units`` besides), ``total_connections`` (weighted multiply-adds that exist plus
    one per biased unit, LeCun et al.'s count), ``depth`` (layers with weights on the longest
    path: GoogLeNet's 22, ResNet-152's 152).
    """

    model: str
    input_size: tuple[int, ...]
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # set when the model could not run to the end
    output_field: Field | None = None  # receptive field of the model's (first) output
    depth: int = 0

    @property
    def total_macs(self) -> int:
        """Sum of the countable multiply-adds (see ``macs_complete``)."""
        return sum(r.macs or 0 for r in self.rows)

    @property
    def macs_complete(self) -> bool:
        return all(r.macs is not None for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.rows)

    @property
    def total_units(self) -> int:
        return sum(r.units for r in self.rows)

    @property
    def input_units(self) -> int:
        return math.prod(self.input_size)

    @property
    def total_connections(self) -> int:
        return sum(r.connections for r in self.rows)

    def to_dict(self) -> dict:
        return {"model": self.model, "input_size": list(self.input_size),
                "rows": [r.to_dict() for r in self.rows], "total_params": self.total_params,
                "trainable_params": self.trainable_params, "total_macs": self.total_macs,
                "macs_complete": self.macs_complete, "total_units": self.total_units,
                "input_units": self.input_units, "total_connections": self.total_connections,
                "depth": self.depth, "activation_bytes": self.activation_bytes,
                "warnings": self.warnings, "error": self.error,
                "output_receptive_field": rf_dict(self.output_field)}

    def render(self) -> str:
        return render_summary(self)

    def __str__(self) -> str:  # print(cnnlab.summary(...)) prints the table
        return self.render()
    def _repr_html_(self) -> str:
        """Jupyter: the table as HTML, then the totals and warnings."""
        groups = any((r.groups or 1) > 1 for r in self.rows)
        header = (*HEADER[:5], "G", *HEADER[5:]) if groups else HEADER
        lines = render_summary(self).split("\n")
        totals = lines[len(self.rows) + 5:]  # after the title, blank, header, rule, rows, rule
        return (f"<p><b>{escape(lines[0])}</b></p>"
                + html_table(header, [_row_cells(r, groups) for r in self.rows])
                + "".join(f"<div>{escape(t)}</div>" for t in totals if t))


def html_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    """An HTML table of strings (numbers right-aligned), for notebooks' rich display."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td style="text-align:{"right" if _numeric(c) else "left"}">{escape(str(c))}</td>'
        for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _numeric(cell: object) -> bool:
    return str(cell).replace(",", "").replace(".", "").replace("%", "").isdigit()


@dataclass
class Comparison:
    """Two summaries on the same input, side by side (``render()``, ``to_dict()``)."""

    a: Summary
    b: Summary

    def to_dict(self) -> dict:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(),
                "params_ratio": self.b.total_params / max(self.a.total_params, 1),
                "macs_ratio": self.b.total_macs / max(self.a.total_macs, 1)}

    def render(self) -> str:
        return render_comparison(self)

    def __str__(self) -> str:
        return self.render()


def _pair(values: tuple | None) -> str:
    if values is None:
        return "-"
    shown = [f"{plain_number(v):g}" if isinstance(v, float) else str(v) for v in values]
    return shown[0] if len(set(shown)) == 1 else "x".join(shown)


def human_bytes(n: int) -> str:
    """``1536 -> '1.5 KB'`` (powers of 1024)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _row_cells(row: LayerRow, groups: bool) -> list[str]:
    f = row.field
    cells = [row.name, row.type, _pair(row.kernel), _pair(row.stride), _pair(row.padding),
             "x".join(str(v) for v in row.output_shape) or "-", f"{row.units:,}",
             f"{row.params:,}", "?" if row.macs is None else f"{row.macs:,}",
             f"{row.connections:,}",
             human_bytes(row.activation_bytes) if row.output_shape else "-",
             _pair(f.size) if f else "?",
             (_pair(f.jump) if not f.collapsed else "-") if f else "?"]
    if groups:
        cells.insert(5, str(row.groups) if row.groups else "-")
    return cells


def _table(header: tuple[str, ...], lines: list[list[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in [list(header), *lines]) for i in range(len(header))]
    numeric = {i for i, h in enumerate(header)
               if h in ("units", "params", "MACs", "connections", "memory")}

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=False))).rstrip()

    rule = "-" * len(fmt(list(header)))
    return [fmt(list(header)), rule, *(fmt(line) for line in lines), rule]


def render_summary(s: Summary) -> str:
    """The summary as an aligned table, totals, then warnings (one per line)."""
    size = "x".join(str(v) for v in s.input_size)
    axes = {2: "C x L", 4: "C x D x H x W"}.get(len(s.input_size), "C x H x W")
    out = [f"{s.model} on a {size} input ({axes}, batch 1)", ""]
    groups = any((r.groups or 1) > 1 for r in s.rows)
    header = (*HEADER[:5], "G", *HEADER[5:]) if groups else HEADER
    out += _table(header, [_row_cells(r, groups) for r in s.rows])
    macs = f"{s.total_macs:,}" + ("" if s.macs_complete else " (at least; see warnings)")
    out += [f"parameters: {s.total_params:,} ({s.trainable_params:,} trainable)",
            f"units: {s.total_units:,} (outputs of layers with weights; + {s.input_units:,} "
            f"inputs = {s.total_units + s.input_units:,})",
            f"multiply-adds: {macs}",
            f"connections: {s.total_connections:,} (multiply-adds on weights that exist + one "
            "per biased unit)",
            f"depth: {s.depth} layer{'' if s.depth == 1 else 's'} with weights on the longest "
            "path",
            f"activation memory: {human_bytes(s.activation_bytes)} (outputs of all layers)"]
    if s.output_field is not None:
        out.append("receptive field of the output: " + describe_output_field(
            s.output_field, tuple(s.input_size[1:])))
    if s.error:
        out += ["", f"error: {s.error}"]
    out += [f"warning: {w}" for w in s.warnings]
    return "\n".join(out)


def describe_output_field(f: Field, input_hw: tuple[int, ...]) -> str:
    """``"global (...)"`` after flatten or global pooling, else the size and jump; then which
    input rows and columns no output unit sees, if any."""
    if f.collapsed:
        before = _pair(f.prior) if f.prior else "?"
        text = (f"global (after flatten or global pooling every output mixes all positions; "
                f"the largest field before: {before})")
    else:
        text = f"{_pair(f.size)}, jump {_pair(f.jump)}"
        if len(input_hw) == 2 and all(v >= n for v, n in zip(f.size, input_hw, strict=False)):
            text += " (the whole input)"
        elif len(input_hw) == 2:
            text += (f" (each output unit sees at most {f.size[0]}x{f.size[1]} of the "
                     f"{input_hw[0]}x{input_hw[1]} input)")
    return text + _unseen(f, input_hw)


def _unseen(f: Field, input_hw: tuple[int, ...]) -> str:
    """``"; rows 6, columns 6 of the 7x7 input are never seen"`` (empty when all are seen)."""
    if len(input_hw) != 2:
        return ""
    parts = []
    for a, noun in enumerate(("rows", "columns")):
        missing = _gaps(f.coverage(a), input_hw[a])
        if missing:
            parts.append(f"{noun} {', '.join(missing)}")
    if not parts:
        return ""
    return (f"; {' and '.join(parts)} of the {input_hw[0]}x{input_hw[1]} input are never seen "
            "by any output")


def _gaps(covered: tuple[tuple[int, int], ...], n: int) -> list[str]:
    """Positions of ``0..n-1`` outside the ``covered`` intervals, as ``"6"`` or ``"1-2"``."""
    gaps, at = [], 0
    for first, last in (*covered, (n, n)):
        first, last = max(first, 0), min(last, n - 1)
        if first > at:
            gaps.append(str(at) if first - 1 == at else f"{at}-{first - 1}")
        at = max(at, last + 1)
        if at >= n:
            break
    return gaps


def _final_rf(s: Summary) -> str:
    return _pair(s.output_field.size) if s.output_field is not None else "?"


def _relative(ratio: float, noun: str) -> str:
    if ratio <= 1:
        return f"{ratio:.1%} of A's {noun} (saves {1 - ratio:.1%})"
    return f"{ratio:,.1f} times A's {noun}"


def render_comparison(c: Comparison) -> str:
    """Both summaries, then their totals side by side with B / A ratios."""
    a, b = c.a, c.b
    sizes = ["x".join(str(v) for v in s.input_size) for s in (a, b)]
    on = (f"both on a {sizes[0]} input (B too; --input-b sets B's)" if sizes[0] == sizes[1]
          else f"A on {sizes[0]}, B on {sizes[1]}")
    lines = [render_summary(a), "", render_summary(b), "", f"comparison ({on}):"]
    head = ("", a.model, b.model, "B / A")
    rows = []
    for label, va, vb in (("parameters", a.total_params, b.total_params),
                          ("multiply-adds", a.total_macs, b.total_macs),
                          ("activation bytes", a.activation_bytes, b.activation_bytes)):
        ratio = f"{vb / va:.3f}" if va else "-"
        rows.append([label, f"{va:,}", f"{vb:,}", ratio])
    rows.append(["output RF", _final_rf(a), _final_rf(b), ""])
    widths = [max(len(r[i]) for r in [list(head), *rows]) for i in range(4)]
    for r in [list(head), *rows]:
        lines.append("  ".join([r[0].ljust(widths[0])] + [v.rjust(w) for v, w in
                                                          zip(r[1:], widths[1:], strict=False)]))
    if a.total_macs and a.total_params:
        macs, params = b.total_macs / a.total_macs, b.total_params / a.total_params
        lines.append(f"B needs {_relative(macs, 'multiply-adds')} and "
                     f"{_relative(params, 'parameters')}")
    return "\n".join(lines)
