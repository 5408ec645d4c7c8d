"""COCO metrics through pycocotools: perfect, shifted, swapped and partial predictions; the
ground-truth export round-trips through pycocotools; ignore regions; size ranges n/a."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from cnnlab.data.coco_write import scenes_to_coco
from cnnlab.data.datasets import load_dataset
from cnnlab.data.scenes import SceneSpec, make_scenes
from cnnlab.detection.coco import evaluate_coco, evaluate_detections, to_coco_results
from cnnlab.detection.detections import Detections
from cnnlab.detection.nms import box_iou, xywh_to_xyxy


@pytest.fixture(scope="module")
def scenes():
    return load_dataset("digit-scenes", "test")  # 200 scenes, every class present


@pytest.fixture(scope="module")
def apart():
    """Scenes whose boxes never overlap: a moved box can only match its own object."""
    spec = SceneSpec(48, (1, 2), (1.5, 2.5), overlap=False)
    return make_scenes(load_dataset("digits", "test"), 200, spec, seed=3)


def best_iou_with_any_object(found: list[Detections], scenes) -> float:
    best = 0.0
    for i, f in enumerate(found):
        keep = scenes.box_labels[i] >= 0
        best = max(best, float(box_iou(f.boxes, xywh_to_xyxy(scenes.boxes[i][keep])).max()))
    return best


def truth_detections(scenes, shift: float = 0.0, relabel=None) -> list[Detections]:
    """The ground truth as detections (score 1), boxes moved right by ``shift`` x their width."""
    found = []
    for i in range(len(scenes)):
        keep = scenes.box_labels[i] >= 0
        boxes = xywh_to_xyxy(scenes.boxes[i][keep])
        boxes[:, [0, 2]] += shift * (boxes[:, 2] - boxes[:, 0])[:, None]
        labels = scenes.box_labels[i][keep]
        masks = torch.stack([scenes.instances[i] == j + 1
                             for j in keep.nonzero().flatten().tolist()])
        found.append(Detections(boxes, torch.ones(len(labels)),
                                relabel(labels) if relabel else labels, masks))
    return found


def test_perfect_predictions_give_ap_1(scenes):
    metrics = evaluate_detections(truth_detections(scenes), scenes, ("bbox", "segm"))
    for m in metrics.values():
        assert (m.ap, m.ap50, m.ap75) == pytest.approx((1.0, 1.0, 1.0), abs=1e-9)
        assert all(v == pytest.approx(1.0) for v in m.per_class.values())
        assert len(m.per_class) == 10


def test_boxes_shifted_below_iou_half_give_ap50_0(apart):
    shifted = truth_detections(apart, shift=0.4)  # IoU = 0.6 / 1.4 = 0.43 with its own object
    assert best_iou_with_any_object(shifted, apart) < 0.5
    m = evaluate_detections(shifted, apart)["bbox"]
    assert m.ap50 == 0 and m.ap == 0


def test_a_small_shift_keeps_ap50_but_lowers_ap75(apart):
    m = evaluate_detections(truth_detections(apart, shift=0.2), apart)["bbox"]  # IoU 0.67
    assert m.ap50 == pytest.approx(1.0) and m.ap75 == 0 and 0 < m.ap < 1


def test_a_swapped_class_gives_0(apart):
    m = evaluate_detections(truth_detections(apart, relabel=lambda c: (c + 1) % 10),
                            apart, ("bbox", "segm"))
    assert m["bbox"].ap == 0 and m["bbox"].ap50 == 0 and m["segm"].ap50 == 0


def test_missing_one_class_gives_that_class_0_and_the_mean_9_of_10(scenes):
    found = [f.take(f.labels != 3) for f in truth_detections(scenes)]
    m = evaluate_detections(found, scenes)["bbox"]
    assert m.per_class["3"] == 0
    assert m.ap == pytest.approx(0.9)


def test_no_detections_at_all_give_0(scenes):
    m = evaluate_detections([Detections.empty() for _ in range(len(scenes))], scenes)["bbox"]
    assert m.ap == 0 and m.counts["detections"] == 0


def test_scene_objects_are_small_so_medium_and_large_are_na(scenes):
    m = evaluate_detections(truth_detections(scenes), scenes)["bbox"]
    assert m.sizes["small"] == pytest.approx(1.0)
    assert m.sizes["medium"] is None and m.sizes["large"] is None
    assert len(m.terciles) == 3 and all(v == pytest.approx(1.0) for v in m.terciles.values())


def test_ground_truth_export_round_trips_through_pycocotools(scenes, tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools' decode under NumPy 2
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(scenes_to_coco(scenes)))
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == list(range(1, len(scenes) + 1))
    assert len(coco.getAnnIds()) == int((scenes.box_labels >= 0).sum())
    for ann in coco.loadAnns(coco.getAnnIds()):
        i = ann["image_id"] - 1
        mask = coco.annToMask(ann).astype(bool)
        j = int(scenes.instances[i][torch.from_numpy(mask)].unique().item()) - 1
        assert np.array_equal(mask, (scenes.instances[i] == j + 1).numpy())
        assert ann["category_id"] == int(scenes.box_labels[i, j]) + 1
        assert ann["bbox"] == [float(v) for v in scenes.boxes[i, j].tolist()]
        assert list(mask_utils.toBbox(coco.annToRLE(ann))) == ann["bbox"]  # tight box, checked
        assert ann["area"] == mask.sum()


def small_truth(crowd: bool) -> dict:
    return {"images": [{"id": 1, "width": 40, "height": 40}],
            "categories": [{"id": 7, "name": "seven"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 2, 10, 10], "area": 100,
                 "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 7, "bbox": [20, 20, 10, 10], "area": 100,
                 "iscrowd": int(crowd)}]}


def test_ignore_regions_are_neither_misses_nor_false_alarms():
    hit = {"image_id": 1, "category_id": 7, "bbox": [2, 2, 10, 10], "score": 0.9}
    on_crowd = {"image_id": 1, "category_id": 7, "bbox": [20, 20, 10, 10], "score": 0.95}
    assert evaluate_coco(small_truth(True), [hit]).ap == pytest.approx(1.0)  # missed: fine
    assert evaluate_coco(small_truth(True), [hit, on_crowd]).ap == pytest.approx(1.0)
    # the same region as a normal object: missing it halves the recall
    assert evaluate_coco(small_truth(False), [hit]).ap == pytest.approx(0.5, abs=0.01)


def test_results_use_the_original_category_ids(scenes):
    results = to_coco_results(truth_detections(scenes)[:3], scenes, masks=True)
    assert {r["category_id"] for r in results} <= set(range(1, 11))
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)
    json.dumps(results)  # JSON-ready
