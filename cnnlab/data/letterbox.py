"""Letterboxing: any image onto a square canvas without distortion, reversibly.

The longer side is scaled to the canvas side, the image centred, the rest black; the transform
``(scale_x, scale_y, pad_x, pad_y)`` maps canvas pixels back: ``x = (x' - pad_x) / scale_x``
(the two scales differ slightly because the scaled sides are rounded to whole pixels).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def letterbox_image(pixels: np.ndarray, size: int) -> tuple[torch.Tensor, tuple]:
    """``(H, W, C)`` uint8 -> ``(C, size, size)`` uint8, longer side scaled to ``size`` and the
    image centred; returns it and ``(scale_x, scale_y, pad_x, pad_y)``."""
    h, w = pixels.shape[:2]
    new_w, new_h = max(1, round(w * size / max(h, w))), max(1, round(h * size / max(h, w)))
    image = torch.tensor(pixels).permute(2, 0, 1)[None].float()  # (1, C, H, W), a copy
    image = F.interpolate(image, size=(new_h, new_w), mode="bilinear", align_corners=False,
                          antialias=new_h < h)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = torch.zeros(image.shape[1], size, size, dtype=torch.uint8)
    canvas[:, pad_y:pad_y + new_h, pad_x:pad_x + new_w] = image[0].round().clamp(0, 255)
    return canvas, (new_w / w, new_h / h, pad_x, pad_y)


def letterbox_mask(mask: torch.Tensor, transform: tuple, size: int) -> torch.Tensor:
    """An original-pixel bool mask placed on the letterbox canvas like its image."""
    sx, sy, px, py = transform
    h, w = mask.shape
    new_w, new_h = max(1, round(w * sx)), max(1, round(h * sy))
    small = F.interpolate(mask[None, None].float(), size=(new_h, new_w),
                          mode="bilinear", align_corners=False)[0, 0] >= 0.5
    canvas = torch.zeros(size, size, dtype=torch.bool)
    canvas[py:py + new_h, px:px + new_w] = small
    return canvas


def original_boxes(boxes: torch.Tensor, transform: tuple, size: tuple[int, int]) -> torch.Tensor:
    """``(D, 4)`` xyxy on the canvas -> xyxy in the original ``size`` ``(h, w)`` (clipped).

    Example:
        >>> original_boxes(torch.tensor([[4., 2., 8., 6.]]), (0.5, 0.5, 0, 2), (8, 16))
        tensor([[ 8.,  0., 16.,  8.]])
    """
    sx, sy, px, py = transform
    h, w = size
    b = boxes.double()
    x = ((b[:, 0::2] - px) / sx).clamp(0, w)
    y = ((b[:, 1::2] - py) / sy).clamp(0, h)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1).float()


def original_masks(masks: torch.Tensor, transform: tuple, size: tuple[int, int]) -> torch.Tensor:
    """``(D, S, S)`` masks on the canvas -> bool ``(D, h, w)`` in the original pixels."""
    sx, sy, px, py = transform
    h, w = size
    inner = masks[:, round(py):round(py + h * sy), round(px):round(px + w * sx)]
    if inner.shape[0] == 0:
        return torch.zeros(0, h, w, dtype=torch.bool)
    return F.interpolate(inner[:, None].float(), size=(h, w), mode="bilinear",
                         align_corners=False)[:, 0] >= 0.5
