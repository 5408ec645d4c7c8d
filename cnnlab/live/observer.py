"""``cnnlab train --live``: the training side of the live page, one observer of the loop
(issue 22; lecture 003's convnetjs demo, where a network trains in front of you).

:class:`LiveObserver` starts the server (:mod:`cnnlab.live.server`) when the run starts and
publishes on its channel (:mod:`cnnlab.live.channel`, never waiting for a page): every ``every``
steps the loss, accuracy and images/s of those steps and the learning rate; every
``snapshot_every`` steps (fewer when a snapshot would take more than :data:`SNAPSHOT_SHARE` of the
time: a small model's steps are fast), at each epoch's end and at the run's end the per-layer
statistics, the
activation maps, filters and gradients of a fixed test image and the fixed test batch's
predictions (:mod:`cnnlab.live.snapshot`); each epoch's record; the run's state. The page's
controls go to the run's controls (:mod:`cnnlab.train.controls`: applied between steps,
recorded in ``RUN/events.jsonl``). "Poke the network" probes a copy of the weights taken at
each snapshot (:class:`cnnlab.live.probe.LiveProbe`); after the run, the best checkpoint's
(the weights ``cnnlab predict`` uses). With data parallel, rank 0 serves.

Example:
    >>> fit(TrainConfig(model="lenet5", data="digits"), observers=[LiveObserver()])  # doctest: +SKIP
    live page: http://127.0.0.1:40125/#token=...
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch

from cnnlab.live.channel import LiveChannel
from cnnlab.live.probe import LiveProbe
from cnnlab.live.server import LiveServer
from cnnlab.live.snapshot import (
    display_images,
    inspect_batch,
    layer_stats,
    maps_payload,
    predictions_payload,
)
from cnnlab.runs.reader import read_index
from cnnlab.train.loop import StepInfo
from cnnlab.train.observers import Observer

STATES = {"completed": "finished", "interrupted": "stopped", "stopped": "stopped"}
SNAPSHOT_SHARE = 0.02  # snapshots take at most this share of the training time
DRAIN_S = 2.0  # at the end, how long pages may take to read the last events


class LiveObserver(Observer):
    """Serves the live page of the run it watches (see the module text)."""

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1", every: int = 10,
                 snapshot_every: int = 50, images: int = 8, linger_s: float = 0.0,
                 announce: Callable[[str], None] | None = None,
                 channel: LiveChannel | None = None) -> None:
        self.port, self.host, self.every, self.snapshot_every = port, host, every, snapshot_every
        self.images, self.linger_s = images, linger_s
        self.announce = announce or flushed_print  # the address, even when stdout is a pipe
        self.channel = channel or LiveChannel()
        self.server: LiveServer | None = None
        self.probe: LiveProbe | None = None
        self.fixed: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None = None
        self.run, self.first_step = None, True
        self.snapshot_cost, self.snapshot_end = 0.0, 0.0  # seconds: the last one took, ended
        self._window_start()

    def _window_start(self) -> None:
        self.loss_sum, self.correct, self.seen = 0.0, 0.0, 0
        self.started = time.perf_counter()

    # -- the observer hooks ----------------------------------------------------------------
    def on_run_start(self, run) -> None:
        if not run.dist.is_main:  # every rank applies rank 0's requests (train.controls)
            run.controls.connect(lambda: [])
            return
        self.run, self.fixed = run, fixed_batch(run, self.images)
        if run.task.output_kind == "class":
            self.probe = LiveProbe(run.model, run.preprocess, run.classes)
        self.server = LiveServer(channel=self.channel, probe=self.probe, host=self.host,
                                 port=self.port, log=self.announce).start()
        self.announce(f"live page: {self.server.url}")
        run.controls.connect(self._requests, self._applied)
        self._status(run, "training")
        self._applied(run.state.step, [], run.controls.values(run))  # the settings' values

    def on_epoch_start(self, run) -> None:
        self._window_start()

    def on_step(self, run, step: StepInfo) -> None:
        if self.server is None:
            return
        self.loss_sum += step.loss * step.seen
        self.correct, self.seen = self.correct + step.correct, self.seen + step.seen
        if self.first_step:  # numbers on the page soon, then the first pictures
            self.first_step = False
            self._scalars(run, step)
            self._snapshot(run)
        elif step.step % self.every == 0:
            self._scalars(run, step)
        if step.step % self.snapshot_every == 0 and (
                time.perf_counter() - self.snapshot_end >= self.snapshot_cost / SNAPSHOT_SHARE):
            self._snapshot(run)

    def on_epoch_end(self, run, record: dict) -> None:
        if self.server is None:
            return
        self.channel.publish("epoch", record)
        self._snapshot(run)

    def on_run_end(self, run, status: str) -> None:
        if self.server is None:
            return
        self._snapshot(run)  # a completed run's model holds its best weights now
        test = read_index(run.run_dir).get("test")
        self._status(run, STATES.get(status, status), test=test if isinstance(test, dict)
                     else None)
        try:
            if self.linger_s > 0:
                self.announce(f"the run ended; the live page stays up for {self.linger_s:g} s "
                              "(Ctrl-C to close it now)")
                time.sleep(self.linger_s)
            self._drain()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.channel.close()
            self.server = None

    # -- what the page gets ----------------------------------------------------------------
    def _status(self, run, state: str, **extra: object) -> None:
        config = run.config
        self.channel.publish("status", {
            "state": state, "run": run.run_dir.name, "model": config.model, "data": config.data,
            "epoch": run.state.epoch + (state == "training"), "epochs": config.epochs,
            "step": run.state.step, **extra})

    def _scalars(self, run, step: StepInfo) -> None:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        seen = max(self.seen, 1)
        self.channel.publish("scalars", {
            "step": step.step, "epoch": step.epoch + 1,
            "examples": run.state.epoch * len(run.train) + run.state.seen,
            "loss": self.loss_sum / seen, "accuracy": self.correct / seen, "lr": step.lr,
            "images_per_s": self.seen / seconds, "ms_per_example": 1000 * seconds / seen,
            "forward_ms": None, "backward_ms": None})
        self._window_start()

    def _snapshot(self, run) -> None:
        """Layers, maps and predictions of the fixed batch; the probe's weights now."""
        started = time.perf_counter()
        x, y, pictures = self.fixed
        step = run.state.step
        seen = inspect_batch(run.model, x, y)
        self.channel.publish("layers", {"step": step, "layers": layer_stats(seen)})
        self.channel.publish("maps", {"step": step, **maps_payload(seen, pictures[0])})
        if y is not None:
            self.channel.publish("predictions", {"step": step, **predictions_payload(
                seen.logits, y, run.classes, pictures)})
        if self.probe is not None:
            self.probe.update(run.model)
        self.snapshot_end = time.perf_counter()
        self.snapshot_cost = self.snapshot_end - started

    def _requests(self) -> list[tuple]:
        return [(control.action, control.value) for control in self.channel.poll_controls()]

    def _applied(self, step: int, events: list[dict], values: dict) -> None:
        self.channel.publish("controls", {"step": step, "applied": events, "values": values})
        for event in events:
            if event["action"] in ("pause", "resume") and "error" not in event:
                self._status(self.run, "paused" if values["paused"] else "training")

    def _drain(self) -> None:
        """Give connected pages up to :data:`DRAIN_S` to read what is queued for them."""
        until = time.monotonic() + DRAIN_S
        while time.monotonic() < until and self.channel.pending():
            time.sleep(0.05)


def flushed_print(line: str) -> None:
    print(line, flush=True)


def fixed_batch(run, count: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The first ``count`` images of the run's test split (else validation, else training),
    prepared as the model sees them, their labels (None unless one class per image) and the
    pictures ``(B, C, H, W)`` in [0, 1]."""
    source = run.test or run.val or run.train
    count = min(count, len(source))
    source = dataclasses.replace(source, images=source.images[:count],
                                 labels=source.labels[:count], batch_size=count, augment=None,
                                 rank=0, world_size=1)
    x, y = next(source.batches())
    labels = y if run.task.output_kind == "class" else None
    return x, labels, display_images(x, run.preprocess)
