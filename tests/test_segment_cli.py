"""``cnnlab train -> evaluate -> predict`` for ``--task segment`` and ``--task multilabel`` runs
through :func:`cnnlab.cli.main.main`, the sliding-window comparison, and the one-line errors
(exit 2) for models, tasks and scene options that cannot work together.

The references are recomputed here from the saved model's own outputs: pixel accuracy and IoU
from the argmax masks, F1 and label sets with scikit-learn / explicit thresholds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scene_helpers import SCENE_FLAGS, SCENES, model_outputs, train_scene_run

from cnnlab.analysis.sliding import compare_run
from cnnlab.cli import main as cli_main
from cnnlab.cli.main import main
from cnnlab.data.datasets import load_dataset
from cnnlab.data.pipeline import fit_to_size
from cnnlab.viz.segmentation import PALETTE, segmentation_grid

DATA, COMMON = SCENES, SCENE_FLAGS


@pytest.fixture
def runs(scene_runs):
    return scene_runs


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_segment_evaluate_reports_accuracy_and_iou_of_the_argmax_masks(runs, tmp_path, capsys):
    assert main(["evaluate", runs["segment"], "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    test = load_dataset(DATA, "test")
    pred = model_outputs(runs["segment"], test.images).argmax(1)
    assert report["count"] == len(test) == 8
    assert report["acc"] == pytest.approx(float((pred == test.masks).float().mean()))
    for c, iou in enumerate(report["per_class_iou"]):  # background + 10 digits
        inter = int(((pred == c) & (test.masks == c)).sum())
        union = int(((pred == c) | (test.masks == c)).sum())
        assert iou == (None if union == 0 else pytest.approx(inter / union))
    known = [v for v in report["per_class_iou"] if v is not None]
    assert len(report["per_class_iou"]) == 11
    assert report["miou"] == pytest.approx(sum(known) / len(known))
    assert (tmp_path / "masks.png").is_file()
    assert "mean IoU" in capsys.readouterr().out


def test_segment_predict_writes_a_mask_png_with_a_legend_and_the_label_set(runs, tmp_path,
                                                                           capsys):
    scene = load_dataset(DATA, "test").images[0]  # (1, 32, 32) uint8, light on dark
    Image.fromarray(scene[0].numpy(), mode="L").save(tmp_path / "scene.png")
    capsys.readouterr()
    assert main(["predict", runs["segment"], str(tmp_path / "scene.png"), "--out",
                 str(tmp_path / "masks"), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    pred = model_outputs(runs["segment"], scene[None])[0].argmax(0)
    classes = [str(d) for d in range(10)]
    found = {classes[c - 1]: int((pred == c).sum()) for c in pred.unique().tolist() if c > 0}
    assert result["pixels"] == found and set(result["labels"]) == set(found)
    png = Image.open(result["mask"]).convert("RGB")
    grid = segmentation_grid(scene[None], None, pred[None], classes=classes).image
    assert png.width == grid.width and png.height > grid.height  # the legend is under the grid
    assert np.array_equal(np.asarray(png)[:grid.height], np.asarray(grid))
    legend = np.asarray(png)[grid.height:].reshape(-1, 3)
    for c in range(1, 11):  # every class's colour square is in the legend strip
        colour = (PALETTE[c] * 255).round().to(torch.uint8).numpy()
        assert (legend == colour).all(1).any()
    assert set(result["colours"]) == set(found)


def test_palette_colours_are_distinct_and_none_is_white_or_black():
    colours = PALETTE[1:] * 255
    extremes = torch.tensor([[0.0, 0, 0], [255, 255, 255]])
    assert torch.cdist(colours, extremes).min() > 100
    distances = torch.cdist(colours, colours) + torch.eye(len(colours)) * 1e9
    assert distances.min() > 60


def test_multilabel_evaluate_reports_map_ap_and_f1_at_the_threshold(runs, tmp_path):
    from sklearn.metrics import average_precision_score, f1_score

    test = load_dataset(DATA, "test")
    probs = model_outputs(runs["multilabel"], test.images).sigmoid()
    for threshold in (0.5, 0.3):
        out = tmp_path / str(threshold)
        assert main(["evaluate", runs["multilabel"], "--out", str(out),
                     "--threshold", str(threshold)]) == 0
        report = json.loads((out / "metrics.json").read_text())
        pred = (probs >= threshold).numpy()
        assert report["threshold"] == threshold
        assert report["f1"] == pytest.approx(f1_score(test.present.numpy(), pred,
                                                      average="micro", zero_division=0))
        assert report["examples"][0]["pred"] == [str(k) for k in pred[0].nonzero()[0]]
    ap = [average_precision_score(test.present[:, k], probs[:, k]) if test.present[:, k].any()
          else None for k in range(10)]
    assert report["per_class_ap"] == [None if a is None else pytest.approx(a) for a in ap]
    known = [a for a in ap if a is not None]
    assert report["map"] == pytest.approx(sum(known) / len(known))


def test_multilabel_on_larger_scenes_is_resized_to_the_trained_size(runs, tmp_path):
    data = "digit-scenes:n=40,canvas=40"
    assert main(["evaluate", runs["multilabel"], "--data", data, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    test = load_dataset(data, "test")
    probs = model_outputs(runs["multilabel"], fit_to_size(test.images, (32, 32), "resize"))
    assert report["examples"][0]["pred"] == [str(k) for k in
                                             (probs[0].sigmoid() >= 0.5).nonzero().flatten()
                                             .tolist()]


def test_multilabel_predict_reports_the_classes_above_the_threshold(runs, tmp_path, capsys):
    scene = load_dataset(DATA, "test").images[1]
    Image.fromarray(scene[0].numpy(), mode="L").save(tmp_path / "scene.png")
    probs = model_outputs(runs["multilabel"], scene[None])[0].sigmoid()
    threshold = float(probs.median())  # about half the classes on: a threshold that matters
    capsys.readouterr()
    assert main(["predict", runs["multilabel"], str(tmp_path / "scene.png"), "--json",
                 "--threshold", str(threshold)]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["labels"] == [str(k) for k in (probs >= threshold).nonzero().flatten().tolist()]
    assert 0 < len(result["labels"]) < 10


@pytest.fixture(scope="module")
def patchnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("patch")
    return train_scene_run(out, "patchnet", "--task", "segment", "--model", "patchnet",
                 "--option", "widths=[4, 4, 4, 4]", "--option", "hidden=8",
                 "--data", "digit-scenes:n=10")


def test_sliding_window_and_fully_convolutional_give_the_same_scores(patchnet_run):
    r = compare_run(patchnet_run, count=2, repeats=2)
    assert r.max_abs_diff < 1e-4 and r.same_argmax == 1.0
    assert (r.pixel_acc, r.miou) == (r.fcn_pixel_acc, r.fcn_miou)
    test = load_dataset("digit-scenes:n=10", "test")
    pred = model_outputs(patchnet_run, test.images[:2]).argmax(1)
    assert r.pixel_acc == pytest.approx(float((pred == test.masks[:2]).float().mean()))
    assert len(r.sliding_times) == len(r.fcn_times) == 2 and r.images == 2


def test_sliding_command_prints_both_times_the_ratio_and_the_agreement(patchnet_run, capsys,
                                                                      monkeypatch):
    monkeypatch.setitem(cli_main.COMMANDS, "sliding", ("cnnlab.cli.sliding", "sliding window"))
    assert main(["sliding", patchnet_run, "--scenes", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "sliding window" in out and "fully convolutional" in out
    assert "ratio" in out and "same class at 100.00% of pixels" in out
    assert main(["sliding", patchnet_run, "--scenes", "0"]) == 2
    assert "--scenes 0" in one_error_line(capsys)


@pytest.mark.parametrize("flags, message", [
    (["--task", "segment", "--model", "lenet5"], "--task segment needs (2, 3, 32, 32)"),
    (["--task", "multilabel", "--model", "fcn"], "--task multilabel needs (2, 3)"),
    (["--model", "fcn"], "--task classify needs (2, 3)"),
    (["--task", "segment", "--model", "fcn", "--data", "digit-scenes:n=0"], "n=0"),
    (["--task", "segment", "--model", "fcn", "--data", "digit-scenes:n=-5"], "n=-5"),
])
def test_impossible_trainings_are_one_line_errors(flags, message, tmp_path, capsys):
    assert main(["train", *COMMON, "--out", str(tmp_path), *flags]) == 2
    err = one_error_line(capsys)
    assert message in err
    assert not list(tmp_path.iterdir())  # refused before any run directory is made


def test_bad_threshold_and_wrong_data_set_are_one_line_errors(runs, capsys):
    assert main(["evaluate", runs["multilabel"], "--threshold", "1.5"]) == 2
    assert "--threshold 1.5" in one_error_line(capsys)
    assert main(["evaluate", runs["segment"], "--data", "digits"]) == 2
    assert "use a scene set" in one_error_line(capsys)


def test_median_frequency_weights_and_the_weighted_pixel_loss_by_hand():
    from cnnlab.tasks import Segment, median_frequency_weights

    masks = torch.tensor([[0, 0, 0, 1], [0, 0, 2, 2]])  # frequencies 5/8, 1/8, 2/8; median 2/8
    weights = median_frequency_weights(masks, 4)  # class 3 never appears: the largest weight
    assert torch.allclose(weights, torch.tensor([0.4, 2.0, 1.0, 2.0]))
    logits = torch.randn(1, 4, 2, 4, generator=torch.Generator().manual_seed(0))
    nll = -logits.log_softmax(1)[0].gather(0, masks[None])[0]  # (2, 4) per-pixel loss
    w = weights[masks]
    expected = float((w * nll).sum() / w.sum())
    assert float(Segment(weights).loss(logits, masks[None])) == pytest.approx(expected)
    assert float(Segment().loss(logits, masks[None])) == pytest.approx(float(nll.mean()))


def test_segment_predict_rescales_a_scene_to_the_training_canvas(runs, tmp_path, capsys):
    """Issue 21, stumble 7: a scene photographed at 3x the scale is brought back to the
    32x32 canvas (longer side), unless --keep-size."""
    scene = load_dataset(DATA, "test").images[0]
    big = scene.repeat_interleave(3, 1).repeat_interleave(3, 2)  # (1, 96, 96)
    Image.fromarray(big[0].numpy(), mode="L").save(tmp_path / "big.png")
    wide = torch.cat([big, torch.zeros_like(big)], 2)  # (1, 96, 192): a wider photo
    Image.fromarray(wide[0].numpy(), mode="L").save(tmp_path / "wide.png")
    capsys.readouterr()
    assert main(["predict", runs["segment"], str(tmp_path / "big.png"), str(tmp_path / "wide.png"),
                 "--out", str(tmp_path / "m"), "--json"]) == 0
    big_result, wide_result = json.loads(capsys.readouterr().out)
    assert big_result["size"] == [32, 32] and wide_result["size"] == [16, 32]
    pred = model_outputs(runs["segment"], fit_to_size(big[None], (32, 32), "resize"))[0].argmax(0)
    classes = [str(d) for d in range(10)]
    assert big_result["pixels"] == {classes[c - 1]: int((pred == c).sum())
                                    for c in pred.unique().tolist() if c > 0}
    assert main(["predict", runs["segment"], str(tmp_path / "big.png"), "--keep-size",
                 "--out", str(tmp_path / "k"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["size"] == [96, 96]
