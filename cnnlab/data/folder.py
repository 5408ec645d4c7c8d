"""Image folders: one sub-folder per class, like ``cifar10-jpg/train/cat/0001.jpg``.

Class index = position of the folder name in sorted order. Hidden entries (``.git``,
``.ipynb_checkpoints``, ``._cat.jpg``) and files whose extension is not an image are ignored;
class folders are searched recursively. All images must share one size: pass ``size=(H, W)`` to
resize the ones that differ (bilinear, antialiased), otherwise a differing image is a DataError.
Grey and colour images mixed in one folder all become RGB when ``channels`` is None.

Decoding runs in a thread pool (PIL releases the GIL while decoding). With ``cache_dir`` the
decoded uint8 array is stored as an ``.npz`` (no pickle) keyed by the root, the file list and
every file's size and mtime, so editing, adding or removing an image rebuilds it.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.data.base import ImageSet
from cnnlab.data.budget import check_budget
from cnnlab.data.images import IMAGE_EXTENSIONS, load_image
from cnnlab.errors import DataError
from cnnlab.files import atomic_write_bytes

CACHE_VERSION = 1  # bump when the decoding rules change, to invalidate old caches
CHUNK = 256  # images per pool task: small enough to stop early, large enough to amortise


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def list_class_folders(root: Path) -> list[Path]:
    """Sorted, non-hidden sub-folders of ``root``; DataError when there are none."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found (expected a directory)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p))
    if not folders:
        raise DataError(f"{root}: no class folders; expected one sub-folder per class, "
                        f"e.g. {root / 'cat' / '1.jpg'}")
    return folders


def list_images(folder: Path, _visited: set[tuple[int, int]] | None = None) -> list[os.DirEntry]:
    """Image files under ``folder`` (recursive, sorted), skipping hidden files and folders.

    ``os.scandir`` entries rather than Paths: listing and stat-ing 50,000 files stays cheap.
    Symlinked folders are followed, each real folder (``st_dev``, ``st_ino``) once, so a link
    back to a parent (a loop) adds nothing instead of recursing forever; a dangling or
    self-referencing link is skipped; an unreadable folder is a DataError naming it.
    """
    visited = set() if _visited is None else _visited
    try:
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in visited:
            return []
        visited.add((info.st_dev, info.st_ino))
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        found: list[os.DirEntry] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                found += list_images(Path(entry.path), visited)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS \
                    and _is_regular_file(entry):  # a FIFO named x.png would hang the reader
                found.append(entry)
    except OSError as error:
        where = error.filename or folder
        raise DataError(f"{where}: cannot list the folder ({error.strerror or error})") from None
    return found


def _is_regular_file(entry: os.DirEntry) -> bool:
    """A regular file or a link to one (not a FIFO, socket or device)."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_dir(entry: os.DirEntry) -> bool:
    """A folder or a link to one; a dangling or self-referencing link (ELOOP) is neither."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def scan_folder(root: Path) -> tuple[list[os.DirEntry], list[int], list[str]]:
    """All image files, their class indices and the class names; empty classes are errors."""
    files: list[os.DirEntry] = []
    labels: list[int] = []
    folders = list_class_folders(root)
    for index, folder in enumerate(folders):
        images = list_images(folder)
        if not images:
            extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise DataError(f"{folder}: class folder has no images ({extensions})")
        files += images
        labels += [index] * len(images)
    return files, labels, [class_name(f) for f in folders]


def class_name(folder: Path) -> str:
    """A class folder's name as text; bytes that are not UTF-8 (a Latin-1 file system name)
    are shown as escapes (``caf\\xe9``) instead of failing when the name is printed or saved."""
    return folder.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def cache_path(root: Path, channels: int | None, size: tuple[int, int] | None,
               cache_dir: Path) -> Path:
    """One cache file per (folder, channels, size): a rebuild overwrites, never accumulates."""
    resolved = root.resolve()
    digest = hashlib.sha256(f"{resolved}|{channels}|{size}".encode()).hexdigest()[:16]
    safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in resolved.name)
    return cache_dir / f"{safe_name}-{digest}.npz"


def content_key(files: list[os.DirEntry]) -> str:
    """Hash of every file's path, size, mtime, ctime and inode: any edit, addition or removal
    changes it, also one that keeps the size and the modification time (``cp -p``,
    ``rsync -t``): neither can preserve the change time or the inode."""
    digest = hashlib.sha256(f"cnnlab-folder-cache-v{CACHE_VERSION}\n".encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.path}\t{stat.st_size}\t{stat.st_mtime_ns}\t{stat.st_ctime_ns}\t"
                      f"{stat.st_ino}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def decode_one(path: str, channels: int | None, size: tuple[int, int] | None) -> np.ndarray | str:
    """uint8 ``(H, W, C)``, resized to ``size`` = (H, W) if given; the error text if unreadable."""
    try:
        pixels = load_image(path, channels=channels)
    except DataError as error:
        return str(error)
    if size is None or pixels.shape[:2] == tuple(size):
        return pixels
    img = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    resized = np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return resized.reshape(size[0], size[1], pixels.shape[2])


def decode_chunk(paths: list[str], channels: int | None,
                 size: tuple[int, int] | None) -> list[np.ndarray | str]:
    return [decode_one(p, channels, size) for p in paths]


def decode_all(files: list[str], channels: int | None, size: tuple[int, int] | None,
               workers: int, stop_at_first_bad: bool) -> list[np.ndarray | str]:
    """Decode every file in order with a thread pool; stops early at a bad file if asked."""
    chunks = [files[i:i + CHUNK] for i in range(0, len(files), CHUNK)]
    results: list[np.ndarray | str] = []
    decoded_bytes = 0
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(decode_chunk, chunk, channels, size) for chunk in chunks]
        for future in futures:
            chunk = future.result()
            results += chunk
            decoded_bytes += sum(r.nbytes for r in chunk if not isinstance(r, str))
            # the decoded images and their stacked copy are both in memory for a moment
            check_budget(2 * decoded_bytes, f"{Path(files[0]).parent.parent} ({len(files)} "
                                            f"images, {len(results)} decoded so far)")
            if stop_at_first_bad and any(isinstance(r, str) for r in results[-CHUNK:]):
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def apply_bad_policy(root: Path, bad: list[str], total: int, skip_bad: bool,
                     max_bad_fraction: float) -> None:
    """Raise on the first unreadable image, or warn per file and bound the skipped fraction."""
    if not bad:
        return
    if not skip_bad:
        raise DataError(f"{bad[0]}; pass skip_bad=True (--skip-bad) to skip unreadable images")
    for reason in bad:
        warnings.warn(f"skipping unreadable image: {reason}", stacklevel=3)
    fraction = len(bad) / total
    if fraction > max_bad_fraction:
        raise DataError(f"{root}: {len(bad)} of {total} images are unreadable ({fraction:.1%}), "
                        f"more than max_bad_fraction={max_bad_fraction:.1%}; fix the data")
    warnings.warn(f"{root}: skipped {len(bad)} of {total} unreadable images", stacklevel=3)


def stack_images(decoded: list[np.ndarray], paths: list[str]) -> np.ndarray:
    """Equal-size ``(H, W, C)`` arrays -> uint8 ``(N, C, H, W)``; grey becomes RGB if mixed."""
    height, width = decoded[0].shape[:2]
    for pixels, path in zip(decoded, paths, strict=True):
        if pixels.shape[:2] != (height, width):
            raise DataError(f"{path}: image is {pixels.shape[0]}x{pixels.shape[1]} but "
                            f"{paths[0]} is {height}x{width}; pass size=(H, W) "
                            "(--image-size) to resize all images to one size")
    channels = max(p.shape[2] for p in decoded)
    out = np.empty((len(decoded), channels, height, width), np.uint8)
    for i, pixels in enumerate(decoded):
        out[i] = pixels.transpose(2, 0, 1)  # (C, H, W); a 1-channel image broadcasts to 3
    return out


def decode_folder(root: Path, files: list[str], labels: list[int], channels: int | None,
                  size: tuple[int, int] | None, workers: int,
                  skip_bad: bool) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Decode the folder: images ``(N, C, H, W)``, labels, good paths, bad-file messages."""
    results = decode_all(files, channels, size, workers, stop_at_first_bad=not skip_bad)
    bad = [r for r in results if isinstance(r, str)]
    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    if not keep:
        raise DataError(f"{root}: none of the {len(files)} images could be read"
                        + (f"; first error: {bad[0]}" if bad else ""))
    good_paths = [files[i] for i in keep]
    images = stack_images([results[i] for i in keep], good_paths)
    return images, np.asarray([labels[i] for i in keep], np.int64), good_paths, bad


def save_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically (temp file in the same folder, then os.replace)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays if present and built from the same files, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive["key"]) != key:
                return None  # the folder changed since: decode again
            arrays = {name: archive[name] for name in archive.files}
        if not arrays["images"].shape[0] == len(arrays["labels"]) == len(arrays["paths"]):
            raise ValueError("arrays of different lengths")
        return arrays
    except Exception as error:  # a torn or foreign file: decode again and overwrite it
        warnings.warn(f"{path}: ignoring unreadable cache ({error})", stacklevel=3)
        return None


def read_image_folder(
    root: str | Path,
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    skip_bad: bool = False,
    max_bad_fraction: float = 0.05,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> ImageSet:
    """Read ``root/<class>/<image>`` into an ImageSet with images ``(N, C, H, W)``.

    ``size`` is (H, W). Unreadable images raise DataError naming the file, or with
    ``skip_bad`` are skipped with one warning each (DataError if more than
    ``max_bad_fraction`` of them fail).

    Example:
        >>> test = read_image_folder("cifar10-jpg/test", cache_dir="~/.cache/cnnlab/decoded")
        ... # doctest: +SKIP
        >>> test.images.shape                                      # doctest: +SKIP
        torch.Size([10000, 3, 32, 32])
    """
    root = Path(root).expanduser().absolute()  # absolute: relative paths slice cleanly
    if channels not in (None, 1, 3):
        raise DataError(f"{root}: channels must be 1, 3 or None, got {channels!r}")
    files, labels, classes = scan_folder(root)
    cache, key, arrays = None, "", None
    if cache_dir is not None:
        cache = cache_path(root, channels, size, Path(cache_dir).expanduser())
        key = content_key(files)
        arrays = load_cache(cache, key)
    decoded_now = arrays is None
    if decoded_now:
        workers = workers or min(8, 2 * (os.cpu_count() or 1))
        images, label_array, paths, bad = decode_folder(
            root, [entry.path for entry in files], labels, channels, size, workers, skip_bad)
        arrays = {"images": images, "labels": label_array, "classes": np.asarray(classes),
                  "paths": np.asarray([p[len(str(root)) + 1:] for p in paths]),  # relative
                  "bad": np.asarray(bad, dtype=str), "key": np.asarray(key)}
    apply_bad_policy(root, arrays["bad"].tolist(), len(files), skip_bad, max_bad_fraction)
    if cache is not None and decoded_now:
        try_save_cache(cache, arrays)
    return ImageSet(torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]),
                    arrays["classes"].tolist(), name=str(root),
                    paths=[os.path.join(root, p) for p in arrays["paths"].tolist()])


def try_save_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save the cache; a read-only or full disk only costs speed, so it warns."""
    try:
        save_cache(path, arrays)
    except OSError as error:
        warnings.warn(f"{path}: cannot write the decoded-image cache ({error})", stacklevel=3)
