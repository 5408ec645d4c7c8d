"""Multi-object scenes: determinism, masks vs placed objects, labels, boxes, no-overlap mode."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.datasets import list_datasets, load_dataset
from cnnlab.data.scenes import INK, SceneSpec, make_scenes, parse_scene_name
from cnnlab.errors import DataError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def small(digits, n=64, seed=0, **spec):
    values = dict(canvas=32, objects=(1, 3), scale=(1.0, 1.5))
    values.update(spec)
    return make_scenes(digits, n, SceneSpec(**values), seed=seed)


def test_same_seed_same_scenes_other_seed_other_scenes(digits):
    a, b, c = small(digits, seed=5), small(digits, seed=5), small(digits, seed=6)
    for field in ("images", "masks", "instances", "boxes", "box_labels", "present"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.images, c.images)


def test_shapes_and_types(digits):
    s = small(digits, n=10)
    assert s.images.shape == (10, 1, 32, 32) and s.images.dtype == torch.uint8
    assert s.masks.shape == (10, 32, 32) and s.masks.dtype == torch.int64
    assert s.present.shape == (10, 10) and s.present.dtype == torch.bool
    assert s.boxes.shape == (10, 3, 4) and s.box_labels.shape == (10, 3)
    assert int(s.masks.max()) <= 10 and int(s.masks.min()) == 0


def test_mask_pixels_are_bright_and_background_is_dark(digits):
    s = small(digits, n=64)
    brightness = s.images[:, 0].float() / 255
    assert (brightness[s.masks > 0] >= INK - 1e-6).all()
    assert (brightness[s.masks == 0] < INK).all()
    assert ((s.masks > 0) == (s.instances > 0)).all()


def test_mask_class_is_the_class_of_the_owning_instance(digits):
    s = small(digits, n=64)
    for i in range(len(s)):
        for j, label in enumerate(s.box_labels[i].tolist()):
            own = s.instances[i] == j + 1
            if label < 0:
                assert not own.any()
            else:
                assert own.any() and (s.masks[i][own] == label + 1).all()


def test_multilabel_target_is_the_set_of_classes_in_the_mask(digits):
    s = small(digits, n=64)
    for i in range(len(s)):
        in_mask = {int(v) - 1 for v in s.masks[i].unique() if v > 0}
        assert in_mask == set(s.present[i].nonzero().flatten().tolist())
        assert in_mask == {c for c in s.box_labels[i].tolist() if c >= 0}


def test_boxes_are_tight_around_each_objects_pixels(digits):
    s = small(digits, n=64)
    for i in range(len(s)):
        for j, (x, y, w, h) in enumerate(s.boxes[i].tolist()):
            rows, cols = (s.instances[i] == j + 1).nonzero(as_tuple=True)
            if s.box_labels[i, j] < 0:
                assert (x, y, w, h) == (-1, -1, -1, -1) and len(rows) == 0
                continue
            assert (x, y) == (int(cols.min()), int(rows.min()))
            assert (x + w - 1, y + h - 1) == (int(cols.max()), int(rows.max()))


def test_no_overlap_mode_never_overlaps(digits):
    s = small(digits, n=200, objects=(4, 4), scale=(1.5, 2.0), overlap=False)
    for i in range(len(s)):
        boxes = [b for b, c in zip(s.boxes[i].tolist(), s.box_labels[i].tolist(), strict=True)
                 if c >= 0]
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                (x1, y1, w1, h1), (x2, y2, w2, h2) = boxes[a], boxes[b]
                assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
    assert (s.box_labels >= 0).sum(1).float().mean() > 3.5  # nothing hidden: ~4 per scene


def test_overlap_mode_does_overlap_sometimes(digits):
    s = small(digits, n=200, objects=(4, 4), scale=(1.5, 2.0))
    hidden = ((s.box_labels >= 0).sum(1) < 4).sum()
    boxes_overlap = 0
    for i in range(len(s)):
        (x1, y1, w1, h1), (x2, y2, w2, h2) = s.boxes[i, :2].tolist()
        boxes_overlap += not (x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1)
    assert boxes_overlap + hidden > 0


def test_objects_too_big_for_the_canvas_are_refused(digits):
    with pytest.raises(DataError, match="do not fit"):
        small(digits, objects=(4, 4), scale=(3.0, 3.0), overlap=False)


def test_named_sets_load_and_list(shared_data):
    test = load_dataset("digit-scenes", "test")
    assert test.images.shape[1:] == (1, 32, 32) and test.masks.shape[0] == len(test)
    mnist = load_dataset("mnist-scenes:n=20,objects=2-2", "train")
    assert mnist.images.shape == (20, 1, 64, 64) and ((mnist.box_labels >= 0).sum(1) <= 2).all()
    names = {s.name: s for s in list_datasets()}
    assert names["digit-scenes"].found_at == "built in"
    assert names["mnist-scenes"].found_at is not None and "fashion-scenes" in names


def test_scene_options_parse_and_bad_ones_are_named():
    source, spec, n_train, n_test = parse_scene_name("mnist-scenes:n=100,scale=0.5-0.8,overlap=0")
    assert (source, n_train, n_test, spec.scale, spec.overlap) == ("mnist", 100, 20, (0.5, 0.8),
                                                                   False)
    with pytest.raises(DataError, match="unknown scene option 'size'"):
        parse_scene_name("digit-scenes:size=3")


def test_subset_keeps_dense_targets(digits):
    s = small(digits, n=10)
    part = s.subset(torch.tensor([3, 7]))
    assert torch.equal(part.masks, s.masks[[3, 7]]) and torch.equal(part.boxes, s.boxes[[3, 7]])


def test_too_big_message_suggests_overlap_only_when_it_is_off(digits):
    with pytest.raises(DataError, match=r"or allow overlap \(overlap=1\)"):
        small(digits, objects=(4, 4), scale=(3.0, 3.0), overlap=False)
    with pytest.raises(DataError, match="do not fit the canvas") as error:
        small(digits, canvas=16, scale=(3.0, 3.0), overlap=True)  # 24 px objects, 16 px canvas
    assert "overlap" not in str(error.value).split(":")[-1]


@pytest.mark.parametrize("n", [0, -5])
def test_fewer_than_one_scene_is_refused(digits, n):
    with pytest.raises(DataError, match=f"n={n}"):
        small(digits, n=n)
    with pytest.raises(DataError, match=f"n={n}: expected at least 1"):
        parse_scene_name(f"digit-scenes:n={n}")
