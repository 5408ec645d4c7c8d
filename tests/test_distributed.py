"""Data-parallel training (cnnlab.train.distributed): sharding, gloo runs against one process.

The multi-process tests launch real torchrun jobs of 2 CPU processes; they take most of their
time starting Python twice, hence ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from cnnlab.config import TrainConfig
from cnnlab.data.pipeline import BatchSource, Preprocess
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.train.distributed import SINGLE, evaluate_sharded, shard_range
from cnnlab.train.fit import fit
from cnnlab.weightfile import model_state

ROOT = Path(__file__).resolve().parents[1]


def tiny_source(n: int, batch_size: int, **fields) -> BatchSource:
    """``n`` 1x4x4 images whose pixels all equal their index: batches reveal which were picked."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    preprocess = Preprocess(1, (4, 4), "none", [0.0], [1.0 / 255], 0.0)  # x -> the index
    return BatchSource(images, torch.arange(n), preprocess, batch_size, **fields)


@pytest.mark.parametrize("n", [0, 1, 6, 7, 360, 361])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_every_index_exactly_once(n, world):
    ranges = [shard_range(n, r, world) for r in range(world)]
    covered = [i for start, stop in ranges for i in range(start, stop)]
    assert covered == list(range(n))  # contiguous, ordered, no duplicates, no padding
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("world", [2, 3])
def test_rank_batches_partition_each_global_batch(world):
    single = tiny_source(23, 8)
    ranks = [tiny_source(23, 8, rank=r, world_size=world) for r in range(world)]
    assert all(s.num_batches() == single.num_batches() == 3 for s in ranks)
    expected = [y.tolist() for _, y in single.batches(seed=5, epoch=2, shuffle=True)]
    per_rank = [[y.tolist() for _, y in s.batches(seed=5, epoch=2, shuffle=True)] for s in ranks]
    for b, global_batch in enumerate(expected):
        assert sum((per_rank[r][b] for r in range(world)), []) == global_batch
        for r in range(world):  # images follow their labels (pixel value == index)
            x, y = next(ranks[r].batches(seed=5, epoch=2, shuffle=True, start=b))
            assert torch.allclose(x[:, 0, 0, 0], y.float())


def test_a_last_batch_smaller_than_the_world_is_dropped():
    # 17 = 2 * 8 + 1: one sample cannot be split over 2 ranks, so every rank skips it
    assert tiny_source(17, 8).num_batches() == 3
    assert tiny_source(17, 8, rank=1, world_size=2).num_batches() == 2


def test_single_process_sharded_evaluation_counts_everything():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    result = evaluate_sharded(model, tiny_source(7, 3), SINGLE)
    assert result["count"] == 7 and 0 <= result["acc"] <= 1


def run_config(tmp_path: Path, **overrides) -> TrainConfig:
    # val 0.2 of the 1,437 training scans = 287 images: odd, so 2 ranks score 144 + 143
    values = dict(model="lenet5", data="digits", epochs=3, batch_size=64, lr=0.05, seed=3,
                  val_fraction=0.2, out=str(tmp_path), progress=False, threads=1)
    values.update(overrides)
    return TrainConfig(**values)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def cli_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.setdefault("CNNLAB_DATA", str(ROOT.parent / "shared" / "data"))
    return env


@pytest.mark.slow
def test_two_processes_match_one_and_resume_on_a_different_world_size(tmp_path):
    single = fit(run_config(tmp_path, name="single"), log=lambda *_: None)
    command = [sys.executable, "-m", "cnnlab", "train", "--nproc", "2", "--data", "digits",
               "--model", "lenet5", "--epochs", "3", "--batch-size", "64", "--lr", "0.05",
               "--seed", "3", "--val-fraction", "0.2", "--threads", "1", "--out", str(tmp_path),
               "--name", "ddp", "--no-progress", "--stop-after-epochs", "2"]
    done = subprocess.run(command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ddp_dir = tmp_path / "ddp"
    two, one = metrics(ddp_dir), metrics(single.run_dir)
    assert [r["epoch"] for r in two] == [1, 2]
    for a, b in zip(two, one[:2], strict=True):  # loss curve, odd-sized validation set
        assert a["step"] == b["step"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["train_acc"] == pytest.approx(b["train_acc"], abs=2 / 1150)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1.5 / 287)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    # resume the 2-process run in this single process (world size 2 -> 1)
    resumed = fit(None, resume=ddp_dir, log=lambda *_: None)
    assert resumed.status == "completed" and resumed.epochs_done == 3
    a = model_state(read_checkpoint(ddp_dir / "last.safetensors")[0])
    b = model_state(read_checkpoint(single.run_dir / "last.safetensors")[0])
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    assert resumed.test_acc == pytest.approx(single.test_acc, abs=1.5 / 360)


WORKER = textwrap.dedent('''
    import importlib, json, os, signal, sys
    import torch
    from cnnlab.config import TrainConfig
    from cnnlab.data.pipeline import BatchSource, Preprocess
    from cnnlab.train.distributed import evaluate_sharded, setup

    ctx, _ = setup(torch.device("cpu"))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    images = torch.randint(0, 256, (7, 1, 4, 4), generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8)
    source = BatchSource(images, torch.arange(7) % 10,
                         Preprocess(1, (4, 4), "none", [0.5], [0.25], 0.0), 2)
    result = evaluate_sharded(model, source, ctx)
    out = sys.argv[1]
    with open(f"{out}/eval-{ctx.rank}.json", "w") as handle:
        json.dump(result, handle)

    fit_module = importlib.import_module("cnnlab.train.fit")
    epochs_module = importlib.import_module("cnnlab.train.epochs")
    original = epochs_module.train_one_epoch

    def die_in_epoch_two(*args, **kwargs):
        if ctx.rank == 1 and args[3].epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    epochs_module.train_one_epoch = die_in_epoch_two
    fit_module.fit(TrainConfig(data="digits", epochs=50, out=out, name="killed", progress=False,
                               threads=1), log=lambda *_: None)
''')


@pytest.mark.slow
def test_sharded_evaluation_and_a_killed_rank_ends_the_job(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", str(script), str(tmp_path)]
    # a hung survivor would hit this timeout and fail the test
    done = subprocess.run(command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode != 0 and "SIGKILL" in done.stdout + done.stderr, done.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"eval-{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1] and ranks[0]["count"] == 7  # 4 + 3 samples, none twice
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    images = torch.randint(0, 256, (7, 1, 4, 4), generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8)
    x = (images.float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        logits = model(x)
    labels = torch.arange(7) % 10
    assert ranks[0]["acc"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    expected = float(torch.nn.functional.cross_entropy(logits, labels))
    assert ranks[0]["loss"] == pytest.approx(expected, rel=1e-5)
    assert (tmp_path / "killed" / "last.safetensors").is_file()  # epoch 1 finished before


@pytest.mark.parametrize("argv, message", [
    (["--data", "cifar10", "--data-root", "{tmp}"], "data set 'cifar10' not found"),
    (["--data", "nosuch"], "unknown data set 'nosuch'"),
    (["--data", "{tmp}/missing/folder"], "no such image folder"),
    (["--data", "digits", "--epochs", "0"], "--epochs must be >= 1"),
])
def test_nproc_bad_input_is_one_line_before_any_process_starts(tmp_path, argv, message,
                                                               monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))  # no set from the environment
    monkeypatch.setenv("HOME", str(tmp_path))  # nor from ~/.cache/cnnlab
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    done = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--nproc", "2", *argv,
                           "--out", str(tmp_path / "runs")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr  # no torchrun traceback
    assert not (tmp_path / "runs").exists()
