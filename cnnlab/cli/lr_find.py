"""Find a learning rate: the range test of L. N. Smith (2015): a few hundred steps with the rate
growing exponentially, the loss plotted against it, and a suggested --lr (where the loss falls
fastest). Takes the training flags of `cnnlab train` (model, data, optimizer, batch size...);
writes only the plot: no run directory, and nothing is trained for good.

examples:
  cnnlab lr-find                                  # LeNet-5 on digits, SGD
  cnnlab lr-find --model resnet20 --data cifar10 --optimizer adam --steps 200
  cnnlab lr-find --recipe mnist-1min --data digits --out lr.png
Then train with the suggestion: cnnlab train ... --lr SUGGESTED.
"""

from __future__ import annotations

import argparse
import dataclasses

from cnnlab.cli.flags import add_config_flags, add_output, config_values
from cnnlab.config import TrainConfig
from cnnlab.recipes import training_recipe

SKIPPED = {"out", "name", "checkpoint_every", "snapshot_epochs", "tensorboard", "patience",
           "epochs", "lr", "schedule", "step_epochs", "step_gamma", "warmup_epochs", "tta"}
NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in SKIPPED)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sweep = parser.add_argument_group("range test")
    sweep.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    sweep.add_argument("--lr-min", type=float, default=1e-6, help="first rate (default 1e-6)")
    sweep.add_argument("--lr-max", type=float, default=10.0, help="last rate (default 10)")
    sweep.add_argument("--recipe", metavar="NAME", help="start from a named recipe "
                                                         "(see cnnlab train --help)")
    add_output(parser, default="lr-find.png", help="the plot (default lr-find.png)")
    add_config_flags(parser, NAMES)


def run(args: argparse.Namespace) -> int:
    from cnnlab.train.lrfind import lr_find, plot_range_test

    base = TrainConfig(**training_recipe(args.recipe).config) if args.recipe else TrainConfig()
    config = dataclasses.replace(base, **config_values(args, base, NAMES))
    result = lr_find(config, steps=args.steps, lr_min=args.lr_min, lr_max=args.lr_max)
    title = f"lr-find: {config.model} on {config.data}, {config.optimizer}, batch {config.batch_size}"
    path = plot_range_test(result, args.out, title)
    print(f"{title}: {len(result.lrs)} steps from {args.lr_min:g} to {result.lrs[-1]:.3g}"
          if result.lrs else f"{title}: the loss diverged at once; lower --lr-min")
    if result.suggestion is not None:
        print(f"suggested --lr {result.suggestion:.2g} (steepest descent of the loss); the loss "
              f"is lowest at {result.min_loss_lr:.2g}, a tenth of that is "
              f"{result.min_loss_lr / 10:.2g}")
    else:
        print("no suggestion: the loss never fell; try a wider --lr-min/--lr-max or more --steps")
    print(f"wrote {path}")
    return 0
