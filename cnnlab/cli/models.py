"""List the model zoo: name, classes and parameters of the paper's head, input size, its
spatial dimensions (1-D sequences, 2-D images, 3-D clips and volumes), paper.

--plot draws lecture 002's "Comparing complexity" chart (Canziani et al. 2017) for the zoo:
multiply-adds against parameters at each model's input size (bubble area ~ parameters), and,
for every trained run under --runs, its accuracy against its multiply-adds.

examples:
  cnnlab models
  cnnlab models --json
  cnnlab models --plot                    # writes models-complexity.png
  cnnlab models --plot zoo.png --runs runs/
  cnnlab models --plot lenets.png --only lenet1989,lenet1,lenet4,lenet5
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="count parameters with this many output classes "
                             "(default: each paper's, e.g. 1000 for ImageNet models)")
    parser.add_argument("--plot", nargs="?", const="models-complexity.png", metavar="PNG",
                        help="draw the complexity chart into PNG (default "
                             "models-complexity.png)")
    parser.add_argument("--runs", default="runs",
                        help="--plot: folder searched for trained runs' run.json (default runs/)")
    parser.add_argument("--only", metavar="NAMES",
                        help="--plot: only these zoo models, comma-separated (default: all)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.models.catalog import model_table

    if args.plot:
        from cnnlab.analysis.complexity import plot_zoo

        names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
        path, rows, points = plot_zoo(args.plot, args.runs, names)
        runs = f"{len(points)} run{'' if len(points) == 1 else 's'}"
        print(f"wrote {path}: {len(rows)} models, {runs} with an accuracy (from {args.runs})")
        return 0
    rows = model_table(num_classes=args.num_classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<14} {'family':<12} {'classes':>7} {'parameters':>13}  {'input':<11} "
          f"{'dims':<4} paper")
    for row in rows:
        size = "x".join(str(v) for v in row["input_size"])
        dims = f"{row.get('dims', len(row['input_size']) - 1)}-D"
        print(f"{row['name']:<14} {row['family']:<12} {row['classes']:>7} {row['parameters']:>13,}  "
              f"{size:<11} {dims:<4} {row['paper']}")
    return 0
