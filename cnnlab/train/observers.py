"""What watches a run train: one small interface, called by the shared epoch bookkeeping.

An :class:`Observer` is told when the run starts, when an epoch starts, after every optimizer
step, when an epoch ends (with its record, the line ``metrics.jsonl`` gets) and when the run
ends. Writing ``metrics.jsonl``, TensorBoard, the progress bar and the epoch line are observers;
a live view, per-step curves, a stuck-run warning or early stopping are added the same way
(``fit(..., observers=[...])``). Observers watch; the only things they may change are the run's
controls (``run.stop`` to end it at the next step, ``run.schedule.lr_scale``).

Example:
    >>> class Losses(Observer):
    ...     def __init__(self): self.seen = []
    ...     def on_step(self, run, step): self.seen.append(step.loss)
    >>> fit(TrainConfig(epochs=1), observers=[Losses()])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
import time

from cnnlab.runs.layout import METRICS, STEPS
from cnnlab.train.loop import StepInfo


class Observer:
    """Every hook is optional (the defaults do nothing). ``run`` is the training
    :class:`cnnlab.train.run.Run` (config, model, optimizer, state, run_dir)."""

    def on_run_start(self, run) -> None:
        pass

    def on_epoch_start(self, run) -> None:
        pass

    def on_step(self, run, step: StepInfo) -> None:
        pass

    def on_epoch_end(self, run, record: dict) -> None:
        pass

    def on_run_end(self, run, status: str) -> None:
        pass


class Observers(Observer):
    """Several observers called in order."""

    def __init__(self, observers: list[Observer]) -> None:
        self.observers = list(observers)

    def on_run_start(self, run) -> None:
        for observer in self.observers:
            observer.on_run_start(run)

    def on_epoch_start(self, run) -> None:
        for observer in self.observers:
            observer.on_epoch_start(run)

    def on_step(self, run, step: StepInfo) -> None:
        for observer in self.observers:
            observer.on_step(run, step)

    def on_epoch_end(self, run, record: dict) -> None:
        for observer in self.observers:
            observer.on_epoch_end(run, record)

    def on_run_end(self, run, status: str) -> None:
        for observer in self.observers:
            observer.on_run_end(run, status)


def append_line(run, name: str, record: dict) -> None:
    """Append ``record`` as one JSON line to the run's file ``name`` (a file the run owns)."""
    path = run.run_dir / name
    try:
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as error:  # a full disk: name the file
        raise OSError(error.errno, error.strerror, str(path)) from error
    run.folder.record(path)


class MetricsFile(Observer):
    """Appends each epoch record to ``RUN/metrics.jsonl`` (one JSON line per epoch)."""

    def on_epoch_end(self, run, record: dict) -> None:
        append_line(run, METRICS, record)


class StepMetricsFile(Observer):
    """Appends ``RUN/steps.jsonl``: per window of optimizer steps, the mean training loss and
    accuracy, the learning rate at its last step and images/s, so that the curves of a short
    run are real curves and a schedule's warm-up peak shows. About ``points`` lines per epoch
    (every step for short epochs); ``metrics.jsonl`` stays one line per epoch.

    A line: ``{"step": 120, "epoch": 1.25, "loss": 0.31, "acc": 0.9, "lr": 0.05,
    "images_per_s": 2400.0}`` (``epoch`` counts fractional epochs done after that step).
    """

    def __init__(self, points: int = 50) -> None:
        self.points = points
        self._reset()

    def _reset(self) -> None:
        self.loss_sum, self.correct, self.seen, self.steps = 0.0, 0.0, 0, 0
        self.started = time.perf_counter()

    def on_epoch_start(self, run) -> None:
        self._reset()

    def on_step(self, run, step: StepInfo) -> None:
        self.loss_sum += step.loss * step.seen
        self.correct, self.seen, self.steps = self.correct + step.correct, \
            self.seen + step.seen, self.steps + 1
        per_epoch = max(run.schedule.steps_per_epoch, 1)
        every = max(1, per_epoch // self.points)  # windows end at fixed batches: resumes agree
        if step.batch % every == 0 or step.batch >= per_epoch:
            self._write(run, step, per_epoch)

    def _write(self, run, step: StepInfo, per_epoch: int) -> None:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        record = {"step": step.step, "epoch": round(step.epoch + step.batch / per_epoch, 6),
                  "loss": self.loss_sum / max(self.seen, 1),
                  "acc": self.correct / max(self.seen, 1), "lr": step.lr,
                  "images_per_s": self.seen / seconds}
        append_line(run, STEPS, record)
        self._reset()


class TensorBoard(Observer):
    """``--tensorboard``: each epoch's scalars and the first conv layer's filters."""

    def __init__(self) -> None:
        self.log = None

    def on_epoch_end(self, run, record: dict) -> None:
        from cnnlab.train.tensorboard import TensorBoardLog  # the optional tensorboard package

        if self.log is None:
            self.log = TensorBoardLog(run.run_dir)
        self.log.write(record, run.model)

    def on_run_end(self, run, status: str) -> None:
        if self.log is not None:
            self.log.close()


class EpochLine(Observer):
    """The line printed after each epoch: losses, accuracies, the main metric, speed."""

    def __init__(self, log) -> None:
        self.log = log

    def on_epoch_end(self, run, record: dict) -> None:
        self.log(epoch_line(record, run.config.epochs, run.task.main_metric))


def epoch_line(record: dict, epochs: int, main: str = "acc") -> str:
    text = (f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  "
            f"acc {record['train_acc']:.4f}")
    if "val_acc" in record:
        text += f"  val_loss {record['val_loss']:.4f}  val_acc {record['val_acc']:.4f}"
    if main != "acc" and f"val_{main}" in record:
        text += f"  val_{main} {record[f'val_{main}']:.4f}"
    return text + f"  {record['images_per_s']:.0f} img/s  {record['seconds']:.1f}s"


class ProgressBar(Observer):
    """A tqdm bar per epoch with loss, accuracy and images/s. Where stderr is not a terminal
    (CI logs, notebooks) no bar is drawn: the epoch line says enough."""

    def __init__(self) -> None:
        self.bar, self.started, self.images = None, 0.0, 0

    def on_epoch_start(self, run) -> None:
        if not sys.stderr.isatty():
            return
        from tqdm import tqdm

        done = run.state.batch * run.config.batch_size
        self.bar = tqdm(total=len(run.train), initial=done, unit="img", leave=False,
                        desc=f"epoch {run.state.epoch + 1}/{run.config.epochs}",
                        dynamic_ncols=True)
        self.started, self.images = time.perf_counter(), 0

    def on_step(self, run, step: StepInfo) -> None:
        if self.bar is None:
            return
        self.bar.update(step.seen)
        self.images += step.seen
        if step.batch % 10 == 0:
            rate = self.images / max(time.perf_counter() - self.started, 1e-9)
            self.bar.set_postfix(loss=f"{step.loss:.4f}", ips=f"{rate:.0f}", refresh=False)

    def on_epoch_end(self, run, record: dict) -> None:
        self.close()

    def on_run_end(self, run, status: str) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def standard_observers(config, is_main: bool, log) -> list[Observer]:
    """What every run gets: rank 0 writes the metrics (and TensorBoard), prints the epoch
    line and, with ``progress``, shows a bar."""
    if not is_main:
        return []
    observers: list[Observer] = [ProgressBar()] if config.progress else []  # gone before lines
    observers += [MetricsFile(), StepMetricsFile(), EpochLine(log)]
    if config.tensorboard:
        observers.append(TensorBoard())
    return observers
