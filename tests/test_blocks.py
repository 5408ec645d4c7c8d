"""Residual blocks, stochastic depth, the ODE block and the Inception modules, each against an
independent computation (hand formulas, closed-form ODE solutions, forward-hook counts)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.inception import Inception, NaiveInception, conv_multiply_adds
from cnnlab.layers.residual import (
    BasicBlock,
    Bottleneck,
    ODEBlock,
    ODEFunc,
    PadShortcut,
    StochasticDepth,
    linear_survival,
    projection_shortcut,
)


def _zero_last_bn(block: nn.Module, name: str) -> None:
    with torch.no_grad():
        getattr(block, name).weight.zero_()  # F(x) = 0 exactly (bias is 0 too)


def test_basic_block_with_zero_residual_is_relu_of_identity() -> None:
    block = BasicBlock(8, 8).eval()
    _zero_last_bn(block, "bn2")
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_plain_block_is_relu_of_residual_branch_only() -> None:
    torch.manual_seed(0)
    residual, plain = BasicBlock(4, 4).eval(), BasicBlock(4, 4, shortcut=False).eval()
    plain.load_state_dict(residual.state_dict())
    x = torch.randn(1, 4, 6, 6)
    branch = residual.bn2(residual.conv2(torch.relu(residual.bn1(residual.conv1(x)))))
    torch.testing.assert_close(plain(x), torch.relu(branch))
    torch.testing.assert_close(residual(x), torch.relu(branch + x))


def test_plain_block_rejects_a_shortcut_or_stochastic_depth() -> None:
    with pytest.raises(ModelError, match="plain block"):
        BasicBlock(4, 8, 2, projection_shortcut(4, 8, 2), shortcut=False)
    with pytest.raises(ModelError, match="plain block"):
        BasicBlock(4, 4, shortcut=False, survival=0.5)


def test_bottleneck_shapes_and_projection() -> None:
    block = Bottleneck(64, 32, stride=2, downsample=projection_shortcut(64, 128, 2))
    assert block(torch.randn(2, 64, 8, 8)).shape == (2, 128, 4, 4)
    # 1x1 64->32, 3x3 32->32, 1x1 32->128, three BNs, projection 1x1 64->128 + BN
    expected = 64 * 32 + 9 * 32 * 32 + 32 * 128 + 2 * (32 + 32 + 128) + 64 * 128 + 2 * 128
    assert sum(p.numel() for p in block.parameters()) == expected


def test_pad_shortcut_is_subsampling_plus_zero_channels() -> None:
    x = torch.randn(2, 3, 7, 7)
    out = PadShortcut(3, 5, stride=2)(x)
    assert out.shape == (2, 5, 4, 4)
    torch.testing.assert_close(out[:, :3], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 3:]) == 0
    assert list(PadShortcut(3, 5, 2).parameters()) == []


def test_linear_survival_matches_huang_formula() -> None:
    probs = linear_survival(54, 0.5)  # ResNet-110: 54 blocks, p_L = 0.5 (Huang et al.)
    assert probs[0] == pytest.approx(1 - 0.5 / 54)
    assert probs[26] == pytest.approx(0.75)
    assert probs[-1] == pytest.approx(0.5)
    assert linear_survival(3, 1.0) == [1.0, 1.0, 1.0]
    with pytest.raises(ModelError, match="survival"):
        linear_survival(3, 0.0)


def test_stochastic_depth_eval_is_deterministic_expectation() -> None:
    block = BasicBlock(4, 4, survival=0.25).eval()
    x = torch.randn(2, 4, 5, 5)
    branch = block.residual(x)
    torch.testing.assert_close(block(x), torch.relu(0.25 * branch + x))
    torch.testing.assert_close(block(x), block(x))


def test_stochastic_depth_training_drops_whole_batches_at_rate_one_minus_p() -> None:
    torch.manual_seed(0)
    drop, trials, p = StochasticDepth(0.7).train(), 4000, 0.7
    kept = 0
    for _ in range(trials):
        out = drop(torch.ones(3, 2))
        assert torch.all(out == out[0, 0])  # all-or-nothing for the mini-batch
        kept += int(out[0, 0] == 1.0)
    sigma = math.sqrt(p * (1 - p) / trials)
    assert abs(kept / trials - p) < 4 * sigma


def test_ode_block_one_euler_step_is_a_residual_update() -> None:
    torch.manual_seed(0)
    func = ODEFunc(8)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(ODEBlock(func, steps=1)(x), x + func(x, 0.0))


class _Linear(nn.Module):
    """dh/dt = a h + t: depends on t, so the solver's time bookkeeping is checked too."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = a

    def forward(self, h: torch.Tensor, t: float) -> torch.Tensor:
        return self.a * h + t


def _exact(h0: float, a: float) -> float:
    # Solution of h' = a h + t, h(0) = h0: h(t) = (h0 + 1/a^2) e^{a t} - t/a - 1/a^2.
    return (h0 + 1 / a**2) * math.exp(a) - 1 / a - 1 / a**2


def test_rk4_is_fourth_order_and_euler_first_order() -> None:
    h0, a = torch.tensor([0.5], dtype=torch.float64), -1.3
    exact = _exact(0.5, a)
    rk4 = [abs(ODEBlock(_Linear(a), n, "rk4")(h0).item() - exact) for n in (4, 8)]
    euler = [abs(ODEBlock(_Linear(a), n, "euler")(h0).item() - exact) for n in (50, 100)]
    assert rk4[1] < 1e-5
    assert rk4[0] / rk4[1] == pytest.approx(16, rel=0.15)  # halving dt divides error by 2^4
    assert euler[0] / euler[1] == pytest.approx(2, rel=0.1)  # ... and by 2 for Euler


def test_ode_block_rejects_bad_solver_settings() -> None:
    with pytest.raises(ModelError, match="rk4"):
        ODEBlock(ODEFunc(4), method="adams")
    with pytest.raises(ModelError, match="positive integer"):
        ODEBlock(ODEFunc(4), steps=0)


def test_inception3a_parameters_and_shape() -> None:
    module = Inception(192, 64, 96, 128, 16, 32, 32)
    b1 = 192 * 64 + 2 * 64
    b2 = 192 * 96 + 2 * 96 + 9 * 96 * 128 + 2 * 128
    b3 = 192 * 16 + 2 * 16 + 9 * 16 * 32 + 2 * 32  # torchvision's 3x3 in the "5x5" branch
    b4 = 192 * 32 + 2 * 32
    assert sum(p.numel() for p in module.parameters()) == b1 + b2 + b3 + b4 == 155_872
    assert module(torch.randn(1, 192, 7, 7)).shape == (1, 256, 7, 7)


def _hooked_multiply_adds(module: nn.Module, x: torch.Tensor) -> int:
    """Oracle: count from the real output shapes seen during a forward pass."""
    total = 0

    def count(conv: nn.Conv2d, _inp: object, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = conv.kernel_size
        total += out[0].numel() * conv.in_channels // conv.groups * kh * kw

    handles = [m.register_forward_hook(count) for m in module.modules()
               if isinstance(m, nn.Conv2d)]
    module(x)
    for handle in handles:
        handle.remove()
    return total


def test_naive_vs_reduced_inception_cost_of_the_lecture_example() -> None:
    """Lecture 002 (cs231n slide): 28x28x256 input; 1x1 128, 3x3 192, 5x5 96; reductions 64.

    Naive: 854,196,224 multiply-adds. Reduced: 271,351,808 (the slide says 358M, which counts
    the 86.7M of the 3x3 conv twice), so the 1x1 bottlenecks save 68.2%, not "about 60%".
    """
    naive = NaiveInception(256, 128, 192, 96).eval()
    reduced = Inception(256, 128, 64, 192, 64, 96, 64, kernel5=5).eval()
    x = torch.randn(1, 256, 7, 7)  # counts scale with H W; 7x7 keeps the forward pass cheap
    with torch.no_grad():
        assert naive(x).shape == (1, 672, 7, 7)  # 128 + 192 + 96 + 256 pass-through
        assert reduced(x).shape == (1, 480, 7, 7)
        assert conv_multiply_adds(naive, 7, 7) == _hooked_multiply_adds(naive, x)
        assert conv_multiply_adds(reduced, 7, 7) == _hooked_multiply_adds(reduced, x)
    hand_naive = 28 * 28 * 256 * (128 * 1 + 192 * 9 + 96 * 25)
    hand_reduced = 28 * 28 * (64 * 256 * 3 + 128 * 256 + 192 * 9 * 64 + 96 * 25 * 64)
    assert conv_multiply_adds(naive, 28, 28) == hand_naive == 854_196_224
    assert conv_multiply_adds(reduced, 28, 28) == hand_reduced == 271_351_808
    assert 1 - hand_reduced / hand_naive == pytest.approx(0.682, abs=0.001)
