"""Targets, losses and decoding: CenterNet and YOLO ground truth encoded, then decoded, gives
the same boxes; the focal loss and YOLO loss against NumPy transcriptions of the papers' code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnlab.data.datasets import load_dataset
from cnnlab.detection.decode import decode_centernet, decode_yolo
from cnnlab.detection.losses import focal_loss, masked_l1, yolo_loss
from cnnlab.detection.nms import xywh_to_xyxy
from cnnlab.detection.targets import encode_centernet, encode_yolo, gaussian_radius


@pytest.fixture(scope="module")
def scenes():
    return load_dataset("digit-scenes", "test")  # 200 scenes of 32x32, 1-2 digits, no files


def centernet_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's ``gaussian_radius`` (src/lib/utils/image.py), transcribed."""
    b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_umich_gaussian(heatmap: np.ndarray, center: tuple[int, int], radius: int) -> None:
    """CenterNet's ``draw_umich_gaussian``, transcribed (in place, max with what is there)."""
    diameter = 2 * radius + 1
    m = (diameter - 1) / 2
    y, x = np.ogrid[-m:m + 1, -m:m + 1]
    gaussian = np.exp(-(x * x + y * y) / (2 * (diameter / 6) ** 2))
    gaussian[gaussian < np.finfo(gaussian.dtype).eps * gaussian.max()] = 0
    cx, cy = center
    height, width = heatmap.shape
    left, right = min(cx, radius), min(width - cx, radius + 1)
    top, bottom = min(cy, radius), min(height - cy, radius + 1)
    region = heatmap[cy - top:cy + bottom, cx - left:cx + right]
    np.maximum(region, gaussian[radius - top:radius + bottom, radius - left:radius + right],
               out=region)


def test_gaussian_radius_matches_centernet():
    sides = [(1.0, 1.0), (2.0, 5.0), (4.0, 3.0), (7.0, 7.0), (16.0, 4.0)]
    ours = gaussian_radius(torch.tensor([h for h, _ in sides]), torch.tensor([w for _, w in sides]))
    for value, (h, w) in zip(ours.tolist(), sides, strict=True):
        assert value == pytest.approx(centernet_radius(h, w), rel=1e-5)


def test_heatmaps_match_centernets_drawing(scenes):
    targets = encode_centernet(scenes.boxes, scenes.box_labels, 10, (32, 32))
    for i in range(40):
        expected = np.zeros((10, 8, 8))
        for (x, y, w, h), c in zip(scenes.boxes[i].tolist(), scenes.box_labels[i].tolist(),
                                   strict=True):
            if c < 0:
                continue
            x1, y1, x2, y2 = x / 4, y / 4, (x + w) / 4, (y + h) / 4
            radius = max(0, int(centernet_radius(math.ceil(y2 - y1), math.ceil(x2 - x1))))
            centre = (int((x1 + x2) / 2), int((y1 + y2) / 2))
            draw_umich_gaussian(expected[c], centre, radius)
        assert np.allclose(targets["heatmap"][i].numpy(), expected, atol=1e-6)


def maps_from_targets(t: dict, hh: int, ww: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Size and offset maps holding each object's target at its centre cell (a perfect net)."""
    n, m = t["index"].shape
    size, offset = torch.zeros(n, 2, hh * ww), torch.zeros(n, 2, hh * ww)
    for i in range(n):
        for j in range(m):
            if t["mask"][i, j]:
                size[i, :, t["index"][i, j]] = t["size"][i, j]
                offset[i, :, t["index"][i, j]] = t["offset"][i, j]
    return size.view(n, 2, hh, ww), offset.view(n, 2, hh, ww)


def collide(boxes: torch.Tensor, labels: torch.Tensor, stride: int) -> bool:
    """Two objects whose centres fall in one heatmap cell: CenterNet's size and offset maps
    are shared by all classes, so only one of them can be decoded exactly."""
    cells = set()
    for (x, y, w, h), c in zip(boxes.tolist(), labels.tolist(), strict=True):
        if c >= 0:
            key = (int((x + w / 2) // stride), int((y + h / 2) // stride))
            if key in cells:
                return True
            cells.add(key)
    return False


def random_scenes(n: int, m: int, size: int, gen: torch.Generator):
    wh = torch.randint(2, 24, (n, m, 2), generator=gen)
    xy = (torch.rand(n, m, 2, generator=gen) * (size - wh + 1)).floor().long()
    labels = torch.randint(0, 5, (n, m), generator=gen)
    labels[torch.rand(n, m, generator=gen) < 0.2] = -1
    boxes = torch.cat([xy, wh], -1)
    boxes[labels < 0] = -1
    return boxes, labels


def sorted_boxes(boxes: torch.Tensor, labels: torch.Tensor) -> list:
    return sorted(zip(labels.tolist(), [tuple(b) for b in boxes.tolist()], strict=True))


@pytest.mark.parametrize("source", ["scenes", "random"])
def test_centernet_encode_then_decode_gives_the_same_boxes_exactly(scenes, source):
    if source == "scenes":
        boxes, labels, size = scenes.boxes, scenes.box_labels, 32
    else:
        boxes, labels = random_scenes(100, 6, 64, torch.Generator().manual_seed(0))
        size = 64
    t = encode_centernet(boxes, labels, 10, (size, size))
    hh = size // 4
    size_map, offset_map = maps_from_targets(t, hh, hh)
    found = decode_centernet(t["heatmap"], size_map, offset_map, stride=4, threshold=0.5)
    checked = 0
    for i, f in enumerate(found):
        if collide(boxes[i], labels[i], 4):
            continue
        present = labels[i] >= 0
        expected = sorted_boxes(xywh_to_xyxy(boxes[i][present]), labels[i][present])
        assert sorted_boxes(f.boxes, f.labels) == expected  # exact, to the pixel
        assert (f.scores == 1).all()
        checked += 1
    assert checked >= 0.9 * len(found)


def test_ignore_regions_are_not_targets_and_not_background():
    boxes = torch.tensor([[[0, 0, 16, 16], [32, 32, 12, 8]]])
    labels = torch.tensor([[1, 2]])
    ignore = torch.tensor([[False, True]])
    t = encode_centernet(boxes, labels, 3, (64, 64), ignore=ignore)
    assert t["mask"].tolist() == [[True, False]]
    assert t["heatmap"][0, 2].max() == 0  # no peak for the ignored object
    weight = t["heat_weight"][0, 2]
    assert weight[8:10, 8:11].eq(0).all() and weight.eq(0).sum() == 2 * 3  # cells in its box
    assert t["heat_weight"][0, 1].eq(1).all()


def test_yolo_encode_then_decode_gives_the_same_boxes(scenes):
    boxes, labels = random_scenes(100, 5, 64, torch.Generator().manual_seed(1))
    grid, b, k = 8, 2, 5
    t = encode_yolo(boxes, labels, k, (64, 64), grid=grid)["target"]
    perfect = torch.zeros(100, grid, grid, 5 * b + k)
    perfect[..., :2] = t[..., :2]
    perfect[..., 2:4] = t[..., 2:4].sqrt()
    perfect[..., 4] = t[..., 4]  # predictor 0 is sure, predictor 1 says "no object"
    perfect[..., 5 * b:] = t[..., 5:]
    found = decode_yolo(perfect, (64, 64), boxes_per_cell=b, threshold=0.5)
    checked = 0
    for i, f in enumerate(found):
        present = labels[i] >= 0
        cells = {(int((x + w / 2) * grid // 64), int((y + h / 2) * grid // 64))
                 for x, y, w, h in boxes[i][present].tolist()}
        if len(cells) < int(present.sum()):
            continue  # two centres in one cell: YOLO v1 keeps one
        expected = xywh_to_xyxy(boxes[i][present])
        order = sorted(range(len(f)), key=lambda j: [round(v, 2) for v in f.boxes[j].tolist()])
        truth = sorted(range(len(expected)), key=lambda j: expected[j].tolist())
        assert len(f) == len(expected)
        assert torch.allclose(f.boxes[order], expected[truth], atol=1e-4)
        assert f.labels[order].tolist() == labels[i][present][truth].tolist()
        checked += 1
    assert checked >= 70


def focal_reference(pred: np.ndarray, gt: np.ndarray) -> float:
    """CenterNet's ``_neg_loss`` (src/lib/models/losses.py) on probabilities, transcribed."""
    pos, neg = gt == 1, gt < 1
    pos_loss = (np.log(pred) * (1 - pred) ** 2 * pos).sum()
    neg_loss = (np.log(1 - pred) * pred ** 2 * (1 - gt) ** 4 * neg).sum()
    num_pos = pos.sum()
    return -neg_loss if num_pos == 0 else -(pos_loss + neg_loss) / num_pos


def test_focal_loss_matches_centernet(scenes):
    t = encode_centernet(scenes.boxes[:16], scenes.box_labels[:16], 10, (32, 32))
    logits = torch.randn(16, 10, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = focal_loss(logits, t["heatmap"].double())
    expected = focal_reference(torch.sigmoid(logits).numpy(), t["heatmap"].double().numpy())
    assert ours.item() == pytest.approx(expected, rel=1e-6)
    # a near-perfect prediction costs almost nothing; a wrong one a lot
    good = torch.where(t["heatmap"] == 1, 8.0, -8.0)
    assert focal_loss(good, t["heatmap"]).item() < 1e-3 < focal_loss(-good, t["heatmap"]).item()


def test_masked_l1_by_hand():
    pred = torch.arange(8.0).view(1, 2, 2, 2)  # channel 0: 0 1 2 3, channel 1: 4 5 6 7
    index = torch.tensor([[3, 0]])
    target = torch.tensor([[[1.0, 1.0], [9.0, 9.0]]])
    # object 0 at flat index 3: values (3, 7) vs (1, 1) -> |2| + |6|; object 1 masked out
    assert masked_l1(pred, index, target, torch.tensor([[True, False]])).item() == 4.0


def yolo_reference(out: np.ndarray, t: np.ndarray, b: int, coord=5.0, noobj=0.5) -> float:
    """YOLO v1's loss (Redmon et al. 2016, eq. 3) with loops over cells and predictors."""
    n, s = out.shape[:2]
    total = 0.0
    for i in range(n):
        for r in range(s):
            for c in range(s):
                cell, truth = out[i, r, c], t[i, r, c]
                boxes = [cell[5 * j:5 * j + 5] for j in range(b)]
                if truth[4] == 0:
                    total += noobj * sum(box[4] ** 2 for box in boxes)
                    continue
                true_box = to_xyxy(truth[0], truth[1], math.sqrt(truth[2]), math.sqrt(truth[3]), r, c, s)
                ious = [iou(to_xyxy(*box[:4], r, c, s), true_box) for box in boxes]
                best = int(np.argmax(ious))
                for j, box in enumerate(boxes):
                    if j != best:
                        total += noobj * box[4] ** 2
                        continue
                    total += coord * ((box[0] - truth[0]) ** 2 + (box[1] - truth[1]) ** 2)
                    total += coord * ((box[2] - math.sqrt(truth[2])) ** 2
                                      + (box[3] - math.sqrt(truth[3])) ** 2)
                    total += (box[4] - ious[best]) ** 2
                total += ((cell[5 * b:] - truth[5:]) ** 2).sum()
    return total / n


def to_xyxy(x, y, sw, sh, row, col, s):
    cx, cy, w, h = (x + col) / s, (y + row) / s, sw ** 2, sh ** 2
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


def test_yolo_loss_matches_a_loop_over_cells():
    gen = torch.Generator().manual_seed(2)
    boxes, labels = random_scenes(6, 4, 64, gen)
    targets = encode_yolo(boxes, labels, 5, (64, 64), grid=4)
    out = torch.rand(6, 4, 4, 2 * 5 + 5, generator=gen, dtype=torch.float64)
    ours, parts = yolo_loss(out, targets, boxes_per_cell=2)
    expected = yolo_reference(out.numpy(), targets["target"].double().numpy(), 2)
    assert ours.item() == pytest.approx(expected, rel=1e-5)
    assert sum(parts.values()) == pytest.approx(expected, rel=1e-5)
