"""The sliding-window detector: windows, crops, training labels, detection with NMS."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.detection.sliding import (
    assign_windows,
    crop_windows,
    detect_windows,
    sample_windows,
    window_boxes,
)


def test_windows_of_20_and_28_px_every_4_px():
    windows = window_boxes((64, 64))
    assert len(windows) == 12 * 12 + 10 * 10
    sides = (windows[:, 2:] - windows[:, :2]).unique().tolist()
    assert sides == [20.0, 28.0]
    assert windows.min() == 0 and windows.max() == 64
    assert (windows[:, :2] % 4 == 0).all()


def test_a_28_px_window_is_copied_exactly_and_a_20_px_one_resampled():
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    crop = crop_windows(images, torch.tensor([[8.0, 12.0, 36.0, 40.0]]), torch.tensor([1]))
    assert torch.equal(crop[0, 0], images[1, 0, 12:40, 8:36])
    small = crop_windows(images, torch.tensor([[4.0, 4.0, 24.0, 24.0]]), torch.tensor([0]))
    resized = F.interpolate(images[:1, :, 4:24, 4:24], size=(28, 28), mode="bilinear",
                            align_corners=False)  # the same samples, clamped at the window
    assert torch.allclose(small[0, 0, 1:-1, 1:-1], resized[0, 0, 1:-1, 1:-1], atol=1e-6)


def test_window_labels_positive_background_and_unused():
    windows = torch.tensor([[8.0, 8.0, 28.0, 28.0],  # centred on the object, holds all of it
                            [40.0, 40.0, 60.0, 60.0],  # far away: background
                            [16.0, 8.0, 36.0, 28.0],  # holds 62.5% of it: unused
                            [0.0, 0.0, 28.0, 28.0]])  # holds it, centre 4 px off: positive
    boxes = torch.tensor([[[10, 8, 16, 20], [-1, -1, -1, -1]]])  # centre (18, 18)
    labels = torch.tensor([[6, -1]])
    target, fraction = assign_windows(windows, boxes, labels, 10)
    assert target.tolist() == [[6, 10, -1, 6]]
    assert torch.allclose(fraction[0, 0], torch.tensor([2, 0, 18, 20]) / 20)
    ignored = assign_windows(windows, boxes, labels, 10, ignore=torch.tensor([[True, False]]))[0]
    assert ignored.tolist() == [[-1, 10, -1, -1]]  # near an ignore region: not used at all


def test_sampling_keeps_every_positive_and_draws_background():
    target = torch.tensor([[3, 10, 10, 10, -1, 10, 10, 10], [10, 10, 10, 10, 10, 10, 10, 10]])
    image, window = sample_windows(target, 2, torch.Generator().manual_seed(0))
    picked = target[image, window]
    assert (picked == 3).sum() == 1 and (picked == 10).sum() == 2 + 2 and (picked >= 0).all()


class BrightWindow(nn.Module):
    """A stand-in classifier: class 1 with certainty for an all-bright window, else background."""

    window = 28

    def forward(self, crops):
        bright = (crops.amin((1, 2, 3)) > 0.5).float()  # (R,)
        scores = torch.stack([torch.zeros_like(bright), 20 * bright, 10 * (1 - bright)], dim=1)
        return scores, None


def test_detection_finds_the_window_and_nms_removes_its_neighbours():
    images = torch.zeros(2, 1, 64, 64)
    images[0, :, 8:28, 12:32] = 1  # exactly one (20 px) window is all bright
    images[1, :, 20:44, 20:44] = 1  # 24 px: four 20 px windows inside, at 20 and 24
    found = detect_windows(BrightWindow(), images, threshold=0.5)
    assert found[0].boxes.tolist() == [[12.0, 8.0, 32.0, 28.0]] and found[0].labels.tolist() == [1]
    # equal scores: the first window wins; a 4 px shift has IoU 0.67 (suppressed), a diagonal
    # 4 px shift 16 * 16 / (800 - 256) = 0.47 (kept)
    assert found[1].boxes.tolist() == [[20.0, 20.0, 40.0, 40.0], [24.0, 24.0, 44.0, 44.0]]
