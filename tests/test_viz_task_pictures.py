"""Pictures of multilabel and segment runs show their own metrics (issue 21, stumbles 6 and 8):
curves plot mAP / mIoU (the metric that picks the best checkpoint), the report's label gallery
and ``visualize errors`` honour ``--threshold``, a segment run's confusion matrix counts pixels,
a multilabel run's errors are the scenes with a wrong label set, and every picture kind says
which tasks it serves.
"""

from __future__ import annotations

import re

import pytest
import torch
from PIL import Image
from scene_helpers import SCENES, model_outputs

import cnnlab.cli.visualize as visualize_cli
from cnnlab.cli.main import main
from cnnlab.data.datasets import load_dataset
from cnnlab.runs import open_run
from cnnlab.tasks import get_task, task_names
from cnnlab.viz.curves import run_curves
from cnnlab.viz.labels import wrong_sets
from cnnlab.viz.segmentation import pixel_confusion
from cnnlab.viz.visualize import KINDS, serving_tasks, visualize


@pytest.mark.parametrize(("task", "metric", "title"), [("multilabel", "map", "mAP"),
                                                        ("segment", "miou", "mIoU")])
def test_dense_curves_plot_the_metric_that_picks_the_best_checkpoint(scene_runs, task, metric,
                                                                     title):
    run = open_run(scene_runs[task])
    assert run.task.main_metric == metric
    fig = run_curves(run)
    panel = fig.axes[1]  # loss first, then the main metric
    assert panel.get_title() == title
    (validation,) = [line for line in panel.lines if line.get_label() == "validation"]
    assert list(validation.get_ydata()) == [r[f"val_{metric}"] for r in run.metrics()]


def test_report_gallery_and_precision_honour_the_threshold(scene_runs, tmp_path):
    run = scene_runs["multilabel"]
    out = tmp_path / "report.html"
    assert main(["report", run, "--out", str(out), "--limit", "50", "--threshold", "0.2"]) == 0
    html = out.read_text()
    test = load_dataset(SCENES, "test")
    predicted = model_outputs(run, test.images).sigmoid() >= 0.2
    exact = int((predicted == test.present.bool()).all(1).sum())
    assert f"(sigmoid &gt;= 0.2); {exact} exactly right" in html
    assert "(threshold 0.2)" in html


def test_segment_confusion_counts_pixels(scene_runs, tmp_path):
    run = scene_runs["segment"]
    test = load_dataset(SCENES, "test")
    pred = model_outputs(run, test.images).argmax(1)
    k = len(test.classes) + 1
    expected = torch.zeros(k, k, dtype=torch.long)
    for t, p in zip(test.masks.flatten().tolist(), pred.flatten().tolist(), strict=True):
        expected[t, p] += 1
    assert pixel_confusion(open_run(run)) == expected.tolist()
    paths = visualize("confusion", run, out=tmp_path, normalize=True)
    assert [p.name for p in paths] == ["confusion-test.png", "confusion-test-normalized.png"]
    assert all(image.width > 300 for image in paths.figures)


def test_multilabel_errors_are_the_scenes_with_a_wrong_label_set(scene_runs, tmp_path):
    run = scene_runs["multilabel"]
    test = load_dataset(SCENES, "test")
    probs = model_outputs(run, test.images).sigmoid()
    for threshold in (0.5, 0.2):
        wrong = ((probs >= threshold) != test.present.bool()).any(1).nonzero().flatten()
        gallery = wrong_sets(open_run(run, threshold=threshold), test)
        assert gallery.index == wrong.tolist() and gallery.exact == 0
    assert main(["visualize", "errors", run, "--out", str(tmp_path), "--threshold", "0.2"]) == 0
    assert Image.open(tmp_path / "errors-test.png").width > 0


def test_a_picture_for_another_task_is_a_one_line_error_naming_the_tasks(scene_runs, tmp_path,
                                                                          capsys):
    code = main(["visualize", "top-losses", scene_runs["segment"], "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "needs a run trained with --task classify, not a 'segment' run" in err


def test_every_picture_kind_says_which_tasks_it_serves():
    """``cnnlab visualize --help`` lists, under each kind, exactly the tasks whose
    ``picture_kinds`` include it."""
    text = visualize_cli.__doc__
    for kind in KINDS:
        block = re.search(rf"^  {re.escape(kind)} .*?\[([a-z, ]+)\]", text, re.S | re.M)
        assert block, kind
        assert block.group(1).split(", ") == serving_tasks(kind), kind
    assert set(serving_tasks("errors")) == {"classify", "multilabel"}
    assert all(set(get_task(t).picture_kinds) <= set(KINDS) for t in task_names())
