"""A run directory saved by cnnlab before the run layer existed (commit 4273357: a spec-string
net on digits, stopped after epoch 1 of 2, snapshot at epoch 1) must still open, evaluate and
resume bit-exact (issue 17). The reference hash and test accuracy come from the same config
trained for 2 epochs in one go by that commit."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from cnnlab.evaluate import evaluate_runs
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.train import load_model
from cnnlab.train.fit import fit
from cnnlab.weightfile import model_state

FIXTURE = Path(__file__).parent / "fixtures" / "v0-run"
FULL_RUN_SHA256 = "9d14d9f610e566dbe58f33c9808d547fc831297cbf80d53a795f31362f46c806"
FULL_RUN_TEST_ACC = 0.8361111283302307


def state_hash(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture
def old_run(tmp_path):
    return Path(shutil.copytree(FIXTURE, tmp_path / "v0-run"))


def test_an_old_run_opens_and_predicts(old_run):
    model, meta = load_model(old_run)
    assert meta["model"]["name"] == "c3x4p1-relu-p2-f10" and meta["classes"] == list("0123456789")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_an_old_run_evaluates(old_run):
    report = evaluate_runs([old_run])
    assert report.count == 360 and 0.5 < 1 - report.members[0].error_rate <= 1


def test_an_old_run_resumes_bit_exact(old_run):
    torch.set_num_threads(1)  # the reference was trained with --threads 1
    result = fit(None, resume=old_run, log=lambda *_: None)
    assert result.status == "completed" and result.test_acc == FULL_RUN_TEST_ACC
    tensors, _ = read_checkpoint(old_run / "last.safetensors")
    assert state_hash(model_state(tensors)) == FULL_RUN_SHA256
