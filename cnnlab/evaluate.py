"""Test-set evaluation of one run or an ensemble of runs (model averaging, lecture 000).

Reports top-1/top-k accuracy and error, per-class accuracy, the confusion matrix, and every
misclassified image as ``true->pred`` with the model's two best guesses — the lecture's "82 errors
made by LeNet5" and "top 2 guesses" slides. Several runs average their class probabilities and
the ensemble's error is reported next to each member's.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import Preprocess, to_batch_source
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.runs.outputs import write_text_output
from cnnlab.train.checkpoint import load_model
from cnnlab.train.loop import predict_logits


@dataclass
class Scores:
    """Metrics of one set of class probabilities against the labels."""

    name: str
    top1: float
    topk: float
    k: int
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows = true class, columns = predicted class
    errors: list[dict] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return 1.0 - self.top1


def score(name: str, probs: torch.Tensor, labels: torch.Tensor, classes: list[str], *,
          k: int = 5, paths: list[str] | None = None) -> Scores:
    """Accuracy, top-k, per-class accuracy, confusion matrix and the error list."""
    n_classes = len(classes)
    k = min(k, n_classes)
    top = probs.topk(k, dim=1)
    pred = top.indices[:, 0]
    confusion = torch.bincount(labels * n_classes + pred, minlength=n_classes ** 2)
    confusion = confusion.view(n_classes, n_classes)
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1).float()
    errors = []
    for i in (pred != labels).nonzero().flatten().tolist():
        guesses = [(classes[j], round(float(probs[i, j]), 4)) for j in top.indices[i, :2].tolist()]
        errors.append({"index": i, "true": classes[int(labels[i])], "pred": classes[int(pred[i])],
                       "top2": guesses, "path": paths[i] if paths else None})
    return Scores(name, float((pred == labels).float().mean()),
                  float((top.indices == labels[:, None]).any(1).float().mean()), k,
                  {c: float(a) for c, a in zip(classes, per_class, strict=False)}, confusion.tolist(), errors)


@dataclass
class Report:
    """Scores of each member and, for several runs, of their average."""

    members: list[Scores]
    ensemble: Scores | None
    data: str
    split: str
    count: int

    @property
    def main(self) -> Scores:
        return self.ensemble or self.members[0]


def run_probabilities(run: str | Path, data: ImageSet, *, which: str = "best",
                      device: str = "cpu", batch_size: int = 500,
                      tta: str | None = None) -> tuple[torch.Tensor, dict]:
    """Softmax probabilities ``(N, classes)`` of a run's model on ``data``.

    ``tta``: test-time augmentation views (``"flip,translate"``, ``"none"``); None = the run's
    own ``tta`` setting, so the training's reported test accuracy is reproduced.
    """
    model, meta = load_model(run, which=which, device=device)
    if list(meta["classes"]) != list(data.classes):
        raise CheckpointError(f"{run}: trained on classes {meta['classes'][:5]}..., the data has "
                              f"{data.classes[:5]}...: wrong data set for this model?")
    preprocess = Preprocess.from_dict(meta["preprocess"])
    source = to_batch_source(data, preprocess, batch_size=batch_size, device=torch.device(device))
    precision = meta.get("config", {}).get("precision", "fp32")
    tta = meta.get("config", {}).get("tta", "") if tta is None else tta
    return predict_logits(model, source, precision=precision, tta=tta).softmax(1), meta


def evaluate_runs(runs: list[str | Path], *, data: str | None = None, split: str = "test",
                  data_root: str | None = None, k: int = 5, which: str = "best",
                  device: str = "cpu", tta: str | None = None) -> Report:
    """Evaluate one or more runs on a split; several runs are also averaged.

    ``data`` defaults to the data set the (first) run was trained on; ``tta`` to each run's
    own test-time augmentation (see :func:`run_probabilities`).

    Example:
        >>> report = evaluate_runs(["runs/a", "runs/b"])  # doctest: +SKIP
        >>> report.ensemble.error_rate  # doctest: +SKIP
    """
    from cnnlab.data.datasets import load_dataset

    if not runs:
        raise ConfigError("give at least one run directory or checkpoint")
    first_config = _run_config(runs[0])
    name = data or first_config.get("data")
    root = data_root or first_config.get("data_root")
    dataset = load_dataset(name, split, root=root)
    members, all_probs = [], []
    for run in runs:
        probs, _ = run_probabilities(run, dataset, which=which, device=device, tta=tta)
        all_probs.append(probs)
        members.append(score(str(run), probs, dataset.labels, dataset.classes, k=k,
                             paths=dataset.paths))
    ensemble = None
    if len(runs) > 1:
        mean = torch.stack(all_probs).mean(0)
        ensemble = score("ensemble", mean, dataset.labels, dataset.classes, k=k,
                         paths=dataset.paths)
    return Report(members, ensemble, name, split, len(dataset))


def _run_config(run: str | Path) -> dict:
    from cnnlab.train.checkpoint import read_checkpoint, resolve_checkpoint

    _, meta = read_checkpoint(resolve_checkpoint(run))
    return meta.get("config", {})


def write_report(report: Report, out_dir: Path) -> list[Path]:
    """metrics.json, confusion.csv and errors.csv of the main scores into ``out_dir``."""
    main = report.main
    classes = list(main.per_class)
    metrics = {"data": report.data, "split": report.split, "count": report.count,
               "members": [_summary(s) for s in report.members],
               "ensemble": _summary(report.ensemble) if report.ensemble else None}
    confusion = [["true\\pred", *classes]]
    confusion += [[name, *row] for name, row in zip(classes, main.confusion, strict=False)]
    errors = [["index", "true", "pred", "guess1", "p1", "guess2", "p2", "path"]]
    for e in main.errors:
        (g1, p1), (g2, p2) = (e["top2"] + [("", 0.0)])[:2]
        errors.append([e["index"], e["true"], e["pred"], g1, p1, g2, p2, e["path"] or ""])
    return [write_text_output(out_dir / "metrics.json", json.dumps(metrics, indent=2)),
            write_text_output(out_dir / "confusion.csv", csv_text(confusion)),
            write_text_output(out_dir / "errors.csv", csv_text(errors))]


def csv_text(rows: list[list]) -> str:
    """``rows`` as CSV text (the first row is the header)."""
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return text.getvalue()


def _summary(s: Scores) -> dict:
    return {"name": s.name, "top1": s.top1, "error": s.error_rate, f"top{s.k}": s.topk,
            "errors": len(s.errors), "per_class": s.per_class}


def format_errors(errors: list[dict], per_line: int = 10) -> str:
    """The slide's grid of ``true->pred`` pairs, ten per line."""
    cells = [f"{e['true']}->{e['pred']}" for e in errors]
    width = max((len(c) for c in cells), default=0) + 2
    return "\n".join("".join(c.ljust(width) for c in cells[i:i + per_line]).rstrip()
                     for i in range(0, len(cells), per_line))
