"""Detection networks: the backbone interface, CenterNet/YOLO/mask heads, RoIAlign by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.roi import paste_masks, roi_align
from cnnlab.models import create
from cnnlab.models.detection import Detector, WindowClassifier, YoloGrid, feature_backbone


class TinyBackbone(nn.Module):
    """The interface the detectors need: maps at strides 2, 4, 8 and their channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([nn.Conv2d(1, 8, 3, 2, 1), nn.Conv2d(8, 12, 3, 2, 1),
                                     nn.Conv2d(12, 16, 3, 2, 1)])

    def forward_features(self, x):
        maps = []
        for stage in self.stages:
            x = torch.relu(stage(x))
            maps.append(x)
        return maps

    def feature_info(self):
        return [{"channels": 8, "stride": 2}, {"channels": 12, "stride": 4},
                {"channels": 16, "stride": 8}]


def test_detector_outputs_at_stride_4_and_starts_at_the_prior():
    det = Detector(TinyBackbone(), 3, channels=16, head_channels=8)
    out = det(torch.rand(2, 1, 32, 48))
    assert out["heatmap"].shape == (2, 3, 8, 12)
    assert out["size"].shape == out["offset"].shape == (2, 2, 8, 12)
    bias = det.heatmap[-1].bias
    assert torch.allclose(bias, torch.full_like(bias, -2.19), atol=0.01)  # CenterNet's init


def test_detector_pads_sides_that_are_not_multiples_of_the_stride():
    out = Detector(TinyBackbone(), 3, channels=16)(torch.rand(1, 1, 30, 21))
    assert out["heatmap"].shape == (1, 3, 8, 6)  # ceil(30 / 4), ceil(21 / 4)


@pytest.mark.parametrize("name", ["fcn", "segnet", "unet"])
def test_zoo_backbones_and_their_strides_are_true(name):
    backbone = feature_backbone(create(name, num_classes=5))
    x = torch.rand(1, 1, 64, 64)
    for level, feature in zip(backbone.feature_info(), backbone.forward_features(x), strict=True):
        assert feature.shape[1] == level["channels"]
        assert feature.shape[-1] == 64 // level["stride"]
    out = Detector(create(name, num_classes=5), 5, masks=True, semantic=True)(x)
    assert out["heatmap"].shape == (1, 5, 16, 16) and out["semantic"].shape == (1, 6, 64, 64)


def test_a_backbone_without_the_feature_interface_is_one_line_model_error():
    plain = nn.Sequential(nn.Conv2d(1, 4, 3))
    with pytest.raises(ModelError, match=r"Sequential exposes no feature_info\(\)") as error:
        Detector(plain, 10)
    assert "\n" not in str(error.value)
    with pytest.raises(ModelError, match=r"strides \[1, 2, 3, 6\]: .* powers of two") as error:
        Detector(create("lenet5"), 10)  # unpadded 5x5 convs: 32 -> 28 -> 14 -> 10 -> 5
    assert "\n" not in str(error.value)


def test_gradients_reach_the_backbone_through_every_head():
    det = Detector(TinyBackbone(), 3, channels=16, masks=True, semantic=True)
    out = det(torch.rand(2, 1, 32, 32))
    masks = det.mask_logits(out, torch.tensor([[2.0, 3.0, 20.0, 25.0]]), torch.tensor([1]))
    assert masks.shape == (1, 3, 28, 28)
    (out["heatmap"].sum() + masks.sum() + out["semantic"].sum()).backward()
    assert det.backbone.stages[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("head", ["conv", "fc"])
def test_yolo_grid_outputs_probabilities(head):
    yolo = YoloGrid(TinyBackbone(), 4, grid=4, boxes_per_cell=2, hidden=32, head=head)
    out = yolo(torch.rand(3, 1, 32, 32))
    assert out.shape == (3, 4, 4, 2 * 5 + 4)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out[..., 10:].sum(-1), torch.ones(3, 4, 4))


def test_window_classifier_scores_classes_and_background():
    scores, box = WindowClassifier(10, regress=True)(torch.rand(5, 1, 28, 28))
    assert scores.shape == (5, 11) and box.shape == (5, 4)
    assert WindowClassifier(10)(torch.rand(2, 1, 28, 28))[1] is None


def bilinear(f: torch.Tensor, x: float, y: float) -> float:
    """Bilinear sample of a 2-D map at index coordinates (pixel centres at integers),
    clamped at the border, written out by hand."""
    h, w = f.shape
    x, y = min(max(x, 0.0), w - 1), min(max(y, 0.0), h - 1)
    x0, y0 = math.floor(x), math.floor(y)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = x - x0, y - y0
    return float((1 - ay) * ((1 - ax) * f[y0, x0] + ax * f[y0, x1])
                 + ay * ((1 - ax) * f[y1, x0] + ax * f[y1, x1]))


@pytest.mark.parametrize("stride,ratio", [(1, 1), (1, 2), (2, 2)])
def test_roi_align_matches_hand_computed_bilinear_samples(stride, ratio):
    f = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    box = torch.tensor([[1.3, 2.2, 11.0, 9.4]], dtype=torch.float64)  # input pixels
    out = roi_align(f, box, torch.tensor([1]), 2, stride, sampling_ratio=ratio)
    x1, y1, x2, y2 = (v / stride for v in box[0].tolist())  # in feature cells
    for c in range(3):
        for by in range(2):
            for bx in range(2):
                samples = []
                for sy in range(ratio):
                    for sx in range(ratio):
                        u = x1 + (bx + (sx + 0.5) / ratio) * (x2 - x1) / 2
                        v = y1 + (by + (sy + 0.5) / ratio) * (y2 - y1) / 2
                        samples.append(bilinear(f[1, c], u - 0.5, v - 0.5))  # centres at .5
                assert out[0, c, by, bx].item() == pytest.approx(sum(samples) / len(samples))


def test_roi_align_packs_several_boxes_per_image():
    f = torch.randn(3, 2, 10, 10, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[0.0, 0.0, 5.0, 5.0], [2.0, 1.0, 9.0, 7.0], [1.0, 1.0, 4.0, 8.0]])
    index = torch.tensor([2, 0, 2])
    together = roi_align(f, boxes, index, 4, 1.0)
    alone = torch.cat([roi_align(f, boxes[i:i + 1], index[i:i + 1], 4, 1.0) for i in range(3)])
    assert torch.allclose(together, alone)


def test_paste_is_the_inverse_of_a_pixel_aligned_crop():
    mask = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(2))
    box = torch.tensor([[5.0, 3.0, 33.0, 31.0]])  # 28x28 px: one mask cell per pixel
    pasted = paste_masks(mask, box, (40, 36))
    assert torch.allclose(pasted[0, 3:31, 5:33], mask[0], atol=1e-6)
    assert pasted[0, :3].eq(0).all() and pasted[0, :, 33:].eq(0).all()
    back = roi_align(pasted[:, None], box, torch.tensor([0]), 28, 1.0, sampling_ratio=1)
    assert torch.allclose(back[0, 0], mask[0], atol=1e-6)
