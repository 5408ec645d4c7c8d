"""Write one self-contained HTML page for a run, read like a lab notebook: a headline box
(test metric, errors, time, hardware), the settings that differ from the defaults, the model as a
diagram, training data and augmentation, per-step curves, per-class accuracy, confusion (counts
and normalised), errors, top losses, filters, feature maps, top patches, saliency / Grad-CAM and
feature evolution (what the run's task shows). All images are embedded, so the file opens from
disk in any browser with no network access.

examples:
  cnnlab report runs/lenet5-mnist                   # writes runs/lenet5-mnist/report.html
  cnnlab report runs/lenet5-mnist --out ~/notebook/lenet5.html
  cnnlab report runs/lenet5-scenes --threshold 0.3  # a multilabel run's decision threshold
"""

from __future__ import annotations

import argparse

from cnnlab.cli.flags import add_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (or checkpoint file)")
    add_output(parser, metavar="FILE", help="HTML file (default RUN/report.html)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--limit", default="5000", metavar="N",
                        help="test images searched for top patches (default 5000)")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="multilabel runs: a class is present where its sigmoid >= P "
                             "(default 0.5)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.visualize import whole_number
    from cnnlab.viz.report import run_report

    path = run_report(args.run, out=args.out, which=args.checkpoint, device=args.device,
                      limit=whole_number(args.limit, "--limit"), threshold=args.threshold)
    print(f"wrote {path}")
    return 0
