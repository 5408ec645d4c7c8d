"""``cnnlab explain`` saying what the slides' arithmetic hides: sizes that do not fit, floored
pooling, ties in max-pool backward, fractional strides, empty transposed convolutions, and the
lectures' matrices shipped with cnnlab (``--input-file lecture:NAME``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.analysis.explain import explain_conv, explain_pool
from cnnlab.analysis.explain_backward import explain_pool_backward
from cnnlab.analysis.explain_upsampling import explain_transpose_conv
from cnnlab.cli.main import main
from cnnlab.data.xo import X_IMAGE
from cnnlab.errors import ConfigError


def test_conv_stride_two_on_six_by_six_warns_like_the_summary() -> None:
    # lecture 001: "s = 2, 3x3 filter, 6x6 image -> 2.5x2.5 ... borders are ignored"
    e = explain_conv(np.arange(36.0).reshape(6, 6), np.ones((3, 3)), stride=2)
    assert "(6 - 3 + 2*0)/2 + 1 = 2.5" in e.notes[0]
    assert len(e.warnings) == 1 and "does not fit" in e.warnings[0]
    assert "the last 1 row(s)/column(s) of the input are ignored" in e.warnings[0]
    assert "no symmetric padding fits" in e.warnings[0]  # 6 - 3 + 2P is odd for every P
    assert e.grids["output"].shape == (2, 2)
    assert "warning: 6x6 input, 3x3 filter, stride 2" in e.render()
    assert explain_conv(np.ones((7, 7)), np.ones((3, 3)), stride=2).warnings == []


def test_pool_floor_note_points_to_ceil() -> None:
    x = np.arange(49.0).reshape(7, 7)
    floor = explain_pool(x, 2)
    assert floor.grids["output"].shape == (3, 3)
    assert floor.notes[1] == ("output size (7 - 2)/2 + 1 = 3.5, floored to 3x3: the last partial "
                              "window is dropped; --ceil keeps it (4x4, as the slides pool "
                              "lecture 003's 7x7 maps to 4x4)")
    ceil = explain_pool(x, 2, ceil_mode=True)
    assert ceil.grids["output"].shape == (4, 4) and len(ceil.notes) == 1
    expected = F.max_pool2d(torch.tensor(x)[None, None], 2, ceil_mode=True)[0, 0].numpy()
    np.testing.assert_array_equal(ceil.grids["output"], expected)
    assert len(explain_pool(np.ones((4, 4)), 2).notes) == 1  # 4x4 fits: no note


def test_max_pool_backward_names_ties() -> None:
    x = np.array([[1.0, 5, 6, 3], [5, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]])
    e = explain_pool_backward(x, np.array([[1.0, 2], [3, 4]]))
    assert e.steps[0] == ("dY[0,0] = 1 goes to x[0,1] (the max, 5); the other 3 pixels of the "
                          "window get 0 (a tie: x[1,0], x[1,1] hold the max too and get 0)")
    assert "tie" not in e.steps[1] and "first in row-major order" in e.notes[0]
    xt = torch.tensor(x, requires_grad=True)
    F.max_pool2d(xt[None, None], 2).backward(torch.tensor([[[[1.0, 2], [3, 4]]]]))
    np.testing.assert_array_equal(e.grids["dX"], xt.grad.numpy())  # PyTorch picks x[0,1] too
    assert "tie" not in explain_pool_backward(np.arange(16.0).reshape(4, 4),
                                              np.ones((2, 2))).notes[0]


def test_transposed_convolution_with_an_empty_output_is_an_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"the output would be empty.*= 0; use a smaller "
                                          r"--padding \(at most 0\)"):
        explain_transpose_conv(np.ones((1, 1)), np.ones((1, 1)), stride=2, padding=1,
                               output_padding=1)
    assert main(["explain", "transpose-conv", "--input", "[[1]]", "--kernel", "[[1]]"]) == 2
    assert "output 0x0" not in capsys.readouterr().out


def test_transposed_convolution_notes_on_non_square_inputs() -> None:
    # 1x3 input, 3x3 kernel, stride 2, pad 1, output padding 1: output 2x6
    e = explain_transpose_conv(np.array([[1.0, 2, 3]]), np.ones((3, 3)), 2, 1, 1)
    assert e.grids["output"].shape == (2, 6)
    expected = F.conv_transpose2d(torch.tensor([[[[1.0, 2, 3]]]]), torch.ones(1, 1, 3, 3),
                                  stride=2, padding=1, output_padding=1)[0, 0].numpy()
    np.testing.assert_array_equal(e.grids["output"], expected)
    # x[0,1]'s copy spans columns 1..3 (inside the 6 columns) and rows -1..1 (cropped at the top)
    assert e.steps[1].endswith("columns 1..3 (the part outside the output is cropped)")
    assert e.steps[2] == ("x[0,2] = 3: adds 3 * kernel at output rows -1..1, columns 3..5 "
                          "(the part outside the output is cropped)")
    wide = explain_transpose_conv(np.ones((3, 1)), np.ones((1, 1)), 1, 0, 0)
    assert all("cropped" not in step for step in wide.steps)  # 3x1 -> 3x1: nothing cropped
    assert e.notes[0] == ("output size (H - 1)*S - 2P + F + output_padding: (1 - 1)*2 - 2*1 + 3 "
                          "+ 1 = 2 and (3 - 1)*2 - 2*1 + 3 + 1 = 6")


def test_fractional_stride_points_to_transposed_convolution(
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["explain", "conv", "--input", "[[1,2],[3,4]]", "--kernel", "[[1]]", "--stride"]
    assert main([*argv, "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--stride 0.5: a fractional stride is upsampling by 2" in err
    assert "cnnlab explain transpose-conv --stride 2" in err and "Long et al. 2015" in err
    assert main([*argv, "1.5"]) == 2
    assert "the stride must be a whole number" in capsys.readouterr().err
    assert main([*argv, "1"]) == 0


def test_lecture_inputs_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["explain", "conv", "--input-file", "lecture:x", "--kernel",
            "[[1,-1,-1],[-1,1,-1],[-1,-1,1]]", "--normalize", "--truncate", "--json"]
    assert main(argv) == 0
    result = np.array(json.loads(capsys.readouterr().out)["result"])
    x = torch.tensor(X_IMAGE, dtype=torch.float64)[None, None]
    kernel = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    np.testing.assert_allclose(result, F.conv2d(x, kernel[None, None])[0, 0].numpy() / 9)
    assert main(["explain", "conv", "--input-file", "lecture:nope", "--kernel", "[[1]]"]) == 2
    err = capsys.readouterr().err
    assert "unknown lecture input 'nope'" in err and "step_edge" in err
