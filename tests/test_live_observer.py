"""``cnnlab train --live`` (issue 22, cnnlab/live/observer.py): one observer of the loop feeds
the page (scalars every N steps, layers/maps/predictions every M steps, each epoch's record,
the final test result as run.json has it), the page's controls reach the run between steps
(recorded in RUN/events.jsonl), uploads are probed on the current weights and a bad one is a
4xx, and a page that never reads does not slow or stop training."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest
from test_live_channel import parse_sse
from test_live_server import small_png

from cnnlab.cli.main import main
from cnnlab.config import TrainConfig
from cnnlab.live.channel import LiveChannel
from cnnlab.live.observer import LiveObserver
from cnnlab.live.server import TOKEN_HEADER
from cnnlab.runs import open_run
from cnnlab.train.fit import fit
from cnnlab.train.observers import Observer
from cnnlab.train.optim import lr_at


def config(out, **overrides) -> TrainConfig:
    # 20 digits per class: 180 training images after the validation split, 3 batches of 64
    values = dict(model="lenet5", data="digits", epochs=2, train_per_class=20, out=str(out),
                  progress=False, threads=1, seed=0, name="r")
    return TrainConfig(**{**values, **overrides})


def replayed(channel: LiveChannel) -> list[tuple[str, dict]]:
    """What a page connecting now receives first: ``[(kind, payload)]``."""
    subscriber = channel.subscribe()
    (frame,) = subscriber.take(1)
    (event,) = parse_sse(frame.decode())
    return [(kind, payload) for kind, payload in json.loads(event["data"])["events"]]


def request(port: int, method: str, path: str, body: bytes = b"",
            headers: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    answer = connection.getresponse()
    status, data = answer.status, json.loads(answer.read() or b"null")
    connection.close()
    return status, data


def test_the_page_gets_scalars_snapshots_epochs_and_the_final_result(tmp_path):
    lines: list[str] = []
    live = LiveObserver(every=2, snapshot_every=4, announce=lines.append)
    result = fit(config(tmp_path), observers=[live], log=lambda *_: None)
    assert lines[0].startswith("live page: http://127.0.0.1:") and "#token=" in lines[0]
    events = replayed(live.channel)
    kinds = [kind for kind, _ in events]
    scalars = [payload for kind, payload in events if kind == "scalars"]
    assert [s["step"] for s in scalars] == [1, 2, 4, 6]  # the first step, then every 2
    steps = {s["step"]: s for s in open_run(result.run_dir).steps()}
    assert scalars[1]["lr"] == steps[2]["lr"] and scalars[1]["examples"] == 128
    assert scalars[-1]["examples"] == 2 * 180
    # a window is the steps since the last event in this epoch, weighted by images: step 4
    # alone (an epoch starts), steps 5 and 6 (64 and 52 images)
    assert scalars[2]["loss"] == pytest.approx(steps[4]["loss"])
    assert scalars[3]["loss"] == pytest.approx((steps[5]["loss"] * 64 + steps[6]["loss"] * 52)
                                               / 116)
    epochs = [payload for kind, payload in events if kind == "epoch"]
    assert epochs == open_run(result.run_dir).metrics()
    status = dict(events)["status"]
    assert status["state"] == "finished" and status["step"] == 6
    assert status["test"] == open_run(result.run_dir).index["test"]
    assert {"layers", "maps", "predictions"} <= set(kinds)
    predictions = dict(events)["predictions"]
    assert len(predictions["items"]) == 8 and predictions["step"] == 6
    with pytest.raises(OSError):  # the server closed with the run
        socket.create_connection(("127.0.0.1", urlsplit(lines[0].split()[-1]).port), 2)


class Student(Observer):
    """After step 3, does what a student's page does, over HTTP."""

    def __init__(self, live: LiveObserver) -> None:
        self.live, self.answers = live, {}

    def on_step(self, run, step) -> None:
        if step.step != 3:
            return
        port, token = self.live.server.port, self.live.server.token
        control = json.dumps({"action": "lr_multiplier", "value": 0.5}).encode()
        with_token = {TOKEN_HEADER: token, "Content-Type": "application/json"}
        self.answers["no token"] = request(port, "POST", "/api/control", control)
        self.answers["control"] = request(port, "POST", "/api/control", control, with_token)
        self.answers["bad upload"] = request(port, "POST", "/api/probe", b"not an image",
                                             {TOKEN_HEADER: token})
        self.answers["upload"] = request(port, "POST", "/api/probe", small_png(),
                                         {TOKEN_HEADER: token})


def test_the_pages_requests_reach_the_run_between_steps(tmp_path):
    live = LiveObserver(every=1, snapshot_every=100, announce=lambda _: None)
    student = Student(live)
    result = fit(config(tmp_path), observers=[live, student], log=lambda *_: None)
    assert result.status == "completed"
    answers = student.answers
    assert answers["no token"][0] == 403 and "token" in answers["no token"][1]["error"]
    assert answers["control"][0] == 202
    assert answers["bad upload"][0] == 400 and "uploaded image" in answers["bad upload"][1]["error"]
    assert answers["upload"][0] == 200
    assert sum(answers["upload"][1]["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    run = open_run(result.run_dir)
    assert run.events() == [{"step": 3, "epoch": 0, "action": "lr_multiplier", "value": 0.5}]
    controls = [p for kind, p in replayed(live.channel) if kind == "controls"]
    assert controls[0]["step"] == 3 and controls[0]["values"]["lr_multiplier"] == 0.5
    steps = {s["step"]: s for s in run.steps()}  # step 4 (0-based 3) at half the cosine's
    assert steps[3]["lr"] == pytest.approx(lr_at(2, 6, 3, config(tmp_path)))
    assert steps[4]["lr"] == pytest.approx(0.5 * lr_at(3, 6, 3, config(tmp_path)))


def test_a_page_that_never_reads_does_not_hold_training_up(tmp_path):
    channel = LiveChannel(queue_frames=2)
    stalled = channel.subscribe()  # connected, never reads
    live = LiveObserver(every=1, snapshot_every=1, announce=lambda _: None, channel=channel)
    result = fit(config(tmp_path), observers=[live], log=lambda *_: None)
    assert result.status == "completed"
    assert stalled.dropped > 10 and len(stalled.frames) == 2


def test_live_flags_are_checked(capsys):
    assert main(["train", "--live-host", "192.168.1.5"]) == 2
    assert "--live-host and --live-linger need --live" in capsys.readouterr().err
    assert main(["train", "--live", "70000"]) == 2
    assert "not a port number" in capsys.readouterr().err
