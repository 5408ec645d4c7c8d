"""Saving and loading bag-of-visual-words runs: every file a ``bovw`` run writes or reads.

A run directory holds::

    config.yaml            the resolved BovwConfig (``cnnlab bovw`` flags)
    metrics.jsonl          one record per pyramid level l = 0..L (test/train accuracy, per class)
    run.json               "kind": "bovw", versions, git SHA, test metrics, confusion matrix
    codebook.safetensors   the K visual words (k-means centroids) + descriptor settings
    classifier.safetensors the classifier at level L: support vectors, dual coefficients,
                           intercepts and the kernel (SVM); weights (linear); training vectors (kNN)
    *.png                  words, word_map, pyramid, levels, confusion

Only tensors and JSON: no pickle, no joblib. A directory is created if it does not exist and
used if it is empty; cnnlab refuses to write into one that holds anything.

Example:
    >>> save_bovw(run_bovw(BovwConfig(data="digits")), "runs/bovw-digits")  # doctest: +SKIP
    >>> load_bovw("runs/bovw-digits").model.predict(images)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import save as safetensors_bytes

from cnnlab.bovw.classify import CLASSIFIER_TYPES
from cnnlab.bovw.codebook import Codebook
from cnnlab.bovw.config import BovwConfig
from cnnlab.bovw.model import BovwModel
from cnnlab.bovw.pipeline import BovwResult, LevelResult
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.files import atomic_write_bytes

KIND = "bovw"
META_KEY = "cnnlab"  # as cnnlab checkpoints: JSON metadata under this safetensors key


@dataclass
class SavedBovw:
    """A run read back: its settings, the model at level L, the per-level records, run.json."""

    directory: Path
    config: BovwConfig
    model: BovwModel
    levels: list[LevelResult]
    index: dict


def prepare_directory(directory: str | Path, *, create: bool = True) -> Path:
    """Create ``directory`` (parents too) or accept it empty; refuse one that holds files.
    ``create=False`` only checks (before a long run, so that nothing is left if it fails)."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: exists and is not a directory; choose another --out/--name")
    if path.is_dir() and any(path.iterdir()):
        raise ConfigError(f"{path}: exists and is not empty; choose another --name or --out "
                          f"(cnnlab never writes into a folder it did not create)")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def save_figures(figures: dict, directory: Path) -> list[Path]:
    """Each matplotlib Figure as ``NAME.png`` in ``directory``."""
    written = []
    for name, fig in figures.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        atomic_write_bytes(directory / f"{name}.png", buffer.getvalue())
        written.append(directory / f"{name}.png")
    return written


def write_json(path: Path, value: object) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=2).encode())


def save_bovw(result: BovwResult, directory: str | Path) -> Path:
    """Write the run in ``result`` to ``directory`` (created; refused if not empty)."""
    path = prepare_directory(directory)
    config = result.config
    atomic_write_bytes(path / "config.yaml",
                       yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    lines = [json.dumps(dataclasses.asdict(level)) + "\n" for level in result.levels]
    atomic_write_bytes(path / "metrics.jsonl", "".join(lines).encode())
    write_json(path / "run.json", run_index(result))
    model = result.model
    write_tensors(path / "codebook.safetensors", {"centroids": model.codebook.centroids},
                  {"kind": "codebook", "sigma": model.codebook.sigma,
                   "descriptor": model.descriptor, "step": model.step, "patch": model.patch,
                   "assignment": model.assignment, "levels": model.levels,
                   "weighted": model.weighted, "classes": model.classes})
    classifier = model.classifier
    kind = next(k for k, t in CLASSIFIER_TYPES.items() if isinstance(classifier, t))
    fields = {f.name: getattr(classifier, f.name) for f in dataclasses.fields(classifier)}
    write_tensors(path / "classifier.safetensors",
                  {k: v for k, v in fields.items() if isinstance(v, torch.Tensor)},
                  {"kind": kind, **{k: v for k, v in fields.items()
                                    if not isinstance(v, torch.Tensor)}})
    save_figures(result.figures, path)
    return path


def run_index(result: BovwResult) -> dict:
    """``run.json``: what kind of run, with what code, and its test metrics (level L in
    ``acc``, every level in ``acc_level<l>``)."""
    from cnnlab.train.rundir import git_sha
    from cnnlab.version import __version__

    test = {"acc": result.test_acc}
    test.update({f"acc_level{r.level}": r.test_acc for r in result.levels})
    classes = result.model.classes
    per_class = result.levels[-1].per_class_acc
    return {"kind": KIND, "status": "complete", "cnnlab_version": __version__,
            "torch_version": torch.__version__, "git_sha": git_sha(), "test": test,
            "levels": result.config.levels, "classifier": result.config.classifier,
            "classes": classes, "per_class_acc": dict(zip(classes, per_class, strict=True)),
            "confusion": result.confusion, "data": result.data, "seconds": result.seconds}


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata={META_KEY: json.dumps(meta)}))


def read_tensors(path: Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a safetensors file (a pickle is refused, never loaded)."""
    from cnnlab.runs.checkpoint import read_checkpoint

    tensors, meta = read_checkpoint(path)
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{path}: not a bag-of-visual-words {kind} (metadata kind "
                              f"{meta.get('kind')!r})")
    return tensors, meta


def load_classifier(path: Path):
    tensors, meta = read_tensors(path)
    kind = meta.pop("kind", None)
    if kind not in CLASSIFIER_TYPES:
        raise CheckpointError(f"{path}: unknown classifier kind {kind!r}; expected one of "
                              f"{', '.join(CLASSIFIER_TYPES)}")
    try:
        return CLASSIFIER_TYPES[kind](**tensors, **meta)
    except TypeError as error:
        raise CheckpointError(f"{path}: does not hold a {kind} classifier ({error})") from None


def load_model(path: Path) -> BovwModel:
    """The codebook and classifier files of a run as one :class:`BovwModel`."""
    file = path / "codebook.safetensors"
    tensors, meta = read_tensors(file, "codebook")
    try:
        return BovwModel(meta["descriptor"], int(meta["step"]), int(meta["patch"]),
                         meta["assignment"], int(meta["levels"]), bool(meta["weighted"]),
                         Codebook(tensors["centroids"], float(meta["sigma"])),
                         load_classifier(path / "classifier.safetensors"),
                         [str(c) for c in meta["classes"]])
    except KeyError as error:
        raise CheckpointError(f"{file}: missing {error} (not written by cnnlab bovw)") from None


def load_bovw(directory: str | Path) -> SavedBovw:
    """Read a run written by :func:`save_bovw`; ``.model.predict(images)`` works at once."""
    path = Path(directory)
    index_file = path / "run.json"
    if not index_file.is_file():
        raise CheckpointError(f"{path}: no run.json (is this a cnnlab bovw run directory?)")
    index = json.loads(index_file.read_text())
    if index.get("kind") != KIND:
        raise CheckpointError(f"{path}: a run of kind {index.get('kind', 'train')!r}, not "
                              f"{KIND!r}")
    config = BovwConfig.from_dict(yaml.safe_load((path / "config.yaml").read_text()) or {},
                                  source=str(path / "config.yaml"))
    model = load_model(path)
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    return SavedBovw(path, config, model, [LevelResult(**r) for r in records], index)
