"""Hand-crafted vs learned (issue 24): bag of visual words with spatial pyramids beside CNNs.

(a) MNIST, 2,000 training / 1,000 test images, dense SIFT, K = 50 and 200, levels L = 0, 1, 2.
    Targets: at K = 50, L = 2 beats L = 0 by >= 3 points; at K = 200, L = 2 reaches >= 95%;
    one run (reporting L = 0, 1, 2) takes <= 3 minutes on 2 cores.
(b) BoVW (L = 0 and L = 2, K = 200) vs LeNet-5 vs a small modern CNN (cifar_small: VGG-style
    conv-BN-ReLU, 0.29M parameters) on the same splits -- 200 training images per class, the
    same 1,000 test images -- of MNIST, Fashion-MNIST and CIFAR-10, with time and accuracy.
(c) Texture by mean absolute filter response (lecture 003; 36 edge/bar filters + linear SVM)
    on scikit-image's textures (train/test crops from disjoint halves) and on Fashion-MNIST,
    beside BoVW (and, on Fashion-MNIST, the CNNs of (b)).

    python bench/bovw.py                   # all three parts (~30 min on 2 loaded cores)
    python bench/bovw.py --part mnist      # only (a); also: table, texture
    python bench/bovw.py --quick           # plumbing check (< 1 min): digits, tiny settings
    python bench/bovw.py --record          # also write the tables in docs/BENCHMARKS.md

Data: ``--data-root``, else ../shared/data beside the checkout, else ``$CNNLAB_DATA``.

Same splits: ``cnnlab.fit``'s ``train_per_class=200`` and ``run_bovw``'s draw the same images
(``per_class_subset``, seed 0); the CNNs are scored on BoVW's 1,000 test images. Times: BoVW
counts everything (descriptors of both splits, k-means, kernels, every level's SVM, testing);
a CNN's is its training epochs (``cnnlab.fit``'s metrics), without its own 10,000-image test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, recorded_header, write_section  # noqa: E402

from cnnlab.bovw import BovwConfig, run_bovw  # noqa: E402
from cnnlab.bovw.pipeline import load_splits  # noqa: E402
from cnnlab.bovw.texture import run_texture  # noqa: E402
from cnnlab.config import TrainConfig  # noqa: E402
from cnnlab.evaluate import run_probabilities  # noqa: E402
from cnnlab.train.fit import fit  # noqa: E402

PER_CLASS, TEST_COUNT = 200, 1000  # the splits
TABLE_SETS = ("mnist", "fashion-mnist", "cifar10")
# the CNNs: SGD + momentum, cosine schedule, no augmentation (BoVW gets none either)
CNNS = {"LeNet-5": dict(model="lenet5", model_options={"activation": "relu", "pooling": "max"},
                        epochs=30, lr=0.05),
        "cifar_small": dict(model="cifar_small", epochs=20, lr=0.1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["all", "mnist", "table", "texture"], default="all")
    parser.add_argument("--data-root", default=None, help="default: $CNNLAB_DATA / ../shared/data")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="digits, tiny settings: checks it runs")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.data_root is None:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data"
        args.data_root = str(shared) if shared.is_dir() else None
    return args


def bovw_config(args: argparse.Namespace, data: str, words: int) -> BovwConfig:
    if args.quick:
        return BovwConfig(data="digits", train_per_class=20, test_count=100, words=words // 10,
                          levels=2, patch=4, step=1, codebook_samples=2000)
    return BovwConfig(data=data, data_root=args.data_root, train_per_class=PER_CLASS,
                      test_count=TEST_COUNT, words=words, levels=2, seed=0)


def run_levels(config: BovwConfig) -> dict:
    """One BoVW run: accuracy at L = 0, 1, 2 and its wall time."""
    start = time.perf_counter()
    result = run_bovw(config, log=lambda *_: None)
    return {"acc": [r.test_acc for r in result.levels], "seconds": time.perf_counter() - start,
            "patch": result.config.patch, "step": result.config.step}


def part_mnist(args: argparse.Namespace) -> str:
    """(a): K = 50 and 200 on MNIST 2,000 / 1,000, accuracy per level against the targets."""
    rows = []
    for words in (50, 200):
        r = run_levels(bovw_config(args, "mnist", words))
        gain = 100 * (r["acc"][2] - r["acc"][0])
        target = (f"gain {gain:+.1f} pts (>= 3)" if words == 50
                  else f"L=2 {100 * r['acc'][2]:.1f}% (>= 95%)")
        met = gain >= 3 if words == 50 else r["acc"][2] >= 0.95
        rows.append([f"K={words}", *(f"{100 * a:.1f}%" for a in r["acc"]), f"{gain:+.1f}",
                     f"{r['seconds']:.0f}", f"{target}: {'met' if met else 'NOT met'}; "
                     f"{'<=' if r['seconds'] <= 180 else '>'} 180 s"])
        print(" | ".join(rows[-1]), flush=True)
    note = (f"Dense SIFT ({r['patch']}x{r['patch']} patches every {r['step']} px), hard "
            f"assignment, SVM on the pyramid match kernel (C = 1), seed 0; time = the whole run.")
    return markdown_table(["codebook", "L=0", "L=1", "L=2", "L2 - L0 (pts)", "seconds",
                           "targets"], rows) + "\n\n" + note


def cnn_accuracy(args: argparse.Namespace, data: str, settings: dict, out: str) -> dict:
    """Train a CNN on the same 200 per class through ``cnnlab.fit``; score it on BoVW's
    1,000 test images."""
    if args.quick:
        settings = {**settings, "epochs": 1}
    config = TrainConfig(**settings, data="digits" if args.quick else data,
                         data_root=args.data_root, train_per_class=20 if args.quick else PER_CLASS,
                         val_fraction=0.0, batch_size=64, optimizer="sgd", momentum=0.9,
                         weight_decay=5e-4, schedule="cosine", seed=0, device="cpu",
                         threads=args.threads, out=out, progress=False)
    result = fit(config, log=lambda *_: None)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    _, test = load_splits(bovw_config(args, data, 200))
    probs, _ = run_probabilities(result.run_dir, test)
    return {"acc": float((probs.argmax(1) == test.labels).float().mean()),
            "seconds": sum(r["seconds"] for r in records)}


def part_table(args: argparse.Namespace) -> tuple[str, dict]:
    """(b): BoVW L=0 / L=2 vs LeNet-5 vs cifar_small on three data sets, same splits."""
    rows, found = [], {}
    with tempfile.TemporaryDirectory() as out:
        for data in TABLE_SETS[:1] if args.quick else TABLE_SETS:
            bovw = run_levels(bovw_config(args, data, 200))
            cnns = {name: cnn_accuracy(args, data, settings, out)
                    for name, settings in CNNS.items()}
            found[data] = {"bovw": bovw, **cnns}
            rows.append([data, f"{100 * bovw['acc'][0]:.1f}%", f"{100 * bovw['acc'][2]:.1f}%",
                         f"{bovw['seconds']:.0f}",
                         *(f"{100 * c['acc']:.1f}% ({c['seconds']:.0f} s)" for c in cnns.values())])
            print(" | ".join(rows[-1]), flush=True)
    header = ["data (200/class, 1,000 test)", "BoVW L=0", "BoVW L=2", "BoVW s",
              *(f"{name} (train s)" for name in CNNS)]
    note = ("BoVW: dense SIFT on grey images, K = 200, pyramid match kernel SVM. CNNs: "
            f"LeNet-5 (ReLU, max-pool) {CNNS['LeNet-5']['epochs']} epochs, cifar_small "
            f"{CNNS['cifar_small']['epochs']} epochs, SGD 0.9, cosine, no augmentation, batch 64.")
    return markdown_table(header, rows) + "\n\n" + note, found


def part_texture(args: argparse.Namespace, table: dict) -> str:
    """(c): mean abs response + linear SVM beside BoVW and the CNNs."""
    rows = []
    for data in ("textures",) if args.quick else ("textures", "fashion-mnist"):
        start = time.perf_counter()
        texture = run_texture(data, data_root=args.data_root, train_per_class=PER_CLASS,
                              test_count=TEST_COUNT, log=lambda *_: None)
        seconds = time.perf_counter() - start
        if data == "textures":
            bovw = run_levels(BovwConfig(data="textures", words=20 if args.quick else 200,
                                         levels=2, seed=0))
        else:
            bovw = table.get(data, {}).get("bovw") or run_levels(bovw_config(args, data, 200))
        cnn = [f"{100 * table[data][n]['acc']:.1f}%" if data in table else "-" for n in CNNS]
        rows.append([data, f"{texture.train} / {texture.test}", f"{100 * texture.test_acc:.1f}%",
                     f"{seconds:.0f}", f"{100 * bovw['acc'][0]:.1f}%",
                     f"{100 * bovw['acc'][2]:.1f}%", *cnn])
        print(" | ".join(rows[-1]), flush=True)
    note = ("Texture: 36 edge/bar filters (Leung-Malik small bank: 6 orientations, sigma 1, "
            "sqrt 2, 2), mean |response| per filter, standardised, LinearSVC. scikit-image's "
            "brick, grass, gravel: 100 64x64 crops per texture from the left half for training, "
            "100 from the right half for testing.")
    header = ["data", "train / test", "mean abs response", "s", "BoVW L=0", "BoVW L=2",
              *CNNS]
    return markdown_table(header, rows) + "\n\n" + note


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sections, table = {}, {}
    if args.part in ("all", "mnist"):
        sections["bovw-mnist"] = part_mnist(args)
    if args.part in ("all", "table"):
        sections["bovw-vs-cnn"], table = part_table(args)
    if args.part in ("all", "texture"):
        sections["bovw-texture"] = part_texture(args, table)
    for name, text in sections.items():
        print(f"\n## {name}\n{text}")
        if args.record and not args.quick:
            write_section(name, recorded_header() + "\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
