"""Transfer learning: new head, frozen layers and frozen batch-norm statistics, two LRs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.runs.reader import load_model
from cnnlab.train.finetune import (
    FrozenBatchNorm,
    Source,
    finetune,
    freeze_layers,
    frozen_names,
    make_prepare,
    target_config,
)
from cnnlab.train.fit import fit
from cnnlab.train.optim import build_optimizer, set_lr
from cnnlab.weightfile import model_state

SPEC = "c3x8p1-bn-relu-p2-c3x8p1-bn-relu-gap"  # features.0 conv, .1 bn, .4 conv, .5 bn


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    config = TrainConfig(model=SPEC, data="digits", epochs=1, lr=0.1, progress=False, seed=0,
                         out=str(tmp_path_factory.mktemp("runs")), name="source")
    return fit(config, log=lambda *_: None).run_dir


def weights(run_dir) -> dict[str, torch.Tensor]:
    return model_state(read_checkpoint(run_dir / "best.safetensors")[0])


def test_frozen_layers_keep_weights_and_batch_norm_statistics(source, tmp_path):
    lines = []
    result = finetune(source, data="xo", freeze="features.1", epochs=1, out=str(tmp_path),
                      progress=False, log=lines.append)
    assert lines[0] == (f"notice: xo has 2 classes, {source / 'best.safetensors'} was trained "
                        "on 10: its classifier is replaced by a new, randomly initialised one "
                        "for 2 classes (trained at --lr-new 0.01)")
    before, after = weights(source), weights(result.run_dir)
    for key in ("features.0.weight", "features.0.bias", "features.1.weight",
                "features.1.running_mean", "features.1.running_var"):
        assert torch.equal(before[key], after[key]), key
    for key in ("features.4.weight", "features.5.running_mean"):  # not frozen: trained
        assert not torch.equal(before[key], after[key]), key
    assert after["classifier.1.weight"].shape == (2, 8)  # X's and O's: a new 2-class head
    settings = json.loads((result.run_dir / "finetune.json").read_text())
    assert settings["new_head"] and settings["freeze"] == "features.1"
    model, meta = load_model(result.run_dir)  # a normal run: reloads as the plain spec model
    assert meta["classes"] == ["O", "X"] and isinstance(model.features[1], nn.BatchNorm2d)


def test_requires_grad_alone_does_not_freeze_batch_norm_statistics():
    bn = nn.BatchNorm2d(3).requires_grad_(False)  # the classic trap
    frozen = FrozenBatchNorm(nn.BatchNorm2d(3))
    x = torch.randn(8, 3, 4, 4) + 5
    bn.train()(x)
    frozen.train()(x)
    assert bn.running_mean.abs().sum() > 0  # moved towards 5 despite requires_grad=False
    assert frozen.running_mean.abs().sum() == 0
    assert torch.allclose(frozen(x), nn.BatchNorm2d(3).eval()(x))


def test_discriminative_learning_rates(source):
    src = Source.load(source)
    config = target_config(src, "xo", lr=0.01)
    from cnnlab.models import create

    model = create(SPEC, num_classes=2, in_channels=1, input_size=(1, 8, 8))
    prepare = make_prepare(src, config, freeze=None, new_head=True, lr_pretrained=0.001,
                           lr_new=0.01)
    optimizer = build_optimizer(prepare(model), config)
    set_lr(optimizer, 0.01)  # the schedule's peak
    head = {id(p) for p in model.get_classifier().parameters()}
    rates = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(rates) == sum(1 for _ in model.parameters())
    assert all(rates[i] == pytest.approx(0.01 if i in head else 0.001) for i in rates)
    loaded = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier")}
    assert all(torch.equal(v, src.state[k]) for k, v in loaded.items())


def test_same_label_set_keeps_the_head(source):
    src = Source.load(source)
    from cnnlab.models import create

    model = create(SPEC, num_classes=10, in_channels=1, input_size=(1, 8, 8))
    make_prepare(src, target_config(src, "digits"), freeze="all", new_head=False,
                 lr_pretrained=0.001, lr_new=0.01)(model)
    assert torch.equal(model.get_classifier().weight, src.state["classifier.1.weight"])
    assert [n for n, p in model.named_parameters() if p.requires_grad] == \
        ["classifier.1.weight", "classifier.1.bias"]
    assert isinstance(model.features[5], FrozenBatchNorm)


def test_feature_mode_trains_only_the_head(source, tmp_path):
    result = finetune(source, data="xo", mode="features", epochs=3, out=str(tmp_path),
                      progress=False, log=lambda *_: None)
    before, after = weights(source), weights(result.run_dir)
    assert all(torch.equal(before[k], after[k]) for k in after if not k.startswith("classifier"))
    assert result.test_acc is not None and 0 <= result.test_acc <= 1
    assert (result.run_dir / "metrics.jsonl").read_text().count("\n") == 3


def test_freeze_errors_name_the_layers(source):
    from cnnlab.models import create

    model = create(SPEC, num_classes=2, in_channels=1, input_size=(1, 8, 8))
    with pytest.raises(ConfigError, match="features.4"):
        frozen_names(model, "features.44")
    names = frozen_names(model, "features.4")
    assert names == ["features.0.weight", "features.0.bias", "features.1.weight",
                     "features.1.bias", "features.4.weight", "features.4.bias"]
    freeze_layers(model, names)
    assert isinstance(model.features[1], FrozenBatchNorm)
    assert isinstance(model.features[5], nn.BatchNorm2d)  # its parameters still train
    with pytest.raises(ConfigError, match="finetune"):
        finetune(source, data="xo", mode="fine")


def test_feature_mode_trains_a_kept_head_at_lr_new(source, tmp_path):
    # digits -> digits: same label set, the head is kept, but it is what features mode learns
    result = finetune(source, data="digits", mode="features", epochs=1, schedule="constant",
                      out=str(tmp_path), progress=False, log=lambda *_: None)
    settings = json.loads((result.run_dir / "finetune.json").read_text())
    assert not settings["new_head"]
    record = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert record["lr"] == pytest.approx(0.01)  # lr_new, not lr_pretrained's 0.001


def test_batch_norm_without_affine_is_frozen_only_inside_the_range():
    def net():
        return nn.Sequential(nn.BatchNorm2d(1, affine=False), nn.Conv2d(1, 2, 3),
                             nn.BatchNorm2d(2, affine=False), nn.Conv2d(2, 2, 3))
    model = net()
    freeze_layers(model, [])  # nothing frozen: all([]) must not freeze the affine-free norms
    assert all(isinstance(model[i], nn.BatchNorm2d) for i in (0, 2))
    model = net()
    freeze_layers(model, ["1.weight", "1.bias"])  # frozen up to the first conv
    assert isinstance(model[0], FrozenBatchNorm) and isinstance(model[2], nn.BatchNorm2d)


def test_per_class_subset_keeps_n_of_each_class():
    from cnnlab.config import TrainConfig
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import per_class_subset
    from cnnlab.train.fit import load_splits

    full = load_dataset("digits", "train")
    small = per_class_subset(full, 7, seed=0)
    assert torch.bincount(small.labels).tolist() == [7] * 10
    assert torch.equal(small.images[0], full.images[int(small_index(full, small))])
    train, val, test = load_splits(TrainConfig(data="digits", train_per_class=3, val_fraction=0))
    assert torch.bincount(train.labels).tolist() == [3] * 10 and val is None
    assert len(test.labels) == 360  # the test split is untouched


def small_index(full, small) -> int:
    """Where the subset's first image sits in the full set (it must be one of its images)."""
    matches = (full.images == small.images[0]).flatten(1).all(1).nonzero()
    assert len(matches) >= 1
    return matches[0, 0]


def test_scratch_mode_trains_on_the_subset_from_random_weights(source, tmp_path):
    result = finetune(source, data="digits", mode="scratch", limit_per_class=10, epochs=1,
                      out=str(tmp_path), progress=False, log=lambda *_: None)
    record = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert record["step"] == 2  # 90 training images (100 less 10 held out) / batch 64
    before, after = weights(source), weights(result.run_dir)
    assert not torch.equal(before["features.0.weight"], after["features.0.weight"])
    with pytest.raises(ConfigError, match="limit-per-class"):
        finetune(source, data="digits", limit_per_class=0)


def test_bad_freeze_fails_before_the_transfer_line(source):
    lines = []
    with pytest.raises(ConfigError, match="features.44"):
        finetune(source, data="xo", freeze="features.44", log=lines.append)
    assert lines == []
