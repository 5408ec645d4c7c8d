"""One training run end to end: data, model, run directory, epochs, checkpoints, resume.

``fit(config)`` is what ``cnnlab train`` calls. The run directory holds ``config.yaml`` (re-run it
with ``cnnlab train --config``), ``metrics.jsonl`` (one line per epoch), ``last.safetensors`` and
``best.safetensors`` (+ ``.json`` sidecars) and ``run.json`` saying which epoch each holds.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

import cnnlab
from cnnlab.config import TrainConfig, load_config, save_config
from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import BatchSource, make_preprocess, split_validation, to_batch_source
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.models import create, default_input_size
from cnnlab.train.checkpoint import (atomic_write_bytes, load_state_checked, model_state,
                                     read_checkpoint, restore_optimizer, restore_rng,
                                     save_checkpoint)
from cnnlab.train.loop import Progress, Schedule, StopFlag, TrainState, evaluate, train_one_epoch
from cnnlab.train.optim import build_optimizer, parameter_groups


@dataclass
class RunResult:
    """What a finished (or interrupted) run reports."""

    run_dir: Path
    status: str  # "completed" | "interrupted" | "stopped"
    epochs_done: int
    val_acc: float | None
    test_acc: float | None
    best_epoch: int
    signal: int | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(name)


def load_splits(config: TrainConfig) -> tuple[ImageSet, ImageSet | None, ImageSet | None]:
    """Training, validation (held out by seed) and test splits of ``config.data``."""
    from cnnlab.data.datasets import load_dataset

    kwargs = {"root": config.data_root, "download": config.download, "skip_bad": config.skip_bad}
    train = load_dataset(config.data, "train", **kwargs)
    try:
        test = load_dataset(config.data, "test", **kwargs)
    except cnnlab.errors.DataError:
        test = None  # e.g. a plain class folder has no test split
    train, val = split_validation(train, config.val_fraction, config.seed)
    return train, val, test


def model_description(config: TrainConfig, train: ImageSet) -> dict:
    """The part of a checkpoint's metadata that rebuilds the model."""
    default = default_input_size(config.model)
    side = config.image_size
    size = (side, side) if side else tuple(default[1:])
    if default[1:] == (32, 32) and side is None and config.model.startswith(("c", "f")):
        size = train.image_shape[1:]  # spec strings take the data's own size by default
    return {"name": config.model, "num_classes": len(train.classes),
            "in_channels": train.image_shape[0], "input_size": [train.image_shape[0], *size],
            "options": dict(config.model_options)}


def git_sha() -> str | None:
    """The commit of the cnnlab checkout, if it is one (saved beside every checkpoint)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def new_run_dir(config: TrainConfig) -> Path:
    """``out/name``; a default name is ``<model>-<data>-<YYYYmmdd-HHMMSS>``, never reused."""
    data_name = Path(config.data).name or config.data
    name = config.name or f"{Path(config.model).stem[:24]}-{data_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(config.out) / name
    suffix = 1
    while (run_dir / "config.yaml").exists():
        suffix += 1
        run_dir = Path(config.out) / f"{name}-{suffix}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@contextmanager
def stop_on_signals(stop: StopFlag):
    """Route SIGINT/SIGTERM to ``stop`` for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, stop.request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Run:
    """The objects of one run, and the checkpoint/metrics writing that belongs to them."""

    def __init__(self, config: TrainConfig, run_dir: Path, device: torch.device) -> None:
        self.config, self.run_dir, self.device = config, run_dir, device
        train, val, test = load_splits(config)
        self.classes = train.classes
        self.model_meta = model_description(config, train)
        c, h, w = self.model_meta["input_size"]
        self.preprocess = make_preprocess(train, c, (h, w), config.resize)
        self.model = create(config.model, num_classes=len(train.classes), in_channels=c,
                            input_size=(c, h, w), **config.model_options).to(device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(parameter_groups(self.model, config.weight_decay), config)
        self.train = self._source(train, augment=True)
        self.val = self._source(val) if val is not None else None
        self.test = self._source(test) if test is not None else None
        steps = self.train.num_batches()
        self.schedule = Schedule(steps * config.epochs, steps, config)
        self.state = TrainState()

    def _source(self, data: ImageSet, augment: bool = False) -> BatchSource:
        from cnnlab.data.augment import parse_augment

        aug = parse_augment(self.config.augment) if augment and self.config.augment else None
        return to_batch_source(data, self.preprocess, batch_size=self.config.batch_size,
                               device=self.device, augment=aug,
                               channels_last=self.config.channels_last)

    def meta(self, metrics: dict | None = None) -> dict:
        return {"format": "cnnlab-checkpoint/1", "cnnlab_version": cnnlab.__version__,
                "torch_version": torch.__version__, "git_sha": git_sha(),
                "config": self.config.to_dict(), "model": self.model_meta,
                "classes": self.classes, "preprocess": self.preprocess.to_dict(),
                "state": self.state.to_dict(), "metrics": metrics or {}}

    def save(self, name: str, metrics: dict | None = None) -> None:
        save_checkpoint(self.run_dir / f"{name}.safetensors", model=self.model,
                        optimizer=self.optimizer, meta=self.meta(metrics))

    def resume(self) -> None:
        tensors, meta = read_checkpoint(self.run_dir / "last.safetensors")
        load_state_checked(self.model, model_state(tensors), source=str(self.run_dir))
        restore_optimizer(self.optimizer, tensors, meta)
        restore_rng(tensors)
        self.state = TrainState.from_dict(meta["state"])

    def log(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def write_index(self, status: str) -> None:
        """``run.json``: status and which epoch ``last`` and ``best`` hold."""
        index = {"status": status, "epochs": self.config.epochs,
                 "last": {"file": "last.safetensors", "epoch": self.state.epoch,
                          "batch": self.state.batch},
                 "best": {"file": "best.safetensors", "epoch": self.state.best_epoch + 1,
                          "val_acc": None if math.isinf(self.state.best_metric)
                          else self.state.best_metric}}
        atomic_write_bytes(self.run_dir / "run.json", json.dumps(index, indent=2).encode())


def fit(config: TrainConfig | None, *, resume: str | Path | None = None,
        stop_after_epochs: int | None = None, log=print) -> RunResult:
    """Train ``config`` (or continue the run at ``resume``) and return what happened.

    ``stop_after_epochs`` ends this session after that many epochs (resume later with
    ``resume=RUN``). Ctrl-C / SIGTERM saves ``last`` at the next step and returns
    ``status="interrupted"``.

    Example:
        >>> result = fit(TrainConfig(model="lenet5", data="digits", epochs=2))  # doctest: +SKIP
    """
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "last.safetensors").is_file():
            raise CheckpointError(f"--resume {run_dir}: no last.safetensors there to resume from")
        config = load_config(run_dir / "config.yaml") if config is None else config
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    run_dir = Path(resume) if resume is not None else new_run_dir(config)
    run = Run(config, run_dir, device)
    if resume is not None:
        run.resume()
        log(f"resuming {run_dir} at epoch {run.state.epoch + 1}, batch {run.state.batch}")
    save_config(config, run_dir / "config.yaml")
    stop = StopFlag()
    with stop_on_signals(stop):
        status = _train_epochs(run, stop, stop_after_epochs, log)
    run.write_index(status)
    test_acc = None
    if status == "completed" and run.test is not None:
        test_acc = test_best(run)
        log(f"test accuracy {test_acc:.4f} (error {100 * (1 - test_acc):.2f}%) on "
            f"{len(run.test)} images, best epoch {run.state.best_epoch + 1}")
    log(f"run saved in {run_dir}")
    val_acc = None if math.isinf(run.state.best_metric) else run.state.best_metric
    return RunResult(run_dir, status, run.state.epoch, val_acc, test_acc,
                     run.state.best_epoch + 1, stop.signal)


def test_best(run: Run) -> float:
    """Test accuracy of the ``best`` checkpoint (the epoch chosen on validation)."""
    tensors, _ = read_checkpoint(run.run_dir / "best.safetensors")
    run.model.load_state_dict(model_state(tensors))
    return evaluate(run.model, run.test, precision=run.config.precision)["acc"]


def _train_epochs(run: Run, stop: StopFlag, stop_after: int | None, log) -> str:
    config, state = run.config, run.state
    first_epoch = state.epoch
    while state.epoch < config.epochs:
        if stop_after is not None and state.epoch - first_epoch >= stop_after:
            return "stopped"
        progress = Progress(config.progress, len(run.train), state.epoch, config.epochs,
                            state.batch * config.batch_size)
        started = time.perf_counter()
        finished = train_one_epoch(run.model, run.train, run.optimizer, state,
                                   schedule=run.schedule, seed=config.seed,
                                   precision=config.precision,
                                   label_smoothing=config.label_smoothing, stop=stop,
                                   progress=progress)
        progress.close()
        if not finished:
            run.save("last")
            log(f"interrupted: saved {run.run_dir / 'last.safetensors'} at epoch "
                f"{state.epoch + 1}, batch {state.batch}; continue with --resume {run.run_dir}")
            return "interrupted"
        _end_epoch(run, time.perf_counter() - started, progress.rate(), log)
    return "completed"


def _end_epoch(run: Run, seconds: float, rate: float, log) -> None:
    config, state = run.config, run.state
    record = {"epoch": state.epoch + 1, "step": state.step,
              "train_loss": state.loss_sum / max(state.seen, 1),
              "train_acc": state.correct / max(state.seen, 1),
              "lr": run.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3),
              "images_per_s": round(rate, 1)}
    if run.val is not None:
        val = evaluate(run.model, run.val, precision=config.precision)
        record.update(val_loss=val["loss"], val_acc=val["acc"])
    metric = record.get("val_acc", record["train_acc"])
    improved = metric > state.best_metric
    if improved:
        state.best_metric, state.best_epoch = metric, state.epoch
    state.epoch += 1
    state.start_epoch()
    run.log(record)
    log(_epoch_line(record, config.epochs))
    if improved:
        run.save("best", record)
    if state.epoch % config.checkpoint_every == 0 or state.epoch == config.epochs:
        run.save("last", record)
    if state.epoch in config.snapshot_epochs:
        run.save(f"snapshots/epoch-{state.epoch:03d}", record)
    run.write_index("running")


def _epoch_line(record: dict, epochs: int) -> str:
    text = (f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  "
            f"acc {record['train_acc']:.4f}")
    if "val_acc" in record:
        text += f"  val_loss {record['val_loss']:.4f}  val_acc {record['val_acc']:.4f}"
    return text + f"  {record['images_per_s']:.0f} img/s  {record['seconds']:.1f}s"
