"""The layout of a run directory: every file a run may hold, in one table.

A run directory is the one artifact every command reads. Writers (``cnnlab.train``) and the
reader (:mod:`cnnlab.runs.reader`) name its files through the constants here; a later feature
that adds a run file adds one row to :data:`LAYOUT`. Names are relative to the run directory;
``*`` stands for any text without a ``/``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFile:
    """One entry of a run directory: its name (or pattern) and what it holds."""

    name: str
    what: str


CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
STEPS = "steps.jsonl"
INDEX = "run.json"
LOCK = "train.lock"
ELASTIC_MARKER = "torchrun.json"
FINETUNE = "finetune.json"
SNAPSHOTS = "snapshots"
TENSORBOARD = "tensorboard"
MODEL_DEFINITION = "model"  # + the definition file's own suffix: model.yaml, model.prototxt
# a bag-of-visual-words run (``cnnlab bovw``, run.json "kind": "bovw") holds these instead of
# checkpoints, beside config.yaml, metrics.jsonl (one record per pyramid level) and run.json
CODEBOOK = "codebook.safetensors"
CLASSIFIER = "classifier.safetensors"
BOVW_PICTURES = {  # name.png -> what it shows (the report's captions)
    "levels": "test accuracy of the classifier on pyramid levels 0..l",
    "words": "visual words: for sampled centroids, the training patches nearest to each",
    "word_map": "a test image with every grid patch coloured by its visual word",
    "pyramid": "that image's word histograms at levels 0..L, with the level weights",
    "confusion": "the test confusion matrix at level L"}

LAYOUT: tuple[RunFile, ...] = (
    RunFile(CONFIG, "the resolved settings; `cnnlab train --config` re-runs them"),
    RunFile(METRICS, "one JSON line per epoch (train/val loss and metrics, lr, time)"),
    RunFile(STEPS, "training loss, accuracy, lr and images/s per window of optimizer steps"),
    RunFile(INDEX, "status, versions, git SHA, which epoch last/best hold, test metrics"),
    RunFile("last.safetensors", "weights, optimizer and RNG state of the newest epoch"),
    RunFile("last.json", "last.safetensors' metadata, for people (derived)"),
    RunFile("best.safetensors", "the checkpoint of the best validation epoch"),
    RunFile("best.json", "best.safetensors' metadata, for people (derived)"),
    RunFile(f"{SNAPSHOTS}/epoch-*.safetensors", "weights kept at --snapshot-epochs"),
    RunFile(f"{SNAPSHOTS}/epoch-*.json", "a snapshot's metadata (derived)"),
    RunFile(f"{MODEL_DEFINITION}.*", "the text of a model defined by a file (YAML, prototxt)"),
    RunFile(LOCK, "held while a process trains the run: pid, host, start time"),
    RunFile(ELASTIC_MARKER, "torchrun's job id, so a restarted attempt finds this run"),
    RunFile(FINETUNE, "transfer settings of a fine-tuning run"),
    RunFile(f"{TENSORBOARD}/*", "TensorBoard event files (--tensorboard)"),
    RunFile(CODEBOOK, "bovw run: the K visual words (k-means centroids) and descriptor settings"),
    RunFile(CLASSIFIER, "bovw run: SVM support vectors and coefficients, linear weights or kNN "
                        "training vectors"),
    *(RunFile(f"{name}.png", f"bovw run: {what}") for name, what in BOVW_PICTURES.items()),
)


def checkpoint_name(which: str) -> str:
    """``last`` -> ``last.safetensors``; ``snapshots/epoch-003`` -> its file."""
    return f"{which}.safetensors"


def snapshot_name(epoch: int) -> str:
    return f"{SNAPSHOTS}/epoch-{epoch:03d}"


def is_run_file(relative: str) -> bool:
    """True when ``relative`` (a path inside a run directory) is one of the run's own files."""
    return any(fnmatch.fnmatchcase(relative, entry.name) for entry in LAYOUT)


def is_run_dir(path: str | Path) -> bool:
    """A folder is a run when it holds a run's config or index, or the lock of a process
    setting one up."""
    path = Path(path)
    return any((path / name).is_file() for name in (CONFIG, INDEX, LOCK))


def owning_run(path: str | Path) -> Path | None:
    """The run directory whose own file ``path`` is (``RUN/best.safetensors``,
    ``RUN/snapshots/epoch-002.json``), else None."""
    path = Path(path).absolute()
    for depth, run in enumerate(path.parents):
        if depth > 1:
            return None
        relative = path.relative_to(run).as_posix()
        if is_run_dir(run) and is_run_file(relative):
            return run
    return None
