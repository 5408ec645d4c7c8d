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

MIN_FONT = 9  # points: no text on a figure is smaller (at the saved DPI, 100)
LOSS = ("loss", [("train_loss", "train"), ("val_loss", "validation")])
LR = ("learning rate", [("lr", "lr")])


def metric_panels(metrics: tuple[str, ...] = ("acc",), labels: dict[str, str] | None = None
                  ) -> list[tuple[str, list[tuple[str, str]]]]:
    """The curves' panels: the loss, one panel per metric the task declares
    (``task.curve_metrics``, the main one first: mAP, mIoU, accuracy), the learning rate."""
    labels = labels or {}
    panels = [LOSS]
    for metric in metrics:
        panels.append((labels.get(metric, "accuracy" if metric == "acc" else metric),
                       [(f"train_{metric}", "train"), (f"val_{metric}", "validation")]))
    return [*panels, LR]


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


def curves_figure(records: list[dict], *, metrics: tuple[str, ...] = ("acc",),
                  labels: dict[str, str] | None = None, steps: list[dict] | None = None,
                  title: str = ""):
    """Loss, each of ``metrics`` and the learning rate against the epoch, one panel each.
    With ``steps`` (``steps.jsonl``'s records) the training loss, accuracy and learning rate
    are drawn per window of steps at fractional epochs (a thin line under the epoch markers),
    so a short run still has a curve and a warm-up's peak shows."""
    from matplotlib.figure import Figure

    panels = metric_panels(metrics, labels)
    fig = Figure(figsize=(3.7 * len(panels), 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels))
    step_keys = {"train_loss": "loss", "train_acc": "acc", "lr": "lr"}
    for ax, (name, series) in zip(axes, panels, strict=True):
        for key, label in series:
            per_step = [(s["epoch"], s[step_keys[key]]) for s in steps or []
                        if key in step_keys and s.get(step_keys[key]) is not None]
            if per_step:
                x, y = zip(*per_step, strict=True)
                ax.plot(x, y, linewidth=1, alpha=0.8, label=f"{label} (per step)",
                        color="C0" if key != "lr" else "C2")
            points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
            if points and not (per_step and key == "lr"):
                epochs, values = zip(*points, strict=True)
                ax.plot(epochs, values, marker="o", markersize=4, linestyle="-" if not per_step
                        else "none", label=label)
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines and len(ax.lines) > 1:
            ax.legend(fontsize=MIN_FONT)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def run_curves(run, title: str = ""):
    """:func:`curves_figure` of an opened run (:class:`~cnnlab.runs.reader.OpenRun`): the
    metrics its task declares (``task.curve_metrics``: mAP for multilabel, mIoU for segment,
    the metric that picks the best checkpoint, first), per step from ``steps.jsonl``."""
    return curves_figure(read_metrics(run.run_dir), metrics=run.task.curve_metrics,
                         labels=run.task.metric_labels, steps=run.steps(), title=title)


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
            ax.legend(fontsize=MIN_FONT)
    return fig


def normalize_rows(confusion: list[list[int]]) -> list[list[float]]:
    """Each row divided by its sum (the fraction of each true class given each answer; a
    class with no images stays 0).

    Example:
        >>> normalize_rows([[3, 1], [0, 0]])
        [[0.75, 0.25], [0.0, 0.0]]
    """
    return [[v / sum(row) if sum(row) else 0.0 for v in row] for row in confusion]


def confusion_figure(confusion: list[list[int]], classes: list[str], *,
                     normalize: bool = False, title: str = ""):
    """Heat map of a confusion matrix (rows = true class, columns = predicted), with the
    counts (or, ``normalize``, each true class's fractions) in the cells and a colour bar."""
    from matplotlib.figure import Figure

    n = len(classes)
    values = normalize_rows(confusion) if normalize else confusion
    side = min(12.0, 3.2 + 0.45 * n)
    fig = Figure(figsize=(side, side * 0.85), dpi=100, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.set_label("fraction of the true class" if normalize else "images")
    if n <= 30:
        long = n > 10 or max(len(c) for c in classes) * n > 40  # names would run together
        ax.set_xticks(range(n), classes, rotation=45 if long else 0, ha="right" if long
                      else "center", rotation_mode="anchor")
        ax.set_yticks(range(n), classes)
        high = max(max(row) for row in values) or 1
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                if value and n <= 20:
                    text = f"{value:.2f}".lstrip("0") if normalize else str(value)
                    ax.text(j, i, text, ha="center", va="center", fontsize=MIN_FONT,
                            color="white" if value > high / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix, normalised per true class" if normalize
                           else "confusion matrix (counts)"), fontsize=11)
    return fig


def figure_image(fig) -> Image.Image:
    """Render a matplotlib figure to a Pillow RGB image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
