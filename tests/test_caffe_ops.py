"""Caffe's layer arithmetic against NumPy transcriptions of Caffe's C++ (pooling_layer.cpp,
lrn_layer.cpp, batch_norm_layer.cpp, filler.hpp, eltwise_layer.cpp)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnlab.errors import ModelError
from cnnlab.models import create
from cnnlab.models.caffe_layers import pooled_size
from cnnlab.models.caffe_ops import CaffeBatchNorm, fill
from cnnlab.models.prototxt import parse_prototxt

INPUT = 'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 ' \
        'dim: {c} dim: {h} dim: {w} }} }} }}\n'


def net(tmp_path, body: str, shape=(2, 7, 7)) -> torch.nn.Module:
    path = tmp_path / "net.prototxt"
    path.write_text(INPUT.format(c=shape[0], h=shape[1], w=shape[2]) + body)
    return create(str(path)).eval()


def caffe_pool(x: np.ndarray, k: int, s: int, p: int, method: str) -> np.ndarray:
    """PoolingLayer::Forward_cpu for one (C, H, W) blob, ceil rounding."""
    c, h, w = x.shape
    out_h, out_w = (int(math.ceil((n + 2 * p - k) / s)) + 1 for n in (h, w))
    if p:
        out_h -= (out_h - 1) * s >= h + p
        out_w -= (out_w - 1) * s >= w + p
    out = np.zeros((c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, hs:he, ws:we]
            out[:, i, j] = window.max((1, 2)) if method == "MAX" else window.sum((1, 2)) / size
    return out


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("size, k, s, p", [(32, 3, 2, 0), (14, 5, 3, 0), (5, 2, 2, 1),
                                           (6, 3, 2, 1), (7, 3, 1, 1), (8, 3, 3, 1)])
def test_pooling_matches_caffe(tmp_path, method, size, k, s, p):
    model = net(tmp_path, f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                          f'pooling_param {{ pool: {method} kernel_size: {k} stride: {s} pad: {p} '
                          "} }\n", (2, size, size))
    x = torch.randn(1, 2, size, size, dtype=torch.float64)
    got = model.double()(x)[0].numpy()
    want = caffe_pool(x[0].numpy(), k, s, p, method)
    assert got.shape == want.shape and np.allclose(got, want)


def test_pooled_size_rounds_up_and_clips_as_caffe():
    assert pooled_size(32, 3, 2, 0, ceil=True, padded=False) == 16  # floor would give 15
    assert pooled_size(5, 2, 2, 1, ceil=True, padded=True) == 3  # 4th window starts in the pad
    assert pooled_size(32, 3, 2, 0, ceil=False, padded=False) == 15


def test_unpadded_stride_larger_than_window_is_refused(tmp_path):
    # Caffe: ceil((4 - 1) / 2) + 1 = 3 windows, the last starting past the image; torch: 2
    with pytest.raises(ModelError, match="layer 'pool' \\(Pooling\\): Caffe would give a 3x3"):
        net(tmp_path, 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                      'pooling_param { pool: MAX kernel_size: 1 stride: 2 } }', (1, 4, 4))


def caffe_lrn(x: np.ndarray, size: int, alpha: float, beta: float, k: float,
              within: bool) -> np.ndarray:
    """LRNLayer: across channels x (k + alpha/n sum_c' x^2)^-beta; within a channel
    x (1 + alpha/n^2 sum_window x^2)^-beta (zero padding, k unused)."""
    c, h, w = x.shape
    half = (size - 1) // 2
    if within:
        padded = np.pad(x * x, ((0, 0), (half, half), (half, half)))
        sums = np.array([[[padded[ch, i:i + size, j:j + size].sum() for j in range(w)]
                          for i in range(h)] for ch in range(c)])
        return x * (1 + alpha / size ** 2 * sums) ** -beta
    padded = np.pad(x * x, ((half, half), (0, 0), (0, 0)))
    sums = np.stack([padded[ch:ch + size].sum(0) for ch in range(c)])
    return x * (k + alpha / size * sums) ** -beta


@pytest.mark.parametrize("region, size, alpha, beta, k", [
    ("ACROSS_CHANNELS", 5, 1e-4, 0.75, 1.0),   # AlexNet / CaffeNet
    ("ACROSS_CHANNELS", 3, 0.5, 0.6, 2.0),     # k matters
    ("WITHIN_CHANNEL", 3, 5e-5 * 1e4, 0.75, 1.0),  # CIFAR-10 full's layer, larger alpha
])
def test_lrn_matches_caffe(tmp_path, region, size, alpha, beta, k):
    model = net(tmp_path, f'layer {{ name: "norm" type: "LRN" bottom: "data" top: "norm" '
                          f'lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} '
                          f'norm_region: {region} }} }}', (7, 5, 6))
    x = torch.randn(1, 7, 5, 6, dtype=torch.float64) * 3
    want = caffe_lrn(x[0].numpy(), size, alpha, beta, k, region == "WITHIN_CHANNEL")
    assert np.allclose(model.double()(x)[0].numpy(), want)


def test_batch_norm_keeps_caffe_running_sums_and_loads_its_blobs():
    maf, eps = 0.9, 1e-5
    layer = CaffeBatchNorm(3, moving_average_fraction=maf, eps=eps).double().train()
    mean_sum, var_sum, factor = np.zeros(3), np.zeros(3), 0.0
    for seed in range(3):
        x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64) * 2 + 1
        out = layer(x)
        values = x.numpy().transpose(1, 0, 2, 3).reshape(3, -1)  # (C, m), m = 100
        mu, var = values.mean(1), values.var(1)
        assert np.allclose(out.numpy(), (x.numpy() - mu[:, None, None]) /
                           np.sqrt(var + eps)[:, None, None])
        m = values.shape[1]
        factor, mean_sum, var_sum = maf * factor + 1, maf * mean_sum + mu, \
            maf * var_sum + m / (m - 1) * var
    assert np.allclose(layer.scale_factor.numpy(), [factor])
    assert np.allclose(layer.mean.numpy(), mean_sum) and np.allclose(layer.variance.numpy(), var_sum)
    # Caffe's blobs as stored (sums and their weight): evaluation divides by the weight
    fresh = CaffeBatchNorm(3, eps=eps).double().eval()
    fresh.load_state_dict({"mean": torch.tensor([2.0, 4.0, 6.0]), "variance": torch.tensor(
        [8.0, 2.0, 0.5]), "scale_factor": torch.tensor([2.0])})
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    want = (x.numpy() - np.array([1, 2, 3])[:, None, None]) / np.sqrt(
        np.array([4, 1, 0.25]) + eps)[:, None, None]
    assert np.allclose(fresh(x).numpy(), want)


def test_batch_norm_use_global_stats_in_training(tmp_path):
    model = net(tmp_path, 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" '
                          'batch_norm_param { use_global_stats: true } }\n'
                          'layer { name: "sc" type: "Scale" bottom: "data" top: "data" '
                          'scale_param { bias_term: true filler { value: 2 } '
                          'bias_filler { value: 0.5 } } }', (2, 3, 3))
    model.layers.bn.load_state_dict({"mean": torch.tensor([1.0, -1.0]),
                                     "variance": torch.tensor([4.0, 9.0]),
                                     "scale_factor": torch.tensor([1.0])})
    x = torch.randn(3, 2, 3, 3)
    before = model.layers.bn.mean.clone()
    out = model.train()(x)
    want = 2 * (x - torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)) / torch.sqrt(
        torch.tensor([4.0, 9.0]) + 1e-5).view(1, 2, 1, 1) + 0.5
    assert torch.allclose(out, want, atol=1e-6) and torch.equal(model.layers.bn.mean, before)


def _filled(text: str, shape: tuple[int, ...], default: float = 0.0) -> torch.Tensor:
    tensor = torch.empty(shape)
    torch.manual_seed(0)
    fill(tensor, parse_prototxt(text, "f") if text else None, "test", default)
    return tensor


def test_fillers_follow_caffe():
    assert torch.equal(_filled("", (3, 2)), torch.zeros(3, 2))  # no filler: constant 0
    assert torch.equal(_filled('type: "constant" value: 0.2', (4,)), torch.full((4,), 0.2))
    gauss = _filled('type: "gaussian" std: 0.01 mean: 1', (200, 500))
    assert abs(gauss.std().item() - 0.01) < 2e-4 and abs(gauss.mean().item() - 1) < 1e-4
    uni = _filled('type: "uniform" min: -2 max: 3', (100, 1000))
    assert uni.min() >= -2 and uni.max() <= 3 and abs(uni.mean().item() - 0.5) < 0.02
    # xavier: U(-sqrt(3/n), sqrt(3/n)); msra: N(0, 2/n); n = fan_in = count / shape[0]
    shape = (64, 32, 5, 5)
    fan_in, fan_out = 32 * 25, 64 * 25
    for norm, n in (("FAN_IN", fan_in), ("FAN_OUT", fan_out), ("AVERAGE", (fan_in + fan_out) / 2)):
        xavier = _filled(f'type: "xavier" variance_norm: {norm}', shape)
        bound = math.sqrt(3 / n)
        assert xavier.abs().max() <= bound and xavier.abs().max() > 0.99 * bound
        msra = _filled(f'type: "msra" variance_norm: {norm}', shape)
        assert abs(msra.std().item() / math.sqrt(2 / n) - 1) < 0.02
    with pytest.raises(ModelError, match="filler type 'positive_unitball' is not supported"):
        _filled('type: "positive_unitball"', (3, 3))


def test_bilinear_filler_is_caffes_upsampling_kernel():
    kernel = _filled('type: "bilinear"', (2, 1, 4, 4))
    f = math.ceil(4 / 2)
    c = (4 - 1) / (2 * f)
    axis = np.array([1 - abs(x / f - c) for x in range(4)])  # 0.25 0.75 0.75 0.25
    assert np.allclose(axis, [0.25, 0.75, 0.75, 0.25])
    assert np.allclose(kernel[1, 0].numpy(), np.outer(axis, axis))


def test_eltwise_concat_split_and_in_place_layers(tmp_path):
    model = net(tmp_path, """
layer { name: "split" type: "Split" bottom: "data" top: "a" top: "b" }
layer { name: "relu" type: "ReLU" bottom: "a" top: "a" relu_param { negative_slope: 0.1 } }
layer { name: "sig" type: "Sigmoid" bottom: "b" top: "s" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "s" top: "sum"
        eltwise_param { operation: SUM coeff: 2 coeff: -1 } }
layer { name: "prod" type: "Eltwise" bottom: "a" bottom: "s" top: "prod"
        eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "b" bottom: "sum" top: "max"
        eltwise_param { operation: MAX } }
layer { name: "cat" type: "Concat" bottom: "sum" bottom: "prod" bottom: "max" top: "cat" }
layer { name: "tanh" type: "TanH" bottom: "cat" top: "cat" }
layer { name: "flat" type: "Flatten" bottom: "cat" top: "flat" }
""", (2, 3, 3))
    x = torch.randn(4, 2, 3, 3)
    a, s = torch.where(x > 0, x, 0.1 * x), torch.sigmoid(x)
    total = 2 * a - s
    want = torch.tanh(torch.cat([total, a * s, torch.maximum(x, total)], 1)).flatten(1)
    assert torch.allclose(model(x), want, atol=1e-6)
