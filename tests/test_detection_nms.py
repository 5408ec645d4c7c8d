"""Box IoU and greedy NMS against brute-force Python references."""

from __future__ import annotations

import pytest
import torch

from cnnlab.detection.nms import batched_nms, box_iou, nms, xywh_to_xyxy, xyxy_to_xywh


def iou_reference(a: list[float], b: list[float]) -> float:
    """IoU of two xyxy boxes, written out by hand."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def nms_reference(boxes: list, scores: list, threshold: float) -> list[int]:
    """Greedy NMS, brute force: visit boxes best first; keep one unless it overlaps a kept box
    by more than ``threshold``."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(iou_reference(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def random_boxes(gen: torch.Generator, n: int) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * 40
    wh = 2 + torch.rand(n, 2, generator=gen) * 20
    return torch.cat([xy, xy + wh], dim=1)


def test_box_iou_hand_numbers():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0]])
    expected = torch.tensor([[2 / 6, 0.0, 1.0], [0.0, 0.0, 0.25]])
    assert torch.allclose(box_iou(a, b), expected)


def test_box_iou_matches_reference_on_random_boxes():
    gen = torch.Generator().manual_seed(0)
    a, b = random_boxes(gen, 30), random_boxes(gen, 20)
    ours = box_iou(a, b)
    for i in range(len(a)):
        for j in range(len(b)):
            assert ours[i, j].item() == pytest.approx(iou_reference(a[i].tolist(), b[j].tolist()),
                                                      abs=1e-6)


def test_xywh_and_xyxy_are_inverse():
    boxes = torch.tensor([[3.0, 4.0, 5.0, 6.0]])
    assert xywh_to_xyxy(boxes).tolist() == [[3.0, 4.0, 8.0, 10.0]]
    assert torch.equal(xyxy_to_xywh(xywh_to_xyxy(boxes)), boxes)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(threshold):
    gen = torch.Generator().manual_seed(int(threshold * 10))
    for _ in range(20):
        boxes = random_boxes(gen, 40)
        scores = torch.rand(40, generator=gen)
        kept = nms(boxes, scores, threshold).tolist()
        assert kept == nms_reference(boxes.tolist(), scores.tolist(), threshold)


def test_nms_keeps_the_best_of_a_cluster_and_distant_boxes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0],
                          [0.0, 1.0, 10.0, 11.0], [30.0, 30.0, 40.0, 40.0]])
    scores = torch.tensor([0.6, 0.9, 0.7, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]


def test_batched_nms_never_suppresses_across_classes():
    gen = torch.Generator().manual_seed(3)
    boxes = random_boxes(gen, 60)
    scores = torch.rand(60, generator=gen)
    labels = torch.randint(0, 3, (60,), generator=gen)
    kept = set(batched_nms(boxes, scores, labels, 0.5).tolist())
    expected = set()
    for c in range(3):
        index = (labels == c).nonzero().flatten().tolist()
        local = nms_reference([boxes[i].tolist() for i in index],
                              [scores[i].item() for i in index], 0.5)
        expected |= {index[i] for i in local}
    assert kept == expected
    # the same box twice with two classes: both stay
    twice = torch.tensor([[0.0, 0.0, 5.0, 5.0]] * 2)
    assert len(batched_nms(twice, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5)) == 2
    assert len(batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0).long(), 0.5)) == 0
