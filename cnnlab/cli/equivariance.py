"""Shift equivariance per layer: does shifting the input by k pixels shift each conv/pool
layer's output by k/stride? Exact with circular padding; with zero padding only in the interior
(lecture 003, "G-equivariance f(rho(g) x) = rho(g) f(x)").

examples:
  cnnlab equivariance lenet5 --shift 4
  cnnlab equivariance resnet20 --shift 4 --circular        # errors 0 on the whole map
  cnnlab equivariance runs/lenet5-mnist --shift 2
  cnnlab equivariance fcn --shift 8 --size 64              # a dense-prediction model: row 'output'
Relative errors ||f(shift x) - shift f(x)|| / ||f(x) - mean f(x)||; '-' where k/stride is not
an integer or the interior (receptive field clear of border and seam) is empty; strides are
fractions after upsampling (1/2 = twice the input resolution).
"""

from __future__ import annotations

import argparse
import math

from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL|RUN", help="zoo name, spec string or run directory")
    parser.add_argument("--shift", type=int, default=4, help="input shift in pixels (default 4)")
    parser.add_argument("--circular", action="store_true",
                        help="switch every convolution to circular padding first")
    parser.add_argument("--size", type=int, help="input side (default: the model's own)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--margin", type=int,
                        help="interior = map minus this many pixels per side (default: where "
                             "the measured receptive field avoids the border and the seam)")


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2e}"


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.invariance import equivariance_of

    if args.size is not None and args.size < 1:
        raise ConfigError(f"--size must be a positive number of pixels, got {args.size}")
    if args.margin is not None and args.margin < 0:
        raise ConfigError(f"--margin must be >= 0, got {args.margin}")
    rows = equivariance_of(args.model, shift=args.shift, circular=args.circular, size=args.size,
                           seed=args.seed, margin=args.margin)
    print(f"{'layer':<28} {'output':<14} {'stride':>6} {'shift':>6} {'error':>9} {'interior':>9}")
    for r in rows:
        print(f"{r['layer']:<28} {r['shape']:<14} {str(r['stride']):>6} {r['output_shift']:>6.2f} "
              f"{_fmt(r['error_full']):>9} {_fmt(r['error_interior']):>9}")
    return 0
