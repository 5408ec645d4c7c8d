"""Pictures of detection and instance runs: the report's section, and saliency / Grad-CAM of
one detected box (``cnnlab visualize saliency|gradcam RUN --image F --box K``).

The attribution of box ``K`` (detections sorted by score, 0 = best) differentiates the logit of
its class's heatmap peak -- the one number that made the box (Zhou et al. 2019) -- with respect
to the input (saliency, Simonyan et al. 2014: the largest absolute gradient over channels) or to
the fused stride-4 feature map the heads read (Grad-CAM, Selvaraju et al. 2017: channels
weighted by their mean gradient, summed, ReLU, upsampled to the image).
"""

from __future__ import annotations

import html
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.detection.detections import Detections
from cnnlab.errors import ConfigError, DataError
from cnnlab.objects.draw import detections_plot, draw_image, pr_plot
from cnnlab.objects.evaluate import KIND_NAMES, run_detections, score_kinds, show
from cnnlab.objects.predict import letterboxed_input
from cnnlab.runs.outputs import save_figure
from cnnlab.runs.reader import OpenRun
from cnnlab.viz.curves import figure_image
from cnnlab.viz.inputs import to_display

REPORT_IMAGES = 500  # test images scored for the report (the whole split: cnnlab evaluate)
SHOWN = 8


def box_input(run: OpenRun, image: str | None, split: str, index: int) -> torch.Tensor:
    """``--image`` letterboxed as ``predict`` does, or image ``index`` of the split."""
    if image:
        if not Path(image).is_file():
            raise DataError(f"--image {image}: no such file")
        return letterboxed_input(run, Path(image))[1]
    data = run.load_split(split, limit=index + 1)
    if index >= len(data):
        raise ConfigError(f"--index {index}: the {split} split has {len(data)} images")
    x, _ = next(run.source(data.subset(torch.tensor([index])), batch_size=1).batches())
    return x


def box_attribution(run: OpenRun, x: torch.Tensor, box: int) -> tuple[Detections, dict]:
    """Detection ``box`` of image ``x`` ``(1, C, H, W)`` and its ``saliency`` and ``gradcam``
    maps ``(H, W)`` in [0, 1]."""
    net = run.model
    captured = {}
    hook = net.detector.fusion.register_forward_hook(
        lambda _m, _i, out: captured.update(features=out[net.stride]))
    try:
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            packed = net(x)
            found = run.task.decode(packed.detach())[0]
            if not 0 <= box < len(found):
                raise ConfigError(f"--box {box}: the image has {len(found)} detections "
                                  f"(0..{len(found) - 1}, best score first)")
            heat = run.task.maps(packed)["heatmap"][0, int(found.labels[box])]  # (h, w)
            cx, cy = ((found.boxes[box, :2] + found.boxes[box, 2:]) / 2 / net.stride).tolist()
            row = min(max(int(cy), 0), heat.shape[0] - 1)
            col = min(max(int(cx), 0), heat.shape[1] - 1)
            near = heat[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2]
            features = captured["features"]
            features.retain_grad()
            near.max().backward()  # the peak's logit (within a cell of the box's centre)
    finally:
        hook.remove()
    saliency = x.grad[0].abs().amax(0)
    weights = features.grad[0].mean((1, 2), keepdim=True)
    cam = F.relu((weights * features[0]).sum(0))[None, None]
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    scale = lambda m: (m / m.max().clamp(min=1e-12)).detach().cpu()  # noqa: E731
    return found.take(torch.tensor([box])), {"saliency": scale(saliency), "gradcam": scale(cam)}


def draw_box_attribution(run: OpenRun, request, out: Path, kind: str) -> list[Path]:
    """The image with box ``--box`` and its saliency or Grad-CAM, side by side."""
    import matplotlib.pyplot as plt  # heavy: only when drawing

    box = request.box if request.box is not None else 0
    x = box_input(run, request.image, request.split, request.index)
    found, maps = box_attribution(run, x, box)
    pixels = (to_display(x.detach(), run.preprocess)[0].cpu() * 255).round().to(torch.uint8)
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    draw_image(axes[0], pixels, found.take(torch.tensor([0])), run.classes)
    axes[0].set_title(f"box {box}", fontsize=8)
    axes[1].imshow(pixels.float().mean(0).numpy(), cmap="gray")
    axes[1].imshow(maps[kind].numpy(), cmap="jet", alpha=0.5)
    axes[1].set_title(f"{kind} of the {run.classes[int(found.labels[0])]} peak", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    try:
        return [save_figure(fig, out / f"{kind}-box{box}.png")]
    finally:
        plt.close(fig)


def detection_section(run: OpenRun, img_tag, table) -> str:
    """COCO AP of each kind (boxes, learned and baseline masks) on the first test images,
    per class, the PR curves and the hits / misses / false alarms picture."""
    import matplotlib.pyplot as plt  # heavy: only when drawing

    try:
        data = run.load_split("test", limit=REPORT_IMAGES)
    except DataError as error:
        return f"<p>no test split: {html.escape(str(error))}</p>"
    found = run_detections(run, data)
    scores = score_kinds(found, data)
    rows = [[KIND_NAMES[k], show(s.ap), show(s.ap50), show(s.ap75),
             ", ".join(f"{n} {show(v)}" for n, v in s.sizes.items())] for k, s in scores.items()]
    parts = [f"<p>COCO AP (pycocotools) on the first {len(data)} test images</p>",
             table(["what", "AP", "AP50", "AP75", "COCO sizes"], rows, numeric={1, 2, 3})]
    first = next(iter(scores.values()))
    parts.append(table(["class", *[KIND_NAMES[k] + " AP" for k in scores]],
                       [[c, *[show(s.per_class.get(c)) for s in scores.values()]]
                        for c in first.per_class], numeric=set(range(1, len(scores) + 1))))
    kind = "learned" if "learned" in found else "boxes"
    shown = min(SHOWN, len(data))
    truth = [(data.boxes[i], data.box_labels[i],
              data.ignore[i] if data.ignore is not None else None) for i in range(shown)]
    for fig, alt, caption in (
            (detections_plot(data.images[:shown], found[kind][:shown], data.classes, truth),
             "detections", "hits (green), false alarms (red), misses (orange, dashed)"),
            (pr_plot(scores[kind].curves, f"{KIND_NAMES[kind]} precision-recall, IoU 0.5"),
             "precision-recall", "precision against recall per class at IoU 0.5")):
        parts.append(img_tag(figure_image(fig), alt, caption))
        plt.close(fig)
    return "\n".join(parts)
