"""One training run end to end: data, model, run directory, epochs, checkpoints, resume.

``fit(config)`` is what ``cnnlab train`` calls. The run directory holds ``config.yaml`` (re-run it
with ``cnnlab train --config``), ``metrics.jsonl`` (one line per epoch), ``last.safetensors`` and
``best.safetensors`` (+ ``.json`` sidecars) and ``run.json`` saying which epoch each holds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import cnnlab
from cnnlab.config import TrainConfig, config_yaml, load_config
from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import (
    BatchSource,
    Preprocess,
    make_preprocess,
    match_channels,
    per_class_subset,
    split_validation,
    to_batch_source,
)
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.files import remove_stale_temporaries
from cnnlab.models import create, default_input_size, is_spec, model_definition
from cnnlab.runs import RunFolder, RunLock, is_run_file
from cnnlab.runs.checkpoint import newest_checkpoint, read_checkpoint, save_checkpoint
from cnnlab.runs.layout import (
    CONFIG,
    INDEX,
    METRICS,
    MODEL_DEFINITION,
    SNAPSHOTS,
    checkpoint_name,
    snapshot_name,
)
from cnnlab.tasks import get_task
from cnnlab.train.distributed import (
    SINGLE,
    DistContext,
    agree,
    barrier,
    broadcast_object,
    evaluate_sharded,
    setup,
    shard_batches,
    step_sync,
    wrap_model,
)
from cnnlab.train.lookahead import Lookahead
from cnnlab.train.loop import (
    Progress,
    Schedule,
    StopFlag,
    TrainState,
    evaluate,
    out_of_memory_as_error,
    train_one_epoch,
)
from cnnlab.train.optim import build_optimizer, parameter_groups
from cnnlab.train.resume import restore_optimizer, restore_rng
from cnnlab.train.rundir import git_sha, new_run_dir, restarted_run
from cnnlab.train.session import deterministic_algorithms, resolve_device, stop_on_signals
from cnnlab.train.tensorboard import TensorBoardLog
from cnnlab.weightfile import load_state_checked, model_state

Prepare = Callable[[nn.Module], "list[dict] | None"]

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


def load_splits(config: TrainConfig) -> tuple[ImageSet, ImageSet | None, ImageSet | None]:
    """Training, validation (held out by seed) and test splits of ``config.data``."""
    from cnnlab.data.datasets import load_dataset

    kwargs = {"root": config.data_root, "download": config.download, "skip_bad": config.skip_bad}
    train = load_dataset(config.data, "train", **kwargs)
    try:
        test = load_dataset(config.data, "test", **kwargs)
    except cnnlab.errors.DataError:
        test = None  # e.g. a plain class folder has no test split
    if config.train_per_class is not None:
        train = per_class_subset(train, config.train_per_class, config.seed)
    train, val = split_validation(train, config.val_fraction, config.seed)
    return train, val, test


def model_description(config: TrainConfig, train: ImageSet,
                      definition: dict | None = None) -> dict:
    """The part of a checkpoint's metadata that rebuilds the model. A model defined by a file
    keeps the file's text (``definition``: read now, or the run's own copy on resume), so the
    run never depends on that file again."""
    side = config.image_size
    if side:
        size = (side, side)
    elif is_spec(config.model):  # spec strings and model files take the data's own size
        size = train.image_shape[1:]
    else:
        size = tuple(default_input_size(config.model)[1:])
    task = get_task(config.task)
    size = task.input_size(config, train, size)
    description = {"name": config.model, "num_classes": task.num_outputs(train.classes),
                   "in_channels": train.image_shape[0],
                   "input_size": [train.image_shape[0], *size],
                   "options": dict(config.model_options)}
    definition = definition or model_definition(config.model)
    if definition is not None:
        description["definition"] = definition
    return description


class Run:
    """The objects of one run, and the checkpoint/metrics writing that belongs to them."""

    def __init__(self, config: TrainConfig, folder: RunFolder, device: torch.device,
                 prepare: Prepare | None = None, dist: DistContext = SINGLE,
                 definition: dict | None = None) -> None:
        self.config, self.folder, self.device, self.dist = config, folder, device, dist
        self.run_dir = folder.path
        self.tensorboard: TensorBoardLog | None = None  # opened at the first record
        train, val, test = load_splits(config)
        self.task = get_task(config.task).for_training(config, train)
        self.classes = self.task.output_names(train.classes)  # one name per model output
        self.model_meta = model_description(config, train, definition)
        c, h, w = self.model_meta["input_size"]
        self.preprocess = make_preprocess(train, c, (h, w), config.resize)
        outputs = self.model_meta["num_classes"]  # segment: background + classes
        text = self.model_meta.get("definition", {}).get("text")
        self.model = create(config.model, num_classes=outputs, in_channels=c,
                            input_size=(c, h, w), definition=text, **config.model_options)
        check_input_fits(self.model, (c, h, w))
        init_from_data(self.model, train, self.preprocess, config.seed)
        # ``prepare`` (fine-tuning) may load weights, freeze layers and return parameter groups.
        groups = prepare(self.model) if prepare is not None else None
        self.model = self.model.to(device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        groups = groups or parameter_groups(self.model, config.weight_decay,
                                            config.bias_lr_scale)
        self.optimizer = build_optimizer(groups, config)
        self.train = self._source(train, augment=True)
        self.val = self._source(val) if val is not None else None
        self.test = self._source(test) if test is not None else None
        # data parallel: this rank's part of each batch, DDP, totals summed over ranks
        self.train = shard_batches(self.train, dist)
        self.train_model = wrap_model(self.model, dist, device, compile=config.compile)
        self.sync = step_sync(dist)
        steps = self.train.num_batches()
        self.schedule = Schedule(steps * config.epochs, steps, config)
        self.state = TrainState()
        self.lookahead = None if not config.lookahead else Lookahead(
            self.model, decay=config.lookahead, every=config.lookahead_every,
            total_steps=self.schedule.total_steps)

    def _source(self, data: ImageSet, augment: bool = False) -> BatchSource:
        from cnnlab.data.augment import parse_augment

        aug = parse_augment(self.config.augment) if augment and self.config.augment else None
        c, h, w = self.model_meta["input_size"]
        advice = (f"the {data.name} split ({len(data)} images of {c}x{h}x{w}) does not fit; "
                  "try a smaller --image-size, or --device cpu")
        with out_of_memory_as_error(f"moving the data set to {self.device}",
                                    self.config.batch_size, self.device, advice=advice):
            source = to_batch_source(data, self.preprocess, batch_size=self.config.batch_size,
                                     device=self.device, augment=aug,
                                     channels_last=self.config.channels_last)
        return dataclasses.replace(source, labels=self.task.targets(data).to(self.device))

    def meta(self, metrics: dict | None = None) -> dict:
        return {"format": "cnnlab-checkpoint/1", "cnnlab_version": cnnlab.__version__,
                "torch_version": torch.__version__, "git_sha": git_sha(),
                "config": self.config.to_dict(), "model": self.model_meta,
                "classes": self.classes, "preprocess": self.preprocess.to_dict(),
                "state": self.state.to_dict(), "metrics": metrics or {}}

    def evaluate(self, source: BatchSource, tta: str = "") -> dict:
        """Loss and accuracy on ``source`` (sharded over the ranks when data parallel);
        ``tta``: test-time augmentation views (classification only)."""
        if not self.task.shardable:  # dense metrics: every rank scores the whole split
            return evaluate(self.model, source, precision=self.config.precision, task=self.task)
        return evaluate_sharded(self.model, source, self.dist, precision=self.config.precision,
                                tta=tta)

    def save(self, name: str, metrics: dict | None = None) -> None:
        if not self.dist.is_main:  # rank 0 writes the run directory
            return
        extra = self.lookahead.state_tensors() if self.lookahead is not None else None
        path = self.run_dir / checkpoint_name(name)
        save_checkpoint(path, model=self.model, optimizer=self.optimizer,
                        meta=self.meta(metrics), extra=extra)
        self.folder.record(path, path.with_suffix(".json"))

    def write_setup(self) -> None:
        """``config.yaml`` and, for a model defined by a file, ``model.<ext>`` (rank 0)."""
        if not self.dist.is_main:
            return
        self.folder.write_bytes(CONFIG, config_yaml(self.config).encode())
        definition = self.model_meta.get("definition")
        if definition is not None:
            self.folder.write_bytes(f"{MODEL_DEFINITION}{definition['format']}",
                                    definition["text"].encode())

    def resume(self, newest: tuple[Path, dict, dict]) -> Path:
        """Continue from ``newest`` (:func:`newest_checkpoint`'s ``(path, tensors, meta)``);
        forget metrics logged after it."""
        path, tensors, meta = newest
        load_state_checked(self.model, model_state(tensors), source=str(path))
        restore_optimizer(self.optimizer, tensors, meta)
        restore_rng(tensors)
        if self.lookahead is not None:
            self.lookahead.load_state_tensors(tensors)
        self.state = TrainState.from_dict(meta["state"])
        metrics = self.run_dir / METRICS
        if metrics.is_file() and self.dist.is_main:  # later epochs will be trained again
            lines = [line for line in metrics.read_text().splitlines()
                     if _logged_epoch(line) <= self.state.epoch]
            self.folder.write_bytes(METRICS, "".join(f"{line}\n" for line in lines).encode())
        return path

    def remove_temporaries(self) -> None:
        """Delete ``.NAME.*.tmp`` files torn by a crash mid-write (rank 0, before any write)."""
        if self.dist.is_main:
            remove_stale_temporaries(self.run_dir, is_run_file)
            remove_stale_temporaries(self.run_dir / SNAPSHOTS,
                                     lambda name: is_run_file(f"{SNAPSHOTS}/{name}"))

    @property
    def main_metric(self) -> str:
        """``val_acc``, ``val_map`` or ``val_miou`` (``train_acc`` without a validation split)."""
        return f"val_{self.task.main_metric}" if self.val is not None else "train_acc"

    def log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / METRICS, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.folder.record(self.run_dir / METRICS)
        if self.config.tensorboard:
            if self.tensorboard is None:
                self.tensorboard = TensorBoardLog(self.run_dir)
            self.tensorboard.write(record, self.model)

    def write_index(self, status: str, test: dict | None = None) -> None:
        """``run.json``: status, versions, git SHA, which epoch ``last`` and ``best`` hold and,
        once tested, the ``best`` checkpoint's scalar test metrics (``test``)."""
        if not self.dist.is_main:
            return
        best = None if math.isinf(self.state.best_metric) else self.state.best_metric
        index = {"status": status, "epochs": self.config.epochs,
                 "cnnlab_version": cnnlab.__version__, "torch_version": torch.__version__,
                 "git_sha": git_sha(),
                 "last": {"file": "last.safetensors", "epoch": self.state.epoch,
                          "batch": self.state.batch},
                 "best": {"file": "best.safetensors", "epoch": self.state.best_epoch + 1,
                          "metric": self.main_metric, "value": best}}
        if self.main_metric == "val_acc":
            index["best"]["val_acc"] = best  # the key of earlier versions
        if test is not None:
            index["test"] = {k: float(v) for k, v in test.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.folder.write_bytes(INDEX, json.dumps(index, indent=2).encode())


def check_input_fits(model: nn.Module, input_size: tuple[int, int, int]) -> None:
    """One forward of a blank ``(1, C, H, W)`` image, so that a model that cannot take the
    input size fails with its own message before anything is trained or written."""
    was_training = model.training
    model.eval()  # batch norm cannot train on one image
    try:
        with torch.inference_mode():
            model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)


def init_from_data(model: nn.Module, train: ImageSet, preprocess: Preprocess, seed: int,
                   count: int = 5000) -> None:
    """Call ``model.init_from_data(x)`` when the model has it (airbench's whitening layer).

    ``x``: ``count`` training images chosen by ``seed``, fitted and normalised exactly like the
    model's input, float ``(count, C, H, W)``. A resumed run then loads its saved weights over it.
    """
    hook = getattr(model, "init_from_data", None)
    if hook is None:
        return
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:count]
    images = match_channels(train.images[pick], preprocess.channels, source=train.name)
    hook(preprocess.normalize(preprocess.fit_images(images).float() / 255))


def _logged_epoch(line: str) -> float:
    """The epoch of one ``metrics.jsonl`` line; a line torn by a crash counts as infinitely late."""
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def fit(config: TrainConfig | None, *, resume: str | Path | None = None,
        stop_after_epochs: int | None = None, log=print,
        prepare: Prepare | None = None, break_lock: bool = False,
        definition: dict | None = None) -> RunResult:
    """Train ``config`` (or continue the run at ``resume``) and return what happened.

    ``stop_after_epochs`` ends this session after that many epochs (resume later with
    ``resume=RUN``). Ctrl-C / SIGTERM saves ``last`` at the next step and returns
    ``status="interrupted"``. ``prepare(model)`` runs on the freshly built model before the
    optimizer exists (``cnnlab.train.finetune`` loads weights and freezes layers there); it may
    return the optimizer's parameter groups (e.g. with ``lr_scale``), or None for the default.
    The run is locked while it trains (``RUN/train.lock``; ``break_lock`` takes over a lock
    left on another host). ``definition``: the stored text of a file-defined model (a run's
    ``meta["model"]["definition"]``), used instead of reading ``config.model`` again.

    Example:
        >>> result = fit(TrainConfig(model="lenet5", data="digits", epochs=2))  # doctest: +SKIP
    """
    if resume is None and config is not None:
        resume = restarted_run(config)
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / CONFIG).is_file():
            raise CheckpointError(f"--resume {run_dir}: not a run directory (no {CONFIG})")
        config = load_config(run_dir / CONFIG) if config is None else config
    config.validate()
    if config.tensorboard:  # a missing package is a config error before any work is done
        TensorBoardLog.check_available()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    dist, device = setup(resolve_device(config.device), timeout_s=config.dist_timeout)
    if not dist.is_main:
        log = _silent
    folder = _claim_folder(config, resume, dist, break_lock)
    try:
        return _fit_claimed(config, folder, device, dist, resume is not None,
                            stop_after_epochs, log, prepare, definition)
    except BaseException:
        if resume is None and dist.is_main and not folder.has_checkpoint():
            folder.abandon()  # failed before training: leave nothing behind
        raise
    finally:
        folder.release()


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


def _fit_claimed(config: TrainConfig, folder: RunFolder, device: torch.device,
                 dist: DistContext, resuming: bool, stop_after_epochs: int | None, log,
                 prepare: Prepare | None, definition: dict | None) -> RunResult:
    """:func:`fit` once the run directory is claimed and locked."""
    run_dir = folder.path
    newest = newest_checkpoint(run_dir) if resuming else None
    if newest is not None:  # the run's own copy of a file-defined model
        definition = newest[2].get("model", {}).get("definition")
    run = Run(config, folder, device, prepare, dist, definition)
    run.remove_temporaries()
    if newest is not None:
        source = run.resume(newest)
        log(f"resuming {run_dir} from {source.name} at epoch {run.state.epoch + 1}, "
            f"batch {run.state.batch}")
    run.write_setup()
    stop = StopFlag()
    with stop_on_signals(stop), deterministic_algorithms(config.deterministic, device):
        status = _train_epochs(run, stop, stop_after_epochs, log)
    run.write_index(status)
    if run.tensorboard is not None:
        run.tensorboard.close()
    test_acc = test_metrics = None
    if status == "completed" and run.test is not None:
        barrier(dist)  # rank 0 has written best.safetensors
        test_metrics = test_best(run)
        test_acc = test_metrics["acc"]
        run.write_index(status, test_metrics)
        log(_test_line(run, test_metrics))
        for line in run.task.test_lines(test_metrics):  # the task's other metrics
            log(line)
    log(f"run saved in {run_dir}")
    val_acc = None if math.isinf(run.state.best_metric) else run.state.best_metric
    return RunResult(run_dir, status, run.state.epoch, val_acc, test_acc,
                     run.state.best_epoch + 1, stop.signal, test_metrics)


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
    tensors, _ = read_checkpoint(run.run_dir / "best.safetensors")
    run.model.load_state_dict(model_state(tensors))
    return run.evaluate(run.test, tta=run.config.tta)


def _silent(*_args: object) -> None:
    """The ``log`` of ranks other than 0."""


def _train_epochs(run: Run, stop: StopFlag, stop_after: int | None, log) -> str:
    config, state = run.config, run.state
    first_epoch = state.epoch
    while state.epoch < config.epochs:
        if stop_after is not None and state.epoch - first_epoch >= stop_after:
            run.save("last")  # --checkpoint-every may have skipped this epoch
            return "stopped"
        if agree(bool(stop), run.dist):  # a signal during validation: stop before next epoch
            run.save("last")
            log(f"interrupted: saved {run.run_dir / 'last.safetensors'} after epoch "
                f"{state.epoch}; continue with --resume {run.run_dir}")
            return "interrupted"
        progress = Progress(config.progress and run.dist.is_main, len(run.train), state.epoch,
                            config.epochs, state.batch * config.batch_size)
        started = time.perf_counter()
        finished = train_one_epoch(run.train_model, run.train, run.optimizer, state,
                                   schedule=run.schedule, seed=config.seed,
                                   precision=config.precision,
                                   label_smoothing=config.label_smoothing, stop=stop,
                                   progress=progress, sync=run.sync, task=run.task,
                                   lookahead=run.lookahead)
        progress.close()
        if not finished:
            run.save("last")
            log(f"interrupted: saved {run.run_dir / 'last.safetensors'} at epoch "
                f"{state.epoch + 1}, batch {state.batch}; continue with --resume {run.run_dir}")
            return "interrupted"
        _end_epoch(run, time.perf_counter() - started, progress.rate(), log)
    if agree(bool(stop), run.dist):  # a signal during the last epoch's validation
        run.save("last")
        log(f"interrupted: saved {run.run_dir / 'last.safetensors'} after epoch {state.epoch} "
            f"(the last); the test evaluation was skipped: run it with --resume {run.run_dir}")
        return "interrupted"
    return "completed"


def _end_epoch(run: Run, seconds: float, rate: float, log) -> None:
    config, state = run.config, run.state
    record = {"epoch": state.epoch + 1, "step": state.step,
              "train_loss": state.loss_sum / max(state.seen, 1),
              "train_acc": state.correct / max(state.seen, 1),
              "lr": run.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3),
              "images_per_s": round(rate, 1)}
    if run.val is not None:
        val = run.evaluate(run.val)
        record.update(val_loss=val["loss"], val_acc=val["acc"])
        record.update({f"val_{k}": v for k, v in val.items()  # the task's other scalars
                       if k not in ("loss", "acc", "count") and isinstance(v, (int, float))})
    metric = record.get(run.main_metric, record.get("val_acc", record["train_acc"]))
    improved = metric >= state.best_metric  # ties go to the later, longer-trained epoch
    if improved:
        state.best_metric, state.best_epoch = metric, state.epoch
    state.epoch += 1
    state.start_epoch()
    run.log(record)
    log(_epoch_line(record, config.epochs, run.task.main_metric))
    if improved:
        run.save("best", record)
    if state.epoch % config.checkpoint_every == 0 or state.epoch == config.epochs:
        run.save("last", record)
    if state.epoch in config.snapshot_epochs:
        run.save(snapshot_name(state.epoch), record)
    run.write_index("running")


def _epoch_line(record: dict, epochs: int, main: str = "acc") -> str:
    text = (f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  "
            f"acc {record['train_acc']:.4f}")
    if "val_acc" in record:
        text += f"  val_loss {record['val_loss']:.4f}  val_acc {record['val_acc']:.4f}"
    if main != "acc" and f"val_{main}" in record:
        text += f"  val_{main} {record[f'val_{main}']:.4f}"
    return text + f"  {record['images_per_s']:.0f} img/s  {record['seconds']:.1f}s"
