"""The live page in real headless Chromium (driven over the DevTools pipe, tests/live_browser.py):
nothing requested from any host but this server, events from a fake trainer rendered, the
controls reaching the trainer, a request without the token refused, the drawn digit classified
with ``cnnlab predict``'s probabilities, the runs browser; screenshots checked for content.
The tests wait up to 30 s for what they expect; nothing asserts on timing."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from live_browser import Chromium
from live_helpers import BATCH, STEPS, FakeTrainer
from PIL import Image

from cnnlab.live.browse import RunBrowser
from cnnlab.live.channel import Control, LiveChannel
from cnnlab.live.probe import run_probe
from cnnlab.live.server import LiveServer
from cnnlab.live.snapshot import inspect_batch, layer_stats
from cnnlab.predict import predict_images

pytestmark = pytest.mark.slow
FIXTURE = Path(__file__).parent / "fixtures" / "v0-run"
IMAGES_LOADED = ("[...document.images].length > 0 && [...document.images].every("
                 "i => i.complete && i.naturalWidth > 0)")


def only_this_server(urls: list[str], server: LiveServer) -> None:
    base = f"http://127.0.0.1:{server.port}/"
    assert urls and all(u.startswith(base) or u.startswith("data:") for u in urls), urls


def assert_screenshot_has_content(browser: Chromium, tab: str, min_height: int) -> None:
    """Text, charts and pictures all the way down the page (the report test's check)."""
    height = browser.evaluate(tab, "Math.floor(document.querySelector('main')"
                                   ".getBoundingClientRect().bottom + window.scrollY)")
    png = browser.screenshot(tab)
    if os.environ.get("CNNLAB_SHOTS"):  # a folder to keep the screenshots in, to look at them
        Path(os.environ["CNNLAB_SHOTS"], f"{tab[:6]}.png").write_bytes(png)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)[:height]
    assert height >= min_height and pixels.shape[0] == height and pixels.std() > 20
    rows = pixels.std(axis=1) > 1  # a row with anything drawn on it
    bands = [rows[top:top + 400].mean() for top in range(0, pixels.shape[0] - 200, 400)]
    assert min(bands) > 0.1, [round(b, 2) for b in bands]


def painted(canvas_id: str) -> str:
    """JS: how many pixels of a canvas are not white."""
    return (f"(() => {{ const c = document.getElementById('{canvas_id}'); const d = c.getContext"
            "('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; "
            "i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250) n++; return n; })()")


@pytest.fixture
def live(tmp_path):
    channel = LiveChannel()
    trainer = FakeTrainer(channel)
    recorded: list[bytes] = []
    probe = run_probe(FIXTURE)

    def recording_probe(data: bytes) -> dict:
        recorded.append(data)
        return probe(data)

    with LiveServer(channel=channel, probe=recording_probe) as server:
        trainer.start()
        server.trainer, server.recorded = trainer, recorded
        with Chromium(tmp_path / "profile") as browser:
            yield server, browser
        trainer.finish()


def test_training_renders_and_the_controls_reach_the_trainer(live):
    server, browser = live
    tab = browser.open(server.url)
    assert browser.wait_for(tab, "document.body.dataset.ready") == "yes"
    rows = len(layer_stats(inspect_batch(server.trainer.model, server.trainer.x, server.trainer.y)))
    shown = browser.wait_for(tab, "document.querySelectorAll('#predictions .prediction').length"
                             f" === 8 && document.querySelectorAll('#layers .layer').length === {rows}"
                             f" && {IMAGES_LOADED} && document.getElementById('stat-examples')"
                             f".textContent === '{STEPS * BATCH:,}' && 'shown'")
    assert shown == "shown"
    assert browser.evaluate(tab, painted("loss-chart")) > 500
    assert browser.evaluate(tab, painted("acc-chart")) > 500
    assert browser.evaluate(tab, "document.getElementById('state').textContent") == "training"

    browser.evaluate(tab, "document.getElementById('btn-pause').click()")
    assert server.trainer.got_control.wait(30)
    assert browser.wait_for(tab, "document.getElementById('state').textContent === 'paused'")
    server.trainer.got_control.clear()
    browser.evaluate(tab, "document.getElementById('in-lr_multiplier').value = '0.5';"
                          "document.getElementById('btn-apply').click()")
    assert server.trainer.got_control.wait(30)
    assert server.trainer.controls == [Control("pause"), Control("lr_multiplier", 0.5)]
    assert browser.wait_for(tab, "document.getElementById('control-applied').textContent"
                                 ".includes('lr_multiplier=0.5')")

    refused = browser.evaluate(tab, "fetch('/api/control', {method: 'POST', body: "
                                    "'{\"action\": \"stop\"}'}).then(r => r.status)")
    assert refused == 403
    assert_screenshot_has_content(browser, tab, 2500)
    server.trainer.finish()
    assert Control("stop") not in server.trainer.controls
    final = browser.wait_for(tab, "document.getElementById('stat-test-acc').dataset.final")
    assert float(final) == server.trainer.final_test_acc
    only_this_server(browser.requested_urls(), server)
    assert [p for p in browser.problems() if "403" not in p] == []  # no CSP violation, no error


def draw_stroke(browser: Chromium, tab: str, points: list[tuple[float, float]]) -> None:
    """A real mouse stroke over the drawing canvas, ``points`` in canvas fractions."""
    box = browser.evaluate(tab, "(() => { const c = document.getElementById('draw'); "
                                "c.scrollIntoView(); const b = c.getBoundingClientRect(); "
                                "return [b.left, b.top, b.width, b.height]; })()")
    left, top, width, height = box
    at = [(left + fx * width, top + fy * height) for fx, fy in points]
    kinds = ["mousePressed"] + ["mouseMoved"] * (len(at) - 2) + ["mouseReleased"]
    for kind, (x, y) in zip(kinds, at, strict=True):
        browser.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                  "buttons": 1, "clickCount": 1}, session=tab)


def test_a_drawn_digit_gets_cnnlab_predicts_probabilities(live, tmp_path):
    server, browser = live
    tab = browser.open(server.url)
    assert browser.wait_for(tab, "document.body.dataset.ready") == "yes"
    assert browser.wait_for(tab, "document.getElementById('stat-examples').textContent === "
                                 f"'{STEPS * BATCH:,}'")  # the page stops growing: aim now
    stroke = [(0.3, 0.2), (0.5, 0.2), (0.7, 0.2), (0.6, 0.45), (0.5, 0.65), (0.45, 0.85)]
    draw_stroke(browser, tab, stroke)  # a 7; releasing the mouse classifies it
    assert browser.wait_for(tab, f"document.getElementById('probe-result').dataset.top && "
                                 f"{IMAGES_LOADED}")
    bars = browser.evaluate(tab, "[...document.querySelectorAll('#probe-result .bar')]"
                                 ".map(b => [b.dataset.class, Number(b.dataset.p)])")
    (drawn,) = server.recorded
    assert Image.open(io.BytesIO(drawn)).size == (280, 280)
    path = tmp_path / "drawn.png"
    path.write_bytes(drawn)
    (predicted,) = predict_images(FIXTURE, [str(path)])
    assert [(c, round(p, 4)) for c, p in bars[:3]] == predicted["top"]
    assert only_this_server(browser.requested_urls(), server) is None
    assert browser.problems() == []


def test_without_the_token_the_page_is_view_only(live):
    server, browser = live
    tab = browser.open(server.url.split("#")[0])
    assert browser.wait_for(tab, "document.body.dataset.ready") == "yes"
    state = browser.evaluate(tab, "[document.getElementById('token-note').hidden, "
                                  "...['btn-pause', 'btn-stop', 'btn-apply', 'btn-classify']"
                                  ".map(id => document.getElementById(id).disabled)]")
    assert state == [False, True, True, True, True]
    statuses = browser.evaluate(tab, "Promise.all([cnn.post('/api/control', '{\"action\": "
                                     "\"stop\"}', 'application/json').catch(e => e.message), "
                                     "fetch('/api/probe', {method: 'POST', body: 'x'})"
                                     ".then(r => r.status)])")
    assert "token" in statuses[0] and statuses[1] == 403
    server.trainer.finish()
    assert server.trainer.controls == [] and server.recorded == []


def test_the_runs_browser_shows_runs_curves_and_plays_snapshots(tmp_path):
    from test_live_browse import perturbed_snapshot

    runs = tmp_path / "runs"
    shutil.copytree(FIXTURE, runs / "a")
    shutil.copytree(FIXTURE, runs / "b")
    perturbed_snapshot(runs / "b", 2, -2.0)
    with LiveServer(runs=RunBrowser(runs)) as server, Chromium(tmp_path / "profile") as browser:
        tab = browser.open(server.url)
        assert browser.wait_for(tab, "document.body.dataset.ready") == "yes"
        assert browser.evaluate(tab, "[...document.querySelectorAll('#runs-table tbody tr')]"
                                     ".map(r => r.dataset.run)") == ["a", "b"]
        assert browser.wait_for(tab, painted("runs-chart") + " > 200")
        browser.evaluate(tab, "document.querySelector('tr[data-run=\"b\"] button').click()")
        assert browser.wait_for(tab, "document.querySelectorAll('#play img').length === 1 && "
                                     f"{IMAGES_LOADED}")
        label = browser.evaluate(tab, "(() => { const s = document.querySelector('#play input');"
                                      " s.value = 1; s.dispatchEvent(new Event('input'));"
                                      " return document.querySelector('#play .label')"
                                      ".textContent; })()")
        assert label == "b: epoch 2"
        assert browser.evaluate(tab, "document.getElementById('live').hidden") is True
        only_this_server(browser.requested_urls(), server)
        assert browser.problems() == []
        assert_screenshot_has_content(browser, tab, 1000)
