"""The zoo's cost at a glance: lecture 002's "Comparing complexity" chart (Canziani, Paszke &
Culurciello, "An Analysis of Deep Neural Network Models for Practical Applications", 2017:
top-1 accuracy against operations, bubble size = parameters) for cnnlab's models.

Every zoo model is summarised at its own input size on the ``meta`` device (no memory, the
whole zoo in seconds): multiply-adds and parameters. Accuracy needs trained models, so the
accuracy panel shows the user's runs: every ``run.json`` under a folder, with its test accuracy
(or, before the final test, its best validation accuracy), at the run's own model and input
size.

Example:
    >>> rows = zoo_complexity(["lenet5", "resnet18"])
    >>> [(r["name"], r["parameters"], r["macs"]) for r in rows]
    [('lenet5', 61706, 416520), ('resnet18', 11689512, 1816557056)]
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from cnnlab.analysis.resolve import resolve_model
from cnnlab.analysis.summary import summary
from cnnlab.errors import CnnlabError, DataError
from cnnlab.files import atomic_write_bytes
from cnnlab.models.catalog import default_classes
from cnnlab.models.registry import list_models, model_info
from cnnlab.yamltext import load_yaml


def zoo_complexity(names: list[str] | None = None) -> list[dict]:
    """One row per zoo model (all, or ``names``): name, family, input size, parameters and
    multiply-adds per image at that size, with each paper's class count."""
    infos = [model_info(n) for n in names] if names else list_models()
    rows = []
    for info in infos:
        with torch.device("meta"):
            model = info.builder(num_classes=default_classes(info))
        result = summary(model, info.input_size, name=info.name)
        rows.append({"name": info.name, "family": info.family,
                     "input_size": list(info.input_size), "parameters": result.total_params,
                     "macs": result.total_macs, "units": result.total_units,
                     "depth": result.depth})
    return rows


def _accuracy(run_dir: Path) -> tuple[float, str] | None:
    """(accuracy, "test" or "val") from ``run.json``; None if it holds neither."""
    try:
        index = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise DataError(f"{run_dir / 'run.json'}: not a cnnlab run index (bad JSON)") from None
    test = (index.get("test") or {}).get("acc")
    if isinstance(test, (int, float)):
        return float(test), "test"
    best = index.get("best") or {}
    value = best.get("val_acc", best.get("value") if best.get("metric") == "val_acc" else None)
    return (float(value), "val") if isinstance(value, (int, float)) else None


def run_points(runs_dir: str | Path) -> list[dict]:
    """Every run under ``runs_dir`` with an accuracy: run, model, data, accuracy, split, and
    the multiply-adds and parameters of its own model at its own input size."""
    folder = Path(runs_dir)
    if not folder.is_dir():
        return []
    points = []
    for index in sorted(folder.rglob("run.json")):
        run_dir = index.parent
        found = _accuracy(run_dir)
        config_path = run_dir / "config.yaml"
        if found is None or not config_path.is_file():
            continue
        try:
            config = load_yaml(config_path.read_text(errors="replace"), str(config_path))
            model, size = resolve_model(str(run_dir), None)
        except CnnlabError:  # no complete checkpoint (yet), or a broken config: not placed
            continue
        config = config if isinstance(config, dict) else {}
        result = summary(model, size)
        points.append({"run": str(run_dir), "model": str(config.get("model")),
                       "data": str(config.get("data")), "accuracy": found[0],
                       "split": found[1], "parameters": result.total_params,
                       "macs": result.total_macs})
    return points


def complexity_figure(rows: list[dict], points: list[dict]):
    """Left: parameters against multiply-adds (log-log), bubble area ~ parameters, one colour
    per family. Right (when there are runs): accuracy against multiply-adds, as Canziani et al.
    draw it."""
    from matplotlib.figure import Figure  # lazily: plotting is optional for the rest

    panels = 2 if points else 1
    fig = Figure(figsize=(7 * panels, 6), layout="constrained")
    ax = fig.add_subplot(1, panels, 1)
    families = sorted({r["family"] for r in rows})
    colours = {f: f"C{i % 10}" for i, f in enumerate(families)}
    biggest = max(r["parameters"] for r in rows)
    for family in families:
        mine = [r for r in rows if r["family"] == family]
        ax.scatter([r["macs"] for r in mine], [r["parameters"] for r in mine],
                   s=[20 + 800 * r["parameters"] / biggest for r in mine], alpha=0.5,
                   color=colours[family], label=family)
    for r in rows:
        ax.annotate(r["name"], (r["macs"], r["parameters"]), fontsize=6, ha="center")
    ax.set(xscale="log", yscale="log", xlabel="multiply-adds per image (at its input size)",
           ylabel="parameters", title="cnnlab's zoo (bubble area ~ parameters)")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    if points:
        right = fig.add_subplot(1, 2, 2)
        most = max(p["parameters"] for p in points)
        right.scatter([p["macs"] for p in points], [100 * p["accuracy"] for p in points],
                      s=[20 + 800 * p["parameters"] / most for p in points], alpha=0.5)
        for p in points:
            right.annotate(f"{p['model']} ({Path(p['data']).name}, {p['split']})",
                           (p["macs"], 100 * p["accuracy"]), fontsize=6, ha="center")
        right.set(xscale="log", xlabel="multiply-adds per image", ylabel="accuracy (%)",
                  title="your runs (Canziani et al. 2017; bubble area ~ parameters)")
        right.grid(alpha=0.3)
    return fig


def plot_zoo(path: str | Path, runs_dir: str | Path = "runs",
             names: list[str] | None = None) -> tuple[Path, list[dict], list[dict]]:
    """Draw :func:`complexity_figure` into the PNG ``path``; returns (path, rows, points)."""
    rows, points = zoo_complexity(names), run_points(runs_dir)
    buffer = io.BytesIO()
    complexity_figure(rows, points).savefig(buffer, format="png", dpi=120)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buffer.getvalue())
    return out, rows, points
