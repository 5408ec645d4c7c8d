"""Linear probes per layer (lecture 001, Table 6) on synthetic features and a tiny real run."""

from __future__ import annotations

import pytest
import torch

from cnnlab.analysis.probe import (
    format_table,
    probe_accuracy,
    probe_features,
    probe_run,
    sample_per_class,
)
from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError, ModelError
from cnnlab.train.fit import fit


def blobs(n_per_class: int, classes: int, dim: int, spread: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=gen) * 10
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=gen), labels


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_separable_features_are_probed_perfectly(kind):
    x, y = blobs(40, 5, 16, 0.5, seed=0)
    tx, ty = blobs(40, 5, 16, 0.5, seed=0)  # same centres (same seed), fresh draws below
    tx = tx + 0.5 * torch.randn_like(tx)
    assert probe_accuracy(kind, x, y, tx, ty) >= 0.99


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_random_labels_give_chance_accuracy(kind):
    gen = torch.Generator().manual_seed(1)
    x, tx = torch.randn(500, 20, generator=gen), torch.randn(2000, 20, generator=gen)
    y = torch.randint(0, 10, (500,), generator=gen)
    ty = torch.randint(0, 10, (2000,), generator=gen)
    assert abs(probe_accuracy(kind, x, y, tx, ty) - 0.1) < 0.04


def test_sample_per_class_draws_exactly_k_of_each_class():
    labels = torch.arange(10).repeat(50)
    pick = sample_per_class(labels, 30, seed=0)
    assert torch.bincount(labels[pick]).tolist() == [30] * 10
    assert not torch.equal(pick, sample_per_class(labels, 30, seed=1))


def test_repeats_give_mean_and_spread_per_layer():
    x, y = blobs(30, 3, 8, 6.0, seed=2)
    tx, ty = blobs(30, 3, 8, 6.0, seed=2)
    feats = {"noise": torch.randn(90, 8), "signal": x}
    rows = probe_features(feats, y, {"noise": torch.randn(90, 8), "signal": tx}, ty,
                          classifiers=("svm",), per_class=5, repeats=3)
    by_layer = {r["layer"]: r for r in rows}
    assert by_layer["signal"]["acc_mean"] > by_layer["noise"]["acc_mean"] + 0.3
    assert by_layer["signal"]["repeats"] == 3 and by_layer["noise"]["acc_std"] >= 0
    assert "SVM (2) signal" in format_table(rows)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = TrainConfig(model="lenet5", data="digits", epochs=2, lr=0.05, progress=False,
                         out=str(tmp_path_factory.mktemp("runs")), name="lenet5", seed=0)
    return fit(config, log=lambda *_: None)


def test_probe_run_probes_every_conv_and_linear_layer(run, tmp_path):
    rows = probe_run(run.run_dir, classifiers=("softmax",), out=tmp_path, limit=600)
    assert [r["layer"] for r in rows] == ["features.0", "features.3", "classifier.1",
                                          "classifier.3", "classifier.5"]
    assert [r["dim"] for r in rows] == [24, 64, 120, 84, 10]  # maps pooled to 2x2
    assert all(0.5 < r["acc_mean"] <= 1 for r in rows)  # chance is 0.1
    assert (tmp_path / "probe.csv").is_file() and (tmp_path / "probe.png").is_file()


def test_probe_errors_name_the_choices(run):
    with pytest.raises(ConfigError, match="svm"):
        probe_run(run.run_dir, classifiers=("svn",))
    with pytest.raises(ModelError, match="features.0"):
        probe_run(run.run_dir, layers="features.9", limit=50)


def test_depth_verdict_compares_first_and_last_layer():
    from cnnlab.analysis.probe import depth_verdicts

    def rows(kind, accs):
        return [{"classifier": kind, "acc_mean": a} for a in accs]
    lines = depth_verdicts(rows("svm", [0.5, 0.7, 0.6, 0.9]) + rows("softmax", [0.8, 0.6]))
    assert lines == ["accuracy rises with depth (SVM): yes (50.0% -> 90.0%; up at 2 of 3 steps)",
                     "accuracy rises with depth (Softmax): no (80.0% -> 60.0%; up at 0 of 1 "
                     "steps)"]


@pytest.mark.parametrize("option", ["per_class", "repeats", "limit"])
def test_probe_counts_must_be_positive(option):
    with pytest.raises(ConfigError, match=option.replace("_", "-")):
        probe_run("no-such-run", **{option: 0})
