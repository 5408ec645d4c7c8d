"""Architectures without Python: spec strings and YAML layer lists (lecture 004's definitions)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
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
    ("- {type: conv, filters: 6, kernel: 3, stirdes: 2}\n",
     r"layer 1 \(conv\): unknown key 'stirdes'; this type takes: activation, bias, filters"),
    ("- {type: fc, units: 10}\n- {name: top, type: softmaxx}\n",
     r"layer 2 'top': unknown type 'softmaxx'"),
    ("- {type: fc, units: 10, activation: swish}\n", r"layer 1 \(fc\): unknown activation"),
    ("- {type: conv, filters: 6, kernel: 4, padding: full}\n", r"padding 'full'; use an int"),
    ("- {type: conv, filters: 4, kernel: 3, activation: softmax}\n- {type: fc, units: 10}\n",
     r"layer 1 \(conv\) activation: softmax is accepted only as the last layer"),
    ("- {type: relu, alpha: 0.1}\n", r"layer 1 \(relu\): a slope applies to leaky_relu only"),
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


# --- Keras/TensorFlow-style YAML, computed as TensorFlow computes it ---------------------------


def tf_same_reference(x: np.ndarray, k: int, s: int, op: str, weight: np.ndarray | None = None
                      ) -> np.ndarray:
    """TensorFlow's padding="same" (tf.nn.conv2d / max_pool / avg_pool) for one (C, H, W) image:
    out = ceil(in / s), pad_total = max((out - 1) s + k - in, 0), pad_top = pad_total // 2 (the
    extra row at the bottom, the extra column at the right); conv pads zeros, max pooling
    ignores the padding, average pooling divides by the number of real pixels."""
    c, h, w = x.shape
    outs = [-(-n // s) for n in (h, w)]
    totals = [max((o - 1) * s + k - n, 0) for o, n in zip(outs, (h, w), strict=True)]
    (top, left) = (t // 2 for t in totals)
    real = np.zeros((h + totals[0], w + totals[1]), bool)
    real[top:top + h, left:left + w] = True
    padded = np.zeros((c, *real.shape))
    padded[:, top:top + h, left:left + w] = x
    result = []
    for i in range(outs[0]):
        row = []
        for j in range(outs[1]):
            window = padded[:, i * s:i * s + k, j * s:j * s + k]
            inside = real[i * s:i * s + k, j * s:j * s + k]
            if op == "conv":
                row.append(np.einsum("ochw,chw->o", weight, window))
            elif op == "max":
                row.append(np.where(inside, window, -np.inf).max((1, 2)))
            else:
                row.append(window.sum((1, 2)) / inside.sum())
        result.append(row)
    return np.array(result).transpose(2, 0, 1)  # (C_out, out_h, out_w)


@pytest.mark.parametrize("size, k, s", [((7, 7), 4, 2), ((8, 9), 3, 3), ((5, 6), 2, 1),
                                        ((28, 28), 5, 1), ((6, 6), 3, 2), ((9, 5), 4, 3)])
def test_same_padding_is_tensorflows(tmp_path, size, k, s):
    path = tmp_path / "tf.yaml"
    path.write_text(f"- {{type: Conv2D, filters: 3, kernel_size: {k}, strides: {s}, "
                    "padding: same, use_bias: false}\n"
                    f"- {{type: MaxPooling2D, pool_size: {k}, strides: {s}, padding: same}}\n"
                    f"- {{type: AveragePooling2D, pool_size: {k}, strides: {s}, padding: same}}\n")
    h, w = size
    model = build_from_spec(str(path), num_classes=2, input_size=(2, h, w)).double().eval()
    x = torch.randn(1, 2, h, w, dtype=torch.float64)
    conv = next(m for m in model.features if isinstance(m, torch.nn.Conv2d))
    want = tf_same_reference(x[0].numpy(), k, s, "conv", conv.weight.detach().numpy())
    want = tf_same_reference(tf_same_reference(want, k, s, "max"), k, s, "avg")
    assert np.allclose(model.features(x)[0].detach().numpy(), want)
    assert want.shape[1:] == tuple(math.ceil(math.ceil(math.ceil(n / s) / s) / s) for n in size)


def test_valid_padding_rounds_as_tensorflow_and_keras_defaults_to_it(tmp_path):
    path = tmp_path / "valid.yaml"
    # 7x7, 2x2 windows, stride 2: ceil((7 - 2 + 1) / 2) = 3 (strict integer padding refuses it)
    path.write_text("- {type: Conv2D, filters: 4, kernel_size: 2, strides: 2}\n"
                    "- {type: MaxPooling2D, pool_size: 2}\n")
    model = build_from_spec(str(path), num_classes=3, input_size=(1, 7, 7))
    assert model.features(torch.zeros(1, 1, 7, 7)).shape == (1, 4, 1, 1)
    path.write_text("- {type: conv, filters: 4, kernel: 2, stride: 2}\n")
    with pytest.raises(ModelError, match=r"\(7 - 2 \+ 2\*0\) / 2 \+ 1 = 3.5 is not a whole"):
        build_from_spec(str(path), num_classes=3, input_size=(1, 7, 7))
    lenient = build_from_spec(str(path), num_classes=3, input_size=(1, 7, 7), strict=False)
    assert lenient.features(torch.zeros(1, 1, 7, 7)).shape == (1, 4, 3, 3)  # strict=False floors


KERAS = """\
layers:
  - {type: Conv2D, filters: 8, kernel_size: [3, 3], padding: same, activation: relu}
  - {type: BatchNormalization}
  - {type: MaxPooling2D, pool_size: [2, 2]}
  - {type: Conv2D, filters: 16, kernel_size: 3, strides: 2, padding: same, activation: tf.nn.elu}
  - {type: AveragePooling2D, pool_size: 2, padding: valid}
  - {type: Flatten}
  - {type: Dense, units: 32, activation: leaky_relu}
  - {type: Dropout, rate: 0.3}
  - {type: Dense, units: 10, activation: softmax}
"""


def test_keras_names_and_activations(tmp_path):
    path = tmp_path / "keras.yaml"
    path.write_text(KERAS)
    model = create(str(path), input_size=(1, 28, 28))
    # 28 -same-> 28 -pool-> 14 -same s2-> 7 -valid pool 2-> 3 (floor, as TensorFlow)
    assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 16, 3, 3)
    assert sum(p.numel() for p in model.parameters()) == \
        (9 * 8 + 8) + 2 * 8 + (9 * 8 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 10 + 10)
    bn = model.features[2]
    assert (bn.eps, bn.momentum) == (1e-3, pytest.approx(0.01))  # Keras: epsilon, 1 - 0.99
    kinds = [type(m).__name__ for m in [*model.features, *model.classifier]]
    # 14 pixels, 3x3, stride 2: 7 positions, padding (7 - 1) * 2 + 3 - 14 = 1, at the bottom/right
    assert kinds == ["Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d", "ZeroPad2d", "Conv2d", "ELU",
                     "AvgPool2d", "Flatten", "Linear", "LeakyReLU", "Dropout", "Linear"]
    assert model.features[4].padding == (0, 1, 0, 1)
    assert model.classifier[2].negative_slope == 0.2  # tf.nn.leaky_relu's, not the lecture's 0.1
    # the final softmax is left out: the model gives logits, and says so
    assert any("final softmax is left out" in note for note in model.notes)
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    assert not torch.allclose(model(x).exp().sum(1), torch.ones(3))


def test_linear_activation_and_lecture_leaky_relu(tmp_path):
    path = tmp_path / "acts.yaml"
    path.write_text("- {type: dense, units: 4, activation: linear}\n- {type: lrelu}\n"
                    "- {type: LeakyReLU}\n- {type: Activation, activation: sigmoid}\n"
                    "- {type: leaky_relu, negative_slope: 0.05}\n- {type: dense, units: 2}\n")
    model = create(str(path), input_size=(1, 2, 2))
    slopes = [m.negative_slope for m in model.classifier if isinstance(m, torch.nn.LeakyReLU)]
    assert slopes == [0.1, 0.3, 0.05]  # lecture 003's lrelu, Keras's LeakyReLU, given
    assert [type(m).__name__ for m in model.classifier] == \
        ["Flatten", "Linear", "LeakyReLU", "LeakyReLU", "Sigmoid", "LeakyReLU", "Linear"]
