"""Which pixels matter for a class: gradient saliency and Grad-CAM.

* Saliency (Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional networks", sec. 3):
  the class score ``S_c`` (the logit, before the softmax) is linearised around the image,
  ``S_c(I) ~ w^T I + b`` with ``w = dS_c/dI``; the map is ``max_channel |w|`` ``(H, W)``.
* Grad-CAM (Selvaraju et al. 2017) for a conv layer with maps ``A`` ``(K, H', W')``: weights
  ``alpha_k = mean_ij dS_c/dA_kij``, map ``ReLU(sum_k alpha_k A_k)`` ``(H', W')``, upsampled to the
  input size for display. Default layer: the last convolution (lecture 001, "do the activations
  occur in meaningful positions?").

Example:
    >>> from cnnlab.models import create
    >>> model = create("lenet5", num_classes=10, in_channels=1).eval()
    >>> tuple(saliency(model, torch.randn(2, 1, 32, 32)).shape)
    (2, 32, 32)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis.features import capture
from cnnlab.errors import ModelError
from cnnlab.viz.grids import normalize_tiles
from cnnlab.viz.maps import conv_layers, resolve_layer


def class_scores(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """``S_c`` per sample ``(B,)``: the logit of ``target`` (an int, a ``(B,)`` tensor, or None
    for each sample's predicted class)."""
    if target is None:
        target = logits.argmax(1)
    target = torch.as_tensor(target, device=logits.device).expand(logits.shape[0])
    return logits.gather(1, target[:, None])[:, 0]


def input_gradient(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """``dS_c/dI`` ``(B, C, H, W)`` for the normalised input ``x``; samples are independent
    (eval mode), so the gradient of the summed scores gives each sample's own gradient."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    scores = class_scores(model(x), target)  # (B,)
    (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad


def saliency(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """Simonyan et al. 2014's image-specific class saliency ``(B, H, W)``: the largest
    absolute input gradient over the colour channels."""
    return input_gradient(model, x, target).abs().amax(dim=1)


def grad_cam(model: nn.Module, x: torch.Tensor, target=None, *, layer: str | None = None,
             upsample: bool = True) -> torch.Tensor:
    """Grad-CAM maps ``(B, H, W)`` (input size; ``(B, H', W')`` with ``upsample=False``),
    non-negative, for ``layer`` (default: the last convolution)."""
    model.eval()
    path = resolve_layer(model, layer, default="last")
    with torch.enable_grad(), capture(model, [path]) as store:
        scores = class_scores(model(x.detach()), target)  # (B,)
        maps = store[path]  # A: (B, K, H', W')
        if maps.dim() != 4:
            raise ModelError(f"Grad-CAM needs feature maps, but layer {layer or path} outputs "
                             f"{tuple(maps.shape)}; choose a convolution: "
                             f"{_conv_choices(model)}")
        (grads,) = torch.autograd.grad(scores.sum(), maps)
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (B, K, 1, 1)
    cam = F.relu((alpha * maps).sum(1)).detach()  # (B, H', W')
    if upsample:
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear",
                            align_corners=False)[:, 0]
    return cam


def _conv_choices(model: nn.Module) -> str:
    convs = conv_layers(model)
    return ", ".join(f"conv{i + 1} ({p})" for i, p in enumerate(convs)) or "(none)"


def heat_colours(h: torch.Tensor) -> torch.Tensor:
    """Heat in [0, 1] ``(B, 1, H, W)`` -> RGB ``(B, 3, H, W)``: black, red, yellow."""
    return torch.cat([h.clamp(max=0.5) * 2, (h - 0.5).clamp(min=0) * 2, torch.zeros_like(h)], 1)


def heat_overlay(image: torch.Tensor, heat: torch.Tensor, *, alpha: float = 0.55) -> torch.Tensor:
    """An image ``(C, H, W)`` in [0, 1] with a heat map ``(H, W)`` blended on top in red-yellow:
    ``(3, H, W)`` in [0, 1]."""
    grey = image.mean(0, keepdim=True).expand(3, -1, -1) if image.shape[0] == 1 else image
    h = normalize_tiles(heat[None, None])[0, 0]  # (H, W) in [0, 1]
    colour = heat_colours(h[None, None])[0]
    return (1 - alpha * h) * grey + alpha * h * colour
