"""The protobuf text reader behind Caffe files, and bad Caffe input as one-line CLI errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli.main import main
from cnnlab.errors import ModelError
from cnnlab.models.prototxt import Message, parse_prototxt

LECTURE_004 = """\
layer {
    name: "conv1"
    type: "Convolution"
    bottom: "data"
    top: "conv1"
    # learning rate and decay multipliers for the filters
    param { lr_mult: 1 decay_mult: 1 }
    # learning rate and decay multipliers for the biases
    param { lr_mult: 2 decay_mult: 0 }
    convolution_param {
        num_output: 96      # learn 96 filters
        kernel_size: 11     # each filter is 11x11
        stride: 4           # step 4 pixels between each filter application
        weight_filler {
            type: "gaussian" # initialize the filters from a Gaussian
            std: 0.01          # distribution with stdev 0.01 (default mean: 0)
        }
        bias_filler {
            type: "constant" # initialize the biases to zero (0)
            value: 0
        }
    }
}
"""


def test_lecture_004_layer_reads_field_by_field():
    net = parse_prototxt(LECTURE_004, "conv1.prototxt")
    (layer,) = net.all("layer")
    assert (layer.get("name"), layer.get("type"), layer.all("bottom"), layer.line) == \
        ("conv1", "Convolution", ["data"], 1)
    params = layer.all("param")
    assert [(p.get("lr_mult"), p.get("decay_mult")) for p in params] == [(1, 1), (2, 0)]
    conv = layer.get("convolution_param")
    assert (conv.get("num_output"), conv.get("kernel_size"), conv.get("stride")) == (96, 11, 4)
    assert conv.get("weight_filler").get("std") == 0.01
    assert isinstance(conv.get("bias_filler"), Message) and conv.line_of("stride") == 13


def test_text_format_variants():
    text = """# comment line
    name: 'x' "y"   # adjacent strings join
    input_shape: { dim: [1, 3, 4, 5] }   ; a: 1e-4, b: -.5 c: 0x10 d: 2.5f
    e < f: true g: False h: MAX i: -inf j: "tab\\tq\\"\\101" >
    """
    net = parse_prototxt(text, "t")
    assert net.get("name") == "xy"
    assert net.get("input_shape").all("dim") == [1, 3, 4, 5]
    assert (net.get("a"), net.get("b"), net.get("c"), net.get("d")) == (1e-4, -0.5, 16, 2.5)
    e = net.get("e")
    assert (e.get("f"), e.get("g"), e.get("h"), e.get("i"), e.get("j")) == \
        (True, False, "MAX", float("-inf"), 'tab\tq"A')
    assert e.line == 4 and net.get("missing", 7) == 7 and net.all("missing") == []


@pytest.mark.parametrize("text, message", [
    ("layer {\n  name: \"a\"\n  kernel_size 5\n}\n", r"^n.prototxt:3: expected ':' or '\{' after "
                                                    r"'kernel_size', got '5'$"),
    ("layer {\n  name: \"a\"\n", r"^n.prototxt:3: missing '\}' for the message opened at line 1$"),
    ("a: 1\n}\n", r"^n.prototxt:2: expected a field name, got '\}' \(no message is open here\)$"),
    ("a: \"unterminated\nb: 2", r"^n.prototxt:1: unterminated string"),
    ("a: [1, 2\nb: 3", r"^n.prototxt:2: expected ',' or '\]' in the list opened at line 1"),
    ("a: 1\nb: @", r"^n.prototxt:2: cannot read '@'"),
    ("a: }", r"^n.prototxt:1: expected a value for 'a', got '\}'"),
])
def test_malformed_text_names_the_line(text, message):
    with pytest.raises(ModelError, match=message):
        parse_prototxt(text, "n.prototxt")


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 ' \
        'dim: 8 dim: 8 } } }\n'
CONV = 'layer { name: "conv1" type: "Convolution" bottom: "%s" top: "conv1" ' \
       'convolution_param { num_output: 4 kernel_size: 3 } }\n'


@pytest.mark.parametrize("text, needles", [
    (INPUT + 'layer { name: "act" type: "PReLU" bottom: "data" top: "act" }\n',
     ["net.prototxt:2: layer 'act' (PReLU): layer type 'PReLU' is not supported; supported:"]),
    (INPUT + CONV % "pool9", ["net.prototxt:2: layer 'conv1' (Convolution): bottom 'pool9' is "
                              "not the top of any earlier layer (blobs so far: data)"]),
    (INPUT + "layer {\n  name: \"x\"\n  type \"ReLU\"\n}\n",
     ["net.prototxt:4: expected ':' or '{' after 'type', got '\"ReLU\"'"]),
    ('layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TEST }\n'
     '  transform_param { scale: 0.1 mean_values: 3 } }\n' + CONV % "data",
     ["layer 'd' (Data): transform_param 'mean_values' is not supported; cnnlab maps"]),
    ('layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TEST }\n'
     '  transform_param { mirror: true crop_size: 8 } }\n' + CONV % "data",
     ["layer 'd' (Data): transform_param mirror: true in the TEST phase flips test images"]),
    (INPUT + 'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
     '  convolution_param { num_output: 4 kernal_size: 3 } }\n',
     ["layer 'conv1' (Convolution): unknown field 'kernal_size' in convolution_param (line 3)"]),
    (INPUT + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n'
     '  pooling_param { pool: STOCHASTIC kernel_size: 2 } }\n',
     ["layer 'p' (Pooling): STOCHASTIC pooling is not supported"]),
    (INPUT + 'layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" '
     'inner_product_param { num_output: 2 } }\n'
     'layer { name: "b" type: "InnerProduct" bottom: "data" top: "b" '
     'inner_product_param { num_output: 2 } }\n',
     ["net.prototxt: the net has 2 outputs (a, b); mark the class scores with a SoftmaxWithLoss"]),
    ('name: "old"\nlayers { name: "conv1" type: CONVOLUTION }\n',
     ["net.prototxt:2: 'layers' is Caffe's old V1 format; upgrade it"]),
])
def test_bad_caffe_files_are_one_line_cli_errors(tmp_path, capsys, text, needles):
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    for command in (["summary", str(path), "--input", "1x8x8"],
                    ["train", "--model", str(path), "--data", "digits", "--epochs", "1",
                     "--no-progress", "--out", str(tmp_path / "runs")]):
        err = _one_line_error(capsys, command)
        assert all(needle in err for needle in needles), err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_data_layer_without_a_size_needs_input(capsys):
    path = Path(__file__).parents[1] / "cnnlab/models/caffe_examples/lenet_train_test.prototxt"
    err = _one_line_error(capsys, ["summary", str(path)])
    assert "lenet_train_test.prototxt: its input layer does not say the input size" in err
    assert main(["summary", str(path), "--input", "1x28x28"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 431,080" in out and "layers.ip2" in out
