"""``cnnlab lr-find`` (Smith 2015's range test): the sweep, its suggestion, and that it leaves
nothing behind: no run directory, the weights, optimizer state and RNG as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.cli.main import main
from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import make_preprocess, to_batch_source
from cnnlab.tasks import get_task
from cnnlab.train.lrfind import range_test, suggest


def toy_source():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(256) % 2
    images = (torch.rand(256, 1, 4, 4, generator=generator) * 60).to(torch.uint8)
    images[labels == 1, :, :2] += 150  # class 1 is bright on top: learnable
    data = ImageSet(images, labels, ["a", "b"], name="toy")
    return to_batch_source(data, make_preprocess(data, 1, (4, 4), "auto"), batch_size=32,
                           device=torch.device("cpu"))


def test_the_range_test_sweeps_and_puts_everything_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    result = range_test(model, toy_source(), optimizer, get_task("classify"), lr_min=1e-4,
                        lr_max=100.0, steps=60)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert optimizer.state_dict()["state"] == {}  # no momentum left behind
    assert torch.equal(torch.get_rng_state(), rng)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:], strict=False)]
    assert ratios == pytest.approx([(100 / 1e-4) ** (1 / 59)] * len(ratios))  # exponential
    assert min(result.losses) < 0.5 * result.losses[0]  # it learned along the way
    assert 1e-4 < result.suggestion < result.min_loss_lr  # steepest fall before the minimum


def test_the_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    assert suggest(lrs, [2.0, 1.9, 1.0, 0.9, 5.0]) == (1e-2, 1.0)
    assert suggest(lrs[:2], [2.0, 1.0]) == (None, None)


def test_lr_find_writes_only_its_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["lr-find", "--steps", "30", "--lr-min", "1e-4", "--threads", "1",
                 "--out", "lr.png"]) == 0
    out = capsys.readouterr().out
    assert "lr-find: lenet5 on digits, sgd, batch 64: 30 steps" in out
    assert "suggested --lr" in out
    written = sorted(p.name for p in tmp_path.iterdir())  # cnnlab's list of what it wrote too
    assert written == [".cnnlab-outputs.json", "lr.png"]  # no runs/ folder
