"""Sliding window vs fully convolutional: the same per-pixel output, measured.

Lecture 002, "Semantic Segmentation: Sliding Window" (Farabet et al. 2013): classify the patch
around every pixel with a patch classifier. "Problem: VERY inefficient, no reuse of computations
for overlapping patches." A patch classifier written as convolutions
(:class:`cnnlab.models.segmentation.PatchNet`, Long et al. 2015's "convolutionalization") gives
the same scores for every pixel in one pass over the image, sharing the computation of
overlapping patches. :func:`compare_sliding_window` runs both on the same images and reports
the time of each (median of ``repeats`` timed runs after an untimed warm-up), their ratio, the
largest difference between the scores, and the pixel accuracy and mean IoU of both (identical by
construction, up to float rounding). ``cnnlab sliding RUN`` prints it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from cnnlab.data.request import DataRequest
from cnnlab.errors import ConfigError, ModelError
from cnnlab.models.segmentation import PatchNet
from cnnlab.tasks.metrics import confusion_matrix, segmentation_metrics


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
    sliding_s: float  # median of the timed runs
    fcn_s: float
    max_abs_diff: float
    same_argmax: float  # fraction of pixels where both predict the same class
    pixel_acc: float  # of the sliding window
    miou: float
    fcn_pixel_acc: float = float("nan")  # of the fully convolutional pass
    fcn_miou: float = float("nan")
    sliding_times: list[float] = field(default_factory=list)  # every timed run, seconds
    fcn_times: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """How many times slower the sliding window is."""
        return self.sliding_s / max(self.fcn_s, 1e-12)


def timed(function: Callable[[], torch.Tensor], repeats: int) -> tuple[torch.Tensor, list]:
    """``function()`` once untimed (warm-up: allocations, kernel choice), then ``repeats`` timed
    calls; returns the last result and the seconds of each timed call."""
    result = function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return result, times


@torch.inference_mode()
def compare_sliding_window(model: PatchNet, images: torch.Tensor,
                           masks: torch.Tensor | None = None, *,
                           repeats: int = 3) -> SlidingComparison:
    """Time the sliding window and the fully convolutional pass on ``images`` ``(B, C, H, W)``
    (normalised floats), each the median of ``repeats`` runs after a warm-up; score both
    against ``masks`` ``(B, H, W)`` when given."""
    if repeats < 1:
        raise ModelError(f"repeats={repeats}: expected at least 1 timed run")
    model.eval()
    sliding, sliding_times = timed(lambda: sliding_window_scores(model, images), repeats)
    dense, fcn_times = timed(lambda: model(images), repeats)  # (B, K, H, W) in one pass
    pred, dense_pred = sliding.argmax(1), dense.argmax(1)
    nan = {"acc": float("nan"), "miou": float("nan")}
    metrics, fcn_metrics = nan, nan
    if masks is not None:
        k = sliding.shape[1]
        metrics = segmentation_metrics(confusion_matrix(pred, masks, k))
        fcn_metrics = segmentation_metrics(confusion_matrix(dense_pred, masks, k))
    return SlidingComparison(
        images.shape[0], tuple(images.shape[-2:]), model.patch,
        statistics.median(sliding_times), statistics.median(fcn_times),
        float((sliding - dense).abs().max()), float((pred == dense_pred).float().mean()),
        metrics["acc"], metrics["miou"], fcn_metrics["acc"], fcn_metrics["miou"],
        sliding_times, fcn_times)


def compare_run(run: str, *, data: str | None = None, count: int = 16, device: str = "cpu",
                repeats: int = 3, which: str = "best") -> SlidingComparison:
    """:func:`compare_sliding_window` for a trained ``patchnet`` run on ``count`` test scenes.

    Example:
        >>> compare_run("runs/patchnet").ratio  # doctest: +SKIP
    """
    from cnnlab.data.pipeline import Preprocess, to_batch_source
    from cnnlab.runs.reader import load_model

    if count < 1:
        raise ConfigError(f"--scenes {count}: expected at least 1 scene")
    model, meta = load_model(run, which=which, device=device)
    if not isinstance(model, PatchNet):
        raise ConfigError(f"{run}: the sliding window needs a patch classifier: a run trained "
                          f"with --model patchnet --task segment, not {type(model).__name__}")
    config = meta.get("config", {})
    test = DataRequest.of(data).with_defaults(config["data"], config.get("data_root")).load("test")
    test = test.subset(torch.arange(min(count, len(test))))
    source = to_batch_source(test, Preprocess.from_dict(meta["preprocess"]),
                             batch_size=len(test), device=torch.device(device))
    images, _ = next(source.batches())
    return compare_sliding_window(model, images, test.masks.to(device), repeats=repeats)


def format_comparison(r: SlidingComparison) -> str:
    """The lines ``cnnlab sliding`` prints."""
    def times(values: list[float]) -> str:
        return ", ".join(f"{t:.3f}" for t in values)

    pixels = r.images * r.size[0] * r.size[1]
    return "\n".join([
        f"{r.images} scenes of {r.size[0]}x{r.size[1]}, {r.patch}x{r.patch} patches "
        f"({pixels:,} patches for the sliding window); median of {len(r.sliding_times)} timed "
        f"runs after a warm-up",
        f"sliding window       {r.sliding_s:8.3f} s  (runs: {times(r.sliding_times)})  "
        f"pixel acc {100 * r.pixel_acc:.2f}%  mean IoU {r.miou:.4f}",
        f"fully convolutional  {r.fcn_s:8.3f} s  (runs: {times(r.fcn_times)})  "
        f"pixel acc {100 * r.fcn_pixel_acc:.2f}%  mean IoU {r.fcn_miou:.4f}",
        f"ratio {r.ratio:.1f}x slower for the sliding window",
        f"scores agree: largest difference {r.max_abs_diff:.2e}, same class at "
        f"{100 * r.same_argmax:.2f}% of pixels"])
