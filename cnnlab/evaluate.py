"""Test-set evaluation of one run or an ensemble of runs (model averaging, lecture 000).

Reports top-1/top-k accuracy and error, per-class accuracy, the confusion matrix, and every
misclassified image as ``true->pred`` with the model's two best guesses — the lecture's "82 errors
made by LeNet5" and "top 2 guesses" slides. Several runs average their class probabilities and
the ensemble's error is reported next to each member's.
"""

from __future__ import annotations

import dataclasses
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import fit_to_size
from cnnlab.data.request import DataRequest
from cnnlab.errors import ConfigError
from cnnlab.runs.outputs import csv_text, write_text_output
from cnnlab.runs.reader import OpenRun, mixed_data, open_run
from cnnlab.tasks import THRESHOLD, label_set
from cnnlab.train.loop import evaluate, predict_logits


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

    def _repr_html_(self) -> str:
        """Jupyter: accuracy, top-k, errors and the accuracy of each class."""
        head = (f"<p><b>{html.escape(self.name)}</b>: accuracy {100 * self.top1:.2f}%, "
                f"top-{self.k} {100 * self.topk:.2f}%, {len(self.errors)} errors</p>")
        rows = "".join(f"<tr><td>{html.escape(c)}</td><td style='text-align:right'>"
                       f"{100 * a:.1f}%</td></tr>" for c, a in self.per_class.items())
        return f"{head}<table><tr><th>class</th><th>accuracy</th></tr>{rows}</table>"


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
    notes: list[str] = field(default_factory=list)  # e.g. members trained on other data

    @property
    def main(self) -> Scores:
        return self.ensemble or self.members[0]

    def _repr_html_(self) -> str:
        """Jupyter: the main scores (the ensemble's, for several runs) and each member's."""
        members = "".join(f"<li>{html.escape(s.name)}: {100 * s.top1:.2f}%</li>"
                          for s in self.members) if self.ensemble else ""
        return (f"<p>{html.escape(self.data)} {html.escape(self.split)}, {self.count} images"
                f"</p>{self.main._repr_html_()}" + (f"<ul>{members}</ul>" if members else ""))


def run_probabilities(run: OpenRun, data: ImageSet, *, batch_size: int = 500,
                      tta: str | None = None) -> torch.Tensor:
    """Softmax probabilities ``(N, classes)`` of an opened run's model on ``data``.

    ``tta``: test-time augmentation views (``"flip,translate"``, ``"none"``); None = the run's
    own ``tta`` setting, so the training's reported test accuracy is reproduced.
    """
    run.check_classes(data)
    source = run.source(data, batch_size=batch_size)
    precision = run.config.get("precision", "fp32")
    tta = run.config.get("tta", "") if tta is None else tta
    return predict_logits(run.model, source, precision=precision, tta=tta,
                          progress=f"evaluate {run.path.name}").softmax(1)


def evaluate_runs(runs: list[str | Path | OpenRun], *, data: str | None = None, split: str = "test",
                  data_root: str | None = None, k: int = 5, which: str = "best",
                  device: str = "cpu", tta: str | None = None) -> Report:
    """Evaluate one or more runs on a split; several runs are also averaged.

    ``data`` defaults to the data set the (first) run was trained on; ``tta`` to each run's
    own test-time augmentation (see :func:`run_probabilities`).

    Example:
        >>> report = evaluate_runs(["runs/a", "runs/b"])  # doctest: +SKIP
        >>> report.ensemble.error_rate  # doctest: +SKIP
    """
    if not runs:
        raise ConfigError("give at least one run directory or checkpoint")
    if k < 1:
        raise ConfigError(f"--top-k {k}: expected 1 or more")
    opened = [open_run(run, checkpoint=which, device=device) for run in runs]
    dataset = opened[0].load_split(split, data=data, root=data_root)
    members, all_probs = [], []
    for run in opened:
        probs = run_probabilities(run, dataset, tta=tta)
        all_probs.append(probs)
        members.append(score(str(run.path), probs, dataset.labels, dataset.classes, k=k,
                             paths=dataset.paths))
    ensemble, notes = None, ensemble_notes(opened)
    if len(runs) > 1:
        mean = torch.stack(all_probs).mean(0)
        ensemble = score("ensemble", mean, dataset.labels, dataset.classes, k=k,
                         paths=dataset.paths)
    return Report(members, ensemble, DataRequest.of(data).name or opened[0].data_name, split,
                  len(dataset), notes)


def ensemble_notes(opened: list[OpenRun]) -> list[str]:
    """A warning when the members of an ensemble were trained on different data sets."""
    listed = mixed_data({str(run.path): run.data_name for run in opened})
    if listed is None:
        return []
    return [f"the runs were trained on different data sets ({listed}): their average is "
            f"scored on {opened[0].data_name}'s split unless --data says otherwise"]


def evaluate_dense_run(run: str | Path | OpenRun, *, data: str | None = None, split: str = "test",
                       data_root: str | None = None, which: str = "best", device: str = "cpu",
                       out: str | Path | None = None, examples: int = 8,
                       threshold: float = THRESHOLD) -> dict:
    """``cnnlab evaluate`` for a run whose task scores sets of labels or pixels (multilabel,
    segment): metrics with class names, a few predicted vs true label sets, and for masks a
    PNG of image / truth / prediction; metrics.json into ``out`` (default ``RUN/eval-SPLIT``).

    ``threshold``: multilabel decision threshold on the sigmoids (F1, exact sets, label sets).
    Scenes of another size than the trained one are resized to it for image-level outputs
    (like ``predict``); models with mask outputs are fully convolutional and take any size.

    Example:
        >>> report = evaluate_dense_run("runs/fcn")  # doctest: +SKIP
        >>> report["miou"]  # doctest: +SKIP
    """
    opened = open_run(run, checkpoint=which, device=device, threshold=threshold)
    task = opened.task
    dataset = opened.load_split(split, data=data, root=data_root)
    opened.check_classes(dataset)
    if task.output_kind != "mask" and dataset.image_shape[1:] != tuple(opened.preprocess.size):
        dataset = dataclasses.replace(dataset, images=fit_to_size(
            dataset.images, opened.preprocess.size, "resize"))  # the trained input size
    source = opened.source(dataset, batch_size=64)
    source.labels = task.targets(dataset).to(opened.device)
    report = {"run": str(opened.path), "task": task.name,
              "data": DataRequest.of(data).name or opened.data_name,
              "split": split, "count": len(dataset), "classes": dataset.classes,
              "metric_labels": task.metric_labels, "main_metric": task.main_metric,
              **({"threshold": threshold} if task.output_kind == "labels" else {}),
              **evaluate(opened.model, source, precision="fp32", task=task)}
    folder = Path(out) if out else opened.run_dir / f"eval-{split}"
    x, _ = next(source.batches())
    with torch.no_grad():
        logits = opened.model(x[:examples]).float().cpu()
    DENSE_EXAMPLES[task.output_kind](report, dataset, logits, folder, threshold)
    report["metrics_file"] = str(write_text_output(folder / "metrics.json",
                                                   json.dumps(report, indent=2)))
    return report


def _mask_examples(report: dict, dataset: ImageSet, logits: torch.Tensor, folder: Path,
                   threshold: float) -> None:
    from cnnlab.viz.segmentation import segmentation_panel

    count = logits.shape[0]
    report["panel"] = str(segmentation_panel(dataset.images[:count], dataset.masks[:count],
                                             logits.argmax(1), folder / "masks.png",
                                             classes=dataset.classes))


def _label_examples(report: dict, dataset: ImageSet, logits: torch.Tensor, folder: Path,
                    threshold: float) -> None:
    report["examples"] = [{"true": label_set(t, dataset.classes),
                           "pred": label_set(p.sigmoid() >= threshold, dataset.classes)}
                          for t, p in zip(dataset.present, logits, strict=False)]


DENSE_EXAMPLES = {"mask": _mask_examples, "labels": _label_examples}  # by task.output_kind


def format_dense_report(report: dict) -> str:
    """The text ``cnnlab evaluate`` prints for a multilabel or segment run."""
    lines = [f"{report['data']} {report['split']}: {report['count']} scenes ({report['task']})"]
    labels = report["metric_labels"]
    if "per_class_iou" in report:
        names = ["background", *report["classes"]]
        lines.append(f"{labels['acc']} {100 * report['acc']:.2f}%  mean IoU {report['miou']:.4f}")
        lines += [f"  IoU {n:<12} {'-' if v is None else f'{v:.4f}'}"
                  for n, v in zip(names, report["per_class_iou"], strict=True)]
    else:
        lines.append(f"mAP {report['map']:.4f}  F1 {report['f1']:.4f}  exact label set "
                     f"{100 * report['acc']:.2f}%  (threshold {report['threshold']:g})")
        lines += [f"  AP {n:<12} {'-' if v is None else f'{v:.4f}'}"
                  for n, v in zip(report["classes"], report["per_class_ap"], strict=True)]
    lines += [f"  scene {i}: true {{{', '.join(e['true'])}}}  predicted "
              f"{{{', '.join(e['pred'])}}}" for i, e in enumerate(report.get("examples", []))]
    if "panel" in report:
        lines.append(f"wrote {report['panel']}")
    lines.append(f"wrote {report['metrics_file']}")
    return "\n".join(lines)


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


def _summary(s: Scores) -> dict:
    return {"name": s.name, "top1": s.top1, "error": s.error_rate, f"top{s.k}": s.topk,
            "errors": len(s.errors), "per_class": s.per_class}


def format_per_class(per_class: dict[str, float], per_line: int = 5) -> str:
    """Per-class accuracy, ``per_line`` classes to a line: ``0 99.4%   1 97.8% ...``."""
    cells = [f"{name} {100 * value:5.1f}%" for name, value in per_class.items()]
    width = max((len(c) for c in cells), default=0) + 3
    return "\n".join("  " + "".join(c.ljust(width) for c in cells[i:i + per_line]).rstrip()
                     for i in range(0, len(cells), per_line))


def format_errors(errors: list[dict], per_line: int = 10) -> str:
    """The slide's grid of ``true->pred`` pairs, ten per line."""
    cells = [f"{e['true']}->{e['pred']}" for e in errors]
    width = max((len(c) for c in cells), default=0) + 2
    return "\n".join("".join(c.ljust(width) for c in cells[i:i + per_line]).rstrip()
                     for i in range(0, len(cells), per_line))
