"""Reading a run: one :func:`open_run` for every command that reads a run directory.

The run directory (:mod:`cnnlab.runs.layout`) is opened lazily: its checkpoint file is read at
most once (on first use of the metadata or the model, both come from that one read), the model
is built only when asked for, and the run's own data split is loaded on request with the data
set, root and preprocessing it was trained with.

Example:
    >>> run = open_run("runs/lenet5-digits")  # doctest: +SKIP
    >>> run.task.name, run.classes[:3], run.model(run.inputs("test", limit=2)).shape  # doctest: +SKIP
    ('classify', ['0', '1', '2'], torch.Size([2, 10]))
"""

from __future__ import annotations

import functools
import html
import importlib
import json
import math
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import BatchSource, Preprocess, to_batch_source
from cnnlab.data.request import DataRequest
from cnnlab.devices import resolve_device
from cnnlab.errors import CheckpointError
from cnnlab.models import create
from cnnlab.runs.checkpoint import check_model_meta, read_checkpoint, resolve_checkpoint
from cnnlab.runs.layout import EVENTS, INDEX, METRICS, SNAPSHOTS, STEPS, is_run_file
from cnnlab.tasks import Task, task_of
from cnnlab.weightfile import load_state_checked, model_state

NETWORK = "network"  # run.json "kind" of a trained network (the default)
# Runs that hold no network: run.json "kind" -> the module whose ``open_kind(path, **options)``
# returns its OpenRun subclass. Such a kind is written by an application above this layer
# (docs/ARCHITECTURE.md, "A run kind"), so its module is named here and imported by name on
# first use, as the packages' lazy exports are; tests/test_architecture.py checks the table.
RUN_KINDS = {"bovw": "cnnlab.bovw.run"}


class OpenRun:
    """A run directory (or one checkpoint file) opened for reading.

    Attributes are computed on first use: ``meta`` (the checkpoint's metadata), ``model`` (in
    eval mode on ``device``), ``config``, ``task``, ``classes``, ``preprocess``, ``index``
    (``run.json``), ``kind``.
    """

    def __init__(self, path: str | Path, *, which: str = "best", device: str = "cpu",
                 threshold: float | None = None) -> None:
        self.path, self.which, self.device = Path(path), which, resolve_device(device)
        self.threshold = threshold

    @property
    def run_dir(self) -> Path:
        """The run directory (a checkpoint's folder; ``snapshots/``' parent)."""
        if self.path.is_dir():
            return self.path
        folder = self.path.parent
        return folder.parent if folder.name == SNAPSHOTS else folder

    @functools.cached_property
    def checkpoint(self) -> Path:
        return resolve_checkpoint(self.path, self.which)

    @functools.cached_property
    def _contents(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors, meta = read_checkpoint(self.checkpoint)  # the one read of the file
        check_model_meta(self.checkpoint, meta)
        return tensors, meta

    def _needs(self, field: str) -> object:
        if field not in self.meta:
            raise CheckpointError(f"{self.checkpoint}: checkpoint has no {field} metadata "
                                  "(weights only?)")
        return self.meta[field]

    @property
    def meta(self) -> dict:
        return self._contents[1]

    def weights(self) -> dict[str, torch.Tensor]:
        """The checkpoint's model state dict (CPU tensors), without building the model."""
        return model_state(self._contents[0])

    @functools.cached_property
    def model(self) -> nn.Module:
        weights = self.weights()
        with torch.device("meta"):  # shapes first: a crafted header must not allocate
            load_state_checked(build_model(self.checkpoint, self.meta, self.task), weights,
                               source=str(self.checkpoint), assign=True)
        model = build_model(self.checkpoint, self.meta, self.task)  # the task's network last
        load_state_checked(model, weights, source=str(self.checkpoint))
        return model.to(self.device).eval()

    @property
    def config(self) -> dict:
        config = self.meta.get("config")
        return config if isinstance(config, dict) else {}

    @functools.cached_property
    def task(self) -> Task:
        return task_of(self.meta, threshold=self.threshold)

    @property
    def classes(self) -> list[str]:
        return list(self._needs("classes"))

    @functools.cached_property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self._needs("preprocess"))

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.meta["model"]["input_size"])

    @property
    def data_name(self) -> str:
        return self.config.get("data", "")

    @functools.cached_property
    def index(self) -> dict:
        """``run.json`` (empty when missing or unreadable)."""
        return read_index(self.run_dir)

    @property
    def kind(self) -> str:
        return str(self.index.get("kind", NETWORK))

    @property
    def is_network(self) -> bool:
        """True for a trained network (what export, filters and feature maps need)."""
        return True

    def read_file(self, name: str) -> bytes:
        """The bytes of one of the run's own files (a ``LAYOUT`` name, e.g. ``words.png``)."""
        if not is_run_file(name) or ".." in Path(name).parts or Path(name).is_absolute():
            raise CheckpointError(f"{name}: not a file of the run layout")
        path = self.run_dir / name
        if not path.is_file():
            raise CheckpointError(f"{self.run_dir}: has no {name}")
        return path.read_bytes()

    def metrics(self) -> list[dict]:
        """The epoch records of ``metrics.jsonl`` (a torn or odd line is skipped)."""
        return read_metrics(self.run_dir)

    def steps(self) -> list[dict]:
        """The per-step records of ``steps.jsonl`` ([] for runs made before it existed)."""
        return read_metrics(self.run_dir, STEPS, key="step")

    def events(self) -> list[dict]:
        """The controls applied while it trained (``events.jsonl``, :func:`read_events`)."""
        return read_events(self.run_dir)

    def load_split(self, split: str = "test", *, data: DataRequest | str | None = None,
                   root: str | None = None, limit: int | None = None) -> ImageSet:
        """``split`` of the data set the run was trained on (or ``data``: a name or a
        :class:`~cnnlab.data.request.DataRequest`), its first ``limit`` images; the run's own
        ``--data-root`` unless one is given."""
        request = DataRequest.of(data).with_defaults(None, root)
        dataset = request.with_defaults(self.data_name, self.config.get("data_root")).load(split)
        if limit is not None and limit < len(dataset):
            dataset = dataset.subset(torch.arange(limit))
        return dataset

    def source(self, split: str | ImageSet = "test", *, batch_size: int = 256,
               limit: int | None = None) -> BatchSource:
        """The run's ``split`` (or a loaded ImageSet), fitted and normalised as in training."""
        data = self.load_split(split, limit=limit) if isinstance(split, str) else split
        return to_batch_source(data, self.preprocess, batch_size=batch_size,
                               device=self.device)

    def _repr_html_(self) -> str:
        """Jupyter: the run's model, data, task, status, best and test metrics, and a table of
        its epochs."""
        model = self.meta.get("model", {}).get("name", "?")
        best, test = self.index.get("best") or {}, self.index.get("test") or {}
        facts = [("model", model), ("data", self.data_name), ("task", self.task.name),
                 ("status", self.index.get("status", "?")),
                 ("best", f"{best.get('metric', '?')} {_short(best.get('value'))} (epoch "
                          f"{best.get('epoch', '?')})"),
                 ("test", ", ".join(f"{k} {v:.4f}" for k, v in test.items()
                                    if _finite_number(v)) or "-")]
        records = self.metrics()
        keys = [k for k in ("epoch", "train_loss", "train_acc", "val_loss",
                            f"val_{self.task.main_metric}", "lr") if any(k in r for r in records)]
        rows = "".join("<tr>" + "".join(f"<td>{_short(r.get(k))}</td>" for k in keys) + "</tr>"
                       for r in records)
        return (f"<p><b>run {html.escape(self.run_dir.name)}</b></p><table>"
                + "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>"
                          for k, v in facts) + "</table><table><tr>"
                + "".join(f"<th>{k}</th>" for k in keys) + f"</tr>{rows}</table>")

    def check_classes(self, data: ImageSet) -> None:
        """CheckpointError when ``data`` has other classes than the model was trained on."""
        want, have = self.classes, self.task.output_names(list(data.classes))
        if want != have:
            raise CheckpointError(f"{self.path}: trained on classes {want[:6]}..., the data has "
                                  f"{have[:6]}...: wrong data set for this model?")


def open_run(path: str | Path | OpenRun, *, checkpoint: str = "best", device: str = "cpu",
             threshold: float | None = None) -> OpenRun:
    """Open a run directory or checkpoint file for reading (lazily; see :class:`OpenRun`).

    ``checkpoint``: ``best`` or ``last`` of a run directory; ``threshold``: a multilabel run's
    decision threshold (default 0.5). An :class:`OpenRun` given again is returned as it is (so
    a command that already opened a run reads its checkpoint once).
    """
    if isinstance(path, OpenRun):
        return path
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no run directory or checkpoint at {path}")
    run = OpenRun(path, which=checkpoint, device=device, threshold=threshold)
    if run.kind == NETWORK:
        return run
    if run.kind not in RUN_KINDS:
        raise CheckpointError(f"{run.run_dir}: a run of kind {run.kind!r}, which this cnnlab "
                              f"cannot read (known: {', '.join([NETWORK, *RUN_KINDS])})")
    return importlib.import_module(RUN_KINDS[run.kind]).open_kind(
        path, which=checkpoint, device=device, threshold=threshold)


def load_model(path: str | Path, *, which: str = "best", device: str | torch.device = "cpu",
               ) -> tuple[nn.Module, dict]:
    """Rebuild the model of a run directory or checkpoint file, weights loaded, in eval mode.

    Returns ``(model, meta)``; ``meta["classes"]`` and ``meta["preprocess"]`` describe the data.
    A wrapper of :func:`open_run` for code that wants the pair.

    Example:
        >>> model, meta = load_model("runs/lenet5-digits")  # doctest: +SKIP
    """
    run = open_run(path, checkpoint=which, device=device)
    return run.model, run.meta


def mixed_data(data_sets: dict[str, str | None]) -> str | None:
    """``"runs/a on mnist, runs/b on kmnist"`` when the runs of ``{path: data set}`` were
    trained on different data sets (unknown ones, None, left out), else None: for the warning
    of the commands that put runs side by side (ensembles, compare)."""
    known = {path: name for path, name in data_sets.items() if name}
    if len(set(known.values())) <= 1:
        return None
    return ", ".join(f"{path} on {name}" for path, name in known.items())


def build_model(file: Path, meta: dict, task: Task | None = None) -> nn.Module:
    """The architecture a checkpoint's metadata describes, freshly initialised (with the
    heads of its ``task``: the checkpoint's own unless given)."""
    spec = meta["model"]
    task = task or task_of(meta)
    try:
        model = task.build_model(
            create(spec["name"], num_classes=spec["num_classes"],
                   in_channels=spec["in_channels"], input_size=tuple(spec["input_size"]),
                   definition=(spec.get("definition") or {}).get("text"),
                   **spec.get("options", {})),
            spec["num_classes"], tuple(spec["input_size"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{file}: metadata 'model' does not build a model "
                              f"({error})") from None
    classes = meta.get("classes")
    if classes is not None and len(classes) != spec["num_classes"]:
        raise CheckpointError(f"{file}: {len(classes)} class names for a model with "
                              f"{spec['num_classes']} outputs; the checkpoint is inconsistent")
    return model


def read_index(run_dir: Path) -> dict:
    """``run.json`` of a run directory as a dict; {} when missing, torn or not an object."""
    try:
        values = json.loads((Path(run_dir) / INDEX).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return values if isinstance(values, dict) else {}


def read_metrics(run_dir: Path, name: str = METRICS, key: str = "epoch") -> list[dict]:
    """``metrics.jsonl``'s epoch records (or ``steps.jsonl``'s with ``key="step"``): the finite
    numbers of each line; torn lines (a crash mid-write), lines that are not objects or have
    no ``key`` number are skipped."""
    return [{k: v for k, v in record.items() if _finite_number(v)}
            for record in json_lines(Path(run_dir) / name) if _finite_number(record.get(key))]


def json_lines(path: Path) -> list[dict]:
    """The JSON objects of a run's JSON-lines file, one per line; a torn line (a crash
    mid-write) or one that is not an object is skipped; [] when the file is missing."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_events(run_dir: Path) -> list[dict]:
    """``events.jsonl``: ``{"step", "epoch", "action", "value"}`` per control applied while the
    run trained (the live page, :mod:`cnnlab.train.controls`), in file order. A torn line, or
    one without a whole ``step``/``epoch`` >= 0, a name for ``action`` and a finite number or
    null ``value``, is skipped."""
    events = []
    for record in json_lines(Path(run_dir) / EVENTS):
        step, epoch, action, value = (record.get(k) for k in ("step", "epoch", "action", "value"))
        whole = all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                    for n in (step, epoch))
        if whole and isinstance(action, str) and (value is None or _finite_number(value)):
            events.append({"step": step, "epoch": epoch, "action": action, "value": value})
    return events


def read_test_metrics(run_dir: Path) -> dict:
    """The finite scalar ``test`` metrics ``run.json`` records ({} when none)."""
    test = read_index(run_dir).get("test")
    return {k: v for k, v in test.items() if _finite_number(v)} if isinstance(test, dict) else {}


def _short(value: object) -> str:
    """A metric for a table cell: 4 significant digits, ``-`` when missing."""
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _finite_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
