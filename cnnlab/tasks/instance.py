"""Instance segmentation as a task (lecture 002: "Horse1, Horse2"): every object's own pixels.

The CenterNet detector of :mod:`cnnlab.tasks.detect` with two more heads, trained jointly:
Mask R-CNN's mask head (He et al. 2017: RoIAlign crops of the fused features at each box, a
28x28 mask per class, trained at ground-truth boxes jittered by 10%) and a semantic head (a
class per pixel, Long et al. 2015) for the baseline "detected box intersected with the pixels
of its class". Both are scored with COCO mask AP (pycocotools) side by side; the learned head's
mask AP picks the best checkpoint.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from cnnlab.data.base import ImageSet
from cnnlab.detection.coco import evaluate_detections
from cnnlab.detection.detections import Detections
from cnnlab.detection.inference import centernet_detections
from cnnlab.detection.losses import detector_loss
from cnnlab.detection.packing import semantic_masks, targets_as_scenes, unpack_targets
from cnnlab.errors import ModelError
from cnnlab.tasks.base import Task
from cnnlab.tasks.detect import Detect
from cnnlab.tasks.metrics import Meter
from cnnlab.tasks.segment import median_frequency_weights

MASK_KINDS = ("learned", "baseline")
SEMANTIC_WEIGHT_POWER = 0.5  # sqrt of median-frequency weights (docs/DETECTION.md, phase 1)
MASK_SCORE = 0.1  # masks only for boxes above the heatmap's starting score (the head is a net per box)


class Instance(Detect):
    """Boxes, classes and a mask per object: CenterNet + a RoIAlign mask head + the baseline."""

    name: ClassVar[str] = "instance"
    summary: ClassVar[str] = "a mask per object: CenterNet + Mask R-CNN's mask head"
    main_metric: ClassVar[str] = "mask_ap"
    metric_labels: ClassVar[dict[str, str]] = {
        **Detect.metric_labels, "mask_ap": "mask AP (learned head)",
        "mask_ap50": "mask AP50 (learned head)", "baseline_ap": "mask AP (box and semantic)",
        "baseline_ap50": "mask AP50 (box and semantic)"}
    curve_metrics: ClassVar[tuple[str, ...]] = ("mask_ap", "baseline_ap", "ap")
    masks: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.semantic_weights: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(0)  # the mask head's box jitter

    def for_training(self, config, train: ImageSet) -> Task:
        super().for_training(config, train)
        weights = median_frequency_weights(train.masks, len(train.classes) + 1)
        self.semantic_weights = weights ** SEMANTIC_WEIGHT_POWER
        return self

    def maps(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.network is None:
            raise ModelError("--task instance: the network was not built by the task")
        return self.network.unpack(logits)

    def image_size(self, logits: torch.Tensor) -> tuple[int, int]:
        return tuple(logits.shape[-2:])

    def loss(self, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0):
        device = next(self.network.parameters()).device  # the meter scores CPU outputs
        logits, y = logits.to(device), y.to(device)
        maps = self.maps(logits)
        size = self.image_size(logits)
        truth = unpack_targets(y, size)
        batch = {"targets": self.encode(y, size, maps["heatmap"].shape[1]),
                 "boxes": truth["boxes"], "labels": truth["labels"], "ignore": truth["ignore"],
                 "instances": truth["instances"],
                 "masks": semantic_masks(truth["labels"], truth["instances"])}
        if self.semantic_weights is not None:
            batch["semantic_weights"] = self.semantic_weights.to(logits.device)
        total, _ = detector_loss(self.network, maps, batch, generator=self.generator)
        return total

    def from_logits(self, logits: torch.Tensor) -> dict[str, list[Detections]]:
        """Boxes and both kinds of masks of a packed output (inference mode)."""
        device = next(self.network.parameters()).device  # the meter gets CPU outputs
        with torch.inference_mode():
            found = centernet_detections(self.network, self.maps(logits.float().to(device)),
                                         self.image_size(logits), masks=MASK_KINDS,
                                         mask_threshold=MASK_SCORE)
        return {kind: [d.cpu() for d in items] for kind, items in found.items()}

    def decode(self, logits: torch.Tensor) -> list[Detections]:
        return super().decode(logits.detach())

    @torch.inference_mode()
    def detections(self, model: nn.Module, x: torch.Tensor) -> dict[str, list[Detections]]:
        return self.from_logits(model(x))

    def meter(self, num_outputs: int) -> Meter:
        return InstanceMeter(self)

    def test_lines(self, metrics: dict) -> list[str]:
        return [f"test {self.name}: mask AP50 {metrics['mask_ap50']:.4f} (learned) vs "
                f"{metrics['baseline_ap50']:.4f} (box and semantic); box AP "
                f"{metrics['ap']:.4f}, AP50 {metrics['ap50']:.4f}"]


class InstanceMeter(Meter):
    """Detections with both kinds of masks; box AP and mask AP of each kind at the end."""

    def __init__(self, task: Instance) -> None:
        super().__init__(task)
        self.found: dict[str, list[Detections]] = {}
        self.rows: list[torch.Tensor] = []
        self.right, self.classes = 0, 0
        self.size: tuple[int, int] = (0, 0)

    def update(self, logits, y) -> None:
        with torch.no_grad():
            super().update(logits, y)
        found = self.task.from_logits(logits)
        self.right += int(self.task.images_right(logits, y).sum())
        for kind, items in found.items():
            self.found.setdefault(kind, []).extend(items)
        self.rows.append(y.cpu())
        self.size = self.task.image_size(logits)
        self.classes = self.task.maps(logits)["heatmap"].shape[1]

    def result(self) -> dict:
        names = [str(c) for c in range(self.classes)]
        data = targets_as_scenes(torch.cat(self.rows), names, self.size, instances=True)
        box = evaluate_detections(self.found["boxes"], data)["bbox"]
        learned = evaluate_detections(self.found["learned"], data, ("segm",))["segm"]
        baseline = evaluate_detections(self.found["baseline"], data, ("segm",))["segm"]
        return {"loss": self.loss_sum / self.count, "acc": self.right / max(self.count, 1),
                "ap": box.ap, "ap50": box.ap50, "ap75": box.ap75, "mask_ap": learned.ap,
                "mask_ap50": learned.ap50, "mask_ap75": learned.ap75,
                "baseline_ap": baseline.ap, "baseline_ap50": baseline.ap50}
