"""Optimisers and learning-rate schedules.

A schedule is a pure function of the global step (``lr_at``), applied to each parameter group
before the step; nothing about it needs saving beyond the step counter, which makes resume exact.
Groups may carry an ``lr_scale`` (discriminative learning rates for fine-tuning, lecture 001:
0.001 for pre-trained layers vs 0.01 for new ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from cnnlab.config import TrainConfig

TRIANGLE = (0.2, 0.23, 0.07)  # airbench94: start fraction, where the peak is, end fraction


def parameter_groups(model: nn.Module, weight_decay: float,
                     bias_lr_scale: float = 1.0) -> list[dict]:
    """Decay weights of conv/linear layers; never biases or normalisation parameters.

    ``bias_lr_scale`` != 1 (airbench, Jordan 2024: 64) multiplies the learning rate of those
    1-d parameters and, as airbench does, decays them by ``weight_decay / bias_lr_scale`` so
    that their per-step shrink ``lr * decay`` equals the weights'.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if bias_lr_scale != 1.0:
        groups[1].update(lr_scale=bias_lr_scale, weight_decay=weight_decay / bias_lr_scale)
    return [g for g in groups if g["params"]]


def build_optimizer(groups: Iterable[dict], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW over ``groups`` at ``config.lr``."""
    groups = list(groups)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_at(step: int, total_steps: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Learning rate at global ``step`` (0-based) for the configured schedule and warm-up.

    - constant: ``lr``; step: ``lr * step_gamma ** (epoch // step_epochs)``;
    - cosine: half-cosine from ``lr`` to 0 over the run (after warm-up);
    - onecycle: linear up to ``lr`` over the first 25% (or the warm-up), linear down to 0;
    - triangle: airbench's (Jordan 2024): linear from ``0.2 lr`` at step 0 to ``lr`` at 23% of
      the steps, then linear to ``0.07 lr`` at the last step (``TRIANGLE``).
    Warm-up ramps linearly from ``lr / steps`` over ``warmup_epochs``.
    """
    peak = config.lr
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if config.schedule == "triangle":
        start, peak_at, end = TRIANGLE
        top = max(1, int(peak_at * total_steps))
        if step <= top:
            return peak * (start + (1 - start) * step / top)
        return peak * (1 + (end - 1) * (step - top) / max(1, total_steps - top))
    if config.schedule == "onecycle":
        rise = warmup or max(1, int(0.25 * total_steps))
        if step < rise:
            return peak * (step + 1) / rise
        return peak * max(0.0, (total_steps - step) / max(1, total_steps - rise))
    if step < warmup:
        return peak * (step + 1) / warmup
    if config.schedule == "constant":
        return peak
    if config.schedule == "step":
        return peak * config.step_gamma ** ((step // steps_per_epoch) // config.step_epochs)
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Apply ``lr`` to every group, times its ``lr_scale`` (default 1)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
