"""``cnnlab visualize segmentation`` and the report's segmentation section: image / truth /
prediction side by side for a ``--task segment`` run, the prediction being the argmax of the
model's per-pixel output, colour-mapped by :func:`cnnlab.viz.segmentation.overlay_mask`."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.config import TrainConfig
from cnnlab.data.datasets import load_dataset
from cnnlab.data.pipeline import Preprocess
from cnnlab.errors import ConfigError
from cnnlab.runs import open_run
from cnnlab.runs.reader import load_model
from cnnlab.tasks import Segment
from cnnlab.train.fit import fit
from cnnlab.viz.report import run_report
from cnnlab.viz.segmentation import overlay_mask, run_segmentation_grid
from cnnlab.viz.visualize import visualize

DATA = "digit-scenes:n=40"
SCALE = 3  # the panel's magnification


@pytest.fixture(scope="module")
def segment_run(tmp_path_factory):
    """A 1-epoch FCN on 40 digit scenes (about 3 s on one core)."""
    out = tmp_path_factory.mktemp("runs")
    result = fit(TrainConfig(task="segment", model="fcn", data=DATA, epochs=1, batch_size=8,
                             optimizer="adam", lr=0.003, out=str(out), progress=False, seed=0,
                             model_options={"widths": [8, 16]}), log=lambda *_: None)
    return result.run_dir


def tile(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ``(H, W, 3)`` pixels of one tile, un-magnified (every SCALE-th pixel)."""
    return np.asarray(image.convert("RGB").crop(box))[::SCALE, ::SCALE]


def as_uint8(rgb: torch.Tensor) -> np.ndarray:
    """Float ``(3, H, W)`` in [0, 1] -> uint8 ``(H, W, 3)`` as the grid renders it."""
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_panel_has_three_columns_and_the_argmax_prediction(segment_run, tmp_path):
    count = 3
    assert main(["visualize", "segmentation", str(segment_run), "--count", str(count),
                 "--out", str(tmp_path)]) == 0
    panel = Image.open(tmp_path / "segmentation-test.png")
    grid = run_segmentation_grid(open_run(segment_run), "test", count)
    assert (grid.layout.columns, grid.layout.rows, grid.layout.count) == (3, count, 3 * count)
    framed = grid.framed()  # with its class legend below, no title
    assert grid.legend is not None and framed.height > grid.image.height
    top = panel.height - framed.height  # the title visualize puts above
    assert top > 0 and panel.width >= grid.image.width
    # independent reference: the run's preprocessing by hand, the model, argmax, colours
    model, meta = load_model(segment_run)
    data = load_dataset(DATA, "test")
    x = Preprocess.from_dict(meta["preprocess"]).normalize(data.images[:count].float() / 255)
    with torch.no_grad():
        pred = model(x).argmax(1)  # (N, H, W)
    k = len(meta["classes"])  # background + 10 digits
    assert k == 11
    for i in range(count):
        grey = data.images[i].float() / 255  # (1, H, W)
        expected = [grey.expand(3, -1, -1), overlay_mask(grey, data.masks[i], num_classes=k),
                    overlay_mask(grey, pred[i], num_classes=k)]
        for column, rgb in enumerate(expected):
            left, upper, right, lower = grid.layout.box(3 * i + column)
            got = tile(panel, (left, upper + top, right, lower + top))
            assert np.array_equal(got, as_uint8(rgb)), (i, column)
    assert (pred[:count] > 0).any() or (data.masks[:count] > 0).any()


def test_count_sets_the_rows_and_a_classify_run_is_refused(segment_run, tmp_path):
    paths = visualize("segmentation", segment_run, out=tmp_path, count=2)
    assert [p.name for p in paths] == ["segmentation-test.png"]
    assert run_segmentation_grid(open_run(segment_run), "test", 2).layout.rows == 2
    classify = fit(TrainConfig(model="lenet1", data="digits", epochs=1, batch_size=64,
                               out=str(tmp_path), progress=False, seed=0), log=lambda *_: None)
    with pytest.raises(ConfigError, match="--task segment"):
        visualize("segmentation", classify.run_dir, out=tmp_path)


def test_report_of_a_segment_run_has_the_segmentation_section(segment_run, tmp_path):
    page = run_report(segment_run, out=tmp_path / "report.html").read_text()
    sections = re.findall(r'<section id="([a-z]+)"', page)
    assert tuple(sections) == Segment.report_sections and "segmentation" in sections
    body = page.split('<section id="segmentation">')[1].split("</section>")[0]
    assert body.count('<img src="data:image/') == 2  # the panel, the pixel confusion
    assert "true mask, predicted mask" in body and "pixel confusion matrix" in body
