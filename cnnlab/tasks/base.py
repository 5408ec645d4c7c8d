"""The task interface, and classification (the default task).

Lecture 002, "Computer Vision Problems": multi-class categorisation (softmax over K classes, one
answer per image), multi-label categorisation, detection, semantic and instance segmentation. A
:class:`Task` tells the training loop which targets to take from a data set, which loss to use,
which metrics to report and which one picks the best checkpoint; and it *declares*, by name, what
the tools show for it (its report sections, picture kinds, evaluation and prediction styles),
which ``viz``, ``evaluate`` and ``predict`` look up in their own tables. Nothing outside this
package compares task names.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from cnnlab.data.base import ImageSet
from cnnlab.errors import ConfigError
from cnnlab.tasks.metrics import ClassifyMeter, Meter


class Task:
    """Multi-class classification: one class per image, softmax + cross-entropy, top-1."""

    name: ClassVar[str] = "classify"
    summary: ClassVar[str] = "one class per image: softmax + cross-entropy (lecture 002)"
    main_metric: ClassVar[str] = "acc"  # the validation metric that picks best.safetensors
    metric_labels: ClassVar[dict[str, str]] = {"acc": "accuracy"}
    output_kind: ClassVar[str] = "class"  # predict's table: class | labels | mask
    evaluation: ClassVar[str] = "classes"  # evaluate's table: classes | dense
    report_sections: ClassVar[tuple[str, ...]] = (
        "config", "summary", "samples", "curves", "classes", "confusion", "errors", "losses",
        "filters", "maps", "patches", "saliency", "evolution")
    picture_kinds: ClassVar[tuple[str, ...]] = (
        "filters", "maps", "top-patches", "saliency", "class-model", "evolution", "errors",
        "top-losses", "curves", "confusion")
    curve_metrics: ClassVar[tuple[str, ...]] = ("acc",)  # what the curves plot, per split
    shardable: ClassVar[bool] = True  # data parallel: each rank scores one shard
    label_offset: ClassVar[int] = 0  # output index of data label c is c + label_offset
    accepts_class_weights: ClassVar[bool] = False
    moves_pixels_with_targets: ClassVar[bool] = True  # may geometric augmentation run?

    def num_outputs(self, classes: list[str]) -> int:
        return len(self.output_names(classes))

    def output_names(self, classes: list[str]) -> list[str]:
        """The name of each model output (saved as the checkpoint's ``classes``)."""
        return list(classes)

    def targets(self, data: ImageSet) -> torch.Tensor:
        return data.labels

    def loss(self, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0):
        return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        """How many samples' worth of the batch is right (summed into the epoch accuracy)."""
        return int((logits.argmax(1) == y).sum())

    def meter(self, num_outputs: int) -> Meter:
        return ClassifyMeter(self)

    def chance_loss(self, targets: torch.Tensor, num_outputs: int) -> float:
        """The training loss of the best prediction that ignores the image: the class
        frequencies of ``targets``, whose cross-entropy is their entropy ``-sum p log p``
        (``log K`` for K balanced classes). A run whose loss stays there learned nothing."""
        counts = torch.bincount(targets.flatten().long().cpu(), minlength=num_outputs)
        return entropy(counts.double())

    def build_model(self, model: torch.nn.Module, num_classes: int,
                    input_size: tuple[int, int, int]) -> torch.nn.Module:
        """The network trained for this task from the zoo's ``model`` (detection: heads on
        its feature maps); ``model`` itself for the image-level and pixel tasks."""
        return model

    def checkpoint_meta(self) -> dict:
        """Extra checkpoint metadata the trained task needs later (COCO category ids)."""
        return {}

    def for_training(self, config, train: ImageSet) -> Task:
        """The task as trained on ``train`` (segmentation: with class weights from it)."""
        return self

    def check(self, config) -> None:
        """Raise ConfigError for settings this task cannot train with (including a model
        whose output has the wrong shape for the task)."""
        if config.class_weights != "none" and not self.accepts_class_weights:
            raise ConfigError(f"--class-weights {config.class_weights} weights a segmentation "
                              f"loss: use it with --task segment")
        if config.augment and not self.moves_pixels_with_targets:
            raise ConfigError(f"--task {self.name}: --augment {config.augment!r} would move the "
                              f"pixels but not their targets; train without --augment")
        check_output_shape(self, config.model, config.model_options)

    def expected_shape(self, batch: int, classes: int, size: tuple[int, int]) -> tuple:
        """The output shape the loss needs: one score per class, ``(B, K)``."""
        return (batch, classes)

    def model_hint(self) -> str:
        from cnnlab.models.segmentation import SEGMENTATION_MODELS

        return (f"use a classifier (e.g. lenet5, resnet20), or --task segment for a "
                f"segmentation model ({', '.join(SEGMENTATION_MODELS)})")

    def input_size(self, config, data: ImageSet, size: tuple[int, int]) -> tuple[int, int]:
        """The model input ``(H, W)``: the model's (or ``--image-size``) unless dense targets
        tie it to the data's own size."""
        return size

    def label_name(self, classes: list[str], label: int) -> str:
        """The name of data label ``label`` among the model's output names ``classes``."""
        return classes[label + self.label_offset]

    def describe(self, data: ImageSet, index: int) -> str:
        """What image ``index`` of ``data`` shows, for captions (``class 7``)."""
        return f"class {data.classes[int(data.labels[index])]}"

    def test_lines(self, metrics: dict) -> list[str]:
        """The task's test metrics beyond the main one, for the end of training."""
        return []


def entropy(weights: torch.Tensor) -> float:
    """``-sum p log p`` (nats) of the distribution proportional to ``weights``.

    Example:
        >>> round(entropy(torch.tensor([1.0, 1.0])), 4)  # log 2
        0.6931
    """
    p = weights.double() / weights.sum().clamp(min=1e-12)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def check_output_shape(task: Task, model: str, options: dict | None = None) -> None:
    """One dry forward of ``model`` on a tiny batch, on the ``meta`` device (shapes only, no
    arithmetic), at the model's own input size; ConfigError when the output shape is not the
    one ``task``'s loss needs. A model that cannot be built or run this way is left to the
    training to report."""
    from cnnlab.models import create, default_input_size

    batch, classes = 2, 3
    try:
        c, *size = default_input_size(model)  # (C, H, W); k-D models (C, L), (C, D, H, W)
        with torch.device("meta"), torch.no_grad():
            net = create(model, num_classes=classes, in_channels=c, input_size=(c, *size),
                         **(options or {}))
            got = tuple(net.eval()(torch.zeros(batch, c, *size)).shape)
    except Exception:  # noqa: BLE001 - unknown options, YAML files...: reported later
        return
    want = task.expected_shape(batch, classes, tuple(size))
    if got != want:
        raise ConfigError(f"--model {model} gives outputs of shape {got} for a batch of shape "
                          f"{(batch, c, *size)} with {classes} classes, but --task {task.name} "
                          f"needs {want}: {task.model_hint()}")


def scene_field(data: ImageSet, field: str, task: str) -> torch.Tensor:
    """A per-image target of a scene set (``present``, ``masks``...), or a ConfigError."""
    value = getattr(data, field, None)
    if value is None:
        raise ConfigError(f"--task {task} needs {field} for every image; {data.name} has one "
                          f"label per image (use a scene set: digit-scenes, mnist-scenes, "
                          f"fashion-scenes)")
    return value
