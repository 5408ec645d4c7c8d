"""Checkpoint files: bit-exact round trip, atomic writes, refusal of non-finite weights."""

from __future__ import annotations

import os

import pytest
import torch

from cnnlab.errors import CheckpointError
from cnnlab.models import create
from cnnlab.runs import checkpoint as ckpt
from cnnlab.train.resume import restore_optimizer
from cnnlab.weightfile import load_state_checked, model_state


def test_round_trip_is_bit_exact_with_optimizer_and_rng(tmp_path):
    model = create("lenet5")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 1, 32, 32)).sum().backward()
    optimizer.step()
    path = tmp_path / "last.safetensors"
    rng_at_save = torch.get_rng_state()
    ckpt.save_checkpoint(path, model=model, optimizer=optimizer, meta={"epoch": 3})
    tensors, meta = ckpt.read_checkpoint(path)
    assert meta["epoch"] == 3
    state = model_state(tensors)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    fresh = torch.optim.SGD(create("lenet5").parameters(), lr=0.1, momentum=0.9)
    restore_optimizer(fresh, tensors, meta)
    a, b = optimizer.state_dict()["state"], fresh.state_dict()["state"]
    assert all(torch.equal(a[i]["momentum_buffer"], b[i]["momentum_buffer"]) for i in a)
    assert torch.equal(tensors["rng.torch"], rng_at_save)


def test_failed_write_leaves_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    model = create("lenet5")
    path = tmp_path / "last.safetensors"
    ckpt.save_checkpoint(path, model=model, meta={"epoch": 1})
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, model=create("lenet5"), meta={"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.safetensors"]


def test_non_finite_weights_are_never_saved(tmp_path):
    model = create("lenet5")
    with torch.no_grad():
        model.classifier[-1].weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"model\.classifier\.5\.weight has NaN"):
        ckpt.save_checkpoint(tmp_path / "x.safetensors", model=model, meta={})
    assert not (tmp_path / "x.safetensors").exists()


def test_wrong_architecture_and_garbage_files_are_named(tmp_path):
    path = tmp_path / "a.safetensors"
    ckpt.save_checkpoint(path, model=create("lenet4"), meta={})
    tensors, _ = ckpt.read_checkpoint(path)
    with pytest.raises(CheckpointError, match="another architecture|expects"):
        load_state_checked(create("lenet5"), model_state(tensors), source=str(path))
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\x00" * 3 + b"not a checkpoint")
    with pytest.raises(CheckpointError, match="g.safetensors"):
        ckpt.read_checkpoint(garbage)
    with pytest.raises(CheckpointError, match=r"\.safetensors files"):
        ckpt.read_checkpoint(tmp_path / "a.json")
