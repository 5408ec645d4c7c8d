"""The epoch bookkeeping every training shares: train, validate, pick the best, save, stop.

``fit`` and fine-tuning's feature mode run the same :func:`train_epochs`; they differ only in
their :class:`EpochTrainer` (how one epoch is trained and how the validation split is scored).
After each epoch :func:`end_epoch` builds the record, keeps ``best`` by the task's main
validation metric (ties go to the later, longer-trained epoch), saves ``last`` every
``--checkpoint-every`` epochs and the ``--snapshot-epochs``, and tells the observers. A stop
request (Ctrl-C, SIGTERM, an observer) ends the run at the next step with ``last`` saved; an
observer's ``run.finish`` (early stopping) ends it as completed after the epoch.
"""

from __future__ import annotations

import time

from cnnlab.runs.layout import snapshot_name
from cnnlab.train.distributed import agree
from cnnlab.train.loop import StepInfo, StopFlag, train_one_epoch


class EpochTrainer:
    """How a run trains one epoch and scores its validation split: the whole network on
    images (the default; fine-tuning's feature mode trains a head on cached features)."""

    def train_epoch(self, run, stop: StopFlag, on_step) -> bool:
        """Train from ``run.state.batch`` to the end of the epoch; False if stopped early."""
        config = run.config
        return train_one_epoch(run.train_model, run.train, run.optimizer, run.state,
                               schedule=run.schedule, seed=config.seed,
                               precision=config.precision,
                               label_smoothing=config.label_smoothing, stop=stop,
                               on_step=on_step, sync=run.sync, task=run.task,
                               lookahead=run.lookahead)

    def validate(self, run) -> dict:
        return run.evaluate(run.val)


def train_epochs(run, trainer: EpochTrainer, stop: StopFlag, stop_after: int | None,
                 log) -> str:
    """Train the remaining epochs; returns ``completed``, ``stopped`` (``stop_after``
    epochs done) or ``interrupted`` (a stop request)."""
    config, state, observers = run.config, run.state, run.observers
    first_epoch = state.epoch
    while state.epoch < config.epochs and not run.finish:  # finish: e.g. early stopping
        if stop_after is not None and state.epoch - first_epoch >= stop_after:
            run.save("last")  # --checkpoint-every may have skipped this epoch
            return "stopped"
        if agree(bool(stop), run.dist):  # a signal during validation: stop before next epoch
            return _interrupted(run, log, f"after epoch {state.epoch}")
        observers.on_epoch_start(run)
        meter = _Speed(run)
        finished = trainer.train_epoch(run, stop, meter.on_step)
        if not finished:
            return _interrupted(run, log, f"at epoch {state.epoch + 1}, batch {state.batch}")
        end_epoch(run, trainer, meter.seconds(), meter.rate())
    if agree(bool(stop), run.dist):  # a signal during the last epoch's validation
        return _interrupted(run, log, f"after epoch {state.epoch} (the last; the test "
                                      "evaluation was skipped and runs on resume)")
    return "completed"


class _Speed:
    """Images trained and seconds spent in this session of the epoch; passes each step on to
    the run's observers."""

    def __init__(self, run) -> None:
        self.run, self.started, self.images = run, time.perf_counter(), 0

    def on_step(self, step: StepInfo) -> None:
        self.images += step.seen
        self.run.observers.on_step(self.run, step)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def rate(self) -> float:
        return self.images / max(self.seconds(), 1e-9)


def _interrupted(run, log, where: str) -> str:
    run.save("last")
    log(f"interrupted: saved {run.run_dir / 'last.safetensors'} {where}; continue with "
        f"--resume {run.run_dir}")
    return "interrupted"


def end_epoch(run, trainer: EpochTrainer, seconds: float, rate: float) -> None:
    """Record the finished epoch, keep the best checkpoint, save, tell the observers."""
    config, state = run.config, run.state
    record = epoch_record(run, seconds, rate)
    if run.val is not None:
        record.update(validation_record(trainer.validate(run)))
    metric = record.get(run.main_metric, record.get("val_acc", record["train_acc"]))
    improved = metric >= state.best_metric  # ties go to the later, longer-trained epoch
    if improved:
        state.best_metric, state.best_epoch = metric, state.epoch
    state.epoch += 1
    state.start_epoch()
    run.observers.on_epoch_end(run, record)
    if improved:
        run.save("best", record)
    if state.epoch % config.checkpoint_every == 0 or state.epoch == config.epochs:
        run.save("last", record)
    if state.epoch in config.snapshot_epochs:
        run.save(snapshot_name(state.epoch), record)
    run.write_index("running")


def epoch_record(run, seconds: float, rate: float) -> dict:
    """The training half of an epoch's ``metrics.jsonl`` line."""
    state = run.state
    return {"epoch": state.epoch + 1, "step": state.step,
            "train_loss": state.loss_sum / max(state.seen, 1),
            "train_acc": state.correct / max(state.seen, 1),
            "lr": run.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3),
            "images_per_s": round(rate, 1)}


def validation_record(metrics: dict) -> dict:
    """``val_loss``, ``val_acc`` and the task's other scalar metrics (``val_miou``...)."""
    return {f"val_{k}": v for k, v in metrics.items()
            if k != "count" and isinstance(v, (int, float)) and not isinstance(v, bool)}
