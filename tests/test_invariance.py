"""Invariance curves, equivariance, PCA embeddings and the CNN-vs-MLP shift test."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnlab.analysis.embed import embed_layer
from cnnlab.analysis.features import collect_features, load_run_data
from cnnlab.analysis.invariance import (
    apply_transform,
    circular_copy,
    cumulative_strides,
    equivariance_errors,
    invariance_curves,
)
from cnnlab.analysis.shift import shift_experiment
from cnnlab.config import TrainConfig
from cnnlab.files import OUTPUTS_MANIFEST
from cnnlab.models import create
from cnnlab.train.fit import fit


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = TrainConfig(model="lenet5", data="digits", epochs=1, lr=0.05, progress=False,
                         out=str(tmp_path_factory.mktemp("runs")), name="lenet5", seed=0)
    return fit(config, log=lambda *_: None)


def conv_stack(padding_mode: str = "zeros") -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, padding_mode=padding_mode), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode=padding_mode), nn.ReLU(),
        nn.Conv2d(6, 6, 5, padding=2, padding_mode=padding_mode))


def test_circular_padding_makes_every_layer_exactly_shift_equivariant():
    x = torch.randn(3, 2, 32, 32)
    rows = equivariance_errors(conv_stack("circular"), x, shift=4)
    assert [r["stride"] for r in rows] == [1, 2, 4, 4, 4]  # conv, pool, conv s2, conv, output
    assert [r["output_shift"] for r in rows] == [4, 2, 1, 1, 1]
    assert all(r["error_full"] < 1e-6 for r in rows)


def test_zero_padding_is_equivariant_only_in_the_interior():
    rows = equivariance_errors(conv_stack("zeros"), torch.randn(3, 2, 32, 32), shift=4)
    assert all(r["error_full"] > 0.05 for r in rows)  # borders: wrap-around vs zero padding
    assert all(r["error_interior"] < 1e-6 for r in rows[:3])


def test_shift_not_divisible_by_the_stride_is_reported_as_undefined():
    rows = equivariance_errors(conv_stack("circular"), torch.randn(1, 2, 32, 32), shift=2)
    assert rows[0]["error_full"] < 1e-6 and math.isnan(rows[2]["error_full"])  # stride 4


def test_valid_convolutions_keep_the_stride_of_their_input():
    strides = cumulative_strides(create("lenet5"), torch.zeros(1, 1, 32, 32))
    # C1 5x5 valid (28), S2 (14), C3 5x5 valid (10), S4 (5): strides 1, 2, 2, 4
    assert [strides[f"features.{i}"] for i in (0, 2, 3, 5)] == [1, 2, 2, 4]


def test_global_average_pooling_with_circular_padding_is_exactly_shift_invariant():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(4, 1, 16, 16)
    moved = x.roll((3, -5), dims=(2, 3))
    assert torch.allclose(circular_copy(net)(moved), circular_copy(net)(x), atol=1e-6)
    assert not torch.allclose(net(moved), net(x), atol=1e-4)  # zero padding breaks it


def test_integer_translation_moves_pixels_exactly_with_zero_fill():
    x = torch.rand(2, 1, 8, 8)
    moved = apply_transform(x, "translate", 2)
    assert torch.allclose(moved[..., 2:], x[..., :-2], atol=1e-6)
    assert moved[..., :2].abs().max() == 0
    assert torch.allclose(apply_transform(x, "rotate", 0), x, atol=1e-6)


def test_invariance_curves_start_at_identity_and_degrade(run):
    data = load_run_data(run.run_dir)  # all 360 test scans
    rows = invariance_curves(data, "translate", [0, 12])
    zero, far = rows
    assert zero["top1_agreement"] == 1.0
    assert zero["accuracy"] == pytest.approx(run.test_acc, abs=1e-6)
    assert all(v < 1e-5 for k, v in zero.items() if k.startswith("dist:"))
    assert far["top1_agreement"] < 1.0 and far["p_true"] < zero["p_true"]
    assert all(far[k] > 0.1 for k in far if k.startswith("dist:"))


def test_collect_features_pools_each_map(run):
    data = load_run_data(run.run_dir, limit=16)
    x = data.inputs()
    feats = collect_features(data.model, x, ["features.0", "classifier.5"], pool=2)
    with torch.no_grad():
        conv = data.model.features[0](x)  # (16, 6, 28, 28)
    expected = conv.reshape(16, 6, 2, 14, 2, 14).mean((3, 5)).flatten(1)
    assert torch.allclose(feats["features.0"], expected, atol=1e-5)
    assert feats["classifier.5"].shape == (16, 10)


def test_embedding_per_image_centering(run):
    data = load_run_data(run.run_dir, limit=6)
    values = [-60, -30, 0, 30, 60]
    rows, ratios = embed_layer(data, "features.3", "rotate", values, center="image")
    assert len(rows) == 30 and 0 < ratios[1] <= ratios[0] <= 1
    for image in range(6):  # each image's own mean was removed before PCA
        mine = [r["pc1"] for r in rows if r["image"] == image]
        assert abs(sum(mine) / len(mine)) < 1e-3


@pytest.mark.slow
def test_shift_test_matches_sizes_and_runs():
    rows = shift_experiment("digits", shifts=(0, 2), epochs=2, train_limit=None)
    sizes = {r["model"]: r["parameters"] for r in rows}
    assert abs(sizes["cnn"] - sizes["mlp"]) / sizes["cnn"] < 0.02
    acc = {(r["model"], r["shift"]): r["accuracy"] for r in rows}
    assert acc[("cnn", 0)] > 0.5 and acc[("mlp", 0)] > 0.5
    assert acc[("mlp", 2)] < acc[("mlp", 0)]


def small_dense(name: str, circular: bool) -> nn.Module:
    torch.manual_seed(0)
    model = create(name, num_classes=3, in_channels=1, input_size=(1, 48, 48), widths=(4, 8))
    return circular_copy(model) if circular else model


def test_strides_go_down_through_upsampling_as_fractions():
    from fractions import Fraction

    from cnnlab.layers.upsample import upsample_transposed

    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), upsample_transposed(2),
                        upsample_transposed(2))
    strides = cumulative_strides(net, torch.zeros(1, 1, 16, 16))
    assert [strides[k] for k in ("0", "1", "2")] == [2, 1, Fraction(1, 2)]
    seg = cumulative_strides(small_dense("segnet", False), torch.zeros(1, 1, 48, 48))
    # encoder 1, 2; max-unpooling back to 2 then 1 (the decoder's convs follow their unpool)
    assert [seg[k] for k in ("encoder.0.0", "encoder.1.0", "ups.0.layer", "decoder.0.0",
                             "ups.1.layer", "decoder.1.0", "classifier", "")] == \
        [1, 2, 2, 2, 1, 1, 1, 1]


@pytest.mark.parametrize("name", ["segnet", "fcn"])
def test_dense_models_shift_their_output_by_k(name):
    x = torch.randn(2, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    circ = {r["layer"]: r for r in equivariance_errors(small_dense(name, True), x, shift=4)}
    assert circ["output"]["stride"] == 1 and circ["output"]["output_shift"] == 4
    if name == "segnet":  # convs, max-pools and max-unpools: exact on the whole map
        assert all(r["error_full"] < 1e-5 for r in circ.values())
    zero = equivariance_errors(small_dense(name, False), x, shift=4)
    by_layer = {r["layer"]: r for r in zero}
    assert by_layer["output"]["error_full"] > 0.05  # the border breaks it
    # inside the measured receptive-field margin the output moves by exactly k pixels
    assert all(r["error_interior"] < 1e-5 for r in zero), \
        [(r["layer"], r["error_interior"]) for r in zero]


def test_interior_margin_follows_the_receptive_field():
    from fractions import Fraction

    from cnnlab.analysis.invariance import dependency_extents, interior_ranges

    net = nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.Conv2d(1, 1, 3, padding=1))
    x = torch.randn(1, 1, 20, 20)
    extents = dependency_extents(net, x, ["0", "1"], {"0": Fraction(1), "1": Fraction(1)})
    assert extents["0"] == [(2, 2), (2, 2)] and extents["1"] == [(3, 3), (3, 3)]
    # rolled by 4: rows 4.. hold the original; a 7-wide field fits from row 4 + 3 to 19 - 3
    assert interior_ranges(extents["1"], Fraction(1), 4, 20, 20) == [range(7, 17)] * 2


def test_embed_report_writes_the_files_it_names(run, tmp_path):
    from cnnlab.analysis.embed import embed_paths, embed_report

    data = load_run_data(run.run_dir, limit=4)
    for layer in ("features.0", "features.3"):
        for kind, values in (("rotate", [-30, 0, 30]), ("scale", [0.8, 1.0, 1.2])):
            embed_report(data, layer, kind, values, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != OUTPUTS_MANIFEST)
    assert names == sorted(f"embed-{layer}-{kind}.{ext}" for layer in ("features.0", "features.3")
                           for kind in ("rotate", "scale") for ext in ("csv", "png"))
    assert embed_paths(tmp_path, "features.3", "rotate")[0].name == "embed-features.3-rotate.csv"
