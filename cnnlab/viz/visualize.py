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
| errors      | misclassified images with probabilities          | first 100 errors               |
|             | (multilabel: scenes with a wrong label set)      |                                |
| top-losses  | largest -log p(true), and most confused pairs    | 30 images                      |
| curves      | loss, the task's metrics, lr per step and epoch  |                                |
| confusion   | confusion-matrix heat map (segment: pixels)      | test split, counts + normalised|
| segmentation| image / truth / predicted mask, side by side     | first 8 test images            |

Example:
    >>> visualize("maps", "runs/lenet5-digits")  # doctest: +SKIP
    [PosixPath('runs/lenet5-digits/viz/input.png'), PosixPath('.../maps-conv1.png'), ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from cnnlab.errors import ConfigError, ModelError, choices_hint
from cnnlab.runs.reader import OpenRun, open_run
from cnnlab.tasks import get_task, task_names
from cnnlab.viz.detection import draw_box_attribution
from cnnlab.viz.grids import make_grid, normalize_tiles, png_data_uri, save_png
from cnnlab.viz.inputs import image_input, to_display
from cnnlab.viz.kd_filters import draw_kd_filters
from cnnlab.viz.kd_maps import draw_kd_maps, draw_kd_saliency


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
    normalize: bool = False  # confusion: also the matrix normalised per true class
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


def about(run: OpenRun, split: str | None = None) -> str:
    """``run lenet5-mnist, mnist test``: what a title names besides the picture."""
    data = f", {run.data_name}" + (f" {split}" if split else "") if run.data_name else ""
    return f"run {run.run_dir.name}{data}"


def alias(run: OpenRun, layer: str) -> str:
    from cnnlab.viz.maps import conv_alias

    return conv_alias(run.model, layer).replace(".", "-")


def draw_filters(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.filters import filter_grid
    from cnnlab.viz.maps import resolve_layer

    path = resolve_layer(run.model, request.layer)
    grid = filter_grid(run.model, path)
    grid.title = f"filters of {alias(run, path)} ({path}), {about(run)}"
    return [grid.save(out / f"filters-{alias(run, path)}.png")]


def draw_maps(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.maps import conv_alias, conv_layers, feature_maps, maps_grid, resolve_layer
    from cnnlab.viz.patches import check_units

    x, names = sample_inputs(run, request, 1)
    layers = [request.layer] if request.layer else conv_layers(run.model)
    maps = feature_maps(run.model, x[:1], layers)
    shown = make_grid(to_display(x[:1], run.preprocess), scale=max(1, 128 // x.shape[-1]),
                      normalize="none", captions=names[:1])
    shown.title = f"input, {about(run, request.split)}"
    written = [shown.save(out / "input.png")]
    for name, value in maps.items():
        if value.dim() != 4:
            raise ModelError(f"layer {name} outputs vectors {tuple(value.shape)}, not maps")
        units = check_units(request.units, value.shape[1],
                            conv_alias(run.model, resolve_layer(run.model, name)))
        chosen = value[0, units]
        layer = alias(run, resolve_layer(run.model, name))
        grid = maps_grid(chosen, units=units)
        grid.title = f"feature maps of {layer} for {names[0]}, {about(run, request.split)}"
        written.append(grid.save(out / f"maps-{layer}.png"))
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
    grid.title = (f"top patches of {alias(run, path)}, {len(source.images)} images searched, "
                  f"{about(run, request.split)}")
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


def saliency_legend() -> Image.Image:
    """The two colour bars of a saliency panel: grey saliency, red-yellow Grad-CAM, each
    relative to its image's largest value."""
    from cnnlab.viz.grids import below, colour_bar
    from cnnlab.viz.saliency import heat_colours

    return below(colour_bar(0, 1, "saliency |dS/dI|, / its image's largest"),
                 colour_bar(0, 1, "Grad-CAM, / its image's largest", colours=heat_colours))


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
    grid.title = f"saliency and Grad-CAM ({request.layer or 'last conv'}), {about(run)}"
    grid.legend = saliency_legend()
    return [grid.save(out / "saliency.png")]


def draw_class_model(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.classmodel import regularized_class_model

    if request.target_class is not None:
        targets = [resolve_class(run.classes, request.target_class)]
    else:
        targets = list(range(min(10, len(run.classes))))
    device = next(run.model.parameters()).device
    result = regularized_class_model(run.model, targets, run.input_size, device=device,
                                     **pixel_range(run))
    tiles = to_display(result.images, run.preprocess).cpu()  # pixels, as an input would be
    grid = make_grid(tiles, columns=min(5, len(targets)), scale=max(1, 128 // tiles.shape[-1]),
                     normalize="none", captions=[run.classes[t] for t in targets])
    grid.title = f"class models (regularised ascent on the class score), {about(run)}"
    return [grid.save(out / "class-model.png")]


def pixel_range(run: OpenRun) -> dict[str, torch.Tensor]:
    """``low``/``high``: the normalised values of pixels 0 and 255, per channel."""
    mean, std = torch.tensor(run.preprocess.mean), torch.tensor(run.preprocess.std)
    return {"low": (0 - mean) / std, "high": (1 - mean) / std}


def draw_evolution(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.evolution import evolution_grid, feature_evolution

    evo = feature_evolution(run.run_dir, request.layer, units=request.units,
                            split=request.split, limit=request.limit or 2000)
    grid = evolution_grid(evo)
    grid.title = f"evolution of {alias(run, evo.layer)} over the snapshots, {about(run)}"
    return [grid.save(out / f"evolution-{alias(run, evo.layer)}.png")]


def draw_errors(run: OpenRun, request: Request, out: Path) -> list[Path]:
    """Misclassified images; for a multilabel run, the scenes whose label set is wrong."""
    from cnnlab.viz.errors import errors_grid, split_scores
    from cnnlab.viz.labels import wrong_sets

    if run.task.output_kind == "labels":
        gallery = wrong_sets(run, run.load_split(request.split))
        grid = gallery.grid
        grid.title = (f"{len(gallery.index)} scenes with a wrong label set (sigmoid >= "
                      f"{gallery.threshold}), {about(run, request.split)}")
    else:
        scores, images = split_scores(run, request.split)
        grid = errors_grid(scores.errors, images)
        grid.title = (f"{grid.layout.count} of {len(scores.errors)} errors, "
                      f"{about(run, request.split)}")
    return [grid.save(out / f"errors-{request.split}.png")]


def draw_top_losses(run: OpenRun, request: Request, out: Path) -> list[Path]:
    """The images with the largest loss, and a table of the most confused pairs."""
    from cnnlab.viz.errors import confused_pairs, losses_grid, split_outputs, top_losses

    result = split_outputs(run, request.split)
    losses = top_losses(result.probs, result.labels, run.classes, request.count or 30)
    grid = losses_grid(losses, result.images)
    pairs = confused_pairs(result.scores.confusion, run.classes, 5)
    grid.note = "most confused (true -> pred: count): " + ", ".join(
        f"{t} -> {p}: {n}" for t, p, n in pairs) if pairs else "no confusions"
    grid.title = f"top {len(losses)} losses -log p(true), {about(run, request.split)}"
    return [grid.save(out / f"top-losses-{request.split}.png")]


def draw_curves(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.curves import figure_image, run_curves

    fig = run_curves(run, title=f"training curves, {about(run)}")
    return [save_png(figure_image(fig), out / "curves.png")]


def draw_confusion(run: OpenRun, request: Request, out: Path) -> list[Path]:
    """Counts (and with ``normalize`` the per-class fractions); a segment run's matrix counts
    pixels, background included."""
    from cnnlab.viz.curves import confusion_figure, figure_image
    from cnnlab.viz.errors import split_scores
    from cnnlab.viz.segmentation import pixel_confusion

    if run.task.output_kind == "mask":
        confusion, unit = pixel_confusion(run, request.split), "pixels"
    else:
        confusion, unit = split_scores(run, request.split)[0].confusion, "images"
    written = []
    for normalize in (False, True) if request.normalize else (False,):
        fig = confusion_figure(confusion, run.classes, normalize=normalize,
                               title=f"confusion ({'fractions' if normalize else unit}), "
                                     f"{about(run, request.split)}")
        name = f"confusion-{request.split}{'-normalized' if normalize else ''}.png"
        written.append(save_png(figure_image(fig), out / name))
    return written


def draw_segmentation(run: OpenRun, request: Request, out: Path) -> list[Path]:
    from cnnlab.viz.segmentation import run_segmentation_grid

    grid = run_segmentation_grid(run, request.split, request.count or 8)
    grid.title = f"image, true mask, predicted mask, {about(run, request.split)}"
    return [grid.save(out / f"segmentation-{request.split}.png")]


KINDS = {
    "filters": draw_filters, "maps": draw_maps, "top-patches": draw_top_patches,
    "saliency": draw_saliency, "class-model": draw_class_model, "evolution": draw_evolution,
    "errors": draw_errors, "top-losses": draw_top_losses, "curves": draw_curves,
    "confusion": draw_confusion,
    "segmentation": draw_segmentation, "gradcam": draw_saliency,
}
BY_OUTPUT = {  # pictures drawn differently for a task's ``output_kind``
    "boxes": {"saliency": lambda run, request, out: draw_box_attribution(
        run, request, out, "saliency"), "gradcam": lambda run, request, out:
        draw_box_attribution(run, request, out, "gradcam")},
}


class Pictures(list):
    """The files ``visualize`` wrote (a list of Paths, as before), their images
    (``.figures``, Pillow images) and, in Jupyter, the pictures themselves."""

    @property
    def figures(self) -> list[Image.Image]:
        return [Image.open(path).convert("RGB") for path in self]

    def _repr_html_(self) -> str:
        return "".join(f'<figure><img src="{png_data_uri(image)}" style="max-width:100%">'
                       f"<figcaption>{path.name}</figcaption></figure>"
                       for path, image in zip(self, self.figures, strict=True))


def visualize(kind: str, run: str | Path | OpenRun, *, out: str | Path | None = None,
              which: str = "best", device: str = "cpu", threshold: float | None = None,
              **options) -> Pictures:
    """Draw ``kind`` for a run directory or checkpoint; PNGs go to ``out`` (default
    ``RUN/viz``). ``options`` are :class:`Request` fields (layer, units, image, ...);
    ``threshold`` is a multilabel run's decision threshold. Returns the paths, with
    ``.figures`` (the images) and an inline display in Jupyter."""
    if kind not in KINDS:
        raise ConfigError(f"unknown visualisation {choices_hint(kind, list(KINDS))}")
    opened = open_run(run, checkpoint=which, device=device, threshold=threshold)
    task = opened.task
    if not task.picture_kinds:
        raise ConfigError(f"visualize {kind}: {opened.run_dir} is a {task.name} run, not a "
                          f"network: it has no filters or feature maps to draw; its own "
                          f"pictures are in the run folder and in `cnnlab report`")
    if kind not in task.picture_kinds:  # each task declares the pictures that make sense for it
        raise ConfigError(f"visualize {kind}: needs a run trained with "
                          f"{' or '.join(f'--task {n}' for n in serving_tasks(kind))}, not a "
                          f"'{task.name}' run; its pictures are: {', '.join(task.picture_kinds)}")
    folder = Path(out) if out else opened.run_dir / "viz"
    if len(opened.input_size) != 3:  # a 1-D or 3-D run (issue 23)
        return Pictures(kd_picture(kind, opened)(opened, Request(**options), folder))
    draw = BY_OUTPUT.get(task.output_kind, {}).get(kind, KINDS[kind])
    return Pictures(draw(opened, Request(**options), folder))


def kd_picture(kind: str, run: OpenRun):  # noqa: ANN201 - a draw_KIND function
    """The pictures of 1-D/3-D runs: filters as curves or slices, curves, confusion, and for
    1-D runs maps and saliency; other kinds refuse in one line."""
    kinds = {"filters": draw_kd_filters, "curves": draw_curves, "confusion": draw_confusion}
    if len(run.input_size) == 2:  # sequences
        kinds.update(maps=draw_kd_maps, saliency=draw_kd_saliency)
    if kind not in kinds:
        raise ConfigError(f"visualize {kind}: 2-D image runs only; this run is "
                          f"{len(run.input_size) - 1}-D ({run.data_name}); its pictures are: "
                          f"{', '.join(kinds)}")
    return kinds[kind]


def serving_tasks(kind: str) -> list[str]:
    """The tasks whose runs can draw picture ``kind`` (their ``picture_kinds``)."""
    return [name for name in task_names() if kind in get_task(name).picture_kinds]
