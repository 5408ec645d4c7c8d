"""Changing a run while it trains (issue 22, cnnlab/train/controls.py): each change applied
between steps, recorded in RUN/events.jsonl keyed by step, and replayed on --resume so that
the resumed run equals an uninterrupted run given the same changes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.runs import open_run
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.runs.reader import read_events
from cnnlab.train.controls import (
    ResizedSchedule,
    check_value,
    decay_shares,
    momentum_of,
    set_momentum,
)
from cnnlab.train.fit import fit
from cnnlab.train.loop import Schedule
from cnnlab.train.observers import Observer
from cnnlab.train.optim import lr_at
from cnnlab.weightfile import model_state

QUIET = {"log": lambda *_: None}


def config(out, **overrides) -> TrainConfig:
    # 20 digits per class: 180 training images after the validation split, 3 batches of 64
    values = dict(model="lenet5", data="digits", epochs=4, train_per_class=20, out=str(out),
                  progress=False, threads=1, seed=0, schedule="cosine")
    return TrainConfig(**{**values, **overrides})


class Page(Observer):
    """Requests made after given steps, as the live page makes them."""

    def __init__(self, script: dict[int, list[tuple]]) -> None:
        self.script, self.step, self.told = dict(script), 0, []

    def on_run_start(self, run) -> None:
        run.controls.connect(self.poll, lambda step, events, values: self.told.append(
            (step, events, values)))

    def on_step(self, run, step) -> None:
        self.step = step.step

    def poll(self) -> list[tuple]:
        return self.script.pop(self.step, [])


SCRIPT = {1: [("lr_multiplier", 0.5)], 2: [("batch_size", 32)],
          5: [("momentum", 0.8), ("weight_decay", 1e-3)], 11: [("lr_multiplier", 2.0)]}


def weights(run_dir):
    tensors, _ = read_checkpoint(run_dir / "last.safetensors")
    return model_state(tensors)


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
            for r in records]


def test_changes_apply_between_steps_and_are_recorded_by_step(tmp_path):
    page = Page(SCRIPT)
    result = fit(config(tmp_path, name="a"), observers=[page], **QUIET)
    run = open_run(result.run_dir)
    assert run.events() == [
        {"step": 1, "epoch": 0, "action": "lr_multiplier", "value": 0.5},
        {"step": 3, "epoch": 1, "action": "batch_size", "value": 32},  # at the next epoch start
        {"step": 5, "epoch": 1, "action": "momentum", "value": 0.8},
        {"step": 5, "epoch": 1, "action": "weight_decay", "value": 1e-3},
        {"step": 11, "epoch": 2, "action": "lr_multiplier", "value": 2.0}]
    steps = {r["step"]: r for r in run.steps()}
    built = config(tmp_path)  # the schedule as built: 3 steps per epoch, 12 in all
    assert steps[1]["lr"] == pytest.approx(lr_at(0, 12, 3, built))
    assert steps[2]["lr"] == pytest.approx(0.5 * lr_at(1, 12, 3, built))
    # from epoch 2 on, 6 batches of 32 (the last one 20): 3 + 3 * 6 steps in all
    assert max(steps) == 3 + 3 * 6
    # after the resize at step 3 (epoch 1) step 12 (0-based 11) counts as 11 + 1 * 6 - 3 of 24
    assert steps[12]["lr"] == pytest.approx(2.0 * lr_at(14, 24, 6, built))
    step_1, applied_1, values_1 = page.told[0]
    assert (step_1, applied_1[0]["action"], values_1["lr_multiplier"]) == (1, "lr_multiplier", 0.5)
    assert page.told[1][1] == [{"step": 2, "epoch": 0, "action": "batch_size", "value": 32,
                                "when": "next epoch"}]
    assert page.told[1][2]["next_batch_size"] == 32
    assert page.told[2][2]["batch_size"] == 32 and page.told[3][2]["momentum"] == 0.8


def test_resume_replays_the_changes_exactly(tmp_path):
    whole = fit(config(tmp_path, name="whole"), observers=[Page(SCRIPT)], **QUIET)
    part = fit(config(tmp_path, name="part"), observers=[Page(SCRIPT)], stop_after_epochs=2,
               **QUIET)
    assert part.status == "stopped"
    at = open_run(part.run_dir).index["last"]
    assert (at["epoch"], json.loads((part.run_dir / "last.json").read_text())["state"]["step"]
            ) == (2, 9)
    # the step-11 change came after the checkpoint: as after a crash that lost a later one,
    # the events file holds it and the resumed run applies it at its step
    later = [e for e in open_run(whole.run_dir).events() if e["step"] > 9]
    with open(part.run_dir / "events.jsonl", "a") as handle:
        handle.writelines(json.dumps(e) + "\n" for e in later)
    watcher = Page({})
    resumed = fit(None, resume=part.run_dir, observers=[watcher], **QUIET)
    assert resumed.status == "completed"
    (start, replayed, values), (at, later_replayed, _) = watcher.told  # told as replayed
    assert start == 9 and [e["action"] for e in replayed] == \
        ["lr_multiplier", "batch_size", "momentum", "weight_decay"]
    assert all(e["replayed"] for e in replayed + later_replayed)
    assert values == {"paused": False, "lr_multiplier": 0.5, "momentum": 0.8,
                      "weight_decay": 1e-3, "batch_size": 32, "next_batch_size": None}
    assert at == 11 and later_replayed[0]["value"] == 2.0
    for name, tensor in weights(whole.run_dir).items():
        assert torch.equal(tensor, weights(part.run_dir)[name]), name
    assert without_timing(open_run(part.run_dir).metrics()) == \
        without_timing(open_run(whole.run_dir).metrics())
    assert open_run(part.run_dir).events() == open_run(whole.run_dir).events()
    assert resumed.test_acc == whole.test_acc


class PausingPage(Page):
    """Pauses after step 2, then (polled while the run waits) says nothing once and resumes."""

    def __init__(self, script) -> None:
        super().__init__(script)
        self.while_paused = [[], [("resume", None)]]

    def poll(self) -> list[tuple]:
        if self.step == 2 and 2 not in self.script and self.while_paused:
            return self.while_paused.pop(0)
        return super().poll()


def test_pause_save_and_stop(tmp_path):
    page = PausingPage({2: [("pause", None)], 4: [("save_now", None)], 5: [("stop", None)]})
    result = fit(config(tmp_path, name="p"), observers=[page], **QUIET)
    events = [(e["step"], e["action"]) for e in open_run(result.run_dir).events()]
    assert events == [(2, "pause"), (2, "resume"), (4, "save_now"), (5, "stop")]
    assert [told[2]["paused"] for told in page.told[:2]] == [True, False]
    assert result.status == "interrupted" and result.signal == 0  # cnnlab train exits 0
    saved = json.loads((result.run_dir / "last.json").read_text())["state"]
    assert saved["step"] == 6  # stop: the next step ends the run, with last saved


def test_a_request_the_run_cannot_take_is_answered_not_fatal(tmp_path):
    page = Page({1: [("batch_size", 100000), ("lr_multiplier", float("inf"))]})
    result = fit(config(tmp_path, name="bad", epochs=1), observers=[page], **QUIET)
    assert result.status == "completed"
    _, events, _ = page.told[0]
    assert ["not allowed" in e["error"] for e in events] == [True, True]
    assert open_run(result.run_dir).events() == []


def test_a_bad_event_in_the_file_names_the_file_on_resume(tmp_path):
    part = fit(config(tmp_path, name="e", epochs=2), stop_after_epochs=1, **QUIET)
    (part.run_dir / "events.jsonl").write_text(
        '{"step": 2, "epoch": 0, "action": "batch_size", "value": 100000}\n')
    with pytest.raises(ConfigError, match=r"events\.jsonl: the event at step 2: control "
                                          r"batch_size: 100000 is not allowed"):
        fit(None, resume=part.run_dir, **QUIET)


def test_values_are_checked():
    assert check_value("momentum", 0.5, 100) == 0.5 and check_value("stop", None, 1) is None
    for action, value in [("momentum", 1.0), ("lr_multiplier", 0), ("weight_decay", -1),
                          ("batch_size", 2.5), ("batch_size", 101), ("lr_multiplier", "1"),
                          ("explode", None), ("lr_multiplier", float("nan"))]:
        with pytest.raises(ConfigError):
            check_value(action, value, 100)


def test_momentum_and_decay_follow_the_optimizer():
    weight, bias = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    adam = torch.optim.Adam([{"params": [weight], "weight_decay": 1e-3},
                             {"params": [bias], "weight_decay": 2.5e-4}])
    set_momentum(adam, 0.7)
    assert [g["betas"] for g in adam.param_groups] == [(0.7, 0.999)] * 2
    assert momentum_of(adam) == 0.7
    assert decay_shares(adam, 1e-3) == [1.0, 0.25]
    sgd = torch.optim.SGD([{"params": [weight]}, {"params": [bias]}], lr=0.1, weight_decay=0)
    assert decay_shares(sgd, 0.0) == [1.0, 0.0]  # weights decay once asked, biases never


def test_a_resized_schedule_keeps_counting_epochs():
    step = TrainConfig(lr=1.0, schedule="step", step_epochs=1, step_gamma=0.1, epochs=4)
    before = Schedule(40, 10, step)
    assert before.lr(25) == pytest.approx(0.01)  # epoch 3 of 10-step epochs
    # at the start of the third epoch (step 20) the batches halve: 20 steps per epoch on
    after = ResizedSchedule(80, 20, step, offset=2 * 20 - 20)
    assert after.lr(20) == pytest.approx(0.01) and after.lr(39) == pytest.approx(0.01)
    assert after.lr(40) == pytest.approx(0.001)  # the fourth epoch


def test_events_file_lines_that_are_not_events_are_skipped(tmp_path):
    (tmp_path / "events.jsonl").write_text(
        '{"step": 3, "epoch": 0, "action": "pause", "value": null}\n{"step": -1, "epoch": 0, '
        '"action": "stop"}\n[1]\n{"step": 4, "epoch": 0, "action": "lr_multiplier", "value": '
        '"x"}\n{"step": 5, "epoch": 1, "action": "momentum", "value": 0.5}\n{"step": 6, "ep')
    assert [e["step"] for e in read_events(tmp_path)] == [3, 5]


@pytest.mark.slow
def test_data_parallel_ranks_replay_the_same_changes_and_rank_0_serves(tmp_path):
    """--nproc 2: every rank applies the events at the same step (else their batches, and so
    their collectives, would disagree and the job would hang or fail); one page is served."""
    base = [sys.executable, "-m", "cnnlab", "train", "--nproc", "2", "--threads", "1",
            "--no-progress"]
    first = subprocess.run([*base, "--data", "digits", "--train-per-class", "20", "--epochs",
                            "3", "--stop-after-epochs", "1", "--out", str(tmp_path), "--name",
                            "dp"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / "dp"
    (run_dir / "events.jsonl").write_text(
        '{"step": 4, "epoch": 1, "action": "lr_multiplier", "value": 0.5}\n'
        '{"step": 6, "epoch": 2, "action": "batch_size", "value": 32}\n')
    resumed = subprocess.run([*base, "--resume", str(run_dir), "--live"], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.count("live page: http://127.0.0.1:") == 1
    steps = {s["step"]: s for s in open_run(run_dir).steps()}
    built = config(tmp_path, epochs=3)
    assert steps[5]["lr"] == pytest.approx(0.5 * lr_at(4, 9, 3, built))
    assert max(steps) == 6 + 6  # the third epoch in batches of 32
    assert open_run(run_dir).index["status"] == "completed"
