"""Changing a run while it trains (issue 22; lecture 003's convnetjs demo: pause, learning rate,
momentum, weight decay, batch size), through one explicit API between the loop's steps.

:class:`RunControls` is the last observer of every run (``run.controls``). A watcher (the live
page: :class:`cnnlab.live.observer.LiveObserver`) connects a source of requests; each request is
applied between two optimizer steps and written to ``RUN/events.jsonl`` as
``{"step", "epoch", "action", "value"}``, ``step`` being the global steps done when it took
effect:

- ``lr_multiplier`` x: the scheduled rate times x from the next step (``run.schedule.lr_scale``;
  with Muon both rates, since its filter groups scale the same schedule);
- ``momentum`` m: SGD's momentum (Muon: its SGD part) or Adam's beta1, from the next step;
- ``weight_decay`` w: every decayed group's decay, in the proportions the run started with;
- ``batch_size`` b: at the start of the next epoch (mid-epoch, the resume position, a batch
  index, would change meaning); the schedule keeps counting epochs;
- ``pause`` / ``resume``; ``save_now`` (the ``last`` checkpoint, now); ``stop`` (as Ctrl-C:
  ``last`` saved at the next step, continue with ``--resume``; but ``cnnlab train`` exits 0,
  and so do ``--nproc``'s workers, since it was asked for).

``--resume`` replays the settings (not pause, save or stop): those recorded up to the
checkpoint's step at once, later ones (a crash lost their checkpoint) at their own step, so a
resumed run trains exactly as an uninterrupted run given the same changes.

Data parallel: every rank applies the same changes at the same step: rank 0's requests are
broadcast every :data:`SYNC_EVERY` steps (and while paused).

Example:
    >>> requests = [("lr_multiplier", 0.5)]
    >>> run.controls.connect(lambda: [requests.pop()] if requests else [])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

from cnnlab.errors import ConfigError
from cnnlab.runs.layout import EVENTS
from cnnlab.runs.reader import read_events
from cnnlab.train.distributed import broadcast_object
from cnnlab.train.loop import Schedule, StepInfo
from cnnlab.train.observers import Observer, append_line
from cnnlab.train.optim import lr_at

SETTINGS = ("lr_multiplier", "momentum", "weight_decay", "batch_size")  # replayed on resume
ACTIONS = (*SETTINGS, "pause", "resume", "save_now", "stop")
PAUSE_POLL_S = 0.1
SYNC_EVERY = 10  # data parallel: steps between exchanges of rank 0's requests
STOP_SIGNAL = 0  # ``run.stop.signal`` of a stop asked for by a control (no signal: exit 0)

Request = tuple[str, "float | int | None"]
Source = Callable[[], list[Request]]
Listener = Callable[[int, list[dict], dict], None]  # (step, events applied, values now)


@dataclasses.dataclass
class ResizedSchedule(Schedule):
    """The schedule after a batch-size change at an epoch start: step ``s`` counts as
    ``s + offset``, the step it would be had every epoch had the new size, so warm-up, cosine
    and step decay still follow epochs."""

    offset: int = 0

    def lr(self, step: int) -> float:
        return self.lr_scale * lr_at(step + self.offset, self.total_steps, self.steps_per_epoch,
                                     self.config)


def check_value(action: str, value: object, images: int) -> float | int | None:
    """``value`` when ``action`` allows it, else ConfigError naming both (``images``: the
    training images, the largest batch)."""
    if action not in ACTIONS:
        raise ConfigError(f"unknown control {action!r}; one of: {', '.join(ACTIONS)}")
    if action not in SETTINGS:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)
    allowed = number and {"lr_multiplier": lambda v: v > 0,
                          "momentum": lambda v: 0 <= v < 1,
                          "weight_decay": lambda v: v >= 0,
                          "batch_size": lambda v: isinstance(v, int) and 1 <= v <= images,
                          }[action](value)
    if not allowed:
        raise ConfigError(f"control {action}: {value!r} is not allowed")
    return value


def decay_shares(optimizer, weight_decay: float) -> list[float]:
    """Each group's weight decay as a multiple of the run's ``--weight-decay`` (biases 0, a
    bias group under ``--bias-lr-scale`` 1/scale, a Caffe ``decay_mult``...); with no decay
    configured, the groups of weights (no 1-d parameters) get 1."""
    if weight_decay > 0:
        return [group.get("weight_decay", 0.0) / weight_decay for group in optimizer.param_groups]
    return [float(not group.get("muon") and all(p.dim() > 1 for p in group["params"]))
            for group in optimizer.param_groups]


def set_momentum(optimizer, momentum: float) -> None:
    """SGD's momentum (not Muon's filter groups: ``--muon-momentum``) or Adam's beta1."""
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif "momentum" in group and not group.get("muon"):
            group["momentum"] = momentum


def momentum_of(optimizer) -> float | None:
    for group in optimizer.param_groups:
        if "betas" in group:
            return group["betas"][0]
        if "momentum" in group and not group.get("muon"):
            return group["momentum"]
    return None


class RunControls(Observer):
    """The run's changeable settings (see the module text); ``run.controls``."""

    def __init__(self) -> None:
        self.sources: list[Source] = []
        self.listeners: list[Listener] = []
        self.paused = False
        self.pending_batch: int | None = None
        self.scheduled: list[dict] = []  # replayed events waiting for their step
        self.shares: list[float] = []
        self.weight_decay = 0.0

    def keep_proportions(self, optimizer, weight_decay: float) -> None:
        """Remember each group's share of ``weight_decay`` from the optimizer as built (before
        a resumed checkpoint's groups, which hold changed decays, are loaded)."""
        self.weight_decay = weight_decay
        self.shares = decay_shares(optimizer, weight_decay)

    def connect(self, source: Source, listener: Listener | None = None) -> None:
        """Take requests from ``source()`` between steps and tell ``listener`` what was applied.
        With data parallel, every rank connects (the other ranks' sources are not read)."""
        self.sources.append(source)
        if listener is not None:
            self.listeners.append(listener)

    def values(self, run) -> dict:
        return {"paused": self.paused, "lr_multiplier": run.schedule.lr_scale,
                "momentum": momentum_of(run.optimizer), "weight_decay": self.weight_decay,
                "batch_size": run.train.batch_size, "next_batch_size": self.pending_batch}

    # -- the observer hooks ----------------------------------------------------------------
    def on_run_start(self, run) -> None:
        events = sorted((e for e in read_events(run.run_dir) if e["action"] in SETTINGS),
                        key=lambda e: e["step"])
        replayed = []
        for event in events:
            if event["step"] <= run.state.step:
                self._replay_one(run, event)
                replayed.append({**event, "replayed": True})
            else:
                self.scheduled.append(event)
        if replayed:
            self._notify(run, replayed)

    def on_epoch_start(self, run) -> None:
        self._replay(run, lambda e: e["step"] <= run.state.step)
        if self.pending_batch is not None:
            size, self.pending_batch = self.pending_batch, None
            event = self._event(run, "batch_size", size)
            self._set(run, event)
            self._record(run, event)
            self._notify(run, [event])

    def on_step(self, run, step: StepInfo) -> None:
        self._replay(run, lambda e: e["step"] <= step.step and e["action"] != "batch_size")
        if self.sources and (not run.dist.enabled or step.step % SYNC_EVERY == 0):
            self._take(run)
        while self.paused and not run.stop:
            time.sleep(PAUSE_POLL_S)
            self._take(run)

    # -- applying ----------------------------------------------------------------------------
    def _replay(self, run, due: Callable[[dict], bool]) -> None:
        ready = [e for e in self.scheduled if due(e)]
        self.scheduled = [e for e in self.scheduled if not due(e)]
        for event in ready:
            self._replay_one(run, event)
        if ready:
            self._notify(run, [{**e, "replayed": True} for e in ready])

    def _replay_one(self, run, event: dict) -> None:
        try:
            self._set(run, event)
        except ConfigError as error:  # a hand-edited events file
            raise ConfigError(f"{run.run_dir / EVENTS}: the event at step {event['step']}: "
                              f"{error}") from None

    def _take(self, run) -> None:
        """Apply what the sources asked for (rank 0's, on every rank)."""
        requests = [r for source in self.sources for r in source()] if run.dist.is_main else []
        if run.dist.enabled:
            requests, stopping = broadcast_object((requests, bool(run.stop)), run.dist)
            if stopping and not run.stop:  # leave a pause together with rank 0
                run.stop.request(STOP_SIGNAL)
        applied = []
        for action, value in requests:
            try:
                applied.append(self.apply(run, action, value))
            except ConfigError as error:  # a request the run cannot take never stops it
                applied.append({**self._event(run, action, value), "error": str(error)})
        if applied:
            self._notify(run, applied)

    def apply(self, run, action: str, value: float | int | None = None) -> dict:
        """Apply one request now (``batch_size``: at the next epoch start) and return its
        event (recorded in ``events.jsonl`` unless it waits for the epoch)."""
        value = check_value(action, value, len(run.train))
        event = self._event(run, action, value)
        if action == "batch_size":
            self.pending_batch = value
            return {**event, "when": "next epoch"}
        if action in SETTINGS:
            self._set(run, event)
        elif action in ("pause", "resume"):
            self.paused = action == "pause"
        elif action == "save_now":
            run.save("last")
            run.write_index("running")
        elif action == "stop":
            self.paused = False
            run.stop.request(STOP_SIGNAL)
        self._record(run, event)
        return event

    def _set(self, run, event: dict) -> None:
        """Change one setting (no record: also the replay of a recorded event)."""
        action = event["action"]
        value = check_value(action, event["value"], len(run.train))
        if action == "lr_multiplier":
            run.schedule.lr_scale = value
        elif action == "momentum":
            set_momentum(run.optimizer, value)
        elif action == "weight_decay":
            self.weight_decay = value
            for group, share in zip(run.optimizer.param_groups, self.shares, strict=True):
                group["weight_decay"] = value * share
        elif action == "batch_size":
            run.train = dataclasses.replace(run.train, batch_size=value)
            steps = run.train.num_batches()
            run.schedule = ResizedSchedule(steps * run.config.epochs, steps, run.config,
                                           run.schedule.lr_scale,
                                           offset=event["epoch"] * steps - event["step"])

    @staticmethod
    def _event(run, action: str, value: float | int | None) -> dict:
        return {"step": run.state.step, "epoch": run.state.epoch, "action": action,
                "value": value}

    def _record(self, run, event: dict) -> None:
        """Append ``event`` to ``RUN/events.jsonl`` (rank 0)."""
        if not run.dist.is_main:
            return
        append_line(run, EVENTS, event)

    def _notify(self, run, events: list[dict]) -> None:
        for listener in self.listeners:
            listener(run.state.step, events, self.values(run))
