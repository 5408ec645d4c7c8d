"""Issue 9, item 13: divergence and out-of-memory stop the run cleanly, keeping the last good
checkpoint byte for byte and naming where (and with what batch size) it happened."""

from __future__ import annotations

import dataclasses
import importlib
import re

import pytest
import torch

from cnnlab.cli.main import main as cnnlab_main
from cnnlab.data.pipeline import BatchSource
from cnnlab.errors import CheckpointError, ResourceError, TrainingDiverged
from cnnlab.models.lenet import LeNet
from cnnlab.train.fit import fit

from .helpers import STEPS_PER_EPOCH, quick_config

pytestmark = pytest.mark.reliability
run_module = importlib.import_module("cnnlab.train.run")
checkpoint_module = importlib.import_module("cnnlab.runs.checkpoint")


@pytest.fixture
def good_run(tmp_path):
    """A finished one-epoch run and the bytes of every file it holds."""
    run = fit(quick_config(tmp_path, epochs=1, name="good"), log=lambda *_: None).run_dir
    return run, {p.name: p.read_bytes() for p in run.iterdir() if p.suffix == ".safetensors"}


def assert_untouched(run, files) -> None:
    now = {p.name: p.read_bytes() for p in run.iterdir() if p.suffix == ".safetensors"}
    assert now == files  # byte for byte: not overwritten, nothing added
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def longer(run, **overrides):
    config = dataclasses.replace(quick_config(run.parent, epochs=1, name="good"), epochs=2)
    return dataclasses.replace(config, **overrides)


def test_nan_loss_names_epoch_batch_and_step_and_keeps_the_checkpoint(good_run, monkeypatch):
    run, files = good_run
    original = BatchSource.batches

    def poisoned(self, **kwargs):
        for b, (x, y) in enumerate(original(self, **kwargs), kwargs.get("start", 0)):
            if kwargs.get("shuffle") and kwargs.get("epoch") == 1 and b == 5:
                x = x.clone()
                x[0, 0, 0, 0] = float("nan")  # one bad pixel -> NaN logits -> NaN loss
            yield x, y

    monkeypatch.setattr(BatchSource, "batches", poisoned)
    step = STEPS_PER_EPOCH + 5
    with pytest.raises(TrainingDiverged, match=rf"became nan at epoch 2, batch 5, step {step}"):
        fit(longer(run), resume=run, log=lambda *_: None)
    assert_untouched(run, files)


def test_non_finite_weights_after_a_finite_loss_are_never_saved(good_run, monkeypatch):
    run, files = good_run
    original_step = torch.optim.SGD.step
    calls = {"n": 0}

    def step_then_break(self, *args, **kwargs):
        result = original_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == STEPS_PER_EPOCH:  # the last step of the epoch: no later loss sees it
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", step_then_break)
    with pytest.raises(CheckpointError, match=r"refusing to save .*NaN/Inf"):
        fit(longer(run), resume=run, log=lambda *_: None)
    assert_untouched(run, files)


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 1099511627776 bytes."),
], ids=["cuda", "cpu"])
def test_out_of_memory_names_the_batch_size_and_leaves_no_partial_checkpoint(
        good_run, monkeypatch, error):
    run, files = good_run
    calls = {"n": 0}
    original = LeNet.forward

    def forward(self, x):
        calls["n"] += self.training  # training steps only (config checks run the model too)
        if self.training and calls["n"] == 3:
            raise error
        return original(self, x)

    monkeypatch.setattr(LeNet, "forward", forward)
    with pytest.raises(ResourceError, match=r"out of memory at epoch 2, batch 2, step "
                                            rf"{STEPS_PER_EPOCH + 2} with --batch-size 64 on "
                                            r"cpu; try --batch-size 32"):
        fit(longer(run), resume=run, log=lambda *_: None)
    assert_untouched(run, files)


def test_out_of_memory_while_validating_and_on_the_command_line(good_run, monkeypatch, capsys):
    run, files = good_run

    def forward(self, x):
        if not self.training and len(x) > 1:  # (fit's one-image input check still fits)
            raise torch.OutOfMemoryError("CUDA out of memory")
        return original(self, x)

    original = LeNet.forward
    monkeypatch.setattr(LeNet, "forward", forward)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2"))
    assert cnnlab_main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cnnlab train: error: out of memory while evaluating with "
                              "--batch-size 64")
    assert_untouched(run, files)


def test_other_runtime_errors_are_not_mistaken_for_out_of_memory(good_run, monkeypatch):
    run, _ = good_run

    real = LeNet.forward

    def forward(self, x):  # the set-up's one-image check (eval mode) passes; training fails
        if self.training:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return real(self, x)

    monkeypatch.setattr(LeNet, "forward", forward)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as caught:
        fit(longer(run), resume=run, log=lambda *_: None)
    assert not isinstance(caught.value, ResourceError)


def test_out_of_memory_moving_the_data_set_to_the_device_is_actionable(good_run, monkeypatch):
    """Outside the train/eval step: placing a split on the device (``to_batch_source``)."""
    run, files = good_run

    def to_batch_source(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(run_module, "to_batch_source", to_batch_source)
    with pytest.raises(ResourceError, match=r"out of memory moving the data set to cpu with "
                                            r"--batch-size 64 on cpu; the digits split \(\d+ "
                                            r"images of 1x32x32\) does not fit; try a smaller "
                                            r"--image-size"):
        fit(longer(run), resume=run, log=lambda *_: None)
    assert_untouched(run, files)


def test_out_of_memory_while_saving_a_checkpoint_keeps_the_previous(good_run, monkeypatch,
                                                                    capsys):
    """Inside ``save_checkpoint`` (copying state to host memory): one CLI line, exit code 2,
    the previous checkpoints byte-identical, no temporary file."""
    run, files = good_run

    def serialise(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 1099511627776 bytes.")

    monkeypatch.setattr(checkpoint_module, "save_safetensors_bytes", serialise)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2"))
    assert cnnlab_main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(r"cnnlab train: error: out of memory while saving (best|last)"
                        r"\.safetensors .*the previous checkpoint is kept", err[-1]), err
    assert_untouched(run, files)
