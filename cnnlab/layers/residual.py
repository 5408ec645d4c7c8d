"""Residual blocks, their plain (shortcut-free) twins, stochastic depth and an ODE block.

- :class:`BasicBlock` (two 3x3 convs) and :class:`Bottleneck` (1x1 -> 3x3 -> 1x1, 4x wider out)
  of He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv 2015), fig. 5;
  lecture 002, "ResNet": ``H(x) = F(x) + x``, "every residual block consists of two 3x3
  filters". Attribute names follow torchvision (``conv1``/``bn1``/.../``downsample``) so its
  weight files load. ``shortcut=False`` gives the "plain" block of the paper's depth experiments
  (``H(x) = F(x)``), with the same weights.
- :class:`PadShortcut`: option A of the paper (sec. 3.3, 4.2): identity with stride-2
  subsampling and zero-padded extra channels, no parameters.
- :class:`StochasticDepth` and :func:`linear_survival`: Huang et al., "Deep Networks with
  Stochastic Depth", ECCV 2016; lecture 002, "dropout but for layers".
- :class:`ODEBlock` with :class:`ODEFunc`: Chen et al., "Neural Ordinary Differential
  Equations", NeurIPS 2018; lecture 002, "ResNet as an ODE": ``Y_{j+1} = Y_j + G(Y_j, theta_j)``
  is one Euler step of ``dh/dt = f(h, t)``; smaller steps give the continuous-depth limit.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError, choices_hint


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Option B shortcut ``W_s x``: 1x1 conv (stride) + BN, torchvision's ``downsample``."""
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride``, zero-pad channels up to ``out_channels``.

    Shapes: ``(B, C, H, W) -> (B, out_channels, ceil(H/stride), ceil(W/stride))``; no parameters,
    which is why the CIFAR ResNet-20 has 0.27M parameters (He et al. table 6).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ModelError(f"PadShortcut cannot shrink {in_channels} to {out_channels} channels")
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra))  # zeros after the C channels


class StochasticDepth(nn.Module):
    """Keep a residual branch ``F(x)`` with probability ``survival`` (Huang et al. eq. 2-3).

    Training: the whole mini-batch's branch is kept or zeroed ("turn off some layer for each
    batch", lecture 002), so the block becomes ``ReLU(b F(x) + x)`` with ``b ~ Bernoulli(p)``.
    Evaluation: deterministic ``ReLU(p F(x) + x)``, the expected value. The dropped branch is still
    computed here (simpler; the paper skips it to save time).

    Example:
        >>> StochasticDepth(0.5).eval()(torch.ones(2))
        tensor([0.5000, 0.5000])
    """

    def __init__(self, survival: float) -> None:
        super().__init__()
        if not 0.0 < survival <= 1.0:
            raise ModelError(f"stochastic depth survival probability must be in (0, 1], got "
                             f"{survival}")
        self.survival = float(survival)

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return residual * self.survival
        keep = torch.rand((), device=residual.device) < self.survival
        return residual * keep.to(residual.dtype)

    def extra_repr(self) -> str:
        return f"survival={self.survival}"


def linear_survival(num_blocks: int, final: float) -> list[float]:
    """Huang et al.'s linear decay ``p_l = 1 - l/L (1 - p_L)`` for blocks ``l = 1..L``.

    Example:
        >>> linear_survival(4, 0.5)
        [0.875, 0.75, 0.625, 0.5]
    """
    if not 0.0 < final <= 1.0:
        raise ModelError(f"stochastic_depth (final survival probability p_L) must be in (0, 1], "
                         f"got {final}; use 1.0 to turn it off, 0.5 as in Huang et al.")
    return [1.0 - (layer / num_blocks) * (1.0 - final) for layer in range(1, num_blocks + 1)]


class _Residual(nn.Module):
    """``relu(drop(F(x)) + shortcut(x))``, or ``relu(F(x))`` when plain."""

    def _finish_init(self, downsample: nn.Module | None, shortcut: bool, survival: float) -> None:
        if not shortcut and (downsample is not None or survival < 1.0):
            raise ModelError("a plain block (shortcut=False) takes no downsample shortcut and no "
                             "stochastic depth (there is no identity path to fall back on)")
        self.downsample = downsample
        self.shortcut = shortcut
        self.drop = StochasticDepth(survival) if survival < 1.0 else nn.Identity()

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)  # F(x): (B, C_out, H/stride, W/stride)
        if not self.shortcut:
            return self.relu(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.drop(out) + identity)


class BasicBlock(_Residual):
    """Two 3x3 convs with BN: ``(B, inplanes, H, W) -> (B, planes, H/stride, W/stride)``.

    Example:
        >>> BasicBlock(64, 64)(torch.zeros(1, 64, 8, 8)).shape
        torch.Size([1, 64, 8, 8])
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, *, shortcut: bool = True,
                 survival: float = 1.0) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self._finish_init(downsample, shortcut, survival)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_Residual):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand x4: ``(B, inplanes, H, W) -> (B, 4 planes, ...)``.

    The stride sits on the 3x3 conv as in torchvision ("ResNet v1.5"); the paper puts it on the
    first 1x1. Parameter counts are identical.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, *, shortcut: bool = True,
                 survival: float = 1.0) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self._finish_init(downsample, shortcut, survival)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class TimeConv2d(nn.Conv2d):
    """3x3 conv that sees the time ``t`` as an extra constant input channel (Chen et al.'s
    ``ConcatConv2d``), so ``f`` can depend on ``t``: ``(B, C, H, W) -> (B, C_out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels + 1, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: float = 0.0) -> torch.Tensor:  # type: ignore[override]
        time = torch.full_like(x[:, :1], t)  # (B, 1, H, W)
        return super().forward(torch.cat([time, x], dim=1))


class ODEFunc(nn.Module):
    """``f(h, t)``: GroupNorm-ReLU-conv-GroupNorm-ReLU-conv-GroupNorm, shape-preserving.

    Chen et al.'s ODE-Net function; group norm rather than batch norm because ``f`` is evaluated
    several times per forward pass (batch statistics would change from step to step).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        groups = min(32, channels)
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = TimeConv2d(channels, channels)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = TimeConv2d(channels, channels)
        self.norm3 = nn.GroupNorm(groups, channels)
        self.relu = nn.ReLU()

    def forward(self, h: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        out = self.conv1(self.relu(self.norm1(h)), t)
        out = self.conv2(self.relu(self.norm2(out)), t)
        return self.norm3(out)


ODE_METHODS = ("euler", "rk4")


class ODEBlock(nn.Module):
    """Integrate ``dh/dt = func(h, t)`` from ``t=0`` to ``t1`` with ``steps`` fixed steps.

    ``euler``: ``h += dt f(h, t)`` (one step with ``dt=1`` is exactly a residual block without
    its final ReLU); ``rk4``: classical 4th-order Runge-Kutta (4 evaluations of ``f`` a step).
    All steps share ``func``'s weights: depth without extra parameters. Backpropagation goes
    through the solver's operations (no adjoint method). Shapes: ``(B, C, H, W)`` in and out.

    Example:
        >>> block = ODEBlock(ODEFunc(16), steps=4, method="rk4")
        >>> block(torch.zeros(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, func: nn.Module, steps: int = 1, method: str = "euler",
                 t1: float = 1.0) -> None:
        super().__init__()
        if method not in ODE_METHODS:
            raise ModelError(f"unknown ODE solver {choices_hint(method, list(ODE_METHODS))}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ModelError(f"ODE solver steps must be a positive integer, got {steps!r}")
        self.func, self.steps, self.method, self.t1 = func, steps, method, float(t1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        dt = self.t1 / self.steps
        for i in range(self.steps):
            t = i * dt
            if self.method == "euler":
                h = h + dt * self.func(h, t)
            else:
                k1 = self.func(h, t)
                k2 = self.func(h + dt / 2 * k1, t + dt / 2)
                k3 = self.func(h + dt / 2 * k2, t + dt / 2)
                k4 = self.func(h + dt * k3, t + dt)
                h = h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return h

    def extra_repr(self) -> str:
        return f"steps={self.steps}, method={self.method}, t1={self.t1}"
