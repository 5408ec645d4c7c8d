"""Shared pieces of the reliability tier: a tiny run config, a watched `cnnlab train` child."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from cnnlab.config import TrainConfig
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.weightfile import model_state

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 21  # digits: 1,437 training scans, 10% held out -> 1,293 / 64, rounded up


def quick_config(out: Path, **overrides) -> TrainConfig:
    """LeNet-5 on scikit-learn's digits, 2 epochs of 26 steps, 1 thread: about a second."""
    values = dict(model="lenet5", data="digits", epochs=2, batch_size=64, lr=0.05,
                  out=str(out), progress=False, seed=3, threads=1)
    values.update(overrides)
    return TrainConfig(**values)


def cli_args(config: TrainConfig) -> list[str]:
    """The ``cnnlab train`` flags that reproduce :func:`quick_config`'s config."""
    return ["train", "--model", config.model, "--data", config.data,
            "--epochs", str(config.epochs), "--batch-size", str(config.batch_size),
            "--lr", str(config.lr), "--seed", str(config.seed), "--threads", "1",
            "--out", config.out, "--name", config.name, "--no-progress",
            "--checkpoint-every", str(config.checkpoint_every),
            *(["--augment", config.augment] if config.augment else [])]


def checkpoint_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint: weights, optimizer state and RNG state."""
    return read_checkpoint(path)[0]


def weights(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return model_state(read_checkpoint(run_dir / f"{which}.safetensors")[0])


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


# The child is the real `cnnlab train` entry point; the only addition is a pause at a chosen
# training step (or validation) that lasts until a signal arrives, so the test knows where the
# signal lands without racing the child. It prints "step N" / "validating E" as it goes.
CHILD = r"""
import importlib, os, sys, time
fit_module = importlib.import_module("cnnlab.train.fit")  # the module, not the function
loop = importlib.import_module("cnnlab.train.loop")
from cnnlab.cli.main import main

pause_step = int(os.environ.get("PAUSE_STEP", "-1"))
pause_validation = int(os.environ.get("PAUSE_VALIDATION", "-1"))
received, counters = [], {"step": 0, "validation": 0}
original_request = loop.StopFlag.request

def request(self, signum, frame=None):
    received.append(signum)
    original_request(self, signum, frame)

def pause():
    deadline = time.monotonic() + 60
    while not received and time.monotonic() < deadline:
        time.sleep(0.005)

original_set_lr, original_evaluate = loop.set_lr, fit_module.Run.evaluate

def set_lr(optimizer, lr):
    print(f"step {counters['step']}", flush=True)
    if counters["step"] == pause_step:
        pause()
    counters["step"] += 1
    original_set_lr(optimizer, lr)

def evaluate(self, source, tta=""):
    if source is self.test:  # the final test evaluation is not a validation
        print("testing", flush=True)
        if os.environ.get("PAUSE_TEST"):
            pause()
        return original_evaluate(self, source, tta)
    counters["validation"] += 1
    print(f"validating {counters['validation']}", flush=True)
    if counters["validation"] == pause_validation:
        pause()
    return original_evaluate(self, source, tta)

loop.StopFlag.request, loop.set_lr, fit_module.Run.evaluate = request, set_lr, evaluate
sys.exit(main(sys.argv[1:]))
"""


def start_child(args: list[str], *, pause_step: int = -1, pause_validation: int = -1,
                script: str = CHILD, env: dict | None = None) -> subprocess.Popen:
    """Start ``python -c script args`` (the cnnlab CLI) with stdout piped line by line."""
    child_env = {**os.environ, "PAUSE_STEP": str(pause_step),
                 "PAUSE_VALIDATION": str(pause_validation), "OMP_NUM_THREADS": "1",
                 **(env or {})}
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, env=child_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(child: subprocess.Popen, wanted: str, timeout: float = 60) -> list[str]:
    """Read the child's stdout until a line equals ``wanted``; fail if it exits first."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            child.wait(5)
            raise AssertionError(f"child exited ({child.returncode}) before {wanted!r}: "
                                 f"{child.stderr.read()[-2000:]}")
        seen.append(line.rstrip("\n"))
        if seen[-1] == wanted:
            return seen
    child.kill()
    raise AssertionError(f"no {wanted!r} within {timeout} s")


def finish(child: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    """Wait for the child; return (exit code, stdout rest, stderr)."""
    out, err = child.communicate(timeout=timeout)
    return child.returncode, out, err
