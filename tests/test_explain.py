"""cnnlab explain: the lectures' worked examples reproduced exactly, and its CLI errors.

Tables are the slides' own text (lecture 003 prints values truncated to two decimals, hence
``truncate=True``); where a slide is off, the correct value is used and a comment says so.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.analysis.explain import Style, explain_conv, explain_fc, explain_pool, explain_relu
from cnnlab.analysis.explain_backward import explain_conv_backward, explain_pool_backward
from cnnlab.analysis.explain_text import format_grid, parse_matrix
from cnnlab.analysis.explain_upsampling import explain_transpose_conv, explain_unpool
from cnnlab.cli.main import main
from cnnlab.data.xo import lecture_tensors

X = np.array([[1, 3, 1], [0, -1, 1], [2, 2, -1]])
K = np.array([[-2, -2, 1], [-2, 0, 1], [1, 1, 1]])
POOL_INPUT = np.array([[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]])

# Lecture 003, "Pooling layer" slide: the three 7x7 matches and their 2x2 max-pools.
CONV = [
    ["0.77 -0.11 0.11 0.33 0.55 -0.11 0.33", "-0.11 1.00 -0.11 0.33 -0.11 0.11 -0.11",
     "0.11 -0.11 1.00 -0.33 0.11 -0.11 0.55", "0.33 0.33 -0.33 0.55 -0.33 0.33 0.33",
     "0.55 -0.11 0.11 -0.33 1.00 -0.11 0.11", "-0.11 0.11 -0.11 0.33 -0.11 1.00 -0.11",
     "0.33 -0.11 0.55 0.33 0.11 -0.11 0.77"],
    ["0.33 -0.55 0.11 -0.11 0.11 -0.55 0.33", "-0.55 0.55 -0.55 0.33 -0.55 0.55 -0.55",
     "0.11 -0.55 0.55 -0.77 0.55 -0.55 0.11", "-0.11 0.33 -0.77 1.00 -0.77 0.33 -0.11",
     "0.11 -0.55 0.55 -0.77 0.55 -0.55 0.11", "-0.55 0.55 -0.55 0.33 -0.55 0.55 -0.55",
     "0.33 -0.55 0.11 -0.11 0.11 -0.55 0.33"],
    ["0.33 -0.11 0.55 0.33 0.11 -0.11 0.77", "-0.11 0.11 -0.11 0.33 -0.11 1.00 -0.11",
     "0.55 -0.11 0.11 -0.33 1.00 -0.11 0.11", "0.33 0.33 -0.33 0.55 -0.33 0.33 0.33",
     "0.11 -0.11 1.00 -0.33 0.11 -0.11 0.55", "-0.11 1.00 -0.11 0.33 -0.11 0.11 -0.11",
     "0.77 -0.11 0.11 0.33 0.55 -0.11 0.33"],
]
POOLED = [
    ["1.00 0.33 0.55 0.33", "0.33 1.00 0.33 0.55", "0.55 0.33 1.00 0.11", "0.33 0.55 0.11 0.77"],
    ["0.55 0.33 0.55 0.33", "0.33 1.00 0.55 0.11", "0.55 0.55 0.55 0.11", "0.33 0.11 0.11 0.33"],
    ["0.33 0.55 1.00 0.77", "0.55 0.55 1.00 0.33", "1.00 1.00 0.11 0.55", "0.77 0.33 0.55 0.33"],
]
# "ReLU layer" slide, first map; its row 2 is printed "0.11 0 1.00 0 0 0.11 0" (a typo).
RELU_DIAGONAL = ["0.77 0 0.11 0.33 0.55 0 0.33", "0 1.00 0 0.33 0 0.11 0",
                 "0.11 0 1.00 0 0.11 0 0.55", "0.33 0.33 0 0.55 0 0.33 0.33",
                 "0.55 0 0.11 0 1.00 0 0.11", "0 0.11 0 0.33 0 1.00 0",
                 "0.33 0 0.55 0.33 0.11 0 0.77"]


def _printed(grid: np.ndarray) -> list[str]:
    """Rows as the slides print them (truncated, single-spaced)."""
    return [" ".join(row.split()) for row in format_grid(grid, 2, truncate=True)]


def test_lecture_000_padded_convolution() -> None:
    e = explain_conv(X, K, padding=1)
    # the slide's last value is -2; (-1)(-2) + 1(-2) + 2(-2) = -4
    assert e.grids["output"].tolist() == [[2, -1, -6], [4, -3, -5], [1, -2, -4]]
    assert e.steps[0] == "y[0,0] = 3*1 + (-1)*1 = 2"  # slide: 3 x 1 + (-1) x 1 = 2
    assert e.steps[1] == "y[0,1] = 1*(-2) + 1*1 + (-1)*1 + 1*1 = -1"
    assert e.grids["input zero-padded by 1"].shape == (5, 5)
    assert e.grids["output"].tolist() == F.conv2d(torch.tensor(X[None, None], dtype=torch.float),
                                                  torch.tensor(K[None, None], dtype=torch.float),
                                                  padding=1)[0, 0].tolist()


def test_lecture_000_what_if_slide() -> None:
    padded = np.pad(X, 1)
    padded[0, 2:4] = 3  # "What if:" top row 0 0 3 3 0
    e = explain_conv(padded, K)
    assert e.grids["output"][0].tolist() == [5, -4, -18]  # slide keeps the stale 2, -1


def test_true_convolution_flips_the_kernel() -> None:
    flipped = explain_conv(X, K, padding=1, flip=True)
    assert np.array_equal(flipped.grids["output"],
                          explain_conv(X, K[::-1, ::-1], padding=1).grids["output"])
    assert "flipped" in flipped.notes[1]


def test_channels_filters_stride_and_bias() -> None:
    x = np.arange(2 * 4 * 4, dtype=float).reshape(2, 4, 4)
    k = np.arange(3 * 2 * 3 * 3, dtype=float).reshape(3, 2, 3, 3) - 20
    e = explain_conv(x, k, bias=np.array([1.0, -1.0, 2.0]), stride=2, padding=1)
    expected = F.conv2d(torch.tensor(x[None]), torch.tensor(k), torch.tensor([1.0, -1.0, 2.0],
                        dtype=torch.float64), stride=2, padding=1)[0]
    assert np.allclose(e.grids["output"], expected.numpy())
    assert len(e.steps) == 3 * 2 * 2 and e.steps[0].startswith("y[0,0,0] = ")
    assert e.steps[0].endswith(f"+ 1 = {int(expected[0, 0, 0])}")


@pytest.mark.parametrize("index", range(3))
def test_lecture_003_xs_and_os_matches_and_pooling(index: int) -> None:
    x, _, features = lecture_tensors()
    style = Style(2, truncate=True)
    e = explain_conv(x.numpy(), features[index].numpy(), normalize=True, style=style)
    assert _printed(e.grids["output"]) == CONV[index]
    pooled = explain_pool(e.grids["output"], 2, ceil_mode=True, style=style)
    assert _printed(pooled.grids["output"]) == POOLED[index]
    first = CONV[index][0].split()[0]
    assert e.steps[0].startswith("y[0,0] = (") and e.steps[0].endswith(f") / 9 = {first}")


def test_lecture_003_relu() -> None:
    x, _, features = lecture_tensors()
    match = explain_conv(x.numpy(), features[0].numpy(), normalize=True).grids["output"]
    e = explain_relu(match)
    assert _printed(e.grids["output"]) == RELU_DIAGONAL
    assert e.steps[0].startswith("y[0,1] = max(0, -0.11") and e.steps[0].endswith(") = 0")


def test_lecture_002_unpooling() -> None:
    two = np.array([[1, 2], [3, 4]])
    assert explain_unpool(two, "nearest").grids["output"].tolist() == [
        [1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert explain_unpool(two, "nails").grids["output"].tolist() == [
        [1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]
    e = explain_unpool(two, "max", pool_input=POOL_INPUT)
    assert e.grids["pooled"].tolist() == [[5, 6], [7, 8]]
    assert e.grids["output"].tolist() == [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    assert e.steps[0] == "x[0,0] = 1 goes to (1,1), where the max 5 was"


def test_transpose_conv_two_by_two_to_four_by_four() -> None:
    e = explain_transpose_conv(np.array([[1, 2], [3, 4]]), np.ones((3, 3)), 2, 1, 1)
    expected = F.conv_transpose2d(torch.tensor([[[[1.0, 2], [3, 4]]]]), torch.ones(1, 1, 3, 3),
                                  stride=2, padding=1, output_padding=1)[0, 0]
    assert e.grids["output"].tolist() == expected.tolist() and expected.shape == (4, 4)


def test_backward_conv_matches_autograd() -> None:
    grad = np.array([[1, 0, -1], [2, 1, 0], [0, -2, 1]])
    e = explain_conv_backward(X, K, grad, padding=1)
    xt = torch.tensor(X[None, None], dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(K[None, None], dtype=torch.float64, requires_grad=True)
    F.conv2d(xt, wt, padding=1).backward(torch.tensor(grad[None, None], dtype=torch.float64))
    assert np.allclose(e.grids["dX"], xt.grad[0, 0]) and np.allclose(e.grids["dW"], wt.grad[0, 0])
    assert e.steps[-1] == "db = sum of dY = 2"


def test_backward_pooling_max_routes_to_argmax_and_avg_spreads() -> None:
    grad = np.array([[1, 2], [3, 4]])
    dx = explain_pool_backward(POOL_INPUT, grad, mode="max").grids["dX"]
    assert dx.tolist() == [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    avg = explain_pool_backward(POOL_INPUT, grad, mode="avg").grids["dX"]
    assert avg[0, 0] == avg[1, 1] == 1 / 4 and avg[3, 3] == 4 / 4


def test_fc_lists_dot_products_and_parameter_count() -> None:
    e = explain_fc(np.array([1, 2, 3]), np.array([[1, 0, -1], [2, 1, 0]]), np.array([0.5, -1]))
    assert e.grids["output"].tolist() == [-1.5, 3.0]
    assert e.steps[0] == "y[0] = 1*1 + 0*2 + (-1)*3 + 0.5 = -1.50"
    assert e.notes == ["6 weights + 2 biases = 8 parameters"]


def test_fractions_in_matrices() -> None:  # lecture 004's Gaussian kernel 1/16 [1 2 1; ...]
    assert parse_matrix("[[1/16, 2/16], [-1/4, 4]]").tolist() == [[0.0625, 0.125], [-0.25, 4]]


def test_cli_conv_prints_each_multiply_add(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "conv", "--input", "[[1,3,1],[0,-1,1],[2,2,-1]]", "--kernel",
                 "[[-2,-2,1],[-2,0,1],[1,1,1]]", "--padding", "1"]) == 0
    out = capsys.readouterr().out
    assert "y[2,2] = (-1)*(-2) + 1*(-2) + 2*(-2) = -4" in out
    assert main(["explain", "pool", "--input", json.dumps(POOL_INPUT.tolist()), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == [[5, 6], [7, 8]]


def test_cli_reads_files(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.json"
    path.write_text("[[1, -2], [-3, 4]]")
    assert main(["explain", "relu", "--input-file", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == [[1, 0], [0, 4]]


@pytest.mark.parametrize("argv", [
    ["explain", "conv", "--input", "[[1,2],[3]]", "--kernel", "[[1]]"],
    ["explain", "conv", "--input", "not a matrix", "--kernel", "[[1]]"],
    ["explain", "conv", "--input", "[[1,2],[3,4]]"],
    ["explain", "conv", "--input", "[[1,2],[3,4]]", "--kernel", "[[[1]],[[1]]]"],
    ["explain", "relu", "--input-file", "/nonexistent/x.json"],
    ["explain", "unpool", "--mode", "max", "--input", "[[1,2],[3,4]]"],
    ["explain", "backward", "--op", "maxpool", "--input", "[[1,2],[3,4]]", "--grad", "[[1,2]]"],
])
def test_cli_bad_input_is_one_line_exit_2(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab explain: error: ") and "\n" not in err
