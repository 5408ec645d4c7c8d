"""The HTML run report, rendered for real in headless Chromium: every section present, every image
decoded by the browser, nothing fetched from the network, a full-page screenshot with content in
every band, and figures that show the test images they name.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from needs import chromium_path
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.config import TrainConfig
from cnnlab.runs import open_run
from cnnlab.tasks import Task
from cnnlab.train.fit import fit
from cnnlab.viz.errors import errors_grid, split_scores
from cnnlab.viz.grids import compact
from cnnlab.viz.maps import conv_layers, feature_maps, maps_grid
from cnnlab.viz.report import MAX_ERRORS, MAX_MAPS

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
TITLES = ["Settings", "Model", "Training data", "Training curves", "Accuracy per class",
          "Confusion matrix", "Errors", "Top losses", "Filters", "Feature maps",
          "What excites the last conv layer", "Saliency and Grad-CAM", "Feature evolution"]
MAX_BYTES = 500_000  # LeNet-5 on digits: about 360 kB
# Run inside the page once it has loaded: what the browser itself made of it.
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const out = document.createElement("pre");
  out.id = "cnnlab-check";
  const first = images[0];
  first.click();  // click to enlarge: the image covers the window
  const zoomed = getComputedStyle(first).position === "fixed" && first.classList.contains("zoom");
  first.click();
  out.textContent = JSON.stringify({
    images: images.length,
    undecoded: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    sections: [...document.querySelectorAll("section")].map(s => s.id),
    headings: [...document.querySelectorAll("section > h2")].map(h => h.textContent),
    contents: [...document.querySelectorAll("nav a")].map(a => a.getAttribute("href")),
    headline: document.querySelector(".headline").innerText,
    diagram: document.querySelectorAll(".diagram .box").length,
    collapsed: [...document.querySelectorAll("details")].filter(d => !d.open).length,
    zoomed, unzoomed: !first.classList.contains("zoom"),
    height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""


class Page(HTMLParser):
    """Section ids, image sources, every URL-bearing attribute, and each figure's
    ``data-indices`` with its image and caption."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.figures: list[dict] = []  # {"section", "indices", "src", "caption"}
        self._caption = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "figure":
            indices = attrs.get("data-indices")
            self.figures.append({"section": self.sections[-1] if self.sections else "",
                                 "indices": [int(i) for i in indices.split(",")]
                                 if indices else None, "src": "", "caption": ""})
        if tag == "img":
            self.images.append(attrs.get("src", ""))
            if self.figures:
                self.figures[-1]["src"] = attrs.get("src", "")
        self._caption = tag == "figcaption"
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v]

    def handle_data(self, data):
        if self._caption and self.figures:
            self.figures[-1]["caption"] += data

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._caption = False


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def decode(src: str) -> np.ndarray:
    match = re.fullmatch(r"data:image/(?:png|webp);base64,([A-Za-z0-9+/=]+)", src)
    image = Image.open(io.BytesIO(base64.b64decode(match.group(1), validate=True)))
    return np.asarray(image.convert("RGB"))


def browser() -> str:
    return chromium_path()


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=120)


def browser_check(html: str, folder: Path) -> dict:
    """Open ``html`` (with :data:`CHECK_SCRIPT` added) in headless Chromium and return what
    the page reported from inside the browser."""
    page = folder / "checked.html"
    page.write_text(html.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    result = chromium("--dump-dom", "--virtual-time-budget=5000", "--window-size=1200,1000",
                      page.resolve().as_uri())  # the screenshot's width: the same height
    match = re.search(r'<pre id="cnnlab-check">(.*?)</pre>', result.stdout, re.S)
    assert match, f"the page did not report: {result.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def assert_renders(found: dict) -> None:
    """Every image decoded in the browser, every section and heading there, in order, the
    contents linking to each, the headline and the diagram shown, the full configuration and
    the layer table collapsed, and a click enlarging an image (and a second shrinking it)."""
    assert found["images"] >= 15 and found["undecoded"] == 0, found
    assert found["sections"] == list(Task.report_sections), found
    assert found["headings"] == TITLES, found
    assert found["contents"] == [f"#{s}" for s in Task.report_sections], found
    assert "test accuracy" in found["headline"] and "hardware" in found["headline"], found
    assert found["diagram"] == 9  # input, C1, S2, C3, S4, flatten, C5 (linear), F6, output
    assert found["collapsed"] >= 2 and found["zoomed"] and found["unzoomed"], found


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    config = TrainConfig(model="lenet5", data="digits", epochs=1, out=str(out), name="rep",
                         progress=False, device="cpu")
    return fit(config, log=lambda *_: None).run_dir


@pytest.fixture(scope="module")
def report(run_dir) -> Path:
    assert main(["report", str(run_dir), "--limit", "200"]) == 0
    return run_dir / "report.html"


def test_report_has_every_section_in_order_and_stays_small(report):
    page = parse(report.read_text())
    assert page.sections == list(Task.report_sections)
    assert 20_000 < report.stat().st_size < MAX_BYTES


def test_every_image_is_embedded_and_nothing_is_fetched(report):
    page = parse(report.read_text())
    assert len(page.images) >= 8  # curves, confusion, errors, filters, maps, patches
    assert all(decode(src).size > 0 for src in page.images)
    assert all(link.startswith(("data:", "#")) for link in page.links)  # in-page links only
    anchors = [link[1:] for link in page.links if link.startswith("#")]
    assert anchors == page.sections  # the table of contents names every section, in order


def test_report_contents_match_the_run(run_dir, report):
    html = report.read_text()
    assert "61,706 parameters" in html  # LeNet-5's count from the summary table
    assert "14x14" in html  # C3's receptive field in the summary and the top patches
    assert re.search(r"test accuracy \d+\.\d\d%", html)
    assert "6 filters of conv1 (features.0)" in html  # the name used everywhere else


def test_report_maps_show_the_test_images_they_name(run_dir, report):
    """Each maps figure's image is the test image in its ``data-indices`` (as the model saw
    it), captioned with that image's class, and its maps are that image's activations."""
    run = open_run(run_dir)
    source = run.source("test")
    figures = [f for f in parse(report.read_text()).figures if f["section"] == "maps"]
    inputs = [f for f in figures if f["caption"].startswith("test image")]
    assert len(inputs) == 3
    labels = [int(source.labels[f["indices"][0]]) for f in inputs]
    assert len(set(labels)) == 3  # one class each, not three of the first class
    layers = conv_layers(run.model)
    for f in inputs:
        (k,) = f["indices"]
        assert f"test image {k}, class {run.classes[int(source.labels[k])]}" == f["caption"]
        shown = decode(f["src"])[2:2 + 96:3, 2:2 + 96:3, 0]  # 3x magnified, 2 px border
        assert np.array_equal(shown, source.images[k, 0].numpy())
        x = source.preprocess.normalize(source.images[k:k + 1].float() / 255)
        maps = feature_maps(run.model, x, layers)
        for layer in layers:
            (figure,) = [g for g in figures if g["indices"] == [k] and
                         g["caption"].endswith(f"maps of test image {k}") and
                         f"({layer})" in g["caption"]]
            grid = maps_grid(maps[layer][0, :MAX_MAPS]).framed(title=False)
            expected = np.asarray(compact(grid, 256).convert("RGB"))  # the report's palette
            assert np.array_equal(decode(figure["src"]), expected)


def test_report_errors_are_errors_of_several_classes(run_dir, report):
    run = open_run(run_dir)
    scores, images = split_scores(run, "test")
    (figure,) = [f for f in parse(report.read_text()).figures if f["section"] == "errors"]
    by_index = {e["index"]: e for e in scores.errors}
    with torch.no_grad():
        pred = run.model(run.preprocess.normalize(images.float() / 255)).argmax(1)
    labels = run.source("test").labels
    shown = figure["indices"]
    assert len(shown) == min(MAX_ERRORS, len(scores.errors)) and len(set(shown)) == len(shown)
    assert all(int(pred[i]) != int(labels[i]) for i in shown)  # each one really is an error
    classes_with_errors = {int(labels[i]) for i in by_index}
    assert len({int(labels[i]) for i in shown[:10]}) == min(10, len(classes_with_errors))
    expected = errors_grid([by_index[i] for i in shown], images, max_errors=MAX_ERRORS)
    assert np.array_equal(decode(figure["src"]), np.asarray(expected.image))


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report, tmp_path):
    found = browser_check(report.read_text(), tmp_path)
    assert_renders(found)
    height = found["height"]
    assert height > 3000  # the whole page, taller than one screen
    shot = tmp_path / "report.png"
    result = chromium(f"--screenshot={shot}", f"--window-size=1200,{height}",
                      report.resolve().as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (height, 1200)
    assert pixels.std() > 20  # text, tables and figures, not a blank page
    rows = pixels.std(axis=1) > 1  # a row with anything drawn on it
    bands = [rows[top:top + 500].mean() for top in range(0, height - 250, 500)]
    assert min(bands) > 0.1, [round(b, 2) for b in bands]  # content all the way down


@pytest.mark.slow
def test_the_browser_check_catches_a_broken_image_or_a_missing_section(report, tmp_path):
    """The checks above can fail: a corrupted data: URI and a dropped section are caught by
    the browser itself."""
    html = report.read_text()
    corrupt = re.sub(r"base64,([A-Za-z0-9+/]{40})", lambda m: "base64," + "A" * 40, html,
                     count=1)
    found = browser_check(corrupt, tmp_path)
    assert found["undecoded"] == 1
    with pytest.raises(AssertionError):
        assert_renders(found)
    start = html.index('<section id="patches">')
    dropped = html[:start] + html[html.index("</section>", start) + len("</section>"):]
    found = browser_check(dropped, tmp_path)
    assert found["undecoded"] == 0 and "patches" not in found["sections"]
    with pytest.raises(AssertionError):
        assert_renders(found)
