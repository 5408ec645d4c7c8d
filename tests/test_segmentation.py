"""Segmentation models, task metrics, training with --task segment/multilabel, equivariance and
the sliding-window baseline (lecture 002)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import nn

from cnnlab.analysis.sliding import compare_sliding_window, sliding_window_scores
from cnnlab.config import TrainConfig
from cnnlab.data.datasets import load_dataset
from cnnlab.errors import ConfigError, ModelError
from cnnlab.models import create
from cnnlab.models.segmentation import UPSAMPLING
from cnnlab.runs import RunFolder
from cnnlab.tasks import get_task
from cnnlab.tasks.metrics import confusion_matrix, multilabel_metrics, segmentation_metrics
from cnnlab.train.fit import fit
from cnnlab.viz.segmentation import overlay_mask, segmentation_panel

SMALL = {"widths": [4, 8, 8]}
MODELS = [("fcn", SMALL), ("fcn", {**SMALL, "skips": False}), ("unet", {"widths": [4, 8, 8, 8]}),
          ("patchnet", {"widths": [4, 4], "hidden": 8, "fc_kernel": 3}),
          *[("segnet", {**SMALL, "upsampling": u}) for u in UPSAMPLING]]


@pytest.mark.parametrize(("name", "options"), MODELS, ids=lambda v: str(v))
def test_forward_backward_and_output_size_equals_input_size(name, options):
    torch.manual_seed(0)
    model = create(name, num_classes=5, in_channels=1, **options)
    for h, w in ((32, 32), (27, 35)):  # 27x35: padded to a multiple of the stride, cropped back
        x = torch.randn(2, 1, h, w, requires_grad=True)
        out = model(x)
        assert out.shape == (2, 5, h, w)
        F.cross_entropy(out, torch.randint(0, 5, (2, h, w))).backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_odd_size_without_padding_names_the_padding_that_fits():
    model = create("segnet", num_classes=3, pad_input=False, **SMALL)
    assert model(torch.randn(1, 1, 32, 24)).shape == (1, 3, 32, 24)
    with pytest.raises(ModelError, match=r"pad it to 32x40 \(add 2 rows and 3 columns\)"):
        model(torch.randn(1, 1, 30, 37))


def test_max_unpool_decoder_puts_values_where_the_encoder_maxima_were():
    model = create("segnet", num_classes=2, upsampling="max_unpool", **SMALL).eval()
    x = torch.randn(1, 1, 16, 16)
    features = model.encoder[0](x)
    pooled, where = model.pool(features)
    up = model.ups[-1](pooled, where)  # the last decoder stage mirrors the first encoder stage
    assert ((up != 0).sum((2, 3)) <= 64).all()  # at most one value per 2x2 window
    assert torch.equal(up.flatten(2).gather(2, where.flatten(2)), pooled.flatten(2))


def test_iou_and_pixel_accuracy_match_hand_computation():
    truth = torch.tensor([[0, 0, 1], [1, 2, 2]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    m = segmentation_metrics(confusion_matrix(pred, truth, 4))
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["per_class_iou"][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert m["per_class_iou"][3] is None  # absent everywhere: left out of the mean
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_map_matches_sklearn():
    gen = torch.Generator().manual_seed(0)
    targets = torch.rand(50, 4, generator=gen) < 0.3
    targets[:, 3] = False  # a class never present has no AP
    scores = (targets.float() * 0.3 + torch.rand(50, 4, generator=gen)).clamp(0, 1)
    m = multilabel_metrics(scores, targets)
    expected = [average_precision_score(targets[:, k].numpy(), scores[:, k].numpy())
                for k in range(3)]
    assert m["per_class_ap"][:3] == pytest.approx(expected) and m["per_class_ap"][3] is None
    assert m["map"] == pytest.approx(sum(expected) / 3)
    pred = scores >= 0.5
    tp = (pred & targets).sum().item()
    assert m["f1"] == pytest.approx(2 * tp / (pred.sum().item() + targets.sum().item()))


def test_tasks_refuse_data_without_dense_targets_and_bad_settings():
    with pytest.raises(ConfigError, match="use a scene set"):
        get_task("segment").targets(load_dataset("digits", "test"))
    with pytest.raises(ConfigError, match="did you mean 'segment'"):
        TrainConfig(task="segmnt").validate()
    with pytest.raises(ConfigError, match="--augment"):
        TrainConfig(task="segment", augment="flip").validate()


def quick(tmp_path, **values):
    base = dict(data="digit-scenes:n=300", epochs=2, batch_size=8,
                optimizer="adam", lr=0.003, out=str(tmp_path), progress=False, seed=0)
    return TrainConfig(**{**base, **values})


@pytest.mark.slow
def test_fit_segment_beats_predicting_background_everywhere(tmp_path):
    result = fit(quick(tmp_path, model="fcn", task="segment", model_options={"widths": [16, 32]}),
                 log=lambda *_: None)
    masks = load_dataset("digit-scenes:n=300", "test").masks
    background = float((masks == 0).float().mean())  # accuracy of "all background"
    all_background_miou = background / len(masks.unique())  # its IoU is 0 for every digit
    m = result.test_metrics
    # measured: pixel accuracy 0.861 vs 0.847, mean IoU 0.113 vs 0.077
    assert m["acc"] > background + 0.005 and m["miou"] > 1.3 * all_background_miou
    assert len(m["per_class_iou"]) == 11


@pytest.mark.slow
def test_fit_multilabel_beats_chance(tmp_path):
    result = fit(quick(tmp_path, model="lenet5", task="multilabel", epochs=4,
                       model_options={"activation": "relu", "pooling": "max"}),
                 log=lambda *_: None)
    present = load_dataset("digit-scenes:n=300", "test").present
    chance = float(present.float().mean())  # the AP of a score that ignores the image
    assert result.test_metrics["map"] > chance + 0.03  # chance 0.147
    assert 0 <= result.test_metrics["f1"] <= 1


def test_shifting_the_scene_by_the_total_stride_shifts_the_mask(shared_data):
    torch.manual_seed(0)
    model = create("fcn", num_classes=11, **SMALL).eval()  # total stride 8
    with torch.no_grad():  # without biases the untrained scores vary from pixel to pixel
        for layer in model.modules():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and layer.bias is not None:
                layer.bias.zero_()
    x = load_dataset("mnist-scenes:n=4", "test").images.float() / 255

    def agreement(shift: int) -> float:
        with torch.no_grad():
            pred, moved = model(x).argmax(1), model(x.roll((shift, shift), dims=(2, 3))).argmax(1)
        inner = (slice(None), slice(16, -16), slice(16, -16))  # away from the wrapped border
        assert pred[inner].unique().numel() > 3  # a real mask, not one class everywhere
        return float((pred.roll((shift, shift), dims=(1, 2))[inner] == moved[inner]).float().mean())

    assert agreement(8) > 0.99  # measured 1.0
    assert agreement(3) < 0.9  # not a multiple of the stride: measured 0.62


def test_sliding_window_gives_the_fully_convolutional_output():
    torch.manual_seed(0)
    model = create("patchnet", num_classes=4, widths=[4, 4], hidden=8, fc_kernel=3).eval()
    assert model.patch == 7
    x = torch.randn(2, 1, 12, 10)
    dense = model(x)
    sliding = sliding_window_scores(model, x)
    assert torch.allclose(sliding, dense, atol=1e-5)
    result = compare_sliding_window(model, x, torch.randint(0, 4, (2, 12, 10)))
    assert result.same_argmax == 1.0 and result.max_abs_diff < 1e-5
    assert result.sliding_s > 0 and result.fcn_s > 0  # the ratio is measured, not asserted
    with pytest.raises(ModelError, match="patch classifier"):
        sliding_window_scores(create("fcn", num_classes=2, **SMALL), x)


def test_masks_are_drawn_over_the_image(tmp_path):
    image = torch.zeros(1, 2, 2)
    out = overlay_mask(image, torch.tensor([[0, 3], [0, 0]]), alpha=1.0)
    assert torch.equal(out[:, 0, 0], torch.zeros(3)) and out[:, 0, 1].sum() > 0
    scenes = load_dataset("digit-scenes", "test").subset(torch.arange(3))
    path = segmentation_panel(scenes.images, scenes.masks, scenes.masks, tmp_path / "p.png",
                              classes=scenes.classes)
    assert path.stat().st_size > 0


def test_median_class_weights_reach_the_training_loss(tmp_path):
    from cnnlab.data.datasets import load_dataset as load
    from cnnlab.devices import resolve_device
    from cnnlab.tasks import Segment, median_frequency_weights
    from cnnlab.train.fit import Run, load_splits

    config = TrainConfig(model="fcn", data="digit-scenes", task="segment", epochs=1,
                         class_weights="median", out=str(tmp_path), progress=False)
    run = Run(config, RunFolder(tmp_path / "r", created=False), resolve_device("cpu"))
    train, _, _ = load_splits(config)
    expected = median_frequency_weights(train.masks, 11)
    assert isinstance(run.task, Segment) and torch.equal(run.task.weights, expected)
    assert expected[0] < 0.1 * expected[1:].min()  # background is by far the most frequent
    logits, y = torch.randn(2, 11, 4, 4), torch.randint(0, 11, (2, 4, 4))
    assert run.task.loss(logits, y) == pytest.approx(
        float(F.cross_entropy(logits, y, weight=expected)))
    assert len(load("digit-scenes", "train")) > len(train)  # weights come from the training part
    with pytest.raises(ConfigError, match="--class-weights median weights a segmentation"):
        TrainConfig(class_weights="median").validate()
