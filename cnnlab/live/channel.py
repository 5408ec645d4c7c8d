"""The bridge between a training run and its live page (lecture 003, "Method currently used":
the convnetjs demo where a network trains in front of you).

The training side calls :meth:`LiveChannel.publish` (never blocks: each connected page has a
bounded queue, and a full queue drops its oldest frame and counts it) and, once per step,
:meth:`LiveChannel.poll_controls` for what the page asked for. The server
(:mod:`cnnlab.live.server`) turns published events into server-sent events and page requests
into :class:`Control` values.

Events the page understands (``kind``: payload fields; :mod:`cnnlab.live.snapshot` computes them):

============  ======================================================================================
status        state (starting, training, paused, evaluating, finished, stopped, failed), run,
              model, data, epoch, epochs, step, message; ``test`` (the final test metrics)
scalars       every N steps: step, epoch, examples (seen so far), loss, accuracy (of the batch), lr,
              images_per_s, ms_per_example; forward_ms and backward_ms (per example) or null
epoch         one per epoch, as in metrics.jsonl: epoch, step, train_loss, train_acc, val_loss,
              val_acc, lr
layers        every M steps: step, layers: [{name, type, output, sizes, params, act: {min, max,
              mean}, grad: {min, max, mean} | null}]
maps          every M steps: step, input (PNG data URI), layers: [{name, type, activations,
              gradients, weights, weight_grads}] (PNG data URIs or null)
predictions   every M steps: step, accuracy, classes, items: [{image, label, top: [[class, p]
              x3], correct}]
controls      what the trainer applied: step, applied: [Control dicts], values: {paused,
              lr_multiplier, momentum, weight_decay, batch_size}
============  ======================================================================================

A page that connects late first gets one ``replay`` event: the history of ``scalars`` and
``epoch`` events and the latest event of every other kind.

Example:
    >>> channel = LiveChannel()
    >>> channel.publish("scalars", {"step": 10, "loss": 2.1})
    >>> channel.request(Control("lr_multiplier", 0.5))
    >>> channel.poll_controls()
    [Control(action='lr_multiplier', value=0.5)]
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from dataclasses import asdict, dataclass

from cnnlab.errors import ConfigError

EVENT_KINDS = ("status", "scalars", "epoch", "layers", "maps", "predictions", "controls")
HISTORY = {"scalars": 5000, "epoch": 2000}  # kinds replayed in full (up to this many events)
QUEUE_FRAMES = 64  # frames waiting per page before the oldest is dropped
MAX_CONTROLS = 1000  # requests waiting for the trainer before new ones are refused


@dataclass(frozen=True)
class Action:
    """One control the page offers: the value it takes (None, ``float`` or ``int``), its
    range (inclusive low, exclusive high when ``open_high``) and when it takes effect."""

    value: type | None
    low: float = 0.0
    high: float = math.inf
    open_high: bool = False
    when: str = "next step"


ACTIONS: dict[str, Action] = {
    "pause": Action(None),
    "resume": Action(None),
    "lr_multiplier": Action(float, 1e-4, 100.0),  # times the scheduled rate (for Muon: both)
    "momentum": Action(float, 0.0, 1.0, open_high=True),  # SGD momentum or Adam's beta1
    "weight_decay": Action(float, 0.0, 1.0),
    "batch_size": Action(int, 1, 65536, when="next epoch"),  # mid-epoch breaks resume
    "save_now": Action(None),
    "stop": Action(None),
}


@dataclass(frozen=True)
class Control:
    """A request from the page, applied by the trainer at the next step (``batch_size``: at the
    next epoch). ``value`` is None for pause, resume, save_now and stop."""

    action: str
    value: float | int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_request(cls, body: object) -> Control:
        """``{"action": "momentum", "value": 0.9}`` from the page -> a checked Control;
        ConfigError names the problem (unknown action, missing, wrong or out-of-range value)."""
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            raise ConfigError('a control is a JSON object like {"action": "pause"}')
        name = body["action"]
        if name not in ACTIONS:
            raise ConfigError(f"unknown control {name!r}; choose one of: {', '.join(ACTIONS)}")
        spec, value = ACTIONS[name], body.get("value")
        if spec.value is None:
            return cls(name)
        return cls(name, _checked_value(name, spec, value))


def _checked_value(name: str, spec: Action, value: object) -> float | int:
    """The value of a control converted to its type and checked against its range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"control {name} needs a finite number, got {value!r}")
    if spec.value is int and float(value) != int(value):
        raise ConfigError(f"control {name} needs a whole number, got {value!r}")
    number = spec.value(value)
    above = number >= spec.high if spec.open_high else number > spec.high
    if number < spec.low or above:
        bracket = ")" if spec.open_high else "]"
        raise ConfigError(f"control {name} must lie in [{spec.low:g}, {spec.high:g}{bracket}, "
                          f"got {value!r}")
    return number


def json_safe(value: object) -> object:
    """Payload -> JSON-ready values: NaN and infinities (a diverging loss) become None, tuples
    lists, NumPy/torch scalars plain numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):  # a NumPy or torch scalar
        return json_safe(value.item())
    raise TypeError(f"cannot send a {type(value).__name__} to the page")


def sse_frame(kind: str, data: str, event_id: int | None = None) -> bytes:
    """One server-sent event: ``id``, ``event`` and one ``data:`` line per line of ``data``,
    ended by a blank line (WHATWG HTML, "Server-sent events", 9.2.6)."""
    if not kind or any(c in kind for c in "\r\n:"):
        raise ValueError(f"bad event name {kind!r}")
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines.append(f"event: {kind}")
    lines += [f"data: {line}" for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class Subscriber:
    """One page's queue of encoded frames: bounded, dropping the oldest frame when full."""

    def __init__(self, capacity: int) -> None:
        self.frames: deque[bytes] = deque()
        self.capacity, self.dropped, self.closed = capacity, 0, False
        self._ready = threading.Condition()

    def offer(self, frame: bytes) -> None:
        """Queue ``frame`` without waiting; a full queue loses its oldest frame (counted)."""
        with self._ready:
            if len(self.frames) >= self.capacity:
                self.frames.popleft()
                self.dropped += 1
            self.frames.append(frame)
            self._ready.notify()

    def take(self, timeout: float) -> list[bytes] | None:
        """Every queued frame (waiting up to ``timeout`` s for one); None once closed."""
        with self._ready:
            self._ready.wait_for(lambda: self.frames or self.closed, timeout)
            if self.closed:
                return None
            frames = list(self.frames)
            self.frames.clear()
            return frames

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify_all()


class LiveChannel:
    """Events from the trainer to every connected page; controls from the pages to the trainer.

    Thread-safe; :meth:`publish` and :meth:`poll_controls` never wait for a page.
    """

    def __init__(self, *, queue_frames: int = QUEUE_FRAMES) -> None:
        self.queue_frames = queue_frames
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._history = {kind: deque(maxlen=size) for kind, size in HISTORY.items()}
        self._latest: dict[str, str] = {}
        self._controls: deque[Control] = deque()
        self.published = 0
        self._dropped_by_gone = 0  # frames dropped by pages that have since disconnected

    def publish(self, kind: str, payload: dict) -> None:
        """Send ``payload`` (a JSON-ready dict, see the module table) as a ``kind`` event."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; one of {', '.join(EVENT_KINDS)}")
        data = json.dumps(json_safe(payload), separators=(",", ":"), allow_nan=False)
        with self._lock:
            self.published += 1
            frame = sse_frame(kind, data, self.published)
            if kind in self._history:
                self._history[kind].append(data)
            else:
                self._latest[kind] = data
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.offer(frame)

    def subscribe(self) -> Subscriber:
        """A new page's queue, starting with one ``replay`` frame of what it missed."""
        subscriber = Subscriber(self.queue_frames)
        with self._lock:
            events = [f'["{kind}",{data}]' for kind, history in self._history.items()
                      for data in history]
            events += [f'["{kind}",{data}]' for kind, data in self._latest.items()]
            subscriber.offer(sse_frame("replay", '{"events":[' + ",".join(events) + "]}"))
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.discard(subscriber)
                self._dropped_by_gone += subscriber.dropped
        subscriber.close()

    def stats(self) -> dict:
        """Events published, pages connected, frames dropped (by every page so far)."""
        with self._lock:
            subscribers, gone = list(self._subscribers), self._dropped_by_gone
        return {"published": self.published, "clients": len(subscribers),
                "dropped": gone + sum(s.dropped for s in subscribers)}

    def pending(self) -> int:
        """Frames queued for the connected pages and not yet written to them."""
        with self._lock:
            subscribers = list(self._subscribers)
        return sum(len(s.frames) for s in subscribers)

    def request(self, control: Control) -> None:
        """Queue a page's request for the trainer (ConfigError when too many are waiting)."""
        with self._lock:
            if len(self._controls) >= MAX_CONTROLS:
                raise ConfigError(f"{MAX_CONTROLS} controls are waiting for the trainer; "
                                  "is the run paused in a step that never ends?")
            self._controls.append(control)

    def poll_controls(self) -> list[Control]:
        """Every control requested since the last call, oldest first (the trainer applies
        them at the next step)."""
        with self._lock:
            controls = list(self._controls)
            self._controls.clear()
        return controls

    def close(self) -> None:
        """End every page's stream (the server's threads then finish)."""
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for subscriber in subscribers:
            subscriber.close()
