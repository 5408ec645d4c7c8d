"""Remove layers, retrain with the run's own recipe, and report the accuracy change and the
parameters removed, like lecture 001's AlexNet slides ("Removing layer 7: 1.1% drop in
performance, 16 million less parameters").

examples:
  cnnlab ablate runs/alexnet-cifar10 --remove 7 --remove 6,7 --remove 3,4 --remove 3,4,6,7
  cnnlab ablate runs/spec-digits --remove conv2 --epochs 5     # or its module path features.2
Layers are named as elsewhere (conv2 = the second convolution, or a module path); AlexNet also
takes the slide's numbers (1-7). Other models than AlexNet replace the named module by an
identity, which needs its output shape to equal its input's. The change is in percentage points.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli.flags import add_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory of the full model")
    parser.add_argument("--remove", action="append", required=True, metavar="L[,L...]",
                        help="layers to remove together; repeat for several ablations")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    add_output(parser, help="parent directory of the retrained runs (default: recipe's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.ablate import ablate, format_table

    out = Path(args.run) / "ablation"
    rows = ablate(args.run, args.remove, epochs=args.epochs, out=args.out, csv_dir=out,
                  progress=False if args.no_progress else None)
    print(format_table(rows))
    print(f"wrote {out / 'ablation.csv'}")
    return 0
