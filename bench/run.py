"""The benchmark harness (issue 8): speed of zoo models and of the trainer on this machine.

In one run: the fp32 and bf16 peaks of a 2048^3 matmul; for each model x batch x precision x
memory format, training and inference images/s, the achieved FLOP/s as a fraction of the
matching matmul peak, batch-1 inference latency and the peak resident memory (each case in a
fresh process, so the peak is its own); the data pipeline's images/s alone; and the cnnlab
trainer against a minimal hand-written loop (bench/lenet_mnist.py) as a ratio.

    python bench/run.py --quick                       # < 1 min: checks that everything runs
    python bench/run.py --record                      # full default set, table -> BENCHMARKS.md
    python bench/run.py --models cifar_fast,resnet20 --batch-sizes 128 --precision bf16 \\
        --memory nhwc --steps 20

FLOPs are counted by ``torch.utils.flop_counter`` on one forward pass (2 per multiply-add);
a training step is counted as 3x the forward (forward, input and weight gradients).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import multiprocessing
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Case:
    """One measured configuration."""

    model: str
    batch: int
    size: int | None  # square input side; None = the model's own
    precision: str  # fp32 | bf16 (autocast)
    memory: str  # nchw | nhwc (channels_last)
    steps: int
    threads: int | None


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward pass on ``x`` (per batch)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return float(counter.get_total_flops())


def timed(fn, steps: int) -> float:
    """Seconds per call of ``fn`` after 2 warm-up calls (median of ``steps``)."""
    fn(), fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(case: Case) -> dict:
    """Train/inference images/s, FLOPs, batch-1 latency, peak RSS of one case (child process)."""
    from cnnlab.models import create, default_input_size
    from cnnlab.train.loop import autocast

    if case.threads:
        torch.set_num_threads(case.threads)
    c, h, w = default_input_size(case.model)
    if case.size:
        h = w = case.size
    memory = torch.channels_last if case.memory == "nhwc" else torch.contiguous_format
    model = create(case.model, num_classes=10, in_channels=c, input_size=(c, h, w))
    model = model.to(memory_format=memory)
    x = torch.randn(case.batch, c, h, w).contiguous(memory_format=memory)
    y = torch.randint(0, 10, (case.batch,))
    flops = forward_flops(model.eval(), x[:1])  # per image
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    cpu = torch.device("cpu")

    def train_step() -> None:
        with autocast(cpu, case.precision):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer(batch: torch.Tensor):
        def call() -> None:
            with torch.inference_mode(), autocast(cpu, case.precision):
                model(batch)
        return call

    model.train()
    train_s = timed(train_step, case.steps)
    model.eval()
    infer_s = timed(infer(x), case.steps)
    latency_s = timed(infer(x[:1].clone()), max(10, case.steps))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {**asdict(case), "input": f"{c}x{h}x{w}", "gflop_per_image": flops / 1e9,
            "train_ips": case.batch / train_s, "infer_ips": case.batch / infer_s,
            "latency_ms": 1000 * latency_s, "peak_mib": peak_mib}


def measure_isolated(case: Case) -> dict:
    """:func:`measure` in a fresh spawned process (its own peak memory)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(measure, case).result()


def pipeline_rate(data: str, augment: str, batch: int, root: str | None) -> float:
    """Images/s of cnnlab's BatchSource alone (uint8 -> augmented normalised float batches)."""
    from cnnlab.data.augment import parse_augment
    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import make_preprocess, to_batch_source

    train = load_dataset(data, "train", root=root)
    c, h, w = train.image_shape
    preprocess = make_preprocess(train, c, (h, w), "none")
    source = to_batch_source(train, preprocess, batch_size=batch, device=torch.device("cpu"),
                             augment=parse_augment(augment) if augment else None)
    start = time.perf_counter()
    for _ in source.batches(shuffle=True):
        pass
    return len(source) / (time.perf_counter() - start)


def trainer_ratio(data: str, root: str | None, threads: int | None) -> dict:
    """cnnlab.fit vs the minimal loop on LeNet-5, one epoch (bench/lenet_mnist.py)."""
    import tempfile

    import lenet_mnist

    argv = ["--data", data, "--epochs", "1"] + (["--threads", str(threads)] if threads else [])
    args = lenet_mnist.parse_args(argv + (["--data-root", root] if root else []))
    with tempfile.TemporaryDirectory() as out:
        config = lenet_mnist.make_config(args, out)
        ours, plain = lenet_mnist.run_cnnlab(config), lenet_mnist.run_plain(config)
    return {"cnnlab_ips": ours["images_per_s"], "plain_ips": plain["images_per_s"],
            "ratio": ours["images_per_s"] / plain["images_per_s"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lenet5,cifar_small,cifar_fast,resnet20,resnet18")
    parser.add_argument("--batch-sizes", default="64", help="comma-separated")
    parser.add_argument("--sizes", default="", help="comma-separated input sides (default: "
                        "each model's own)")
    parser.add_argument("--precision", default="fp32,bf16", help="fp32, bf16 or both")
    parser.add_argument("--memory", default="nchw,nhwc", help="nchw, nhwc (channels_last)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", default="mnist", help="data for pipeline and trainer ratio")
    parser.add_argument("--augment", default="affine:deg=5,translate=0.05")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.batch_sizes, args.steps, args.data = "lenet5,resnet20", "8", 2, "digits"
        args.precision, args.memory = "bf16", "nhwc"
    if args.data_root is None:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data"
        args.data_root = str(shared) if shared.is_dir() else None
    return args


def cases(args: argparse.Namespace) -> list[Case]:
    split = [s.strip() for s in args.models.split(",") if s.strip()]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()] or [None]
    return [Case(m, int(b), s, p, mem, args.steps, args.threads) for m, b, s, p, mem in
            itertools.product(split, args.batch_sizes.split(","), sizes,
                              args.precision.split(","), args.memory.split(","))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(common.machine())
    peaks = {name: common.matmul_peak(dtype) for name, dtype in DTYPES.items()}
    print("matmul 2048^3 peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in
                                             peaks.items()))
    rows = []
    for case in cases(args):
        r = measure_isolated(case)
        peak = peaks[case.precision]
        train_frac = 3 * r["gflop_per_image"] * 1e9 * r["train_ips"] / peak
        infer_frac = r["gflop_per_image"] * 1e9 * r["infer_ips"] / peak
        rows.append([case.model, r["input"], case.batch, case.precision, case.memory,
                     f"{r['gflop_per_image']:.3f}", f"{r['train_ips']:.0f}",
                     f"{100 * train_frac:.1f}%", f"{r['infer_ips']:.0f}",
                     f"{100 * infer_frac:.1f}%", f"{r['latency_ms']:.2f}",
                     f"{r['peak_mib']:.0f}"])
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    pipe = pipeline_rate(args.data, args.augment, 256, args.data_root)
    print(f"data pipeline ({args.data}, augment {args.augment!r}): {pipe:.0f} images/s")
    ratio = trainer_ratio(args.data, args.data_root, args.threads)
    print(f"trainer vs plain loop (lenet5, {args.data}, 1 epoch): cnnlab "
          f"{ratio['cnnlab_ips']:.0f} / plain {ratio['plain_ips']:.0f} img/s = "
          f"{ratio['ratio']:.3f}")
    if args.record:
        header = ["model", "input", "batch", "precision", "memory", "GFLOP/img", "train img/s",
                  "train % peak", "infer img/s", "infer % peak", "batch-1 ms", "peak MiB"]
        text = (common.recorded_header() + "\nMatmul peaks: " + ", ".join(
            f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()) + "\n\n"
            + common.markdown_table(header, rows) + f"\n\nData pipeline ({args.data}, "
            f"`{args.augment}`): {pipe:.0f} images/s. Trainer vs plain loop (LeNet-5, "
            f"{args.data}, 1 epoch): {ratio['ratio']:.3f}.\n")
        common.write_section("harness", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
