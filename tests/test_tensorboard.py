"""``--tensorboard``: the event file holds the same numbers as metrics.jsonl, and the filters
image is exactly the (magnified) filter grid of ``cnnlab visualize filters``."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.models import create
from cnnlab.runs import open_run
from cnnlab.train import tensorboard
from cnnlab.train.fit import fit
from cnnlab.train.tensorboard import TensorBoardLog, filter_image


def test_tensorboard_scalars_and_filters_equal_the_run(tmp_path):
    config = TrainConfig(data="digits", epochs=2, progress=False, out=str(tmp_path), name="tb",
                         tensorboard=True)
    run = fit(config, log=lambda *_: None).run_dir
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    for key in ("train_loss", "val_acc", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in records]
    images = events.Images("filters/first_conv")
    assert [e.step for e in images] == [1, 2]
    last = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"))
    weight = open_run(run, checkpoint="last").model.features[0].weight.detach()  # C1 (6, 1, 5, 5)
    assert last.shape[0] > 40 and last.shape[1] > 40  # magnified, not 5-pixel tiles
    # tile i of the 3x2 grid (pad 2, 9x magnified 5x5 kernels): weights min-max scaled alone
    for i in range(6):
        row, col = divmod(i, 3)
        top, left = 2 + row * 47, 2 + col * 47
        w = weight[i, 0]
        expected = ((w - w.min()) / (w.max() - w.min()) * 255).round().numpy()
        tile = last[top:top + 45, left:left + 45, 0].astype(float)
        assert np.abs(tile[::9, ::9] - expected).max() <= 1
        assert (tile == np.repeat(np.repeat(tile[::9, ::9], 9, 0), 9, 1)).all()  # nearest
    assert not np.array_equal(
        np.asarray(Image.open(io.BytesIO(images[0].encoded_image_string)).convert("RGB")), last)


def test_filter_image_is_the_first_conv_grid_magnified():
    image = filter_image(create("lenet5"))
    assert image.dtype == np.uint8 and image.shape == (2 + 2 * 47, 2 + 3 * 47, 3)


def test_missing_tensorboard_is_a_one_line_config_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match=r"pip install .cnnlab\[tensorboard\]."):
        TensorBoardLog.check_available()
    with pytest.raises(ConfigError, match=r"pip install .cnnlab\[tensorboard\]."):
        tensorboard.TensorBoardLog("unused")


def test_fit_without_tensorboard_fails_before_making_a_run_directory(monkeypatch, tmp_path):
    from cnnlab.config import TrainConfig
    from cnnlab.train.fit import fit

    def missing():
        raise ConfigError("--tensorboard needs tensorboard: pip install 'cnnlab[tensorboard]'")

    monkeypatch.setattr(tensorboard, "tensorboard_writer_class", missing)
    config = TrainConfig(data="digits", epochs=1, tensorboard=True, out=str(tmp_path),
                         progress=False)
    with pytest.raises(ConfigError, match=r"pip install .cnnlab\[tensorboard\]."):
        fit(config, log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []  # nothing trained, no half-made run directory
