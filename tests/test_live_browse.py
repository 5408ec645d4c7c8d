"""``cnnlab serve``'s runs browser: the table from each run's own files, curves equal to
metrics.jsonl, the report served sandboxed, the play view's filters per snapshot checked pixel
by pixel, the probe of a run's checkpoint; and nothing read from outside the runs folder, through
``..``, an absolute name or a symlink. Runs are copies of the stored real run tests/fixtures/v0-run.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from cnnlab.cli import main as cli_main
from cnnlab.live.browse import RunBrowser
from cnnlab.live.probe import run_probe
from cnnlab.live.server import REPORT_POLICY, TOKEN_HEADER, HttpError, LiveServer

FIXTURE = Path(__file__).parent / "fixtures" / "v0-run"
REPORT = "<!doctype html><title>b</title><h1>report of b</h1>"


def perturbed_snapshot(run: Path, epoch: int, factor: float) -> None:
    """A second snapshot: epoch 1's checkpoint with the first conv's weights times ``factor``."""
    with safe_open(run / "snapshots" / "epoch-001.safetensors", "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118
    tensors["model.features.0.weight"] = tensors["model.features.0.weight"] * factor
    save_file(tensors, run / "snapshots" / f"epoch-{epoch:03d}.safetensors", metadata=meta)


@pytest.fixture
def runs(tmp_path) -> Path:
    """runs/a, runs/exp/b (2 snapshots, a report), runs/notes (no run), runs/.hidden (a run),
    runs/outside -> a run outside the folder, runs/a-again -> runs/a."""
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE, root / "a")
    b = Path(shutil.copytree(FIXTURE, root / "exp" / "b"))
    perturbed_snapshot(b, 2, -2.0)
    (b / "report.html").write_text(REPORT)
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("train more")
    shutil.copytree(FIXTURE, root / ".hidden")
    shutil.copytree(FIXTURE, tmp_path / "elsewhere" / "c")
    (root / "outside").symlink_to(tmp_path / "elsewhere" / "c")
    (root / "a-again").symlink_to(root / "a")
    return root


def pixels(uri: str) -> np.ndarray:
    data = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", uri).group(1)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"), dtype=float)


def test_the_table_lists_the_runs_inside_the_folder_from_their_own_files(runs):
    table = RunBrowser(runs).table()
    assert table["root"] == str(runs.resolve())
    assert [row["id"] for row in table["runs"]] == ["a", "exp/b"]  # no link out, no duplicate
    index = json.loads((FIXTURE / "run.json").read_text())
    a, b = table["runs"]
    assert a == {"id": "a", "model": "c3x4p1-relu-p2-f10", "data": "digits", "task": "classify",
                 "status": "stopped", "epochs": 1, "test": {}, "report": False, "snapshots": 1,
                 "best": {"metric": "val_acc", "value": index["best"]["value"], "epoch": 1}}
    assert b["report"] and b["snapshots"] == 2


def test_curves_are_the_metrics_file_records(runs):
    records = [json.loads(line) for line in (FIXTURE / "metrics.jsonl").read_text().splitlines()]
    assert RunBrowser(runs).curves("exp/b") == {"run": "exp/b", "records": records}


@pytest.mark.parametrize("name", ["outside", "outside/../a/../../elsewhere/c", "../elsewhere/c",
                                  "notes", "missing", "/etc", "a\x00", "a\\..\\b", ".."])
def test_nothing_outside_the_folder_or_not_a_run_can_be_asked_for(runs, name):
    browser = RunBrowser(runs)
    for ask in (browser.curves, browser.play, browser.report):
        with pytest.raises(HttpError) as caught:
            ask(name)
        assert caught.value.status == 404


def test_a_run_file_linked_out_of_the_folder_is_not_read(runs, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"epoch": 1, "val_acc": 0.999}\n')
    (runs / "a" / "metrics.jsonl").unlink()
    (runs / "a" / "metrics.jsonl").symlink_to(secret)
    (runs / "a" / "report.html").symlink_to(secret)
    for name in ("best.safetensors", "last.safetensors"):
        (runs / "a" / name).unlink()
        (runs / "a" / name).symlink_to(tmp_path / "elsewhere" / "c" / name)
    browser = RunBrowser(runs)
    assert browser.curves("a")["records"] == []
    assert browser.table()["runs"][0]["epochs"] == 0 and not browser.table()["runs"][0]["report"]
    for ask in (browser.report, lambda run: browser.probe(run, b"")):
        with pytest.raises(HttpError, match="no"):
            ask("a")


def test_a_run_folder_given_through_a_symlink_is_resolved(runs, tmp_path):
    (tmp_path / "link").symlink_to(runs)
    browser = RunBrowser(tmp_path / "link")
    assert browser.root == runs.resolve()
    assert [row["id"] for row in browser.table()["runs"]] == ["a", "exp/b"]


def get(server: LiveServer, path: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", path)
    answer = conn.getresponse()
    result = answer.status, dict(answer.getheaders()), answer.read()
    conn.close()
    return result


def test_the_report_is_served_sandboxed_and_a_missing_one_explained(runs):
    with LiveServer(runs=RunBrowser(runs)) as server:
        status, headers, body = get(server, "/report?run=exp/b")
        assert status == 200 and body.decode() == REPORT
        assert headers["Content-Security-Policy"] == REPORT_POLICY and "sandbox" in REPORT_POLICY
        status, _, body = get(server, "/report?run=a")
        assert status == 404 and "cnnlab report a" in json.loads(body)["error"]
        assert get(server, "/report?run=outside")[0] == 404
        assert get(server, "/report")[0] == 400
        status, _, body = get(server, "/api/runs")
        assert status == 200 and len(json.loads(body)["runs"]) == 2


def test_play_shows_the_filters_of_every_snapshot(runs):
    play = RunBrowser(runs).play("exp/b")
    assert play["epochs"] == [1, 2] and play["hint"] == ""
    (layer,) = play["layers"]  # the one conv layer: 4 filters 3x3 on 1 channel
    assert layer["name"] == "features.0" and len(layer["frames"]) == 2
    with safe_open(FIXTURE / "snapshots" / "epoch-001.safetensors", "pt") as f:
        weight = f.get_tensor("model.features.0.weight").numpy()  # (4, 1, 3, 3)
    for frame, factor in zip(layer["frames"], (1.0, -2.0), strict=True):
        image = pixels(frame)
        assert image.shape == (1 + 3 + 1, 1 + 4 * 4)
        for i, kernel in enumerate(weight[:, 0] * factor):
            expected = np.round((kernel - kernel.min()) / (kernel.max() - kernel.min()) * 255)
            assert np.abs(image[1:4, 1 + 4 * i:4 + 4 * i] - expected).max() <= 1
    assert not np.array_equal(pixels(layer["frames"][0]), pixels(layer["frames"][1]))


def test_play_without_snapshots_says_how_to_keep_them(runs):
    shutil.rmtree(runs / "a" / "snapshots")
    play = RunBrowser(runs).play("a")
    assert play["epochs"] == [] and "--snapshot-epochs" in play["hint"]


def test_poking_a_run_uses_its_checkpoint_and_the_token(runs):
    from test_live_probe import IMAGES

    with LiveServer(runs=RunBrowser(runs)) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for token, expected in ((None, 403), (server.token, 200)):
            headers = {TOKEN_HEADER: token} if token else {}
            conn.request("POST", "/api/probe?run=exp/b", IMAGES["light-on-dark"], headers)
            answer = conn.getresponse()
            body = json.loads(answer.read())
            assert answer.status == expected
        conn.close()
    assert body["probabilities"] == run_probe(FIXTURE)(IMAGES["light-on-dark"])["probabilities"]


@pytest.mark.parametrize("argv, words", [
    (["{missing}"], "no runs folder at"),
    (["{runs}", "--port", "70000"], "--port 70000 is not a port number"),
    (["{runs}", "--host", "0.0.0.0"], "--host 0.0.0.0 listens on every interface"),
    (["{runs}", "--checkpoint", "worst"], "invalid choice: 'worst'"),
])
def test_serve_errors_are_one_line_and_exit_2(runs, tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.setitem(cli_main.COMMANDS, "serve", ("cnnlab.cli.serve", "browse runs"))
    given = [a.format(missing=tmp_path / "none", runs=runs) for a in argv]
    try:
        code = cli_main.main(["serve", *given])
    except SystemExit as exited:  # argparse's own errors (one line too: OneLineParser)
        code = exited.code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and words in line


def test_cnnlab_serve_serves_until_interrupted(runs):
    """The command end to end in its own process: it prints the address with the token, serves
    the table, and Ctrl-C ends it (exit code 130, cnnlab's "interrupted")."""
    code = ("import sys; from cnnlab.cli import main as m; "
            "m.COMMANDS['serve'] = ('cnnlab.cli.serve', 'browse runs'); "
            f"sys.exit(m.main(['serve', {str(runs)!r}, '--port', '0']))")
    process = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"at http://127\.0\.0\.1:(\d+)/#token=[\w-]{43}", line)
        assert match, line + process.stderr.read()
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=30)
        conn.request("GET", "/api/runs")
        table = json.loads(conn.getresponse().read())
        conn.close()
        assert [row["id"] for row in table["runs"]] == ["a", "exp/b"]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert process.stderr.read().strip() == "cnnlab serve: interrupted"
