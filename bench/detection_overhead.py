"""The detection training step through ``cnnlab.fit`` vs a minimal hand-written PyTorch loop.

Issue 19's trainer-overhead target: ``cnnlab train --task detect`` trains at >= 0.95x the
images/s of the same CenterNet (same backbone, heads, batch, AdamW, cosine schedule, data in
memory) in a plain loop, measured in one run, as ``bench/lenet_mnist.py`` does for LeNet-5.

    python bench/detection_overhead.py --threads 2                 # mnist-scenes:n=1000, 1 epoch
    python bench/detection_overhead.py --quick                     # plumbing: 200 digit-scenes
    python bench/detection_overhead.py --record                    # write docs/BENCHMARKS.md

The plain loop gets every advantage: normalised float inputs and CenterNet targets encoded once
before timing (cnnlab encodes each batch's targets in the loss, decodes each batch's detections
for the "images all right" count, checks the loss for NaN), no validation or checkpoints.
Images/s compare the training phases (cnnlab's epoch timings from metrics.jsonl). The order of
the two runs alternates with ``--repeat`` so that a change in the machine's load hits both.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, recorded_header, write_section  # noqa: E402

from cnnlab.config import TrainConfig  # noqa: E402
from cnnlab.data.datasets import load_dataset  # noqa: E402
from cnnlab.data.pipeline import make_preprocess, to_batch_source  # noqa: E402
from cnnlab.detection.losses import centernet_loss  # noqa: E402
from cnnlab.detection.targets import encode_centernet  # noqa: E402
from cnnlab.models import create  # noqa: E402
from cnnlab.tasks import get_task  # noqa: E402
from cnnlab.tasks.detect import MIN_RADIUS  # noqa: E402
from cnnlab.train.fit import fit  # noqa: E402

WIDTHS = (16, 32, 64, 128)  # the unet encoder of bench/detection.py


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="mnist-scenes:n=1000")
    parser.add_argument("--data-root", default=None, help="default: $CNNLAB_DATA / ../shared/data")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="alternate the two runs N times")
    parser.add_argument("--quick", action="store_true", help="200 digit-scenes: checks it runs")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.data = "digit-scenes:n=200"
    if args.data_root is None:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data"
        args.data_root = str(shared) if shared.is_dir() else None
    return args


def make_config(args: argparse.Namespace, out: str) -> TrainConfig:
    return TrainConfig(model="unet", model_options={"widths": WIDTHS}, task="detect",
                       data=args.data, data_root=args.data_root, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, optimizer="adamw",
                       weight_decay=1e-4, schedule="cosine", val_fraction=0.0, seed=0,
                       device="cpu", threads=args.threads, out=out, name=None, progress=False)


def run_cnnlab(config: TrainConfig) -> float:
    """Training-phase images/s of ``cnnlab.fit`` (from the run's metrics.jsonl)."""
    result = fit(config, log=lambda *_: None)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    seconds = sum(r["seconds"] for r in records)
    return sum(r["images_per_s"] * r["seconds"] for r in records) / seconds


def run_plain(config: TrainConfig) -> float:
    """The minimal loop: randperm, index, forward, CenterNet loss, backward, AdamW step."""
    torch.manual_seed(config.seed)
    train = load_dataset(config.data, "train", root=config.data_root)
    c, h, w = train.image_shape
    preprocess = make_preprocess(train, c, (h, w), "auto")
    x_all, _ = next(to_batch_source(train, preprocess, batch_size=len(train),
                                    device=torch.device("cpu")).batches())
    k = len(train.classes)
    targets = encode_centernet(train.boxes, train.box_labels, k, (h, w), min_radius=MIN_RADIUS,
                               ignore=train.ignore)
    model = get_task("detect").build_model(
        create("unet", num_classes=k, in_channels=c, input_size=(c, h, w), widths=WIDTHS), k,
        (c, h, w))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    n, batch = len(train), config.batch_size
    total, step = config.epochs * math.ceil(n / batch), 0
    model.train()
    start = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(n)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            for group in optimizer.param_groups:  # cosine, per step (as cnnlab)
                group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            out = model(x_all[idx])
            maps = {"heatmap": out[:, :k], "size": out[:, k:k + 2], "offset": out[:, k + 2:]}
            loss, _ = centernet_loss(maps, {key: v[idx] for key, v in targets.items()})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return config.epochs * n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as out:
        config = make_config(args, out)
        for r in range(args.repeat):  # alternate the order: load changes hit both
            if r % 2 == 0:
                ours.append(run_cnnlab(config))
                plain.append(run_plain(config))
            else:
                plain.append(run_plain(config))
                ours.append(run_cnnlab(config))
    ratio = sum(ours) / sum(plain)
    print(f"cnnlab.fit  {' '.join(f'{v:6.1f}' for v in ours)} img/s")
    print(f"plain loop  {' '.join(f'{v:6.1f}' for v in plain)} img/s")
    print(f"ratio cnnlab/plain {ratio:.3f} (target >= 0.95); {args.data}, {args.epochs} "
          f"epoch(s), batch {args.batch_size}, {torch.get_num_threads()} threads")
    if args.record:
        table = markdown_table(["loop", "images/s (each repeat)", "ratio"],
                               [["cnnlab.fit --task detect", " ".join(f"{v:.1f}" for v in ours),
                                 f"{ratio:.3f}"],
                                ["plain loop", " ".join(f"{v:.1f}" for v in plain), "1"]])
        write_section(f"detection-overhead-{args.data}", recorded_header() + "\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
