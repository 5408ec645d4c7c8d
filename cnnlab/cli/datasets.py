"""List the data sets cnnlab knows and where (or whether) each was found.

Search order: --data-root, then $CNNLAB_DATA (a path list), then ~/.cache/cnnlab/data and
/usr/share/datasets (Debian's dataset-fashion-mnist). `cnnlab train --download` fetches a
missing one from its official source with checksum verification.

examples:
  cnnlab datasets
  CNNLAB_DATA=../shared/data cnnlab datasets
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", help="directory holding data sets")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from cnnlab.data.datasets import list_datasets

    statuses = list_datasets(args.data_root)
    if args.json:
        print(json.dumps([asdict(s) for s in statuses], indent=2, default=str))
        return 0
    for s in statuses:
        where = s.found_at or ("not found (--download available)" if s.downloadable
                               else "not found")
        print(f"{s.name:<14} {s.description:<68} {where}")
    return 0
