"""The loop's one observer interface and the epoch bookkeeping shared by fit and fine-tuning's
feature mode (issue 17)."""

from __future__ import annotations

import json
import signal

import pytest

from cnnlab.config import TrainConfig
from cnnlab.errors import CheckpointError
from cnnlab.train.finetune import finetune, resume_finetune
from cnnlab.train.fit import fit
from cnnlab.train.observers import Observer

STEPS = 21  # digits: 1,293 training scans after the validation split, batches of 64


def config(out, **overrides) -> TrainConfig:
    values = dict(model="lenet5", data="digits", epochs=2, out=str(out), progress=False,
                  threads=1, seed=0)
    return TrainConfig(**{**values, **overrides})


class Recorder(Observer):
    def __init__(self) -> None:
        self.calls, self.steps, self.records = [], [], []

    def on_run_start(self, run) -> None:
        self.calls.append("start")

    def on_epoch_start(self, run) -> None:
        self.calls.append(f"epoch {run.state.epoch + 1}")

    def on_step(self, run, step) -> None:
        self.steps.append(step)

    def on_epoch_end(self, run, record) -> None:
        self.calls.append(f"end {record['epoch']}")
        self.records.append(record)

    def on_run_end(self, run, status) -> None:
        self.calls.append(status)


def test_observers_see_the_run_epochs_and_every_step(tmp_path):
    seen = Recorder()
    result = fit(config(tmp_path, name="r"), observers=[seen], log=lambda *_: None)
    assert seen.calls == ["start", "epoch 1", "end 1", "epoch 2", "end 2", "completed"]
    assert [s.step for s in seen.steps] == list(range(1, 2 * STEPS + 1))
    assert sum(s.seen for s in seen.steps[:STEPS]) == 1293
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    assert logged == seen.records  # the metrics file is itself an observer of the same records
    first = seen.records[0]
    assert first["train_loss"] == pytest.approx(
        sum(s.loss * s.seen for s in seen.steps[:STEPS]) / 1293)


class StopAtStep(Observer):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, run, step) -> None:
        if step.step == self.step:
            run.stop.request(signal.SIGTERM)


def test_an_observer_can_stop_the_run_and_it_resumes_exactly(tmp_path):
    whole = fit(config(tmp_path, name="whole"), log=lambda *_: None)
    part = fit(config(tmp_path, name="part"), observers=[StopAtStep(30)], log=lambda *_: None)
    assert part.status == "interrupted" and part.epochs_done == 1
    resumed = fit(None, resume=part.run_dir, log=lambda *_: None)
    assert resumed.test_acc == whole.test_acc


class HalfRate(Observer):
    def on_run_start(self, run) -> None:
        run.schedule.lr_scale = 0.5


def test_an_observer_scales_the_learning_rate(tmp_path):
    normal = fit(config(tmp_path, name="n", epochs=1, schedule="constant"), log=lambda *_: None)
    half = fit(config(tmp_path, name="h", epochs=1, schedule="constant"),
               observers=[HalfRate()], log=lambda *_: None)
    rates = [json.loads((r.run_dir / "metrics.jsonl").read_text())["lr"] for r in (normal, half)]
    assert rates == [0.05, 0.025]


def test_feature_mode_shares_the_bookkeeping(tmp_path):
    """Snapshots, observers, stop requests and the tie rule come from the shared code now."""
    source = fit(config(tmp_path, name="src", epochs=1), log=lambda *_: None).run_dir
    seen = Recorder()
    result = finetune(source, data="digits", mode="features", out=str(tmp_path), name="ft",
                      epochs=3, snapshot_epochs=[2], progress=False, observers=[seen],
                      log=lambda *_: None)
    assert (result.run_dir / "snapshots" / "epoch-002.safetensors").is_file()
    assert seen.calls == ["start", "epoch 1", "end 1", "epoch 2", "end 2", "epoch 3", "end 3",
                          "completed"]
    assert len(seen.steps) == 3 * STEPS and result.test_acc is not None
    part = finetune(source, data="digits", mode="features", out=str(tmp_path), name="ft2",
                    epochs=3, progress=False, observers=[StopAtStep(25)], log=lambda *_: None)
    assert part.status == "interrupted" and part.epochs_done == 1
    whole = finetune(source, data="digits", mode="features", out=str(tmp_path), name="ft3",
                     epochs=3, progress=False, log=lambda *_: None)
    with pytest.raises(CheckpointError, match="fine-tuning run"):
        fit(None, resume=part.run_dir, log=lambda *_: None)
    resumed = resume_finetune(part.run_dir, log=lambda *_: None)
    assert resumed.status == "completed" and resumed.test_acc == whole.test_acc


def test_an_interrupted_finetune_resumes_from_the_command_line(tmp_path):
    from cnnlab.cli.main import main

    source = fit(config(tmp_path, name="src", epochs=1), log=lambda *_: None).run_dir
    common = dict(data="digits", out=str(tmp_path), epochs=2, freeze="features.3",
                  progress=False, log=lambda *_: None)
    whole = finetune(source, name="whole", **common)
    part = finetune(source, name="part", observers=[StopAtStep(25)], **common)
    assert part.status == "interrupted"
    assert main(["train", "--resume", str(part.run_dir), "--no-progress"]) == 0
    from cnnlab.runs import open_run

    assert open_run(part.run_dir).index["test"]["acc"] == whole.test_acc


def _steps(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "steps.jsonl").open()]


def test_per_step_metrics_file_has_the_real_curve_and_survives_resume(tmp_path):
    seen = Recorder()
    whole = fit(config(tmp_path, name="whole"), observers=[seen], log=lambda *_: None)
    lines = _steps(whole.run_dir)
    assert [line["step"] for line in lines] == list(range(1, 2 * STEPS + 1))  # short epochs
    assert [line["loss"] for line in lines] == pytest.approx([s.loss for s in seen.steps])
    assert [line["lr"] for line in lines] == [s.lr for s in seen.steps]
    assert lines[STEPS - 1]["epoch"] == 1.0 and lines[-1]["epoch"] == 2.0
    assert lines[0]["acc"] == pytest.approx(seen.steps[0].correct / seen.steps[0].seen)
    assert len((whole.run_dir / "metrics.jsonl").read_text().splitlines()) == 2  # per epoch

    part = fit(config(tmp_path, name="part"), observers=[StopAtStep(30)], log=lambda *_: None)
    with open(part.run_dir / "steps.jsonl", "a") as handle:  # written after the checkpoint
        handle.write('{"step": 41, "loss": 9}\n{"step": "x"}\n{torn')
    fit(None, resume=part.run_dir, log=lambda *_: None)
    again = _steps(part.run_dir)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]  # noqa: E731
    assert drop(again) == drop(lines)


def test_per_step_windows_average_their_steps(tmp_path):
    from types import SimpleNamespace

    from cnnlab.train.loop import StepInfo
    from cnnlab.train.observers import StepMetricsFile

    run = SimpleNamespace(schedule=SimpleNamespace(steps_per_epoch=21), run_dir=tmp_path,
                          folder=SimpleNamespace(record=lambda path: None))
    steps = [StepInfo(0, b, b, loss=float(b), correct=b % 2, seen=2 if b < 21 else 1, lr=0.1)
             for b in range(1, 22)]
    observer = StepMetricsFile(points=5)
    observer.on_epoch_start(run)
    for step in steps:
        observer.on_step(run, step)
    lines = _steps(tmp_path)
    assert [line["step"] for line in lines] == [4, 8, 12, 16, 20, 21]  # every 21 // 5 = 4
    assert lines[0]["loss"] == pytest.approx((1 + 2 + 3 + 4) / 4)  # equal weights: 2 images each
    assert lines[0]["acc"] == pytest.approx(2 / 8)
    assert lines[-1] == {**lines[-1], "step": 21, "epoch": 1.0, "loss": 21.0, "acc": 1.0}
