"""The live channel: controls checked and queued for the trainer, events framed as server-sent
events (parsed here with the WHATWG algorithm, independently of the code), bounded per-page
queues that drop the oldest frame and count it, a replay for late pages."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.live.channel import (
    ACTIONS,
    HISTORY,
    MAX_CONTROLS,
    Control,
    LiveChannel,
    Subscriber,
    json_safe,
    sse_frame,
)


def parse_sse(text: str) -> list[dict]:
    """Events of an SSE stream, per the WHATWG HTML standard (9.2.6 "Interpreting an event
    stream"): fields up to a colon, one optional space after it, data lines joined by newlines,
    comment lines (leading colon) ignored, an event dispatched at each blank line."""
    events, current = [], {"data": []}
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if current["data"] or "event" in current:
                events.append({**current, "data": "\n".join(current["data"])})
            current = {"data": []}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            current["data"].append(value)
        elif field in ("event", "id", "retry"):
            current[field] = value
    return events


@pytest.mark.parametrize("body, expected", [
    ({"action": "pause"}, Control("pause")),
    ({"action": "stop", "value": 3}, Control("stop")),  # a value it does not take is ignored
    ({"action": "lr_multiplier", "value": 0.5}, Control("lr_multiplier", 0.5)),
    ({"action": "momentum", "value": 0}, Control("momentum", 0.0)),
    ({"action": "weight_decay", "value": 1e-4}, Control("weight_decay", 1e-4)),
    ({"action": "batch_size", "value": 128.0}, Control("batch_size", 128)),
])
def test_controls_from_the_page_are_checked_and_typed(body, expected):
    control = Control.from_request(body)
    assert control == expected and type(control.value) is type(expected.value)


@pytest.mark.parametrize("body, words", [
    ("pause", "JSON object"),
    ({"action": "explode"}, "unknown control 'explode'"),
    ({"action": "lr_multiplier"}, "needs a finite number"),
    ({"action": "lr_multiplier", "value": "2"}, "needs a finite number"),
    ({"action": "lr_multiplier", "value": True}, "needs a finite number"),
    ({"action": "lr_multiplier", "value": 0}, "must lie in"),
    ({"action": "lr_multiplier", "value": 1e9}, "must lie in"),
    ({"action": "momentum", "value": 1.0}, "[0, 1)"),  # momentum 1 never forgets: refused
    ({"action": "weight_decay", "value": -0.1}, "must lie in"),
    ({"action": "batch_size", "value": 12.5}, "whole number"),
    ({"action": "batch_size", "value": 0}, "must lie in"),
])
def test_bad_controls_are_one_line_config_errors(body, words):
    with pytest.raises(ConfigError) as caught:
        Control.from_request(body)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_non_finite_values_are_refused():
    for action in ("weight_decay", "batch_size"):
        for value in (math.nan, math.inf, -math.inf):
            with pytest.raises(ConfigError, match="finite number"):
                Control.from_request({"action": action, "value": value})


def test_every_action_the_issue_names_is_offered():
    assert set(ACTIONS) == {"pause", "resume", "lr_multiplier", "momentum", "weight_decay",
                            "batch_size", "save_now", "stop"}
    assert ACTIONS["batch_size"].when == "next epoch"  # mid-epoch would break resume


def test_controls_queue_in_order_and_drain_once():
    channel = LiveChannel()
    sent = [Control("pause"), Control("lr_multiplier", 0.1), Control("resume")]
    for control in sent:
        channel.request(control)
    assert channel.poll_controls() == sent
    assert channel.poll_controls() == []


def test_a_flood_of_controls_is_refused_not_stored():
    channel = LiveChannel()
    for _ in range(MAX_CONTROLS):
        channel.request(Control("save_now"))
    with pytest.raises(ConfigError, match="waiting"):
        channel.request(Control("save_now"))
    assert len(channel.poll_controls()) == MAX_CONTROLS


def test_json_safe_turns_non_finite_numbers_into_null():
    value = {"loss": math.nan, "acc": np.float32(0.5), "n": torch.tensor(3), "t": (1, math.inf)}
    assert json_safe(value) == {"loss": None, "acc": 0.5, "n": 3, "t": [1, None]}
    with pytest.raises(TypeError, match="set"):
        json_safe({"x": {1, 2}})


def test_sse_frames_parse_back_with_the_standard_algorithm():
    text = "line one\nline two\r\nline three\rend: with colon"
    frames = sse_frame("maps", text, 7) + sse_frame("status", '{"state":"training"}')
    events = parse_sse(frames.decode())
    assert events == [{"id": "7", "event": "maps", "data": text.replace("\r\n", "\n")
                       .replace("\r", "\n")},
                      {"event": "status", "data": '{"state":"training"}'}]
    for bad in ("", "a\nb", "a:b"):
        with pytest.raises(ValueError):
            sse_frame(bad, "x")


def test_published_events_reach_each_page_in_order_with_ids():
    channel = LiveChannel()
    page = channel.subscribe()
    channel.publish("status", {"state": "training"})
    channel.publish("scalars", {"step": 1, "loss": math.nan})
    events = parse_sse(b"".join(page.take(timeout=0)).decode())
    assert [e["event"] for e in events] == ["replay", "status", "scalars"]
    assert [e.get("id") for e in events] == [None, "1", "2"]
    assert json.loads(events[2]["data"]) == {"step": 1, "loss": None}
    with pytest.raises(ValueError, match="unknown event kind"):
        channel.publish("gossip", {})


def test_a_full_queue_drops_its_oldest_frames_and_counts_them():
    queue = Subscriber(capacity=3)
    for i in range(10):
        queue.offer(str(i).encode())
    assert queue.take(timeout=0) == [b"7", b"8", b"9"] and queue.dropped == 7
    queue.close()
    assert queue.take(timeout=0) is None


def test_a_page_that_never_reads_costs_the_publisher_nothing_but_drops():
    channel = LiveChannel(queue_frames=5)
    idle, reading = channel.subscribe(), channel.subscribe()
    received = []
    for step in range(100):
        channel.publish("scalars", {"step": step})
        received += reading.take(timeout=0)
    assert len(idle.frames) == 5 and idle.dropped == 101 - 5  # 100 events + the replay
    assert reading.dropped == 0 and len(received) == 101
    assert channel.stats() == {"published": 100, "clients": 2, "dropped": 96}
    channel.unsubscribe(idle)
    assert channel.stats()["dropped"] == 96 and channel.stats()["clients"] == 1  # still counted


def test_a_late_page_gets_the_history_and_the_latest_of_each_kind():
    channel = LiveChannel()
    for step in range(HISTORY["scalars"] + 10):
        channel.publish("scalars", {"step": step})
    channel.publish("maps", {"step": 1})
    channel.publish("maps", {"step": 2})
    channel.publish("epoch", {"epoch": 1})
    (replay,) = parse_sse(b"".join(channel.subscribe().take(timeout=0)).decode())
    events = json.loads(replay["data"])["events"]
    steps = [payload["step"] for kind, payload in events if kind == "scalars"]
    assert steps == list(range(10, HISTORY["scalars"] + 10))
    assert ["epoch", {"epoch": 1}] in events and ["maps", {"step": 2}] in events
    assert ["maps", {"step": 1}] not in events


def test_close_ends_every_stream():
    channel = LiveChannel()
    pages = [channel.subscribe() for _ in range(3)]
    channel.close()
    assert all(page.take(timeout=0) is None for page in pages)
    assert channel.stats()["clients"] == 0
