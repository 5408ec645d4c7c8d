"""Object detection as a task (lecture 002: "Horse (x, y, w, h)"): CenterNet on any backbone.

Zhou et al. 2019, "Objects as Points": the backbone's maps (``feature_info()``, e.g. fcn, segnet,
unet) are fused to stride 4, where per-class centre heatmaps (penalty-reduced focal loss), box
sizes and sub-pixel offsets (L1) are predicted; decoding keeps 3x3-max-pool peaks, top 100, no
NMS. The targets, losses and decoding are :mod:`cnnlab.detection`'s; the main metric is COCO
box AP (pycocotools), with AP50 and AP75 beside it. Guide: docs/DETECTION.md.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from cnnlab.data.base import ImageSet
from cnnlab.detection.coco import evaluate_detections
from cnnlab.detection.decode import decode_centernet, decode_padded
from cnnlab.detection.detections import Detections
from cnnlab.detection.losses import centernet_loss
from cnnlab.detection.nms import xywh_to_xyxy
from cnnlab.detection.packing import pack_targets, targets_as_scenes, unpack_targets
from cnnlab.detection.targets import encode_centernet
from cnnlab.errors import ConfigError, ModelError
from cnnlab.models import create, default_input_size
from cnnlab.models.detection import Detector, PackedCenterNet, check_strides, feature_backbone
from cnnlab.tasks.base import Task, scene_field
from cnnlab.tasks.metrics import Meter

MIN_RADIUS = 1  # heatmap radius floor in cells: +0.02 AP on mnist-scenes (docs/DETECTION.md)
RIGHT_SCORE = 0.3  # "images all right": detections scoring this much count as answers


class Detect(Task):
    """Boxes and classes of every object: CenterNet heads on a feature backbone."""

    name: ClassVar[str] = "detect"
    summary: ClassVar[str] = "a box and class per object: CenterNet (objects as points)"
    main_metric: ClassVar[str] = "ap"
    metric_labels: ClassVar[dict[str, str]] = {
        "ap": "box AP", "ap50": "box AP50", "ap75": "box AP75",
        "acc": f"images with every object found (IoU >= 0.5, score >= {RIGHT_SCORE})"}
    output_kind: ClassVar[str] = "boxes"
    evaluation: ClassVar[str] = "detection"
    report_sections: ClassVar[tuple[str, ...]] = (
        "config", "summary", "curves", "detection", "filters")
    picture_kinds: ClassVar[tuple[str, ...]] = ("filters", "curves", "saliency",
                                                "gradcam")
    curve_metrics: ClassVar[tuple[str, ...]] = ("ap", "ap50")
    shardable: ClassVar[bool] = False
    moves_pixels_with_targets: ClassVar[bool] = False
    masks: ClassVar[bool] = False  # instance segmentation: mask and semantic heads too
    iou_types: ClassVar[tuple[str, ...]] = ("bbox",)

    def __init__(self) -> None:
        self.network: PackedCenterNet | None = None  # set by build_model (the mask head's)
        self.category_ids: list[int] | None = None  # a COCO folder's, kept in the checkpoint

    def for_training(self, config, train: ImageSet) -> Task:
        ids = getattr(train, "category_ids", None)
        self.category_ids = [int(i) for i in ids] if ids else None
        return self

    def checkpoint_meta(self) -> dict:
        return {"category_ids": self.category_ids} if self.category_ids else {}

    def targets(self, data: ImageSet) -> torch.Tensor:
        scene_field(data, "boxes", self.name)
        if self.masks:
            scene_field(data, "instances", self.name)
        return pack_targets(data, instances=self.masks)

    def build_model(self, backbone: nn.Module, num_classes: int,
                    input_size: tuple[int, int, int]) -> nn.Module:
        """CenterNet heads on ``backbone`` (ModelError when it has no usable feature maps)."""
        detector = Detector(backbone, num_classes, masks=self.masks, semantic=self.masks,
                            in_channels=input_size[0], input_shape=tuple(input_size))
        self.network = PackedCenterNet(detector)
        return self.network

    def maps(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """The detector's maps (heatmap, size, offset) of the packed output."""
        k = logits.shape[1] - 4
        return {"heatmap": logits[:, :k], "size": logits[:, k:k + 2],
                "offset": logits[:, k + 2:k + 4]}

    def image_size(self, logits: torch.Tensor) -> tuple[int, int]:
        """The input ``(H, W)`` of a packed output (stride 4)."""
        return logits.shape[-2] * 4, logits.shape[-1] * 4

    def encode(self, y: torch.Tensor, size: tuple[int, int], classes: int) -> dict:
        t = unpack_targets(y.cpu())
        targets = encode_centernet(t["boxes"], t["labels"], classes, size,
                                   min_radius=MIN_RADIUS, ignore=t["ignore"])
        return {k: v.to(y.device) for k, v in targets.items()}

    def loss(self, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0):
        maps = self.maps(logits)
        k = maps["heatmap"].shape[1]
        total, _ = centernet_loss(maps, self.encode(y, self.image_size(logits), k))
        return total

    def decode(self, logits: torch.Tensor) -> list[Detections]:
        maps = self.maps(logits)
        return decode_centernet(torch.sigmoid(maps["heatmap"].float()), maps["size"],
                                maps["offset"])

    @torch.inference_mode()
    def detections(self, model: nn.Module, x: torch.Tensor) -> dict[str, list[Detections]]:
        """What the evaluation and prediction show for a batch: ``{"boxes": [...]}`` (and for
        instance segmentation one list per mask kind), one :class:`Detections` per image."""
        return {"boxes": [d.cpu() for d in self.decode(model(x).float())]}

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        """Images whose confident detections are exactly their objects (IoU >= 0.5, class)."""
        with torch.no_grad():
            return float(self.images_right(logits, y).sum())

    def images_right(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Bool ``(N,)``: the batch's images whose objects are exactly found
        (:func:`images_right`)."""
        maps = self.maps(logits.detach())
        found = decode_padded(torch.sigmoid(maps["heatmap"].float()), maps["size"],
                              maps["offset"])
        return images_right(*found, unpack_targets(y))

    def meter(self, num_outputs: int) -> Meter:
        return DetectionMeter(self)

    def check(self, config) -> None:
        if config.class_weights != "none":
            raise ConfigError(f"--class-weights {config.class_weights} weights a segmentation "
                              f"loss: use it with --task segment")
        if config.augment:
            raise ConfigError(f"--task {self.name}: --augment {config.augment!r} would move the "
                              f"pixels but not the boxes; train without --augment")
        if config.tta and config.tta != "none":
            raise ConfigError(f"--task {self.name}: --tta {config.tta} averages class scores; "
                              f"train without it")
        check_backbone(self, config.model, config.model_options)

    def model_hint(self) -> str:
        return "use a model with feature maps at strides 1/2/4/8...: fcn, segnet, unet, resnet20"

    def input_size(self, config, data: ImageSet, size: tuple[int, int]) -> tuple[int, int]:
        own = data.image_shape[1:]
        if config.image_size and (config.image_size, config.image_size) != own:
            raise ConfigError(f"--task {self.name} trains at the images' own size "
                              f"{own[0]}x{own[1]} (boxes are not resized): drop --image-size "
                              f"{config.image_size} (a COCO folder: --data coco:size=N)")
        if own[0] % 4 or own[1] % 4:
            raise ConfigError(f"--task {self.name}: images of {own[0]}x{own[1]} are not a "
                              f"multiple of the output stride 4")
        return own

    def describe(self, data: ImageSet, index: int) -> str:
        count = int((data.box_labels[index] >= 0).sum())
        return f"{count} object{'s' * (count != 1)}"

    def test_lines(self, metrics: dict) -> list[str]:
        return [f"test {self.name}: AP50 {metrics['ap50']:.4f}  AP75 {metrics['ap75']:.4f}  "
                f"images all right {metrics['acc']:.4f}"]


def images_right(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, truth: dict,
                 score: float = RIGHT_SCORE) -> torch.Tensor:
    """Bool ``(N,)``: every object of the image matched by a confident detection (score >=
    ``score``) of its class at IoU >= 0.5, and no confident detection matching no object
    (ignore regions may be found or not). Detections ``(N, T, ...)`` from ``decode_padded``."""
    gt = xywh_to_xyxy(truth["boxes"].float())[:, None]  # (N, 1, M, 4)
    found = boxes.float()[:, :, None]  # (N, T, 1, 4)
    inter = (torch.minimum(found[..., 2:], gt[..., 2:]) - torch.maximum(found[..., :2],
                                                                         gt[..., :2]))
    inter = inter.clamp(min=0).prod(-1)  # (N, T, M)
    areas = (found[..., 2:] - found[..., :2]).clamp(min=0).prod(-1) + \
        (gt[..., 2:] - gt[..., :2]).clamp(min=0).prod(-1)
    iou = inter / (areas - inter).clamp(min=1e-12)
    present = truth["labels"] >= 0  # (N, M)
    real = present & ~truth["ignore"]
    confident = scores >= score  # (N, T)
    hit = (iou >= 0.5) & (labels[:, :, None] == truth["labels"][:, None]) & confident[..., None]
    found_all = (hit.any(1) | ~real).all(1)
    no_extra = ((hit & present[:, None]).any(2) | ~confident).all(1)
    enough = (hit & real[:, None]).any(2).sum(1) >= real.sum(1)
    return found_all & no_extra & enough


def check_backbone(task: Task, model: str, options: dict | None = None) -> None:
    """ConfigError (one line) when ``model`` cannot carry CenterNet heads: no
    ``feature_info()``, or feature strides that are not powers of two reaching stride 4."""
    try:
        c, h, w = default_input_size(model)
        with torch.device("meta"):
            net = create(model, num_classes=3, in_channels=c, input_size=(c, h, w),
                         **(options or {}))
    except Exception:  # noqa: BLE001 - unknown options, YAML files...: reported later
        return
    try:
        check_strides(feature_backbone(net).feature_info())
    except ModelError as error:
        raise ConfigError(f"--task {task.name} --model {model}: {error}") from None
    except Exception:  # noqa: BLE001 - a backbone that cannot trace at its size: left to training
        return


class DetectionMeter(Meter):
    """Decoded detections of every batch and their objects; COCO AP at the end."""

    def __init__(self, task: Detect) -> None:
        super().__init__(task)
        self.found: list[Detections] = []
        self.rows: list[torch.Tensor] = []
        self.right = 0
        self.size: tuple[int, int] = (0, 0)
        self.classes = 0

    def update(self, logits, y) -> None:
        super().update(logits, y)
        found = self.task.decode(logits)
        self.right += int(self.task.images_right(logits, y).sum())
        self.found += found
        self.rows.append(y.cpu())
        self.size = self.task.image_size(logits)
        self.classes = self.task.maps(logits)["heatmap"].shape[1]

    def result(self) -> dict:
        names = [str(c) for c in range(self.classes)]
        data = targets_as_scenes(torch.cat(self.rows), names, self.size)
        box = evaluate_detections(self.found, data)["bbox"]
        return {"loss": self.loss_sum / self.count, "acc": self.right / max(self.count, 1),
                "ap": box.ap, "ap50": box.ap50, "ap75": box.ap75}
