"""Gradient norms per layer at initialisation and over the first SGD steps (lecture 002,
vanishing/exploding gradients; why ResNet trains deep nets).

examples:
  cnnlab gradients plain20 resnet20 --steps 5            # zoo models, per-layer profile
  cnnlab gradients lenet5 --data mnist
  cnnlab gradients --sweep --depths 1,2,4,8,16,32        # sigmoid/ReLU x plain/residual MLPs
  cnnlab gradients --sweep --init he                     # He init keeps ReLU nets alive
Writes gradients.csv/.png (or gradient-depths.csv/.png) into --out (default: gradients).
"""

from __future__ import annotations

import argparse

from cnnlab.cli.flags import add_data, add_output, data_request
from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser, default="digits", data_help="data set (default digits)")
    parser.add_argument("models", nargs="*", metavar="MODEL", help="zoo names or spec strings")
    parser.add_argument("--sweep", action="store_true",
                        help="fully connected nets of growing depth instead of MODELs")
    parser.add_argument("--depths", default="1,2,4,8,16,32", help="hidden layers (--sweep)")
    parser.add_argument("--init", default="default", help="default or he (--sweep)")
    parser.add_argument("--steps", type=int, default=5, help="SGD steps after init (default 5)")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
    parser.add_argument("--per-layer", action="store_true",
                        help="--sweep: also print every layer's norm (always in the CSV)")
    add_output(parser, default="gradients", help="output directory")


def parse_depths(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; ConfigError for anything but positive integers."""
    try:
        depths = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise ConfigError(f"--depths: expected comma-separated hidden-layer counts like "
                          f"1,2,4,8, got {text!r}") from None
    if not depths or min(depths) < 1:
        raise ConfigError(f"--depths: expected positive hidden-layer counts, got {text!r}")
    return depths


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.gradients import profile_report, sweep_report

    if args.sweep:
        rows = sweep_report(parse_depths(args.depths), args.out, init=args.init)
        print(f"{'kind':<9} {'act':<8} {'depth':>5} {'first layer':>12} {'last layer':>11}")
        for r in rows:
            print(f"{r['kind']:<9} {r['activation']:<8} {r['depth']:>5} {r['first']:>12.3e} "
                  f"{r['last']:>11.3e}")
        if args.per_layer:
            for r in rows:
                norms = " ".join(f"{v:.2e}" for v in r["layer_norms"].values())
                print(f"{r['kind']} {r['activation']} depth {r['depth']}: {norms}")
        print(f"wrote {args.out}/gradient-depths.csv, gradient-depths-layers.csv (every layer) "
              f"and gradient-depths.png")
        return 0
    if args.steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {args.steps}")
    if not args.models:
        raise ConfigError("give one or more MODELs (e.g. plain20 resnet20) or --sweep")
    profiles = profile_report(args.models, args.out, data=data_request(args), steps=args.steps,
                              lr=args.lr)
    for name, rows in profiles.items():
        first = [r for r in rows if r["step"] == 0]
        last = [r for r in rows if r["step"] == args.steps]
        print(f"{name}: {len(first)} layers; ||dC/dW|| first layer {first[0]['grad_norm']:.3e}, "
              f"last layer {first[-1]['grad_norm']:.3e} at init; after {args.steps} steps "
              f"{last[0]['grad_norm']:.3e} / {last[-1]['grad_norm']:.3e}")
    print(f"wrote {args.out}/gradients.csv and .png")
    return 0
