"""Compare the training curves of several runs on shared axes: training loss and training /
validation error per epoch, plus a summary table with each run's recorded test accuracy (the
plain vs residual comparison of He et al. 2015, fig. 6; lecture 002 "why ResNet").

examples:
  cnnlab compare runs/plain20 runs/plain56 runs/resnet20 runs/resnet56
  cnnlab compare runs/a runs/b --names baseline,bf16 --out figures/
  cnnlab compare runs/lenet5-mnist runs/bovw-mnist   # a bag-of-words run: its test accuracy
Writes compare.png and compare.csv (one row per run and epoch) into --out (default compare/).
A run with no epochs (cnnlab bovw) has a row with its recorded test accuracy and no curve.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli.flags import add_output
from cnnlab.errors import ConfigError

CSV_KEYS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    parser.add_argument("--names", help="comma-separated labels (default: folder names)")
    add_output(parser, default="compare", help="output folder (default compare/)")


def run_names(runs: list[str], names: str | None) -> list[str]:
    """The label of each run: ``--names`` in order, else the run folder's name."""
    if names is None:
        labels = [Path(r).resolve().name for r in runs]
    else:
        labels = [n.strip() for n in names.split(",")]
        if len(labels) != len(runs):
            raise ConfigError(f"--names gives {len(labels)} labels for {len(runs)} runs")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"two runs share a label ({', '.join(labels)}): use --names")
    return labels


def _cell(value: float | int | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.4f}"


def run(args: argparse.Namespace) -> int:
    from cnnlab.runs.outputs import csv_text, write_text_output
    from cnnlab.viz.curves import compare_figure, compare_rows, figure_image, read_metrics, read_test_metrics
    from cnnlab.viz.grids import save_png

    labels = run_names(args.runs, args.names)
    kinds = {label: run_kind(path) for label, path in zip(labels, args.runs, strict=True)}
    curves = {label: read_metrics(path) if kinds[label] is None else []
              for label, path in zip(labels, args.runs, strict=True)}
    tests = {label: read_test_metrics(path) for label, path in zip(labels, args.runs, strict=True)}
    out = Path(args.out)
    rows = [["run", *CSV_KEYS]]
    rows += [[label, *(record.get(k, "") for k in CSV_KEYS)]
             for label, records in curves.items() for record in records]
    write_text_output(out / "compare.csv", csv_text(rows))
    save_png(figure_image(compare_figure(curves)), out / "compare.png")
    print(f"{'run':16s} {'epochs':>6s} {'train loss':>10s} {'train err':>9s} "
          f"{'best val':>8s} {'test acc':>8s}")
    for row in compare_rows(curves, tests):
        print(f"{row['run']:16s} {row['epochs'] or '-':>6} {_cell(row['train_loss']):>10s} "
              f"{_cell(row['train_err'], True):>9s} {_cell(row['best_val_acc'], True):>8s} "
              f"{_cell(row['test_acc'], True):>8s}")
    for label, kind in kinds.items():
        if kind is not None:
            extra = ", ".join(f"{k} {_cell(v, True)}" for k, v in tests[label].items() if k != "acc")
            print(f"{label}: a {kind} run (no epochs); test {extra or 'accuracy only'}")
    print(f"wrote {out / 'compare.png'} and {out / 'compare.csv'}")
    return 0


def run_kind(path: str) -> str | None:
    """None for a trained network, else what the run is (``bovw``: a bag of visual words)."""
    from cnnlab.runs import open_run

    if not Path(path).is_dir():
        return None  # read_metrics names what is missing
    opened = open_run(path)
    return None if opened.is_network else opened.task.name
