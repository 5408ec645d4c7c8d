"""CIFAR-10 / CIFAR-100 "python version" batches (Krizhevsky, 2009), read without trusting pickle.

The official batches are Python pickles of a dict: ``data`` is a uint8 array ``(N, 3072)`` (1024
red, 1024 green, 1024 blue values, each a row-major 32x32 plane), ``labels`` (CIFAR-10) or
``fine_labels`` (CIFAR-100) a list of N ints; the meta file holds the class names.

A pickle can run any function while it loads, so this module never calls ``pickle.load``: its
:class:`RestrictedUnpickler` resolves only the three NumPy names an array needs and refuses
every other ``module.name`` with a DataError naming the file.

Layouts read (``root`` may be the batch folder itself or its parent):
    cifar-10-batches-py/  data_batch_1..5, test_batch, batches.meta (label_names)
    cifar-100-python/     train, test, meta (fine_label_names)

The named sets ``cifar10`` and ``cifar100`` are registered at the end (:func:`cifar_source`);
``cifar10`` is also found as a JPEG folder twin ``cifar10-jpg/{train,test}/<class>/*.jpg``.
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.base import ImageSet
from cnnlab.data.registry import DECODED_CACHE, DataSource, LoadRequest, RemoteFile, register_source
from cnnlab.errors import DataError, choices_hint

try:  # NumPy >= 2 moved the array internals to numpy._core.
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct

# The only globals an ndarray pickle (protocols 2-4) needs; numpy.core.* is how NumPy 1.x and the
# original Python 2 files name them. dict/list/bytes/str/int are pickle opcodes, not globals.
# Python 3 writes bytes at protocol 2 as _codecs.encode(latin-1 text): a pure function, allowed.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): codecs.encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

PIXELS_PER_IMAGE = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """File names and dict keys of one CIFAR variant."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str


LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
    ),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and plain containers, and nothing else."""

    def __init__(self, file: Any, path: Path) -> None:
        # latin1 turns Python 2 str into str and is what NumPy needs for py2 array payloads.
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise DataError(f"{self.path}: refused to load '{module}.{name}' from the pickle; "
                            "a CIFAR batch only contains NumPy arrays, lists and strings")
        return allowed


def load_pickle_safely(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; errors name the file."""
    try:
        with path.open("rb") as file:
            return RestrictedUnpickler(file, path).load()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except DataError:
        raise
    except Exception as error:  # any pickle/NumPy failure means a corrupt file
        raise DataError(f"{path}: corrupt pickle ({type(error).__name__}: {error})") from None


def text_keys(entry: Any, path: Path) -> dict[str, Any]:
    """The batch dict with bytes keys (Python 2 files, ``encoding=bytes`` writers) as str."""
    if not isinstance(entry, dict):
        raise DataError(f"{path}: expected a dict, got {type(entry).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_class_names(path: Path, key: str) -> list[str]:
    """Class names from the meta file (``label_names`` / ``fine_label_names``)."""
    meta = text_keys(load_pickle_safely(path), path)
    if key not in meta or not isinstance(meta[key], list):
        raise DataError(f"{path}: no '{key}' list in the meta file")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[key]]


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> uint8 data ``(N, 3072)`` and int64 labels ``(N,)``, validated."""
    batch = text_keys(load_pickle_safely(path), path)
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"{path}: missing '{key}'; has {sorted(batch)}")
    data, labels = batch["data"], np.asarray(batch[label_key])
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != PIXELS_PER_IMAGE:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{path}: 'data' must be (N, {PIXELS_PER_IMAGE}), got {shape}")
    if data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' must be uint8, got {data.dtype}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {len(data)} images but '{label_key}' has shape "
                        f"{labels.shape} ({labels.dtype})")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels span {labels.min()}..{labels.max()}, "
                        f"expected 0..{num_classes - 1}")
    return data, labels.astype(np.int64)


def batch_folder(root: Path, layout: CifarLayout) -> Path:
    """``root/<official folder>`` when it exists, else ``root`` itself."""
    nested = root / layout.folder
    return nested if nested.is_dir() else root


def read_cifar(root: str | Path, split: str, *, variant: str = "cifar10") -> ImageSet:
    """Read a CIFAR split from the python batches -> ImageSet with images ``(N, 3, 32, 32)``.

    Example:
        >>> train = read_cifar("~/data", "train")  # doctest: +SKIP
        >>> train.images.shape                      # doctest: +SKIP
        torch.Size([50000, 3, 32, 32])
    """
    if variant not in LAYOUTS:
        raise DataError(f"unknown CIFAR variant {choices_hint(variant, list(LAYOUTS))}")
    if split not in ("train", "test"):
        raise DataError(f"unknown CIFAR split {choices_hint(split, ['train', 'test'])}")
    layout = LAYOUTS[variant]
    folder = batch_folder(Path(root).expanduser(), layout)
    classes = read_class_names(folder / layout.meta_file, layout.names_key)
    files = layout.train_files if split == "train" else layout.test_files
    batches = [read_batch(folder / f, layout.label_key, len(classes)) for f in files]
    data = np.concatenate([b[0] for b in batches])  # (N, 3072)
    labels = np.concatenate([b[1] for b in batches])  # (N,)
    images = data.reshape(-1, 3, 32, 32)  # planes R, G, B; each row-major 32x32
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels),
                    classes, name=variant)


def find_cifar(roots: list[Path], *, batch_folder: str, jpeg_folder: str | None) -> Path | None:
    """The first batch folder, or JPEG-folder twin, in ``roots`` (batches win within a root)."""
    for base in roots:
        if (base / batch_folder).is_dir():
            return base / batch_folder
        if jpeg_folder and (base / jpeg_folder / "train").is_dir():
            return base / jpeg_folder
    return None


def load_cifar_split(request: LoadRequest, *, variant: str) -> ImageSet:
    """A split from the python batches, or from the JPEG twin's ``train/`` or ``test/`` folder."""
    # Pillow only for the JPEG twin: `cnnlab datasets` imports this module and stays light
    from cnnlab.data.folder import read_image_folder

    if (request.found / "train").is_dir():  # cifar-100-python/train is a file, not a folder
        data = read_image_folder(request.found / request.split, skip_bad=request.skip_bad,
                                 cache_dir=DECODED_CACHE)
    else:
        data = read_cifar(request.found, request.split, variant=variant)
    data.name = request.name
    return data


def cifar_source(name: str, description: str, *, variant: str, url: str, md5: str,
                 jpeg_folder: str | None = None) -> DataSource:
    """A named CIFAR set: ``variant``'s batch folder (or ``jpeg_folder``), its archive and MD5."""
    batches = LAYOUTS[variant].folder
    return DataSource(name, description, partial(load_cifar_split, variant=variant),
                      locate=partial(find_cifar, batch_folder=batches, jpeg_folder=jpeg_folder),
                      folder=jpeg_folder or batches,
                      download=(RemoteFile(url, md5, url.rsplit("/", 1)[1], unpack=True),))


register_source(cifar_source(
    "cifar10", "CIFAR-10 32x32 RGB, 10 classes, 50k/10k (batches or JPEG folder)",
    variant="cifar10", jpeg_folder="cifar10-jpg",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a"))
register_source(cifar_source(
    "cifar100", "CIFAR-100 32x32 RGB, 100 classes, 50k/10k (batches)", variant="cifar100",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85"))
