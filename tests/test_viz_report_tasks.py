"""``cnnlab report`` for ``--task multilabel`` and ``--task segment`` runs: per-class average
precision and a gallery of true vs predicted label sets (no single-label confusion matrix or
errors grid, which would score only each scene's first object), and mean / per-class IoU under
the segmentation panel. The numbers are checked against sklearn and a hand-computed confusion
matrix of the model's own outputs.
"""

from __future__ import annotations

import base64
import html as htmllib
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image
from scene_helpers import SCENE_FLAGS, SCENES, model_outputs
from sklearn.metrics import average_precision_score

from cnnlab.cli.main import main
from cnnlab.data.datasets import load_dataset
from cnnlab.tasks import MultiLabel, Segment

DATA, COMMON = SCENES, SCENE_FLAGS


@pytest.fixture
def runs(scene_runs):
    return scene_runs


def report_html(run: str, tmp_path) -> str:
    out = tmp_path / "report.html"
    assert main(["report", run, "--out", str(out), "--limit", "50"]) == 0
    return out.read_text()


def section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)">', html)


def figures(html: str) -> list[dict]:
    """Each figure's ``data-indices``, embedded PNG (decoded) and caption."""
    found = re.findall(r'<figure(?: data-indices="([\d,]*)")?><img src="data:image/png;base64,'
                       r'([A-Za-z0-9+/=]+)"[^>]*>(?:<figcaption>(.*?)</figcaption>)?', html)
    return [{"indices": [int(i) for i in ind.split(",")] if ind else None,
             "image": np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")),
             "caption": htmllib.unescape(cap)} for ind, png, cap in found]


def table_rows(section: str) -> list[list[str]]:
    return [[htmllib.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", section) if "<td" in row]


def section(html: str, key: str) -> str:
    return re.search(rf'<section id="{key}">(.*?)</section>', html, re.S).group(1)


def test_multilabel_report_shows_per_class_ap_and_label_sets(runs, tmp_path):
    html = report_html(runs["multilabel"], tmp_path)
    assert section_ids(html) == list(MultiLabel.report_sections)  # no confusion matrix, errors grid
    test = load_dataset(DATA, "test")
    probs = model_outputs(runs["multilabel"], test.images).sigmoid()
    truth = test.present.numpy()
    rows = table_rows(section(html, "precision"))
    assert [r[0] for r in rows] == test.classes
    aps = []
    for k, (_, ap, count) in enumerate(rows):
        assert int(count) == int(truth[:, k].sum())
        if truth[:, k].any():
            aps.append(average_precision_score(truth[:, k], probs[:, k].numpy()))
            assert float(ap) == pytest.approx(aps[-1], abs=1e-4)
        else:
            assert ap == "-"  # no scene has it: no AP, left out of the mean
    assert f"test mAP {np.mean(aps):.4f}" in html
    (gallery,) = figures(section(html, "labels"))
    assert len(gallery["indices"]) == len(test)
    predicted = (probs >= 0.5).numpy()
    exact = sum(bool((predicted[i] == truth[i]).all()) for i in gallery["indices"])
    assert f"{exact} exactly right" in gallery["caption"]
    assert gallery["image"].std() > 0


def test_segment_report_shows_mean_and_per_class_iou(runs, tmp_path):
    html = report_html(runs["segment"], tmp_path)
    assert section_ids(html) == list(Segment.report_sections)
    test = load_dataset(DATA, "test")
    pred = model_outputs(runs["segment"], test.images).argmax(1)  # (N, H, W)
    k = len(test.classes) + 1
    confusion = torch.zeros(k, k, dtype=torch.long)
    for t, p in zip(test.masks.flatten().tolist(), pred.flatten().tolist(), strict=True):
        confusion[t, p] += 1
    rows = table_rows(section(html, "segmentation"))
    assert [r[0] for r in rows] == ["background", *test.classes]
    ious = []
    for c, (_, iou) in enumerate(rows):
        union = int(confusion[c].sum() + confusion[:, c].sum() - confusion[c, c])
        if union == 0:
            assert iou == "-"
            continue
        ious.append(int(confusion[c, c]) / union)
        assert float(iou) == pytest.approx(ious[-1], abs=1e-4)
    assert f"mean IoU {np.mean(ious):.4f}" in html
    accuracy = 100 * int(confusion.diag().sum()) / int(confusion.sum())
    assert f"test pixel accuracy {accuracy:.2f}%" in html
