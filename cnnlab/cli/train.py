"""Train a model and save a run directory (config.yaml, metrics.jsonl, last/best checkpoints).

examples:
  cnnlab train                                   # LeNet-5 on scikit-learn's digits (no download)
  cnnlab train --model lenet5 --data mnist --epochs 3 --augment "affine:deg=5,translate=0.05"
  cnnlab train --config runs/lenet5-digits-.../config.yaml   # re-run a saved config
  cnnlab train --resume runs/lenet5-digits-...               # continue an interrupted run
  cnnlab train --data mnist --nproc 2            # data parallel on 2 local processes
  torchrun --nproc-per-node 2 -m cnnlab train --data mnist   # the same through torchrun

Ctrl-C or SIGTERM saves the last checkpoint at the next step and exits with code 130 / 143
(also during the last epoch's validation: the test evaluation is then skipped; --resume runs it).
Under `torchrun --max-restarts N` a restarted attempt continues the first attempt's run from its
newest complete checkpoint (found by RUN/torchrun.json) instead of starting a new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
from pathlib import Path

import yaml

from cnnlab.config import TrainConfig, load_config
from cnnlab.errors import ConfigError
from cnnlab.runs.layout import FINETUNE
from cnnlab.train.fit import fit

# flag -> (type, help); every flag maps to the TrainConfig field of the same name.
FLAGS: dict[str, tuple[type, str]] = {
    "model": (str, "zoo name (see `cnnlab models`), spec string like c5x6-relu-p2-f10, or YAML"),
    "data": (str, "data set name (see `cnnlab datasets`) or image-folder path"),
    "data-root": (str, "directory holding data sets (also $CNNLAB_DATA)"),
    "task": (str, "classify, multilabel (sigmoid + BCE) or segment (per-pixel) on scene sets"),
    "class-weights": (str, "segment: none, or median (median-frequency class weights, SegNet)"),
    "image-size": (int, "side of the square model input (default: the model's own)"),
    "resize": (str, "how images are fitted to --image-size: auto, pad, resize"),
    "val-fraction": (float, "fraction of the training split held out for validation"),
    "train-per-class": (int, "train on only N images per class (seeded; before the validation "
                             "split), e.g. a small transfer target"),
    "epochs": (int, "number of passes over the training data"),
    "batch-size": (int, "images per optimizer step"),
    "optimizer": (str, "sgd, muon (conv filters; SGD for the rest), adam or adamw"),
    "lr": (float, "peak learning rate"),
    "momentum": (float, "SGD momentum"),
    "weight-decay": (float, "L2 weight decay on conv/linear weights (not biases or norms)"),
    "schedule": (str, "learning-rate schedule: constant, step, cosine, onecycle, triangle"),
    "step-epochs": (int, "step schedule: decay every N epochs"),
    "step-gamma": (float, "step schedule: decay factor"),
    "warmup-epochs": (float, "linear warm-up length in epochs"),
    "label-smoothing": (float, "label smoothing of the cross-entropy, e.g. 0.1"),
    "augment": (str, 'batched augmentations, e.g. "crop:4,flip" or "elastic:alpha=34,sigma=4"'),
    "bias-lr-scale": (float, "learning-rate multiplier of biases and BatchNorm shifts (airbench: 64)"),
    "lookahead": (float, "lookahead slow-weight decay per update, e.g. 0.77 (0 = off)"),
    "lookahead-every": (int, "optimizer steps between lookahead updates (default 5)"),
    "muon-lr": (float, "--optimizer muon: peak learning rate of the conv filters (default 0.24)"),
    "muon-momentum": (float, "--optimizer muon: Nesterov momentum of the filters (default 0.6)"),
    "tta": (str, 'test-time augmentation of the final test: "flip", "translate", "flip,translate"'),
    "seed": (int, "random seed (data order, augmentation, initialisation)"),
    "device": (str, "auto, cpu or cuda"),
    "precision": (str, "fp32 or bf16 (autocast; fast on CPUs with AMX and on GPUs)"),
    "threads": (int, "number of CPU threads torch may use"),
    "out": (str, "parent directory of run directories (default: runs)"),
    "name": (str, "run directory name (default: <model>-<data>-<time>)"),
    "checkpoint-every": (int, "epochs between saves of the last checkpoint"),
    "dist-timeout": (float, "data parallel: seconds a collective waits for a rank that went "
                            "silent before the job fails (default 300)"),
}
SWITCHES = {
    "download": "download a missing named data set from its official source",
    "skip-bad": "skip unreadable images with a warning instead of stopping",
    "nesterov": "Nesterov momentum (SGD)",
    "muon-normalize": "--optimizer muon: keep each conv's filters at norm sqrt(out_channels) "
                      "(only where BatchNorm follows the conv, as in airbench)",
    "channels-last": "channels_last memory format (faster convolutions on CPU/GPU)",
    "compile": "torch.compile the model (opt-in; falls back to eager with a warning)",
    "deterministic": "deterministic algorithms only (reproducible on CUDA, may be slower)",
    "tensorboard": "also log to RUN/tensorboard (needs the tensorboard package)",
    "no-progress": "no progress bar",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config to start from (e.g. RUN/config.yaml)")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in directory RUN")
    parser.add_argument("--stop-after-epochs", type=int, metavar="N",
                        help="end this session after N epochs (continue later with --resume)")
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="data-parallel training on N local processes (torchrun "
                             "--standalone); --batch-size stays the global batch")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="model option, repeatable (e.g. --option activation=relu)")
    parser.add_argument("--break-lock", action="store_true",
                        help="take over the run's lock (RUN/train.lock) although its owner "
                             "may be alive on another host: only when you know it is gone")
    parser.add_argument("--snapshot-epochs", metavar="LIST",
                        help="comma-separated epochs whose weights are kept, e.g. 1,2,5,10")
    for flag, (kind, text) in FLAGS.items():
        parser.add_argument(f"--{flag}", type=kind, help=text)
    for flag, text in SWITCHES.items():
        parser.add_argument(f"--{flag}", action="store_true", default=None, help=text)


def parse_options(pairs: list[str]) -> dict:
    """``["activation=relu", "partial_c3=true"]`` -> ``{"activation": "relu", ...}``."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or "not valid YAML"
            raise ConfigError(f"--option {pair!r}: cannot read the value ({problem}); write "
                              f"lists as [1,2,3] and quote KEY=VALUE in the shell") from None
    return options


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Start from --config / the resumed run's config / defaults; apply the flags given."""
    if args.config:  # explicit wins (``--nproc`` hands the resolved config to its ranks)
        config = load_config(args.config)
    elif args.resume:
        config = load_config(f"{args.resume}/config.yaml")
    else:
        config = TrainConfig()
    values = {}
    for flag in [*FLAGS, *SWITCHES]:
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            values[flag.replace("-", "_")] = value
    if values.pop("no_progress", None):
        values["progress"] = False
    if args.option:
        values["model_options"] = {**config.model_options, **parse_options(args.option)}
    if args.snapshot_epochs:
        try:
            values["snapshot_epochs"] = [int(e) for e in args.snapshot_epochs.split(",")]
        except ValueError:
            raise ConfigError(
                f"--snapshot-epochs {args.snapshot_epochs!r}: expected e.g. 1,2,5") from None
    return dataclasses.replace(config, **values)


def run(args: argparse.Namespace) -> int:
    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc is not None and args.nproc > 1:
        from cnnlab.train.distributed import launch

        return launch(config_from_args(args), args.nproc, resume=args.resume,
                      stop_after_epochs=args.stop_after_epochs, break_lock=args.break_lock)
    if args.resume and (Path(args.resume) / FINETUNE).is_file():  # a fine-tuning run
        from cnnlab.train.finetune import resume_finetune

        result = resume_finetune(args.resume, stop_after_epochs=args.stop_after_epochs,
                                 break_lock=args.break_lock)
    else:
        result = fit(config_from_args(args), resume=args.resume,
                     stop_after_epochs=args.stop_after_epochs, break_lock=args.break_lock)
    if result.status == "interrupted":
        return 128 + (result.signal or signal.SIGINT)
    return 0
