"""Layer-by-layer summary: shapes, parameters, multiply-adds, memory, receptive fields, and
warnings for hyper-parameters that do not fit (lectures 003/004: (W - F + 2P)/S + 1).

MODEL is a zoo name (cnnlab models), a spec string, a run directory, or one of the lectures'
example networks: lecture:fc256, lecture:conv256, lecture:conv256x2, lecture:inception-naive,
lecture:inception-reduced.

examples:
  cnnlab summary lenet5
  cnnlab summary lenet5 --option partial_c3=true   # C3's connection table: 151,600 connections
  cnnlab summary lenet1989                         # 1,256 units, 9,760 parameters, 64,660 conn.
  cnnlab summary c3x1s3 --input 1x7x7          # warns: 3x3 filter, stride 3 does not fit 7x7
  cnnlab summary runs/lenet5-digits --json
  cnnlab summary --compare lecture:inception-naive lecture:inception-reduced
  cnnlab summary --compare lecture:fc256 lecture:conv256
"""

from __future__ import annotations

import argparse
import json

from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="zoo name, spec string, run directory or "
                        "lecture:NAME")
    parser.add_argument("--input", help="input size CxHxW (default: the model's own)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="summarise two models side by side")
    parser.add_argument("--input-b", help="--compare: input size CxHxW of B (default: A's)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="model option, repeatable (e.g. --option partial_c3=true)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="output classes (default: the model's own, e.g. 1000 for resnet18)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.resolve import parse_input_size, resolve_model
    from cnnlab.analysis.summary import compare, summary
    from cnnlab.cli.flags import parse_options

    size = parse_input_size(args.input) if args.input else None
    options = parse_options(args.option)
    if args.compare:
        a, size_a = resolve_model(args.compare[0], size, args.num_classes, options)
        size_b = parse_input_size(args.input_b) if args.input_b else size_a
        b, _ = resolve_model(args.compare[1], size_b, args.num_classes, options)
        result = compare(a, b, size_a, names=tuple(args.compare), input_size_b=size_b)
        failed = result.a.error or result.b.error
    elif args.model:
        model, size = resolve_model(args.model, size, args.num_classes, options)
        result = summary(model, size, name=args.model)
        failed = result.error
    else:
        raise ConfigError("give a MODEL, or --compare A B (see cnnlab summary --help)")
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.render())
    return 2 if failed else 0
