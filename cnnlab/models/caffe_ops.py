"""Caffe's layer arithmetic where torch differs: fillers, LRN within a channel, BatchNorm's
running sums, Scale, Eltwise, Concat, Split and an InnerProduct that flattens its input.

Each follows Caffe's source (BVLC/caffe: ``filler.hpp``, ``lrn_layer.cpp``,
``batch_norm_layer.cpp``, ``scale_layer.cpp``, ``eltwise_layer.cpp``); the tests check them
against NumPy transcriptions of those formulas.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.prototxt import Message

FILLER_KEYS = {"type", "value", "min", "max", "mean", "std", "sparse", "variance_norm"}


def _fans(tensor: torch.Tensor) -> tuple[int, int]:
    """Caffe's fan_in = count / shape[0], fan_out = count / shape[1] (count for 1-D blobs)."""
    count = tensor.numel()
    return count // tensor.shape[0], (count // tensor.shape[1] if tensor.dim() > 1 else count)


def fill(tensor: torch.Tensor, filler: Message | None, where: str, default: float = 0.0) -> None:
    """Initialise ``tensor`` as Caffe's ``filler`` does; no filler: constant ``default`` (0 for
    weights and biases as in Caffe, 1 for Scale's multipliers).

    constant ``value``; uniform on [``min``, ``max``]; gaussian ``mean``, ``std`` (default 1);
    xavier: uniform on +-sqrt(3 / n); msra: gaussian with std sqrt(2 / n), where n is fan_in
    (``variance_norm: FAN_IN``, the default), fan_out or their average; bilinear: the
    upsampling kernel for Deconvolution.
    """
    kind = "constant" if filler is None else str(filler.get("type", "constant")).lower()
    if filler is not None:
        unknown = [k for k in filler.names() if k not in FILLER_KEYS]
        if unknown:
            raise ModelError(f"{where}: unknown filler field {unknown[0]!r}; a filler takes: "
                             f"{', '.join(sorted(FILLER_KEYS))}")
        if filler.get("sparse", -1) not in (-1, None):
            raise ModelError(f"{where}: sparse gaussian fillers are not supported; remove "
                             "'sparse'")
    value = (lambda key, d: float(filler.get(key, d))) if filler is not None else (lambda k, d: d)
    with torch.no_grad():
        if kind == "constant":
            tensor.fill_(value("value", default) if filler is not None else default)
        elif kind == "uniform":
            tensor.uniform_(value("min", 0.0), value("max", 1.0))
        elif kind == "gaussian":
            tensor.normal_(value("mean", 0.0), value("std", 1.0))
        elif kind in ("xavier", "msra"):
            fan_in, fan_out = _fans(tensor)
            norm = str(filler.get("variance_norm", "FAN_IN")).upper()
            n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}.get(norm)
            if n is None:
                raise ModelError(f"{where}: variance_norm {norm!r}; choose FAN_IN, FAN_OUT or "
                                 "AVERAGE")
            if kind == "xavier":
                bound = math.sqrt(3.0 / n)
                tensor.uniform_(-bound, bound)
            else:
                tensor.normal_(0.0, math.sqrt(2.0 / n))
        elif kind == "bilinear":
            tensor.copy_(bilinear_kernel(tensor.shape, where))
        else:
            raise ModelError(f"{where}: filler type {kind!r} is not supported; choose constant, "
                             "uniform, gaussian, xavier, msra or bilinear")


def bilinear_kernel(shape: torch.Size, where: str) -> torch.Tensor:
    """Caffe's BilinearFiller: ``(1 - |x/f - c|) (1 - |y/f - c|)``, f = ceil(k/2),
    c = (k - 1) / (2f), the same kernel in every (out, in) slot."""
    if len(shape) != 4 or shape[2] != shape[3]:
        raise ModelError(f"{where}: the bilinear filler needs a square 4-D kernel, got "
                         f"{tuple(shape)}")
    k = shape[3]
    f = math.ceil(k / 2)
    c = (k - 1) / (2.0 * f)
    axis = 1 - (torch.arange(k, dtype=torch.float64) / f - c).abs()
    return (axis[:, None] * axis[None, :]).float().expand(shape).clone()


class InnerProduct(nn.Linear):
    """Caffe's InnerProduct: flattens ``(B, C, H, W) -> (B, C*H*W)`` (axis 1), then
    ``x W^T + b``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))  # (B, out_features)


class WithinChannelLRN(nn.Module):
    """LRN with ``norm_region: WITHIN_CHANNEL``: ``x (1 + alpha/n^2 sum_{n x n} x^2)^-beta``
    over an n x n window zero-padded by (n - 1)/2 (Caffe builds it from an AVE pooling and a
    power layer with shift 1, so ``k`` does not apply)."""

    def __init__(self, size: int, alpha: float, beta: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.avg_pool2d(x * x, self.size, 1, (self.size - 1) // 2, count_include_pad=True)
        return x * (1 + self.alpha * mean).pow(-self.beta)  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}"


class CaffeBatchNorm(nn.Module):
    """Caffe's BatchNorm: normalisation only (a Scale layer adds the affine part).

    Its three blobs are buffers: ``mean`` and ``variance`` are running *sums* and
    ``scale_factor`` their weight: each training step does ``s = maf s + 1``,
    ``mean = maf mean + batch_mean``, ``variance = maf variance + m/(m-1) batch_var``
    (``maf``: ``moving_average_fraction``, m values per channel), and the global statistics are
    ``mean / s`` and ``variance / s`` (0 when s is 0). A state dict holding Caffe's blobs under
    these names therefore loads as Caffe reads them. ``use_global_stats=True`` uses the global
    statistics in training too; otherwise training normalises by the batch and evaluation by
    the global statistics.
    """

    def __init__(self, channels: int, *, moving_average_fraction: float = 0.999,
                 eps: float = 1e-5, use_global_stats: bool = False) -> None:
        super().__init__()
        self.maf, self.eps, self.use_global_stats = moving_average_fraction, eps, use_global_stats
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("variance", torch.zeros(channels))
        self.register_buffer("scale_factor", torch.zeros(1))

    def global_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Caffe's ``blobs[0] / blobs[2]`` and ``blobs[1] / blobs[2]`` (0 when blobs[2] is 0)."""
        s = self.scale_factor
        factor = torch.where(s == 0, torch.zeros_like(s), 1 / s.clamp(min=1e-30))
        return self.mean * factor, self.variance * factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.use_global_stats or not self.training:
            mean, var = self.global_stats()
        else:
            dims = [0, *range(2, x.dim())]
            mean, var = x.mean(dims), x.var(dims, unbiased=False)  # (C,)
            with torch.no_grad():
                m = x.numel() // x.shape[1]
                self.scale_factor.mul_(self.maf).add_(1)
                self.mean.mul_(self.maf).add_(mean.detach())
                self.variance.mul_(self.maf).add_(var.detach() * (m / max(m - 1, 1)))
        return (x - mean.view(shape)) / (var.view(shape) + self.eps).sqrt()

    def extra_repr(self) -> str:
        return (f"{self.mean.shape[0]}, moving_average_fraction={self.maf}, eps={self.eps}, "
                f"use_global_stats={self.use_global_stats}")


class Scale(nn.Module):
    """Caffe's Scale layer: a learned multiplier per channel (axis 1), plus a bias when
    ``bias_term``."""

    def __init__(self, channels: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = x * self.weight.view(shape)
        return out + self.bias.view(shape) if self.bias is not None else out


class Eltwise(nn.Module):
    """Caffe's Eltwise: ``SUM`` (with per-input ``coeff``), ``PROD`` or ``MAX`` of its inputs."""

    def __init__(self, operation: str, coeffs: tuple[float, ...]) -> None:
        super().__init__()
        self.operation, self.coeffs = operation, coeffs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.operation == "PROD":
            out = inputs[0]
            for x in inputs[1:]:
                out = out * x
            return out
        if self.operation == "MAX":
            out = inputs[0]
            for x in inputs[1:]:
                out = torch.maximum(out, x)
            return out
        out = inputs[0] * self.coeffs[0] if self.coeffs[0] != 1 else inputs[0]
        for coeff, x in zip(self.coeffs[1:], inputs[1:], strict=True):
            out = out + (x * coeff if coeff != 1 else x)
        return out

    def extra_repr(self) -> str:
        return f"{self.operation}" + (f", coeff={list(self.coeffs)}" if self.operation == "SUM"
                                      else "")


class Concat(nn.Module):
    """Caffe's Concat along ``dim`` (1: channels, as in an Inception module)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat(inputs, self.dim)


class Split(nn.Module):
    """Caffe's Split: the same blob under several names."""

    def __init__(self, copies: int) -> None:
        super().__init__()
        self.copies = copies

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x,) * self.copies
