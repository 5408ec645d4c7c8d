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
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.base import ImageSet
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
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated gzip data ({error})") from None


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
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images (N, H, W), "
                        f"got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D label file, got shape {labels.shape}")
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
