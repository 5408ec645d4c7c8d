"""Sliding window vs fully convolutional: the same per-pixel output, measured.

Lecture 002, "Semantic Segmentation: Sliding Window" (Farabet et al. 2013): classify the patch
around every pixel with a patch classifier. "Problem: VERY inefficient, no reuse of computations
for overlapping patches." A patch classifier written as convolutions
(:class:`cnnlab.models.segmentation.PatchNet`, Long et al. 2015's "convolutionalization") gives
the same scores for every pixel in one pass over the image, sharing the computation of
overlapping patches. :func:`compare_sliding_window` runs both on the same images and reports
the time of each, their ratio, the largest difference between the scores, and the pixel
accuracy and mean IoU (identical by construction, up to float rounding).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.errors import ModelError
from cnnlab.models.segmentation import PatchNet
from cnnlab.train.tasks import confusion_matrix, segmentation_metrics


@torch.inference_mode()
def sliding_window_scores(model: PatchNet, images: torch.Tensor, *,
                          chunk: int = 4096) -> torch.Tensor:
    """Classify the ``P x P`` patch centred on every pixel, one patch at a time (batched).

    ``images`` float ``(B, C, H, W)`` (already normalised) -> scores ``(B, K, H, W)``. The image
    is padded by ``P // 2`` like :meth:`PatchNet.segment` does, so border pixels have patches.

    Example:
        >>> from cnnlab.models import create
        >>> net = create("patchnet", num_classes=3).eval()
        >>> sliding_window_scores(net, torch.rand(1, 1, 16, 16)).shape
        torch.Size([1, 3, 16, 16])
    """
    if not isinstance(model, PatchNet):
        raise ModelError(f"the sliding window needs a patch classifier (model 'patchnet'), got "
                         f"{type(model).__name__}")
    b, c, h, w = images.shape
    p, r = model.patch, model.patch // 2
    padded = F.pad(images, (r, r, r, r), mode="replicate")  # (B, C, H + 2r, W + 2r)
    patches = F.unfold(padded, p)  # (B, C*P*P, H*W): one column per pixel
    patches = patches.transpose(1, 2).reshape(b * h * w, c, p, p)  # (B*H*W, C, P, P)
    scores = torch.cat([model.classify_patches(patches[i:i + chunk])
                        for i in range(0, len(patches), chunk)])  # (B*H*W, K)
    return scores.view(b, h, w, -1).permute(0, 3, 1, 2)  # (B, K, H, W)


@dataclass
class SlidingComparison:
    """Timings (seconds for all images) and agreement of the two ways of computing the scores."""

    images: int
    size: tuple[int, int]
    patch: int
    sliding_s: float
    fcn_s: float
    max_abs_diff: float
    same_argmax: float  # fraction of pixels where both predict the same class
    pixel_acc: float  # of the sliding window (the FCN's is the same up to rounding)
    miou: float

    @property
    def ratio(self) -> float:
        """How many times slower the sliding window is."""
        return self.sliding_s / max(self.fcn_s, 1e-12)


@torch.inference_mode()
def compare_sliding_window(model: PatchNet, images: torch.Tensor,
                           masks: torch.Tensor | None = None) -> SlidingComparison:
    """Time the sliding window and the fully convolutional pass on ``images`` ``(B, C, H, W)``
    (normalised floats); score both against ``masks`` ``(B, H, W)`` when given."""
    model.eval()
    started = time.perf_counter()
    sliding = sliding_window_scores(model, images)
    sliding_s = time.perf_counter() - started
    started = time.perf_counter()
    dense = model(images)  # (B, K, H, W) in one pass
    fcn_s = time.perf_counter() - started
    pred = sliding.argmax(1)
    metrics = {"acc": float("nan"), "miou": float("nan")}
    if masks is not None:
        metrics = segmentation_metrics(confusion_matrix(pred, masks, sliding.shape[1]))
    return SlidingComparison(
        images.shape[0], tuple(images.shape[-2:]), model.patch, sliding_s, fcn_s,
        float((sliding - dense).abs().max()), float((pred == dense.argmax(1)).float().mean()),
        metrics["acc"], metrics["miou"])


def compare_run(run: str, *, data: str | None = None, count: int = 16,
                device: str = "cpu") -> SlidingComparison:
    """:func:`compare_sliding_window` for a trained ``patchnet`` run on ``count`` test scenes.

    Example:
        >>> compare_run("runs/patchnet").ratio  # doctest: +SKIP
    """
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import Preprocess, to_batch_source
    from cnnlab.train.checkpoint import load_model

    model, meta = load_model(run, device=device)
    config = meta.get("config", {})
    test = load_dataset(data or config["data"], "test", root=config.get("data_root"))
    test = test.subset(torch.arange(min(count, len(test))))
    source = to_batch_source(test, Preprocess.from_dict(meta["preprocess"]),
                             batch_size=len(test), device=torch.device(device))
    images, _ = next(source.batches())
    return compare_sliding_window(model, images, test.masks.to(device))
