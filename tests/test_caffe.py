"""Caffe network definitions as cnnlab models: the classic example nets against totals computed
by hand with Caffe's rules, phases, outputs and auxiliary heads, lr_mult/decay_mult groups,
training, storing and resuming a run whose prototxt is gone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.analysis.summary import summary
from cnnlab.config import TrainConfig
from cnnlab.errors import ModelError
from cnnlab.models import create, default_input_size
from cnnlab.models.caffe import EXAMPLES
from cnnlab.runs.reader import load_model
from cnnlab.tasks import get_task
from cnnlab.train.finetune import discriminative_groups
from cnnlab.train.fit import fit
from cnnlab.train.loop import training_loss
from cnnlab.train.optim import build_optimizer, parameter_groups, set_lr


def conv(c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    """Caffe's count for a Convolution layer: weights (c_out, c_in/groups, k, k) + biases."""
    return c_out * (c_in // groups) * k * k + c_out


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# By hand, with Caffe's sizes: LeNet 28 -conv5-> 24 -pool2-> 12 -conv5-> 8 -pool2-> 4;
# CIFAR-10 pools 3x3/2 round *up*: 32 -> 16 -> 8 -> 4; CaffeNet 227 -> 55 -> 27 -> 13 -> 6.
LENET = conv(1, 20, 5) + conv(20, 50, 5) + fc(50 * 4 * 4, 500) + fc(500, 10)
CIFAR_QUICK = conv(3, 32, 5) + conv(32, 32, 5) + conv(32, 64, 5) + fc(64 * 4 * 4, 64) + fc(64, 10)
CIFAR_FULL = conv(3, 32, 5) + conv(32, 32, 5) + conv(32, 64, 5) + fc(64 * 4 * 4, 10)
CAFFENET = (conv(3, 96, 11) + conv(96, 256, 5, 2) + conv(256, 384, 3) + conv(384, 384, 3, 2)
            + conv(384, 256, 3, 2) + fc(256 * 6 * 6, 4096) + fc(4096, 4096) + fc(4096, 1000))
INCEPTIONS = [(192, (64, 96, 128, 16, 32, 32)), (256, (128, 128, 192, 32, 96, 64)),
              (480, (192, 96, 208, 16, 48, 64)), (512, (160, 112, 224, 24, 64, 64)),
              (512, (128, 128, 256, 24, 64, 64)), (512, (112, 144, 288, 32, 64, 64)),
              (528, (256, 160, 320, 32, 128, 128)), (832, (256, 160, 320, 32, 128, 128)),
              (832, (384, 192, 384, 48, 128, 128))]


def inception(c: int, widths: tuple[int, ...]) -> int:
    n1, r3, n3, r5, n5, proj = widths
    return (conv(c, n1, 1) + conv(c, r3, 1) + conv(r3, n3, 3) + conv(c, r5, 1)
            + conv(r5, n5, 5) + conv(c, proj, 1))


GOOGLENET = (conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
             + sum(inception(c, w) for c, w in INCEPTIONS) + fc(1024, 1000))
AUX = [conv(c, 128, 1) + fc(128 * 4 * 4, 1024) + fc(1024, 1000) for c in (512, 528)]


def meta(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return create(str(EXAMPLES / f"{name}.prototxt"), **kwargs)


@pytest.mark.parametrize("name, size, total, shapes", [
    ("lenet", None, LENET, {"conv1": (20, 24, 24), "pool1": (20, 12, 12), "conv2": (50, 8, 8),
                            "pool2": (50, 4, 4), "ip1": (500,), "ip2": (10,)}),
    ("lenet_train_test", (1, 28, 28), LENET, {"pool2": (50, 4, 4), "ip2": (10,)}),
    ("cifar10_quick_train_test", (3, 32, 32), CIFAR_QUICK,
     {"pool1": (32, 16, 16), "pool2": (32, 8, 8), "pool3": (64, 4, 4), "ip2": (10,)}),
    ("cifar10_full_train_test", (3, 32, 32), CIFAR_FULL,
     {"norm1": (32, 16, 16), "norm2": (32, 8, 8), "pool3": (64, 4, 4), "ip1": (10,)}),
    ("caffenet_train_val", None, CAFFENET,
     {"conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27),
      "pool2": (256, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6), "fc8": (1000,)}),
    ("alexnet", None, CAFFENET, {"norm1": (96, 55, 55), "pool1": (96, 27, 27),
                                 "pool5": (256, 6, 6), "fc8": (1000,)}),
    ("googlenet_train_val", None, GOOGLENET + sum(AUX),
     {"pool1/3x3_s2": (64, 56, 56), "pool2/3x3_s2": (192, 28, 28),
      "inception_3a/output": (256, 28, 28), "inception_3b/output": (480, 28, 28),
      "inception_4a/output": (512, 14, 14), "inception_4e/output": (832, 14, 14),
      "inception_5b/output": (1024, 7, 7), "pool5/7x7_s1": (1024, 1, 1),
      "loss3/classifier": (1000,)}),
])
def test_classic_caffe_nets_match_hand_counts(name, size, total, shapes):
    model = meta(name, input_size=size)
    result = summary(model, model.input_size)
    assert result.error is None
    assert result.total_params == total
    rows = {row.name.removeprefix("layers."): row.output_shape for row in result.rows}
    assert {k: rows[k] for k in shapes} == shapes


def test_the_totals_are_the_issues():
    assert (LENET, CIFAR_QUICK, CAFFENET) == (431_080, 145_578, 60_965_224)
    assert (GOOGLENET, GOOGLENET + sum(AUX)) == (6_998_552, 13_378_280)


def test_declared_input_sizes():
    assert default_input_size(str(EXAMPLES / "lenet.prototxt")) == (1, 28, 28)
    assert default_input_size(str(EXAMPLES / "caffenet_train_val.prototxt")) == (3, 227, 227)
    assert default_input_size(str(EXAMPLES / "googlenet_train_val.prototxt")) == (3, 224, 224)
    with pytest.raises(ModelError, match="does not say the input size"):
        default_input_size(str(EXAMPLES / "cifar10_quick_train_test.prototxt"))


def test_googlenet_auxiliary_heads_train_with_their_loss_weights():
    model = meta("googlenet_train_val", num_classes=7)
    assert model.head_path == "layers.loss3/classifier"
    assert [model.layers[f"loss{i}/classifier"].out_features for i in (1, 2, 3)] == [7, 7, 7]
    assert sum(p.numel() for p in model.parameters()) == \
        GOOGLENET + sum(AUX) - 3 * fc(1024, 1000) + 3 * fc(1024, 7)
    x = torch.zeros(2, 3, 224, 224, device="meta")
    out = model.train()(x)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 7)] * 3
    assert out.loss_weights == (1.0, 0.3, 0.3)  # loss3 (main), loss1, loss2
    assert model.eval()(x).shape == (2, 7)  # evaluation: the main scores only


def test_loss_weights_weigh_the_training_loss(tmp_path):
    path = tmp_path / "aux.prototxt"
    path.write_text("""
input: "data"
input_shape { dim: 1 dim: 1 dim: 6 dim: 6 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "main" type: "InnerProduct" bottom: "conv" top: "main"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "side" type: "InnerProduct" bottom: "data" top: "side"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "loss_side" type: "SoftmaxWithLoss" bottom: "side" bottom: "label"
        loss_weight: 0.5 }
layer { name: "loss_main" type: "SoftmaxWithLoss" bottom: "main" bottom: "label"
        loss_weight: 2 }
""")
    model = create(str(path)).train()
    x, y = torch.randn(5, 1, 6, 6), torch.tensor([0, 1, 2, 1, 0])
    outputs = model(x)
    loss, logits = training_loss(outputs, y, get_task("classify"))
    main, side = model.layers.main(model.layers.conv(x)), model.layers.side(x)
    assert torch.equal(logits, main)
    assert torch.allclose(loss, 2 * F.cross_entropy(main, y) + 0.5 * F.cross_entropy(side, y))


def test_phases_rules_and_outputs(tmp_path):
    path = tmp_path / "phases.prototxt"
    path.write_text("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "constant" value: 1 } } }
layer { name: "train_only" type: "ReLU" bottom: "ip" top: "ip" include { phase: TRAIN } }
layer { name: "not_in_test" type: "Sigmoid" bottom: "ip" top: "ip" exclude { phase: TEST } }
layer { name: "staged" type: "TanH" bottom: "ip" top: "ip" include { phase: TEST stage: "x" } }
layer { name: "negate" type: "Eltwise" bottom: "ip" bottom: "ip" top: "ip"
        eltwise_param { coeff: -1 coeff: 0 } include { phase: TEST } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
""")
    model = create(str(path))
    assert list(model.layers) == ["ip", "negate", "prob"]
    x = torch.randn(2, 1, 4, 4)
    assert torch.allclose(model(x), -x.flatten(1).sum(1, keepdim=True).expand(2, 3))
    assert any("TEST phase; left out: ReLU 'train_only', Sigmoid 'not_in_test', TanH 'staged'"
               in note for note in model.notes)
    assert any("dropped the final Softmax 'prob'" in note for note in model.notes)


def test_convolution_variants_follow_caffe_shapes(tmp_path):
    path = tmp_path / "conv.prototxt"
    path.write_text("""
input: "data" input_dim: 1 input_dim: 4 input_dim: 11 input_dim: 13
layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param {
  num_output: 6 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1 group: 2
  bias_term: false } }
layer { name: "b" type: "Convolution" bottom: "a" top: "b" convolution_param {
  num_output: 4 kernel_size: 3 dilation: 2 pad: 2 } }
layer { name: "up" type: "Deconvolution" bottom: "b" top: "up" convolution_param {
  num_output: 4 kernel_size: 4 stride: 2 pad: 1 group: 4 weight_filler { type: "bilinear" } } }
layer { name: "gp" type: "Pooling" bottom: "up" top: "gp" pooling_param { pool: AVE global_pooling: true } }
""")
    model = create(str(path))
    a, b, up = model.layers.a, model.layers.b, model.layers.up
    assert a.weight.shape == (6, 2, 3, 5) and a.bias is None and b.dilation == (2, 2)
    # (11 + 2 - 3) // 2 + 1 = 6, (13 - 5) // 1 + 1 = 9; dilated 3x3 spans 5: 6 + 4 - 5 + 1 = 6
    rows = {r.name: r.output_shape for r in summary(model, (4, 11, 13)).rows}
    assert rows["layers.a"] == (6, 6, 9) and rows["layers.b"] == (4, 6, 9)
    assert rows["layers.up"] == (4, 12, 18)  # 2 (6 - 1) + 4 - 2 = 12
    assert up.weight.shape == (4, 1, 4, 4) and torch.allclose(up.weight[0, 0, 1, 1],
                                                              torch.tensor(0.75 * 0.75))
    assert model(torch.randn(3, 4, 11, 13)).shape == (3, 4)  # global pool (B, 4, 1, 1) -> (B, 4)


def test_param_blocks_become_optimizer_groups():
    model = create(str(EXAMPLES / "cifar10_full_train_test.prototxt"), input_size=(3, 32, 32))
    options = model.param_group_options()
    assert options["layers.ip1.weight"] == {"lr_scale": 1.0, "weight_decay_scale": 250.0}
    assert options["layers.conv1.bias"] == {"lr_scale": 2.0, "weight_decay_scale": 0.0}
    groups = parameter_groups(model, weight_decay=0.004)
    by_param = {id(p): g for g in groups for p in g["params"]}
    ip1 = by_param[id(model.layers.ip1.weight)]
    assert ip1["weight_decay"] == pytest.approx(1.0) and ip1.get("lr_scale", 1.0) == 1.0
    bias = by_param[id(model.layers.conv1.bias)]
    assert bias["weight_decay"] == 0.0 and bias["lr_scale"] == 2.0
    # one SGD step is Caffe's: w -= lr * lr_mult * (grad + weight_decay * decay_mult * w)
    config = TrainConfig(optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.004)
    optimizer = build_optimizer(groups, config)
    set_lr(optimizer, config.lr)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(4, 3, 32, 32)).logsumexp(1).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer.step()
    for name, param in model.named_parameters():
        lr_mult, decay_mult = options[name].values()
        want = before[name] - 0.01 * lr_mult * (grads[name] + 0.004 * decay_mult * before[name])
        assert torch.allclose(param, want, atol=1e-7), name
    # fine-tuning's discriminative rates multiply the net's own
    tuned = discriminative_groups(model, new_head=False, lr_pretrained=0.001, lr_new=0.01,
                                  weight_decay=0.004)
    bias = next(g for g in tuned if any(p is model.layers.conv1.bias for p in g["params"]))
    assert bias["lr_scale"] == pytest.approx(0.1 * 2.0) and bias["weight_decay"] == 0.0


def test_lr_mult_zero_freezes_and_num_classes_resizes(tmp_path):
    text = (EXAMPLES / "lenet.prototxt").read_text().replace(
        'name: "conv1"\n  type: "Convolution"\n  bottom: "data"\n  top: "conv1"\n'
        "  param { lr_mult: 1 }\n  param { lr_mult: 2 }",
        'name: "conv1"\n  type: "Convolution"\n  bottom: "data"\n  top: "conv1"\n'
        "  param { lr_mult: 0 }\n  param { lr_mult: 0 }")
    path = tmp_path / "frozen.prototxt"
    path.write_text(text)
    model = create(str(path), num_classes=3)
    assert not model.layers.conv1.weight.requires_grad and model.layers.conv2.weight.requires_grad
    assert model.get_classifier().out_features == 3 and model(torch.zeros(1, 1, 28, 28)).shape \
        == (1, 3)
    assert sum(p.numel() for p in model.parameters()) == LENET - fc(500, 10) + fc(500, 3)
    model.reset_classifier(5)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 5)


def test_feature_stages_of_a_caffe_net():
    model = create(str(EXAMPLES / "lenet.prototxt"), num_classes=3).eval()
    stages = model.feature_info()
    assert [(s["module"], s["channels"], s["size"]) for s in stages] == [
        ("layers.conv1", 20, (24, 24)), ("layers.pool1", 20, (12, 12)),
        ("layers.conv2", 50, (8, 8)), ("layers.pool2", 50, (4, 4))]
    maps = model.forward_features(torch.zeros(2, 1, 28, 28))
    assert [tuple(m.shape) for m in maps] == [(2, 20, 24, 24), (2, 20, 12, 12), (2, 50, 8, 8),
                                              (2, 50, 4, 4)]


def test_an_output_that_is_not_class_scores_is_an_error_when_training(tmp_path):
    path = tmp_path / "conv.prototxt"
    path.write_text('layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
                    "convolution_param { num_output: 96 kernel_size: 11 stride: 4 } }")
    assert create(str(path), input_size=(3, 227, 227))(torch.zeros(1, 3, 227, 227)).shape == \
        (1, 96, 55, 55)  # the lecture's single layer, as a summary shows it
    with pytest.raises(ModelError, match="output 'conv1' has shape 96x55x55, not 10 class"):
        create(str(path), input_size=(3, 227, 227), num_classes=10)


TINY = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1"
  param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "aux" type: "InnerProduct" bottom: "pool1" top: "aux"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "aux_loss" type: "SoftmaxWithLoss" bottom: "aux" bottom: "label" loss_weight: 0.3 }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" }
"""


def test_train_store_delete_load_and_resume(tmp_path):
    net = tmp_path / "tiny.prototxt"
    net.write_text(TINY)
    config = TrainConfig(model=str(net), data="digits", epochs=2, batch_size=64, lr=0.05,
                         out=str(tmp_path), name="tiny", progress=False, seed=3, threads=1)
    result = fit(config, stop_after_epochs=1, log=lambda *a, **k: None)
    run = result.run_dir
    assert (run / "model.prototxt").read_text() == TINY
    model, meta = load_model(run, which="last")
    assert meta["model"]["definition"] == {"file": str(net), "format": ".prototxt", "text": TINY}
    x = torch.rand(3, 1, 8, 8)
    expected = model(x)
    assert model.layers.bn1.scale_factor.item() > 0  # Caffe's running sums were trained
    net.unlink()  # the run never reads the file again
    assert torch.equal(load_model(run, which="last")[0](x), expected)
    resumed = fit(None, resume=run, log=lambda *a, **k: None)
    assert resumed.status == "completed" and resumed.test_acc > 0.5
