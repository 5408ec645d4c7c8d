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

from cnnlab.bovw.classify import CLASSIFIER_TYPES, Classifier
from cnnlab.bovw.codebook import Codebook
from cnnlab.bovw.config import BovwConfig
from cnnlab.bovw.model import BovwModel
from cnnlab.bovw.pipeline import BovwResult, LevelResult
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.files import atomic_write_bytes
from cnnlab.runs.layout import CLASSIFIER, CODEBOOK, CONFIG, INDEX, METRICS
from cnnlab.runs.reader import read_index
from cnnlab.yamltext import load_yaml

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
    atomic_write_bytes(path / CONFIG,
                       yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    lines = [json.dumps(dataclasses.asdict(level)) + "\n" for level in result.levels]
    atomic_write_bytes(path / METRICS, "".join(lines).encode())
    write_json(path / INDEX, run_index(result))
    model = result.model
    write_tensors(path / CODEBOOK, {"centroids": model.codebook.centroids},
                  {"kind": "codebook", "sigma": model.codebook.sigma,
                   "descriptor": model.descriptor, "step": model.step, "patch": model.patch,
                   "assignment": model.assignment, "levels": model.levels,
                   "weighted": model.weighted, "classes": model.classes})
    classifier = model.classifier
    kind = next(k for k, t in CLASSIFIER_TYPES.items() if isinstance(classifier, t))
    fields = {f.name: getattr(classifier, f.name) for f in dataclasses.fields(classifier)}
    write_tensors(path / CLASSIFIER,
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

    if not path.is_file():
        raise CheckpointError(f"{path.parent}: no {path.name} (a bovw run keeps its codebook "
                              f"and classifier there; re-run cnnlab bovw)")
    tensors, meta = read_checkpoint(path)
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{path}: not a bag-of-visual-words {kind} (metadata kind "
                              f"{meta.get('kind')!r})")
    return tensors, meta


def load_classifier(path: Path) -> Classifier:
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
    """The codebook and classifier files of a run as one :class:`BovwModel`, checked: shapes
    that do not fit together are a CheckpointError, never a failure inside the pipeline."""
    file = path / CODEBOOK
    tensors, meta = read_tensors(file, "codebook")
    classifier = load_classifier(path / CLASSIFIER)
    try:
        model = BovwModel(str(meta["descriptor"]), int(meta["step"]), int(meta["patch"]),
                          str(meta["assignment"]), int(meta["levels"]), bool(meta["weighted"]),
                          Codebook(tensors["centroids"], float(meta["sigma"])), classifier,
                          [str(c) for c in meta["classes"]])
    except KeyError as error:
        raise CheckpointError(f"{file}: missing {error} (not written by cnnlab bovw)") from None
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{file}: unreadable settings ({error})") from None
    model.check(f"{path / CLASSIFIER} with {CODEBOOK}")
    return model


def read_levels(path: Path) -> list[LevelResult]:
    """``metrics.jsonl``: one :class:`LevelResult` per pyramid level."""
    file = path / METRICS
    try:
        return [LevelResult(**json.loads(line)) for line in file.read_text().splitlines()
                if line.strip()]
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(f"{file}: not the per-level records of a bovw run "
                              f"({type(error).__name__})") from None


def load_bovw(directory: str | Path) -> SavedBovw:
    """Read a run written by :func:`save_bovw`; ``.model.predict(images)`` works at once."""
    path = Path(directory)
    index = read_index(path)
    if not index:
        raise CheckpointError(f"{path}: no readable run.json (is this a cnnlab bovw run "
                              f"directory?)")
    if index.get("kind") != KIND:
        raise CheckpointError(f"{path}: a run of kind {index.get('kind', 'network')!r}, not "
                              f"{KIND!r}")
    return SavedBovw(path, read_config(path), load_model(path), read_levels(path), index)


def read_config(path: Path) -> BovwConfig:
    """``config.yaml`` of a run: the resolved settings (unknown keys, wrong types refused)."""
    file = Path(path) / CONFIG
    if not file.is_file():
        raise CheckpointError(f"{path}: no {CONFIG}")
    return BovwConfig.from_dict(load_yaml(file.read_text(), source=str(file)) or {},
                                source=str(file))
