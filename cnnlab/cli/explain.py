r"""The computations the slides do by hand, step by step, on small matrices.

Matrices are JSON-style lists ("[[1,3,1],[0,-1,1]]"; entries may be fractions like 1/16), given
on the command line or in a file (--input-file, --kernel-file, ...); a file lecture:NAME is one
of the lectures' matrices shipped with cnnlab (lecture:x, lecture:step_edge, ...; cnnlab
lectures lists the worked examples). A 3-D input is (channels, rows, cols); a 4-D kernel is
(filters, channels, rows, cols).

examples:
  cnnlab explain conv --input "[[1,3,1],[0,-1,1],[2,2,-1]]" \
      --kernel "[[-2,-2,1],[-2,0,1],[1,1,1]]" --padding 1
  cnnlab explain conv --input-file lecture:x --kernel "[[1,-1,-1],[-1,1,-1],[-1,-1,1]]" \
      --normalize --truncate
  cnnlab explain conv --input-file lecture:step_edge \
      --kernel "[[1,1,1,1],[1,1,1,1],[1,1,1,1],[1,1,1,1]]" --normalize --decimals 0
  cnnlab explain pool --input "[[1,2,6,3],[3,5,2,1],[1,2,2,1],[7,3,4,8]]" --mode max
  cnnlab explain conv --input "[1,3,1,0,-1,2]" --kernel "[1,0,-1]"   # 1-D: Conv1d
  cnnlab explain pool --input "[1,3,1,0,-1,2]" --size 2 --mode max
  cnnlab explain relu --input "[[0.77,-0.11],[-0.33,1]]"
  cnnlab explain fc --input "[1,2,3]" --weights "[[1,0,-1],[2,1,0]]" --bias "[0.5,-1]"
  cnnlab explain transpose-conv --input "[[1,2],[3,4]]" --kernel "[[1,1,1],[1,1,1],[1,1,1]]"
  cnnlab explain unpool --mode max --input "[[1,2],[3,4]]" \
      --pool-input "[[1,2,6,3],[3,5,2,1],[1,2,2,1],[7,3,4,8]]"
  cnnlab explain backward --op maxpool --input "[[1,2,6,3],[3,5,2,1],[1,2,2,1],[7,3,4,8]]" \
      --grad "[[1,2],[3,4]]"
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction

from cnnlab.analysis.explain_cli import OPERATIONS
from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("operation", choices=OPERATIONS, help="what to explain")
    parser.add_argument("--input", help="input matrix")
    parser.add_argument("--input-file", help="file holding the input matrix")
    for name, what in (("kernel", "kernel (conv, transpose-conv, backward --op conv)"),
                       ("weights", "fc weight matrix (outputs x inputs)"),
                       ("bias", "bias: a number, or one per filter/output"),
                       ("grad", "upstream gradient (backward)"),
                       ("pool-input", "what the matching max-pool saw (unpool --mode max)")):
        parser.add_argument(f"--{name}", help=what)
        parser.add_argument(f"--{name}-file", help=f"file holding the {what.split(' (')[0]}")
    parser.add_argument("--stride", type=stride_value, help="stride (conv 1, pool = size, "
                        "transpose-conv 2); a fraction like 0.5 is a transposed convolution")
    parser.add_argument("--padding", type=int, help="zero padding (conv 0, transpose-conv 1)")
    parser.add_argument("--output-padding", type=int, default=None,
                        help="transpose-conv extra output rows/cols (default stride - 1: "
                        "2x2 -> 4x4 at stride 2, none at stride 1)")
    parser.add_argument("--size", type=int, default=2, help="pooling window / unpool scale")
    parser.add_argument("--mode", help="pool: max|avg; unpool: nearest|nails|max")
    parser.add_argument("--op", choices=("conv", "maxpool", "avgpool"), default="conv",
                        help="backward: which layer (default conv)")
    parser.add_argument("--flip", action="store_true", help="true convolution (flipped kernel)")
    parser.add_argument("--normalize", action="store_true",
                        help="divide by the kernel's pixel count (lecture 003's X's and O's)")
    parser.add_argument("--ceil", action="store_true", help="pool: keep partial border windows")
    parser.add_argument("--all-terms", action="store_true", help="show zero products too")
    parser.add_argument("--decimals", type=int, default=2, help="decimal places (default 2)")
    parser.add_argument("--truncate", action="store_true",
                        help="cut digits instead of rounding, as the slides do")
    parser.add_argument("--round", choices=("half-up", "half-even"), default="half-up",
                        help="how ties round (default half-up, as the slides: 80.5 -> 81; "
                        "half-even is Python's: 80.5 -> 80)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _plain_number(text: str | None) -> str | None:
    """``--bias 1`` (a plain number) -> ``"[1]"``, which broadcasts over the filters."""
    try:
        float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text
    return f"[{text}]"


def stride_value(text: str) -> int | Fraction:
    """``--stride``: ``"2" -> 2``; fractions (``"0.5"``, ``"1/2"``) are kept for
    :func:`check_stride` to explain."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a whole number such as 2, got {text!r}") \
            from None
    return int(value) if value.denominator == 1 else value


def check_stride(value: int | Fraction | None) -> None:
    """A fractional stride (lecture 000: "Stride = 0.5, convolution on every half pixel
    (interpolation, Long et al. 2015)") is a transposed convolution: say so."""
    if not isinstance(value, Fraction):
        return
    text = f"{float(value):g}"
    if 0 < value < 1 and value.numerator == 1:
        raise ConfigError(f"--stride {text}: a fractional stride is upsampling by "
                          f"{value.denominator}, a transposed convolution (lecture 000: 'stride "
                          "0.5, interpolation, Long et al. 2015'); use: cnnlab explain "
                          f"transpose-conv --stride {value.denominator} --input ... --kernel ...")
    raise ConfigError(f"--stride {text}: the stride must be a whole number (or 1/N, which is "
                      "cnnlab explain transpose-conv --stride N)")


def check_arguments(args: argparse.Namespace) -> None:
    """One-line ConfigErrors for numbers that cannot work; fills the defaults that depend on
    other options (transpose-conv output padding = stride - 1)."""
    check_stride(args.stride)
    for name, least in (("stride", 1), ("padding", 0), ("size", 1), ("output_padding", 0),
                        ("decimals", 0)):
        value = getattr(args, name)
        if value is not None and value < least:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be at least {least}")
    args.bias = _plain_number(args.bias)
    if args.operation == "transpose-conv":
        stride = 2 if args.stride is None else args.stride
        if args.output_padding is None:
            args.output_padding = stride - 1
        if args.output_padding >= stride:
            raise ConfigError(f"--output-padding {args.output_padding}: must be smaller than "
                              f"the stride {stride} (it only picks among the output sizes that "
                              "stride allows)")
    elif args.output_padding is None:
        args.output_padding = 0


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.explain_cli import explain_from_args

    check_arguments(args)
    explanation = explain_from_args(args)
    if args.json:
        print(json.dumps(explanation.to_dict(), indent=2))
    else:
        print(explanation.render(args.decimals, args.truncate, args.round))
    return 0
