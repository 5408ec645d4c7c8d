"""The summary's lecture totals (units, connections, groups, depth, concatenations), model
options from the CLI, and the footers and labels that used to say something false."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.analysis.lecture_models import build_lecture_model
from cnnlab.analysis.summary import summary
from cnnlab.cli.main import main
from cnnlab.errors import ModelError
from cnnlab.models import create

DOCS = Path(__file__).resolve().parents[1] / "docs"


def meta(name: str, **options: object) -> nn.Module:
    with torch.device("meta"):
        return create(name, **options)


def test_lenet1989_reproduces_the_lecture_table(capsys: pytest.CaptureFixture[str]) -> None:
    # LeCun et al. 1989: H1 12@8x8 (5x5 shared, a bias per unit), H2 12@4x4 reading 8 of 12
    # maps, H3 30, output 10
    assert main(["summary", "lenet1989", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    units = 12 * 8 * 8 + 12 * 4 * 4 + 30 + 10
    assert (s["total_units"], s["input_units"]) == (units, 16 * 16) and units + 256 == 1_256
    params = (25 * 12 + 768) + (25 * 8 * 12 + 192) + (192 * 30 + 30) + (30 * 10 + 10)
    assert s["total_params"] == params == 9_760
    connections = 768 * 26 + 192 * (8 * 25 + 1) + 30 * 193 + 10 * 31
    assert s["total_connections"] == connections == 64_660
    assert main(["summary", "lenet1989"]) == 0
    out = capsys.readouterr().out
    assert "units: 1,000 (outputs of layers with weights; + 256 inputs = 1,256)" in out
    assert "connections: 64,660" in out and "parameters: 9,760" in out
    trained = create("lenet1989")(torch.zeros(2, 1, 16, 16))
    assert trained.shape == (2, 10)


def test_partial_c3_connections_count_only_existing_weights(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "lenet5", "--option", "partial_c3=true", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    c3 = rows["features.3"]
    assert c3["macs"] == 16 * 6 * 25 * 100 == 240_000  # computed densely, masked weights too
    assert c3["connections"] == 100 * (60 * 25 + 16) == 151_600  # LeCun et al.: 151,600
    assert c3["units"] == 1_600 and rows["features.0"]["connections"] == 28 * 28 * 6 * 26
    assert main(["summary", "lenet5", "--option", "nope=1"]) == 2
    assert "has no option 'nope'" in capsys.readouterr().err


def test_units_are_outputs_of_layers_with_weights_alexnet_caption() -> None:
    s = summary(meta("alexnet_paper"), (3, 227, 227))
    units = [r.units for r in s.rows if r.units]
    assert units == [55 * 55 * 96, 27 * 27 * 256, 13 * 13 * 384, 13 * 13 * 384, 13 * 13 * 256,
                     4096, 4096, 1000]
    assert s.total_units == sum(units) == 659_272
    conv2 = next(r for r in s.rows if r.name.startswith("features") and r.groups == 2)
    assert conv2.output_shape == (256, 27, 27)
    table = s.render().splitlines()
    assert re.split(r"\s+", table[2])[5] == "G"  # groups column appears when groups > 1
    assert "2" in table[4 + s.rows.index(conv2)].split()


def test_depth_counts_layers_with_weights_on_the_longest_path() -> None:
    assert summary(meta("googlenet"), (3, 224, 224)).depth == 22  # inception modules count 2
    assert summary(meta("resnet152"), (3, 224, 224)).depth == 152  # shortcuts are beside it
    assert summary(create("lenet5"), (1, 32, 32)).depth == 5


def test_concatenation_rows_show_the_inception_output() -> None:
    s = summary(build_lecture_model("inception-naive"), (256, 28, 28))
    assert [(r.name, r.output_shape) for r in s.rows if r.type == "F.cat"] == \
        [("cat", (128 + 192 + 96 + 256, 28, 28))]


def test_auxiliary_heads_are_labelled_not_run() -> None:
    s = summary(meta("googlenet", aux_logits=True), (3, 224, 224))
    labels = {r.name: r for r in s.rows if "not run" in r.type}
    assert set(labels) == {"aux1", "aux2"}
    aux = meta("googlenet", aux_logits=True)
    assert labels["aux1"].params == sum(p.numel() for p in aux.aux1.parameters())
    assert not any(r.name == "(parameters of containers)" for r in s.rows)
    assert any(w.startswith("aux1, aux2: not run") for w in s.warnings)
    assert s.total_params == sum(p.numel() for p in aux.parameters())


def test_container_parameters_keep_their_label() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) * self.scale

    s = summary(Scaled(), (1, 8, 8))
    assert [(r.name, r.params) for r in s.rows if not r.output_shape] == \
        [("(parameters of containers)", 1)]


def test_global_pooling_says_global_and_the_field_before() -> None:
    s = summary(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten()), (1, 16, 16))
    text = s.render()
    assert "receptive field of the output: global (" in text
    assert "the largest field before: 5)" in text and "never seen" not in text


def test_never_seen_footer_only_when_true() -> None:
    same = summary(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)), (1, 7, 7)).render()
    assert "never seen" not in same and "each output unit sees at most 3x3 of the 7x7" in same
    inception = summary(build_lecture_model("inception-reduced"), (256, 28, 28)).render()
    assert "never seen" not in inception.split("warning")[0]
    # stride 3 on 7x7: the last row and column are really never seen
    spec = summary(create("c3x1s3", input_size=(1, 7, 7), strict=False), (1, 7, 7)).render()
    assert "rows 6 and columns 6 of the 7x7 input are never seen by any output" in spec
    gaps = summary(nn.Sequential(nn.Conv2d(1, 1, 1, stride=3)), (1, 7, 7)).render()
    assert "rows 1-2, 4-5 and columns 1-2, 4-5 of the 7x7 input are never seen" in gaps


def test_input_size_error_is_one_line_without_an_empty_table(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "lenet5", "--input", "1x28x28"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "lenet5 takes 1x32x32 inputs only" in captured.err
    with pytest.raises(ModelError, match="takes 1x32x32 inputs only"):
        summary(create("lenet5"), (1, 28, 28))


def test_local_response_norm_counts_size_macs_and_the_docs_say_so() -> None:
    s = summary(nn.Sequential(nn.LocalResponseNorm(5)), (8, 4, 4))
    assert s.total_macs == 8 * 4 * 4 * 5
    text = " ".join((DOCS / "EXPLAIN.md").read_text().split())
    assert "local response normalisation (AlexNet's LRN) counts `size` per element" in text
