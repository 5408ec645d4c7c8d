"""cnnlab.reference (NumPy) against torch: values and autograd gradients on random shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab import reference as ref

RNG_SEEDS = range(25)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def _conv_case(seed: int) -> dict:
    """A random conv configuration: groups, channels, kernel, stride, padding, input size."""
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 1, 2, 3]))
    c, k = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    fh, fw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, fh // 2 + 1)), int(rng.integers(0, fw // 2 + 1)))
    h, w = int(rng.integers(fh, fh + 7)), int(rng.integers(fw, fw + 7))
    return dict(rng=rng, groups=groups, c=c, k=k, kernel=(fh, fw), stride=stride,
                padding=padding, n=int(rng.integers(1, 3)), hw=(h, w))


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_conv2d_forward_and_backward_match_torch(seed: int) -> None:
    case = _conv_case(seed)
    rng, g = case["rng"], case["groups"]
    x = rng.standard_normal((case["n"], case["c"], *case["hw"]))
    w = rng.standard_normal((case["k"], case["c"] // g, *case["kernel"]))
    b = rng.standard_normal(case["k"])
    xt, wt, bt = _t(x), _t(w), _t(b)
    yt = F.conv2d(xt, wt, bt, stride=case["stride"], padding=case["padding"], groups=g)
    y = ref.conv2d(x, w, b, stride=case["stride"], padding=case["padding"], groups=g)
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=1e-10)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dx, dw, db = ref.conv2d_backward(x, w, dy, stride=case["stride"], padding=case["padding"],
                                     groups=g)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(dw, wt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(db, bt.grad.numpy(), atol=1e-10)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_conv_transpose2d_forward_and_backward_match_torch(seed: int) -> None:
    case = _conv_case(seed + 100)
    rng, g = case["rng"], case["groups"]
    stride, padding = case["stride"], case["padding"]
    out_pad = (int(rng.integers(0, stride[0])), int(rng.integers(0, stride[1])))
    x = rng.standard_normal((case["n"], case["c"], *case["hw"]))
    w = rng.standard_normal((case["c"], case["k"] // g, *case["kernel"]))
    b = rng.standard_normal(case["k"])
    xt, wt, bt = _t(x), _t(w), _t(b)
    yt = F.conv_transpose2d(xt, wt, bt, stride=stride, padding=padding,
                            output_padding=out_pad, groups=g)
    y = ref.conv_transpose2d(x, w, b, stride=stride, padding=padding, output_padding=out_pad,
                             groups=g)
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=1e-10)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dx, dw, db = ref.conv_transpose2d_backward(x, w, dy, stride=stride, padding=padding,
                                               groups=g)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(dw, wt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(db, bt.grad.numpy(), atol=1e-10)


def _pool_case(seed: int) -> tuple[np.random.Generator, int, int, int, np.ndarray]:
    rng = np.random.default_rng(seed)
    kernel = int(rng.integers(1, 4))
    stride = int(rng.integers(1, 4))
    padding = int(rng.integers(0, kernel // 2 + 1))
    h, w = int(rng.integers(kernel, kernel + 6)), int(rng.integers(kernel, kernel + 6))
    # distinct values, so the arg-max (and hence the subgradient) is unique
    x = rng.permutation(2 * h * w * 3).astype(float)[: 2 * 3 * h * w].reshape(2, 3, h, w)
    return rng, kernel, stride, padding, x


@pytest.mark.parametrize("seed", RNG_SEEDS)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool_and_its_subgradient_match_torch(seed: int, ceil_mode: bool) -> None:
    rng, kernel, stride, padding, x = _pool_case(seed)
    xt = _t(x)
    yt, it = F.max_pool2d(xt, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
    y, idx = ref.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(ref.max_pool2d_backward(dy, idx, x.shape), xt.grad.numpy())
    unpooled = F.max_unpool2d(torch.tensor(y), it, kernel, stride, padding, output_size=x.shape)
    np.testing.assert_array_equal(ref.max_unpool2d(y, idx, x.shape[2:]), unpooled.numpy())


@pytest.mark.parametrize("seed", RNG_SEEDS)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_avg_pool_and_its_gradient_match_torch(seed: int, ceil_mode: bool) -> None:
    rng, kernel, stride, padding, x = _pool_case(seed)
    xt = _t(x)
    yt = F.avg_pool2d(xt, kernel, stride, padding, ceil_mode=ceil_mode)
    y = ref.avg_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode)
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=1e-10)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dx = ref.avg_pool2d_backward(dy, x.shape, kernel, stride, padding, ceil_mode=ceil_mode)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-10)


def test_avg_pool_ceil_mode_partial_window_divides_by_its_pixels() -> None:
    x = np.arange(9.0).reshape(1, 1, 3, 3)  # 2x2 windows, stride 2: last row/column partial
    y = ref.avg_pool2d(x, 2, ceil_mode=True)
    assert y[0, 0].tolist() == [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8.0]]
    assert y.tolist() == F.avg_pool2d(torch.tensor(x), 2, ceil_mode=True).tolist()


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_max_unpool_backward_matches_torch(seed: int) -> None:
    rng, kernel, stride, padding, x = _pool_case(seed)
    y, idx = ref.max_pool2d(x, kernel, stride, padding)
    yt = _t(y)
    out = F.max_unpool2d(yt, torch.tensor(idx), kernel, stride, padding, output_size=x.shape)
    dout = rng.standard_normal(out.shape)
    out.backward(torch.tensor(dout))
    np.testing.assert_allclose(ref.max_unpool2d_backward(dout, idx), yt.grad.numpy())


def test_avg_pool_gradient_is_one_over_r_times_c() -> None:
    dx = ref.avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 2, 3), (2, 3))
    np.testing.assert_allclose(dx, np.full((1, 1, 2, 3), 1 / 6))


@pytest.mark.parametrize("seed", range(5))
def test_relu_and_linear_match_torch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    xt, wt, bt = _t(x), _t(w), _t(b)
    yt = torch.relu(F.linear(xt, wt, bt))
    y = ref.relu(ref.linear(x, w, b))
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dz = ref.relu_backward(ref.linear(x, w, b), dy)
    dx, dw, db = ref.linear_backward(x, w, dz)
    for mine, theirs in ((dx, xt), (dw, wt), (db, bt)):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), atol=1e-12)


def test_lecture_002_unpooling_examples() -> None:
    x = np.array([[[[1, 2], [3, 4]]]])
    assert ref.nearest_upsample(x)[0, 0].tolist() == [
        [1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert ref.bed_of_nails(x)[0, 0].tolist() == [
        [1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]
    pooled, where = ref.max_pool2d(np.array([[[[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1],
                                               [7, 3, 4, 8]]]]), 2)
    assert pooled[0, 0].tolist() == [[5, 6], [7, 8]]
    assert ref.max_unpool2d(x, where, (4, 4))[0, 0].tolist() == [
        [0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]


def test_output_size_formula_lecture_cases() -> None:
    assert ref.output_size(7, 3, 1) == 5 and ref.output_size(7, 3, 2) == 3
    assert ref.output_size(7, 3, 3) == pytest.approx(7 / 3)  # "It doesn't fit!"
    assert ref.output_size(7, 3, 3, padding=1) == 3
    assert ref.output_size(32, 5, 1, 2) == 32 and ref.output_size(6, 3, 2) == 2.5


@pytest.mark.parametrize("integer", [np.int64, np.int32, np.intp])
def test_numpy_integer_arguments_work_like_python_ints(integer: type) -> None:
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 7, 7)), rng.standard_normal((3, 2, 3, 3))
    two, one = integer(2), integer(1)
    np.testing.assert_array_equal(ref.conv2d(x, w, stride=two, padding=one),
                                  ref.conv2d(x, w, stride=2, padding=1))
    xt = torch.tensor(x)
    expected = F.conv2d(xt, torch.tensor(w), stride=2, padding=1).numpy()
    np.testing.assert_allclose(ref.conv2d(x, w, stride=two, padding=one), expected, atol=1e-12)
    dy = rng.standard_normal((1, 3, 4, 4))
    for mine, theirs in zip(ref.conv2d_backward(x, w, dy, stride=two, padding=one),
                            ref.conv2d_backward(x, w, dy, stride=2, padding=1), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(ref.conv_transpose2d(dy, w, stride=two, padding=one),
                                  ref.conv_transpose2d(dy, w, stride=2, padding=1))
    pooled, where = ref.max_pool2d(x, integer(2), ceil_mode=True)
    np.testing.assert_array_equal(pooled, F.max_pool2d(xt, 2, ceil_mode=True).numpy())
    np.testing.assert_allclose(ref.avg_pool2d(x, integer(3), integer(2), one),
                               F.avg_pool2d(xt, 3, 2, 1).numpy(), atol=1e-12)
    np.testing.assert_array_equal(ref.pad2d(x, one), ref.pad2d(x, 1))
    assert ref.pool_output_size(integer(7), two, two, ceil_mode=True) == 4
