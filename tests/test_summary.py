"""cnnlab.summary: rows, parameter and MAC counts, receptive fields, hyper-parameter warnings.

Expected numbers are computed by hand from the lectures' formulas: output (W - F + 2P)/S + 1,
parameters (F F D1 + 1) K, MACs = output elements x F F D1.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.analysis.lecture_models import build_lecture_model
from cnnlab.analysis.receptive import ReceptiveField, receptive_field
from cnnlab.analysis.summary import compare, summary
from cnnlab.cli.main import main
from cnnlab.models import create


def _row(s, name):
    return next(r for r in s.rows if r.name == name)


def test_lenet5_rows_hand_computed() -> None:
    s = cnnlab.summary(create("lenet5"), (1, 32, 32))
    expected = {  # name: (output shape, params, MACs, RF size, jump)
        "features.0": ((6, 28, 28), (5 * 5 * 1 + 1) * 6, 28 * 28 * 6 * 25, 5, 1),
        "features.2": ((6, 14, 14), 0, 0, 6, 2),
        "features.3": ((16, 10, 10), (5 * 5 * 6 + 1) * 16, 10 * 10 * 16 * 150, 14, 2),
        "features.5": ((16, 5, 5), 0, 0, 16, 4),
        "classifier.1": ((120,), 400 * 120 + 120, 400 * 120, 32, None),
        "classifier.3": ((84,), 120 * 84 + 84, 120 * 84, 32, None),
        "classifier.5": ((10,), 84 * 10 + 10, 840, 32, None),
    }
    for name, (shape, params, macs, rf, jump) in expected.items():
        row = _row(s, name)
        assert (row.output_shape, row.params, row.macs) == (shape, params, macs), name
        assert row.field.size == (rf, rf), name
        if jump is not None:
            assert row.field.jump == (jump, jump), name
    assert s.total_params == 61_706 and s.total_macs == 416_520 and s.macs_complete
    assert s.rows[0].kernel == (5, 5) and s.rows[0].stride == (1, 1)
    assert _row(s, "features.0").activation_bytes == 6 * 28 * 28 * 4
    assert s.warnings == []


def test_lecture_004_examples_32x32x3_ten_5x5_filters() -> None:
    s = summary(nn.Conv2d(3, 10, 5, stride=1, padding=2), (3, 32, 32))
    assert s.rows[0].output_shape == (10, 32, 32) and s.total_params == 760
    s2 = summary(nn.Conv2d(3, 10, 5, stride=2, padding=2), (3, 32, 32))
    assert s2.rows[0].output_shape == (10, 16, 16) and s2.warnings == []


def test_lecture_004_small_network_has_41_parameters() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 4), nn.Sigmoid(),
                        nn.Linear(4, 1))
    assert summary(net, (3,)).total_params == 3 * 4 + 4 * 4 + 4 * 1 + 9 == 41


def test_seven_by_seven_stride_three_does_not_fit_and_padding_one_is_suggested() -> None:
    s = summary(nn.Sequential(nn.Conv2d(1, 1, 3, stride=3)), (1, 7, 7))
    assert len(s.warnings) == 1
    warning = s.warnings[0]
    assert warning.startswith("0 (conv2d): 7x7 input, 3x3 filter, stride 3")
    assert "2.333 is not an integer" in warning and "padding=1 fits (output 3x3)" in warning
    assert summary(nn.Conv2d(1, 1, 3, stride=3, padding=1), (1, 7, 7)).warnings == []
    for stride, out in ((1, 5), (2, 3)):
        s = summary(nn.Conv2d(1, 1, 3, stride=stride), (1, 7, 7))
        assert s.rows[0].output_shape == (1, out, out) and s.warnings == []


def test_six_by_six_stride_two_gives_two_and_a_half() -> None:
    s = summary(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2)), (1, 6, 6))
    assert "= 2.5 is not an integer" in s.warnings[0]
    assert "no symmetric padding fits" in s.warnings[0] and "7x7" in s.warnings[0]


def test_stride_larger_than_kernel_and_kernel_larger_than_input() -> None:
    s = summary(nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.MaxPool2d(2, stride=3)),
                (1, 3, 3))
    assert any(w.startswith("0 (conv2d)") and "larger than its input" in w for w in s.warnings)
    assert any(w.startswith("1 (max_pool2d)") and "1 of every 3 rows/columns are never seen"
               in w for w in s.warnings)


def test_size_shrinking_to_zero_is_reported_with_the_layer() -> None:
    s = summary(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 5)), (1, 6, 6))
    assert s.error is not None and s.error.startswith("1 (conv2d): 2x2 input, 5x5 filter")
    assert "shrinks to zero" in s.error and "padding=2 fits" in s.error
    assert [r.name for r in s.rows] == ["0"]


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.c = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b(torch.relu(self.a(x))) + x)  # paths: 5 (convs) and 1 (identity)
        y = self.pool(y)
        return self.c(y) + y  # 6 + 2*2 = 10 vs 6


def test_residual_receptive_field_is_the_largest_over_paths() -> None:
    s = summary(_Residual(), (2, 8, 8))
    assert _row(s, "b").field.size == (5, 5)
    assert _row(s, "pool").field.size == (6, 6) and _row(s, "pool").field.jump == (2, 2)
    assert s.output_field.size == (10, 10)


class _Inception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.one = nn.Conv2d(2, 1, 1)
        self.three = nn.Conv2d(2, 1, 3, padding=1)
        self.five = nn.Sequential(nn.Conv2d(2, 1, 1), nn.Conv2d(1, 1, 5, padding=2))
        self.pool = nn.MaxPool2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.one(x), self.three(x), self.five(x), self.pool(x)]
        return torch.cat(branches, 1)  # (B, 5, H, W)


def test_inception_receptive_field_is_the_widest_branch() -> None:
    s = summary(_Inception(), (2, 9, 9))
    assert s.output_field.size == (5, 5) and s.output_field.start == (0, 0)


def test_unet_like_concat_after_upsampling() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.Conv2d(1, 1, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.mid = nn.Conv2d(1, 1, 3, padding=1)
            self.up = nn.ConvTranspose2d(1, 1, 2, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skip = self.down(x)  # RF 3
            deep = self.up(self.mid(self.pool(skip)))  # 3 -> 4 (j2) -> 8 -> 8 (j1)
            return torch.cat([skip, deep], 1)

    s = summary(Tiny(), (1, 8, 8))
    assert _row(s, "mid").field.size == (8, 8)
    assert _row(s, "up").field.jump == (1, 1)
    assert s.output_field.size == (8, 8)


def test_unknown_operation_is_named_never_zero() -> None:
    class Spectral(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.fft2(x).real

    s = summary(nn.Sequential(nn.Conv2d(1, 1, 3), Spectral()), (1, 8, 8))
    assert _row(s, "1").macs is None and not s.macs_complete
    assert any("'fft_fft2'" in w and w.startswith("1:") for w in s.warnings)
    assert "at least" in s.render()


def test_functional_conv_outside_modules_gets_a_row() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("kernel", torch.ones(1, 1, 3, 3))
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(torch.nn.functional.conv2d(x, self.kernel))

    s = summary(Functional(), (1, 5, 5))
    assert [(r.name, r.macs, r.field.size) for r in s.rows] == [("conv2d", 81, (3, 3)),
                                                                ("act", 0, (3, 3))]


def test_receptive_field_api_for_cropping() -> None:
    rf = receptive_field(create("lenet5"), (1, 32, 32), "features.3")
    assert rf == ReceptiveField((14, 14), (2, 2), (6.5, 6.5))
    assert rf.box(0, 0) == (0, 0, 14, 14) and rf.box(9, 9, (32, 32)) == (18, 18, 32, 32)
    assert receptive_field(create("lenet5"), (1, 32, 32), "features.0").box(3, 4) == (3, 4, 8, 9)


def test_lecture_comparisons_real_numbers() -> None:
    naive, reduced = (build_lecture_model(n) for n in ("inception-naive", "inception-reduced"))
    c = compare(naive, reduced, (256, 28, 28))
    assert c.a.total_macs == 28 * 28 * 256 * (128 + 192 * 9 + 96 * 25) == 854_196_224
    assert c.b.total_macs == 28 * 28 * (256 * (128 + 64 + 64 + 64) + 64 * (192 * 9 + 96 * 25))
    assert c.b.total_macs == 271_351_808
    assert round(1 - c.b.total_macs / c.a.total_macs, 3) == 0.682
    assert c.a.rows[-2].output_shape == (256, 28, 28)  # the pool branch
    # the concatenation is a row of its own: 128 + 192 + 96 + 256 maps (cs231n's 28x28x672)
    assert (c.a.rows[-1].name, c.a.rows[-1].output_shape) == ("cat", (672, 28, 28))
    assert (c.b.rows[-1].name, c.b.rows[-1].output_shape) == ("cat", (480, 28, 28))
    fc = summary(build_lecture_model("fc256"), (3, 256, 256))
    conv = summary(build_lecture_model("conv256"), (3, 256, 256))
    conv2 = summary(build_lecture_model("conv256x2"), (3, 256, 256))
    assert fc.total_params == 65536 * 3 * 500 + 500 + 500 * 10 + 10 == 98_309_510
    assert conv.total_params == 11 * 11 * 3 * 500 + 500 + 5010 == 187_010  # slide: 155,000
    assert conv2.total_params == 187_010 + 3 * 3 * 500 * 500 + 500 == 2_437_510


def test_cli_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "lenet5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == 61_706 and data["rows"][0]["output_shape"] == [6, 28, 28]
    assert data["rows"][3]["receptive_field"] == {"size": [14, 14], "jump": [2, 2],
                                                  "start": [6.5, 6.5]}
    assert main(["summary", "--compare", "lecture:inception-naive",
                 "lecture:inception-reduced"]) == 0
    assert "saves 68.2%" in capsys.readouterr().out


def test_cli_non_fitting_spec_is_summarised_with_a_warning(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "c3x1s3", "--input", "1x7x7"]) == 0  # lecture 004: 7x7, 3x3, s3
    out = capsys.readouterr().out
    assert "(7 - 3 + 2*0)/3 + 1 = 2.333 is not an integer" in out and "padding=1 fits" in out
    assert main(["summary", "c3x1s3p1", "--input", "1x7x7"]) == 0
    assert "1x3x3" in capsys.readouterr().out
    assert main(["summary", "lenet5", "--input", "32x32"]) == 2


def test_uncountable_op_outside_any_leaf_makes_totals_at_least() -> None:
    class Spectral(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.fft2(self.conv(x)).real  # not inside any leaf module

    s = summary(Spectral(), (1, 8, 8))
    assert not s.macs_complete and s.total_macs == 36 * 9
    assert "(at least; see warnings)" in s.render() and any("fft_fft2" in w for w in s.warnings)


def test_cli_num_classes_defaults_to_the_models_own(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet18", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 11_689_512  # torchvision's


def test_strided_1x1_shortcut_gets_one_note_and_other_warnings_give_a_fix() -> None:
    s = summary(nn.Sequential(nn.Conv2d(1, 1, 1, stride=2)), (1, 56, 56))
    assert len(s.warnings) == 1 and "strided 1x1 convolution" in s.warnings[0]
    s = summary(nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.MaxPool2d(2, stride=3)),
                (1, 3, 3))
    assert any("use a kernel of at most 3x3 (padding=2 then keeps the size)" in w
               for w in s.warnings)
    assert any("use a kernel of at least 3x3" in w for w in s.warnings)
    # ResNet's conv1 on 224: 112.5 only because padding is cut; no image pixel ignored: silent
    assert summary(nn.Conv2d(3, 8, 7, stride=2, padding=3), (3, 224, 224)).warnings == []


def test_lecture_parameter_counts_via_summary() -> None:
    # lecture 002: 56x56x64 input, 32 1x1 filters -> (1*1*64 + 1)*32 = 2,080 parameters
    s = summary(nn.Conv2d(64, 32, 1), (64, 56, 56))
    assert s.total_params == 2_080 and s.rows[0].output_shape == (32, 56, 56)
    # lecture 004: TensorFlow tutorial conv1 5x5x1 -> 32 maps: 832; Caffe conv1 11x11x3 -> 96
    assert summary(nn.Conv2d(1, 32, 5, padding=2), (1, 28, 28)).total_params == 832
    assert summary(nn.Conv2d(3, 96, 11, stride=4), (3, 227, 227)).total_params == 34_944


def test_compare_says_which_input_b_gets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--compare", "lenet5", "c3x4-f10", "--input-b", "1x8x8"]) == 0
    out = capsys.readouterr().out
    assert "comparison (A on 1x32x32, B on 1x8x8)" in out and "c3x4-f10 on a 1x8x8" in out
