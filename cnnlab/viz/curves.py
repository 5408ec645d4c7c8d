"""Training curves from a run's ``metrics.jsonl`` and the confusion-matrix heat map.

Plots are drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot state, no display), and
returned so a caller or a test can read what was plotted (``fig.axes[0].lines[0].get_ydata()``).

Example:
    >>> fig = curves_figure(read_metrics("runs/lenet5-digits"))  # doctest: +SKIP
    >>> save_figure(fig, "curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image

from cnnlab.errors import DataError
from cnnlab.runs import reader as runs_reader
from cnnlab.runs.layout import INDEX, METRICS

# (axis title, [(metrics.jsonl key, legend label)]) per panel
PANELS = [
    ("loss", [("train_loss", "train"), ("val_loss", "validation")]),
    ("accuracy", [("train_acc", "train"), ("val_acc", "validation")]),
    ("learning rate", [("lr", "lr")]),
]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of ``RUN/metrics.jsonl`` (:func:`cnnlab.runs.reader.read_metrics`:
    a line torn by a crash is skipped)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise DataError(f"{run_dir}: no {METRICS} (is this a cnnlab run directory?)")
    records = runs_reader.read_metrics(Path(run_dir))
    if not records:
        raise DataError(f"{path}: no epoch finished yet")
    return records


def curves_figure(records: list[dict]):
    """Loss, accuracy and learning rate against the epoch, one panel each."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(PANELS))
    for ax, (title, series) in zip(axes, PANELS, strict=True):
        for key, label in series:
            points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
            if points:
                epochs, values = zip(*points, strict=True)
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend()
    return fig


def read_test_metrics(run_dir: str | Path) -> dict:
    """The ``test`` metrics ``RUN/run.json`` records after the final test (``{}`` if none or
    unreadable, with a warning; values that are not finite numbers are left out)."""
    index = Path(run_dir) / INDEX
    if index.is_file() and not runs_reader.read_index(Path(run_dir)):
        warnings.warn(f"{index}: not a readable cnnlab run index (torn or edited); its test "
                      f"metrics are not shown", stacklevel=2)
    return runs_reader.read_test_metrics(Path(run_dir))


def compare_rows(runs: dict[str, list[dict]], tests: dict[str, dict]) -> list[dict]:
    """One summary row per run: epochs, last training loss and error, best validation
    accuracy and the recorded test accuracy (None where the run has none)."""
    rows = []
    for name, records in runs.items():
        last = records[-1] if records else {}  # no epochs: a run that is not a network
        val = [r["val_acc"] for r in records if r.get("val_acc") is not None]
        rows.append({"run": name, "epochs": last.get("epoch"),
                     "train_loss": last.get("train_loss"),
                     "train_err": None if last.get("train_acc") is None
                     else 1 - last["train_acc"],
                     "best_val_acc": max(val) if val else None,
                     "test_acc": tests.get(name, {}).get("acc")})
    return rows


def compare_figure(runs: dict[str, list[dict]]):
    """Several runs on shared axes, as He et al. 2015 fig. 6 draws plain vs residual nets:
    training loss (left) and error in % (right; dashed = training, solid = validation)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), dpi=100, layout="constrained")
    loss_ax, err_ax = fig.subplots(1, 2)
    for index, (name, records) in enumerate(runs.items()):
        color = f"C{index % 10}"
        for ax, key, style, label, scale in (
                (loss_ax, "train_loss", "-", name, None),
                (err_ax, "train_acc", "--", f"{name} train", 100),
                (err_ax, "val_acc", "-", f"{name} val", 100)):
            points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
            if points:
                epochs, values = zip(*points, strict=True)
                if scale:
                    values = [scale * (1 - v) for v in values]
                ax.plot(epochs, values, style, color=color, marker="o", markersize=2.5,
                        label=label)
    for ax, title in ((loss_ax, "training loss"), (err_ax, "error (%)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:  # a run with no epochs (cnnlab bovw) draws nothing
            ax.legend(fontsize=8)
    return fig


def confusion_figure(confusion: list[list[int]], classes: list[str]):
    """Heat map of a confusion matrix (rows = true class, columns = predicted), with counts."""
    from matplotlib.figure import Figure

    n = len(classes)
    side = min(12.0, 2.5 + 0.45 * n)
    fig = Figure(figsize=(side, side * 0.85), dpi=100, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), classes)
        high = max(max(row) for row in confusion) or 1
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                if count and n <= 20:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                            color="white" if count > high / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


def figure_image(fig) -> Image.Image:
    """Render a matplotlib figure to a Pillow RGB image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
