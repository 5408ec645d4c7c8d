"""Train a CNN and an MLP with about the same number of parameters on centred digits, then
test both on digits shifted by k pixels (lecture 003: a fully connected net "must learn shift
invariance from data!").

examples:
  cnnlab shift-test                                   # MNIST, 10,000 training images, 3 epochs
  cnnlab shift-test --data digits --epochs 10 --shifts 0,1,2,3
  cnnlab shift-test --augment "affine:translate=0.15"   # the MLP learns it from data
Writes shift-test.csv and .png into --out (default: shift-test).
"""

from __future__ import annotations

import argparse

from cnnlab.cli.flags import add_data, add_output, data_request
from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser, default="mnist", data_help="data set (default mnist)")
    parser.add_argument("--shifts", default="0,1,2,3,4,6,8", help="test shifts in pixels")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--train-limit", type=int, default=10000, help="training images used")
    parser.add_argument("--test-limit", type=int, default=2000, help="test images used")
    parser.add_argument("--augment", default="", help="training augmentation (default none)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    add_output(parser, default="shift-test", help="output directory")


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.shift import shift_report

    try:
        shifts = [float(s) for s in args.shifts.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--shifts: expected comma-separated pixel shifts like 0,1,2,4, "
                          f"got {args.shifts!r}") from None
    if not shifts:
        raise ConfigError("--shifts: give at least one pixel shift, e.g. 0,2,4")
    for flag, value in (("--epochs", args.epochs), ("--train-limit", args.train_limit),
                        ("--test-limit", args.test_limit)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    rows = shift_report(data_request(args), args.out, shifts=shifts, epochs=args.epochs,
                        train_limit=args.train_limit, test_limit=args.test_limit,
                        augment=args.augment, seed=args.seed)
    print(f"{'shift':>6} " + " ".join(f"{m:>8}" for m in dict.fromkeys(r['model'] for r in rows)))
    for shift in shifts:
        accs = [r["accuracy"] for r in rows if r["shift"] == shift]
        print(f"{shift:>6.1f} " + " ".join(f"{100 * a:>7.2f}%" for a in accs))
    print(f"wrote {args.out}/shift-test.csv and .png")
    return 0
