"""Sliding window vs fully convolutional on a trained ``patchnet`` run (lecture 002: "VERY
inefficient, no reuse of computations for overlapping patches").

Classifies the patch around every pixel of a few test scenes one patch at a time, then runs the
same weights fully convolutionally over each whole scene; prints both times (median of
--repeats timed runs after a warm-up), their ratio, and that the scores and accuracy agree.

examples:
  cnnlab train --data digit-scenes --task segment --model patchnet --optimizer adam --lr 0.003
  cnnlab sliding runs/patchnet-digit-scenes-... --scenes 8
  cnnlab sliding runs/seg6/patchnet --scenes 8 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse

from cnnlab.cli.flags import add_data, data_request
from cnnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser)
    parser.add_argument("run", metavar="RUN", help="run directory or checkpoint of a patchnet "
                                                   "segment run")
    parser.add_argument("--scenes", type=int, default=8, metavar="N",
                        help="test scenes to segment (default 8)")
    parser.add_argument("--repeats", type=int, default=3, metavar="N",
                        help="timed runs of each method, the median is reported (default 3)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.analysis.sliding import compare_run, format_comparison

    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats}: expected at least 1")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads {args.threads}: expected at least 1")
        torch.set_num_threads(args.threads)
    result = compare_run(args.run, data=data_request(args), count=args.scenes, device=args.device,
                         repeats=args.repeats, which=args.checkpoint)
    print(format_comparison(result))
    return 0
