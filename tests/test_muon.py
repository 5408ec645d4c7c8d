"""Muon (Jordan et al. 2024): orthogonalised updates for conv filters, SGD for the rest."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from cnnlab.cli.main import main
from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.models.registry import create
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.train.fit import fit
from cnnlab.train.optim import Muon, build_optimizer, orthogonalize, parameter_groups
from cnnlab.weightfile import model_state


def polar_factor(matrix: torch.Tensor) -> torch.Tensor:
    """``U V^T`` from the SVD: what the Newton-Schulz iteration approximates."""
    u, _, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return (u @ vh).float()


@pytest.mark.parametrize("shape", [(32, 288), (288, 32), (64, 64)])
def test_orthogonalize_approximates_the_polar_factor(shape):
    torch.manual_seed(0)
    u, _, vh = torch.linalg.svd(torch.randn(shape), full_matrices=False)
    matrix = u @ torch.diag(torch.logspace(0, -1, min(shape))) @ vh  # condition number 10
    result = orthogonalize(matrix)
    assert result.shape == matrix.shape and result.dtype == matrix.dtype
    singular = torch.linalg.svdvals(result.double())
    # Muon's quintic trades exactness for speed: singular values land near 1, not on it.
    assert singular.min() > 0.6 and singular.max() < 1.25, singular
    cosine = (result * polar_factor(matrix)).sum() / (result.norm() * polar_factor(matrix).norm())
    assert cosine > 0.97
    # the input's scale does not matter (normalised first; a power of 2 scales bf16 exactly)
    torch.testing.assert_close(orthogonalize(1024 * matrix), result, atol=1e-6, rtol=0)


def test_non_muon_groups_step_exactly_like_torch_sgd():
    torch.manual_seed(1)
    ours, theirs = nn.Linear(5, 3), nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    groups = lambda m: [{"params": [m.weight], "weight_decay": 0.01},  # noqa: E731
                        {"params": [m.bias], "weight_decay": 0.0}]
    mine = Muon(groups(ours), lr=0.1, momentum=0.85, nesterov=True)
    reference = torch.optim.SGD(groups(theirs), lr=0.1, momentum=0.85, nesterov=True)
    for _ in range(4):
        x = torch.randn(8, 5)
        for model, optimizer in ((ours, mine), (theirs, reference)):
            optimizer.zero_grad()
            model(x).square().sum().backward()
            optimizer.step()
        torch.testing.assert_close(ours.weight, theirs.weight, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.bias, theirs.bias, rtol=0, atol=1e-6)


def test_muon_step_moves_filters_along_the_orthogonalised_nesterov_momentum():
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 8, 3, bias=False)
    optimizer = Muon([{"params": [conv.weight], "muon": True, "normalize": True,
                       "momentum": 0.6}], lr=0.05, momentum=0.0, nesterov=True)
    grads = [torch.randn_like(conv.weight) for _ in range(2)]
    buffer = torch.zeros_like(conv.weight)
    for grad in grads:
        before = conv.weight.detach().clone()
        conv.weight.grad = grad.clone()
        optimizer.step()
        buffer = 0.6 * buffer + grad if buffer.any() else grad.clone()
        direction = (grad + 0.6 * buffer).reshape(8, -1)  # Nesterov
        normalised = before * (8 ** 0.5 / before.norm())  # filters rescaled to sqrt(out)
        step = (normalised - conv.weight.detach()).reshape(8, -1) / 0.05
        cosine = (step * polar_factor(direction)).sum() / (step.norm() * 8 ** 0.5)
        assert cosine > 0.97  # the step is lr * (approximately) U V^T of the direction
        assert step.norm().item() == pytest.approx(8 ** 0.5, rel=0.2)  # 8 singular values ~ 1
    assert conv.weight.detach().norm().item() == pytest.approx(8 ** 0.5, rel=0.05)


def test_build_optimizer_gives_conv_filters_to_muon_and_keeps_other_scales():
    model = create("airbench94", num_classes=10, widths=[8, 16, 16])
    config = TrainConfig(optimizer="muon", lr=0.4, muon_lr=0.12, muon_momentum=0.6,
                         nesterov=True, weight_decay=2e-3, bias_lr_scale=64)
    optimizer = build_optimizer(parameter_groups(model, 2e-3, 64), config)
    muon = [g for g in optimizer.param_groups if g["muon"]]
    sgd = [g for g in optimizer.param_groups if not g["muon"]]
    filters = {id(p) for p in model.parameters() if p.dim() == 4 and p.requires_grad}
    assert {id(p) for g in muon for p in g["params"]} == filters and len(filters) == 6
    assert all(g["lr_scale"] == pytest.approx(0.12 / 0.4) and g["momentum"] == 0.6
               and g["weight_decay"] == 0 for g in muon)
    head = next(g for g in sgd if any(p is model.fc.weight for p in g["params"]))
    assert head["weight_decay"] == 2e-3 and head.get("lr_scale", 1.0) == 1.0
    biases = next(g for g in sgd if g is not head)
    assert biases["lr_scale"] == 64 and biases["weight_decay"] == pytest.approx(2e-3 / 64)
    assert all(p.dim() == 1 for p in biases["params"])


def test_muon_trains_lenet5_and_resumes_exactly(tmp_path):
    config = TrainConfig(model="lenet5", data="digits", epochs=4, batch_size=64,
                         optimizer="muon", lr=0.05, momentum=0.9, nesterov=True,
                         muon_lr=0.02, schedule="onecycle", out=str(tmp_path),
                         progress=False, seed=3)
    straight = fit(dataclasses.replace(config, name="straight"), log=lambda *_: None)
    assert straight.test_acc > 0.85  # 360 real test scans; chance is 0.10
    part = fit(dataclasses.replace(config, name="split"), stop_after_epochs=2,
               log=lambda *_: None)
    resumed = fit(None, resume=part.run_dir, log=lambda *_: None)
    a = model_state(read_checkpoint(straight.run_dir / "last.safetensors")[0])
    b = model_state(read_checkpoint(resumed.run_dir / "last.safetensors")[0])
    assert all(torch.equal(a[k], b[k]) for k in a)  # momentum buffers saved and restored


@pytest.mark.parametrize("values, flag", [({"muon_lr": 0.0}, "--muon-lr"),
                                          ({"muon_momentum": 1.0}, "--muon-momentum")])
def test_bad_muon_settings_name_their_flag(values, flag):
    with pytest.raises(ConfigError, match=flag):
        TrainConfig(optimizer="muon", **values).validate()


def test_cli_takes_the_muon_flags(tmp_path, capsys):
    code = main(["train", "--model", "lenet5", "--data", "digits", "--epochs", "1",
                 "--optimizer", "muon", "--muon-lr", "0.02", "--muon-momentum", "0.5",
                 "--muon-normalize", "--out", str(tmp_path), "--name", "m", "--no-progress"])
    assert code == 0
    saved = (tmp_path / "m" / "config.yaml").read_text()
    assert "optimizer: muon" in saved and "muon_lr: 0.02" in saved
    assert "muon_momentum: 0.5" in saved and "muon_normalize: true" in saved
    assert main(["train", "--optimizer", "muon", "--muon-lr", "-1", "--out",
                 str(tmp_path)]) == 2
    assert "--muon-lr must be > 0" in capsys.readouterr().err
