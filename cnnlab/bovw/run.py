"""A saved bag-of-visual-words run, read through the run layer like any other run.

``open_run(DIR)`` sees ``"kind": "bovw"`` in ``run.json`` and returns a :class:`BovwRun`
(:data:`cnnlab.runs.reader.RUN_KINDS`): the same ``.kind``, ``.index``, ``.config``,
``.classes``, ``.meta``, ``.metrics()`` and ``.load_split()`` as a network's run, and
``.pipeline`` in place of ``.model``: the :class:`~cnnlab.bovw.model.BovwModel` rebuilt from
``codebook.safetensors`` and ``classifier.safetensors`` (no pickle); ``.model``, which a
network's tools ask for, is a one-line error. Its task, :class:`BovwTask`,
declares what the tools do with it: ``evaluate`` scores its classifier (:func:`evaluate_bovw`),
``predict`` gives the class and every class's score, ``report`` shows the pyramid levels, the
visual words and the confusion matrix; it has no filters to draw and nothing to export.

Example:
    >>> run = open_run("runs/bovw-mnist")  # doctest: +SKIP
    >>> run.kind, run.task.name, [round(r["test_acc"], 3) for r in run.metrics()]  # doctest: +SKIP
    ('bovw', 'bovw', [0.949, 0.969, 0.969])
    >>> labels, scores = run.score_images(run.load_split("test").images)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import ClassVar

import torch

from cnnlab.bovw.config import BovwConfig
from cnnlab.bovw.model import BovwModel
from cnnlab.bovw.splits import load_split
from cnnlab.bovw.store import load_model, read_config, read_levels
from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import Preprocess
from cnnlab.data.request import DataRequest
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.evaluate import Report, Scores
from cnnlab.runs.layout import CLASSIFIER
from cnnlab.runs.reader import OpenRun, open_run
from cnnlab.tasks import Task


class BovwTask(Task):
    """Classification by a hand-crafted pipeline (lecture 004): what the tools show for it.

    Not a ``--task`` of ``cnnlab train`` (nothing here is trained by gradient descent), so it is
    not registered; only a :class:`BovwRun` hands it out."""

    name: ClassVar[str] = "bovw"
    summary: ClassVar[str] = ("bag of visual words: dense descriptors, a k-means codebook, "
                              "pyramid histograms and an SVM (lecture 004), no network")
    output_kind: ClassVar[str] = "scores"  # predict: the class and each class's score
    evaluation: ClassVar[str] = "bovw"
    report_sections: ClassVar[tuple[str, ...]] = ("config", "bovw")
    picture_kinds: ClassVar[tuple[str, ...]] = ()  # its pictures are saved with the run
    curve_metrics: ClassVar[tuple[str, ...]] = ()


class BovwRun(OpenRun):
    """A ``cnnlab bovw`` run directory opened for reading (see the module doc)."""

    @property
    def is_network(self) -> bool:
        return False

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CLASSIFIER

    @functools.cached_property
    def settings(self) -> BovwConfig:
        return read_config(self.run_dir)

    @functools.cached_property
    def pipeline(self) -> BovwModel:
        """The fitted pipeline (descriptors, codebook, pyramid, classifier), checked."""
        return load_model(self.run_dir)

    @property
    def model(self):
        """A network's tools (summary, probe, invariance, ...) ask for this: one line instead."""
        raise ConfigError(f"{self.run_dir} is a bovw run, not a network: this command needs a "
                          f"trained network (a bovw run works with evaluate, predict, report "
                          f"and compare; its pipeline is open_run(...).pipeline)")

    @functools.cached_property
    def meta(self) -> dict:
        """What a checkpoint's metadata says for a network, from run.json and config.yaml."""
        index, config = self.index, self.settings
        data = index.get("data") if isinstance(index.get("data"), dict) else {}
        channels = len((data.get("preprocess") or {}).get("mean") or [1])
        return {"kind": self.kind, "config": config.to_dict(),
                "classes": [str(c) for c in index.get("classes") or self.pipeline.classes],
                "model": {"name": f"bag of visual words ({config.descriptor}, K={config.words}, "
                                  f"L={config.levels}, {config.classifier})",
                          "input_size": [channels, data.get("height"), data.get("width")]},
                "preprocess": data.get("preprocess"),
                **{k: index.get(k) for k in ("cnnlab_version", "torch_version", "git_sha")}}

    def weights(self) -> dict[str, torch.Tensor]:
        raise ConfigError(f"{self.run_dir}: a bovw run holds a codebook and a classifier, no "
                          f"network weights")

    @property
    def config(self) -> dict:
        return self.settings.to_dict()

    @functools.cached_property
    def task(self) -> Task:
        return BovwTask()

    @functools.cached_property
    def preprocess(self) -> Preprocess:
        """How predict prepares an image: the training size and polarity, no normalisation."""
        values = self.meta["preprocess"]
        if not isinstance(values, dict):  # a run saved before run.json recorded it
            return Preprocess(1, tuple(self.meta["model"]["input_size"][1:]), "resize", [0.0],
                              [1.0], 0.5)
        return Preprocess.from_dict(values)

    def metrics(self) -> list[dict]:
        """One record per pyramid level: ``level``, ``test_acc``, ``train_acc``,
        ``per_class_acc``, ``seconds``."""
        return [dataclasses.asdict(level) for level in read_levels(self.run_dir)]

    def load_split(self, split: str = "test", *, data: DataRequest | str | None = None,
                   root: str | None = None, limit: int | None = None) -> ImageSet:
        """The run's own ``split`` as it drew it (``--train-per-class``, ``--test-count``,
        same seed), so scoring it reproduces the recorded accuracy; or ``data``'s split."""
        if data is None or DataRequest.of(data).name is None:
            config = self.settings if root is None else dataclasses.replace(
                self.settings, data_root=root)
            dataset = load_split(config, split)
            return dataset if limit is None else dataset.subset(torch.arange(
                min(limit, len(dataset))))
        return super().load_split(split, data=data, root=root, limit=limit)

    def source(self, split="test", *, batch_size: int = 256, limit: int | None = None):
        raise ConfigError(f"{self.run_dir}: a bovw run is not a network; it cannot be "
                          f"averaged with networks or fed batches of normalised tensors")

    def check_classes(self, data: ImageSet) -> None:
        if list(data.classes) != self.classes:
            raise CheckpointError(f"{self.path}: built on classes {self.classes[:6]}..., the "
                                  f"data has {list(data.classes)[:6]}...: wrong data set?")

    @property
    def score_name(self) -> str:
        return self.pipeline.score_name

    def score_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(N, C, H, W)`` -> predicted labels ``(N,)`` and every class's score
        ``(N, classes)`` (:attr:`score_name`; the label is the classifier's own decision)."""
        return self.pipeline.decide(images, source=str(self.run_dir), log=None)


def open_kind(path: str | Path, *, which: str = "best", device: str = "cpu",
              threshold: float | None = None) -> BovwRun:
    """:func:`cnnlab.runs.open_run` for ``"kind": "bovw"`` (``which`` is ignored: one model)."""
    return BovwRun(path, which=which, device=device, threshold=threshold)


def score_predictions(name: str, predictions: torch.Tensor, scores: torch.Tensor,
                      data: ImageSet, *, k: int = 5) -> Scores:
    """:class:`cnnlab.evaluate.Scores` of a classifier's own decisions; the top-k and the two
    guesses of each error come from the class scores, the first guess is the decision."""
    classes, labels = list(data.classes), data.labels
    count = len(classes)
    k = min(k, count)
    ranked = scores.nan_to_num(float("-inf")).argsort(dim=1, descending=True, stable=True)
    confusion = torch.bincount(labels * count + predictions, minlength=count**2).view(count, count)
    per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1).double()
    errors = []
    for i in (predictions != labels).nonzero().flatten().tolist():
        second = next(int(c) for c in ranked[i] if c != predictions[i])
        errors.append({"index": i, "true": classes[int(labels[i])],
                       "pred": classes[int(predictions[i])],
                       "top2": [(classes[c], round(float(scores[i, c]), 4))
                                for c in (int(predictions[i]), second)],
                       "path": data.paths[i] if data.paths else None})
    in_top = (ranked[:, :k] == labels[:, None]).any(1) | (predictions == labels)
    return Scores(name, float((predictions == labels).double().mean()),
                  float(in_top.double().mean()), k,
                  dict(zip(classes, per_class.tolist(), strict=True)), confusion.tolist(), errors)


def evaluate_bovw(run: str | Path | OpenRun, *, data: str | DataRequest | None = None,
                  split: str = "test", data_root: str | None = None, k: int = 5) -> Report:
    """``cnnlab evaluate`` of a bovw run: its model on ``split`` (default: the run's own test
    images, so ``top1`` is the accuracy ``run.json`` recorded), as a network's
    :class:`~cnnlab.evaluate.Report`."""
    if k < 1:
        raise ConfigError(f"--top-k {k}: expected 1 or more")
    opened = open_run(run)
    if not isinstance(opened, BovwRun):
        raise ConfigError(f"{opened.path}: not a bovw run (kind {opened.kind!r})")
    dataset = opened.load_split(split, data=data, root=data_root)
    opened.check_classes(dataset)
    predictions, scores = opened.score_images(dataset.images)
    member = score_predictions(str(opened.path), predictions, scores, dataset, k=k)
    return Report([member], None, DataRequest.of(data).name or opened.data_name, split,
                  len(dataset))
