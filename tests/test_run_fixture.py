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

from cnnlab.config import TrainConfig
from cnnlab.evaluate import evaluate_runs
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.train import load_model
from cnnlab.train.fit import fit
from cnnlab.weightfile import model_state
from cnnlab.yamltext import load_yaml

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


def test_an_old_run_resumes_bit_exact(old_run, tmp_path):
    """Resumed here, the old run must end exactly where the same config trained in one go
    ends. Where this CPU's arithmetic gives the same first epoch as the machine that made the
    fixture (its epoch-1 weights hash the same), that is bit for bit, and also the recorded
    hash; otherwise (other SIMD kernels: AMD vs Intel) the first epochs differ in the last
    bits and the ends must agree to float tolerance."""
    torch.set_num_threads(1)  # the reference was trained with --threads 1
    config = TrainConfig.from_dict({**load_yaml((old_run / "config.yaml").read_text(), "config.yaml"),
                                    "out": str(tmp_path), "name": "whole"})
    whole = fit(config, log=lambda *_: None)
    result = fit(None, resume=old_run, log=lambda *_: None)
    assert result.status == "completed"
    resumed = model_state(read_checkpoint(old_run / "last.safetensors")[0])
    expected = model_state(read_checkpoint(whole.run_dir / "last.safetensors")[0])
    same_cpu = state_hash(_epoch1(whole.run_dir)) == state_hash(_epoch1(FIXTURE))
    if same_cpu:
        assert state_hash(resumed) == state_hash(expected)
        assert result.test_acc == whole.test_acc
        if result.test_acc == FULL_RUN_TEST_ACC:  # the fixture's own machine
            assert state_hash(resumed) == FULL_RUN_SHA256
    else:
        for key in expected:
            torch.testing.assert_close(resumed[key], expected[key], rtol=1e-3, atol=1e-4)
        assert abs(result.test_acc - whole.test_acc) <= 2 / 360


def _epoch1(run_dir: Path) -> dict[str, torch.Tensor]:
    return model_state(read_checkpoint(run_dir / "snapshots" / "epoch-001.safetensors")[0])
