"""airbench's pieces (Jordan 2024): whitening layer, identity init, bias-only BatchNorm, alternating
flip, reflect translate, lookahead, flip/translate test-time augmentation, exact resume."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.data.augment import alternating_flip_mask, parse_augment, parse_tta, tta_views
from cnnlab.data.pipeline import BatchSource, Preprocess
from cnnlab.errors import ConfigError
from cnnlab.models import create
from cnnlab.models.airbench import Whitening2x2, identity_conv
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.train.fit import fit
from cnnlab.train.lookahead import Lookahead
from cnnlab.train.loop import predict_logits
from cnnlab.train.optim import parameter_groups
from cnnlab.weightfile import model_state

fit_module = importlib.import_module("cnnlab.train.fit")


def correlated_images(n: int = 200, side: int = 10, seed: int = 0) -> torch.Tensor:
    """RGB images whose pixels are strongly correlated across channels and neighbours."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, side + 1, side + 1, generator=gen)
    smooth = (base[..., 1:, 1:] + base[..., :-1, :-1]) / 2  # neighbour correlation
    mix = torch.tensor([1.0, 0.8, 0.5]).view(1, 3, 1, 1)
    return smooth * mix + 0.3 * torch.randn(n, 3, side, side, generator=gen) + 0.2


def test_whitening_makes_patch_covariance_identity() -> None:
    images = correlated_images()
    layer = Whitening2x2(3, eps=1e-8)
    layer.init_from_data(images)
    out = layer(images)  # (N, 24, 9, 9)
    assert out.shape == (200, 24, 9, 9)
    rows = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    covariance = torch.cov(rows.T)
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=1e-3)
    assert torch.equal(out[:, 12:], -out[:, :12])  # both signs of every filter
    # the independent oracle: numpy's covariance of the raw 2x2 patches is whitened by W
    patches = np.stack([images[:, c, i:i + 9, j:j + 9].numpy() for c in range(3)
                        for i in range(2) for j in range(2)], -1).reshape(-1, 12)
    w = layer.weight[:12].reshape(12, 12).double().numpy()
    assert np.allclose(w @ np.cov(patches.T) @ w.T, np.eye(12), atol=1e-3)


def test_whitening_eps_shrinks_small_eigenvalues() -> None:
    images = correlated_images() * 1e-2  # patch variances ~1e-4: below the default 5e-4
    layer = Whitening2x2(3)
    layer.init_from_data(images)
    rows = layer(images)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    variances = torch.cov(rows.T).diagonal()
    assert (variances < 0.5).all()  # lambda / (lambda + 5e-4) < 1/2 for every lambda < 5e-4


def test_identity_init_bias_only_norm_and_bias_lr_scale() -> None:
    conv = identity_conv(4, 6)
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(conv(x)[:, :4], x)  # the first in_channels filters pass x through
    model = create("airbench94", num_classes=10, in_channels=3)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(not n.weight.requires_grad and n.bias.requires_grad for n in norms)
    assert not any(p is model.whiten.weight for p in model.parameters())  # a frozen buffer
    groups = parameter_groups(model, 5e-4, bias_lr_scale=64)
    assert groups[1]["lr_scale"] == 64 and groups[1]["weight_decay"] == 5e-4 / 64
    assert sum(p.numel() for p in groups[1]["params"]) == sum(n.bias.numel() for n in norms)
    assert "lr_scale" not in groups[0] and groups[0]["weight_decay"] == 5e-4
    assert "lr_scale" not in parameter_groups(model, 5e-4)[1]  # the default: unchanged


def test_altflip_flips_exactly_the_masked_images_alternating_per_epoch() -> None:
    images = torch.randint(0, 256, (40, 1, 4, 5), dtype=torch.uint8)
    prep = Preprocess(1, (4, 5), "none", [0.0], [1.0], 0.0)
    source = BatchSource(images, torch.arange(40), prep, 16, parse_augment("altflip"))
    flipped = {}
    for epoch in range(3):
        for x, y in source.batches(seed=5, epoch=epoch, shuffle=True):
            plain = images[y].float() / 255  # labels are the indices here
            mask = alternating_flip_mask(y, epoch)
            expect = torch.where(mask[:, None, None, None], plain.flip(-1), plain)
            assert torch.equal(x, expect)
            flipped.update({(epoch, int(i)): bool(m) for i, m in zip(y, mask, strict=True)})
    for i in range(40):  # every image alternates between its two views
        assert flipped[0, i] != flipped[1, i] and flipped[0, i] == flipped[2, i]
    assert 12 <= sum(flipped[0, i] for i in range(40)) <= 28  # about half in epoch 0
    with pytest.raises(ConfigError, match="takes no options"):
        parse_augment("altflip:2")


def test_translate_reflect_pads_and_shifts_by_at_most_the_padding() -> None:
    x = torch.rand(64, 2, 7, 7)
    out = parse_augment("translate:2")(x, torch.Generator().manual_seed(1))
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")  # oracle
    shifts = set()
    for b in range(64):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if np.array_equal(out[b].numpy(), padded[b, :, dy:dy + 7, dx:dx + 7])]
        assert hits, f"sample {b} is not a reflect-padded shift"
        shifts.add(hits[0])
    assert len(shifts) > 10  # independent offsets per sample
    assert str(parse_augment("altflip,translate:2")) == "altflip,translate:2"


def test_tta_averages_the_six_airbench_views() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 3))  # not flip/shift invariant
    images = torch.randint(0, 256, (5, 2, 6, 6), dtype=torch.uint8)
    prep = Preprocess(2, (6, 6), "none", [0.0, 0.0], [1.0, 1.0], 0.0)
    source = BatchSource(images, torch.zeros(5, dtype=torch.int64), prep, 2)
    got = predict_logits(model, source, tta="flip,translate")
    x = images.float().numpy() / 255
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    views = [(0.5, x), (0.25, padded[..., :6, :6]), (0.25, padded[..., 2:, 2:])]
    views += [(w, v[..., ::-1]) for w, v in views]
    with torch.no_grad():
        expect = sum(w / 2 * model(torch.tensor(v.copy())) for w, v in views)
    assert torch.allclose(got, expect, atol=1e-5)
    assert torch.equal(predict_logits(model, source), predict_logits(model, source, tta=""))
    assert [w for w, _ in tta_views(torch.zeros(1, 1, 4, 4), "translate")] == [0.5, 0.25, 0.25]
    with pytest.raises(ConfigError, match="did you mean"):
        parse_tta("flips")


def test_lookahead_update_formula_and_schedule() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    slow = Lookahead(model, decay=0.8, every=2, total_steps=4)
    with torch.no_grad():
        model.weight.fill_(3.0)
    slow.update(1)  # not an update step: nothing changes
    assert model.weight.item() == 3.0
    slow.update(2)  # decay 0.8 * (2/4)^3 = 0.1: slow = 0.1 * 1 + 0.9 * 3 = 2.8, fast <- slow
    assert model.weight.item() == pytest.approx(2.8) and slow.slow["weight"].item() == \
        pytest.approx(2.8)
    with torch.no_grad():
        model.weight.fill_(5.0)
    slow.update(4)  # decay 0.8: 0.8 * 2.8 + 0.2 * 5 = 3.24
    assert model.weight.item() == pytest.approx(3.24)


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(model="lenet5", data="digits", epochs=2, batch_size=64, lr=0.05,
                  out=str(tmp_path), progress=False, seed=3, augment="altflip,translate:2",
                  lookahead=0.7, lookahead_every=3, bias_lr_scale=4, tta="flip")
    values.update(overrides)
    return TrainConfig(**values)


def weights(run_dir):
    tensors, _ = read_checkpoint(run_dir / "last.safetensors")
    return model_state(tensors), tensors


def test_resume_mid_epoch_with_lookahead_is_exact(tmp_path, monkeypatch) -> None:
    config = tiny_config(tmp_path)
    straight = fit(dataclasses.replace(config, name="straight"), log=lambda *_: None)

    class StopAfterSevenSteps(fit_module.StopFlag):  # mid-epoch, between lookahead updates
        checks = 0

        def __bool__(self):
            StopAfterSevenSteps.checks += 1
            if StopAfterSevenSteps.checks == 8:
                self.signal = 15
            return self.signal is not None

    monkeypatch.setattr(fit_module, "StopFlag", StopAfterSevenSteps)
    stopped = fit(dataclasses.replace(config, name="stopped"), log=lambda *_: None)
    assert stopped.status == "interrupted"
    monkeypatch.undo()
    resumed = fit(None, resume=stopped.run_dir, log=lambda *_: None)
    (a, a_all), (b, b_all) = weights(straight.run_dir), weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    slow = [k for k in a_all if k.startswith("lookahead.")]
    assert slow and all(torch.equal(a_all[k], b_all[k]) for k in slow)
    assert resumed.test_acc == straight.test_acc


def test_config_rejects_bad_fast_cifar_options() -> None:
    for values, flag in [({"lookahead": 1.0}, "--lookahead"), ({"lookahead_every": 0},
                         "--lookahead-every"), ({"bias_lr_scale": 0}, "--bias-lr-scale"),
                         ({"tta": "flip,rotate"}, "--tta")]:
        with pytest.raises(ConfigError, match=flag):
            TrainConfig(**values).validate()


@pytest.mark.slow
def test_airbench_trains_on_digits_with_whitening_from_data(tmp_path) -> None:
    from cnnlab.evaluate import evaluate_runs

    config = tiny_config(tmp_path, model="airbench94", image_size=16, epochs=2, batch_size=128,
                         lr=1.0, momentum=0.85, nesterov=True, schedule="onecycle",
                         label_smoothing=0.2, bias_lr_scale=64, lookahead=0.77,
                         lookahead_every=5, tta="flip,translate", channels_last=True,
                         name="ab")
    result = fit(config, log=lambda *_: None)
    assert result.test_acc > 0.8  # 360 real test scans; chance is 0.10
    state, _ = weights(result.run_dir)
    assert state["whiten.weight"].abs().sum() > 0  # fitted from the data, then saved
    report = evaluate_runs([str(result.run_dir)])  # the run's own TTA by default
    assert report.main.top1 == pytest.approx(result.test_acc)
    plain = evaluate_runs([str(result.run_dir)], tta="none")
    assert plain.main.top1 > 0.8


def test_widths_option_builds_the_body_at_other_widths_and_rejects_bad_ones() -> None:
    from cnnlab.errors import ModelError

    model = create("airbench94", num_classes=10, in_channels=1, widths=[32, 64, 128])
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert convs[0].in_channels == 8  # 1 grey channel -> 2 * 1 * 2 * 2 whitening filters
    assert model.fc.in_features == 128
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    default = sum(p.numel() for p in create("airbench94").parameters())
    assert default == 1_972_480  # the table in the module docstring (widths 64, 256, 256)
    for bad in ([64, 256], [64, 0, 256], "64,256,256", [64.0, 256, 256], [True, 2, 3]):
        with pytest.raises(ModelError, match="airbench94 widths must be three positive"):
            create("airbench94", widths=bad)
