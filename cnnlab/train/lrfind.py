"""The learning-rate range test (L. N. Smith 2015/2017, "Cyclical Learning Rates for Training
Neural Networks", sec. 3.3; fastai's ``lr_find``): train for a few hundred steps while the
learning rate grows exponentially from ``lr_min`` to ``lr_max``, and plot the loss against it.
The loss falls once the rate is large enough to learn and blows up once it is too large; a good
peak rate lies where it falls fastest (the *suggestion*: the steepest descent of the smoothed
loss before its minimum), about a tenth of the rate at the minimum.

Nothing is written but the plot: no run directory, and the model's weights, the optimizer's
state and the random-number state are put back as they were.

Example:
    >>> result = lr_find(TrainConfig(model="lenet5", data="digits"))  # doctest: +SKIP
    >>> result.suggestion  # doctest: +SKIP
    0.05
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.data.pipeline import BatchSource
from cnnlab.devices import resolve_device
from cnnlab.errors import ConfigError
from cnnlab.progress import Progress
from cnnlab.runs.outputs import save_figure
from cnnlab.tasks import Task
from cnnlab.train.loop import training_loss
from cnnlab.train.optim import set_lr
from cnnlab.train.run import Run

SMOOTHING = 0.98  # exponential moving average of the loss, bias-corrected (fastai)
DIVERGED = 4.0  # stop once the smoothed loss exceeds 4x its minimum


@dataclass
class RangeTest:
    """The learning rates tried, the smoothed loss at each, and the suggested peak rate."""

    lrs: list[float]
    losses: list[float]
    suggestion: float | None
    min_loss_lr: float | None
    notes: list[str] = field(default_factory=list)


def range_test(model: nn.Module, source: BatchSource, optimizer: torch.optim.Optimizer,
               task: Task, *, lr_min: float = 1e-6, lr_max: float = 10.0, steps: int = 100,
               seed: int = 0, label_smoothing: float = 0.0) -> RangeTest:
    """Up to ``steps`` optimizer steps at ``lr_min * (lr_max / lr_min) ** (i / (steps - 1))``;
    stops early when the smoothed loss diverges. ``model``, ``optimizer`` and torch's RNG are
    restored afterwards."""
    if not 0 < lr_min < lr_max:
        raise ConfigError(f"--lr-min {lr_min:g} and --lr-max {lr_max:g}: need 0 < min < max")
    if steps < 5:
        raise ConfigError(f"--steps {steps}: expected 5 or more")
    saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()),
             torch.get_rng_state())
    try:
        lrs, losses = _sweep(model, source, optimizer, task, lr_min, lr_max, steps, seed,
                             label_smoothing)
    finally:
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        torch.set_rng_state(saved[2])
    return RangeTest(lrs, losses, *suggest(lrs, losses))


def _sweep(model, source, optimizer, task, lr_min, lr_max, steps, seed, label_smoothing
           ) -> tuple[list[float], list[float]]:
    model.train()
    lrs, losses, average, best = [], [], 0.0, math.inf
    with Progress(steps, "lr-find", unit="step") as progress:
        for epoch in range(steps):  # as many passes over the data as the steps need
            for x, y in source.batches(seed=seed, epoch=epoch, shuffle=True):
                lr = lr_min * (lr_max / lr_min) ** (len(lrs) / (steps - 1))
                set_lr(optimizer, lr)
                loss, _ = training_loss(model(x), y, task, label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                average = SMOOTHING * average + (1 - SMOOTHING) * loss.item()
                smooth = average / (1 - SMOOTHING ** (len(lrs) + 1))
                if not math.isfinite(smooth) or smooth > DIVERGED * best or len(lrs) >= steps:
                    return lrs, losses
                lrs.append(lr)
                losses.append(smooth)
                best = min(best, smooth)
                progress.update()
    return lrs, losses


def suggest(lrs: list[float], losses: list[float]) -> tuple[float | None, float | None]:
    """(the rate where the smoothed loss falls fastest per decade before its minimum, the rate
    at the minimum).

    Example:
        >>> suggest([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.9, 1.0, 3.0])
        (0.01, 0.1)
    """
    if len(lrs) < 3:
        return None, None
    low = min(range(len(losses)), key=losses.__getitem__)
    slopes = [(losses[i + 1] - losses[i]) / math.log10(lrs[i + 1] / lrs[i]) for i in range(low)]
    steepest = min(range(len(slopes)), key=slopes.__getitem__) if slopes else None
    return (lrs[steepest] if steepest is not None else None), lrs[low]


class NoFolder:
    """The range test writes no run: a folder that is nowhere."""

    path = None


def lr_find(config: TrainConfig, **options: object) -> RangeTest:
    """The range test of ``config``'s model, data, optimizer and batch size (its ``lr`` and
    schedule are replaced by the sweep); ``options`` go to :func:`range_test`."""
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    run = Run(config, NoFolder(), resolve_device(config.device), log=lambda *_: None)
    return range_test(run.train_model, run.train, run.optimizer, run.task, seed=config.seed,
                      label_smoothing=config.label_smoothing, **options)


def plot_range_test(result: RangeTest, path: str | Path, title: str) -> Path:
    """Smoothed loss against the learning rate (log scale), the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    try:
        ax.plot(result.lrs, result.losses)
        ax.set_xscale("log")
        ax.set(xlabel="learning rate", ylabel="training loss (smoothed)", title=title)
        if result.suggestion is not None:
            ax.axvline(result.suggestion, color="tab:red", linestyle="--",
                       label=f"suggested --lr {result.suggestion:.2g} (steepest descent)")
            ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        return save_figure(fig, path)
    finally:
        plt.close(fig)
