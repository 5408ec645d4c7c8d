"""The observers every fit gets: the stuck-run warning (issue 21, stumble 2) and early stopping
(``--patience``) whose counter survives an interruption."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from cnnlab.config import TrainConfig
from cnnlab.tasks import get_task
from cnnlab.train.fit import fit
from cnnlab.train.stuck import StuckRun, first_check


def config(out, **overrides) -> TrainConfig:
    values = dict(model="lenet5", data="digits", epochs=3, out=str(out), progress=False,
                  threads=1, seed=0)
    return TrainConfig(**{**values, **overrides})


def test_chance_loss_is_the_loss_of_predicting_the_frequencies():
    labels = torch.tensor([0, 1, 2, 3] * 5)
    assert get_task("classify").chance_loss(labels, 4) == pytest.approx(math.log(4))
    assert get_task("classify").chance_loss(torch.tensor([0, 0, 0, 1]), 2) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    present = torch.tensor([[1, 0], [1, 0], [0, 0], [0, 1]])  # p = 0.5 and 0.25
    bce = (math.log(2) - 0.25 * math.log(0.25) - 0.75 * math.log(0.75)) / 2
    assert get_task("multilabel").chance_loss(present, 2) == pytest.approx(bce)
    # independent check: BCE of the constant logits logit(p) is the same number
    p = present.float().mean(0)
    logits = (p / (1 - p)).log().expand(4, 2)
    assert get_task("multilabel").loss(logits, present) == pytest.approx(bce, abs=1e-6)


def test_segment_chance_loss_with_class_weights_is_the_best_constant_prediction():
    masks = torch.tensor([[0, 0, 0, 1], [0, 0, 2, 2]])
    task = get_task("segment", weights=torch.tensor([0.5, 2.0, 1.0]))
    chance = task.chance_loss(masks, 3)
    w_f = torch.tensor([5 * 0.5, 1 * 2.0, 2 * 1.0])
    best = (w_f / w_f.sum()).log()  # the optimum of the weighted cross-entropy
    logits = best.view(1, 3, 1, 1).expand(2, 3, 1, 4)
    assert task.loss(logits, masks.view(2, 1, 4)) == pytest.approx(chance, abs=1e-6)
    worse = torch.zeros(1, 3, 1, 1).expand(2, 3, 1, 4)  # uniform is no better
    assert task.loss(worse, masks.view(2, 1, 4)) > chance


def test_a_run_that_does_not_learn_gets_one_warning_with_a_hint(tmp_path):
    lines = []
    fit(config(tmp_path, name="stuck", lr=1e-7, epochs=4), log=lines.append)
    warnings = [line for line in lines if "looks stuck" in line]
    assert len(warnings) == 1
    assert "chance loss 2.30" in warnings[0] and "--lr" in warnings[0]  # log 10 = 2.3026
    assert lines.index(warnings[0]) > next(i for i, line in enumerate(lines)
                                           if line.startswith("epoch 3/4"))


def test_a_run_that_learns_gets_no_warning(tmp_path):
    lines = []
    fit(config(tmp_path, name="fine"), log=lines.append)
    assert not [line for line in lines if "stuck" in line]


def test_a_main_metric_at_zero_for_three_epochs_is_reported():
    said = []
    stuck = StuckRun(said.append)
    run = SimpleNamespace(config=SimpleNamespace(epochs=12, lr=0.01), main_metric="val_map")
    stuck.chance = 0.4
    for epoch in range(1, 7):
        stuck.on_epoch_end(run, {"epoch": epoch, "train_loss": 0.1,
                                 "val_map": 0.0 if epoch >= 2 else 0.5})
    assert first_check(12) == 3
    assert len(said) == 1 and "val_map has been 0 for the last 3 epochs" in said[0]


def frozen(tmp_path, name, **overrides) -> TrainConfig:
    """A run whose weights barely move: validation accuracy is flat after epoch 1."""
    return config(tmp_path, name=name, lr=1e-9, epochs=6, patience=2, schedule="constant",
                  **overrides)


def test_patience_ends_the_run_and_tests_the_best_epoch(tmp_path):
    lines = []
    result = fit(frozen(tmp_path, "p"), log=lines.append)
    assert result.status == "completed" and result.epochs_done == 3  # 1 best + 2 without gain
    assert result.test_acc is not None
    assert any(line.startswith("early stopping: val_acc has not improved") for line in lines)
    index = json.loads((result.run_dir / "run.json").read_text())
    assert index["status"] == "completed" and index["last"]["epoch"] == 3


def test_patience_stops_at_the_same_epoch_after_an_interruption(tmp_path):
    whole = fit(frozen(tmp_path, "whole"), log=lambda *_: None)
    first = fit(frozen(tmp_path, "split"), stop_after_epochs=2, log=lambda *_: None)
    assert first.status == "stopped"
    resumed = fit(None, resume=first.run_dir, log=lambda *_: None)
    assert resumed.epochs_done == whole.epochs_done == 3
    again = fit(None, resume=first.run_dir, log=lambda *_: None)  # already stopped early
    assert again.epochs_done == 3
