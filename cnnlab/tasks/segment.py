"""Semantic segmentation (lecture 002; Long et al. 2015): a softmax over classes per pixel."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from cnnlab.data.base import ImageSet
from cnnlab.errors import ConfigError
from cnnlab.tasks.base import Task, entropy, scene_field
from cnnlab.tasks.metrics import Meter, SegmentMeter


class Segment(Task):
    """A softmax over background + K classes at every pixel; ``weights`` ``(1 + K,)``, when
    given, weight each class's pixels in the cross-entropy (see
    :func:`median_frequency_weights`)."""

    name: ClassVar[str] = "segment"
    summary: ClassVar[str] = "a class per pixel: per-pixel softmax + cross-entropy"
    main_metric: ClassVar[str] = "miou"
    metric_labels: ClassVar[dict[str, str]] = {"miou": "mIoU", "acc": "pixel accuracy"}
    output_kind: ClassVar[str] = "mask"
    evaluation: ClassVar[str] = "dense"
    report_sections: ClassVar[tuple[str, ...]] = (
        "config", "summary", "curves", "segmentation", "filters", "maps", "patches",
        "evolution")
    picture_kinds: ClassVar[tuple[str, ...]] = (
        "filters", "maps", "top-patches", "evolution", "curves", "segmentation",
        "confusion")  # confusion: of pixels, background included
    curve_metrics: ClassVar[tuple[str, ...]] = ("miou", "acc")
    shardable: ClassVar[bool] = False
    label_offset: ClassVar[int] = 1  # mask value c + 1 = class c; 0 = background
    accepts_class_weights: ClassVar[bool] = True
    moves_pixels_with_targets: ClassVar[bool] = False

    def __init__(self, weights: torch.Tensor | None = None) -> None:
        self.weights = weights

    def loss(self, logits, y, label_smoothing: float = 0.0):
        w = None if self.weights is None else self.weights.to(logits.device)
        return F.cross_entropy(logits.float(), y, weight=w, label_smoothing=label_smoothing)

    def output_names(self, classes: list[str]) -> list[str]:
        return ["background", *classes]

    def targets(self, data: ImageSet) -> torch.Tensor:
        return scene_field(data, "masks", self.name)

    def correct(self, logits, y) -> float:
        return float((logits.argmax(1) == y).float().mean((1, 2)).sum())

    def meter(self, num_outputs: int) -> Meter:
        return SegmentMeter(self, num_outputs)

    def chance_loss(self, targets: torch.Tensor, num_outputs: int) -> float:
        """Per-pixel cross-entropy of predicting the pixel class frequencies everywhere; with
        class weights ``w`` the best constant prediction is ``w_c f_c`` normalised, and the
        weighted mean loss is that distribution's entropy."""
        counts = torch.bincount(targets.flatten().long().cpu(), minlength=num_outputs).double()
        if self.weights is not None:
            counts = counts * self.weights.double().cpu()
        return entropy(counts)

    def for_training(self, config, train: ImageSet) -> Task:
        if config.class_weights != "median":
            return self
        masks = self.targets(train)
        return Segment(median_frequency_weights(masks, len(self.output_names(train.classes))))

    def expected_shape(self, batch: int, classes: int, size: tuple[int, int]) -> tuple:
        """Scores for every class at every pixel: ``(B, K, H, W)``."""
        return (batch, classes, *size)

    def model_hint(self) -> str:
        from cnnlab.models.segmentation import SEGMENTATION_MODELS

        return f"use a segmentation model: {', '.join(SEGMENTATION_MODELS)}"

    def input_size(self, config, data: ImageSet, size: tuple[int, int]) -> tuple[int, int]:
        own = data.image_shape[1:]
        if config.image_size and (config.image_size, config.image_size) != own:
            raise ConfigError(f"--task segment trains at the scenes' own size {own[0]}x{own[1]} "
                              f"(masks are not resized): drop --image-size {config.image_size} "
                              f"or make scenes of that size (e.g. {config.data.split(':')[0]}:"
                              f"canvas={config.image_size})")
        return own

    def describe(self, data: ImageSet, index: int) -> str:
        return f"class {data.classes[int(data.labels[index])]}"

    def test_lines(self, metrics: dict) -> list[str]:
        return [f"test {self.name}: pixel accuracy {metrics['acc']:.4f}"]


def median_frequency_weights(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class weights ``median(f) / f_c`` from the pixel frequencies ``f_c`` of ``masks``
    (Eigen & Fergus 2015, used by SegNet, Badrinarayanan et al. 2017, 3.2): rare classes count
    more. Classes absent from ``masks`` get the largest weight.

    Example:
        >>> median_frequency_weights(torch.tensor([[0, 0, 0, 1], [0, 0, 2, 2]]), 3)
        tensor([0.4000, 2.0000, 1.0000])
    """
    freq = torch.bincount(masks.flatten().long(), minlength=num_classes).double()
    freq = freq / freq.sum()
    seen = freq > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[seen] = freq[seen].median() / freq[seen]
    weights[~seen] = weights[seen].max() if seen.any() else 1.0
    return weights.float()
