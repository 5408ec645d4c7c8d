"""Optimisers and learning-rate schedules.

A schedule is a pure function of the global step (``lr_at``), applied to each parameter group
before the step; nothing about it needs saving beyond the step counter, which makes resume exact.
Groups may carry an ``lr_scale`` (discriminative learning rates for fine-tuning, lecture 001:
0.001 for pre-trained layers vs 0.01 for new ones). A model may set its own per-parameter
rates and decays (``param_group_options()``, a Caffe net's ``lr_mult``/``decay_mult``):
:func:`apply_param_options`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from cnnlab.config import TrainConfig

TRIANGLE = (0.2, 0.23, 0.07)  # airbench94: start fraction, where the peak is, end fraction
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)  # Jordan 2024 (Muon): quintic iteration coefficients
NEWTON_SCHULZ_STEPS = 3  # airbench94_muon's choice for conv filters (Keller's Muon: 5)


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
    return apply_param_options([g for g in groups if g["params"]], model, weight_decay)


def apply_param_options(groups: list[dict], model: nn.Module, weight_decay: float) -> list[dict]:
    """Split ``groups`` by the model's own per-parameter options, when it has
    ``param_group_options() -> {name: {"lr_scale": x, "weight_decay_scale": y}}`` (a Caffe
    net's ``param { lr_mult: x decay_mult: y }``): such a parameter learns at its group's rate
    times x and decays by ``weight_decay`` times y (biases too, as in Caffe). Works on any
    groups over the model's parameters (fine-tuning's discriminative ones included)."""
    hook = getattr(model, "param_group_options", None)
    if hook is None:
        return groups
    options = hook()
    by_id = {id(p): options[name] for name, p in model.named_parameters() if name in options}
    split = []
    for group in groups:
        own: dict[tuple[float, float], list] = {}
        rest = [p for p in group["params"] if id(p) not in by_id]
        for param in group["params"]:
            if id(param) in by_id:
                scales = by_id[id(param)]
                own.setdefault((scales["lr_scale"], scales["weight_decay_scale"]), []).append(param)
        if rest:
            split.append({**group, "params": rest})
        split += [{**group, "params": params, "lr_scale": group.get("lr_scale", 1.0) * lr,
                   "weight_decay": weight_decay * decay} for (lr, decay), params in own.items()]
    return split


def orthogonalize(matrix: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS) -> torch.Tensor:
    """``U V^T`` of ``matrix = U S V^T``, approximately, by a quintic Newton-Schulz iteration.

    Muon's (Jordan et al. 2024) iteration runs in bf16 and, for a condition number up to ~10,
    maps every singular value into roughly [0.65, 1.2] rather than exactly 1, which trains as
    well; each step is three matmuls. ``(m, n) -> (m, n)``.
    """
    a, b, c = NEWTON_SCHULZ
    x = matrix.to(torch.bfloat16)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (x.norm() + 1e-7)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for conv filters, SGD (momentum, Nesterov, L2 decay as ``torch.optim.SGD``) for the
    rest: one optimizer, one state dict, one schedule.

    A group with ``muon=True`` takes ``p -= lr * orthogonalize(m)`` with ``m`` the (Nesterov)
    momentum of the gradient flattened to ``(out_channels, -1)``; with ``normalize=True`` each
    filter bank is first rescaled to Frobenius norm ``sqrt(out_channels)``, which is harmless
    only where BatchNorm follows the conv (airbench94_muon, Jordan 2024: 94% in 8 epochs).
    """

    def __init__(self, groups: list[dict], *, lr: float, momentum: float,
                 nesterov: bool) -> None:
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=0.0,
                        muon=False, normalize=False)
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)
        return loss

    def _update(self, param: torch.Tensor, group: dict) -> None:
        grad, momentum = param.grad, group["momentum"]
        if group["weight_decay"] and not group["muon"]:
            grad = grad.add(param, alpha=group["weight_decay"])
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = grad.clone()  # torch SGD's first step
        else:
            state["momentum_buffer"].mul_(momentum).add_(grad)
        buffer = state["momentum_buffer"]
        direction = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
        if not group["muon"]:
            param.add_(direction, alpha=-group["lr"])
            return
        if group["normalize"]:
            param.mul_(param.shape[0] ** 0.5 / param.norm().clamp(min=1e-12))
        update = orthogonalize(direction.reshape(param.shape[0], -1)).view_as(param)
        param.add_(update, alpha=-group["lr"])


def muon_groups(groups: Iterable[dict], config: TrainConfig) -> list[dict]:
    """``groups`` with every conv filter bank (4-D) moved to Muon groups at ``--muon-lr``."""
    out = []
    for group in groups:
        filters = [p for p in group["params"] if p.dim() == 4]
        rest = [p for p in group["params"] if p.dim() != 4]
        scale = group.get("lr_scale", 1.0) * config.muon_lr / config.lr
        if filters:
            out.append({"params": filters, "muon": True, "normalize": config.muon_normalize,
                        "momentum": config.muon_momentum, "weight_decay": 0.0,
                        "lr_scale": scale})
        if rest:
            out.append({**group, "params": rest})
    return out


def build_optimizer(groups: Iterable[dict], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Muon (+ SGD), Adam or AdamW over ``groups`` at ``config.lr``."""
    groups = list(groups)
    if config.optimizer == "muon":
        return Muon(muon_groups(groups, config), lr=config.lr, momentum=config.momentum,
                    nesterov=config.nesterov)
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
