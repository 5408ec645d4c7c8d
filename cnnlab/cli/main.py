"""``cnnlab`` command line: parse, call one library function, turn user errors into one line.

Each command lives in its own module under ``cnnlab.cli`` exposing ``add_arguments(parser)`` and
``run(args) -> int``; the table below maps command names to modules (imported lazily so
``cnnlab --help`` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cnnlab.errors import CnnlabError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("cnnlab.cli.train", "train a model on a data set and save a run directory"),
    "evaluate": ("cnnlab.cli.evaluate", "test accuracy, confusion matrix, errors; ensembles"),
    "predict": ("cnnlab.cli.predict", "top-k labels for your own images"),
    "datasets": ("cnnlab.cli.datasets", "list the data sets cnnlab can find"),
    "models": ("cnnlab.cli.models", "list the model zoo"),
}

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Build, train, inspect and understand convolutional neural networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cnnlab`` script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args._run(args) or 0)
    except CnnlabError as error:
        print(f"cnnlab {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
