"""Issue 9, item 14: same seed -> same weights; per-batch augmentation streams; --deterministic.

cnnlab has no DataLoader worker processes: the split is an in-memory uint8 tensor and every
batch's augmentation draws from its own generator seeded by a hash of ``(seed, epoch, batch,
rank)``. The
"different workers produce different augmentations" requirement therefore becomes: different
batches and different epochs get different random streams, while the same batch index of the
same epoch always gets the same one (which is what makes mid-epoch resume exact).
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from cnnlab.cli.main import build_parser
from cnnlab.cli.train import config_from_args
from cnnlab.data.augment import parse_augment
from cnnlab.data.pipeline import BatchSource, Preprocess, batch_seed
from cnnlab.train import loop
from cnnlab.train.fit import fit
from cnnlab.train.session import deterministic_algorithms

from .helpers import assert_bit_identical, quick_config, weights

pytestmark = pytest.mark.reliability


def test_same_seed_twice_gives_identical_weights_and_another_seed_does_not(tmp_path):
    config = quick_config(tmp_path, epochs=1, augment="crop:2,flip", model_options={
        "activation": "relu"})
    runs = [fit(dataclasses.replace(config, name=name, seed=seed), log=lambda *_: None).run_dir
            for name, seed in (("a", 5), ("b", 5), ("c", 6))]
    assert_bit_identical(weights(runs[0]), weights(runs[1]))
    a, c = weights(runs[0]), weights(runs[2])
    assert not all(torch.equal(a[k], c[k]) for k in a)


def identical_images_source() -> BatchSource:
    images = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(32, 1, 1, 1)
    preprocess = Preprocess(1, (8, 8), "none", [0.0], [1.0], 0.0)
    return BatchSource(images, torch.zeros(32, dtype=torch.long), preprocess, batch_size=8,
                       augment=parse_augment("crop:3"))


def test_each_batch_and_epoch_draws_its_own_augmentation_stream():
    source = identical_images_source()
    epoch0 = [x for x, _ in source.batches(seed=1, epoch=0)]
    epoch1 = [x for x, _ in source.batches(seed=1, epoch=1)]
    again = [x for x, _ in source.batches(seed=1, epoch=0)]
    other_seed = [x for x, _ in source.batches(seed=2, epoch=0)]
    assert all(torch.equal(a, b) for a, b in zip(epoch0, again, strict=True))
    assert not torch.equal(epoch0[0], epoch0[1])  # same pixels in, different crops out
    assert not torch.equal(epoch0[0], epoch1[0])
    assert not torch.equal(epoch0[0], other_seed[0])
    assert len({x[i].sum().item() for x in epoch0 for i in range(8)}) > 4  # per-sample offsets
    resumed = [x for x, _ in source.batches(seed=1, epoch=0, start=2)]
    assert all(torch.equal(a, b) for a, b in zip(epoch0[2:], resumed, strict=True))


def test_deterministic_flag_reaches_the_config():
    args = build_parser("train").parse_args(["train", "--deterministic", "--epochs", "1"])
    assert config_from_args(args).deterministic is True
    args = build_parser("train").parse_args(["train", "--epochs", "1"])
    assert config_from_args(args).deterministic is False


def test_deterministic_run_enables_deterministic_algorithms_while_training(tmp_path, monkeypatch):
    seen = []
    original = loop.set_lr

    def spy(optimizer, lr):
        seen.append(torch.are_deterministic_algorithms_enabled())
        original(optimizer, lr)

    monkeypatch.setattr(loop, "set_lr", spy)
    assert not torch.are_deterministic_algorithms_enabled()
    fit(quick_config(tmp_path, epochs=1, deterministic=True, val_fraction=0.5),
        log=lambda *_: None)
    assert seen and all(seen)
    assert not torch.are_deterministic_algorithms_enabled()  # restored afterwards


def test_deterministic_on_cuda_sets_the_cublas_workspace(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # so that teardown restores the original
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    with deterministic_algorithms(True, torch.device("cuda")):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.benchmark is True
    with deterministic_algorithms(False, torch.device("cuda")):
        assert not torch.are_deterministic_algorithms_enabled()


def test_data_parallel_ranks_draw_different_augmentations():
    """Two ranks' parts of one global batch, on identical pixels: different crops; the same
    rank again: the same crops (each rank's stream is a pure function of seed/epoch/batch/rank)."""
    source = identical_images_source()
    parts = [[x for x, _ in dataclasses.replace(source, rank=r, world_size=2).batches(
        seed=1, epoch=0)] for r in (0, 1, 0)]
    assert all(torch.equal(a, b) for a, b in zip(parts[0], parts[2], strict=True))
    assert not torch.equal(parts[0][0], parts[1][0])  # 4 images each, same input pixels
    assert batch_seed(1, 0, 0, 0) != batch_seed(1, 0, 0, 1)


def test_batch_seeds_do_not_collide_across_epochs_batches_and_ranks():
    """The old formula ``(seed * 1_000_003 + epoch) * 100_003 + batch * W + rank`` gave epoch 1,
    batch 0 the stream of epoch 0, batch 100,003 (reached with 2 ranks at batch 50,002)."""
    def old(seed, epoch, batch, rank, world=2):
        return (seed * 1_000_003 + epoch) * 100_003 + batch * world + rank

    assert old(0, 1, 0, 0) == old(0, 0, 50_001, 1)  # the collision
    assert batch_seed(0, 1, 0, 0) != batch_seed(0, 0, 50_001, 1)
    grid = [(s, e, b, r) for s in (0, 1) for e in range(3) for b in (0, 1, 50_001, 100_003)
            for r in (0, 1)]
    seeds = {batch_seed(*key) for key in grid}
    assert len(seeds) == len(grid) and all(0 <= v < 2**63 for v in seeds)
