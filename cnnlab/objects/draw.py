"""Pictures of detections: hits, misses and false alarms on the image; precision-recall curves.

Colours (with a legend on every picture): a **hit** (a confident detection of the right class at
IoU >= 0.5 with an object) is green, a **false alarm** (a confident detection matching nothing)
red, a **miss** (an object no confident detection found) orange and dashed, an ignore region
(COCO ``iscrowd``) grey and dotted. Scores are written at each detection.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.detection.detections import Detections
from cnnlab.detection.nms import box_iou, xywh_to_xyxy
from cnnlab.runs.outputs import save_figure

SHOW_SCORE = 0.3  # detections drawn and matched: the confident ones
COLOURS = {"hit": "#2ca02c", "false alarm": "#d62728", "miss": "#ff7f0e",
           "ignore region": "#9e9e9e", "found": "#1f77b4"}


def match(found: Detections, boxes: torch.Tensor, labels: torch.Tensor,
          ignore: torch.Tensor | None = None) -> dict[str, list[int]]:
    """Greedy matching, best score first, as COCO matches: indices of ``hit`` and ``false
    alarm`` detections and ``miss`` objects; ``boxes`` xywh ``(M, 4)``, ``labels`` -1 = none."""
    present = labels >= 0
    ignored = ignore & present if ignore is not None else torch.zeros_like(present)
    iou = box_iou(found.boxes.float(), xywh_to_xyxy(boxes.float()))
    iou = iou * (found.labels[:, None] == labels[None])
    taken = ~present | ignored
    result: dict[str, list[int]] = {"hit": [], "false alarm": [], "miss": [], "ignored": []}
    for d in found.scores.argsort(descending=True).tolist():
        scores = torch.where(taken, -1.0, iou[d])
        best = int(scores.argmax()) if len(scores) else -1
        if best >= 0 and scores[best] >= 0.5:
            taken[best] = True
            result["hit"].append(d)
        elif len(scores) and bool(((iou[d] >= 0.5) & ignored).any()):
            result["ignored"].append(d)  # on an ignore region: neither hit nor false alarm
        else:
            result["false alarm"].append(d)
    result["miss"] = [j for j in range(len(labels)) if present[j] and not ignored[j]
                      and not taken[j]]
    return result


def _rect(ax, box: list[float], colour: str, style: str = "-", width: float = 1.5) -> None:
    from matplotlib.patches import Rectangle  # heavy: only when drawing

    x1, y1, x2, y2 = box
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                           edgecolor=colour, linestyle=style, linewidth=width))


def draw_image(ax, image: torch.Tensor, found: Detections, classes: list[str], *,
               truth: tuple | None = None, mask_alpha: float = 0.45) -> dict[str, int]:
    """One image with its detections (and, given ``truth`` = ``(boxes xywh, labels, ignore)``,
    hits / false alarms / misses); masks of ``found`` are tinted. Returns the counts."""
    from matplotlib import colormaps  # heavy: only when drawing

    rgb = image.float().div(255).expand(3, -1, -1) if image.shape[0] == 1 else image.float() / 255
    ax.imshow(rgb.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    confident = found.take(found.scores >= SHOW_SCORE)
    if confident.masks is not None and len(confident):
        tint = torch.zeros(*confident.masks.shape[1:], 4)
        for i, m in enumerate(confident.masks):
            tint[m] = torch.tensor(colormaps["tab10"](i % 10), dtype=torch.float32)
        tint[..., 3] = tint[..., 3] * mask_alpha
        ax.imshow(tint.numpy(), interpolation="nearest")
    kinds = {"found": list(range(len(confident)))}
    if truth is not None:
        boxes, labels, ignore = truth
        kinds = match(confident, boxes, labels, ignore)
        gt = xywh_to_xyxy(boxes.float()).tolist()
        for j in kinds["miss"]:
            _rect(ax, gt[j], COLOURS["miss"], "--")
        for j in ((labels >= 0) & ignore).nonzero().flatten().tolist() if ignore is not None \
                else []:
            _rect(ax, gt[j], COLOURS["ignore region"], ":")
    for kind in ("false alarm", "found", "hit"):  # hits on top; false alarms' scores below
        below = kind == "false alarm"
        for d in kinds.get(kind, []):
            box = confident.boxes[d].tolist()
            _rect(ax, box, COLOURS[kind])
            ax.text(box[0], box[3] + 1 if below else box[1] - 1,
                    f"{classes[int(confident.labels[d])]} {float(confident.scores[d]):.2f}",
                    color=COLOURS[kind], fontsize=6, va="top" if below else "bottom")
    return {k: len(v) for k, v in kinds.items()}


def legend(fig, kinds: tuple[str, ...]) -> None:
    from matplotlib.lines import Line2D  # heavy: only when drawing

    styles = {"miss": "--", "ignore region": ":"}
    handles = [Line2D([], [], color=COLOURS[k], linestyle=styles.get(k, "-"), label=k)
               for k in kinds]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)


def detections_figure(images: torch.Tensor, found: list[Detections], classes: list[str],
                      truth: list[tuple] | None, path: str | Path, *, columns: int = 4) -> Path:
    """:func:`detections_plot` saved as a PNG at ``path``."""
    import matplotlib.pyplot as plt  # heavy: only when drawing

    fig = detections_plot(images, found, classes, truth, columns=columns)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def detections_plot(images: torch.Tensor, found: list[Detections], classes: list[str],
                    truth: list[tuple] | None, *, columns: int = 4):
    """A grid of images with their detections (hits, false alarms, misses when ``truth``)."""
    import matplotlib.pyplot as plt  # heavy: only when drawing

    n = len(found)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.4 * rows + 0.5),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        counts = draw_image(ax, images[i], found[i], classes,
                            truth=truth[i] if truth is not None else None)
        if truth is not None:
            ax.set_title(f"{counts['hit']} hit, {counts['miss']} missed, "
                         f"{counts['false alarm']} false", fontsize=7)
    kinds = ("hit", "false alarm", "miss", "ignore region") if truth is not None else ("found",)
    legend(fig, kinds)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def pr_figure(curves: dict[str, list[float]], path: str | Path, title: str) -> Path:
    """:func:`pr_plot` saved as a PNG at ``path``."""
    import matplotlib.pyplot as plt  # heavy: only when drawing

    fig = pr_plot(curves, title)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def pr_plot(curves: dict[str, list[float]], title: str):
    """Precision-recall curves at IoU 0.5, one line per class (COCOeval's 101 recall points;
    a curve stops where the class's recall ends)."""
    import matplotlib.pyplot as plt  # heavy: only when drawing

    fig, ax = plt.subplots(figsize=(5, 4))
    recall = torch.linspace(0, 1, 101)
    for name, precision in curves.items():
        p = torch.tensor(precision)
        reached = p >= 0
        if reached.any():
            ax.plot(recall[reached].numpy(), p[reached].numpy(), label=name, linewidth=1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    fig.tight_layout()
    return fig
