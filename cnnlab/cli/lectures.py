"""The lectures' worked examples: list them, or run one and see the slide's numbers beside
cnnlab's, every differing entry marked and explained.

examples:
  cnnlab lectures                      # lecture, slide, what each example shows
  cnnlab lectures padded-conv          # lecture 000: the slide's last entry -2 is -4
  cnnlab lectures conv-layer           # lecture 003: 17 mistyped entries
  cnnlab lectures lenet-alexnet --json
Inputs the examples use are shipped with cnnlab: cnnlab explain conv --input-file lecture:x ...
See docs/EXPLAIN.md.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("example", nargs="?", metavar="ID",
                        help="the example to run (default: list them all)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.lecture_render import render_catalogue
    from cnnlab.analysis.lectures import examples, run_example

    if args.example is None:
        entries = examples()
        if args.json:
            print(json.dumps([{"id": e.id, "lecture": e.lecture, "slide": e.slide,
                               "what": e.what, "command": e.command} for e in entries],
                             indent=2))
        else:
            print(render_catalogue(entries))
        return 0
    result = run_example(args.example)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.render())
    return 0
