"""``--tensorboard``: the event file holds the same numbers as metrics.jsonl, and the filters."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.config import TrainConfig
from cnnlab.models import create
from cnnlab.train.fit import fit
from cnnlab.train.tensorboard import first_conv_filters


def test_tensorboard_scalars_equal_the_metrics_log(tmp_path):
    config = TrainConfig(data="digits", epochs=2, progress=False, out=str(tmp_path), name="tb",
                         tensorboard=True)
    run = fit(config, log=lambda *_: None).run_dir
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    for key in ("train_loss", "val_acc", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in records]
    assert [e.step for e in events.Images("filters/first_conv")] == [1, 2]


def test_first_conv_filters_are_scaled_per_filter():
    filters = first_conv_filters(create("lenet5"))
    assert tuple(filters.shape) == (6, 1, 5, 5)
    assert (filters.amin((1, 2, 3)) == 0).all() and (filters.amax((1, 2, 3)) == 1).all()
