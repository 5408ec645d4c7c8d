"""Transfer learning (lecture 001): start from a trained run, new classifier when the label set
differs, --freeze layers up to a name (frozen batch-norm statistics stay frozen too),
discriminative learning rates (0.001 pre-trained, 0.01 new), or --mode features (train only the
classifier on features computed once, at --lr-new), or --mode scratch (same architecture, recipe
and data, random initialisation: the baseline).

examples:
  cnnlab finetune runs/lenet5-mnist --data digits --epochs 10
  cnnlab finetune runs/lenet5-mnist --data fashion-mnist --freeze features.3
  cnnlab finetune runs/lenet5-mnist --data digits --mode features --epochs 30
  cnnlab finetune runs/lenet5-mnist --data fashion-mnist --limit-per-class 100 --mode scratch
  cnnlab finetune runs/resnet20-cifar10 --data ./my-photos --lr-pretrained 0.001 --lr-new 0.01
The result is a normal run directory (+ finetune.json) for evaluate, predict, probe, ...
"""

from __future__ import annotations

import argparse

from cnnlab.train.finetune import MODES, finetune

OVERRIDES = {"epochs": int, "batch-size": int, "schedule": str, "optimizer": str,
             "weight-decay": float, "augment": str, "seed": int, "device": str, "out": str,
             "name": str, "data-root": str, "image-size": int, "val-fraction": float,
             "threads": int}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run directory or .safetensors")
    parser.add_argument("--data", required=True, help="target data set name or folder")
    parser.add_argument("--mode", default="finetune", help=f"one of: {', '.join(MODES)}")
    parser.add_argument("--freeze", help="freeze layers up to and including this one "
                                         "('all' = everything but the classifier)")
    parser.add_argument("--lr-pretrained", type=float, default=0.001,
                        help="learning rate of the pre-trained layers (default 0.001)")
    parser.add_argument("--lr-new", type=float, default=0.01,
                        help="learning rate of a new classifier (default 0.01)")
    parser.add_argument("--limit-per-class", type=int, metavar="N",
                        help="train on N images per class of the target (a small target)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    for flag, kind in OVERRIDES.items():
        parser.add_argument(f"--{flag}", type=kind, help="as in `cnnlab train`")


def run(args: argparse.Namespace) -> int:
    overrides = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_"))
                 for flag in OVERRIDES}
    if args.no_progress:
        overrides["progress"] = False
    finetune(args.checkpoint, data=args.data, mode=args.mode, freeze=args.freeze,
             lr_pretrained=args.lr_pretrained, lr_new=args.lr_new,
             limit_per_class=args.limit_per_class, **overrides)
    return 0
