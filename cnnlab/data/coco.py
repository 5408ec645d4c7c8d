"""COCO-style detection folders: boxes, polygons or RLE masks, any image size.

Layout (``ROOT`` is what ``--data`` names)::

    ROOT/annotations.json + ROOT/images/...        one set; "test" = a held-out part (by seed)
    ROOT/train/{annotations.json, images/}         or a train and a test set
    ROOT/test/{annotations.json, images/}

``annotations.json`` is COCO's object detection format (https://cocodataset.org/#format-data):
``images`` (``id``, ``file_name``, optional ``width``/``height``), ``annotations`` (``id``,
``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, optional ``segmentation`` as polygons
or RLE, ``iscrowd``) and ``categories`` (``id``, ``name``). Category ids map to contiguous
classes in id order and back (``category_ids[c]``). Every image is letterboxed: scaled so its
longer side is ``size``, centred on a black ``size x size`` canvas; ``letterbox`` records the
scale and padding so predictions map back to original pixels (:meth:`CocoSet.to_original_boxes`).

Bad input is a one-line DataError naming the file and the annotation id -- an annotation naming a
missing image, a box outside the image or with w/h <= 0, an unknown category id, a polygon with
fewer than 3 points, duplicate ids, a JSON that is not COCO -- or, with ``skip_bad=True``, the
bad entry is left out and listed in ``skipped``. The result is a :class:`SceneSet` (boxes,
labels, instances, semantic masks), so detection treats scenes and COCO folders alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.images import load_image
from cnnlab.data.letterbox import letterbox_image, letterbox_mask, original_boxes, original_masks
from cnnlab.data.rle import segmentation_mask
from cnnlab.data.scenes import SceneSet
from cnnlab.errors import DataError

ANNOTATIONS, IMAGES = "annotations.json", "images"
BOX_TOLERANCE = 1.0  # px a box may overshoot its image (float rounding in real files): clipped


@dataclass
class CocoSet(SceneSet):
    """A :class:`SceneSet` read from a COCO folder; boxes are float ``(x, y, w, h)`` on the
    letterboxed canvas, ``ignore`` marks ``iscrowd`` annotations."""

    image_ids: torch.Tensor = field(default=None, repr=False)  # int64 (N,)
    category_ids: list[int] = field(default_factory=list)
    letterbox: torch.Tensor = field(default=None, repr=False)  # float64 (N, 4): sx, sy, px, py
    original_sizes: torch.Tensor = field(default=None, repr=False)  # int64 (N, 2): h, w
    annotation_ids: torch.Tensor = field(default=None, repr=False)  # int64 (N, M), -1 pad
    ground_truth: dict = field(default_factory=dict, repr=False)  # COCO dict, original pixels
    has_masks: bool = False
    skipped: list[str] = field(default_factory=list, repr=False)

    def subset(self, index: torch.Tensor) -> CocoSet:
        """The images at ``index``, with their ground truth."""
        part = SceneSet.subset(self, index)
        ids = self.image_ids[index]
        keep = set(ids.tolist())
        truth = {**self.ground_truth,
                 "images": [i for i in self.ground_truth["images"] if i["id"] in keep],
                 "annotations": [a for a in self.ground_truth["annotations"]
                                 if a["image_id"] in keep]}
        part.paths = [self.paths[i] for i in index.tolist()] if self.paths else None
        return CocoSet(**vars(part), image_ids=ids, category_ids=list(self.category_ids),
                       letterbox=self.letterbox[index], original_sizes=self.original_sizes[index],
                       annotation_ids=self.annotation_ids[index], ground_truth=truth,
                       has_masks=self.has_masks, skipped=list(self.skipped))

    def to_original_boxes(self, i: int, boxes: torch.Tensor) -> torch.Tensor:
        """``(D, 4)`` xyxy on image ``i``'s canvas -> xyxy in its original pixels (clipped)."""
        return original_boxes(boxes, self.letterbox[i].tolist(), self.original_sizes[i].tolist())

    def to_original_masks(self, i: int, masks: torch.Tensor) -> torch.Tensor:
        """``(D, S, S)`` masks on image ``i``'s canvas -> bool ``(D, h, w)`` original pixels."""
        return original_masks(masks, self.letterbox[i].tolist(), self.original_sizes[i].tolist())


def coco_splits(root: Path) -> dict[str, Path]:
    """``{"train": ..., "test": ...}`` for a train/test tree, ``{"all": root}`` for one set."""
    if (root / "train" / ANNOTATIONS).is_file():
        return {s: root / s for s in ("train", "test") if (root / s / ANNOTATIONS).is_file()}
    if (root / ANNOTATIONS).is_file():
        return {"all": root}
    raise DataError(f"{root}: not a COCO folder (expected {root / ANNOTATIONS} and "
                    f"{root / IMAGES}/, or the same under train/ and test/)")


def is_coco_folder(path: Path) -> bool:
    path = Path(path)
    return (path / ANNOTATIONS).is_file() or (path / "train" / ANNOTATIONS).is_file()


def read_annotations(path: Path) -> dict:
    """The JSON of ``path`` if it has COCO's three lists; otherwise a one-line DataError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not a COCO annotation file (invalid JSON at line "
                        f"{error.lineno}: {error.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a COCO annotation file (expected a JSON object with "
                        f"'images', 'annotations' and 'categories')")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: not a COCO annotation file (no '{key}' list)")
    return data


def check_categories(path: Path, categories: list) -> list[dict]:
    """Categories sorted by id; a category without an integer id and a name, or a duplicate
    id, is always an error (the class list cannot be guessed)."""
    seen: set[int] = set()
    for cat in categories:
        if not (isinstance(cat, dict) and is_int(cat.get("id")) and "name" in cat):
            raise DataError(f"{path}: category {cat!r} needs an integer 'id' and a 'name'")
        if cat["id"] in seen:
            raise DataError(f"{path}: duplicate category id {cat['id']}")
        seen.add(cat["id"])
    if not categories:
        raise DataError(f"{path}: no categories")
    return sorted(categories, key=lambda c: c["id"])


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Problems:
    """Bad entries: raised at once (one line, naming the file), or with ``skip`` collected."""

    def __init__(self, path: Path, skip: bool) -> None:
        self.path, self.skip, self.found = path, skip, []

    def add(self, message: str) -> None:
        text = f"{self.path}: {message}"
        if not self.skip:
            raise DataError(f"{text} (fix it, or pass skip_bad=True / --skip-bad to leave such "
                            f"entries out)")
        self.found.append(text)


def check_images(folder: Path, entries: list, problems: Problems
                 ) -> tuple[dict[int, dict], dict[int, str]]:
    """Image entries by id, and ``{id: why}`` for those whose file is missing; malformed
    entries and duplicate ids are problems."""
    images: dict[int, dict] = {}
    unusable: dict[int, str] = {}
    for entry in entries:
        if not (isinstance(entry, dict) and is_int(entry.get("id"))
                and isinstance(entry.get("file_name"), str)):
            problems.add(f"image entry {str(entry)[:60]} needs an integer 'id' and a 'file_name'")
        elif entry["id"] in images or entry["id"] in unusable:
            problems.add(f"duplicate image id {entry['id']}")
        elif not (folder / IMAGES / entry["file_name"]).is_file():
            unusable[entry["id"]] = f"file {folder / IMAGES / entry['file_name']} not found"
        else:
            images[entry["id"]] = entry
    return images, unusable


def decode_images(folder: Path, images: dict[int, dict], unusable: dict[int, str]
                  ) -> dict[int, np.ndarray]:
    """Decoded ``(H, W, C)`` uint8 pixels by image id; an unreadable file or a size that
    differs from the JSON's ``width``/``height`` goes to ``unusable`` with the reason."""
    pixels = {}
    for image_id, entry in images.items():
        try:
            array = load_image(folder / IMAGES / entry["file_name"])
        except DataError as error:
            unusable[image_id] = str(error)
            continue
        h, w = array.shape[:2]
        if (entry.get("width", w), entry.get("height", h)) != (w, h):
            unusable[image_id] = (f"{entry['file_name']} is {w}x{h} but the JSON says "
                                  f"{entry.get('width')}x{entry.get('height')}")
            continue
        pixels[image_id] = array
    return pixels


def annotation_problem(ann, images: dict[int, np.ndarray], unusable: dict[int, str],
                       category_ids: set[int]) -> str | None:
    """Why annotation ``ann`` cannot be used (None if it can), for a one-line message."""
    if not (isinstance(ann, dict) and is_int(ann.get("id"))):
        return f"annotation {str(ann)[:60]} has no integer 'id'"
    name = f"annotation id {ann['id']}"
    if ann.get("image_id") in unusable:
        return f"{name} names image id {ann['image_id']}: {unusable[ann['image_id']]}"
    if ann.get("image_id") not in images:
        return f"{name} names image id {ann.get('image_id')!r}, which is not in 'images'"
    if ann.get("category_id") not in category_ids:
        return f"{name} has unknown category id {ann.get('category_id')!r}"
    h, w = images[ann["image_id"]].shape[:2]
    box = ann.get("bbox")
    if box is None and ann.get("segmentation") is None:
        return f"{name} has neither 'bbox' nor 'segmentation'"
    if box is not None:
        if not (isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box)):
            return f"{name}: bbox {box!r} is not [x, y, w, h]"
        x, y, bw, bh = box
        if bw <= 0 or bh <= 0:
            return f"{name}: bbox {box} has w or h <= 0"
        t = BOX_TOLERANCE
        if x < -t or y < -t or x + bw > w + t or y + bh > h + t:
            return f"{name}: bbox {box} lies outside its {w}x{h} image"
    return segmentation_problem(name, ann.get("segmentation"), h, w)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def segmentation_problem(name: str, seg, h: int, w: int) -> str | None:
    if seg is None:
        return None
    if isinstance(seg, list):
        for polygon in seg:
            if not isinstance(polygon, list) or not all(is_number(v) for v in polygon):
                return f"{name}: polygon {str(polygon)[:40]} is not a list of numbers"
            if len(polygon) < 6 or len(polygon) % 2:
                return f"{name}: polygon with {len(polygon) / 2:g} points (needs >= 3 x, y pairs)"
        return None if seg else f"{name}: empty segmentation list"
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [h, w]:
            return f"{name}: RLE size {seg['size']} differs from its image's [{h}, {w}]"
        return None
    return f"{name}: segmentation is neither polygons nor RLE"


def check_annotations(anns: list, images: dict[int, np.ndarray], unusable: dict[int, str],
                      category_ids: set[int], problems: Problems) -> list[dict]:
    """Usable annotations (no duplicates, each checked by :func:`annotation_problem`); then
    unusable images that no annotation named are problems too."""
    seen: set[int] = set()
    good = []
    named = {a.get("image_id") for a in anns if isinstance(a, dict)}
    for ann in anns:
        why = annotation_problem(ann, images, unusable, category_ids)
        if why is None and ann["id"] in seen:
            why = f"duplicate annotation id {ann['id']}"
        if why is not None:
            problems.add(why)
            continue
        seen.add(ann["id"])
        good.append(ann)
    for image_id, why in unusable.items():
        if image_id not in named:
            problems.add(f"image id {image_id}: {why}")
    return good


def completed(ann: dict, pixels: np.ndarray) -> dict:
    """The annotation as COCO evaluation needs it: bbox (from the mask if absent, clipped to
    the image), area (mask pixels, else box area) and iscrowd."""
    h, w = pixels.shape[:2]
    ann = dict(ann)
    seg = ann.get("segmentation")
    mask = segmentation_mask(seg, h, w).numpy() if seg is not None else None
    if ann.get("bbox") is None:
        rows, cols = np.nonzero(mask)
        ann["bbox"] = ([float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1),
                        float(rows.max() - rows.min() + 1)] if len(rows) else [0.0, 0.0, 0.0, 0.0])
    x, y, bw, bh = (float(v) for v in ann["bbox"])
    x1, y1 = max(x, 0.0), max(y, 0.0)
    ann["bbox"] = [x1, y1, min(x + bw, w) - x1, min(y + bh, h) - y1]
    ann.setdefault("area", float(mask.sum()) if mask is not None else bw * bh)
    ann["iscrowd"] = int(bool(ann.get("iscrowd", 0)))
    return ann


def build_set(name: str, folder: Path, categories: list[dict], images: dict[int, dict],
              pixels: dict[int, np.ndarray], anns: list[dict], size: int,
              skipped: list[str]) -> CocoSet:
    """Letterbox every image and its annotations into one :class:`CocoSet`."""
    ids = sorted(pixels)
    by_image: dict[int, list[dict]] = {i: [] for i in ids}
    for ann in anns:
        by_image[ann["image_id"]].append(completed(ann, pixels[ann["image_id"]]))
    most = max([len(v) for v in by_image.values()] + [0])
    if most > 255:
        raise DataError(f"{folder / ANNOTATIONS}: an image has {most} annotations; at most 255 "
                        f"fit the uint8 instance map")
    channels = 3 if any(p.shape[2] == 3 for p in pixels.values()) else 1
    n, class_of = len(ids), {c["id"]: k for k, c in enumerate(categories)}
    has_masks = bool(anns) and all(a.get("segmentation") is not None for a in anns)
    fields = {"images": torch.zeros(n, channels, size, size, dtype=torch.uint8),
              "boxes": torch.full((n, most, 4), -1.0), "box_labels": torch.full((n, most), -1),
              "ignore": torch.zeros(n, most, dtype=torch.bool),
              "annotation_ids": torch.full((n, most), -1),
              "instances": torch.zeros(n, size, size, dtype=torch.uint8),
              "letterbox": torch.zeros(n, 4, dtype=torch.float64)}
    for row, image_id in enumerate(ids):
        place_image(fields, row, pixels[image_id], by_image[image_id], class_of, size, has_masks)
    labels = fields["box_labels"]
    masks = torch.where(fields["instances"] > 0, labels.gather(
        1, (fields["instances"].long() - 1).clamp(min=0).flatten(1)).view(n, size, size) + 1, 0)
    present = torch.zeros(n, len(categories) + 1, dtype=torch.bool)
    present.scatter_(1, labels.clamp(min=-1) + 1, True)
    truth = {"images": [{**images[i], "height": pixels[i].shape[0], "width": pixels[i].shape[1]}
                        for i in ids],
             "annotations": [a for i in ids for a in by_image[i]], "categories": categories}
    return CocoSet(fields["images"], labels[:, 0].clone() if most else torch.full((n,), -1),
                   [str(c["name"]) for c in categories], name,
                   [str(folder / IMAGES / images[i]["file_name"]) for i in ids], present[:, 1:],
                   masks.long(), fields["instances"], fields["boxes"], labels, None,
                   fields["ignore"], image_ids=torch.tensor(ids, dtype=torch.long),
                   category_ids=[c["id"] for c in categories], letterbox=fields["letterbox"],
                   original_sizes=torch.tensor([pixels[i].shape[:2] for i in ids]).view(n, 2),
                   annotation_ids=fields["annotation_ids"], ground_truth=truth,
                   has_masks=has_masks, skipped=skipped)


def place_image(fields: dict, row: int, pixels: np.ndarray, anns: list[dict],
                class_of: dict[int, int], size: int, has_masks: bool) -> None:
    """Write one image, its boxes and (larger objects first, so small ones stay visible on
    top) its instance masks into row ``row`` of ``fields``."""
    if pixels.shape[2] != fields["images"].shape[1]:
        pixels = np.repeat(pixels, 3, axis=2)  # grey among colour images
    fields["images"][row], transform = letterbox_image(pixels, size)
    fields["letterbox"][row] = torch.tensor(transform, dtype=torch.float64)
    sx, sy, px, py = transform
    h, w = pixels.shape[:2]
    for j, ann in enumerate(anns):
        x, y, bw, bh = ann["bbox"]
        fields["boxes"][row, j] = torch.tensor([x * sx + px, y * sy + py, bw * sx, bh * sy])
        fields["box_labels"][row, j] = class_of[ann["category_id"]]
        fields["ignore"][row, j] = bool(ann["iscrowd"])
        fields["annotation_ids"][row, j] = ann["id"]
    if has_masks:
        for j in sorted(range(len(anns)), key=lambda j: -anns[j]["area"]):
            mask = segmentation_mask(anns[j]["segmentation"], h, w)
            mask = letterbox_mask(mask, transform, size)
            fields["instances"][row][mask] = j + 1


def load_coco(root: str | Path, split: str = "train", *, size: int = 128, holdout: float = 0.2,
              seed: int = 0, skip_bad: bool = False) -> CocoSet:
    """``split`` ("train" or "test") of a COCO folder as a :class:`CocoSet` on ``size x size``.

    A single ``annotations.json`` + ``images/`` is split by ``seed``: ``holdout`` of its images
    are the "test" split, the rest "train". Example:
        >>> data = load_coco("my-coco", "train", size=128)  # doctest: +SKIP
        >>> data.images.shape, data.category_ids  # doctest: +SKIP
        (torch.Size([80, 3, 128, 128]), [1, 2, 7])
    """
    root = Path(root).expanduser()
    if split not in ("train", "test"):
        raise DataError(f"{root}: unknown split '{split}'; choose train or test")
    splits = coco_splits(root)
    folder = splits.get(split, splits.get("all"))
    if folder is None:
        raise DataError(f"{root}: no '{split}' split (expected {root / split / ANNOTATIONS})")
    path = folder / ANNOTATIONS
    data = read_annotations(path)
    categories = check_categories(path, data["categories"])
    if split == "test" and "train" in splits:  # the classes a model learnt must mean the same
        train_path = splits["train"] / ANNOTATIONS
        trained = check_categories(train_path, read_annotations(train_path)["categories"])
        if [(c["id"], c["name"]) for c in trained] != [(c["id"], c["name"]) for c in categories]:
            raise DataError(f"{path}: categories differ from {train_path}'s; both splits need "
                            f"the same category ids and names")
    problems = Problems(path, skip_bad)
    images, unusable = check_images(folder, data["images"], problems)
    pixels = decode_images(folder, images, unusable)
    anns = check_annotations(data["annotations"], pixels, unusable,
                             {c["id"] for c in categories}, problems)
    if not pixels:
        raise DataError(f"{path}: no usable images")
    if "all" in splits:  # one set: hold out a seeded part as "test"
        chosen = set(held_out(sorted(pixels), split, holdout, seed))
        pixels = {i: p for i, p in pixels.items() if i in chosen}
        anns = [a for a in anns if a["image_id"] in chosen]
    return build_set(f"{root.name}:{split}", folder, categories, images, pixels, anns, size,
                     problems.found)


def held_out(ids: list[int], split: str, holdout: float, seed: int) -> list[int]:
    """The image ids of ``split`` when ``holdout`` of ``ids`` (chosen by ``seed``) is "test"."""
    if not 0 <= holdout < 1:
        raise DataError(f"holdout={holdout}: expected a fraction in [0, 1)")
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = round(len(ids) * holdout)
    part = order[:n_test] if split == "test" else order[n_test:]
    if not part:
        raise DataError(f"split '{split}' of {len(ids)} images with holdout={holdout} is empty")
    return [ids[i] for i in sorted(part)]

