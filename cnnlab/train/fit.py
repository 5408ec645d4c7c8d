"""One training run end to end: claim the run directory, build the run, train, test.

``fit(config)`` is what ``cnnlab train`` calls. The run directory (:mod:`cnnlab.runs.layout`)
holds ``config.yaml`` (re-run it with ``cnnlab train --config``), ``metrics.jsonl`` (one line
per epoch), ``last.safetensors`` and ``best.safetensors`` (+ ``.json`` sidecars) and
``run.json`` saying which epoch each holds. The run's objects are :class:`~cnnlab.train.run.Run`;
the epochs are :func:`cnnlab.train.epochs.train_epochs`; observers watch them.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.config import TrainConfig, load_config
from cnnlab.devices import resolve_device
from cnnlab.errors import CheckpointError, CnnlabError, TrainingDiverged
from cnnlab.runs import RunFolder, RunLock
from cnnlab.runs.checkpoint import newest_checkpoint, read_checkpoint
from cnnlab.runs.layout import CONFIG, FINETUNE, checkpoint_name
from cnnlab.train.distributed import DistContext, barrier, broadcast_object, setup
from cnnlab.train.epochs import EpochTrainer, train_epochs
from cnnlab.train.loop import StopFlag
from cnnlab.train.observers import Observer
from cnnlab.train.patience import Patience
from cnnlab.train.run import Prepare, Run, load_splits, model_description
from cnnlab.train.rundir import new_run_dir, restarted_run
from cnnlab.train.session import deterministic_algorithms, stop_on_signals
from cnnlab.train.stuck import StuckRun
from cnnlab.weightfile import model_state

__all__ = ["Run", "RunResult", "fit", "load_splits", "model_description", "test_best"]


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
    test_metrics: dict | None = None  # every test metric of the task (mIoU, mAP, ...)


def fit(config: TrainConfig | None, *, resume: str | Path | None = None,
        stop_after_epochs: int | None = None, log=print,
        prepare: Prepare | None = None, break_lock: bool = False,
        definition: dict | None = None, observers: list[Observer] = (),
        trainer: EpochTrainer | None = None) -> RunResult:
    """Train ``config`` (or continue the run at ``resume``) and return what happened.

    ``stop_after_epochs`` ends this session after that many epochs (resume later with
    ``resume=RUN``). Ctrl-C / SIGTERM saves ``last`` at the next step and returns
    ``status="interrupted"``. ``prepare(model)`` runs on the freshly built model before the
    optimizer exists (``cnnlab.train.finetune`` loads weights and freezes layers there); it may
    return the optimizer's parameter groups (e.g. with ``lr_scale``), or None for the default.
    The run is locked while it trains (``RUN/train.lock``; ``break_lock`` takes over a lock
    left on another host). ``definition``: the stored text of a file-defined model (a run's
    ``meta["model"]["definition"]``), used instead of reading ``config.model`` again.
    ``observers`` (:mod:`cnnlab.train.observers`) watch the run besides the standard ones;
    ``trainer`` (:class:`cnnlab.train.epochs.EpochTrainer`) trains each epoch (default: the
    whole network).

    Example:
        >>> result = fit(TrainConfig(model="lenet5", data="digits", epochs=2))  # doctest: +SKIP
    """
    if resume is None and config is not None:
        resume = restarted_run(config)
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CONFIG).is_file():
            raise CheckpointError(f"--resume {run_dir}: not a run directory (no {CONFIG})")
        if (run_dir / FINETUNE).is_file() and prepare is None:
            raise CheckpointError(f"{run_dir} is a fine-tuning run: continue it with "
                                  f"`cnnlab train --resume {run_dir}` or "
                                  "cnnlab.train.finetune.resume_finetune")
        config = load_config(run_dir / CONFIG) if config is None else config
    config.validate()
    if config.tensorboard:  # a missing package is a config error before any work is done
        from cnnlab.train.tensorboard import TensorBoardLog  # optional package

        TensorBoardLog.check_available()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    dist, device = setup(resolve_device(config.device), timeout_s=config.dist_timeout)
    if not dist.is_main:
        log = _silent
    folder = _claim_folder(config, resume, dist, break_lock)
    observers = [*default_observers(config, log), *observers]
    try:
        run = _open_run(config, folder, device, dist, resume is not None, log, prepare,
                        definition, observers)
        return _train_and_test(run, trainer or EpochTrainer(), stop_after_epochs, log)
    except BaseException:
        if resume is None and dist.is_main and not folder.has_checkpoint():
            folder.abandon()  # failed before training: leave nothing behind
        raise
    finally:
        folder.release()


def default_observers(config: TrainConfig, log) -> list[Observer]:
    """What every fit gets besides the standard observers: the stuck-run warning
    (:mod:`cnnlab.train.stuck`) and, with ``--patience``, early stopping."""
    observers: list[Observer] = [StuckRun(log)]
    if config.patience is not None:
        observers.append(Patience(config.patience, log))
    return observers


def _claim_folder(config: TrainConfig, resume: str | Path | None, dist: DistContext,
                  break_lock: bool) -> RunFolder:
    """The run directory, locked by rank 0 (``RUN/train.lock``): the resumed one, or a fresh
    one claimed by rank 0. The other ranks learn its path (or rank 0's error) and never
    write there."""
    folder, problem = None, None
    if dist.is_main:
        try:
            folder = _claim_main(config, resume, break_lock)
        except CnnlabError as error:
            if not dist.enabled:
                raise
            problem = error
    shared = broadcast_object((folder.path if folder else None, problem), dist)
    if shared[1] is not None:
        raise shared[1]
    return folder if folder is not None else RunFolder(shared[0], created=False)


def _claim_main(config: TrainConfig, resume: str | Path | None, break_lock: bool) -> RunFolder:
    if resume is None:
        folder = new_run_dir(config)  # claimed and locked
    else:
        folder = RunFolder(Path(resume), created=False)
    if folder.lock is None:  # resumed, or a torchrun restart taking its own run again
        lock = RunLock(folder.path, break_lock=break_lock)
        lock.acquire()
        folder.lock = lock
    return folder


def _open_run(config: TrainConfig, folder: RunFolder, device: torch.device, dist: DistContext,
              resuming: bool, log, prepare: Prepare | None, definition: dict | None,
              observers: list[Observer]) -> Run:
    """The run's objects, restored from its newest checkpoint when resuming."""
    newest = newest_checkpoint(folder.path) if resuming else None
    if newest is not None:  # the run's own copy of a file-defined model
        definition = newest[2].get("model", {}).get("definition")
    run = Run(config, folder, device, prepare, dist, definition, observers, log)
    run.remove_temporaries()
    if newest is not None:
        source = run.resume(newest)
        log(f"resuming {folder.path} from {source.name} at epoch {run.state.epoch + 1}, "
            f"batch {run.state.batch}")
    run.write_setup(resumed=newest is not None)
    if newest is not None:
        run.write_index("running")  # derived from the checkpoint, which may be a step ahead
    return run


def _train_and_test(run: Run, trainer: EpochTrainer, stop_after_epochs: int | None,
                    log) -> RunResult:
    """Train the remaining epochs, then test the best checkpoint."""
    run.stop = stop = StopFlag()
    run.observers.on_run_start(run)
    with stop_on_signals(stop), deterministic_algorithms(run.config.deterministic, run.device):
        status = _train(run, trainer, stop, stop_after_epochs, log)
    if status == "completed" and run.test is not None:
        status = "trained"  # "completed" only once the test result is written (resume tests)
    run.write_index(status)
    test_acc = test_metrics = None
    if status == "trained":
        status = "completed"
        barrier(run.dist)  # rank 0 has written best.safetensors
        test_metrics = test_best(run)
        test_acc = test_metrics["acc"]
        run.write_index(status, test_metrics)
        log(_test_line(run, test_metrics))
        for line in run.task.test_lines(test_metrics):  # the task's other metrics
            log(line)
    run.observers.on_run_end(run, status)
    log(f"run saved in {run.run_dir}")
    val_acc = None if math.isinf(run.state.best_metric) else run.state.best_metric
    return RunResult(run.run_dir, status, run.state.epoch, val_acc, test_acc,
                     run.state.best_epoch + 1, stop.signal, test_metrics)


def _train(run: Run, trainer: EpochTrainer, stop: StopFlag, stop_after_epochs: int | None,
           log) -> str:
    """:func:`train_epochs`; a divergence names the last good checkpoint, a disk that fails
    leaves ``run.json`` saying so (the checkpoints written so far are intact)."""
    try:
        return train_epochs(run, trainer, stop, stop_after_epochs, log)
    except TrainingDiverged as error:
        run.write_index("diverged")
        raise TrainingDiverged(f"{error}; {run.last_good()}") from None
    except OSError:
        with contextlib.suppress(OSError):
            run.write_index("failed")
        raise


def _test_line(run: Run, metrics: dict) -> str:
    """``test accuracy 0.9800 (error 2.00%) ...``; ``test mAP ...`` / ``test mIoU ...``."""
    key = run.task.main_metric
    value = metrics[key]
    text = f"test {run.task.metric_labels[key]} {value:.4f}"
    if key == "acc":
        text += f" (error {100 * (1 - value):.2f}%)"
    return text + f" on {len(run.test)} images, best epoch {run.state.best_epoch + 1}"


def test_best(run: Run) -> dict:
    """Test metrics (``acc``, ``loss``, task metrics) of the ``best`` checkpoint (the epoch
    chosen on validation)."""
    tensors, _ = read_checkpoint(run.run_dir / checkpoint_name("best"))
    run.model.load_state_dict(model_state(tensors))
    return run.evaluate(run.test, tta=run.config.tta)  # with progress (Run.evaluate)


def _silent(*_args: object) -> None:
    """The ``log`` of ranks other than 0."""
