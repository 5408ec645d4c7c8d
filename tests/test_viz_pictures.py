"""Pictures a teacher can project (issue 21): curves per step with the schedule's peak, no text
below 9 pt, top losses and the most confused pairs against a hand computation, the normalised
confusion matrix, and the rich display of runs, summaries, scores and pictures in Jupyter.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.config import TrainConfig
from cnnlab.evaluate import evaluate_runs
from cnnlab.runs import open_run
from cnnlab.train.fit import fit
from cnnlab.viz.curves import MIN_FONT, confusion_figure, run_curves
from cnnlab.viz.errors import confused_pairs, split_outputs, top_losses
from cnnlab.viz.grids import DPI, FONT_PX, make_grid
from cnnlab.viz.visualize import visualize


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """LeNet-5, 2 epochs on the digits, the first one a linear warm-up."""
    out = tmp_path_factory.mktemp("runs")
    config = TrainConfig(model="lenet5", data="digits", epochs=2, warmup_epochs=1.0,
                         out=str(out), name="warm", progress=False, device="cpu")
    return open_run(fit(config, log=lambda *_: None).run_dir)


def test_curves_are_per_step_and_the_learning_rate_shows_its_peak(run):
    steps = run.steps()
    assert len(steps) > 2 * len(run.metrics())  # more points than epochs
    fig = run_curves(run)
    (lr,) = fig.axes[-1].lines  # one line, per step
    assert list(lr.get_ydata()) == [s["lr"] for s in steps]
    assert list(lr.get_xdata()) == [s["epoch"] for s in steps]  # fractional epochs
    peak = int(np.argmax(lr.get_ydata()))
    assert 0 < peak < len(steps) - 1  # warm-up up, then the cosine down: the peak is inside
    assert steps[peak]["epoch"] == pytest.approx(1.0, abs=0.1)
    per_step = [line for line in fig.axes[0].lines if "per step" in line.get_label()]
    assert list(per_step[0].get_ydata()) == [s["loss"] for s in steps]


def test_no_text_is_smaller_than_9_points(run):
    """Every text of the figures (titles, ticks, legends, cells) is at least 9 pt, and the
    grids' caption font is 9 pt or more at the saved DPI."""
    scores = split_outputs(run).scores
    for fig in (run_curves(run, title="t"), confusion_figure(scores.confusion, run.classes),
                confusion_figure(scores.confusion, run.classes, normalize=True)):
        fig.canvas.draw()  # lays out the ticks, so they exist as texts
        texts = [t for t in fig.findobj(match=lambda a: hasattr(a, "get_fontsize")
                                        and hasattr(a, "get_text")) if t.get_text()]
        assert texts and min(t.get_fontsize() for t in texts) >= MIN_FONT >= 9
    assert FONT_PX * 72 / DPI >= 9


def test_top_losses_and_confused_pairs_match_a_hand_computation(run):
    out = split_outputs(run)
    source = run.source("test")
    with torch.no_grad():
        probs = torch.cat([run.model(x).softmax(1) for x, _ in source.batches()])
    loss = -probs[torch.arange(len(probs)), source.labels].log()
    losses = top_losses(out.probs, out.labels, run.classes, 10)
    assert [t["index"] for t in losses] == loss.argsort(descending=True)[:10].tolist()
    assert losses[0]["loss"] == pytest.approx(float(loss.max()), rel=1e-4)
    counts: dict[tuple[str, str], int] = {}
    for t, p in zip(source.labels.tolist(), probs.argmax(1).tolist(), strict=True):
        if t != p:
            counts[run.classes[t], run.classes[p]] = counts.get((run.classes[t],
                                                                 run.classes[p]), 0) + 1
    pairs = confused_pairs(out.scores.confusion, run.classes, 3)
    assert [n for _, _, n in pairs] == sorted(counts.values(), reverse=True)[:3]
    assert all(counts[t, p] == n for t, p, n in pairs)


def test_normalised_confusion_rows_are_fractions_of_each_class(run):
    confusion = split_outputs(run).scores.confusion
    fig = confusion_figure(confusion, run.classes, normalize=True)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    counts = np.array(confusion, dtype=float)
    assert np.allclose(shown, counts / counts.sum(1, keepdims=True))
    assert np.allclose(shown.sum(1), 1)


def test_runs_summaries_scores_and_pictures_display_in_jupyter(run, tmp_path):
    page = run._repr_html_()
    assert f"run {run.run_dir.name}" in page and "lenet5" in page
    for record in run.metrics():
        assert f"<td>{record['val_acc']:.4g}</td>" in page
    table = cnnlab.summary(run.model, run.input_size)._repr_html_()
    assert "61,706" in table and table.count("<tr>") == 1 + len(
        cnnlab.summary(run.model, run.input_size).rows)
    report = evaluate_runs([run.run_dir])
    assert f"accuracy {100 * report.main.top1:.2f}%" in report._repr_html_()
    pictures = visualize("filters", run, out=tmp_path)
    html = pictures._repr_html_()
    (uri,) = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    shown = Image.open(io.BytesIO(base64.b64decode(uri))).convert("RGB")
    assert np.array_equal(np.asarray(shown), np.asarray(Image.open(pictures[0]).convert("RGB")))
    grid = make_grid(torch.rand(4, 1, 5, 5))
    assert grid._repr_png_() == _png(grid.framed())


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
