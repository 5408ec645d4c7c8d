"""The IDX format of MNIST, Fashion-MNIST and KMNIST (LeCun et al., 1998; lecture 000, LeNet).

An IDX file is a 4-byte magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32 sizes and the
row-major payload. The files are shipped gzip-compressed or raw; which one is decided by the gzip
magic bytes ``1f 8b``, never by the file name, so a renamed file still reads. Every size in the
header is checked against the payload, so a truncated or padded file is refused, not misread.

Example:
    >>> images = read_idx("mnist/train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape, images.dtype                              # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import math
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.base import ImageSet
from cnnlab.data.budget import check_budget
from cnnlab.data.registry import DataSource, LoadRequest, RemoteFile, find_folder, register_source
from cnnlab.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
MAX_IDX_BYTES = 1 << 36  # 64 GiB: above any real IDX file; a larger header is corrupt

# IDX type code -> big-endian NumPy dtype (the format's table).
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_file_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic. The decompression is
    streamed: it stops one byte past the size the IDX header declares (checked against the
    data budget first), so a 1 MB file that inflates to gigabytes never does."""
    try:
        with open(path, "rb") as handle:
            gzipped = handle.read(2) == GZIP_MAGIC
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as stream:
            return _read_declared(stream, path)
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated gzip data ({error})") from None


def _read_declared(stream, path: Path) -> bytes:
    """Header, then at most the payload it declares + 1 byte (to see a file that is longer)."""
    head = stream.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
        return head + stream.read(1 << 16)  # not IDX: parse_idx names the problem
    dims = stream.read(4 * head[3])
    shape = [int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims) - 3, 4)]
    expected = math.prod(shape) * np.dtype(IDX_DTYPES[head[2]]).itemsize
    if expected <= MAX_IDX_BYTES:
        check_budget(expected, f"{path} (IDX {tuple(shape)})")
    else:  # parse_idx names the impossible header
        return head + dims
    return head + dims + stream.read(expected + 1)


def parse_idx(data: bytes, path: Path) -> np.ndarray:
    """Decode IDX bytes into an array of the header's shape and dtype (native byte order)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (magic {data[:4].hex() or 'empty'}, "
                        "expected 0000<type><ndim>)")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}; expected one of "
                        + ", ".join(f"0x{code:02x}" for code in IDX_DTYPES))
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{path}: header declares {ndim} dimensions but the file has "
                        f"{len(data)} bytes")
    shape = tuple(int(size) for size in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: 2^22 * 2^21 * 2^21 is no overflow
    actual = len(data) - header_size
    if expected > MAX_IDX_BYTES:
        raise DataError(f"{path}: header {shape} ({dtype.name}) declares {expected} bytes, "
                        f"more than the {MAX_IDX_BYTES >> 30} GiB cnnlab reads; the file is "
                        "corrupt or not an IDX file")
    if actual != expected:
        raise DataError(f"{path}: payload has {actual} bytes but the header {shape} "
                        f"({dtype.name}) needs {expected}; the file is truncated or corrupt")
    array = np.frombuffer(data, dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a NumPy array with the header's shape.

    Raises DataError naming the file when it is missing, not IDX, a truncated gzip, or when
    the payload size differs from the product of the header's sizes.
    """
    path = Path(path)
    return parse_idx(read_file_bytes(path), path)


def load_idx_pair(
    images_path: str | Path, labels_path: str | Path, *, name: str, classes: list[str]
) -> ImageSet:
    """MNIST-style image + label files -> ImageSet with uint8 images ``(N, 1, H, W)``."""
    images = read_idx(images_path)  # (N, H, W)
    labels = read_idx(labels_path)  # (N,)
    if images.ndim != 3 or images.dtype != np.uint8 or 0 in images.shape[1:]:
        raise DataError(f"{images_path}: expected uint8 images (N, H, W) of at least 1x1 "
                        f"pixels, got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D label file, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{labels_path}: labels must be integers, got {labels.dtype.name}")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels but {images_path} has "
                        f"{len(images)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{labels_path}: labels span {labels.min()}..{labels.max()} but "
                        f"{name} has {len(classes)} classes")
    return ImageSet(
        images=torch.from_numpy(images[:, None]),  # (N, 1, H, W)
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=list(classes),
        name=name,
    )


# The four files of an IDX data set, by split: (images, labels); each may also be un-gzipped.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def idx_file(folder: Path, name: str) -> Path:
    """``name`` or its un-gzipped twin (the reader sniffs the gzip magic itself)."""
    raw = folder / name.removesuffix(".gz")
    return folder / name if (folder / name).exists() or not raw.exists() else raw


def has_idx_files(folder: Path) -> bool:
    """True when ``folder`` holds all four files (gzipped or raw)."""
    return all(idx_file(folder, f).exists() for pair in IDX_FILES.values() for f in pair)


def load_idx_split(request: LoadRequest, *, classes: tuple[str, ...]) -> ImageSet:
    """The ``request.split`` pair of files in the folder ``locate`` found."""
    images, labels = IDX_FILES[request.split]
    return load_idx_pair(idx_file(request.found, images), idx_file(request.found, labels),
                         name=request.name, classes=list(classes))


def idx_source(name: str, description: str, *, classes: tuple[str, ...], url: str = "",
               md5: dict[str, str] | None = None) -> DataSource:
    """A named IDX set stored in ``ROOT/<name>/``; downloadable when ``url`` and the four
    files' ``md5`` are given."""
    remote = tuple(RemoteFile(url + f, m, f"{name}/{f}") for f, m in (md5 or {}).items())
    return DataSource(name, description, partial(load_idx_split, classes=classes),
                      locate=partial(find_folder, folder=name, complete=has_idx_files),
                      folder=name, download=remote if url else ())


register_source(idx_source(
    "mnist", "MNIST 28x28 handwritten digits, 60k/10k (IDX)", classes=tuple("0123456789"),
    url="https://ossci-datasets.s3.amazonaws.com/mnist/",
    md5={"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}))
register_source(idx_source(
    "fashion-mnist", "Fashion-MNIST 28x28 clothing, 60k/10k (IDX)",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
             "Bag", "Ankle boot"),
    url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    md5={"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}))
register_source(idx_source(
    "kmnist", "Kuzushiji-MNIST 28x28 cursive Japanese, 60k/10k (IDX)",
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    url="http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    md5={"train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
         "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
         "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
         "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134"}))
