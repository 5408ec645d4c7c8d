"""``cnnlab visualize KIND RUN``: one function per kind, each writing PNGs, with defaults that
pick layers, units and images so that ``visualize("maps", run)`` just works.

| kind        | shows                                            | default                        |
|-------------|--------------------------------------------------|--------------------------------|
| filters     | a conv layer's kernels                           | first conv layer               |
| maps        | feature maps of every conv layer for one image   | first test image               |
| top-patches | the 9 patches exciting each unit most            | last conv, first 16 units      |
| saliency    | input gradient and Grad-CAM                      | first 8 test images, predicted |
| gradcam     | the same (detection runs: of one box, ``--box``) | detection: box 0 (best score)  |
| class-model | image maximising each class score                | every class (at most 10)       |
| evolution   | strongest patch per unit per snapshot epoch      | last conv, first 8 units       |
| errors      | misclassified test images, true->pred, top-2     | first 100 errors               |
| curves      | loss/accuracy/lr per epoch                       |                                |
| confusion   | confusion-matrix heat map                        | test split                     |
| segmentation| image / truth / predicted mask, side by side     | first 8 test images            |

Example:
    >>> visualize("maps", "runs/lenet5-digits")  # doctest: +SKIP
    [PosixPath('runs/lenet5-digits/viz/input.png'), PosixPath('.../maps-conv1.png'), ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.errors import ConfigError, ModelError, choices_hint
from cnnlab.runs.reader import OpenRun, open_run
from cnnlab.tasks import get_task, task_names
from cnnlab.viz.detection import draw_box_attribution
from cnnlab.viz.grids import make_grid, normalize_tiles, save_png
from cnnlab.viz.inputs import image_input, to_display


@dataclass
class Request:
    """What the user asked for; None means "pick a sensible default"."""

    layer: str | None = None
    units: list[int] | None = None
    image: str | None = None
    target_class: str | None = None
    split: str = "test"
    limit: int | None = None  # images searched (top-patches, evolution)
    count: int | None = None  # images shown (segmentation)
    index: int = 0  # first image of the split shown (maps, saliency)
    box: int | None = None  # detection runs: which detected box (saliency, gradcam)

    def __post_init__(self) -> None:
        for flag, value in (("--limit", self.limit), ("--count", self.count)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} {value}: expected 1 or more")
        if self.index < 0:
            raise ConfigError(f"--index {self.index}: expected 0 or more")


def resolve_class(classes: list[str], value: str | int) -> int:
    """A class name (``"cat"``) or index (``"3"``) -> its index."""
    if str(value) in classes:
        return classes.index(str(value))
    if str(value).isdigit() and int(value) < len(classes):
        return int(value)
    raise ConfigError(f"unknown class {choices_hint(str(value), classes)}")


def sample_inputs(run: OpenRun, request: Request, count: int) -> tuple[torch.Tensor, list[str]]:
    """``--image`` (one file) or ``count`` images of the split from ``--index`` on: normalised
    inputs ``(B, C, H, W)`` and a label for each."""
    from cnnlab.viz.inputs import source_inputs

    if request.image:
        return image_input(run, request.image), [Path(request.image).name]
    data = run.load_split(request.split, limit=request.index + count)
    if request.index >= len(data):
        raise ConfigError(f"--index {request.index}: the {request.split} split has "
                          f"{len(data)} images (0..{len(data) - 1})")
    source = run.source(data)
    picked = list(range(request.index, min(request.index + count, len(data))))
    return source_inputs(source, picked), [
        f"#{i} true {run.task.label_name(run.classes, int(data.labels[i]))}" for i in picked]


def alias(run: OpenRun, layer: str) -> str:
    from cnnlab.viz.maps import conv_alias

    return conv_alias(run.model, layer).replace(".", "-")


def draw_filters(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.filters import filter_grid
    from cnnlab.viz.maps import resolve_layer

    path = resolve_layer(run.model, request.layer)
    return [filter_grid(run.model, path).save(out / f"filters-{alias(run, path)}.png")]


def draw_maps(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.maps import conv_alias, conv_layers, feature_maps, maps_grid, resolve_layer
    from cnnlab.viz.patches import check_units

    x, names = sample_inputs(run, request, 1)
    layers = [request.layer] if request.layer else conv_layers(run.model)
    maps = feature_maps(run.model, x[:1], layers)
    written = [save_png(make_grid(to_display(x[:1], run.preprocess), scale=4,
                                  normalize="none", captions=names[:1]).image, out / "input.png")]
    for name, value in maps.items():
        if value.dim() != 4:
            raise ModelError(f"layer {name} outputs vectors {tuple(value.shape)}, not maps")
        units = check_units(request.units, value.shape[1],
                            conv_alias(run.model, resolve_layer(run.model, name)))
        chosen = value[0, units]
        file = f"maps-{alias(run, resolve_layer(run.model, name))}.png"
        written.append(maps_grid(chosen).save(out / file))
    return written


def draw_top_patches(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.analysis.receptive import receptive_field
    from cnnlab.viz.maps import resolve_layer, unit_count
    from cnnlab.viz.patches import patches_grid, top_activations, top_patches

    path = resolve_layer(run.model, request.layer, default="last")
    units = request.units or list(range(min(16, unit_count(run.model, path))))
    source = run.source(request.split, limit=request.limit)
    top = top_activations(run.model, source, path, units=units)
    patches = top_patches(top, source, receptive_field(run.model, run.input_size, path))
    grid = patches_grid(patches, top.values, top.units)
    return [grid.save(out / f"top-patches-{alias(run, path)}.png")]


def saliency_tiles(run: OpenRun, x: torch.Tensor, target: int | None, layer: str | None
                   ) -> torch.Tensor:
    """Per image: input, saliency, Grad-CAM overlay -> ``(3B, 3, H, W)`` in [0, 1]."""
    from cnnlab.viz.saliency import grad_cam, heat_overlay, saliency

    images = to_display(x, run.preprocess).cpu()  # (B, C, H, W)
    sal = normalize_tiles(saliency(run.model, x, target)[:, None].cpu())  # (B, 1, H, W)
    cam = grad_cam(run.model, x, target, layer=layer).cpu()  # (B, H, W)
    tiles = []
    for i in range(x.shape[0]):
        tiles += [images[i].expand(3, -1, -1), sal[i].expand(3, -1, -1),
                  heat_overlay(images[i], cam[i])]
    return torch.stack(tiles)


def draw_saliency(run: OpenRun, request: Request, out: Path) -> list[Path]:
    x, names = sample_inputs(run, request, 8)
    target = None if request.target_class is None else resolve_class(run.classes,
                                                                      request.target_class)
    with torch.no_grad():
        predicted = run.model(x).argmax(1).tolist()
    scored = [run.classes[target if target is not None else p] for p in predicted]
    tiles = saliency_tiles(run, x, target, request.layer)
    captions = []
    for name, cls in zip(names, scored, strict=True):
        captions += [name, f"saliency {cls}", f"grad-cam {cls}"]
    scale = max(1, 96 // x.shape[-1])
    grid = make_grid(tiles, columns=3, scale=scale, normalize="none", captions=captions)
    return [grid.save(out / "saliency.png")]


def draw_class_model(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.classmodel import class_model

    if request.target_class is not None:
        targets = [resolve_class(run.classes, request.target_class)]
    else:
        targets = list(range(min(10, len(run.classes))))
    device = next(run.model.parameters()).device
    images = class_model(run.model, targets, run.input_size, device=device).images
    tiles = normalize_tiles(images.cpu())  # each image min-max scaled on its own
    grid = make_grid(tiles, columns=min(5, len(targets)), scale=max(1, 96 // tiles.shape[-1]),
                     normalize="none", captions=[run.classes[t] for t in targets])
    return [grid.save(out / "class-model.png")]


def draw_evolution(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.evolution import evolution_grid, feature_evolution

    evo = feature_evolution(run.run_dir, request.layer, units=request.units,
                            split=request.split, limit=request.limit or 2000)
    return [evolution_grid(evo).save(out / f"evolution-{alias(run, evo.layer)}.png")]


def draw_errors(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.errors import errors_grid, split_scores

    scores, images = split_scores(run, request.split)
    return [errors_grid(scores.errors, images).save(out / f"errors-{request.split}.png")]


def draw_curves(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.curves import curves_figure, figure_image, read_metrics

    image = figure_image(curves_figure(read_metrics(run.run_dir)))
    return [save_png(image, out / "curves.png")]


def draw_confusion(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.curves import confusion_figure, figure_image
    from cnnlab.viz.errors import split_scores

    scores, _ = split_scores(run, request.split)
    image = figure_image(confusion_figure(scores.confusion, run.classes))
    return [save_png(image, out / f"confusion-{request.split}.png")]


def draw_segmentation(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.segmentation import run_segmentation_grid

    grid = run_segmentation_grid(run, request.split, request.count or 8)
    return [grid.save(out / f"segmentation-{request.split}.png")]


KINDS = {
    "filters": draw_filters, "maps": draw_maps, "top-patches": draw_top_patches,
    "saliency": draw_saliency, "class-model": draw_class_model, "evolution": draw_evolution,
    "errors": draw_errors, "curves": draw_curves, "confusion": draw_confusion,
    "segmentation": draw_segmentation, "gradcam": draw_saliency,
}
BY_OUTPUT = {  # pictures drawn differently for a task's ``output_kind``
    "boxes": {"saliency": lambda run, request, out: draw_box_attribution(
        run, request, out, "saliency"), "gradcam": lambda run, request, out:
        draw_box_attribution(run, request, out, "gradcam")},
}


def visualize(kind: str, run: str | Path, *, out: str | Path | None = None,
              which: str = "best", device: str = "cpu", **options) -> list[Path]:
    """Draw ``kind`` for a run directory or checkpoint; PNGs go to ``out`` (default
    ``RUN/viz``). ``options`` are :class:`Request` fields (layer, units, image, ...)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown visualisation {choices_hint(kind, list(KINDS))}")
    opened = open_run(run, checkpoint=which, device=device)
    task = opened.task
    if not task.picture_kinds:
        raise ConfigError(f"visualize {kind}: {opened.run_dir} is a {task.name} run, not a "
                          f"network: it has no filters or feature maps to draw; its own "
                          f"pictures are in the run folder and in `cnnlab report`")
    if kind not in task.picture_kinds:  # each task declares the pictures that make sense for it
        serving = [name for name in task_names() if kind in get_task(name).picture_kinds]
        raise ConfigError(f"visualize {kind}: needs a run trained with "
                          f"{' or '.join(f'--task {n}' for n in serving)}, not a '{task.name}' "
                          f"run; its pictures are: {', '.join(task.picture_kinds)}")
    folder = Path(out) if out else opened.run_dir / "viz"
    draw = BY_OUTPUT.get(task.output_kind, {}).get(kind, KINDS[kind])
    return draw(opened, Request(**options), folder)
