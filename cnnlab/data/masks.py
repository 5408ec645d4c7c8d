"""Segmentation data from your own files: images and class-index masks side by side.

Layout (``ROOT`` is what ``--data`` names)::

    ROOT/images/NAME.png|jpg|...   the picture (grey or colour; all of one size)
    ROOT/masks/NAME.png            one class index per pixel: 0 = background, c + 1 = class c
    ROOT/classes.txt               optional: one class name per line (background not listed)

or the same pair of folders under ``ROOT/train/`` and ``ROOT/test/`` (``classes.txt`` stays at
``ROOT``). A mask is a single-channel PNG (mode ``L``, ``P`` -- palette indices, as in PASCAL
VOC -- or 16-bit ``I;16``); its values are the same ``c + 1`` convention the scenes use
(:mod:`cnnlab.data.scenes`), so ``cnnlab train --task segment --data ROOT`` trains on it as on
``digit-scenes``. Without ``classes.txt`` the classes are ``1 .. max value`` over every split.

Every split is checked before anything is returned, and all problems are reported at once in one
:class:`DataError` naming the files: an image without a mask, a mask without an image, a mask
whose size differs from its image's, mask values ``>= 1 + len(classes)``, unreadable files.
Instances and boxes are unknown for such data: ``instances`` is all 0, ``boxes`` is empty.

Example:
    >>> data = load_mask_set("my-masks", "train")  # doctest: +SKIP
    >>> data.images.shape, data.masks.shape  # doctest: +SKIP
    (torch.Size([40, 3, 64, 64]), torch.Size([40, 64, 64]))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.data.folder import list_images, stack_images
from cnnlab.data.images import MAX_PIXELS, load_image, verify_png_checksums
from cnnlab.data.scenes import SceneSet
from cnnlab.errors import DataError

MASK_MODES = ("L", "P", "I;16", "I;16L", "I;16B", "I")  # single-channel integer PNG modes
SHOWN_PROBLEMS = 5  # problems spelled out in the error; the rest are counted


def is_mask_folder(path: Path) -> bool:
    """True for ``ROOT/images`` + ``ROOT/masks``, or the same under ``ROOT/train``."""
    return any((base / "images").is_dir() and (base / "masks").is_dir()
               for base in (path, path / "train"))


def split_folders(root: Path) -> dict[str, Path]:
    """``{"train": ..., "test": ...}`` for a train/test tree, else ``{"train": root}``."""
    if (root / "train" / "images").is_dir():
        return {s: root / s for s in ("train", "test") if (root / s / "images").is_dir()}
    return {"train": root}


def read_classes(root: Path) -> list[str] | None:
    """Names from ``ROOT/classes.txt`` (blank lines skipped), or None if there is no file."""
    path = root / "classes.txt"
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError(f"{path}: no class names (expected one name per line)")
    return names


def pair_files(folder: Path, problems: list[str]) -> list[tuple[Path, Path]]:
    """``(image, mask)`` paths matched by file stem; unmatched files become problems."""
    images = {Path(e.path).stem: Path(e.path) for e in list_images(folder / "images")}
    masks = {Path(e.path).stem: Path(e.path) for e in list_images(folder / "masks")}
    problems += [f"{images[s]}: image has no mask {folder / 'masks' / s}.png"
                 for s in sorted(images.keys() - masks.keys())]
    problems += [f"{masks[s]}: mask has no image in {folder / 'images'}"
                 for s in sorted(masks.keys() - images.keys())]
    return [(images[s], masks[s]) for s in sorted(images.keys() & masks.keys())]


def read_mask(path: Path) -> np.ndarray:
    """A class-index PNG -> int64 ``(H, W)``; DataError for colour or unreadable files."""
    try:
        with Image.open(path, formats=["PNG"]) as img:
            width, height = img.size  # header only: refuse bombs before decoding
            if width * height > MAX_PIXELS:
                raise DataError(f"{path}: {width}x{height} mask exceeds {MAX_PIXELS} pixels")
            if img.mode not in MASK_MODES:
                raise DataError(f"{path}: mask is {img.mode}, expected a single-channel "
                                f"class-index PNG (mode L or P, 0 = background)")
            verify_png_checksums(path)
            return np.asarray(img, dtype=np.int64)  # P: palette indices, not colours
    except DataError:
        raise
    except Exception as error:  # PIL raises OSError, SyntaxError, ... on bad files
        raise DataError(f"{path}: cannot decode mask ({error or type(error).__name__})") from None


def read_pair(image_path: Path, mask_path: Path, problems: list[str]
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """Decode one pair: uint8 ``(H, W, C)`` image and int64 ``(H, W)`` mask, or None with the
    reason appended to ``problems``."""
    try:
        image, mask = load_image(image_path), read_mask(mask_path)
    except DataError as error:
        problems.append(str(error))
        return None
    if image.shape[:2] != mask.shape:
        problems.append(f"{mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} but its image "
                        f"{image_path.name} is {image.shape[0]}x{image.shape[1]}")
        return None
    return image, mask


def check_values(pairs: list[tuple], decoded: list, num_values: int, problems: list[str]) -> None:
    """Out-of-range mask values (``>= num_values``) become problems naming the mask."""
    for (_, mask_path), item in zip(pairs, decoded, strict=True):
        if item is not None and int(item[1].max()) >= num_values:
            problems.append(f"{mask_path}: mask value {int(item[1].max())} >= {num_values} "
                            f"(background + {num_values - 1} classes in classes.txt)")


def raise_problems(root: Path, problems: list[str]) -> None:
    """One DataError, one line: the first few problems and how many there are in all."""
    if not problems:
        return
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    raise DataError(f"{root}: {len(problems)} problem(s) in the segmentation data: {shown}{more}")


def to_scene_set(decoded: list[tuple[np.ndarray, np.ndarray]], paths: list[str],
                 classes: list[str], name: str) -> SceneSet:
    """Stack decoded pairs into a :class:`SceneSet` (``present`` from the masks)."""
    images = torch.from_numpy(stack_images([d[0] for d in decoded], paths))  # (N, C, H, W)
    masks = torch.from_numpy(np.stack([d[1] for d in decoded]))  # (N, H, W) int64
    k = len(classes)
    present = torch.zeros(len(masks), k + 1, dtype=torch.bool)
    present.scatter_(1, masks.flatten(1), True)
    present = present[:, 1:]  # (N, K): background is not a class
    first = torch.where(present.any(1), present.int().argmax(1), -1)  # lowest class present
    n = len(masks)
    return SceneSet(images, first, list(classes), name, list(paths), present, masks,
                    torch.zeros_like(masks, dtype=torch.uint8),
                    torch.full((n, 0, 4), -1, dtype=torch.long),
                    torch.full((n, 0), -1, dtype=torch.long))


def load_mask_set(root: str | Path, split: str = "train") -> SceneSet:
    """``split`` of a mask folder (see the module docstring) as a :class:`SceneSet`.

    Every split is decoded and checked first, so a bad test mask stops training before it
    starts; DataError lists the problem files.
    """
    root = Path(root).expanduser()
    folders = split_folders(root)
    if split not in folders:
        raise DataError(f"{root}: no '{split}' split (expected {root / split / 'images'})")
    problems: list[str] = []
    pairs = {s: pair_files(f, problems) for s, f in folders.items()}
    decoded = {s: [read_pair(i, m, problems) for i, m in p] for s, p in pairs.items()}
    classes = read_classes(root)
    if classes is None:  # 1 .. largest value anywhere
        top = max((int(d[1].max()) for ds in decoded.values() for d in ds if d is not None),
                  default=0)
        classes = [str(v) for v in range(1, top + 1)]
    for s in folders:
        check_values(pairs[s], decoded[s], 1 + len(classes), problems)
    raise_problems(root, problems)
    if not pairs[split]:
        raise DataError(f"{folders[split]}: no image/mask pairs in images/ and masks/")
    return to_scene_set(decoded[split], [str(i) for i, _ in pairs[split]], classes, str(root))
