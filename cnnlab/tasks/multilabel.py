"""Multi-label categorisation (lecture 002): K independent yes/no answers per image."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from cnnlab.data.base import ImageSet
from cnnlab.errors import ConfigError
from cnnlab.tasks.base import Task, scene_field
from cnnlab.tasks.metrics import THRESHOLD, Meter, MultiLabelMeter


class MultiLabel(Task):
    """K independent sigmoid outputs trained with binary cross-entropy; a class is predicted
    present where its sigmoid is at least ``threshold``."""

    name: ClassVar[str] = "multilabel"
    summary: ClassVar[str] = "a set of classes per image: sigmoid + binary cross-entropy"
    main_metric: ClassVar[str] = "map"
    metric_labels: ClassVar[dict[str, str]] = {"map": "mAP", "acc": "exact-set accuracy",
                                               "f1": "F1"}
    output_kind: ClassVar[str] = "labels"
    evaluation: ClassVar[str] = "dense"
    report_sections: ClassVar[tuple[str, ...]] = (
        "config", "summary", "curves", "precision", "labels", "filters", "maps", "patches",
        "evolution")
    picture_kinds: ClassVar[tuple[str, ...]] = (
        "filters", "maps", "top-patches", "saliency", "class-model", "evolution", "curves",
        "errors")  # errors: the scenes whose label set is wrong
    curve_metrics: ClassVar[tuple[str, ...]] = ("map", "acc")
    shardable: ClassVar[bool] = False

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = check_threshold(threshold)

    def targets(self, data: ImageSet) -> torch.Tensor:
        return scene_field(data, "present", self.name)

    def loss(self, logits, y, label_smoothing: float = 0.0):
        return F.binary_cross_entropy_with_logits(logits.float(), y.float())

    def correct(self, logits, y) -> float:
        return float(((logits.float().sigmoid() >= self.threshold) == y.bool()).all(1).sum())

    def meter(self, num_outputs: int) -> Meter:
        return MultiLabelMeter(self)

    def chance_loss(self, targets: torch.Tensor, num_outputs: int) -> float:
        """Mean binary cross-entropy of predicting each class's frequency ``p_k`` for every
        image: the mean over classes of ``-p log p - (1 - p) log (1 - p)``."""
        p = targets.double().mean(0).clamp(1e-12, 1 - 1e-12).cpu()
        return float(-(p * p.log() + (1 - p) * (1 - p).log()).mean())

    def describe(self, data: ImageSet, index: int) -> str:
        return f"labels {{{', '.join(label_set(data.present[index], data.classes))}}}"

    def test_lines(self, metrics: dict) -> list[str]:
        return [f"test {self.name}: exact-set accuracy {metrics['acc']:.4f}, "
                f"F1 {metrics['f1']:.4f}"]


def check_threshold(threshold: float) -> float:
    """The multilabel decision threshold, which must lie strictly between 0 and 1."""
    if not 0 < threshold < 1:
        raise ConfigError(f"--threshold {threshold}: expected a value between 0 and 1 "
                          f"(exclusive), e.g. 0.5")
    return threshold


def label_set(flags: torch.Tensor, classes: list[str]) -> list[str]:
    """``(K,)`` booleans -> the names of the classes that are on.

    Example:
        >>> label_set(torch.tensor([True, False, True]), ["cat", "dog", "car"])
        ['cat', 'car']
    """
    return [classes[k] for k in flags.nonzero().flatten().tolist()]
