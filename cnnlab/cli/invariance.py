"""Invariance curves of a trained model: per-layer feature distance, true-class probability and
top-1 agreement against the magnitude of a translation, scaling or rotation (lecture 001, "Is
AlexNet translation/scale/rotation invariant?").

examples:
  cnnlab invariance runs/lenet5-mnist --transform translate --range -8 8 --steps 17
  cnnlab invariance runs/lenet5-mnist --transform rotate --layers features.0,classifier.1
  cnnlab invariance runs/lenet5-mnist --transform scale --range 0.5 1.5 --limit 500
Writes invariance-<transform>.csv and .png into --out (default RUN/invariance).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.choices import TRANSFORMS
from cnnlab.cli.flags import add_data, add_output, data_request
from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser)

    parser.add_argument("run", metavar="RUN", help="run directory or checkpoint")
    parser.add_argument("--transform", default="translate",
                        help=f"one of: {', '.join(f'{k} ({v})' for k, v in TRANSFORMS.items())}")
    parser.add_argument("--range", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        help="magnitudes to sweep (default: +-size/4 px, 0.5-1.5, +-180 deg)")
    parser.add_argument("--steps", type=int, default=9, help="number of magnitudes (default 9)")
    parser.add_argument("--layers", default="all", help="comma-separated layer names or 'all'")
    parser.add_argument("--limit", type=int, default=500, help="test images used (default 500)")
    add_output(parser, help="output directory (default RUN/invariance)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.features import load_run_data
    from cnnlab.analysis.invariance import invariance_report, sweep_values

    if args.limit < 1:
        raise ConfigError(f"--limit must be >= 1 test image, got {args.limit}")
    data = load_run_data(args.run, data=data_request(args), limit=args.limit)
    values = sweep_values(args.transform, args.range, args.steps, data.images.shape[-1])
    out = Path(args.out) if args.out else Path(args.run) / "invariance"
    rows = invariance_report(data, args.transform, values, out, layers=args.layers)
    print(f"{'value':>8} {'P(true)':>8} {'agree':>6} {'acc':>6}  distance per layer")
    for r in rows:
        dists = " ".join(f"{v:.3f}" for k, v in r.items() if k.startswith("dist:"))
        print(f"{r['value']:>8.2f} {r['p_true']:>8.3f} {r['top1_agreement']:>6.3f} "
              f"{r['accuracy']:>6.3f}  {dists}")
    print(f"wrote {out / f'invariance-{args.transform}.csv'} and .png")
    return 0
