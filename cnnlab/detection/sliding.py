"""The sliding-window detector: a patch classifier with a background class, run everywhere.

Before single-pass detectors, detection was classification of windows (lecture 002's sliding
window, there for segmentation; Sermanet et al. 2014, OverFeat, for detection): crop square
windows of ``sizes`` (20 and 28 px) every ``stride`` (4) px, resize each to the classifier's
input (28x28), score ``K`` classes + background, keep each window's best class, and remove
duplicates by greedy NMS at IoU 0.5. Each window costs a full classifier pass -- no computation is
shared between overlapping windows -- which is what :mod:`cnnlab.detection.decode`'s
single-pass detectors avoid. A square window is a poor box for a thin digit; with
``regress=True`` the classifier also predicts the box inside its window (OverFeat's regressor).

Training windows (:func:`assign_windows`): a window is an example of class ``c`` when it holds
>= 70% of an object of class ``c``, its centre is within ``stride`` px of the object's centre
and the object's longer side is at least half the window; background when it holds < 30% of
every object; otherwise (and around ignore regions) it is not used.
"""

from __future__ import annotations

import torch

from cnnlab.detection.detections import Detections
from cnnlab.detection.nms import batched_nms, box_area, xywh_to_xyxy
from cnnlab.layers.roi import roi_align

WINDOW_SIZES = (20, 28)
WINDOW_STRIDE = 4
WINDOW_INPUT = 28  # every window is resampled to this side for the classifier
POSITIVE_COVER, NEGATIVE_COVER = 0.7, 0.3


def window_boxes(image_size: tuple[int, int], sizes: tuple[int, ...] = WINDOW_SIZES,
                 stride: int = WINDOW_STRIDE) -> torch.Tensor:
    """Every window as xyxy ``(W, 4)``: for 64x64, sizes 20 and 28, stride 4: 144 + 100."""
    height, width = image_size
    boxes = []
    for s in sizes:
        ys = torch.arange(0, height - s + 1, stride, dtype=torch.float32)
        xs = torch.arange(0, width - s + 1, stride, dtype=torch.float32)
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        boxes.append(torch.stack([x, y, x + s, y + s], dim=-1).reshape(-1, 4))
    return torch.cat(boxes)


def crop_windows(images: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor,
                 side: int = WINDOW_INPUT) -> torch.Tensor:
    """Windows ``(R, 4)`` xyxy of images ``(B, C, H, W)`` resampled to ``(R, C, side, side)``
    (bilinear at the pixel centres of the ``side x side`` grid: a ``side`` px window at integer
    position is copied exactly)."""
    return roi_align(images, boxes, batch_index, side, 1.0, sampling_ratio=1)


def assign_windows(windows: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                   num_classes: int, *, stride: int = WINDOW_STRIDE,
                   ignore: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Training label of every window of every image (see the module docstring).

    ``windows`` ``(W, 4)`` xyxy; ``boxes`` ``(N, M, 4)`` xywh with ``labels`` ``(N, M)`` (-1
    absent). Returns ``target`` ``(N, W)`` (class, ``num_classes`` = background, -1 = unused)
    and the box each positive window should regress to, as window fractions ``(N, W, 4)``.
    """
    gt = xywh_to_xyxy(boxes)  # (N, M, 4)
    present = labels >= 0
    w = windows[None, :, None, :]  # (1, W, 1, 4)
    g = gt[:, None, :, :]  # (N, 1, M, 4)
    inter = (torch.minimum(w[..., 2:], g[..., 2:]) - torch.maximum(w[..., :2], g[..., :2])
             ).clamp(min=0).prod(-1)  # (N, W, M)
    area = box_area(gt.reshape(-1, 4)).view(gt.shape[:2])[:, None, :]
    cover = torch.where(present[:, None, :], inter / area.clamp(min=1e-6), 0.0)
    side = windows[:, 2] - windows[:, 0]  # (W,)
    centre_w = (windows[:, :2] + windows[:, 2:]) / 2
    centre_g = (gt[..., :2] + gt[..., 2:]) / 2
    near = ((centre_w[None, :, None] - centre_g[:, None]).abs() <= stride).all(-1)
    big = (gt[..., 2:] - gt[..., :2]).amax(-1)[:, None, :] >= side[None, :, None] / 2
    usable = present & ~ignore if ignore is not None else present
    good = (cover >= POSITIVE_COVER) & near & big & usable[:, None, :]  # (N, W, M)
    best = torch.where(good, cover, -1.0).argmax(-1)  # (N, W)
    positive = good.any(-1)
    target = torch.full(positive.shape, -1, dtype=torch.long)
    target[(cover < NEGATIVE_COVER).all(-1)] = num_classes
    target[positive] = labels.gather(1, best)[positive]
    matched = gt.gather(1, best[..., None].expand(-1, -1, 4))  # (N, W, 4)
    fraction = ((matched - windows[None, :, [0, 1, 0, 1]]) / side[None, :, None]).clamp(0, 1)
    return target, fraction


def sample_windows(target: torch.Tensor, negatives: int, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image index, window index)`` of every positive window and ``negatives`` times as
    many background windows (at least one per image), drawn at random."""
    n, w = target.shape
    num_classes = int(target.max())
    pos_i, pos_w = (target.ge(0) & target.lt(num_classes)).nonzero(as_tuple=True)
    per_image = torch.bincount(pos_i, minlength=n).clamp(min=1) * negatives  # (N,)
    noise = torch.rand(n, w, generator=generator)
    noise[target != num_classes] = 2.0  # only background windows can be drawn
    rank = noise.argsort(1).argsort(1)  # (N, W): position of each window in a random order
    neg_i, neg_w = ((rank < per_image[:, None]) & (noise < 2)).nonzero(as_tuple=True)
    return torch.cat([pos_i, neg_i]), torch.cat([pos_w, neg_w])


@torch.inference_mode()
def detect_windows(classifier: torch.nn.Module, images: torch.Tensor, *,
                   sizes: tuple[int, ...] = WINDOW_SIZES, stride: int = WINDOW_STRIDE,
                   threshold: float = 0.05, iou_threshold: float = 0.5, top_k: int = 100,
                   chunk: int = 8192) -> list[Detections]:
    """Run the window classifier on every window of ``images`` ``(B, C, H, W)`` (float, as
    the classifier was trained), then NMS per class. Boxes are the windows, or the regressed
    boxes when the classifier has a box head."""
    b = images.shape[0]
    windows = window_boxes(tuple(images.shape[-2:]), sizes, stride)  # (W, 4)
    count = len(windows)
    all_boxes = windows.repeat(b, 1)  # (B*W, 4)
    index = torch.arange(b).repeat_interleave(count)
    probs, regressed = [], []
    for start in range(0, len(all_boxes), chunk):
        crops = crop_windows(images, all_boxes[start:start + chunk], index[start:start + chunk],
                             getattr(classifier, "window", WINDOW_INPUT))
        scores, box = classifier(crops)
        probs.append(scores.float().softmax(-1))
        regressed.append(box.float() if box is not None else None)
    probs = torch.cat(probs)  # (B*W, K + 1)
    boxes = all_boxes
    if regressed[0] is not None:
        side = (all_boxes[:, 2] - all_boxes[:, 0])[:, None]
        boxes = all_boxes[:, [0, 1, 0, 1]] + torch.cat(regressed) * side
    score, label = probs[:, :-1].max(-1)  # best object class of each window
    result = []
    for i in range(b):
        part = slice(i * count, (i + 1) * count)
        keep = score[part] > threshold
        found = Detections(boxes[part][keep], score[part][keep], label[part][keep])
        found = found.take(batched_nms(found.boxes, found.scores, found.labels, iou_threshold))
        result.append(found.take(torch.arange(min(top_k, len(found)))))
    return result
