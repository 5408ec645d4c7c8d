"""``--task detect`` as a task: packed targets, the meter's COCO AP on perfect / moved / swapped
outputs, the backbone check, and a COCO folder written here trained, evaluated and predicted
from the CLI (non-square image mapped back to its own pixels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.config import TrainConfig
from cnnlab.data.coco_write import write_coco_folder
from cnnlab.data.datasets import load_dataset
from cnnlab.data.scenes import SceneSpec, make_scenes
from cnnlab.detection.nms import box_iou, xywh_to_xyxy
from cnnlab.detection.packing import (
    pack_targets,
    semantic_masks,
    targets_as_scenes,
    unpack_targets,
)
from cnnlab.detection.targets import encode_centernet
from cnnlab.errors import ConfigError
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.tasks import get_task
from cnnlab.tasks.detect import images_right
from cnnlab.train.fit import fit
from cnnlab.weightfile import model_state


@pytest.fixture(scope="module")
def apart():
    """Scenes whose boxes never overlap (no two centres share a heatmap cell)."""
    spec = SceneSpec(48, (1, 2), (1.5, 2.5), overlap=False)
    return make_scenes(load_dataset("digits", "test"), 60, spec, seed=3)


def test_packed_targets_round_trip(apart):
    rows = pack_targets(apart, instances=True)
    back = unpack_targets(rows, (48, 48))
    assert torch.equal(back["boxes"], apart.boxes.float())
    assert torch.equal(back["labels"], apart.box_labels)
    assert torch.equal(back["instances"], apart.instances.long())
    assert torch.equal(semantic_masks(back["labels"], back["instances"]), apart.masks)
    scenes = targets_as_scenes(rows, apart.classes, (48, 48), instances=True)
    assert torch.equal(scenes.boxes, back["boxes"]) and scenes.instances.shape == (60, 48, 48)


def perfect_outputs(data, relabel=None) -> torch.Tensor:
    """The packed network output that encodes the ground truth exactly: logit +10 at every
    centre (-10 elsewhere), the true size and offset at the centre cell."""
    labels = relabel(data.box_labels) if relabel else data.box_labels
    t = encode_centernet(data.boxes, labels.where(data.box_labels >= 0, -1), 10,
                         data.image_shape[1:])
    n, _, h, w = t["heatmap"].shape
    heat = torch.where(t["heatmap"] == 1, 10.0, -10.0)
    maps = torch.zeros(n, 4, h * w)
    for j in range(t["index"].shape[1]):
        rows = t["mask"][:, j].nonzero().flatten()
        cells = t["index"][rows, j]
        maps[rows, :2, cells] = t["size"][rows, j]
        maps[rows, 2:, cells] = t["offset"][rows, j]
    return torch.cat([heat, maps.view(n, 4, h, w)], 1)


def meter_result(data, logits):
    task = get_task("detect")
    meter = task.meter(logits.shape[1])
    y = pack_targets(data)
    for part in range(0, len(data), 25):  # batch by batch, as the loop does
        meter.update(logits[part:part + 25], y[part:part + 25])
    return meter.result()


def test_perfect_outputs_give_ap_1_and_every_image_right(apart):
    result = meter_result(apart, perfect_outputs(apart))
    assert result["ap"] == pytest.approx(1.0) and result["ap50"] == pytest.approx(1.0)
    assert result["acc"] == 1.0


def test_a_swapped_class_gives_0(apart):
    result = meter_result(apart, perfect_outputs(apart, relabel=lambda c: (c + 1) % 10))
    assert result["ap"] == 0.0 and result["acc"] == 0.0


def test_boxes_moved_by_their_width_give_ap50_0(apart):
    logits = perfect_outputs(apart)
    logits[:, 12] += logits[:, 10]  # offset x += box width (both in cells): IoU 0 with itself
    found = get_task("detect").decode(logits)
    for i, f in enumerate(found):  # and below 0.5 with every other object
        truth = xywh_to_xyxy(apart.boxes[i][apart.box_labels[i] >= 0].float())
        assert float(box_iou(f.boxes, truth).max()) < 0.5
    assert meter_result(apart, logits)["ap50"] == 0.0


def test_the_loss_is_lower_for_perfect_outputs(apart):
    task = get_task("detect")
    y = pack_targets(apart)
    good = perfect_outputs(apart)
    assert task.loss(good, y) < 0.05 < task.loss(torch.zeros_like(good), y)


@pytest.mark.parametrize("model", ["lenet5", "xonet"])
def test_a_model_without_power_of_two_feature_maps_is_a_one_line_error(model):
    config = TrainConfig(model=model, data="digit-scenes", task="detect")
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert "--task detect" in str(error.value) and "\n" not in str(error.value)


def test_augment_is_refused_for_detection():
    with pytest.raises(ConfigError, match="boxes"):
        TrainConfig(model="unet", data="digit-scenes", task="detect", augment="flip").validate()


IDS = [3 * c + 2 for c in range(10)]  # a COCO folder's own category ids


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory):
    """A detect run trained from the CLI (1 epoch) on a COCO folder written here."""
    tmp = tmp_path_factory.mktemp("coco")
    scenes = load_dataset("digit-scenes:n=48", "train")
    write_coco_folder(scenes, tmp / "coco", category_ids=IDS)
    assert main(["train", "--task", "detect", "--model", "unet", "--data", "coco:size=32",
                 "--data-root", str(tmp / "coco"), "--epochs", "1", "--batch-size", "16",
                 "--optimizer", "adamw", "--lr", "0.002", "--threads", "2", "--no-progress",
                 "--out", str(tmp), "--name", "det"]) == 0
    return tmp / "det", scenes


def test_coco_folder_trains_evaluates_and_predicts_from_the_cli(coco_run, tmp_path, capsys):
    run, scenes = coco_run
    meta = json.loads((run / "best.json").read_text())
    assert meta["category_ids"] == IDS
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    assert "box: AP " in text and "medium n/a" in text and "area terciles" in text
    for name in ("metrics.json", "pr-boxes.png", "detections.png"):
        assert (run / "eval-test" / name).is_file()
    report = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert report["boxes"]["counts"]["images"] == 10  # 20% of 48 held out by seed
    wide = np.zeros((32, 80), np.uint8)  # a non-square image: letterboxed, then mapped back
    wide[:, 24:56] = scenes.images[0, 0].numpy()
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert main(["predict", str(run), str(tmp_path / "wide.png"), "--json",
                 "--out", str(tmp_path / "pictures")]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert (tmp_path / "pictures" / "wide.boxes.png").is_file()
    for entry in result["detections"]:
        x, y, w, h = entry["bbox"]
        assert 0 <= x <= x + w <= 80 and 0 <= y <= y + h <= 32
        assert entry["category_id"] in IDS


@pytest.mark.slow
def test_report_and_box_attribution_of_a_detect_run(coco_run, capsys):
    run, _ = coco_run
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert '<section id="detection">' in page and "COCO AP (pycocotools)" in page
    for kind in ("saliency", "gradcam"):
        assert main(["visualize", kind, str(run), "--box", "0"]) == 0
        assert (run / "viz" / f"{kind}-box0.png").is_file()
    capsys.readouterr()
    assert main(["visualize", "gradcam", str(run), "--box", "100000"]) == 2
    assert "--box 100000: the image has" in capsys.readouterr().err


def test_images_right_by_hand():
    truth = {"boxes": torch.tensor([[[0., 0., 10., 10.], [20., 20., 8., 8.]]] * 4),
             "labels": torch.tensor([[1, 2]] * 4), "ignore": torch.tensor([[False, True]] * 4)}
    exact = [[0., 0., 10., 10.], [0., 0., 10., 10.]]
    boxes = torch.tensor([exact,  # the object found (the ignore region need not be)
                          [[0., 0., 10., 10.], [40., 40., 50., 50.]],  # + a confident false alarm
                          exact,  # the object found, but as class 2
                          [[1., 0., 10., 10.], [40., 40., 50., 50.]]])  # IoU 0.9; unsure extra
    scores = torch.tensor([[0.9, 0.1], [0.9, 0.8], [0.9, 0.1], [0.9, 0.2]])
    labels = torch.tensor([[1, 1], [1, 1], [2, 1], [1, 1]])
    assert images_right(boxes, scores, labels, truth).tolist() == [True, False, False, True]


@pytest.mark.slow
def test_a_detect_run_stopped_and_resumed_ends_as_an_uninterrupted_one(tmp_path):
    def config(name):
        return TrainConfig(model="unet", model_options={"widths": (8, 16, 32)}, task="detect",
                           data="digit-scenes:n=40", epochs=2, batch_size=12,
                           optimizer="adamw", lr=0.002, threads=1, out=str(tmp_path),
                           name=name, progress=False)

    whole = fit(config("whole"), log=lambda *_: None)
    first = fit(config("parts"), stop_after_epochs=1, log=lambda *_: None)
    assert first.status == "stopped"
    resumed = fit(None, resume=first.run_dir, log=lambda *_: None)
    assert resumed.status == "completed" and resumed.test_metrics["ap"] == whole.test_metrics["ap"]
    a = model_state(read_checkpoint(whole.run_dir / "last.safetensors")[0])
    b = model_state(read_checkpoint(resumed.run_dir / "last.safetensors")[0])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
