"""Layer-by-layer summary: shapes, parameters, multiply-adds, memory, receptive fields, and
warnings for hyper-parameters that do not fit (lectures 003/004: (W - F + 2P)/S + 1).

MODEL is a zoo name (cnnlab models), a spec string, a run directory, or one of the lectures'
example networks: lecture:fc256, lecture:conv256, lecture:conv256x2, lecture:inception-naive,
lecture:inception-reduced.

examples:
  cnnlab summary lenet5
  cnnlab summary c3x1s3 --input 1x7x7          # warns: 3x3 filter, stride 3 does not fit 7x7
  cnnlab summary runs/lenet5-digits --json
  cnnlab summary --compare lecture:inception-naive lecture:inception-reduced
  cnnlab summary --compare lecture:fc256 lecture:conv256
"""

from __future__ import annotations

import argparse
import json

from cnnlab.analysis.resolve import parse_input_size, resolve_model
from cnnlab.analysis.summary import compare, summary
from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="zoo name, spec string, run directory or "
                        "lecture:NAME")
    parser.add_argument("--input", help="input size CxHxW (default: the model's own)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="summarise two models side by side")
    parser.add_argument("--num-classes", type=int, default=10, help="output classes (default 10)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    size = parse_input_size(args.input) if args.input else None
    if args.compare:
        (a, size_a), (b, _) = (resolve_model(n, size, args.num_classes) for n in args.compare)
        result = compare(a, b, size_a, names=tuple(args.compare))
        failed = result.a.error or result.b.error
    elif args.model:
        model, size = resolve_model(args.model, size, args.num_classes)
        result = summary(model, size, name=args.model)
        failed = result.error
    else:
        raise ConfigError("give a MODEL, or --compare A B (see cnnlab summary --help)")
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.render())
    return 2 if failed else 0
