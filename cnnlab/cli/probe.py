"""Linear probes per layer: a linear SVM and/or softmax regression on each layer's pooled
features, reported like lecture 001's Table 6 ("higher layers generally produce more
discriminative features").

examples:
  cnnlab probe runs/lenet5-mnist
  cnnlab probe runs/lenet5-mnist --classifier svm --per-class 30 --repeats 5
  cnnlab probe runs/lenet5-mnist --data fashion-mnist --layers features.0,features.3
Writes probe.csv and probe.png into --out (default RUN/probe).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.choices import PROBE_CLASSIFIERS
from cnnlab.cli.flags import add_data, add_output, data_request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser)

    parser.add_argument("run", metavar="RUN", help="run directory or checkpoint")
    parser.add_argument("--layers", default="all", help="comma-separated layer names or 'all'")
    parser.add_argument("--classifier", default="both",
                        help=f"{', '.join(PROBE_CLASSIFIERS)} or both (default both)")
    parser.add_argument("--pool", type=int, default=2, help="pool each map to PxP (default 2)")
    parser.add_argument("--per-class", type=int, help="training images per class (default all)")
    parser.add_argument("--repeats", type=int, default=1, help="random draws for mean +- std")
    parser.add_argument("--limit", type=int, default=5000, help="images per split (default 5000)")
    add_output(parser, help="output directory (default RUN/probe)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.probe import depth_verdicts, format_table, probe_run

    kinds = tuple(PROBE_CLASSIFIERS) if args.classifier == "both" else (args.classifier,)
    out = Path(args.out) if args.out else Path(args.run) / "probe"
    rows = probe_run(args.run, layers=args.layers, data=data_request(args), classifiers=kinds,
                     pool=args.pool, per_class=args.per_class, repeats=args.repeats,
                     limit=args.limit, out=out)
    print(format_table(rows))
    print("\n".join(depth_verdicts(rows)))
    print(f"wrote {out / 'probe.csv'} and probe.png")
    return 0
