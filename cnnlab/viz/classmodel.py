"""Class-model visualisation (Simonyan, Vedaldi & Zisserman 2014, sec. 2; lecture 001, "What is
a 'Convnet dog', however?": the dumbbell, cup, dalmatian, bell pepper, lemon and husky images).

Find the image that a trained network scores highest for class ``c``::

    I* = argmax_I  S_c(I) - lambda * ||I||_2^2

by gradient ascent from the zero image, where ``S_c`` is the unnormalised class score (the
logit: maximising the softmax could instead push the other classes down) and ``I`` lives in the
model's normalised input space (zero = the training mean image, as in the paper).

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
