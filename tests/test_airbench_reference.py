"""bench/airbench_reference.py is an independent plain-PyTorch airbench94_muon: its parts must
agree with cnnlab's own (they are written separately) and do what the paper says."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import airbench_reference as ref  # noqa: E402

from cnnlab.train.optim import orthogonalize  # noqa: E402


def test_reference_newton_schulz_matches_cnnlab_orthogonalize():
    g = torch.randn(64, 27, generator=torch.Generator().manual_seed(0))
    ours, theirs = orthogonalize(g), ref.newton_schulz(g)
    assert torch.allclose(ours, theirs, atol=2e-2)
    singular = torch.linalg.svdvals(theirs)
    assert singular.min() > 0.5 and singular.max() < 1.5  # ~orthogonal, as Muon wants


def test_reference_whitening_makes_the_patch_second_moment_near_identity():
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=gen)
    images = torch.einsum("ij,njhw->nihw", mix, torch.randn(200, 3, 8, 8, generator=gen))
    net = ref.ReferenceNet((8, 8, 8))
    net.fit_whitening(images)
    out = torch.nn.functional.conv2d(images, net.whiten.weight)[:, :12]  # one sign
    rows = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    moment = rows.T @ rows / len(rows)
    assert torch.allclose(moment, torch.eye(12, dtype=torch.float64), atol=0.02)
    assert torch.equal(net.whiten.weight[12:], -net.whiten.weight[:12])


def test_reference_translate_moves_each_image_by_at_most_two_pixels():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = ref.translate(x, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(windows) == 1


def test_reference_step_trains_the_whitening_bias_and_keeps_filter_norms():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (2000,), generator=gen)
    x = torch.randn(2000, 3, 32, 32, generator=gen)
    net = ref.train_reference((16, 32, 32), 1, 0, x, y)  # one step of batch 2,000
    assert net.whiten.bias.abs().sum() > 0  # trained in the first epochs
    assert not net.whiten.weight.requires_grad
    conv = net.body[1][0].weight  # Muon rescales before its update: norm stays ~sqrt(out)
    assert abs(conv.norm().item() - 16 ** 0.5) < 0.5 * 16 ** 0.5
    assert torch.isfinite(net(x[:4].contiguous(memory_format=torch.channels_last))).all()
