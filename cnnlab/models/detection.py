"""Detection networks: CenterNet ("objects as points"), a YOLO v1 grid, Mask R-CNN's mask head.

Lecture 002, "Detection": "Horse (x, y, w, h)". Every detector here sits on a *backbone*: any
module with ``forward_features(x) -> [maps]`` and ``feature_info() -> [{"channels", "stride"}]``
(one entry per map, finest first) -- every zoo model (:class:`~cnnlab.models.base.ImageClassifier`);
the fusion to stride 4 needs strides that are powers of two (fcn, segnet, unet, resnets...).

| model             | paper                                | output                              |
|-------------------|--------------------------------------|-------------------------------------|
| :class:`Detector` | Zhou et al. 2019, "Objects as Points" | per-class centre heatmap, (w, h) and |
|                   |                                      | sub-pixel offset, all at stride 4    |
|  + ``masks=True`` | He et al. ICCV 2017 (Mask R-CNN)     | a 28x28 mask per box (RoIAlign crop) |
|  + ``semantic``   | Long et al. 2015                     | per-pixel classes (the baseline's)   |
| :class:`YoloGrid` | Redmon et al. CVPR 2016 (YOLO v1)    | S x S cells x (B boxes + K classes)  |
| :class:`WindowClassifier` | Sermanet et al. 2014 (OverFeat) | one window: K classes + background |

The heads return raw maps; decoding, losses and targets live in :mod:`cnnlab.detection`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.roi import roi_align

HEATMAP_PRIOR = 0.1  # CenterNet: heatmap bias -log((1 - 0.1) / 0.1) = -2.19


def conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def feature_backbone(model: nn.Module) -> nn.Module:
    """``model`` if it exposes ``forward_features``/``feature_info`` (every zoo model does,
    :class:`~cnnlab.models.base.ImageClassifier`), else a one-line ModelError."""
    if callable(getattr(model, "forward_features", None)) and callable(
            getattr(model, "feature_info", None)):
        return model
    raise ModelError(f"{type(model).__name__} exposes no feature_info()/forward_features(): "
                     f"detection heads need a backbone that does (any cnnlab zoo model)")


def backbone_info(backbone: nn.Module, input_shape: tuple[int, int, int] | None) -> list[dict]:
    """The backbone's stages, traced at ``input_shape`` ``(C, H, W)`` when given."""
    return backbone.feature_info(input_shape) if input_shape else backbone.feature_info()


def check_strides(info: list[dict]) -> list[int]:
    strides = [int(level["stride"]) for level in info]
    if not strides or any(s < 1 or s & (s - 1) for s in strides) or strides != sorted(strides):
        raise ModelError(f"backbone feature strides {strides}: the detection heads need powers "
                         f"of two, finest first (e.g. [1, 2, 4, 8]: fcn, unet, resnet...)")
    if strides[-1] < 4:
        raise ModelError(f"backbone feature strides {strides}: the deepest map must have stride "
                         f">= 4 for the stride-4 detection heads")
    return strides


class TopDownFusion(nn.Module):
    """Feature-pyramid fusion (Lin et al. 2017): from the deepest map down to ``finest`` stride,
    upsample x2, add the backbone's map of that stride (1x1 lateral conv) if it has one, smooth
    with a 3x3 conv. Strides the backbone lacks are reached by upsampling alone (as CenterNet's
    ResNet variant climbs from stride 32 to 4). Returns ``{stride: map}``."""

    def __init__(self, info: list[dict], channels: int, finest: int, fine_channels: int) -> None:
        super().__init__()
        strides = check_strides(info)
        self.strides = strides
        self.levels = [2 ** i for i in range(int(math.log2(strides[-1])), -1, -1)
                       if 2 ** i >= finest]  # coarse to fine, e.g. 8, 4, 2
        width = {s: channels if s >= 4 else fine_channels for s in self.levels}
        by_stride = {int(lv["stride"]): int(lv["channels"]) for lv in info}
        self.lateral = nn.ModuleDict({str(s): nn.Conv2d(by_stride[s], width[s], 1)
                                      for s in self.levels if s in by_stride})
        self.smooth = nn.ModuleDict({str(s): conv_bn_relu(width[s], width[s])
                                     for s in self.levels[1:]})
        self.reduce = nn.ModuleDict({str(s): nn.Conv2d(width[2 * s], width[s], 1)
                                     for s in self.levels[1:] if width[2 * s] != width[s]})
        self.width = width

    def forward(self, maps: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        feats = dict(zip(self.strides, maps, strict=True))
        top = self.levels[0]
        out = {top: self.lateral[str(top)](feats[top])}
        for s in self.levels[1:]:
            x = out[2 * s]
            if str(s) in self.reduce:
                x = self.reduce[str(s)](x)
            size = feats[s].shape[-2:] if s in feats else (x.shape[-2] * 2, x.shape[-1] * 2)
            x = F.interpolate(x, size=size, mode="nearest")  # (B, C, 2h, 2w)
            if str(s) in self.lateral:
                x = x + self.lateral[str(s)](feats[s])
            out[s] = self.smooth[str(s)](x)
        return out


def head(cin: int, hidden: int, cout: int, bias: float = 0.0) -> nn.Sequential:
    """CenterNet's head: 3x3 conv + ReLU, then 1x1 conv to the outputs."""
    layers = nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(inplace=True),
                           nn.Conv2d(hidden, cout, 1))
    nn.init.constant_(layers[-1].bias, bias)
    return layers


class MaskHead(nn.Module):
    """Mask R-CNN's mask branch: RoIAlign to ``roi x roi`` bins, 3x3 convs, a 2x2 transposed
    conv to ``2 roi`` (28x28), and a 1x1 conv with one mask per class."""

    def __init__(self, cin: int, num_classes: int, channels: int = 64, convs: int = 4,
                 roi: int = 14) -> None:
        super().__init__()
        self.roi = roi
        self.convs = nn.Sequential(*[conv_bn_relu(cin if i == 0 else channels, channels)
                                     for i in range(convs)])
        self.up = nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, stride=2),
                                nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor,
                stride: int) -> torch.Tensor:
        crops = roi_align(features, boxes, batch_index, self.roi, stride)  # (R, C, 14, 14)
        return self.classifier(self.up(self.convs(crops)))  # (R, K, 28, 28) logits


class Detector(nn.Module):
    """CenterNet on any feature backbone (Zhou et al. 2019, "Objects as Points").

    ``forward(x)`` ``(B, C, H, W)`` -> dict of raw maps at ``stride`` 4: ``heatmap`` logits
    ``(B, K, H/4, W/4)`` (bias -2.19 so every score starts at 0.1), ``size`` ``(B, 2, ., .)``
    (w, h in heatmap cells) and ``offset`` ``(B, 2, ., .)``. With ``masks=True``, also
    ``mask_features`` at ``mask_stride`` (fused features plus the image itself, so thin strokes
    stay visible) for :meth:`mask_logits`; with ``semantic=True``, ``semantic`` logits
    ``(B, K + 1, H, W)`` (0 = background) for the box-and-semantic-mask baseline, from 1x1
    convs on the fused features upsampled to the input beside the input itself.

    Example:
        >>> from cnnlab.models import create
        >>> det = Detector(create("unet", num_classes=10), num_classes=10)
        >>> det(torch.rand(2, 1, 64, 64))["heatmap"].shape
        torch.Size([2, 10, 16, 16])
    """

    stride = 4

    def __init__(self, backbone: nn.Module, num_classes: int, *, channels: int = 64,
                 head_channels: int = 64, masks: bool = False, semantic: bool = False,
                 mask_stride: int = 2, fine_channels: int = 32, mask_channels: int = 32,
                 in_channels: int = 1, input_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.backbone = feature_backbone(backbone)
        info = backbone_info(self.backbone, input_shape)
        self.num_classes, self.mask_stride = num_classes, mask_stride
        self.with_masks, self.with_semantic = masks, semantic
        finest = min(self.stride, mask_stride) if (masks or semantic) else self.stride
        self.fusion = TopDownFusion(info, channels, finest, fine_channels)
        self.pad_to = max(check_strides(info)[-1], self.stride)
        self.heatmap = head(channels, head_channels, num_classes, -math.log((1 - HEATMAP_PRIOR)
                                                                             / HEATMAP_PRIOR))
        self.size = head(channels, head_channels, 2)
        self.offset = head(channels, head_channels, 2)
        fine = self.fusion.width[finest] + in_channels  # fused features + the image
        self.mask_head = MaskHead(fine, num_classes, mask_channels) if masks else None
        self.semantic_head = nn.Sequential(  # per pixel, at full resolution: 1x1 convs only
            nn.Conv2d(self.fusion.width[finest] + in_channels, fine_channels, 1),
            nn.ReLU(inplace=True), nn.Conv2d(fine_channels, num_classes + 1, 1)
        ) if semantic else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.pad_to, (-w) % self.pad_to
        padded = F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x
        fused = self.fusion(self.backbone.forward_features(padded))
        hh, ww = -(-h // self.stride), -(-w // self.stride)
        p4 = fused[self.stride]  # (B, C, H/4, W/4)
        out = {"heatmap": self.heatmap(p4)[..., :hh, :ww], "size": self.size(p4)[..., :hh, :ww],
               "offset": self.offset(p4)[..., :hh, :ww]}
        if self.mask_head is not None or self.semantic_head is not None:
            s = min(fused)
            image = F.avg_pool2d(padded, s) if s > 1 else padded
            fine = torch.cat([fused[s], image], dim=1)[..., :-(-h // s), :-(-w // s)]
            if self.mask_head is not None:
                out["mask_features"] = fine
            if self.semantic_head is not None:  # fused features upsampled, beside the image
                up = F.interpolate(fused[s], scale_factor=s, mode="bilinear",
                                   align_corners=False) if s > 1 else fused[s]
                out["semantic"] = self.semantic_head(torch.cat([up, padded], 1))[..., :h, :w]
        return out

    def mask_logits(self, outputs: dict, boxes: torch.Tensor,
                    batch_index: torch.Tensor) -> torch.Tensor:
        """Mask logits ``(R, K, 28, 28)`` for ``boxes`` ``(R, 4)`` xyxy (input pixels)."""
        if self.mask_head is None:
            raise ModelError("this detector has no mask head: build it with masks=True")
        stride = min(self.mask_stride, self.stride)
        return self.mask_head(outputs["mask_features"], boxes, batch_index, stride)


class YoloGrid(nn.Module):
    """YOLO v1's output grid on a feature backbone (Redmon et al. 2016, figure 3).

    Output ``(B, S, S, 5B + K)``: per predictor ``x, y`` (centre in its cell), ``sqrt w, sqrt h``
    (of the image) and a confidence, all through a sigmoid (the paper's linear outputs, kept
    in range); then the cell's class probabilities (softmax), shared by its predictors.

    ``head="fc"`` is the paper's: the deepest map, reduced by a 1x1 conv and pooled to ``S x
    S``, read by two fully connected layers, so every cell sees the whole image but has weights
    of its own (learnt only from objects centred in that cell). ``head="conv"`` (default)
    predicts every cell with the same 3x3 + 1x1 convs on the map pooled to ``S x S`` -- YOLO
    v2's fully convolutional output without anchors -- which learns from every object at once.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, grid: int = 8,
                 boxes_per_cell: int = 2, head: str = "conv", reduce: int = 32,
                 hidden: int = 256, dropout: float = 0.0,
                 input_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        if head not in ("conv", "fc"):
            raise ModelError(f"YOLO head {head!r}: choose conv or fc")
        self.backbone = feature_backbone(backbone)
        deepest = backbone_info(self.backbone, input_shape)[-1]["channels"]
        self.grid, self.boxes_per_cell, self.num_classes = grid, boxes_per_cell, num_classes
        per_cell = 5 * boxes_per_cell + num_classes
        if head == "fc":
            self.head = nn.Sequential(
                nn.Conv2d(deepest, reduce, 1, bias=False), nn.BatchNorm2d(reduce),
                nn.LeakyReLU(0.1, inplace=True), nn.AdaptiveAvgPool2d(grid), nn.Flatten(),
                nn.Linear(reduce * grid * grid, hidden), nn.LeakyReLU(0.1, inplace=True),
                nn.Dropout(dropout), nn.Linear(hidden, grid * grid * per_cell))
        else:
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(grid), nn.Conv2d(deepest, hidden, 3, padding=1, bias=False),
                nn.BatchNorm2d(hidden), nn.LeakyReLU(0.1, inplace=True),
                nn.Conv2d(hidden, per_cell, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.head(self.backbone.forward_features(x)[-1])  # (B, S*S*P) or (B, P, S, S)
        s, b = self.grid, self.boxes_per_cell
        raw = raw.view(-1, s, s, 5 * b + self.num_classes) if raw.dim() == 2 else \
            raw.permute(0, 2, 3, 1)  # (B, S, S, 5B + K)
        return torch.cat([torch.sigmoid(raw[..., :5 * b]), raw[..., 5 * b:].softmax(-1)], -1)


class WindowClassifier(nn.Module):
    """The sliding-window detector's patch classifier: one ``window x window`` crop -> scores
    of ``K`` classes + background (index K), and with ``regress=True`` a box ``(x1, y1, x2, y2)``
    as fractions of the window (OverFeat's regressor, Sermanet et al. 2014)."""

    def __init__(self, num_classes: int, *, in_channels: int = 1, window: int = 28,
                 widths: tuple[int, ...] = (16, 32), hidden: int = 128,
                 regress: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chans = [in_channels, *widths]
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [conv_bn_relu(cin, cout), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        side = window // 2 ** len(widths)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * side * side, hidden),
                                nn.ReLU(inplace=True))
        self.classifier = nn.Linear(hidden, num_classes + 1)
        self.box = nn.Linear(hidden, 4) if regress else None
        self.window = window

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = self.fc(self.features(windows))  # (B, hidden)
        box = torch.sigmoid(self.box(hidden)) if self.box is not None else None
        return self.classifier(hidden), box


class PackedCenterNet(nn.Module):
    """A :class:`Detector` whose output is one tensor, as the training loop, the task's loss and
    ONNX export take it: ``(B, K + 4, H/4, W/4)`` = heatmap logits, size, offset (``unpack``).

    With ``masks=True`` (instance segmentation) the detector also has the mask and semantic
    heads and the tensor is at input resolution: the stride-4 maps repeated 4x4 (nearest), then
    the semantic logits ``K + 1`` and the mask features repeated 2x2; :meth:`unpack` takes every
    4th / 2nd pixel back, so gradients reach each head unchanged.
    """

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector
        self.num_classes, self.stride = detector.num_classes, detector.stride
        self.with_masks = detector.mask_head is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.detector(x)
        boxes = torch.cat([out["heatmap"], out["size"], out["offset"]], 1)
        if not self.with_masks:
            return boxes
        s = self.detector.mask_stride
        up = boxes.repeat_interleave(self.stride, 2).repeat_interleave(self.stride, 3)
        fine = out["mask_features"].repeat_interleave(s, 2).repeat_interleave(s, 3)
        return torch.cat([up, out["semantic"], fine], 1)

    def unpack(self, packed: torch.Tensor) -> dict[str, torch.Tensor]:
        """The detector's dict of maps from :meth:`forward`'s tensor."""
        k = self.num_classes
        boxes = packed[:, :k + 4, ::self.stride, ::self.stride] if self.with_masks else packed
        out = {"heatmap": boxes[:, :k], "size": boxes[:, k:k + 2],
               "offset": boxes[:, k + 2:k + 4]}
        if self.with_masks:
            s = self.detector.mask_stride
            out["semantic"] = packed[:, k + 4:2 * k + 5]
            out["mask_features"] = packed[:, 2 * k + 5:, ::s, ::s]
        return out

    def mask_logits(self, outputs: dict, boxes: torch.Tensor,
                    batch_index: torch.Tensor) -> torch.Tensor:
        """The mask head at ``boxes`` (see :meth:`Detector.mask_logits`)."""
        return self.detector.mask_logits(outputs, boxes, batch_index)
