"""Multi-object scenes: several digits (or clothes) placed on a larger canvas.

Lecture 002, "Computer Vision Problems": one image, several answers. A scene gives every target
the lecture lists, so one data set serves multi-label classification, semantic segmentation,
and later detection and instance segmentation:

- ``present`` ``(N, K)`` bool: which of the K classes appear (multi-label target);
- ``masks`` ``(N, H, W)`` int64: per-pixel class, 0 = background, ``c + 1`` = class ``c``;
- ``instances`` ``(N, H, W)`` uint8: per-pixel object number, 0 = background, ``j + 1`` = object j;
- ``boxes`` ``(N, M, 4)`` int64: ``(x, y, w, h)`` of each object's visible pixels, ``-1`` rows for
  absent objects; ``box_labels`` ``(N, M)`` int64, ``-1`` for absent objects (an object hidden
  entirely under brighter strokes counts as absent, so ``present`` matches ``masks``);
- ``ink_area`` ``(N, M)`` int64: each object's ink pixels as if it were alone on the canvas
  (0 for empty slots); ``ignore`` ``(N, M)`` bool: a present object so hidden that nobody
  could be asked to find it -- its visible ink is < 25% of its own ink, or < 16 px -- becomes an
  ignore region (COCO ``iscrowd=1``: neither a miss nor a false alarm when detected).

Generation is vectorised (one ``grid_sample`` per chunk of scenes) and a pure function of the
seed, so scenes are built on the fly in well under a second per thousand; nothing is cached.
Where objects overlap, the image keeps the brighter stroke (``max``) and each pixel belongs to
the object whose stroke is brightest there. With ``overlap=False`` each object gets its own cell
of a grid over the canvas, so the boxes never intersect.

Named sets (``load_dataset``): ``digit-scenes`` (scikit-learn digits on 32x32, no files),
``mnist-scenes`` and ``fashion-scenes`` (28x28 images on 64x64). Options follow a colon:
``mnist-scenes:n=2000,canvas=64,objects=1-3,scale=0.6-1.0,overlap=0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from cnnlab.data.base import ImageSet
from cnnlab.data.budget import check_budget
from cnnlab.data.registry import DataSource, LoadRequest, register_source
from cnnlab.errors import DataError

INK = 0.3  # a pixel belongs to an object where its stroke is at least this bright (0..1)
IGNORE_FRACTION = 0.25  # visible ink below this fraction of the object's own ink: ignore region
IGNORE_PIXELS = 16  # or fewer visible ink pixels than this


@dataclass
class SceneSet(ImageSet):
    """An :class:`ImageSet` whose images are scenes, with their dense targets.

    ``labels`` holds the class of each scene's first object (so generic code that expects one
    label per image still works); the real targets are the fields below.
    """

    present: torch.Tensor = field(default=None, repr=False)  # bool (N, K)
    masks: torch.Tensor = field(default=None, repr=False)  # int64 (N, H, W)
    instances: torch.Tensor = field(default=None, repr=False)  # uint8 (N, H, W)
    boxes: torch.Tensor = field(default=None, repr=False)  # int64 (N, M, 4) as x, y, w, h
    box_labels: torch.Tensor = field(default=None, repr=False)  # int64 (N, M)
    ink_area: torch.Tensor | None = field(default=None, repr=False)  # int64 (N, M)
    ignore: torch.Tensor | None = field(default=None, repr=False)  # bool (N, M), iscrowd

    def subset(self, index: torch.Tensor) -> SceneSet:
        """A new SceneSet holding the scenes at ``index``."""
        def part(values):
            return values[index] if values is not None else None

        return SceneSet(self.images[index], self.labels[index], list(self.classes), self.name,
                        None, self.present[index], self.masks[index], self.instances[index],
                        self.boxes[index], self.box_labels[index], part(self.ink_area),
                        part(self.ignore))


@dataclass(frozen=True)
class SceneSpec:
    """How scenes are drawn: canvas side (px), objects per scene, scale range, overlap."""

    canvas: int = 64
    objects: tuple[int, int] = (1, 4)  # inclusive range of objects per scene
    scale: tuple[float, float] = (0.6, 1.0)  # object side = source side * scale
    overlap: bool = True

    def validate(self, source_side: int) -> None:
        lo, hi = self.objects
        if not 1 <= lo <= hi <= 255:
            raise DataError(f"scene objects={lo}-{hi}: expected 1 <= min <= max <= 255")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise DataError(f"scene scale={self.scale[0]}-{self.scale[1]}: expected 0 < min <= max")
        largest = math.ceil(source_side * self.scale[1])
        cell = self.canvas // grid_side(hi) if not self.overlap else self.canvas
        if largest > cell:
            where = "a grid cell" if not self.overlap else "the canvas"
            fixes = "enlarge the canvas, lower the scale" + (
                " or allow overlap (overlap=1)" if not self.overlap else "")
            raise DataError(f"objects up to {largest}px do not fit {where} of {cell}px "
                            f"(canvas {self.canvas}, {hi} objects): {fixes}")


def grid_side(objects: int) -> int:
    """Side of the smallest square grid with a cell per object (no-overlap placement)."""
    return math.ceil(math.sqrt(objects))


def make_scenes(source: ImageSet, n: int, spec: SceneSpec = SceneSpec(), *, seed: int = 0,
                name: str = "scenes", chunk: int = 256) -> SceneSet:
    """Draw ``n`` scenes from the single-object images of ``source`` (deterministic by seed).

    Example:
        >>> from cnnlab.data.datasets import load_dataset
        >>> scenes = make_scenes(load_dataset("digits"), 10, SceneSpec(32, (1, 3), (1.0, 1.5)))
        >>> tuple(scenes.images.shape), tuple(scenes.masks.shape), tuple(scenes.present.shape)
        ((10, 1, 32, 32), (10, 32, 32), (10, 10))
    """
    if n < 1:
        raise DataError(f"{name}: n={n} scenes: expected at least 1")
    # images, masks (int64), instances and the float canvas while rendering: ~14 bytes a pixel
    check_budget(n * spec.canvas ** 2 * 14, f"{name} ({n} scenes of {spec.canvas}x{spec.canvas})")
    if source.image_shape[0] != 1:
        raise DataError(f"{source.name}: scenes are built from grey images, got "
                        f"{source.image_shape[0]} channels")
    spec.validate(max(source.image_shape[1:]))
    gen = torch.Generator().manual_seed(seed)
    layout = sample_layout(n, len(source), max(source.image_shape[1:]), spec, gen)
    parts = [render(source, {k: v[i:i + chunk] for k, v in layout.items()}, spec.canvas)
             for i in range(0, n, chunk)]
    images, masks, instances, boxes, box_labels, ink_area, ignore = (
        torch.cat(p) for p in zip(*parts, strict=True))
    k = len(source.classes)
    present = F.one_hot(box_labels.clamp(min=0), k).bool() & (box_labels >= 0)[..., None]
    return SceneSet(images, box_labels[:, 0].clone(), list(source.classes), name, None,
                    present.any(1), masks, instances, boxes, box_labels, ink_area, ignore)


def sample_layout(n: int, pool: int, side: int, spec: SceneSpec,
                  gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Which source image goes where, at what size: tensors ``(n, M)`` with M = max objects."""
    lo, hi = spec.objects
    m = hi
    count = torch.randint(lo, hi + 1, (n,), generator=gen)
    alive = torch.arange(m)[None] < count[:, None]  # (n, M)
    index = torch.randint(0, pool, (n, m), generator=gen)
    scale = spec.scale[0] + (spec.scale[1] - spec.scale[0]) * torch.rand(n, m, generator=gen)
    size = (side * scale).round().long().clamp(min=1)  # (n, M) object side in px
    if spec.overlap:
        x = (torch.rand(n, m, generator=gen) * (spec.canvas - size + 1)).floor().long()
        y = (torch.rand(n, m, generator=gen) * (spec.canvas - size + 1)).floor().long()
    else:  # a distinct grid cell per object, jittered inside the cell
        g = grid_side(hi)
        cell_px = spec.canvas // g
        cell = torch.rand(n, g * g, generator=gen).argsort(1)[:, :m]  # (n, M) distinct cells
        x = (cell % g) * cell_px + (torch.rand(n, m, generator=gen) * (cell_px - size + 1)).long()
        y = (cell // g) * cell_px + (torch.rand(n, m, generator=gen) * (cell_px - size + 1)).long()
    return {"alive": alive, "index": index, "size": size, "x": x, "y": y}


def render(source: ImageSet, layout: dict[str, torch.Tensor], canvas: int) -> tuple:
    """Paint one chunk of scenes: images, masks, instances, boxes, box labels, each object's
    own ink area and the ignore flags."""
    alive, index, size, x, y = (layout[k] for k in ("alive", "index", "size", "x", "y"))
    n, m = alive.shape
    objects = source.images[index.flatten()].float() / 255  # (n*M, 1, s, s)
    pixel = torch.arange(canvas, dtype=torch.float32) + 0.5  # canvas pixel centres
    s = size.flatten().float()[:, None]
    gx = 2 * (pixel[None] - x.flatten()[:, None]) / s - 1  # (n*M, W) in the object's [-1, 1]
    gy = 2 * (pixel[None] - y.flatten()[:, None]) / s - 1  # (n*M, H)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    layers = F.grid_sample(objects, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)  # (n*M, 1, H, W)
    layers = layers.view(n, m, canvas, canvas) * alive[..., None, None]
    brightest, owner = layers.max(1)  # (n, H, W)
    ink = brightest >= INK
    labels = torch.where(alive, source.labels[index], -1)  # (n, M)
    masks = torch.where(ink, labels.gather(1, owner.flatten(1)).view_as(owner) + 1, 0)
    instances = torch.where(ink, owner + 1, 0).to(torch.uint8)
    owned = instances[:, None] == torch.arange(1, m + 1, dtype=torch.uint8)[None, :, None, None]
    boxes = ink_boxes(owned)  # (n, M, 4) around each object's visible pixels
    labels = torch.where(boxes[..., 2] > 0, labels, -1)  # hidden or too faint: absent
    boxes[labels < 0] = -1
    ink_area = (layers >= INK).sum((2, 3))  # (n, M) each object's ink, alone on the canvas
    ignore = (labels >= 0) & is_ignore_region(owned.sum((2, 3)), ink_area)
    images = (brightest * 255).round().clamp(0, 255).to(torch.uint8)[:, None]
    return images, masks.long(), instances, boxes, labels, ink_area, ignore


def is_ignore_region(visible: torch.Tensor, own_ink: torch.Tensor) -> torch.Tensor:
    """True where an object's visible ink is < 25% of its own ink or < 16 px (integer math)."""
    return (visible * round(1 / IGNORE_FRACTION) < own_ink) | (visible < IGNORE_PIXELS)


def ink_boxes(ink: torch.Tensor) -> torch.Tensor:
    """Tight ``(x, y, w, h)`` boxes of boolean layers ``(n, M, H, W)``; zeros where no ink."""
    rows, cols = ink.any(-1), ink.any(-2)  # (n, M, H), (n, M, W)
    boxes = []
    for hits in (cols, rows):
        size = hits.shape[-1]
        first = hits.int().argmax(-1)
        last = size - 1 - hits.flip(-1).int().argmax(-1)
        boxes.append((first, last - first + 1))
    (x, w), (y, h) = boxes
    found = rows.any(-1)
    return torch.stack([x, y, w, h], dim=-1) * found[..., None]  # (n, M, 4)


# name -> (source data set, spec, number of train scenes, number of test scenes)
SCENE_SETS: dict[str, tuple[str, SceneSpec, int, int]] = {
    "digit-scenes": ("digits", SceneSpec(32, (1, 2), (1.5, 2.5)), 1000, 200),
    "mnist-scenes": ("mnist", SceneSpec(64, (1, 4), (0.6, 1.0)), 5000, 1000),
    "fashion-scenes": ("fashion-mnist", SceneSpec(64, (1, 4), (0.6, 1.0)), 5000, 1000),
}


def parse_scene_name(name: str) -> tuple[str, SceneSpec, int, int]:
    """``"mnist-scenes:n=2000,objects=1-3"`` -> (source, spec, n_train, n_test).

    Options: ``n`` (training scenes; test scenes = n / 5), ``canvas``, ``objects`` (``lo-hi``),
    ``scale`` (``lo-hi``), ``overlap`` (0 or 1).
    """
    base, _, options = name.lower().partition(":")
    source, spec, n_train, n_test = SCENE_SETS[base]
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        try:
            if key == "n":
                n_train = int(value)
                if n_train < 1:
                    raise DataError(f"{name}: n={n_train}: expected at least 1 training scene")
                n_test = max(1, n_train // 5)
            elif key == "canvas":
                spec = replace(spec, canvas=int(value))
            elif key in ("objects", "scale"):
                lo, _, hi = value.partition("-")
                kind = int if key == "objects" else float
                spec = replace(spec, **{key: (kind(lo), kind(hi or lo))})
            elif key == "overlap":
                spec = replace(spec, overlap=value not in ("0", "false", "no"))
            else:
                raise DataError(f"{name}: unknown scene option {key!r} (choices: n, canvas, "
                                f"objects, scale, overlap)")
        except ValueError:
            raise DataError(f"{name}: cannot read scene option {item!r} "
                            f"(e.g. n=2000,objects=1-3,scale=0.6-1.0,overlap=0)") from None
    return source, spec, n_train, n_test


def scene_options(name: str) -> str:
    """The options of scene set ``name`` with their defaults, as written after ``name:``."""
    _, spec, n_train, _ = SCENE_SETS[name]
    return (f"n={n_train},canvas={spec.canvas},objects={spec.objects[0]}-{spec.objects[1]},"
            f"scale={spec.scale[0]}-{spec.scale[1]},overlap={int(spec.overlap)}")


def load_scene_split(request: LoadRequest) -> SceneSet:
    """Scenes drawn from ``request.source`` (the same split of the source set): training scenes
    use seed 0, test scenes seed 1, so no source image is shared between the two."""
    _, spec, n_train, n_test = parse_scene_name(request.name)
    n = n_train if request.split == "train" else n_test
    return make_scenes(request.source, n, spec, seed=0 if request.split == "train" else 1,
                       name=request.name)


def scene_source(name: str, description: str) -> DataSource:
    """The named set of row ``name`` of :data:`SCENE_SETS`, derived from its source set."""
    return DataSource(name, description, load_scene_split, derived_from=SCENE_SETS[name][0],
                      options=scene_options(name))


register_source(scene_source(
    "digit-scenes", "1-2 scikit-learn digits per 32x32 scene, masks and boxes (no files)"))
register_source(scene_source(
    "mnist-scenes", "1-4 MNIST digits per 64x64 scene, masks and boxes"))
register_source(scene_source(
    "fashion-scenes", "1-4 Fashion-MNIST items per 64x64 scene, masks and boxes"))
