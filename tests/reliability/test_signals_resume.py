"""Issue 9, items 5-6: a killed or signalled `cnnlab train` resumes bit for bit.

Each child is the real CLI in its own process; it pauses at a chosen step (or validation) until
the signal arrives, so the test knows exactly where the signal lands. The uninterrupted
reference run is trained once per module, in-process, recording every batch and learning rate.

The runs use random augmentation (``crop:2,flip``) and a model with dropout, so exactness needs
the data order, the per-batch augmentation streams *and* the restored global RNG (dropout); a
test proves that without restoring the RNG the weights would differ. The random step is drawn
from a logged seed (``step_for``), so a failure can be replayed.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
import signal
from contextlib import contextmanager

import pytest
import torch
import yaml

import cnnlab.train.loop as loop
from cnnlab.data.pipeline import BatchSource
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.train.fit import fit

from .helpers import (
    STEPS_PER_EPOCH,
    assert_bit_identical,
    checkpoint_tensors,
    cli_args,
    finish,
    quick_config,
    start_child,
    wait_for_line,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
fit_module = importlib.import_module("cnnlab.train.fit")  # the module, not the function
run_module = importlib.import_module("cnnlab.train.run")
TOTAL_STEPS = 2 * STEPS_PER_EPOCH
DROPOUT_MODEL = "c3x8p1-relu-p2-f32-relu-drop0.3-f10"  # digits at their own 8x8 size


def resume_config(out, **overrides):
    """quick_config with random augmentation and dropout: resume must restore every stream."""
    return quick_config(out, model=DROPOUT_MODEL, augment="crop:2,flip", **overrides)


def step_for(low: int, high: int) -> tuple[int, str]:
    """A random step in ``[low, high)`` from a fresh seed, and a note naming both."""
    seed = random.randrange(1 << 30)
    step = random.Random(seed).randrange(low, high)
    return step, f"random step {step} (seed {seed})"


@contextmanager
def recording():
    """Record each training batch (epoch, index, labels, pixel sum) and each learning rate."""
    batches, rates = [], []
    original_batches, original_set_lr = BatchSource.batches, loop.set_lr

    def batches_spy(self, *, seed=0, epoch=0, shuffle=False, start=0, drop_last=False):
        for b, (x, y) in enumerate(original_batches(self, seed=seed, epoch=epoch,
                                                    shuffle=shuffle, start=start,
                                                    drop_last=drop_last), start):
            if shuffle:
                batches.append((epoch, b, y.tolist(), float(x.double().sum())))
            yield x, y

    def set_lr_spy(optimizer, lr):
        rates.append(lr)
        original_set_lr(optimizer, lr)

    BatchSource.batches, loop.set_lr = batches_spy, set_lr_spy
    try:
        yield batches, rates
    finally:
        BatchSource.batches, loop.set_lr = original_batches, original_set_lr


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the children's config: its last checkpoint and its records."""
    out = tmp_path_factory.mktemp("runs")
    with recording() as (batches, rates):
        result = fit(resume_config(out, name="reference"), log=lambda *_: None)
    assert len(batches) == len(rates) == TOTAL_STEPS
    return out, result.run_dir, batches, rates


def resume_and_compare(run_dir, reference, first_step: int, note: str = "") -> None:
    """Resume ``run_dir`` in-process; batches, learning rates and final state must match."""
    _, ref_dir, ref_batches, ref_rates = reference
    with recording() as (batches, rates):
        result = fit(None, resume=run_dir, log=lambda *_: None)
    assert result.status == "completed", note
    # same images, same order, same augmentation, batch by batch
    assert len(batches) == len(ref_batches) - first_step, note
    for got, want in zip(batches, ref_batches[first_step:], strict=True):
        assert got == want, f"{note}: batch {want[:2]} differs"
    assert rates == ref_rates[first_step:], note
    # weights, optimizer moments and the RNG state, bit for bit
    assert_bit_identical(checkpoint_tensors(run_dir / "last.safetensors"),
                         checkpoint_tensors(ref_dir / "last.safetensors"))
    ref_config = yaml.safe_load((ref_dir / "config.yaml").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert {**config, "name": None} == {**ref_config, "name": None}
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").open()]
    assert epochs == [1, 2]  # no epoch logged twice after the resume


def test_sigkill_at_a_random_step_resumes_from_last_checkpoint_bit_exact(reference):
    out = reference[0]
    config = resume_config(out, name="sigkill")
    step, note = step_for(STEPS_PER_EPOCH, TOTAL_STEPS)  # somewhere in epoch 2
    child = start_child(cli_args(config), pause_step=step)
    wait_for_line(child, f"step {step}")
    child.send_signal(signal.SIGKILL)
    code, _, _ = finish(child)
    assert code == -signal.SIGKILL
    _, meta = read_checkpoint(
        out / "sigkill" / "last.safetensors")
    assert meta["state"]["step"] == STEPS_PER_EPOCH, f"killed at {note}"
    resume_and_compare(out / "sigkill", reference, STEPS_PER_EPOCH, note)


SIGNALS = pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT],
                                  ids=["SIGTERM", "SIGINT"])


@SIGNALS  # SIGTERM and SIGINT (Ctrl-C) share one handler (StopFlag.request)
def test_signal_during_training_saves_after_the_step_and_resumes_exactly(reference, signum):
    out = reference[0]
    name = f"train-{signum.name}"
    step, note = step_for(1, TOTAL_STEPS - 1)  # mid-epoch included
    child = start_child(cli_args(resume_config(out, name=name)), pause_step=step)
    wait_for_line(child, f"step {step}")
    child.send_signal(signum)
    code, stdout, _ = finish(child)
    assert code == 128 + signum, f"{note}: {stdout}"  # documented: 143 SIGTERM, 130 Ctrl-C
    assert "interrupted: saved" in stdout and f"step {step + 1}" not in stdout, note
    _, meta = read_checkpoint(
        out / name / "last.safetensors")
    assert meta["state"]["step"] == step + 1, f"signal during {note}"
    resume_and_compare(out / name, reference, step + 1, note)


@SIGNALS
def test_signal_during_validation_stops_before_the_next_epoch(reference, signum):
    out = reference[0]
    name = f"val-{signum.name}"
    child = start_child(cli_args(resume_config(out, name=name)), pause_validation=1)
    wait_for_line(child, "validating 1")
    child.send_signal(signum)
    code, stdout, _ = finish(child)
    assert code == 128 + signum
    assert f"step {STEPS_PER_EPOCH}" not in stdout  # no step of epoch 2 was taken
    _, meta = read_checkpoint(
        out / name / "last.safetensors")
    assert (meta["state"]["epoch"], meta["state"]["batch"]) == (1, 0)
    logged = [json.loads(line) for line in (out / name / "metrics.jsonl").open()]
    assert [r["epoch"] for r in logged] == [1] and logged[0]["val_acc"] > 0.1  # it finished
    resume_and_compare(out / name, reference, STEPS_PER_EPOCH)


def test_signal_during_the_last_validation_is_an_interruption_not_a_completion(reference):
    """SIGTERM while validating the last epoch: exit 143, status "interrupted", no test
    evaluation; the resume runs the test evaluation and ends like the uninterrupted run."""
    out = reference[0]
    child = start_child(cli_args(resume_config(out, name="last-val")), pause_validation=2)
    wait_for_line(child, "validating 2")
    child.send_signal(signal.SIGTERM)
    code, stdout, _ = finish(child)
    assert code == 128 + signal.SIGTERM, stdout
    assert "interrupted: saved" in stdout
    assert "testing" not in stdout and "test accuracy" not in stdout
    run_dir = out / "last-val"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    _, meta = read_checkpoint(run_dir / "last.safetensors")
    assert meta["state"]["epoch"] == 2
    lines = []
    result = fit(None, resume=run_dir, log=lines.append)
    assert result.status == "completed" and result.test_acc is not None
    assert any(line.startswith("test accuracy") for line in lines), lines
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert_bit_identical(checkpoint_tensors(run_dir / "last.safetensors"),
                         checkpoint_tensors(reference[1] / "last.safetensors"))


def test_without_restoring_the_rng_the_resumed_weights_would_differ(reference, monkeypatch):
    """Mutation check: the resume tests above can fail. Resuming mid-run with
    ``restore_rng`` disabled gives other dropout masks, hence other weights."""
    out, ref_dir = reference[0], reference[1]
    part = fit(resume_config(out, name="no-rng"), stop_after_epochs=1, log=lambda *_: None)
    monkeypatch.setattr(run_module, "restore_rng", lambda tensors: None)
    fit(None, resume=part.run_dir, log=lambda *_: None)
    resumed, straight = (checkpoint_tensors(d / "last.safetensors") for d in (part.run_dir,
                                                                               ref_dir))
    changed = [k for k in straight if k.startswith("model.")
               and not torch.equal(resumed[k], straight[k])]
    assert changed, "the weights do not depend on the restored RNG: the test proves nothing"


def test_stop_after_epochs_saves_last_even_between_periodic_checkpoints(tmp_path):
    config = resume_config(tmp_path, name="every2", checkpoint_every=2)
    part = fit(config, stop_after_epochs=1, log=lambda *_: None)
    _, meta = read_checkpoint(
        part.run_dir / "last.safetensors")
    assert part.status == "stopped" and meta["state"]["epoch"] == 1
    straight = fit(dataclasses.replace(config, name="straight"), log=lambda *_: None)
    fit(None, resume=part.run_dir, log=lambda *_: None)
    assert_bit_identical(checkpoint_tensors(part.run_dir / "last.safetensors"),
                         checkpoint_tensors(straight.run_dir / "last.safetensors"))
