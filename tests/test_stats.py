"""Correlation vs shift (issue 23, lecture 000's correlation prior): against hand-computed and
closed-form references, the decay on images and MNIST-1D, and the flat shuffled control."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from cnnlab.analysis.stats import data_stats, shift_correlation, write_stats
from cnnlab.cli import stats as stats_cli
from cnnlab.data.sequences import permute_positions
from cnnlab.errors import ConfigError
from cnnlab.files import OutputExists


def reference_r(sample: np.ndarray, shift: int) -> float:
    """r_n(shift) of one single-channel sequence, written out with NumPy loops."""
    z = (sample - sample.mean()) / sample.std()
    pairs = [(z[p], z[p + shift]) for p in range(len(z) - shift)]
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_matches_a_numpy_reference_per_sample_mean():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(5, 12)).cumsum(axis=1)  # random walks: strongly correlated
    result = shift_correlation(torch.tensor(samples)[:, None].float(), max_shift=6, samples=5)
    for s in range(7):
        expected = np.mean([reference_r(x, s) for x in samples])
        assert result.r["position"][s] == pytest.approx(expected, abs=1e-5)


def test_ar1_signal_gives_phi_to_the_shift():
    """x_t = 0.8 x_{t-1} + noise has correlation 0.8^s at shift s (closed form)."""
    rng = np.random.default_rng(1)
    x = np.zeros((100, 1000))
    noise = rng.normal(size=x.shape)
    for t in range(1, 1000):
        x[:, t] = 0.8 * x[:, t - 1] + noise[:, t]
    result = shift_correlation(torch.tensor(x[:, None, 100:]).float(), max_shift=4, samples=100)
    for s in range(5):
        assert result.r["position"][s] == pytest.approx(0.8**s, abs=0.03)


def decays(values: list[float], upto: int) -> bool:
    return all(values[s] > values[s + 1] for s in range(upto))


def test_mnist_correlation_decays_and_local_is_stronger():
    result = data_stats("mnist", samples=1000, max_shift=10)
    assert result.axes == ["vertical", "horizontal"] and result.samples == 1000
    for axis in result.axes:
        r = result.r[axis]
        assert r[0] == pytest.approx(1.0) and r[1] > 0.7
        assert decays(r, 4) and r[1] - r[5] > 0.5  # local correlation stronger than non-local


def test_mnist1d_decays_and_a_shuffled_control_is_flat():
    r = data_stats("mnist1d", max_shift=20).r["position"]
    assert r[1] > 0.7 and decays(r, 6) and abs(r[6]) < 0.1
    # MNIST shuffled by one fixed permutation of its 784 pixels: flat at every shift >= 1
    flat = data_stats("mnist", samples=1000, max_shift=14, shuffle=0)
    for axis in flat.axes:
        assert max(abs(v) for v in flat.r[axis][1:]) < 0.1
    # MNIST-1D has only 40 positions: one permutation leaves few pairs per shift (noisy, see
    # docs/BEYOND_IMAGES.md); over 16 permutations r(s) is -1/(L-1), the mean correlation of
    # two different positions of a standardised sample, at every shift
    from cnnlab.data.mnist1d import load_mnist1d

    data = load_mnist1d("train").data
    mean = np.mean([shift_correlation(permute_positions(data, seed), max_shift=20).r["position"]
                    for seed in range(16)], axis=0)
    assert np.all(np.abs(mean[1:]) < 0.1)
    assert np.all(np.abs(mean[1:] + 1 / 39) < 0.03)


def test_voxel_volumes_correlate_alike_along_all_three_axes():
    r = data_stats("voxel-shapes", samples=300, max_shift=6).r
    assert list(r) == ["depth", "vertical", "horizontal"]
    for s in range(1, 7):  # random rotations: no axis is special
        assert max(r[a][s] for a in r) - min(r[a][s] for a in r) < 0.03
    assert decays(r["depth"], 6)


def test_bad_arguments_are_one_line_errors():
    data = torch.rand(4, 1, 10)
    with pytest.raises(ConfigError, match=r"--max-shift 10: must be 0..9"):
        shift_correlation(data, max_shift=10)
    with pytest.raises(ConfigError, match="--samples 0"):
        shift_correlation(data, samples=0)
    with pytest.raises(ConfigError, match="got shape"):
        shift_correlation(torch.rand(4, 10))


def test_cli_module_prints_the_table_and_writes_csv_and_png(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    stats_cli.add_arguments(parser)
    out = tmp_path / "stats"
    args = parser.parse_args(["--data", "digits", "--samples", "200", "--max-shift", "3",
                              "--out", str(out)])
    assert stats_cli.run(args) == 0
    printed = capsys.readouterr().out
    assert "vertical" in printed and "wrote" in printed
    rows = (out / "stats.csv").read_text().splitlines()
    assert rows[0] == "shift,vertical,horizontal" and rows[1] == "0,1.0,1.0" and len(rows) == 5
    assert (out / "stats.png").read_bytes()[:4] == b"\x89PNG"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "stats.csv").write_text("a file cnnlab did not write")
    result = data_stats("digits", samples=50, max_shift=2)
    with pytest.raises(OutputExists):
        write_stats(result, foreign)
    assert (foreign / "stats.csv").read_text() == "a file cnnlab did not write"
