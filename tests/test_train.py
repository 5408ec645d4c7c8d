"""The training core: a real run on scikit-learn's digits, exact resume, stops, errors."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math

import pytest
import torch

from cnnlab.config import TrainConfig, load_config
from cnnlab.errors import CheckpointError, TrainingDiverged
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.runs.reader import load_model
from cnnlab.train.fit import fit
from cnnlab.weightfile import model_state

fit_module = importlib.import_module("cnnlab.train.fit")  # the module, not the function


def quick_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(model="lenet5", data="digits", epochs=2, batch_size=64, lr=0.05,
                  out=str(tmp_path), progress=False, seed=3, val_fraction=0.1)
    values.update(overrides)
    return TrainConfig(**values)


def weights(run_dir, which="last"):
    tensors, _ = read_checkpoint(run_dir / f"{which}.safetensors")
    return model_state(tensors)


def test_lenet5_learns_digits_and_writes_a_complete_run(tmp_path):
    result = fit(quick_config(tmp_path, epochs=4, name="digits"), log=lambda *_: None)
    run = result.run_dir
    assert result.status == "completed" and result.epochs_done == 4
    assert result.test_acc > 0.85  # 360 real test scans; chance is 0.10
    for name in ("config.yaml", "metrics.jsonl", "last.safetensors", "last.json",
                 "best.safetensors", "best.json", "run.json"):
        assert (run / name).is_file(), name
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    index = json.loads((run / "run.json").read_text())
    assert index["status"] == "completed" and index["last"]["epoch"] == 4
    assert index["torch_version"] == torch.__version__ and "git_sha" in index
    best_val = max(r["val_acc"] for r in lines)
    assert index["best"]["val_acc"] == pytest.approx(best_val)
    assert index["best"]["epoch"] == 1 + [r["val_acc"] for r in lines].index(best_val)
    assert index["test"]["acc"] == pytest.approx(result.test_acc)  # the final test, recorded
    assert index["test"]["count"] == 360
    _, meta = read_checkpoint(run / "best.safetensors")
    assert meta["classes"] == [str(d) for d in range(10)]
    assert meta["model"]["input_size"] == [1, 32, 32]
    assert meta["preprocess"]["fit"] == "resize"  # 8x8 scans -> 32x32


def test_saved_config_reruns_to_identical_weights(tmp_path):
    first = fit(quick_config(tmp_path, epochs=1, name="a"), log=lambda *_: None)
    config = load_config(first.run_dir / "config.yaml")
    second = fit(dataclasses.replace(config, name="b"), log=lambda *_: None)
    a, b = weights(first.run_dir), weights(second.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_two_epochs_equals_four_in_one_go(tmp_path):
    config = quick_config(tmp_path, epochs=4, schedule="cosine", augment="crop:2")
    straight = fit(dataclasses.replace(config, name="straight"), log=lambda *_: None)
    part = fit(dataclasses.replace(config, name="split"), stop_after_epochs=2,
               log=lambda *_: None)
    assert part.status == "stopped" and part.epochs_done == 2
    resumed = fit(None, resume=part.run_dir, log=lambda *_: None)
    assert resumed.status == "completed"
    a, b = weights(straight.run_dir), weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_interrupt_mid_epoch_saves_and_resumes_exactly(tmp_path, monkeypatch):
    config = quick_config(tmp_path, epochs=2, model_options={"activation": "relu"})
    straight = fit(dataclasses.replace(config, name="straight"), log=lambda *_: None)

    class StopAfterFiveSteps(fit_module.StopFlag):  # checked once before the epoch, then per step
        checks = 0

        def __bool__(self):
            StopAfterFiveSteps.checks += 1
            if StopAfterFiveSteps.checks == 6:
                self.signal = 15
            return self.signal is not None

    original = fit_module.StopFlag
    monkeypatch.setattr(fit_module, "StopFlag", StopAfterFiveSteps)
    stopped = fit(dataclasses.replace(config, name="stopped"), log=lambda *_: None)
    assert stopped.status == "interrupted" and stopped.signal == 15
    _, meta = read_checkpoint(stopped.run_dir / "last.safetensors")
    assert (meta["state"]["epoch"], meta["state"]["batch"]) == (0, 5)
    monkeypatch.setattr(fit_module, "StopFlag", original)
    resumed = fit(None, resume=stopped.run_dir, log=lambda *_: None)
    a, b = weights(straight.run_dir), weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    run = fit(quick_config(tmp_path, epochs=1, name="ok"), log=lambda *_: None).run_dir
    good = weights(run)
    config = dataclasses.replace(load_config(run / "config.yaml"), epochs=3, lr=1e12,
                                 schedule="constant", momentum=0.0)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch \d+, step \d+"):
        fit(config, resume=run, log=lambda *_: None)
    after = weights(run)
    assert all(torch.equal(good[k], after[k]) for k in good)
    assert all(torch.isfinite(v).all() for v in after.values())


def test_load_model_rebuilds_and_checks_architecture(tmp_path):
    run = fit(quick_config(tmp_path, epochs=1, name="m"), log=lambda *_: None).run_dir
    model, meta = load_model(run)
    assert not model.training and meta["model"]["name"] == "lenet5"
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(CheckpointError, match="no run directory or checkpoint"):
        load_model(tmp_path / "missing")


def test_schedules_match_their_formulas():
    from cnnlab.train.optim import lr_at

    config = TrainConfig(lr=0.1, schedule="cosine", warmup_epochs=1)
    assert lr_at(0, 100, 10, config) == pytest.approx(0.01)
    assert lr_at(9, 100, 10, config) == pytest.approx(0.1)
    assert lr_at(55, 100, 10, config) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.5)))
    step = TrainConfig(lr=0.1, schedule="step", step_epochs=2, step_gamma=0.5)
    assert [lr_at(s, 60, 10, step) for s in (0, 19, 20, 45)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.025])
    one = TrainConfig(lr=1.0, schedule="onecycle")
    assert lr_at(24, 100, 10, one) == pytest.approx(1.0)
    assert lr_at(99, 100, 10, one) == pytest.approx(1 / 75)
    tri = TrainConfig(lr=2.0, schedule="triangle")  # airbench: 0.2 -> 1 at 23% -> 0.07
    assert [lr_at(s, 100, 10, tri) for s in (0, 23, 100)] == pytest.approx([0.4, 2.0, 0.14])
    assert lr_at(10, 100, 10, tri) == pytest.approx(2.0 * (0.2 + 0.8 * 10 / 23))
    assert lr_at(61, 100, 10, tri) == pytest.approx(2.0 * (1 - 0.93 * 38 / 77))


# Scripted validation results: accuracy and the task's own metric disagree on the best epoch.
SCRIPTED = [{"acc": 0.9, "main": 0.2}, {"acc": 0.1, "main": 0.8}, {"acc": 0.5, "main": 0.4}]


@pytest.mark.parametrize(("task", "model", "options", "key", "name"), [
    ("multilabel", "lenet5", {"activation": "relu"}, "map", "mAP"),
    ("segment", "fcn", {"widths": [8, 16]}, "miou", "mIoU"),
])
def test_best_checkpoint_and_final_line_use_the_tasks_main_metric(tmp_path, monkeypatch, task,
                                                                  model, options, key, name):
    """The audit's bug: best was chosen by val_acc for every task and a multilabel run ended
    with "test accuracy 0.0000 (error 100.00%)". Now: val_map / val_miou, "test mAP/mIoU"."""
    original, calls = fit_module.Run.evaluate, []

    def evaluate(self, source, tta=""):
        result = original(self, source, tta)
        if source is self.test:
            return result
        scripted = SCRIPTED[len(calls)]
        calls.append(scripted)
        return {**result, "acc": scripted["acc"], key: scripted["main"]}

    monkeypatch.setattr(fit_module.Run, "evaluate", evaluate)
    lines = []
    config = TrainConfig(task=task, model=model, model_options=options,
                         data="digit-scenes:n=40", epochs=3, batch_size=8, optimizer="adam",
                         lr=0.003, threads=1, progress=False, out=str(tmp_path), name=task)
    result = fit(config, log=lines.append)
    assert result.best_epoch == 2  # by val_acc it would be 1
    index = json.loads((result.run_dir / "run.json").read_text())
    assert index["best"] == {"file": "best.safetensors", "epoch": 2, "metric": f"val_{key}",
                             "value": 0.8}
    _, meta = read_checkpoint(result.run_dir / "best.safetensors")
    assert meta["state"]["epoch"] == 2 and meta["metrics"][f"val_{key}"] == 0.8
    final = next(line for line in lines if line.startswith("test "))
    assert final.startswith(f"test {name} {result.test_metrics[key]:.4f} on 8 images, best "
                            "epoch 2"), final
    assert "accuracy" not in final and "error" not in final


def test_classification_keeps_choosing_by_validation_accuracy(tmp_path):
    result = fit(quick_config(tmp_path, epochs=1, name="acc"), log=lambda *_: None)
    index = json.loads((result.run_dir / "run.json").read_text())
    assert index["best"]["metric"] == "val_acc"
    assert index["best"]["val_acc"] == index["best"]["value"] == result.val_acc


def test_train_per_class_is_a_flag_and_validated(capsys):
    from cnnlab.cli.main import main

    assert main(["train", "--train-per-class", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cnnlab train: error: --train-per-class must be >= 1, got 0"]


def test_a_model_that_cannot_take_the_input_leaves_no_run_directory(tmp_path):
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match="lenet5 takes 1x32x32 inputs only, got 1x28x28"):
        fit(quick_config(tmp_path, epochs=1, image_size=28), log=lambda *_: None)
    assert not any(tmp_path.rglob("config.yaml"))
