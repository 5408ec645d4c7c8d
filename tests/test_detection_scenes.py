"""The ignore-region rule of the scenes: visible ink < 25% of an object's own ink, or < 16 px."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.base import ImageSet
from cnnlab.data.datasets import load_dataset
from cnnlab.data.scenes import SceneSpec, make_scenes, render, sample_layout


def squares(*sides_and_values) -> ImageSet:
    """Source images: a filled square per (side, brightness) on a 16x16 black frame."""
    images = torch.zeros(len(sides_and_values), 1, 16, 16, dtype=torch.uint8)
    for i, (side, value) in enumerate(sides_and_values):
        images[i, 0, :side, :side] = value
    return ImageSet(images, torch.arange(len(sides_and_values)), ["a", "b", "c"][:len(images)])


def paint(source: ImageSet, placements: list[tuple[int, int]], canvas: int = 48):
    """Render one scene with source image j at ``placements[j]`` (x, y), at its own size."""
    m = len(placements)
    layout = {"alive": torch.ones(1, m, dtype=torch.bool), "index": torch.arange(m)[None],
              "size": torch.full((1, m), 16), "x": torch.tensor([[p[0] for p in placements]]),
              "y": torch.tensor([[p[1] for p in placements]])}
    images, masks, instances, boxes, labels, ink_area, ignore = render(source, layout, canvas)
    return instances[0], labels[0], ink_area[0], ignore[0]


@pytest.mark.parametrize("shift,visible,ignored", [
    (3, 3 * 16, True),  # a 16x16 dim square with 3 columns showing: 48 px = 18.75% < 25%
    (4, 4 * 16, False),  # 4 columns: 64 px = 25%: kept
    (1, 1 * 16, True),  # 16 px = 6.25%
])
def test_a_dim_square_under_a_bright_one(shift, visible, ignored):
    source = squares((16, 120), (16, 255))  # dim first, bright on top of it
    instances, labels, ink_area, ignore = paint(source, [(0, 0), (shift, 0)])
    assert ink_area.tolist() == [256, 256]  # each square's own ink, as if alone
    assert int((instances == 1).sum()) == visible
    assert ignore.tolist() == [ignored, False] and labels.tolist() == [0, 1]


@pytest.mark.parametrize("side,ignored", [(3, True), (4, False)])
def test_a_tiny_object_alone_is_ignored_below_16_px(side, ignored):
    instances, _, ink_area, ignore = paint(squares((side, 255)), [(5, 5)])
    assert int(ink_area[0]) == int((instances == 1).sum()) == side * side
    assert ignore.tolist() == [ignored]  # 9 px < 16 px; 16 px is enough


def test_ink_area_is_each_object_rendered_alone_and_ignore_follows_the_rule():
    digits = load_dataset("digits")
    spec = SceneSpec(24, (3, 4), (1.5, 2.5))
    scenes = make_scenes(digits, 80, spec, seed=4)
    layout = sample_layout(80, len(digits), 8, spec, torch.Generator().manual_seed(4))
    for j in range(4):  # object j alone: every other slot switched off
        alone = {**layout, "alive": layout["alive"] & (torch.arange(4) == j)}
        instances = render(digits, alone, 24)[2]
        assert torch.equal(scenes.ink_area[:, j], (instances == j + 1).sum((1, 2)))
    visible = torch.stack([(scenes.instances == j + 1).sum((1, 2)) for j in range(4)], dim=1)
    present = scenes.box_labels >= 0
    rule = present & ((visible < 0.25 * scenes.ink_area) | (visible < 16))
    assert torch.equal(scenes.ignore, rule)
    assert scenes.ignore.any() and not scenes.ignore[~present].any()


def test_subset_keeps_the_new_fields():
    scenes = make_scenes(load_dataset("digits"), 10, SceneSpec(24, (1, 3), (1.5, 2.5)), seed=0)
    part = scenes.subset(torch.tensor([4, 1]))
    assert torch.equal(part.ink_area, scenes.ink_area[[4, 1]])
    assert torch.equal(part.ignore, scenes.ignore[[4, 1]])
