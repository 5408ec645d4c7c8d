"""Gradient flow (lecture 002): vanishing with sigmoid, kept alive by ReLU+He init and shortcuts."""

from __future__ import annotations

import pytest
import torch

from cnnlab.analysis.gradients import (
    depth_sweep,
    digits_batch,
    gradient_profile,
    layer_gradient_norms,
    model_batch,
    toy_net,
)
from cnnlab.models.catalog import count_parameters


def test_bias_gradient_is_the_slides_product_of_factors():
    # dC/db1 = s'(z1) w2 s'(z2) w3 s'(z3) w4 s'(z4) dC/da4 for a chain of 4 sigmoid units
    torch.manual_seed(0)
    net = toy_net("plain", 4, activation="sigmoid", in_features=1, width=1, num_classes=1)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)][:4]
    x = torch.tensor([[0.3]])
    a, sig_primes = x, []
    with torch.no_grad():
        for layer in linears:
            z = layer(a)
            a = torch.sigmoid(z)
            sig_primes.append(float(a * (1 - a)))
    out = net[-1]
    dc_da4 = float(out.weight.detach())  # C = output itself (its derivative wrt a4 is w5)
    expected = sig_primes[0] * dc_da4
    for w, s in zip([float(m.weight.detach()) for m in linears[1:]], sig_primes[1:], strict=True):
        expected *= w * s
    net.zero_grad()
    net(x).sum().backward()
    assert torch.isclose(linears[0].bias.grad, torch.tensor([expected]), rtol=1e-5)
    assert max(sig_primes) <= 0.25  # max of the sigmoid's derivative is 1/4 at 0


def test_sigmoid_gradients_vanish_with_depth_unlike_relu_and_residual():
    batch = digits_batch(128)
    rows = depth_sweep([2, 8], activations=("sigmoid", "relu"), batch=batch)
    first = {(r["kind"], r["activation"], r["depth"]): r["first"] for r in rows}
    assert first[("plain", "sigmoid", 8)] < 1e-3 * first[("plain", "sigmoid", 2)]
    assert first[("plain", "sigmoid", 8)] < 1e-2 * first[("plain", "relu", 8)]
    assert first[("plain", "sigmoid", 8)] < 1e-3 * first[("residual", "sigmoid", 8)]
    deep = [r for r in rows if r["depth"] == 8 and r["kind"] == "plain"]
    assert deep[0]["activation"] == "sigmoid" and deep[0]["ratio"] < 1e-3  # first << last


def test_he_init_keeps_deep_relu_gradients_at_scale():
    rows = depth_sweep([16], kinds=("plain",), activations=("relu",), init="he",
                       batch=digits_batch(128))
    assert 0.1 < rows[0]["ratio"] < 10


def test_residual_and_plain_toy_nets_have_the_same_parameters():
    assert count_parameters(toy_net("plain", 6)) == count_parameters(toy_net("residual", 6))


@pytest.mark.slow
def test_profile_of_plain20_and_resnet20_over_first_steps():
    for name in ("plain20", "resnet20"):
        model, x, y = model_batch(name, "digits", n=32)
        rows = gradient_profile(model, x, y, steps=1, batch_size=16)
        assert {r["step"] for r in rows} == {0, 1}
        at_init = [r for r in rows if r["step"] == 0]
        assert len(at_init) == 20  # 19 convolutions + fc: the "20" in the name
        assert at_init[0]["layer"] == "conv1" and at_init[-1]["layer"] == "fc"
        assert all(torch.isfinite(torch.tensor(r["grad_norm"])) and r["grad_norm"] > 0
                   for r in rows)


def test_layer_gradient_norms_match_autograd():
    model = toy_net("plain", 2, activation="relu")
    x, y = digits_batch(32)
    norms = layer_gradient_norms(model, x.flatten(1), y)
    assert list(norms) == ["0", "2", "4"]
    assert norms["4"] == float(model[4].weight.grad.norm())


def test_sweep_report_writes_every_layers_norm(tmp_path):
    import csv

    from cnnlab.analysis.gradients import sweep_report

    rows = sweep_report([1, 3], tmp_path, kinds=("plain",), activations=("sigmoid",))
    with open(tmp_path / "gradient-depths-layers.csv") as handle:
        layers = list(csv.DictReader(handle))
    deep = [r for r in layers if r["depth"] == "3"]
    assert len(deep) == 4  # 3 hidden layers + the output layer
    assert [int(r["layer_index"]) for r in deep] == [1, 2, 3, 4]
    assert float(deep[0]["grad_norm"]) == pytest.approx(rows[1]["first"], rel=1e-6)
    assert float(deep[-1]["grad_norm"]) == pytest.approx(rows[1]["last"], rel=1e-6)
    with open(tmp_path / "gradient-depths.csv") as handle:
        assert "layer_norms" not in handle.readline()
