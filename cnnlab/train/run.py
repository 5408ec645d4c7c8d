"""The objects of one training run (data, model, optimizer, schedule, state, observers) and the
writing of its run directory (:mod:`cnnlab.runs.layout`): checkpoints, config, index."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cnnlab.config import TrainConfig, config_yaml
from cnnlab.data.base import ImageSet
from cnnlab.data.budget import data_budget
from cnnlab.data.pipeline import (
    BatchSource,
    Preprocess,
    make_preprocess,
    match_channels,
    per_class_subset,
    split_validation,
    to_batch_source,
)
from cnnlab.errors import CheckpointError, ConfigError, DataError, ModelError
from cnnlab.files import remove_stale_temporaries
from cnnlab.models import create, default_input_size, is_spec, list_models, model_definition
from cnnlab.runs import RunFolder, is_run_file
from cnnlab.runs.checkpoint import save_checkpoint, write_sidecar
from cnnlab.runs.layout import CONFIG, INDEX, METRICS, MODEL_DEFINITION, SNAPSHOTS, STEPS, checkpoint_name
from cnnlab.tasks import get_task
from cnnlab.train.controls import RunControls
from cnnlab.train.distributed import (
    SINGLE,
    DistContext,
    evaluate_sharded,
    shard_batches,
    step_sync,
    wrap_model,
)
from cnnlab.train.lookahead import Lookahead
from cnnlab.train.loop import Schedule, StopFlag, TrainState, evaluate, out_of_memory_as_error
from cnnlab.train.observers import Observer, Observers, standard_observers
from cnnlab.train.optim import build_optimizer, parameter_groups
from cnnlab.train.resume import restore_optimizer, restore_rng
from cnnlab.train.rundir import git_sha
from cnnlab.version import __version__
from cnnlab.weightfile import load_state_checked, model_state

Prepare = Callable[[nn.Module], "list[dict] | None"]


def load_splits(config: TrainConfig) -> tuple[ImageSet, ImageSet | None, ImageSet | None]:
    """Training, validation (held out by seed) and test splits of ``config.data``."""
    from cnnlab.data.datasets import load_dataset

    kwargs = {"root": config.data_root, "download": config.download, "skip_bad": config.skip_bad}
    train = load_dataset(config.data, "train", **kwargs)
    try:
        test = load_dataset(config.data, "test", **kwargs)
    except DataError:
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
    check_dimensions(config.model, train)
    if len(train.image_shape) != 3:  # sequences, clips, volumes: always the data's own size
        for flag, value in (("--image-size", side), ("--augment", config.augment),
                            ("--tta", config.tta)):
            if value:  # resizing and the augmentations move 2-D pixels
                raise ConfigError(f"{flag} {value}: 2-D images only; {train.name} is "
                                  f"{len(train.image_shape) - 1}-D data, used as it is "
                                  f"({_shape(train.image_shape)}); leave {flag} out")
        size = tuple(train.image_shape[1:])
    elif side:
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
    if len(size) != 2:
        description["dims"] = len(size)  # k-D runs say so; 2-D checkpoints stay as they were
    definition = definition or model_definition(config.model)
    if definition is not None:
        description["definition"] = definition
    return description


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def check_dimensions(model: str, train: ImageSet) -> None:
    """A ConfigError naming both when a zoo model takes another number of spatial axes than
    the data has (a 2-D model on 1-D sequences...); spec strings and YAML layer lists take the
    data's dimension (lecture 001, "K-D filters"), Caffe files report their own errors."""
    if is_spec(model):
        return
    want, have = default_input_size(model), tuple(train.image_shape)
    if len(want) == len(have):
        return
    fitting = [m.name for m in list_models() if m.dims == len(have) - 1]
    raise ConfigError(f"--model {model} takes {len(want) - 1}-D input ({_shape(want)}) but "
                      f"--data {train.name} is {len(have) - 1}-D ({_shape(have)}); choose a "
                      f"{len(have) - 1}-D model ({', '.join(fitting[:6])}"
                      f"{', ...' if len(fitting) > 6 else ''}) or a spec string")


class Run:
    """The objects of one run, and the checkpoint/metrics writing that belongs to them."""

    def __init__(self, config: TrainConfig, folder: RunFolder, device: torch.device,
                 prepare: Prepare | None = None, dist: DistContext = SINGLE,
                 definition: dict | None = None, observers: list[Observer] = (),
                 log=print) -> None:
        self.config, self.folder, self.device, self.dist = config, folder, device, dist
        self.run_dir = folder.path
        self.controls = RunControls()  # changes between steps (the live page), replayed
        self.observers = Observers([*standard_observers(config, dist.is_main, log),
                                    *observers, self.controls])
        self.stop: StopFlag | None = None  # while training: set by a signal or an observer
        self.finish: str | None = None  # set by an observer: end as completed after this epoch
        self.saved: tuple[Path, int, int] | None = None  # newest checkpoint: path, epoch, step
        self.config_pending = False
        with data_budget(config.data_budget):
            train, val, test = load_splits(config)
        self.task = get_task(config.task).for_training(config, train)
        self.classes = self.task.output_names(train.classes)  # one name per model output
        self.model_meta = model_description(config, train, definition)
        c, *size = self.model_meta["input_size"]  # (C, H, W); (C, L) or (C, D, H, W) k-D
        self.preprocess = make_preprocess(train, c, tuple(size), config.resize)
        outputs = self.model_meta["num_classes"]  # segment: background + classes
        text = self.model_meta.get("definition", {}).get("text")
        self.model = self.task.build_model(
            create(config.model, num_classes=outputs, in_channels=c, input_size=(c, *size),
                   definition=text, **config.model_options), outputs, (c, *size))
        check_input_fits(self.model, (c, *size))
        init_from_data(self.model, train, self.preprocess, config.seed)
        # ``prepare`` (fine-tuning) may load weights, freeze layers and return parameter groups.
        groups = prepare(self.model) if prepare is not None else None
        self.model = self.model.to(device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        groups = groups or parameter_groups(self.model, config.weight_decay,
                                            config.bias_lr_scale)
        self.optimizer = build_optimizer(groups, config)
        self.controls.keep_proportions(self.optimizer, config.weight_decay)
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
        shape = "x".join(map(str, self.model_meta["input_size"]))
        advice = (f"the {data.name} split ({len(data)} images of {shape}) does not fit; "
                  "try a smaller --image-size, or --device cpu")
        with out_of_memory_as_error(f"moving the data set to {self.device}",
                                    self.config.batch_size, self.device, advice=advice):
            source = to_batch_source(data, self.preprocess, batch_size=self.config.batch_size,
                                     device=self.device, augment=aug,
                                     channels_last=self.config.channels_last)
        return dataclasses.replace(source, labels=self.task.targets(data).to(self.device))

    def meta(self, metrics: dict | None = None) -> dict:
        return {"format": "cnnlab-checkpoint/1", "cnnlab_version": __version__,
                "torch_version": torch.__version__, "git_sha": git_sha(),
                "config": self.config.to_dict(), "model": self.model_meta,
                "classes": self.classes, "preprocess": self.preprocess.to_dict(),
                "state": self.state.to_dict(), "metrics": metrics or {},
                "threads": torch.get_num_threads(), **self.task.checkpoint_meta()}

    def evaluate(self, source: BatchSource, tta: str = "") -> dict:
        """Loss and accuracy on ``source`` (sharded over the ranks when data parallel);
        ``tta``: test-time augmentation views (classification only). The test pass shows its
        progress on rank 0's stderr when it takes over 2 s."""
        shown = source is self.test and self.dist.is_main and self.config.progress
        progress = "testing the best checkpoint" if shown else ""
        if not self.task.shardable:  # dense metrics: every rank scores the whole split
            return evaluate(self.model, source, precision=self.config.precision, task=self.task,
                            progress=progress)
        return evaluate_sharded(self.model, source, self.dist, precision=self.config.precision,
                                tta=tta, progress=progress)

    def save(self, name: str, metrics: dict | None = None) -> None:
        if not self.dist.is_main:  # rank 0 writes the run directory
            return
        extra = self.lookahead.state_tensors() if self.lookahead is not None else None
        path = self.run_dir / checkpoint_name(name)
        save_checkpoint(path, model=self.model, optimizer=self.optimizer,
                        meta=self.meta(metrics), extra=extra)
        self.folder.record(path, path.with_suffix(".json"))
        self.saved = (path, self.state.epoch, self.state.step)
        if self.config_pending:  # a resumed run's settings count once they produced a checkpoint
            self.folder.write_bytes(CONFIG, config_yaml(self.config).encode())
            self.config_pending = False

    def last_good(self) -> str:
        """Where the newest complete checkpoint is, for messages after a failure."""
        if self.saved is None:
            return "no checkpoint was written yet"
        path, epoch, step = self.saved
        return f"the last good checkpoint is {path} (epoch {epoch}, step {step})"

    def write_setup(self, resumed: bool = False) -> None:
        """``config.yaml`` and, for a model defined by a file, ``model.<ext>`` (rank 0). A
        resumed run's ``config.yaml`` is replaced only once its new settings have produced a
        checkpoint: a resume with ``--lr 1e12`` that diverges leaves the old settings."""
        if not self.dist.is_main:
            return
        if resumed:
            self.config_pending = True
        else:
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
        if self.state.batch > self.train.num_batches():
            raise CheckpointError(f"{path}: state.batch {self.state.batch} is past the end of an "
                                  f"epoch ({self.train.num_batches()} batches)")
        self.saved = (path, self.state.epoch, self.state.step)
        threads = meta.get("threads")
        if isinstance(threads, int) and threads != torch.get_num_threads():
            warnings.warn(f"resuming with {torch.get_num_threads()} CPU threads; the run "
                          f"trained with {threads}: the result will not be bit-identical to an "
                          f"uninterrupted run (use --threads {threads})", stacklevel=2)
        if self.dist.is_main:  # the checkpoint is the truth; its sidecar may lag a crash
            write_sidecar(path, meta)
        if self.dist.is_main:  # later epochs and steps will be trained again
            self._keep_lines(METRICS, lambda line: _logged(line, "epoch") <= self.state.epoch)
            self._keep_lines(STEPS, lambda line: _logged(line, "step") <= self.state.step)
        return path

    def _keep_lines(self, name: str, keep) -> None:
        """Rewrite the run's JSON-lines file ``name`` with only the lines ``keep`` accepts."""
        path = self.run_dir / name
        if path.is_file():
            lines = [line for line in path.read_text(errors="replace").splitlines() if keep(line)]
            self.folder.write_bytes(name, "".join(f"{line}\n" for line in lines).encode())

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

    def write_index(self, status: str, test: dict | None = None) -> None:
        """``run.json``: status, versions, git SHA, which epoch ``last`` and ``best`` hold and,
        once tested, the ``best`` checkpoint's scalar test metrics (``test``)."""
        if not self.dist.is_main:
            return
        best = None if math.isinf(self.state.best_metric) else self.state.best_metric
        index = {"status": status, "epochs": self.config.epochs,
                 "cnnlab_version": __version__, "torch_version": torch.__version__,
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
    except RuntimeError as error:  # e.g. a sequence too short for the model's pooling
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"the model cannot take inputs of {_shape(input_size)}: {first}; use "
                         f"longer inputs or a model with less pooling") from None
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


def _logged(line: str, key: str) -> float:
    """``key`` (epoch, step) of one JSON line of a run's log; a line torn by a crash, or with
    no number there, counts as infinitely late (it is dropped on resume)."""
    try:
        value = json.loads(line)[key]
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.inf
    return value
