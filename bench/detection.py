"""Detection and instance segmentation on mnist-scenes, three detectors and two mask methods.

Issue 19's measured targets (mnist-scenes defaults: 5,000 train / 1,000 test, 64x64, 1-4
digits): CenterNet box COCO AP >= 0.70 and AP50 >= 0.95 within 15 minutes of training on 2
cores; mask AP50 >= 0.85 (overlap=0), >= 0.75 with overlaps, mask AP >= 0.50; YOLO v1 and the
sliding-window detector in the same table (AP, train time, images/s). A prototype: plain loops
on :mod:`cnnlab.detection` and :mod:`cnnlab.models.detection`, not yet ``cnnlab.fit``.

    python bench/detection.py --quick                      # plumbing (200 digit-scenes)
    python bench/detection.py --minutes 3                  # every detector, 3 min of training each
    python bench/detection.py --which centernet --minutes 15 --threads 2
    python bench/detection.py --which instance --data mnist-scenes:overlap=0 --minutes 5
    python bench/detection.py ... --record                 # write the table to docs/BENCHMARKS.md

Training time is wall time of the training loop only (scene generation and evaluation
excluded); the learning rate follows a warm-up + cosine over the *time* budget (``--minutes``)
or over ``--epochs``. images/s = test images through the detector, decoding and NMS included.
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, recorded_header, write_section  # noqa: E402

from cnnlab.data.datasets import load_dataset  # noqa: E402
from cnnlab.detection.coco import evaluate_detections  # noqa: E402
from cnnlab.detection.inference import detect_centernet, detect_yolo  # noqa: E402
from cnnlab.detection.losses import detector_loss, yolo_loss  # noqa: E402
from cnnlab.detection.sliding import (  # noqa: E402
    assign_windows,
    crop_windows,
    detect_windows,
    sample_windows,
    window_boxes,
)
from cnnlab.detection.targets import encode_centernet, encode_yolo  # noqa: E402
from cnnlab.models import create  # noqa: E402
from cnnlab.models.detection import Detector, WindowClassifier, YoloGrid  # noqa: E402
from cnnlab.tasks.segment import median_frequency_weights  # noqa: E402

# ---- every hyper-parameter in one place (units in the names) ----
SETTINGS = {
    "batch": 32, "lr": 2e-3, "weight_decay": 1e-4, "warmup_fraction": 0.05,
    "backbone": "unet", "backbone_widths": (16, 32, 64, 128),  # encoder strides 1, 2, 4, 8
    "neck_channels": 64, "head_channels": 64, "min_overlap": 0.7, "min_radius": 0,
    "yolo_grid": 8, "yolo_boxes": 2, "yolo_lr": 1e-3,
    "window_negatives": 3, "window_lr": 2e-3, "mask_jitter": 0.1, "eval_batch": 100,
    "semantic_weight_power": 0.5,  # class weights (median f / f_c) ** power; 0 = unweighted
}
WHICH = ("centernet", "yolo", "yolo-fc", "sliding", "sliding-regress", "instance")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="mnist-scenes", help="scene set (default mnist-scenes)")
    parser.add_argument("--data-root", default=None, help="default: $CNNLAB_DATA")
    parser.add_argument("--which", default=",".join(WHICH), help=f"comma list of {WHICH}")
    parser.add_argument("--minutes", type=float, default=None, help="training budget per model")
    parser.add_argument("--epochs", type=int, default=10, help="used when --minutes is not given")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a SETTINGS entry for an ablation, e.g. min_radius=1")
    parser.add_argument("--quick", action="store_true", help="200 digit-scenes, 1 epoch: it runs")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:  # 200 train / 40 test scenes of 32x32
        args.data, args.epochs, args.minutes = "digit-scenes:n=200", 1, None
    unknown = set(args.which.split(",")) - set(WHICH)
    if unknown:
        parser.error(f"--which: unknown {sorted(unknown)}; choose from {WHICH}")
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in SETTINGS:
            parser.error(f"--set {item}: unknown setting; choose from {sorted(SETTINGS)}")
        SETTINGS[key] = type(SETTINGS[key])(ast.literal_eval(value))
    return args


class Budget:
    """Fraction of training done, by time (``minutes``) or by steps (``epochs``)."""

    def __init__(self, minutes: float | None, epochs: int, steps_per_epoch: int) -> None:
        self.seconds = minutes * 60 if minutes else None
        self.total_steps = epochs * steps_per_epoch
        self.start, self.step = time.perf_counter(), 0

    def fraction(self) -> float:
        if self.seconds:
            return min(1.0, (time.perf_counter() - self.start) / self.seconds)
        return self.step / self.total_steps

    def lr(self, base: float) -> float:
        """Linear warm-up, then cosine to 0."""
        f, warm = self.fraction(), SETTINGS["warmup_fraction"]
        return base * (f / warm if f < warm else 0.5 * (1 + math.cos(math.pi * (f - warm)
                                                                     / (1 - warm))))

    def done(self) -> bool:
        return self.fraction() >= 1.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def train_loop(model: torch.nn.Module, n: int, loss_of, budget_args: tuple, base_lr: float,
               seed: int) -> tuple[float, int]:
    """Shuffle, batch, loss, AdamW step, until the budget is spent; returns (seconds, steps)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=base_lr,
                                  weight_decay=SETTINGS["weight_decay"])
    batch = SETTINGS["batch"]
    budget = Budget(*budget_args, steps_per_epoch=math.ceil(n / batch))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    while not budget.done():
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            for group in optimizer.param_groups:
                group["lr"] = budget.lr(base_lr)
            loss = loss_of(order[i:i + batch], gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            budget.step += 1
            if budget.done():
                break
    return budget.elapsed(), budget.step


def pixels(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255  # (N, C, H, W) in [0, 1]: black background stays 0


def backbone() -> torch.nn.Module:
    return create(SETTINGS["backbone"], num_classes=1, widths=SETTINGS["backbone_widths"])


def train_centernet(train, args, masks: bool) -> tuple[torch.nn.Module, float, int]:
    k, size = len(train.classes), tuple(train.images.shape[-2:])
    model = Detector(backbone(), k, channels=SETTINGS["neck_channels"],
                     head_channels=SETTINGS["head_channels"], masks=masks, semantic=masks)
    targets = encode_centernet(train.boxes, train.box_labels, k, size, ignore=train.ignore,
                               min_overlap=SETTINGS["min_overlap"],
                               min_radius=SETTINGS["min_radius"])
    x = pixels(train.images)
    weights = median_frequency_weights(train.masks, k + 1) ** SETTINGS["semantic_weight_power"]

    def loss_of(idx, gen):
        batch = {"targets": {key: v[idx] for key, v in targets.items()},
                 "boxes": train.boxes[idx], "labels": train.box_labels[idx],
                 "ignore": train.ignore[idx], "instances": train.instances[idx],
                 "masks": train.masks[idx], "semantic_weights": weights}
        return detector_loss(model, model(x[idx]), batch, generator=gen,
                             jitter=SETTINGS["mask_jitter"])[0]

    seconds, steps = train_loop(model, len(train), loss_of, (args.minutes, args.epochs),
                                SETTINGS["lr"], args.seed)
    return model, seconds, steps


def train_yolo(train, args, head: str) -> tuple[torch.nn.Module, float, int]:
    k, size = len(train.classes), tuple(train.images.shape[-2:])
    model = YoloGrid(backbone(), k, grid=SETTINGS["yolo_grid"],
                     boxes_per_cell=SETTINGS["yolo_boxes"], head=head)
    targets = encode_yolo(train.boxes, train.box_labels, k, size, grid=SETTINGS["yolo_grid"],
                          ignore=train.ignore)
    x = pixels(train.images)

    def loss_of(idx, gen):
        batch = {key: v[idx] for key, v in targets.items()}
        return yolo_loss(model(x[idx]), batch, boxes_per_cell=SETTINGS["yolo_boxes"])[0]

    seconds, steps = train_loop(model, len(train), loss_of, (args.minutes, args.epochs),
                                SETTINGS["yolo_lr"], args.seed)
    return model, seconds, steps


def train_sliding(train, args, regress: bool) -> tuple[torch.nn.Module, float, int]:
    """The window classifier on every positive window + 3x as many background windows (drawn
    once, by seed); cross-entropy, plus L1 on the box for positives when it regresses."""
    k = len(train.classes)
    model = WindowClassifier(k, in_channels=train.images.shape[1], regress=regress)
    windows = window_boxes(tuple(train.images.shape[-2:]))
    target, fraction = assign_windows(windows, train.boxes, train.box_labels, k,
                                      ignore=train.ignore)
    x = pixels(train.images)
    gen = torch.Generator().manual_seed(args.seed)
    image_i, window_i = sample_windows(target, SETTINGS["window_negatives"], gen)

    def loss_of(idx, _gen):
        i, w = image_i[idx], window_i[idx]
        scores, box = model(crop_windows(x, windows[w], i))
        labels = target[i, w]
        loss = F.cross_entropy(scores, labels)
        positive = labels < k
        if box is not None and positive.any():
            loss = loss + 5 * F.l1_loss(box[positive], fraction[i, w][positive])
        return loss

    seconds, steps = train_loop(model, len(image_i), loss_of, (args.minutes, args.epochs),
                                SETTINGS["window_lr"], args.seed)
    return model, seconds, steps


def timed_detection(detect, test) -> tuple[dict, float]:
    """Detections of every test image (batched) and images/s."""
    x, batch = pixels(test.images), SETTINGS["eval_batch"]
    start = time.perf_counter()
    parts = [detect(x[i:i + batch]) for i in range(0, len(x), batch)]
    seconds = time.perf_counter() - start
    if isinstance(parts[0], dict):
        merged = {key: [d for p in parts for d in p[key]] for key in parts[0]}
    else:
        merged = {"boxes": [d for p in parts for d in p]}
    return merged, len(x) / seconds


def run_one(name: str, train, test, args) -> list[dict]:
    """Train one detector, evaluate it; one result row per output (boxes, or mask kinds)."""
    if name in ("centernet", "instance"):
        masks = name == "instance"
        model, seconds, steps = train_centernet(train, args, masks)
        model.eval()
        kinds = ("learned", "baseline", "baseline-any") if masks else ()
        found, speed = timed_detection(lambda x: detect_centernet(model, x, masks=kinds), test)
    elif name in ("yolo", "yolo-fc"):
        model, seconds, steps = train_yolo(train, args, "fc" if name == "yolo-fc" else "conv")
        model.eval()
        found, speed = timed_detection(lambda x: detect_yolo(model, x), test)
    else:
        model, seconds, steps = train_sliding(train, args, name == "sliding-regress")
        model.eval()
        found, speed = timed_detection(lambda x: detect_windows(model, x), test)
    # parameters that learnt (a zoo backbone keeps its unused decoder/head: not counted)
    params = sum(p.numel() for p in model.parameters() if p.grad is not None)
    rows = []
    for kind, detections in found.items():
        types = ("bbox",) if kind == "boxes" else ("bbox", "segm")
        metrics = evaluate_detections(detections, test, types)
        m = metrics["segm" if kind != "boxes" else "bbox"]
        label = name if kind == "boxes" else f"{name} masks: {kind}"
        rows.append({"model": label, "what": "box" if kind == "boxes" else "mask", "ap": m.ap,
                     "ap50": m.ap50, "ap75": m.ap75, "box_ap": metrics["bbox"].ap,
                     "train_s": seconds, "steps": steps, "images_per_s": speed,
                     "params": params, "terciles": m.terciles})
        print(format_row(rows[-1]), flush=True)
    return rows


def format_row(r: dict) -> str:
    return (f"{r['model']:28s} {r['what']} AP {r['ap']:.3f} AP50 {r['ap50']:.3f} AP75 "
            f"{r['ap75']:.3f}  train {r['train_s']:.0f}s ({r['steps']} steps)  "
            f"{r['images_per_s']:.0f} img/s  {r['params'] / 1e3:.0f}k params")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = load_dataset(args.data, "train", root=args.data_root)
    test = load_dataset(args.data, "test", root=args.data_root)
    changed = f"; settings changed: {', '.join(args.set)}" if args.set else ""
    print(f"{args.data}: {len(train)} train / {len(test)} test scenes "
          f"{tuple(train.images.shape[1:])}, {int((test.box_labels >= 0).sum())} test objects "
          f"({int(test.ignore.sum())} ignore regions); {torch.get_num_threads()} threads{changed}")
    rows = [r for name in args.which.split(",") for r in run_one(name, train, test, args)]
    if args.record:
        table = markdown_table(
            ["model", "output", "AP", "AP50", "AP75", "box AP", "train s", "images/s", "params"],
            [[r["model"], r["what"], f"{r['ap']:.3f}", f"{r['ap50']:.3f}", f"{r['ap75']:.3f}",
              f"{r['box_ap']:.3f}", f"{r['train_s']:.0f}", f"{r['images_per_s']:.0f}",
              f"{r['params'] / 1e3:.0f}k"] for r in rows])
        write_section(f"detection-{args.data}", recorded_header() + "\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
