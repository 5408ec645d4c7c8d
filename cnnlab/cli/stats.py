"""Correlation of values as a function of shift along each axis, averaged over N samples: the
measured reason for convolution (lecture 000: "the correlation prior for horizontal and vertical
shifts (averaged over 1000 images)"; lecture 003: "Not just images" and its "Limitations").

Works on image sets (mnist, cifar10, an image folder...) and on the 1-D/3-D sets (mnist1d,
spoken-digits, words, moving-mnist, voxel-shapes). --shuffle SEED first permutes every sample's
positions by one fixed permutation (the tabular control): the correlation goes flat.

examples:
  cnnlab stats --data mnist
  cnnlab stats --data mnist1d --max-shift 20
  cnnlab stats --data mnist1d --shuffle 0 --out stats-shuffled/
Prints the table and writes stats.csv and stats.png into --out (default stats/).
"""

from __future__ import annotations

import argparse

from cnnlab.cli.flags import add_data, add_output, data_request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser, required=True, data_help="data set name or image folder")
    parser.add_argument("--split", choices=["train", "test"], default="train")
    parser.add_argument("--samples", type=int, default=1000,
                        help="samples averaged over (default 1000, as the lecture)")
    parser.add_argument("--max-shift", type=int, default=None,
                        help="largest shift (default: half the shortest axis)")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                        help="permute positions by one fixed permutation from SEED first")
    parser.add_argument("--seed", type=int, default=0, help="which samples are drawn")
    add_output(parser, default="stats", help="output folder (default stats/)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.stats import data_stats, format_table, write_stats

    result = data_stats(data_request(args), split=args.split, samples=args.samples,
                        max_shift=args.max_shift, shuffle=args.shuffle, seed=args.seed)
    print(f"{result.name}: correlation vs shift, {result.samples} {args.split} samples of "
          f"shape {tuple(result.meta['shape'])}")
    print(format_table(result))
    paths = write_stats(result, args.out)
    print("wrote " + " and ".join(str(p) for p in paths))
    return 0
