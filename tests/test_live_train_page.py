"""``cnnlab train --live`` end to end in real headless Chromium (issue 22): a real training
process serves the page; it loads nothing from any host but 127.0.0.1, data arrives, pause and
a learning-rate change made on the page are in the run's events at the step the page reports
(and the next step trains at half the rate), the final accuracy on the page is run.json's, a
drawn digit gets ``cnnlab predict``'s probabilities, a request without the token is refused,
and the screenshot has content all the way down. The test waits up to 30 s for each thing it
expects; nothing asserts on timing."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys

import pytest
from live_browser import Chromium
from test_live_page import (
    IMAGES_LOADED,
    assert_screenshot_has_content,
    draw_stroke,
    painted,
)

from cnnlab.config import TrainConfig
from cnnlab.predict import predict_images
from cnnlab.runs import open_run
from cnnlab.train.optim import lr_at

pytestmark = pytest.mark.slow
EPOCHS, STEPS_PER_EPOCH = 20, 21  # digits: 1,293 training scans, batches of 64


def text(browser: Chromium, tab: str, element: str) -> str:
    return browser.evaluate(tab, f"document.getElementById('{element}').textContent")


@pytest.fixture
def training(tmp_path):
    """A ``cnnlab train --live`` process (the page stays up after the run, until SIGINT)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", "--data", "digits", "--epochs", str(EPOCHS),
         "--threads", "1", "--no-progress", "--out", str(tmp_path), "--name", "r", "--live",
         "--live-linger", "600"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("live page: "):
            break
    assert lines and lines[-1].startswith("live page: "), "".join(lines)
    process.url = lines[-1].split()[-1]
    try:
        yield process, tmp_path / "r"
    finally:
        process.send_signal(signal.SIGINT)  # ends the linger (or the run)
        output = process.communicate(timeout=120)[0]
        assert process.returncode == 0, output


def test_a_real_run_on_the_page(training, tmp_path):
    process, run_dir = training
    with Chromium(tmp_path / "profile") as browser:
        tab = browser.open(process.url)
        assert browser.wait_for(tab, "document.body.dataset.ready") == "yes"
        arrived = browser.wait_for(tab, "document.querySelectorAll('#predictions .prediction')"
                                        ".length === 8 && document.querySelectorAll('#layers "
                                        ".layer').length > 5 && document.getElementById("
                                        "'stat-examples').textContent !== '-' && 'yes'")
        assert arrived == "yes"

        browser.evaluate(tab, "document.getElementById('btn-pause').click()")
        assert browser.wait_for(tab, "document.getElementById('state').textContent === 'paused'")
        browser.evaluate(tab, "document.getElementById('in-lr_multiplier').value = '0.5';"
                              "document.getElementById('btn-apply').click()")
        assert browser.wait_for(tab, "document.getElementById('control-applied').textContent"
                                     ".includes('lr_multiplier=0.5')")
        step = int(re.search(r"at step (\d+)", text(browser, tab, "control-applied")).group(1))
        events = [(e["step"], e["action"], e["value"]) for e in open_run(run_dir).events()]
        assert events == [(step, "pause", None), (step, "lr_multiplier", 0.5)]
        assert max(s["step"] for s in open_run(run_dir).steps()) == step  # paused there
        browser.evaluate(tab, "document.getElementById('btn-resume').click()")

        final = browser.wait_for(tab, "document.getElementById('stat-test-acc').dataset.final",
                                 timeout=300)
        index = json.loads((run_dir / "run.json").read_text())
        assert index["status"] == "completed" and float(final) == index["test"]["acc"]
        steps = {s["step"]: s for s in open_run(run_dir).steps()}
        config = TrainConfig(epochs=EPOCHS)  # cnnlab train's defaults: lr 0.05, cosine
        total = EPOCHS * STEPS_PER_EPOCH
        assert steps[step]["lr"] == pytest.approx(lr_at(step - 1, total, STEPS_PER_EPOCH, config))
        assert steps[step + 1]["lr"] == pytest.approx(
            0.5 * lr_at(step, total, STEPS_PER_EPOCH, config))

        stroke = [(0.3, 0.2), (0.5, 0.2), (0.7, 0.2), (0.6, 0.45), (0.5, 0.65), (0.45, 0.85)]
        draw_stroke(browser, tab, stroke)  # a 7; releasing the mouse classifies it
        assert browser.wait_for(tab, "document.getElementById('probe-result').dataset.top && "
                                     f"{IMAGES_LOADED}")
        bars = browser.evaluate(tab, "[...document.querySelectorAll('#probe-result .bar')]"
                                     ".map(b => [b.dataset.class, Number(b.dataset.p)])")
        drawn = browser.evaluate(tab, "document.getElementById('draw').toDataURL('image/png')")
        path = tmp_path / "drawn.png"
        path.write_bytes(base64.b64decode(drawn.split(",", 1)[1]))
        (predicted,) = predict_images(run_dir, [str(path)])
        assert [(c, round(p, 4)) for c, p in bars[:3]] == predicted["top"]

        refused = browser.evaluate(tab, "fetch('/api/control', {method: 'POST', body: "
                                        "'{\"action\": \"stop\"}'}).then(r => r.status)")
        assert refused == 403
        assert browser.evaluate(tab, painted("loss-chart")) > 500
        assert_screenshot_has_content(browser, tab, 2500)
        port = process.url.split(":")[2].split("/")[0]
        urls = browser.requested_urls()
        assert urls and all(u.startswith(f"http://127.0.0.1:{port}/") or u.startswith("data:")
                            for u in urls), urls
        assert [p for p in browser.problems() if "403" not in p] == []
