"""Evaluate runs on a test split: accuracy, top-k, per-class accuracy, confusion matrix and the
misclassified images with the model's top-2 guesses. Several runs are also averaged (ensemble).

examples:
  cnnlab evaluate runs/lenet5-mnist
  cnnlab evaluate runs/a runs/b runs/c          # model averaging: ensemble error vs members
  cnnlab evaluate runs/a --data mnist --split test --out eval/
  cnnlab evaluate runs/airbench94-cifar10 --tta flip,translate   # test-time augmentation
  cnnlab evaluate runs/lenet5-digit-scenes --threshold 0.3   # multilabel: mAP, F1, label sets
  cnnlab evaluate runs/fcn-digit-scenes            # segment: pixel accuracy, IoU, masks.png
  cnnlab evaluate runs/bovw-mnist                  # bag of visual words: its SVM's decisions
  cnnlab evaluate runs/unet-mnist-scenes          # detect: COCO AP, PR curves, hits/misses
Writes metrics.json, confusion.csv and errors.csv into --out (default RUN/eval-SPLIT; for an
ensemble a new eval-ensemble-<time>/ folder here, never inside a member run).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.choices import THRESHOLD
from cnnlab.cli.flags import add_data, add_output, data_request

if TYPE_CHECKING:
    from cnnlab.runs.reader import OpenRun


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser)

    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories or checkpoints")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--top-k", type=int, default=5, help="k of the top-k accuracy")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tta", metavar="VIEWS",
                        help='test-time augmentation: "flip", "translate", "flip,translate" or '
                             '"none" (default: what the run was trained with)')
    add_output(parser, help="directory for metrics.json, confusion.csv, errors.csv")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, metavar="P",
                        help="multilabel run: a class is predicted present where its sigmoid "
                             "is >= P (default %(default)s)")
    parser.add_argument("--show-errors", type=int, default=100, metavar="N",
                        help="print at most N misclassified pairs (default 100)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.runs import open_run

    first = open_run(args.runs[0], checkpoint=args.checkpoint, device=args.device,
                     threshold=args.threshold)
    return REPORTS[first.task.evaluation](args, first)


def report_dense(args: argparse.Namespace, first: OpenRun) -> int:
    """Label sets and pixels (multilabel, segment): mAP or IoU per class, examples, masks."""
    from cnnlab.evaluate import evaluate_dense_run, format_dense_report

    print(format_dense_report(evaluate_dense_run(
        first, data=data_request(args), split=args.split, data_root=args.data_root,
        which=args.checkpoint, device=args.device, out=args.out, threshold=args.threshold)))
    return 0


def report_classes(args: argparse.Namespace, first: OpenRun) -> int:
    """One class per image: top-1/top-k, the error list, confusion; ensembles."""
    from cnnlab.evaluate import evaluate_runs

    report = evaluate_runs([first, *args.runs[1:]], data=data_request(args), split=args.split,
                           data_root=args.data_root,
                           k=args.top_k, which=args.checkpoint, device=args.device,
                           tta=args.tta)
    return print_class_report(args, report)


def report_bovw(args: argparse.Namespace, first: OpenRun) -> int:
    """A bag-of-visual-words run: its classifier's decisions on the split, scored and written
    as a network's (no ensemble: the classifier gives scores, not probabilities)."""
    from cnnlab.bovw.run import evaluate_bovw
    from cnnlab.errors import ConfigError

    if len(args.runs) > 1:
        raise ConfigError(f"{first.path} is a bovw run: evaluate it alone (its SVM scores are "
                          f"not probabilities to average with other runs)")
    return print_class_report(args, evaluate_bovw(first, data=data_request(args),
                                                  split=args.split, data_root=args.data_root,
                                                  k=args.top_k))


def print_class_report(args: argparse.Namespace, report) -> int:
    """The table, the error grid and the files of a one-class-per-image evaluation."""
    from cnnlab.evaluate import format_errors, format_per_class, write_report

    print(f"{report.data} {report.split}: {report.count} images")
    for s in report.members + ([report.ensemble] if report.ensemble else []):
        print(f"{s.name:<40} top-1 {100 * s.top1:6.2f}%  error {100 * s.error_rate:5.2f}%  "
              f"({len(s.errors)} errors)  top-{s.k} {100 * s.topk:6.2f}%")
    for note in report.notes:
        print(f"note: {note}")
    main = report.main
    print(f"\nper-class accuracy ({main.name}):\n{format_per_class(main.per_class)}")
    shown = main.errors[:max(args.show_errors, 0)]
    print(f"\n{len(main.errors)} errors made by {main.name} (true->pred)"
          + (f", showing {len(shown)} of {len(main.errors)} (--show-errors N):"
             if len(shown) < len(main.errors) else ":"))
    print(format_errors(shown))
    top2 = sum(e["true"] in [g for g, _ in e["top2"]] for e in main.errors)
    if main.errors:
        print(f"\nthe right answer is in the top 2 guesses for {top2} of {len(main.errors)} errors")
    for path in write_report(report, output_folder(args)):
        print(f"wrote {path}")
    return 0


def output_folder(args: argparse.Namespace) -> Path:
    """``--out``; else ``RUN/eval-SPLIT`` for one run, and for an ensemble a new
    ``eval-ensemble-<time>/`` here: never inside a member run, whose own results it would
    replace."""
    import time

    if args.out:
        return Path(args.out)
    if len(args.runs) > 1:
        return Path(f"eval-ensemble-{time.strftime('%Y%m%d-%H%M%S')}")
    first = Path(args.runs[0])
    return (first if first.is_dir() else first.parent) / f"eval-{args.split}"


def report_detection(args: argparse.Namespace, first: OpenRun) -> int:
    """Boxes and masks (detect, instance): COCO AP tables, PR curves, hits and misses."""
    from cnnlab.objects.evaluate import evaluate_detection_run, format_detection_report

    print(format_detection_report(evaluate_detection_run(
        first, data=data_request(args), split=args.split, data_root=args.data_root,
        which=args.checkpoint, device=args.device, out=args.out)))
    return 0


REPORTS = {"classes": report_classes, "dense": report_dense,  # by the task's ``evaluation``
           "bovw": report_bovw, "detection": report_detection}
