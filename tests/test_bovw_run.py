"""Bag-of-visual-words runs end to end: save/load round trip, the CLI, texture by filter-bank
response, learned vs hand-crafted filters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cnnlab.bovw import BovwConfig, load_bovw, run_bovw, save_bovw
from cnnlab.bovw.pipeline import load_splits
from cnnlab.cli.main import main
from cnnlab.errors import CheckpointError, ConfigError

TINY = dict(data="digits", train_per_class=10, test_count=60, words=8, levels=1, patch=4,
            step=2, codebook_samples=500)  # 8x8 digits: 9 patches per image, ~1 s a run
TINY_FLAGS = ["--data", "digits", "--train-per-class", "10", "--test-count", "60", "--words",
              "8", "--levels", "1", "--patch", "4", "--step", "2", "--codebook-samples", "500"]


@pytest.mark.parametrize("classifier, assignment", [
    ("pyramid", "hard"), ("intersection", "soft"), ("linear", "hard"), ("knn", "soft")])
def test_saved_run_predicts_as_the_run_in_memory(tmp_path, classifier, assignment):
    config = BovwConfig(**TINY, classifier=classifier, assignment=assignment)
    result = run_bovw(config, log=lambda *_: None)
    directory = save_bovw(result, tmp_path / "run")
    loaded = load_bovw(directory)
    _, test = load_splits(result.config)
    in_memory = result.model.predict(test.images)
    assert torch.equal(loaded.model.predict(test.images), in_memory)
    # the pipeline's accuracy (from precomputed kernels) is the model's own
    assert torch.equal(in_memory, result.test_predictions)
    assert loaded.levels[-1].test_acc == pytest.approx(float((in_memory == test.labels).float().mean()))
    assert loaded.config == result.config and loaded.config.patch == 4


@pytest.fixture(scope="module")
def tiny_result():
    return run_bovw(BovwConfig(**TINY), log=lambda *_: None)


def test_run_directory_holds_config_metrics_index_and_tensors_only(tmp_path, tiny_result):
    result = tiny_result
    directory = save_bovw(result, tmp_path / "run")
    index = json.loads((directory / "run.json").read_text())
    assert index["kind"] == "bovw" and index["test"]["acc"] == result.test_acc
    assert set(index["test"]) == {"acc", "acc_level0", "acc_level1"}
    records = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert [r["level"] for r in records] == [0, 1] and len(records[0]["per_class_acc"]) == 10
    assert sum(map(sum, index["confusion"])) == 60
    svm = load_file(directory / "classifier.safetensors")  # plain tensors, no pickle anywhere
    assert set(svm) == {"support", "dual_coef", "intercept", "n_support", "classes"}
    assert svm["dual_coef"].shape == (9, len(svm["support"]))  # (C - 1, S)
    assert load_file(directory / "codebook.safetensors")["centroids"].shape == (8, 128)
    for name in ("words", "word_map", "pyramid", "levels", "confusion"):
        assert (directory / f"{name}.png").stat().st_size > 1000


def test_never_writes_into_a_folder_that_holds_files(tmp_path, tiny_result):
    result = tiny_result
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        save_bovw(result, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    save_bovw(result, tmp_path / "empty")  # an empty folder is used


def test_a_pickle_in_place_of_the_classifier_is_refused(tmp_path, tiny_result):
    import pickle

    directory = save_bovw(tiny_result, tmp_path / "run")
    (directory / "classifier.safetensors").write_bytes(pickle.dumps({"support": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_bovw(directory)


def test_cli_run_prints_every_level_and_refuses_to_reuse_its_folder(tmp_path, capsys):
    argv = ["bovw", *TINY_FLAGS, "--out", str(tmp_path), "--name", "r"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "L=0" in out and "L=1" in out and f"run saved in {tmp_path / 'r'}" in out
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not empty" in err


@pytest.mark.parametrize("flags, needle", [
    (["--words", "1"], "--words must be >= 2"),
    (["--levels", "-1"], "--levels must be >= 0"),
    (["--patch", "9"], "--patch 9 is larger than the 8x8 images"),
    (["--classifier", "svm"], "--classifier 'svm' is not one of"),
])
def test_bad_flags_are_one_line_errors_with_exit_2(tmp_path, capsys, flags, needle):
    argv = ["bovw", "--data", "digits", "--train-per-class", "5", "--out", str(tmp_path), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and needle in err, err


def test_too_many_images_for_the_kernel_svm_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("cnnlab.bovw.classify.MAX_KERNEL_TRAIN", 100)  # digits has 1,437
    assert main(["bovw", "--data", "digits", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--train-per-class" in err and "--classifier linear" in err


def test_patch_covering_a_pyramid_cell_is_one_warning_line_naming_l(tmp_path, capsys):
    flags = list(TINY_FLAGS)
    flags[flags.index("--patch") + 1] = "6"  # 8x8 at L=1: cells of 4 px
    assert main(["bovw", *flags, "--out", str(tmp_path), "--name", "w"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "L=1" in warning[0] and "--patch 6" in warning[0]


def test_mean_abs_response_is_the_scipy_correlation():
    from scipy.ndimage import correlate

    from cnnlab.bovw.texture import filter_bank, mean_abs_response

    names, bank = filter_bank()
    assert len(bank) == 36 and all(abs(float(k.sum())) < 1e-6 for k in bank)  # zero mean
    rng = np.random.default_rng(0)
    images = (rng.random((2, 1, 40, 40)) * 255).astype(np.uint8)
    ours = mean_abs_response(torch.from_numpy(images), bank)  # (2, 36)
    for i in (0, 7, 35):  # torch's "reflect" padding is SciPy's "mirror"
        kernel = bank[i].double().numpy()
        expected = np.abs(correlate(images[0, 0] / 255, kernel, mode="mirror")).mean()
        assert ours[0, i].item() == pytest.approx(expected, rel=1e-5), names[i]


def test_edge_filters_prefer_their_orientation():
    from cnnlab.bovw.texture import filter_bank, mean_abs_response

    names, bank = filter_bank()
    stripes = torch.zeros(1, 1, 48, 48, dtype=torch.uint8)
    stripes[..., ::8, :] = 255  # horizontal lines: intensity changes along y
    response = dict(zip(names, mean_abs_response(stripes, bank)[0].tolist(), strict=True))
    assert response["bar s2 90deg"] > 5 * response["bar s2 0deg"]


def test_texture_patches_come_from_disjoint_halves():
    from skimage import data

    from cnnlab.bovw.texture import texture_patches

    train, test = texture_patches(patch=32, per_texture=5, seed=0)
    brick = torch.from_numpy(data.brick())  # (512, 512)
    assert len(train) == len(test) == 15 and train.classes == ["brick", "grass", "gravel"]
    rows = brick.unfold(1, 32, 1)  # (512, 481, 32): every 32-pixel run of every row
    for split, columns in ((train, range(0, 225)), (test, range(256, 481))):
        for crop in split.images[split.labels == 0][:, 0]:  # (32, 32) brick crops
            found = [(int(t), int(x)) for t, x in (rows == crop[0]).all(-1).nonzero()
                     if torch.equal(brick[t:t + 32, x:x + 32], crop)]
            assert found and all(x in columns for _, x in found)


def test_hand_crafted_bank_sobel_is_opencvs_and_matches_itself():
    import cv2

    from cnnlab.bovw.handcrafted import compare_filters, handcrafted_bank

    names, bank = handcrafted_bank(5)
    kx, ky = cv2.getDerivKernels(1, 0, 5)  # OpenCV's 5x5 Sobel d/dx: rows ky, columns kx
    np.testing.assert_array_equal(bank[names.index("sobel x")].numpy(), np.outer(ky, kx))
    picked = [names.index("sobel y"), names.index("gabor 45deg l=5 odd")]
    learned = torch.stack([bank[picked[0]], -bank[picked[1]]])
    result = compare_filters(learned, random_filters=200)
    assert result.best == picked
    assert result.correlation == pytest.approx([1.0, -1.0])
    assert 0 < result.random_baseline < 0.9


def test_filters_command_on_a_trained_run(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--epochs", "1", "--no-progress", "--out",
                 str(tmp_path), "--name", "lenet"]) == 0
    capsys.readouterr()
    assert main(["bovw", "--filters", str(tmp_path / "lenet"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("closest:") == 6  # LeNet-5's C1: six 5x5 filters
    saved = json.loads((tmp_path / "filters-lenet" / "filters.json").read_text())
    assert len(saved["matches"]) == 6 and (tmp_path / "filters-lenet" / "filters.png").is_file()
