"""``cnnlab`` command line: parse, call one library function, turn user errors into one line.

Each command lives in its own module under ``cnnlab.cli`` exposing ``add_arguments(parser)`` and
``run(args) -> int``; the table below maps command names to modules (imported lazily so
``cnnlab --help`` stays fast).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

from cnnlab.errors import CnnlabError
from cnnlab.files import overwriting
from cnnlab.version import __version__

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("cnnlab.cli.train", "train a model on a data set and save a run directory"),
    "evaluate": ("cnnlab.cli.evaluate", "test accuracy, confusion matrix, errors; ensembles"),
    "predict": ("cnnlab.cli.predict", "top-k labels for your own images"),
    "datasets": ("cnnlab.cli.datasets", "list the data sets cnnlab can find"),
    "models": ("cnnlab.cli.models", "list the model zoo"),
    "export": ("cnnlab.cli.export", "export a run's model to ONNX or TorchScript (parity-checked)"),
    "summary": ("cnnlab.cli.summary", "layer table: shapes, parameters, MACs, receptive fields"),
    "explain": ("cnnlab.cli.explain", "convolution, pooling, gradients worked out step by step"),
    "lectures": ("cnnlab.cli.lectures", "the lectures' worked examples: slide vs cnnlab, entry by entry"),
    "invariance": ("cnnlab.cli.invariance", "feature distance, P(true), agreement vs transform"),
    "equivariance": ("cnnlab.cli.equivariance", "does a k-pixel input shift shift each layer?"),
    "embed": ("cnnlab.cli.embed", "PCA embedding of a layer's features under a transform"),
    "probe": ("cnnlab.cli.probe", "linear SVM/softmax probes per layer (lecture 001 Table 6)"),
    "lr-find": ("cnnlab.cli.lr_find", "learning-rate range test: loss vs rate, a suggested --lr"),
    "finetune": ("cnnlab.cli.finetune", "transfer a trained run to a new data set"),
    "ablate": ("cnnlab.cli.ablate", "remove layers, retrain, report accuracy and parameters"),
    "gradients": ("cnnlab.cli.gradients", "per-layer gradient norms: vanishing/exploding"),
    "shift-test": ("cnnlab.cli.shift_test", "CNN vs MLP trained centred, tested shifted"),
    "sliding": ("cnnlab.cli.sliding", "sliding window vs fully convolutional: time ratio, same scores"),
    "compare": ("cnnlab.cli.compare", "training curves of several runs on shared axes"),
    "visualize": ("cnnlab.cli.visualize", "filters, feature maps, top patches, saliency as PNGs"),
    "report": ("cnnlab.cli.report", "one self-contained HTML page per run"),
    "stats": ("cnnlab.cli.stats", "correlation of values against shift, per axis (why convolution)"),
    "serve": ("cnnlab.cli.serve", "browse finished runs in a local web page (curves, reports, play)"),
    "bovw": ("cnnlab.cli.bovw", "bag of visual words + spatial pyramids, texture, hand-crafted filters"),
}

# commands that transform, shift or draw a run's images: they refuse 1-D/3-D runs (issue 23)
IMAGE_RUNS_ONLY = ("invariance", "equivariance", "embed", "finetune", "ablate", "gradients",
                   "sliding")
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors (bad choice, not a number, missing value) are one line,
    like every other cnnlab error, instead of the whole usage block; exit code 2."""

    def error(self, message: str):  # noqa: ANN201 - argparse's signature
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``chosen``'s module is imported (the others list their help line)."""
    parser = OneLineParser(
        prog="cnnlab", allow_abbrev=False,
        description="Build, train, inspect and understand convolutional neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=help_text, allow_abbrev=False)
            continue
        module = importlib.import_module(module_name)  # this command's module only
        command = sub.add_parser(name, help=help_text, description=module.__doc__,
                                 allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def check_image_runs(args: argparse.Namespace) -> None:
    """Refuse a 1-D/3-D run given to an image-only command, in one line."""
    from cnnlab.runs.dims import require_image_run  # JSON only: no torch

    named = [getattr(args, key, None) for key in ("run", "checkpoint", "model")]
    for path in [*named, *(getattr(args, "models", None) or [])]:
        if isinstance(path, str) and os.path.exists(path):
            require_image_run(args.command, path)


@contextlib.contextmanager
def one_line_warnings(command: str):
    """Warnings printed like the errors: ``cnnlab COMMAND: warning: MESSAGE``, one line (the
    format only, so a caller that records warnings still gets them)."""
    def format_warning(message, category, filename, lineno, line=None) -> str:
        return f"cnnlab {command}: warning: {message}\n"

    saved, warnings.formatwarning = warnings.formatwarning, format_warning
    try:
        yield
    finally:
        warnings.formatwarning = saved


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cnnlab`` script; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((a for a in argv if a in COMMANDS), None))
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        with overwriting(getattr(args, "overwrite", False)), one_line_warnings(args.command):
            if args.command in IMAGE_RUNS_ONLY:
                check_image_runs(args)
            return int(args._run(args) or 0)
    except CnnlabError as error:
        print(f"cnnlab {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `cnnlab summary resnet50 | head`: the reader left early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except OSError as error:  # a path the user named cannot be read or written (e.g. --out)
        if error.filename is None:
            raise
        print(f"cnnlab {args.command}: error: {error.filename}: {error.strerror}",
              file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
