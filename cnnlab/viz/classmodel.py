"""Class-model visualisation (Simonyan, Vedaldi & Zisserman 2014, sec. 2; lecture 001, "What is
a 'Convnet dog', however?": the dumbbell, cup, dalmatian, bell pepper, lemon and husky images).

Find the image that a trained network scores highest for class ``c``::

    I* = argmax_I  S_c(I) - lambda * ||I||_2^2

by gradient ascent from the zero image, where ``S_c`` is the unnormalised class score (the
logit: maximising the softmax could instead push the other classes down) and ``I`` lives in the
model's normalised input space (zero = the training mean image, as in the paper).

Plain ascent finds high-frequency patterns that no person (and no other network) reads as the
class. :func:`regularized_class_model` adds the image priors of Yosinski et al. 2015
("Understanding neural networks through deep visualization", sec. 3): random jitter (a
translation of a few pixels each step, Mordvintsev et al.'s "jitter"), L2 decay (``I <- (1 -
decay) I``), and a Gaussian blur every few steps; pixels are kept in the image's valid range.

Example:
    >>> from cnnlab.models import create
    >>> model = create("lenet5", num_classes=10, in_channels=1).eval()
    >>> result = class_model(model, [3, 5], (1, 32, 32), steps=5)
    >>> bool((result.scores[-1] > result.scores[0]).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.progress import track


@dataclass
class ClassModel:
    """The optimised images and the ascent's trace, one column per target class."""

    images: torch.Tensor  # (K, C, H, W), normalised input space
    targets: list[int]
    scores: torch.Tensor  # (steps + 1, K): S_c(I) before each step and after the last
    objectives: torch.Tensor  # (steps + 1, K): S_c(I) - lambda ||I||^2, same steps


def class_model(model: nn.Module, targets: int | Sequence[int], input_size: tuple[int, int, int],
                *, steps: int = 200, lr: float = 0.1, l2: float = 1e-3,
                device: str | torch.device = "cpu") -> ClassModel:
    """Gradient ascent on ``S_c(I_c) - l2 * ||I_c||^2`` for each target class ``c``, all classes
    in one batch (in eval mode the images do not interact), ``steps`` plain gradient steps of
    size ``lr`` (each image's step scaled by its gradient's RMS so one ``lr`` suits any model)."""
    model.eval()
    targets = [targets] if isinstance(targets, int) else list(targets)
    index = torch.tensor(targets, device=device)
    images = torch.zeros(len(targets), *input_size, device=device, requires_grad=True)
    scores, objectives = [], []
    for step in track(range(steps + 1), "class-model: gradient ascent", unit="step"):
        with torch.enable_grad():
            score = model(images).gather(1, index[:, None])[:, 0]  # (K,)
            objective = score - l2 * images.pow(2).flatten(1).sum(1)  # (K,)
        scores.append(score.detach().cpu())
        objectives.append(objective.detach().cpu())
        if step == steps:
            break
        (grad,) = torch.autograd.grad(objective.sum(), images)  # only I's gradient
        rms = grad.pow(2).flatten(1).mean(1).sqrt().clamp(min=1e-12).view(-1, 1, 1, 1)
        with torch.no_grad():
            images += lr * grad / rms
    return ClassModel(images.detach(), targets, torch.stack(scores), torch.stack(objectives))


@dataclass(frozen=True)
class Priors:
    """Yosinski et al. 2015's regularisers (their table: decay 0.0001-0.3, blur every 4-10
    steps with sigma 0.3-1.0, clipping), plus jitter in pixels."""

    jitter: int = 2  # random shift of up to this many pixels per step (both axes)
    decay: float = 0.01  # L2 decay per step: I <- (1 - decay) I
    blur_every: int = 4
    blur_sigma: float = 0.5


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` (kernel radius 2 sigma, reflect padding)."""
    radius = max(1, round(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def regularized_class_model(model: nn.Module, targets: int | Sequence[int],
                            input_size: tuple[int, int, int], *, low: torch.Tensor,
                            high: torch.Tensor, steps: int = 200, lr: float = 0.1,
                            priors: Priors = Priors(), seed: int = 0,
                            device: str | torch.device = "cpu") -> ClassModel:
    """Gradient ascent on the class score ``S_c`` with Yosinski et al.'s priors: each step the
    image is shifted by a random jitter, the gradient of ``S_c`` at the shifted image taken
    and shifted back, a step of size ``lr`` (scaled by the gradient's RMS) taken, then L2
    decay, a blur every ``blur_every`` steps, and clipping to ``[low, high]`` (per channel,
    ``(C,)``: the normalised values of pixel 0 and 255). ``objectives`` equals ``scores``."""
    model.eval()
    targets = [targets] if isinstance(targets, int) else list(targets)
    index = torch.tensor(targets, device=device)
    low, high = low.to(device).view(1, -1, 1, 1), high.to(device).view(1, -1, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(len(targets), *input_size, device=device)
    scores = []
    for step in range(steps + 1):
        dy, dx = (torch.randint(-priors.jitter, priors.jitter + 1, (2,), generator=generator)
                  .tolist() if priors.jitter and step < steps else (0, 0))
        shifted = images.roll((dy, dx), dims=(2, 3)).requires_grad_(True)
        with torch.enable_grad():
            score = model(shifted).gather(1, index[:, None])[:, 0]  # (K,)
        scores.append(score.detach().cpu())
        if step == steps:
            break
        (grad,) = torch.autograd.grad(score.sum(), shifted)
        grad = grad.roll((-dy, -dx), dims=(2, 3))
        rms = grad.pow(2).flatten(1).mean(1).sqrt().clamp(min=1e-12).view(-1, 1, 1, 1)
        with torch.no_grad():
            images = images + lr * grad / rms
            images = images * (1 - priors.decay)
            if priors.blur_every and (step + 1) % priors.blur_every == 0:
                images = gaussian_blur(images, priors.blur_sigma)
            images = torch.maximum(torch.minimum(images, high), low)
    trace = torch.stack(scores)
    return ClassModel(images.detach(), targets, trace, trace.clone())
