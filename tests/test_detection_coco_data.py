"""COCO folders: scenes written and read back unchanged, non-square images letterboxed and
mapped back, splits, and every kind of bad input as a one-line DataError (or skipped)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.coco import load_coco
from cnnlab.data.coco_write import write_coco_folder
from cnnlab.data.datasets import load_dataset
from cnnlab.data.scenes import SceneSpec, make_scenes
from cnnlab.detection.coco import evaluate_detections, to_coco_results
from cnnlab.detection.detections import Detections
from cnnlab.detection.nms import xywh_to_xyxy
from cnnlab.errors import DataError


@pytest.fixture(scope="module")
def crowded():
    """Scenes with overlaps dense enough to produce ignore regions."""
    return make_scenes(load_dataset("digits"), 60, SceneSpec(24, (3, 4), (1.5, 2.5)), seed=2)


def test_scenes_written_as_coco_read_back_unchanged(crowded, tmp_path):
    write_coco_folder(crowded, tmp_path / "set")
    data = load_coco(tmp_path / "set", size=24, holdout=0.0)
    assert crowded.ignore.any()  # the test exercises iscrowd
    assert torch.equal(data.images, crowded.images)
    assert torch.equal(data.masks, crowded.masks)
    for i in range(len(crowded)):
        keep = crowded.box_labels[i] >= 0
        m = int(keep.sum())
        assert torch.equal(data.boxes[i, :m], crowded.boxes[i][keep].float())
        assert torch.equal(data.box_labels[i, :m], crowded.box_labels[i][keep])
        assert torch.equal(data.ignore[i, :m], crowded.ignore[i][keep])
        for j, slot in enumerate(keep.nonzero().flatten().tolist()):  # same pixels, renumbered
            assert torch.equal(data.instances[i] == j + 1, crowded.instances[i] == slot + 1)
    assert data.category_ids == list(range(1, 11)) and data.classes == crowded.classes


def test_writing_into_an_existing_coco_folder_is_refused(crowded, tmp_path):
    write_coco_folder(crowded.subset(torch.arange(2)), tmp_path)
    before = (tmp_path / "annotations.json").read_bytes()
    with pytest.raises(DataError, match="already holds annotations.json"):
        write_coco_folder(crowded, tmp_path)
    assert (tmp_path / "annotations.json").read_bytes() == before


def save(folder: Path, truth: dict, images: dict[str, np.ndarray]) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / "images" / name)
    (folder / "annotations.json").write_text(json.dumps(truth))
    return folder


def non_square(folder: Path) -> tuple[dict, dict]:
    """A 40x24 grey image with a polygon object and a 20x50 colour image with a crowd RLE."""
    wide = np.zeros((24, 40), np.uint8)
    wide[4:12, 5:15] = 255
    tall = np.zeros((50, 20, 3), np.uint8)
    tall[30:45, 2:8] = 200
    crowd = np.zeros((50, 20), np.uint8)
    crowd[30:45, 2:8] = 1
    counts, value, run = [], 0, 0  # uncompressed RLE: column-major runs starting with 0s
    for v in crowd.T.flatten():
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    truth = {"images": [{"id": 7, "file_name": "wide.png", "width": 40, "height": 24},
                        {"id": 9, "file_name": "tall.png"}],
             "categories": [{"id": 3, "name": "box"}, {"id": 11, "name": "bar"}],
             "annotations": [
                 {"id": 1, "image_id": 7, "category_id": 11, "bbox": [5, 4, 10, 8],
                  "segmentation": [[5, 4, 15, 4, 15, 12, 5, 12]]},
                 {"id": 2, "image_id": 9, "category_id": 3, "bbox": [2, 30, 6, 15],
                  "iscrowd": 1, "segmentation": {"size": [50, 20], "counts": counts}}]}
    save(folder, truth, {"wide.png": wide, "tall.png": tall})
    return truth, {7: wide > 0, 9: crowd > 0}


def test_non_square_images_are_letterboxed_and_map_back(tmp_path):
    truth, masks = non_square(tmp_path)
    data = load_coco(tmp_path, size=32, holdout=0.0)
    assert data.images.shape == (2, 3, 32, 32)  # grey + colour -> RGB
    assert data.image_ids.tolist() == [7, 9] and data.category_ids == [3, 11]
    assert data.box_labels[:, 0].tolist() == [1, 0] and data.ignore[:, 0].tolist() == [False, True]
    sx, sy, px, py = data.letterbox[0].tolist()
    assert (sx, round(sy * 24), px, py) == (0.8, 19, 0, 6)  # 40x24 -> 32x19, 6 rows above
    assert data.images[0, :, :6].eq(0).all() and data.images[0, :, 25:].eq(0).all()
    assert torch.allclose(data.boxes[0, 0], torch.tensor([4.0, 4 * sy + 6, 8.0, 8 * sy]))
    for i, ann in enumerate(truth["annotations"]):
        canvas = xywh_to_xyxy(data.boxes[i, :1])
        assert torch.allclose(data.to_original_boxes(i, canvas),
                              xywh_to_xyxy(torch.tensor([ann["bbox"]]).float()), atol=1e-4)
        back = data.to_original_masks(i, (data.instances[i] == 1)[None])[0].numpy()
        original = masks[int(data.image_ids[i])]
        assert (back & original).sum() / (back | original).sum() > 0.85  # 8 px tall at 0.8x


def test_perfect_detections_on_the_canvas_score_1_in_original_pixels(tmp_path):
    non_square(tmp_path)
    data = load_coco(tmp_path, size=32, holdout=0.0)
    found = [Detections(xywh_to_xyxy(data.boxes[i, :1]), torch.ones(1), data.box_labels[i, :1],
                        (data.instances[i] == 1)[None]) for i in range(2)]
    results = to_coco_results(found, data, masks=True)
    assert [r["category_id"] for r in results] == [11, 3]
    assert results[0]["bbox"] == [5.0, 4.0, 10.0, 8.0]
    assert results[1]["segmentation"]["size"] == [50, 20]
    metrics = evaluate_detections(found, data, ("bbox", "segm"))
    assert metrics["bbox"].ap == pytest.approx(1.0)  # the crowd image is ignored, not missed
    assert metrics["segm"].ap50 == pytest.approx(1.0)


def test_one_folder_is_split_by_seed_and_train_test_folders_are_read(crowded, tmp_path):
    write_coco_folder(crowded, tmp_path / "one")
    train = load_coco(tmp_path / "one", "train", size=24, holdout=0.25, seed=5)
    test = load_coco(tmp_path / "one", "test", size=24, holdout=0.25, seed=5)
    assert len(test) == 15 and len(train) == 45
    assert set(train.image_ids.tolist()).isdisjoint(test.image_ids.tolist())
    other = load_coco(tmp_path / "one", "test", size=24, holdout=0.25, seed=6)
    assert other.image_ids.tolist() != test.image_ids.tolist()
    assert {a["image_id"] for a in test.ground_truth["annotations"]} <= set(test.image_ids.tolist())
    write_coco_folder(crowded.subset(torch.arange(40)), tmp_path / "two" / "train")
    write_coco_folder(crowded.subset(torch.arange(40, 60)), tmp_path / "two" / "test")
    assert len(load_coco(tmp_path / "two", "test", size=24)) == 20
    part = train.subset(torch.tensor([0, 2]))
    assert len(part.ground_truth["images"]) == 2 and part.category_ids == train.category_ids


def one_line_error(root: Path, **options) -> str:
    with pytest.raises(DataError) as error:
        load_coco(root, size=32, holdout=0.0, **options)
    message = str(error.value)
    assert "\n" not in message and "annotations.json" in message
    return message


def mutate(tmp_path: Path, change) -> Path:
    truth, _ = non_square(tmp_path)
    change(truth)
    (tmp_path / "annotations.json").write_text(json.dumps(truth))
    return tmp_path


def add_annotation(**fields):
    base = {"id": 5, "image_id": 7, "category_id": 3, "bbox": [1, 1, 4, 4]}
    return lambda t: t["annotations"].append({**base, **fields})


BAD = {
    "missing image id": (add_annotation(image_id=99), "annotation id 5 names image id 99"),
    "box outside": (add_annotation(bbox=[30, 10, 15, 5]), "annotation id 5: bbox .* outside"),
    "box w <= 0": (add_annotation(bbox=[3, 3, 0, 5]), "annotation id 5: bbox .* w or h <= 0"),
    "box h < 0": (add_annotation(bbox=[3, 3, 5, -2]), "annotation id 5: bbox .* w or h <= 0"),
    "unknown category": (add_annotation(category_id=42), "annotation id 5 has unknown category id 42"),
    "polygon of 2 points": (add_annotation(segmentation=[[1, 1, 4, 4]]),
                            "annotation id 5: polygon with 2 points"),
    "duplicate annotation id": (add_annotation(id=1), "duplicate annotation id 1"),
    "RLE of another size": (add_annotation(segmentation={"size": [5, 5], "counts": "0"}),
                            "annotation id 5: RLE size"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_annotations_are_one_line_errors_or_skipped(tmp_path, case):
    change, message = BAD[case]
    root = mutate(tmp_path, change)
    assert pytest.raises(DataError, load_coco, root, size=32, holdout=0.0).match(message)
    one_line_error(root)
    data = load_coco(root, size=32, holdout=0.0, skip_bad=True)
    assert len(data.skipped) == 1 and message.split(" ")[0] in data.skipped[0]
    assert sorted(a["id"] for a in data.ground_truth["annotations"]) == [1, 2]


def test_an_annotation_whose_image_file_is_missing_names_both(tmp_path):
    non_square(tmp_path)
    (tmp_path / "images" / "tall.png").unlink()
    assert "annotation id 2 names image id 9: file" in one_line_error(tmp_path)
    data = load_coco(tmp_path, size=32, holdout=0.0, skip_bad=True)
    assert data.image_ids.tolist() == [7] and len(data.skipped) == 1


def test_duplicate_image_ids_are_errors_or_skipped(tmp_path):
    root = mutate(tmp_path, lambda t: t["images"].append({"id": 7, "file_name": "tall.png"}))
    assert "duplicate image id 7" in one_line_error(root)
    assert len(load_coco(root, size=32, holdout=0.0, skip_bad=True).skipped) == 1


def test_duplicate_category_ids_are_always_errors(tmp_path):
    root = mutate(tmp_path, lambda t: t["categories"].append({"id": 3, "name": "again"}))
    assert "duplicate category id 3" in one_line_error(root, skip_bad=True)


@pytest.mark.parametrize("text,message", [
    ("{not json", "invalid JSON at line 1"),
    ("[1, 2]", "expected a JSON object"),
    ('{"images": [], "annotations": []}', "no 'categories' list"),
])
def test_a_json_that_is_not_coco_is_one_line_error(tmp_path, text, message):
    non_square(tmp_path)
    (tmp_path / "annotations.json").write_text(text)
    assert message in one_line_error(tmp_path)


def test_a_folder_without_annotations_and_mismatched_splits_are_named(crowded, tmp_path):
    with pytest.raises(DataError, match="not a COCO folder"):
        load_coco(tmp_path)
    write_coco_folder(crowded.subset(torch.arange(4)), tmp_path / "train")
    write_coco_folder(crowded.subset(torch.arange(4)), tmp_path / "test")
    path = tmp_path / "test" / "annotations.json"
    truth = json.loads(path.read_text())
    truth["categories"][0]["name"] = "zero"
    path.write_text(json.dumps(truth))
    assert "categories differ" in one_line_error(tmp_path, split="test")


def test_rle_helpers_round_trip():
    from cnnlab.data.rle import decode_rle, encode_rle

    masks = torch.rand(3, 9, 7, generator=torch.Generator().manual_seed(0)) > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our decode keeps pycocotools' NumPy 2 warning quiet
        assert torch.equal(decode_rle(encode_rle(masks)), masks)
