"""Architectures without Python: spec strings and YAML layer lists (lecture 004's definitions)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnlab.errors import ModelError
from cnnlab.models import create
from cnnlab.models.catalog import count_parameters
from cnnlab.models.spec import build_from_spec

LENET5 = "c5x6-relu-p2-c5x16-relu-p2-f120-relu-f84-relu-f10"

LENET5_YAML = """\
layers:
  - {type: conv, filters: 6, kernel: 5, activation: relu}
  - {type: max_pool, kernel: 2}
  - {type: conv, filters: 16, kernel: 5, activation: relu}
  - {type: max_pool, kernel: 2}
  - {type: fc, units: 120, activation: relu}
  - {type: fc, units: 84, activation: relu}
  - {type: fc, units: 10}
"""


def test_lenet5_spec_is_lenet5_with_relu_and_max_pooling() -> None:
    spec = create(LENET5, num_classes=10, in_channels=1, input_size=(1, 32, 32))
    zoo = create("lenet5", num_classes=10, activation="relu", pooling="max")
    assert count_parameters(spec) == count_parameters(zoo) == 61_706
    spec.load_state_dict(zoo.state_dict())  # same layout, same names
    x = torch.randn(3, 1, 32, 32)
    assert torch.equal(spec(x), zoo(x))
    assert spec.head_path == "classifier.5" and spec.get_classifier().out_features == 10


def test_yaml_layer_list_builds_the_same_network(tmp_path: Path) -> None:
    path = tmp_path / "lenet5.yaml"
    path.write_text(LENET5_YAML)
    from_yaml = create(str(path), num_classes=10, in_channels=1, input_size=(1, 32, 32))
    from_spec = create(LENET5, num_classes=10, in_channels=1, input_size=(1, 32, 32))
    assert str(from_yaml) == str(from_spec)
    from_yaml.load_state_dict(from_spec.state_dict())
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(from_yaml(x), from_spec(x))


def test_lecture_004_layer_definitions(tmp_path: Path) -> None:
    # TensorFlow: conv2d(filters=32, kernel_size=[5, 5], padding="same", activation=relu) on
    # 28x28x1; Caffe: "Convolution", num_output 96, kernel_size 11, stride 4 on 227x227x3.
    tf = tmp_path / "tf.yaml"
    tf.write_text("- {type: conv2d, filters: 32, kernel_size: [5, 5], padding: same, "
                  "activation: relu}\n")
    model = build_from_spec(str(tf), num_classes=10, input_size=(1, 28, 28))
    assert model.features(torch.zeros(1, 1, 28, 28)).shape == (1, 32, 28, 28)
    assert count_parameters(model.features) == 5 * 5 * 1 * 32 + 32
    caffe = tmp_path / "caffe.yaml"
    caffe.write_text("layers:\n  - {name: conv1, type: Convolution, num_output: 96, "
                     "kernel_size: 11, stride: 4}\n")
    with torch.device("meta"):
        model = build_from_spec(str(caffe), num_classes=10, input_size=(3, 227, 227))
        assert model.features(torch.zeros(1, 3, 227, 227)).shape == (1, 96, 55, 55)
    assert count_parameters(model.features) == 11 * 11 * 3 * 96 + 96 == 34_944


def test_slide_example_counts() -> None:
    # Lecture 004: 32x32x3 input, 10 5x5 filters, stride 1, pad 2 -> 32x32x10, 760 parameters.
    model = create("c5x10p2", num_classes=2, input_size=(3, 32, 32))
    assert model.features(torch.zeros(1, 3, 32, 32)).shape == (1, 10, 32, 32)
    assert count_parameters(model.features) == 760
    # no final f layer: a head with num_classes outputs is appended after a flatten
    assert count_parameters(model.classifier) == 32 * 32 * 10 * 2 + 2


def test_every_token_kind_builds_and_trains() -> None:
    spec = "c3x8s1p1-bn-lrelu-a2-c3x8p1-elu-p2s2-lc2x4-tanh-drop0.25-f12-maxout-bn-sigmoid-f5"
    model = create(spec, num_classes=5, input_size=(3, 12, 12))
    x = torch.randn(4, 3, 12, 12)
    model(x).sum().backward()
    assert model(x).shape == (4, 5)
    # maxout doubles the fc before it: f12-maxout is Linear(., 24) then max over pairs
    widened = [m for m in model.classifier if isinstance(m, torch.nn.Linear)][0]
    assert widened.out_features == 24
    gap = create("c3x6p1-relu-gap", num_classes=3, input_size=(1, 8, 8))
    assert count_parameters(gap) == 3 * 3 * 6 + 6 + 6 * 3 + 3


def test_locally_connected_token() -> None:
    with torch.device("meta"):
        model = create("lc7x5-relu-f10", num_classes=10, input_size=(3, 30, 30))
    assert count_parameters(model.features) == 423_360 + 2_880  # lecture 001's layer


@pytest.mark.parametrize("spec, input_size, message", [
    ("c5x6-relu-p2-c5x-f10", (1, 32, 32), r"layer 4 'c5x': expected one of cKxN"),
    ("c3x4s2-f10", (1, 6, 6), r"layer 1 'c3x4s2': height \(6 - 3 \+ 2\*0\) / 2 \+ 1 = 2.5 is not"),
    ("c5x6-p2-c5x16-p2-c5x8-f10", (1, 28, 28), r"layer 5 'c5x8': a 5x5 window does not fit the "
                                               r"4-pixel height"),
    ("c5x6-relu-f12", (1, 8, 8), r"layer 3 'f12': the output layer has 12 units but there are "
                                 r"10 classes"),
    ("c3x4-f20-c3x4", (1, 8, 8), r"layer 3 'c3x4': spatial layers must come before"),
    ("c3x4-p2-maxout", (1, 8, 8), r"layer 3 'maxout': maxout must directly follow"),
    ("c3x4-drop1.5", (1, 8, 8), r"layer 2 'drop1.5': dropout rate"),
])
def test_errors_name_the_layer(spec: str, input_size, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create(spec, num_classes=10, input_size=input_size)


@pytest.mark.parametrize("text, message", [
    ("layers:\n  - {type: conv, filters: 6}\n", r"layer 1 \(conv\): 'kernel' missing"),
    ("- {type: conv, filters: 6, kernel: 3, strides: 2}\n",
     r"layer 1 \(conv\): unknown key 'strides'; this type takes: activation, filters"),
    ("- {type: fc, units: 10}\n- {name: top, type: softmax}\n",
     r"layer 2 'top': unknown type 'softmax'"),
    ("- {type: fc, units: 10, activation: swish}\n", r"layer 1 \(fc\): unknown activation"),
    ("- {type: conv, filters: 6, kernel: 4, padding: same}\n", r"'same' needs an odd kernel"),
    ("layers: 3\n", "expected a non-empty list of layers"),
])
def test_yaml_errors_name_the_layer(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(text)
    with pytest.raises(ModelError, match=message):
        create(str(path), num_classes=10, input_size=(1, 8, 8))


def test_input_size_is_checked_and_head_can_be_reset() -> None:
    model = create("c3x4p1-relu-p2-f10", num_classes=10, input_size=(1, 8, 8))
    with pytest.raises(ModelError, match="built for inputs 1x8x8, got 1x9x9"):
        model(torch.zeros(1, 1, 9, 9))
    model.reset_classifier(3)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ModelError, match="no model file at"):
        create("missing.yaml")


@pytest.mark.parametrize("spec, first", [
    ("relu-c3x4-f10", torch.nn.ReLU), ("bn-c3x4-f10", torch.nn.BatchNorm2d),
    ("drop0.2-c3x4-f10", torch.nn.Dropout), ("gap-f10", torch.nn.AdaptiveAvgPool2d),
])
def test_any_layer_may_come_first(spec: str, first: type) -> None:
    model = create(spec, input_size=(1, 8, 8))
    assert isinstance(model.features[0], first)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_specs_are_case_insensitive() -> None:
    upper = create("C5x6-RELU-P2-F10", input_size=(1, 12, 12))
    lower = create("c5x6-relu-p2-f10", input_size=(1, 12, 12))
    assert {k: v.shape for k, v in upper.state_dict().items()} == \
        {k: v.shape for k, v in lower.state_dict().items()}
    assert isinstance(upper.features[1], torch.nn.ReLU) and count_parameters(upper) == 6 * 26 + 96 * 10 + 10
    with pytest.raises(ModelError, match=r"^layer 2 'Q3': expected one of cKxN"):
        create("C3x4-Q3-F10", input_size=(1, 8, 8))  # quoted as typed


@pytest.mark.parametrize("name, message", [
    ("xyz-c3x4-f10", r"^layer 1 'xyz': expected one of cKxN"),
    ("c3x4-relu6-f10", r"^layer 2 'relu6': expected one of"),
    ("resnet-18", r"^layer 1 'resnet': expected .* \(or did you mean the model 'resnet18'\?\)$"),
    ("resnet", r"^unknown model 'resnet'; choose one of: .*\(did you mean"),  # no '-': a name
])
def test_dashed_names_are_specs_and_errors_name_the_layer(name: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create(name, input_size=(1, 8, 8))


def test_spec_class_count_defaults_to_its_last_fc_layer() -> None:
    assert create("c3x4-f5", input_size=(1, 8, 8))(torch.zeros(1, 1, 8, 8)).shape == (1, 5)
    assert create("c3x4-gap", input_size=(1, 8, 8))(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert create("c3x4-gap", num_classes=3, input_size=(1, 8, 8)).get_classifier().out_features == 3
