"""cnnlab explain: the lectures' worked examples reproduced exactly, and its CLI errors.

Tables are the slides' own text (lecture 003 prints values truncated to two decimals, hence
``truncate=True``); where a slide is off, the correct value is used and a comment says so.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.analysis.explain import Style, explain_conv, explain_fc, explain_pool, explain_relu
from cnnlab.analysis.explain_backward import explain_conv_backward, explain_pool_backward
from cnnlab.analysis.explain_cli import explain_from_args
from cnnlab.analysis.explain_text import fmt, format_grid, parse_matrix
from cnnlab.analysis.explain_upsampling import explain_transpose_conv, explain_unpool
from cnnlab.cli.explain import add_arguments
from cnnlab.cli.main import main
from cnnlab.data.xo import lecture_tensors
from cnnlab.errors import ConfigError

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


def test_cli_conv_with_two_filters_of_two_channels(capsys: pytest.CaptureFixture[str]) -> None:
    x = np.arange(18, dtype=float).reshape(2, 3, 3) - 4
    k = np.array([[[[1, 0], [0, -1]], [[2, 1], [0, 1]]], [[[0, 1], [1, 0]], [[-1, 0], [3, 1]]]])
    assert main(["explain", "conv", "--input", json.dumps(x.tolist()), "--kernel",
                 json.dumps(k.tolist()), "--bias", "1"]) == 0
    out = capsys.readouterr().out
    expected = F.conv2d(torch.tensor(x[None]), torch.tensor(k, dtype=torch.float64),
                        torch.ones(2, dtype=torch.float64))[0]
    assert "filter 0:\n[0]\n 1   0\n 0  -1\n[1]\n2  1\n0  1\nfilter 1:\n[0]\n0  1\n1  0" in out
    for (f, i, j), v in np.ndenumerate(expected.numpy()):
        assert f"y[{f},{i},{j}] = " in out and out.split(f"y[{f},{i},{j}] = ")[1].split(
            "\n")[0].endswith(f"= {int(v)}")


@pytest.mark.parametrize("argv", [
    ["explain", "conv", "--input", "[[1,2],[3,4]]", "--kernel", "[[1,1,1],[1,1,1],[1,1,1]]"],
    ["explain", "pool", "--input", "[[1,2],[3,4]]", "--size", "0"],
    ["explain", "pool", "--input", "[[1,2],[3,4]]", "--size", "3"],
    ["explain", "conv", "--input", "[[1,2],[3,4]]", "--kernel", "[[1]]", "--padding", "-1"],
    ["explain", "conv", "--input", "[[1/0]]", "--kernel", "[[1]]"],
    ["explain", "conv", "--input", "[[1,2],[3,4]]", "--kernel", "[[1]]", "--stride", "0"],
    ["explain", "transpose-conv", "--input", "[[1]]", "--kernel", "[[1]]", "--stride", "1",
     "--output-padding", "1"],
])
def test_cli_impossible_numbers_are_one_line_exit_2(argv: list[str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    test_cli_bad_input_is_one_line_exit_2(argv, capsys)


def test_cli_plain_number_bias_and_avg_ceil(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "conv", "--input", "[[1,2],[3,4]]", "--kernel", "[[2]]", "--bias",
                 "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == [[3, 5], [7, 9]]
    assert main(["explain", "pool", "--mode", "avg", "--ceil", "--input",
                 "[[0,1,2],[3,4,5],[6,7,8]]", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == [[2, 3.5], [6.5, 8]]


def test_cli_transpose_conv_stride_one_has_no_output_padding(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "transpose-conv", "--input", "[[1,2],[3,4]]", "--kernel",
                 "[[1,1],[1,1]]", "--stride", "1", "--padding", "0", "--json"]) == 0
    expected = F.conv_transpose2d(torch.tensor([[[[1.0, 2], [3, 4]]]]), torch.ones(1, 1, 2, 2))
    assert json.loads(capsys.readouterr().out)["result"] == expected[0, 0].tolist()


def test_rounding_half_up_is_the_default_and_half_even_is_an_option() -> None:
    assert [fmt(80.5, 0), fmt(80.5, 0, rounding="half-even")] == ["81", "80"]
    assert [fmt(99.5, 0), fmt(99.5, 0, rounding="half-even")] == ["100", "100"]
    assert [fmt(-80.5, 0), fmt(0.125), fmt(0.125, rounding="half-even")] == ["-81", "0.13",
                                                                              "0.12"]
    assert f"{2.675:.2f}" == "2.67" and fmt(2.675) == "2.68"  # the decimal, not the binary, tie
    assert fmt(7 / 9, truncate=True, rounding="half-even") == "0.77"
    with pytest.raises(ConfigError, match="--round 'up'"):
        fmt(0.5, 0, rounding="up")


def _step_edge(n: int) -> np.ndarray:
    """Lecture 003's "Ignoring flip" image: 128 in the top-left and bottom-right 5x5 quadrants."""
    top = np.arange(n) < 5
    return np.where(top[:, None] == top[None, :], 128.0, 52.0)


# Lecture 003, "Ignoring flip" slide: the 4x4 box filter's "Conv Output", typed from the table.
BOX_SLIDE = ["128 128 109 90 71 52", "128 128 109 90 71 52", "109 109 100 90 81 71",
             "90 90 90 90 90 90", "71 71 81 90 100 109", "52 52 71 90 109 128"]


def _rows(lines: list[str]) -> list[str]:
    return [" ".join(line.split()) for line in lines]


def test_lecture_003_box_filter_step_edge_rounds_half_up_like_the_slide() -> None:
    image = _step_edge(10)
    e = explain_conv(image, np.full((4, 4), 1 / 16))
    torch_out = F.conv2d(torch.tensor(image)[None, None], torch.full((1, 1, 4, 4), 1 / 16,
                                                                     dtype=torch.float64))
    assert np.allclose(e.grids["output"], torch_out[0, 0].numpy(), atol=1e-12)
    assert e.grids["output"][2, 4] == e.grids["output"][4, 2] == 80.5  # the two ties at .5
    half_up = _rows(format_grid(e.grids["output"], 0))
    half_even = _rows(format_grid(e.grids["output"], 0, rounding="half-even"))
    # 10x10 valid gives 7x7; the slide prints 6x6, the top-left corner (its last row/column,
    # repeats of the ones before, are missing).
    assert [" ".join(r.split()[:6]) for r in half_up[:6]] == BOX_SLIDE
    assert half_up[6] == half_up[5] and all(r.split()[6] == r.split()[5] for r in half_up)
    assert [" ".join(r.split()[:6]) for r in half_even[:6]] != BOX_SLIDE
    assert half_even[2].split()[4] == half_even[4].split()[2] == "80"
    # A 9x9 image (5 + 4 rows and columns) gives the slide's 6x6 exactly.
    nine = explain_conv(_step_edge(9), np.ones((4, 4)), normalize=True)
    assert _rows(format_grid(nine.grids["output"], 0)) == BOX_SLIDE


def test_cli_box_filter_round_option(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["explain", "conv", "--input", json.dumps(_step_edge(10).tolist()), "--kernel",
            json.dumps(np.ones((4, 4)).tolist()), "--normalize", "--decimals", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "\n109  109  100   90   81   71   71\n" in out
    assert "y[2,4] = (128*1 + 52*1 + 52*1 + 52*1 + 128*1 + " in out
    assert out.split("y[2,4] = ")[1].split("\n")[0].endswith(" / 16 = 81")
    assert main(argv + ["--round", "half-even"]) == 0
    out = capsys.readouterr().out
    assert "\n109  109  100   90   80   71   71\n" in out
    assert out.split("y[2,4] = ")[1].split("\n")[0].endswith(" / 16 = 80")
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices reject anything else
        main(argv + ["--round", "up"])
    assert exit_info.value.code == 2
    assert "--round: invalid choice: 'up'" in capsys.readouterr().err


# Lecture 001, "Shared 2-D filters -> Convolutions": the slide's "Result" and filter. The
# original image is a figure the transcript does not hold; it is the Stanford UFLDL
# "Convolved feature" animation's 5x5 binary image, which gives exactly that result.
UFLDL_IMAGE = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0],
                        [0, 1, 1, 0, 0]])
FILTER_001 = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
RESULT_001 = [[4, 3, 4], [2, 4, 3], [2, 3, 4]]


def test_lecture_001_shared_filter_result() -> None:
    torch_out = F.conv2d(torch.tensor(UFLDL_IMAGE, dtype=torch.float64)[None, None],
                         torch.tensor(FILTER_001, dtype=torch.float64)[None, None])
    assert torch_out[0, 0].tolist() == RESULT_001
    for flip in (False, True):  # the slide's formula I(x - i, y - j) is true convolution; the
        e = explain_conv(UFLDL_IMAGE, FILTER_001, flip=flip)  # filter is symmetric: no change
        assert e.grids["output"].tolist() == RESULT_001
    assert e.steps[3] == "y[1,0] = 1*1 + 1*1 = 2"
    # Explaining the 3x3 result itself as an image gives one number, not the slide's grid.
    assert explain_conv(np.array(RESULT_001), FILTER_001).grids["output"].tolist() == [[18]]


def test_explicit_zero_is_not_replaced_by_a_default(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["explain", "transpose-conv", "--input", "[[1,2],[3,4]]", "--kernel",
            "[[1,1,1],[1,1,1],[1,1,1]]", "--json"]
    assert main(base + ["--padding", "0"]) == 0
    expected = F.conv_transpose2d(torch.tensor([[[[1.0, 2], [3, 4]]]]), torch.ones(1, 1, 3, 3),
                                  stride=2, padding=0, output_padding=1)
    assert json.loads(capsys.readouterr().out)["result"] == expected[0, 0].tolist()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["conv", "--input", "[[1,2],[3,4]]", "--kernel", "[[1]]",
                              "--stride", "0"])
    args.output_padding = 0  # bypass check_arguments: explain itself must see the 0
    with pytest.raises(ConfigError, match="--stride 0"):
        explain_from_args(args)
