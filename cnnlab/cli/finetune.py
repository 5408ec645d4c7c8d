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

from cnnlab.choices import FINETUNE_MODES
from cnnlab.cli.flags import add_config_flags, add_data, config_values

# the TrainConfig settings a fine-tuning run may change (the rest is the source run's recipe)
OVERRIDES = ("epochs", "batch_size", "schedule", "optimizer", "weight_decay", "augment", "seed",
             "device", "out", "name", "image_size", "val_fraction", "threads", "progress",
             "snapshot_epochs", "checkpoint_every")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run directory or .safetensors")
    add_data(parser, required=True, data_help="the target data set (name or image folder)")
    transfer = parser.add_argument_group("transfer")
    transfer.add_argument("--mode", default="finetune", metavar="{" + ",".join(FINETUNE_MODES) + "}",
                          help="finetune: the unfrozen layers train; features: only the head, "
                               "on features computed once; scratch: the baseline")
    transfer.add_argument("--freeze", help="freeze layers up to and including this one "
                                           "('all' = everything but the classifier)")
    transfer.add_argument("--lr-pretrained", type=float, default=0.001,
                          help="learning rate of the pre-trained layers (default 0.001)")
    transfer.add_argument("--lr-new", type=float, default=0.01,
                          help="learning rate of a new classifier (default 0.01)")
    transfer.add_argument("--limit-per-class", type=int, metavar="N",
                          help="train on N images per class of the target (a small target)")
    add_config_flags(parser, OVERRIDES)


def run(args: argparse.Namespace) -> int:
    from cnnlab.train.finetune import finetune

    overrides = config_values(args, names=OVERRIDES)
    finetune(args.checkpoint, data=args.data, mode=args.mode, freeze=args.freeze,
             lr_pretrained=args.lr_pretrained, lr_new=args.lr_new,
             limit_per_class=args.limit_per_class, data_root=args.data_root,
             download=args.download, skip_bad=args.skip_bad, data_budget=args.data_budget,
             **overrides)
    return 0
