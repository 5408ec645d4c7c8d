"""Layer ablations: parameter counts against hand counts (lecture 001) and a retraining run."""

from __future__ import annotations

import pytest

from cnnlab.analysis.ablate import ablate, format_table, layer_names, parameters_removed
from cnnlab.config import TrainConfig
from cnnlab.errors import ModelError
from cnnlab.train.fit import fit

FC6 = 9216 * 4096 + 4096  # 256*6*6 inputs
FC7 = 4096 * 4096 + 4096


def test_slide_numbers_map_to_alexnet_layers():
    assert layer_names("7", "alexnet") == ["fc7"]
    assert layer_names("3,4,6,7", "alexnet") == ["conv3", "conv4", "fc6", "fc7"]
    assert layer_names(["features.2"], "c3x8p1-relu-gap") == ["features.2"]


def test_removing_layer_7_removes_16_million_parameters():
    full, removed = parameters_removed("alexnet", ["fc7"])
    assert full == 61_100_840
    assert removed == FC7 == 16_781_312  # slide: "16 million less parameters"


def test_removing_layers_6_and_7_removes_about_50_million():
    _, removed = parameters_removed("alexnet", ["fc6", "fc7"])
    # fc8 then reads the 9216 conv features instead of fc7's 4096: 5,120,000 more weights
    assert removed == FC6 + FC7 - (9216 - 4096) * 1000 == 49_414_144  # slide: "50 million"


def test_removing_layers_3_and_4_removes_few_parameters():
    _, removed = parameters_removed("alexnet", ["conv3", "conv4"])
    conv3, conv4 = 192 * 384 * 9 + 384, 384 * 256 * 9 + 256
    conv5_saving = (256 - 192) * 256 * 9  # conv5 now reads conv2's 192 maps
    assert removed == conv3 + conv4 + conv5_saving == 1_696_384  # slide: "1 million"
    _, paper = parameters_removed("alexnet_paper", ["conv3", "conv4"])
    assert paper == 256 * 384 * 9 + 384 + 192 * 384 * 9 + 384 + 256 * (192 - 128) * 9


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = TrainConfig(model="c3x8p1-relu-c3x8p1-relu-gap", data="digits", epochs=1, lr=0.1,
                         progress=False, seed=0, out=str(tmp_path_factory.mktemp("runs")),
                         name="full")
    return fit(config, log=lambda *_: None)


def test_identity_ablation_retrains_and_reports(run):
    rows = ablate(run.run_dir, [["features.2"]], log=lambda *_: None)
    base, removed = rows
    assert base["test_acc"] == pytest.approx(run.test_acc, abs=1e-6)
    assert removed["parameters_removed"] == 8 * 8 * 9 + 8  # the 3x3 conv 8 -> 8
    assert removed["parameters"] == base["parameters"] - 584
    assert removed["change_pp"] == pytest.approx(100 * (removed["test_acc"] - base["test_acc"]))
    assert "Removing features.2:" in format_table(rows)
    assert (run.run_dir.parent / "full-minus-features.2" / "best.safetensors").is_file()


def test_a_layer_that_changes_the_shape_cannot_become_an_identity(run):
    with pytest.raises(ModelError, match="breaks the shapes"):
        ablate(run.run_dir, [["features.0"]], log=lambda *_: None)  # 1 -> 8 channels


def test_unknown_layer_is_a_one_line_error_naming_the_choices(run):
    with pytest.raises(ModelError) as caught:
        ablate(run.run_dir, [["nope"]], log=lambda *_: None)
    message = str(caught.value)
    assert "nope" in message and "features.0" in message and "\n" not in message
    with pytest.raises(ModelError, match="'7'|7"):  # slide numbers mean nothing here
        ablate(run.run_dir, ["7"], log=lambda *_: None)


def test_every_removal_is_checked_before_any_retraining(run):
    before = sorted(p.name for p in run.run_dir.parent.iterdir())
    with pytest.raises(ModelError, match="nope"):
        ablate(run.run_dir, [["features.2"], ["nope"]], log=lambda *_: None)
    assert sorted(p.name for p in run.run_dir.parent.iterdir()) == before


def test_layers_are_named_as_in_every_other_command(run):
    """Issue 21, item 10: ``conv2`` is the second convolution here too."""
    from cnnlab.analysis.ablate import module_paths
    from cnnlab.runs import open_run

    spec = open_run(run.run_dir).meta["model"]
    assert module_paths(spec, ["conv2", "features.0"]) == ["features.2", "features.0"]
    assert module_paths({"name": "alexnet"}, ["conv3", "fc7"]) == ["conv3", "fc7"]


def test_the_sentences_say_points_and_fewer():
    rows = [{"removed": "(none)", "parameters": 100, "parameters_removed": 0, "test_acc": 0.9,
             "change_pp": 0.0},
            {"removed": "fc7", "parameters": 90, "parameters_removed": 16_781_312,
             "test_acc": 0.889, "change_pp": -1.1}]
    assert format_table(rows).splitlines()[-1] == (
        "Removing fc7: 1.1 percentage points drop in test accuracy, 16,781,312 fewer "
        "parameters (16.8 million)")
