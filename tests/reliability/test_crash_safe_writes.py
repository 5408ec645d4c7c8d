"""Issue 9, item 4: a crash while a checkpoint is written loses nothing.

A child process is SIGKILLed half-way through writing; exceptions are raised while serialising
and while writing. The previous checkpoint must still load, nothing partial may sit at the
target name, temporary files must live beside the target (never in $TMPDIR), and ``--resume``
must pick the newest checkpoint that is complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import pytest
import torch

from cnnlab.cli.main import main as cnnlab_main
from cnnlab.models import create
from cnnlab.runs import checkpoint as ckpt
from cnnlab.train.fit import fit

from .helpers import (
    STEPS_PER_EPOCH,
    assert_bit_identical,
    checkpoint_tensors,
    finish,
    quick_config,
    start_child,
    wait_for_line,
)

pytestmark = pytest.mark.reliability

# Writes a new checkpoint over argv[1]; the file write stops half-way, says so, and waits.
SLOW_WRITER = r"""
import os, sys, time, torch
from cnnlab.models import create
from cnnlab.runs.checkpoint import save_checkpoint

real_fdopen = os.fdopen

class HalfThenHang:
    def __init__(self, handle):
        self.handle = handle
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)
    def write(self, data):
        self.handle.write(data[:len(data) // 2])
        self.handle.flush()
        print("half written", flush=True)
        time.sleep(60)
    def __getattr__(self, name):
        return getattr(self.handle, name)

os.fdopen = lambda *a, **k: HalfThenHang(real_fdopen(*a, **k))
torch.manual_seed(1)
save_checkpoint(__import__("pathlib").Path(sys.argv[1]), model=create("lenet5"),
                meta={"version": 2})
"""


def test_sigkill_during_a_write_keeps_the_previous_checkpoint(tmp_path):
    runs, tmpdir = tmp_path / "run", tmp_path / "tmpdir"
    tmpdir.mkdir()
    target = runs / "last.safetensors"
    model = create("lenet5")
    ckpt.save_checkpoint(target, model=model, optimizer=torch.optim.SGD(model.parameters()),
                         meta={"version": 1, "state": {"step": 5}})
    before = target.read_bytes()
    child = start_child([str(target)], script=SLOW_WRITER, env={"TMPDIR": str(tmpdir)})
    wait_for_line(child, "half written")
    child.send_signal(signal.SIGKILL)
    assert finish(child)[0] == -signal.SIGKILL
    assert target.read_bytes() == before  # nothing partial at the target name
    assert ckpt.read_checkpoint(target)[1]["version"] == 1
    leftovers = sorted(p.name for p in runs.iterdir() if p.name.endswith(".tmp"))
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.safetensors.")
    assert 0 < (runs / leftovers[0]).stat().st_size < len(before)  # the torn copy, beside it
    assert list(tmpdir.iterdir()) == []  # never in $TMPDIR
    assert ckpt.newest_checkpoint(runs)[0] == target  # a stray temp file is never a candidate


def test_exception_while_serialising_or_writing_keeps_the_previous(tmp_path, monkeypatch):
    target = tmp_path / "last.safetensors"
    ckpt.save_checkpoint(target, model=create("lenet5"), meta={"version": 1})
    before = target.read_bytes()

    def fail_serialising(*_args, **_kwargs):
        raise RuntimeError("serialiser crashed")

    with monkeypatch.context() as patch:
        patch.setattr(ckpt, "save_safetensors_bytes", fail_serialising)
        with pytest.raises(RuntimeError, match="serialiser crashed"):
            ckpt.save_checkpoint(target, model=create("lenet4"), meta={"version": 2})

    def disk_full(_fd):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        with pytest.raises(OSError, match="No space left"):
            ckpt.save_checkpoint(target, model=create("lenet4"), meta={"version": 2})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.safetensors"]


def test_resume_skips_a_torn_checkpoint_for_the_newest_complete_one(tmp_path):
    config = quick_config(tmp_path, epochs=3, snapshot_epochs=[2])
    part = fit(dataclasses.replace(config, name="torn"), stop_after_epochs=2,
               log=lambda *_: None)
    last = part.run_dir / "last.safetensors"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])  # e.g. a non-atomic copy
    with open(part.run_dir / "metrics.jsonl", "a") as log:
        log.write('{"epoch": 3, "train_lo')  # a line torn by the crash
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint.*last.safetensors"):
        path, _, meta = ckpt.newest_checkpoint(part.run_dir)
    assert path.name in ("best.safetensors", "epoch-002.safetensors")  # both hold epoch 2
    assert meta["state"]["step"] == 2 * STEPS_PER_EPOCH
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        assert cnnlab_main(["train", "--resume", str(part.run_dir)]) == 0
    straight = fit(dataclasses.replace(config, name="straight"), log=lambda *_: None)
    assert_bit_identical(checkpoint_tensors(last), checkpoint_tensors(
        straight.run_dir / "last.safetensors"))
    assert torch.isfinite(checkpoint_tensors(last)["model.features.0.weight"]).all()
    logged = (part.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in logged] == [1, 2, 3]


def test_stale_temporary_files_are_removed_at_resume(tmp_path):
    """Torn ``.NAME.XXXXXXXX[.cnnlab].tmp`` files of a crashed write of a run file are deleted
    when the run is resumed (nothing writes then); other files, dot-files included, are left
    alone: a user's ``.thesis.tex.abcd1234.tmp`` has the writer's shape but not a run file's
    name (issue 18, item 2)."""
    part = fit(quick_config(tmp_path, name="stale"), stop_after_epochs=1, log=lambda *_: None)
    torn = [part.run_dir / ".last.safetensors.k2j3_x9a.cnnlab.tmp",
            part.run_dir / ".run.json.a1b2c3d4.tmp",
            part.run_dir / "snapshots" / ".epoch-001.safetensors.zz9_0000.cnnlab.tmp"]
    kept = [part.run_dir / "notes.tmp", part.run_dir / ".keep",
            part.run_dir / ".thesis.tex.abcd1234.tmp", part.run_dir / ".thesis.tex.abcd1234.cnnlab.tmp",
            part.run_dir / ".last.safetensors.short.tmp",
            part.run_dir / "snapshots" / ".notes.txt.abcd1234.tmp"]
    for path in torn + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"torn")
    assert fit(None, resume=part.run_dir, log=lambda *_: None).status == "completed"
    assert [p for p in torn if p.exists()] == []
    assert all(p.read_bytes() == b"torn" for p in kept)
