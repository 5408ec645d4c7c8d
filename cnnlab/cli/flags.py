"""Flag groups shared by several commands, so each is spelled and explained once."""

from __future__ import annotations

import argparse

OVERWRITE_HELP = ("replace output files that exist and were not written by cnnlab (a run's own "
                  "checkpoints and settings are never replaced)")


def add_output(parser: argparse.ArgumentParser, help: str, *, default: str | None = None,
               metavar: str | None = None) -> None:
    """``--out`` and ``--overwrite``: cnnlab never writes over a file it did not write unless
    ``--overwrite`` is given (:func:`cnnlab.files.overwriting`, applied in ``cli.main``)."""
    parser.add_argument("--out", default=default, metavar=metavar, help=help)
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
