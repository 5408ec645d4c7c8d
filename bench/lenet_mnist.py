"""LeNet-5 on full MNIST through ``cnnlab.fit`` and through a minimal hand-written PyTorch loop.

Issue 2's measured target: cnnlab trains at >= 0.95x the images/s of the plain loop (same
model, batch, optimizer, data in memory, same run) and reaches <= 0.95% test error (LeCun et al.
1998's LeNet-5 figure, lecture 000) within 3 epochs on 2 CPU cores.

    python bench/lenet_mnist.py                       # full: 3 epochs on MNIST
    python bench/lenet_mnist.py --precision bf16 --channels-last
    python bench/lenet_mnist.py --quick               # plumbing check (< 1 min): digits, 1 epoch
    python bench/lenet_mnist.py --record              # also write the table in docs/BENCHMARKS.md

The plain loop gets every advantage: its data are pre-normalised float32 tensors (cnnlab keeps
uint8 and converts per batch), it has no validation, progress bar, NaN check or checkpoints.
Images/s compare the training phases (cnnlab's epoch timings from metrics.jsonl).
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, recorded_header, write_section  # noqa: E402

from cnnlab.cli.flags import parse_options  # noqa: E402
from cnnlab.config import TrainConfig  # noqa: E402
from cnnlab.data.datasets import load_dataset  # noqa: E402
from cnnlab.data.pipeline import make_preprocess, to_batch_source  # noqa: E402
from cnnlab.models import create  # noqa: E402
from cnnlab.train.fit import fit  # noqa: E402
from cnnlab.train.loop import autocast  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="mnist", help="data set (default mnist)")
    parser.add_argument("--data-root", default=None, help="default: $CNNLAB_DATA / ../shared/data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="LeNet-5 option, e.g. activation=relu")
    parser.add_argument("--quick", action="store_true", help="digits, 1 epoch: checks it runs")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.epochs = "digits", 1
    if args.data_root is None:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data"
        args.data_root = str(shared) if shared.is_dir() else None
    return args


def make_config(args: argparse.Namespace, out: str) -> TrainConfig:
    return TrainConfig(model="lenet5", model_options=parse_options(args.option), data=args.data,
                       data_root=args.data_root, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                       schedule="cosine", val_fraction=0.0, seed=0, device="cpu",
                       precision=args.precision, channels_last=args.channels_last,
                       threads=args.threads, out=out, name="cnnlab", progress=False)


def run_cnnlab(config: TrainConfig) -> dict:
    """Train through ``cnnlab.fit``; training-phase images/s from the run's metrics."""
    start = time.perf_counter()
    result = fit(config, log=lambda *_: None)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    seconds = sum(r["seconds"] for r in records)
    images = sum(r["images_per_s"] * r["seconds"] for r in records)
    return {"images_per_s": images / seconds, "train_s": seconds, "wall_s": wall,
            "test_error": 1 - result.test_acc}


def in_memory_tensors(config: TrainConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The split as a normalised float32 tensor ``(N, 1, 32, 32)`` (cnnlab's preprocessing)."""
    train = load_dataset(config.data, "train", root=config.data_root)
    data = train if split == "train" else load_dataset(config.data, split, root=config.data_root)
    preprocess = make_preprocess(train, 1, (32, 32), "auto")
    source = to_batch_source(data, preprocess, batch_size=len(data), device=torch.device("cpu"))
    x, y = next(source.batches())
    return x.contiguous(), y


def run_plain(config: TrainConfig) -> dict:
    """The minimal loop: randperm, index, forward, cross-entropy, backward, SGD step."""
    torch.manual_seed(config.seed)
    x_train, y_train = in_memory_tensors(config, "train")
    model = create("lenet5", num_classes=10, in_channels=1, input_size=(1, 32, 32),
                   **config.model_options)
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    n, batch = len(y_train), config.batch_size
    total, step = config.epochs * math.ceil(n / batch), 0
    device = torch.device("cpu")
    start = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(n)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            xb = x_train[idx].contiguous(memory_format=memory)
            for group in optimizer.param_groups:  # cosine, per step (as cnnlab)
                group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            with autocast(device, config.precision):
                loss = F.cross_entropy(model(xb).float(), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    seconds = time.perf_counter() - start
    x_test, y_test = in_memory_tensors(config, "test")
    with torch.inference_mode(), autocast(device, config.precision):
        wrong = (model(x_test.contiguous(memory_format=memory)).argmax(1) != y_test).sum()
    return {"images_per_s": config.epochs * n / seconds, "train_s": seconds,
            "test_error": float(wrong) / len(y_test)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        config = make_config(args, out)
        ours = run_cnnlab(config)
        plain = run_plain(config)
    ratio = ours["images_per_s"] / plain["images_per_s"]
    print(f"cnnlab     {ours['images_per_s']:8.0f} img/s  train {ours['train_s']:.1f}s  "
          f"wall {ours['wall_s']:.1f}s  test error {100 * ours['test_error']:.2f}%")
    print(f"plain loop {plain['images_per_s']:8.0f} img/s  train {plain['train_s']:.1f}s  "
          f"test error {100 * plain['test_error']:.2f}%")
    print(f"ratio cnnlab/plain {ratio:.3f} (target >= 0.95); cnnlab test error "
          f"{100 * ours['test_error']:.2f}% after {args.epochs} epochs (target <= 0.95%)")
    if args.record:
        rows = [["cnnlab.fit", f"{ours['images_per_s']:.0f}", f"{ours['train_s']:.1f}",
                 f"{100 * ours['test_error']:.2f}%", f"{ratio:.3f}"],
                ["plain loop", f"{plain['images_per_s']:.0f}", f"{plain['train_s']:.1f}",
                 f"{100 * plain['test_error']:.2f}%", "1"]]
        table = markdown_table(["loop", "images/s", "train s", "test error", "ratio"], rows)
        write_section(f"lenet-{args.data}-{args.precision}", recorded_header() + "\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
