"""The HTML run report, rendered for real in headless Chromium: every section present, every image
a decodable embedded PNG, nothing fetched from the network, and a screenshot that is not blank.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.config import TrainConfig
from cnnlab.train.fit import fit
from cnnlab.viz.report import SECTIONS

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


class Page(HTMLParser):
    """Section ids, image sources and every URL-bearing attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def broken_images(page: Page) -> list[str]:
    """The image sources that are not a decodable ``data:image/png;base64`` PNG."""
    broken = []
    for src in page.images:
        match = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", src)
        try:
            image = Image.open(io.BytesIO(base64.b64decode(match.group(1), validate=True)))
            image.load()
            assert image.width > 0 and image.height > 0
        except Exception:  # noqa: BLE001 - any failure means a broken image
            broken.append(src[:60])
    return broken


def browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    assert found, "the report test needs headless Chromium (apt-get install chromium)"
    return found


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


def test_report_has_every_section_in_order(report):
    page = parse(report.read_text())
    assert page.sections == list(SECTIONS)


def test_every_image_is_an_embedded_png_and_nothing_is_fetched(report):
    page = parse(report.read_text())
    assert len(page.images) >= 8  # curves, confusion, errors, filters, maps, patches
    assert broken_images(page) == []
    assert all(link.startswith("data:") for link in page.links)


def test_broken_or_missing_parts_are_detected(report):
    """The checks above can fail: a corrupted image and a dropped section are caught."""
    html = report.read_text()
    corrupt = re.sub(r"base64,([A-Za-z0-9+/]{40})", lambda m: "base64," + "A" * 40, html,
                     count=1)
    assert len(broken_images(parse(corrupt))) == 1
    dropped = html.replace('<section id="patches">', "<div>")
    assert "patches" not in parse(dropped).sections


def test_report_contents_match_the_run(run_dir, report):
    html = report.read_text()
    assert "61,706 parameters" in html  # LeNet-5's count from the summary table
    assert "14x14" in html  # C3's receptive field in the summary and the top patches
    assert re.search(r"test accuracy \d+\.\d\d%", html)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1200,3000", report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 20  # text, tables and figures, not a blank page
    rows = pixels.std(axis=1) > 1  # content all the way down, not only a header
    assert rows[:1000].mean() > 0.2 and rows[1000:].mean() > 0.2
