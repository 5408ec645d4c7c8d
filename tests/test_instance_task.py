"""``--task instance``: the packed network's heads, the loss reaching the mask head, predictions
mapped back to original pixels as COCO RLE, and a run trained, evaluated and predicted from the
CLI with both kinds of masks reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.data.datasets import load_dataset
from cnnlab.data.letterbox import letterbox_image, original_boxes, original_masks
from cnnlab.data.rle import decode_rle
from cnnlab.detection.detections import Detections
from cnnlab.models import create
from cnnlab.objects.draw import detections_figure, match
from cnnlab.objects.predict import coco_entries
from cnnlab.tasks import get_task


class Settings:
    class_weights = "none"


@pytest.fixture(scope="module")
def scenes():
    return load_dataset("digit-scenes:n=40", "train")


def test_unpack_gives_each_head_its_own_maps_and_gradients(scenes):
    task = get_task("instance").for_training(Settings(), scenes)
    net = task.build_model(create("unet", num_classes=10), 10, (1, 32, 32))
    x = scenes.images[:2].float() / 255
    packed = net(x)
    maps = net.unpack(packed)
    direct = net.detector(x)
    for key in ("heatmap", "size", "offset", "semantic", "mask_features"):
        assert torch.equal(maps[key], direct[key]), key
    loss = task.loss(packed, task.targets(scenes)[:2])
    loss.backward()
    for head in (net.detector.mask_head, net.detector.semantic_head, net.detector.heatmap):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_predictions_map_back_to_original_pixels_as_rle():
    original = np.zeros((20, 40, 1), np.uint8)  # a wide image: letterboxed onto 32 x 32
    _, transform = letterbox_image(original, 32)  # scale 0.8, 8 px of black above and below
    canvas_mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    canvas_mask[0, 8:16, 4:12] = True  # original pixels rows 0..9, columns 5..14
    boxes = original_boxes(torch.tensor([[4.0, 8.0, 12.0, 16.0]]), transform, (20, 40))
    assert boxes.tolist() == [[5.0, 0.0, 15.0, 10.0]]
    masks = original_masks(canvas_mask, transform, (20, 40))
    found = Detections(boxes, torch.tensor([0.9]), torch.tensor([2]), masks)
    entry = coco_entries(found, ["a", "b", "c"], "x.png", [1, 5, 9])[0]
    assert entry["category_id"] == 9 and entry["bbox"] == [5.0, 0.0, 10.0, 10.0]
    back = decode_rle([entry["segmentation"]])[0]
    assert back.shape == (20, 40) and bool(back[0:10, 5:15].all()) and int(back.sum()) == 100


@pytest.mark.slow
def test_instance_run_trains_evaluates_and_predicts_from_the_cli(tmp_path, capsys):
    assert main(["train", "--task", "instance", "--model", "unet", "--data", "digit-scenes:n=40",
                 "--epochs", "1", "--batch-size", "12", "--optimizer", "adamw", "--lr", "0.002",
                 "--threads", "2", "--no-progress", "--out", str(tmp_path), "--name", "inst"]) == 0
    run = tmp_path / "inst"
    index = json.loads((run / "run.json").read_text())
    assert {"mask_ap", "baseline_ap", "ap"} <= set(index["test"])
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    assert "mask (learned head): AP" in text and "mask (box and semantic class): AP" in text
    assert "masks side by side" in text and (run / "eval-test" / "pr-learned.png").is_file()
    image = load_dataset("digit-scenes:n=40", "test").images[0, 0].numpy()
    Image.fromarray(image).save(tmp_path / "scene.png")
    assert main(["predict", str(run), str(tmp_path / "scene.png"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert (run / "masks" / "scene.boxes.png").is_file() and "detections" in result


def test_the_hits_picture_draws_masks(tmp_path):
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 2:6, 2:6] = masks[1, 9:12, 9:12] = True
    found = Detections(torch.tensor([[2., 2., 6., 6.], [9., 9., 12., 12.]]),
                       torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), masks)
    truth = (torch.tensor([[2., 2., 4., 4.], [0., 10., 3., 3.]]), torch.tensor([0, 1]),
             torch.tensor([False, False]))
    assert match(found, *truth) == {"hit": [0], "false alarm": [1], "miss": [1], "ignored": []}
    path = detections_figure(torch.zeros(1, 1, 16, 16, dtype=torch.uint8),
                             [found], ["a", "b"], [truth], tmp_path / "hits.png")
    assert path.is_file() and path.stat().st_size > 1000
