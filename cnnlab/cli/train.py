"""Train a model and save a run directory (config.yaml, metrics.jsonl, last/best checkpoints).

examples:
  cnnlab train                                   # LeNet-5 on scikit-learn's digits (no download)
  cnnlab train --model lenet5 --data mnist --epochs 3 --augment "affine:deg=5,translate=0.05"
  cnnlab train --config runs/lenet5-digits-.../config.yaml   # re-run a saved config
  cnnlab train --recipe mnist-1min --epochs 1    # a named recipe; flags override it
  cnnlab train --resume runs/lenet5-digits-...               # continue an interrupted run
  cnnlab train --data mnist --nproc 2            # data parallel on 2 local processes
  torchrun --nproc-per-node 2 -m cnnlab train --data mnist   # the same through torchrun
  cnnlab train --data mnist --live               # watch it learn: open the printed address

Ctrl-C or SIGTERM saves the last checkpoint at the next step and exits with code 130 / 143
(also during the last epoch's validation: the test evaluation is then skipped; --resume runs it).
Under `torchrun --max-restarts N` a restarted attempt continues the first attempt's run from its
newest complete checkpoint (found by RUN/torchrun.json) instead of starting a new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
from pathlib import Path

from cnnlab.cli.flags import add_config_flags, config_values
from cnnlab.config import TrainConfig, config_from_text, load_config
from cnnlab.errors import ConfigError
from cnnlab.recipes import RECIPES, training_recipe
from cnnlab.runs.layout import CONFIG, FINETUNE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    session = parser.add_argument_group("session")
    session.add_argument("--recipe", metavar="NAME",
                         help="start from a named recipe (" + ", ".join(single_run_recipes())
                              + "; see cnnlab/recipes.py); --config and flags override it")
    session.add_argument("--config", help="YAML config to start from (e.g. RUN/config.yaml)")
    session.add_argument("--resume", metavar="RUN", help="continue the run in directory RUN")
    session.add_argument("--stop-after-epochs", type=int, metavar="N",
                         help="end this session after N epochs (continue later with --resume)")
    session.add_argument("--nproc", type=int, metavar="N",
                         help="data-parallel training on N local processes (torchrun "
                              "--standalone); --batch-size stays the global batch")
    session.add_argument("--break-lock", action="store_true",
                         help="take over the run's lock (RUN/train.lock) although its owner "
                              "may be alive on another host: only when you know it is gone")
    live = parser.add_argument_group("live page (docs/LIVE.md)")
    live.add_argument("--live", nargs="?", const=0, type=int, metavar="PORT",
                      help="serve a page of the run while it trains (curves, layers, test "
                           "predictions, controls, poke the network) on 127.0.0.1:PORT "
                           "(default: a free port; the address is printed)")
    live.add_argument("--live-host", metavar="ADDRESS",
                      help="serve the page on this address of the machine instead of "
                           "127.0.0.1 (other machines can then open it; not encrypted)")
    live.add_argument("--live-linger", type=float, default=0.0, metavar="S",
                      help="keep the page up S seconds after the run ends (default 0)")
    add_config_flags(parser)


def single_run_recipes() -> list[str]:
    return [name for name, recipe in RECIPES.items() if len(recipe.seeds) == 1]


def live_flags(args: argparse.Namespace) -> list[str]:
    """The ``--live`` flags as given (checked), for ``--nproc``'s workers; [] without."""
    if args.live is None:
        if args.live_host is not None or args.live_linger:
            raise ConfigError("--live-host and --live-linger need --live")
        return []
    if not 0 <= args.live <= 65535:
        raise ConfigError(f"--live {args.live} is not a port number (0..65535)")
    if not 0 <= args.live_linger <= 86400:
        raise ConfigError(f"--live-linger {args.live_linger} must be in [0, 86400] seconds")
    flags = ["--live", str(args.live), "--live-linger", str(args.live_linger)]
    return flags + (["--live-host", args.live_host] if args.live_host else [])


def live_observers(args: argparse.Namespace) -> list:
    """``[LiveObserver]`` with ``--live``, else []."""
    if not live_flags(args):
        return []
    from cnnlab.live.observer import LiveObserver

    return [LiveObserver(port=args.live, host=args.live_host or "127.0.0.1",
                         linger_s=args.live_linger)]


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Start from --config / the resumed run's config / defaults; apply the flags given.
    Precedence: defaults < ``--recipe`` < ``--config`` < flags."""
    recipe = training_recipe(args.recipe).config if getattr(args, "recipe", None) else None
    if args.recipe and args.resume:
        raise ConfigError("--recipe starts a run; --resume continues one with its own settings")
    if args.config and args.config.startswith("env:"):  # ``--nproc`` hands its workers the
        config = config_from_text(os.environ.get(args.config[4:], ""), args.config)  # config
    elif args.config:  # explicit wins
        config = load_config(args.config, base=recipe)
    elif args.resume:
        config = load_config(Path(args.resume) / CONFIG)
    else:
        config = TrainConfig(**(recipe or {}))
    return dataclasses.replace(config, **config_values(args, config))


def run(args: argparse.Namespace) -> int:
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # a torchrun worker: stop with the agent
        from cnnlab.train.session import die_with_parent

        die_with_parent()
    if args.recipe and args.nproc is None:  # a data-parallel recipe brings its processes
        args.nproc = training_recipe(args.recipe).nproc
    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    live_flags(args)  # checked before anything starts
    if args.nproc is not None and args.nproc > 1:
        from cnnlab.train.launch import launch

        return launch(config_from_args(args), args.nproc, resume=args.resume,
                      stop_after_epochs=args.stop_after_epochs, break_lock=args.break_lock,
                      worker_flags=live_flags(args))
    if args.resume and (Path(args.resume) / FINETUNE).is_file():  # a fine-tuning run
        from cnnlab.train.finetune import resume_finetune

        result = resume_finetune(args.resume, stop_after_epochs=args.stop_after_epochs,
                                 break_lock=args.break_lock)
    else:
        from cnnlab.train.fit import fit

        result = fit(config_from_args(args), resume=args.resume,
                     stop_after_epochs=args.stop_after_epochs, break_lock=args.break_lock,
                     observers=live_observers(args))
    if result.status == "interrupted" and result.signal != 0:  # 0: a stop from --live's page
        return 128 + (result.signal or signal.SIGINT)
    return 0
