"""Not just images (issue 23): 1-D and 3-D CNNs against their baselines on sequences and clips.

Lecture 003, "Not just images" (sound, text) and "Limitations" (customer data). Each experiment
trains with one plain, minimal loop (AdamW, one-cycle learning rate, cross-entropy) on data in
memory, side by side in one run:

- mnist1d: CNN >= 92% on 4,000/1,000 in <= 60 s of training; Greydanus's MLP; the same two with
  the positions shuffled by one fixed permutation: CNN(shuffled) <= MLP(shuffled) + 2 points and
  |MLP(shuffled) - MLP| <= 2 points (the limitation, measured).
- spoken: spectro1d on spoken digits by unseen accents and variants, mean of 3 seeds >= 85%.
- words: char1d vs character 1-gram and 1-3-gram logistic regression (scikit-learn).
- moving: c3d_small vs late fusion (>= 20 points behind, parameters within 10%) and early
  fusion, on moving-MNIST motion direction.

    python bench/beyond_images.py                      # all four (about 15 min on 2 cores)
    python bench/beyond_images.py --only mnist1d       # one experiment
    python bench/beyond_images.py --quick              # plumbing check: tiny sets, 1 epoch
    python bench/beyond_images.py --record             # also write docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, recorded_header, write_section  # noqa: E402

from cnnlab.data.sequences import SequenceSet, load_sequences, shuffle_positions  # noqa: E402
from cnnlab.models import sequence as zoo  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EXPERIMENTS = ("mnist1d", "spoken", "words", "moving")


@dataclass
class Recipe:
    """Every training hyper-parameter of one model, with its unit."""

    epochs: int
    batch_size: int = 100
    lr: float = 1e-2           # peak of the one-cycle schedule
    weight_decay: float = 5e-4  # AdamW's decoupled decay
    seed: int = 0


@dataclass
class Result:
    experiment: str
    model: str
    params: int
    accuracy: float   # test, 0..1
    train_s: float    # seconds in the training loop


def as_inputs(train: SequenceSet, test: SequenceSet) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 inputs: uint8 pixels / 255, one-hot as 0/1; floats standardised per channel
    with the training set's statistics."""
    if train.data.dtype == torch.uint8:
        scale = 255.0 if int(train.data.max()) > 1 else 1.0
        return train.data.float() / scale, test.data.float() / scale
    dims = [0, *range(2, train.data.dim())]
    mean = train.data.mean(dim=dims, keepdim=True)
    std = train.data.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return (train.data - mean) / std, (test.data - mean) / std


def fit_plain(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe) -> float:
    """The minimal loop: shuffle, slice, forward, cross-entropy, backward, step. Seconds."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    steps = recipe.epochs * -(-len(y) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=steps)
    model.train()
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(y))
        for i in range(0, len(y), recipe.batch_size):
            batch = order[i:i + recipe.batch_size]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return time.perf_counter() - start


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                  for i in range(0, len(y), batch))
    return correct / len(y)


def train_and_test(experiment: str, name: str, build, train: SequenceSet, test: SequenceSet,
                   recipe: Recipe) -> Result:
    """Seed, build, train, test one model; prints one line."""
    torch.manual_seed(recipe.seed)
    model = build()
    x_train, x_test = as_inputs(train, test)
    seconds = fit_plain(model, x_train, train.labels, recipe)
    result = Result(experiment, name, zoo.parameter_count(model),
                    accuracy(model, x_test, test.labels), seconds)
    print(f"  {experiment:8s} {name:28s} {result.params:>8,d} params  "
          f"{100 * result.accuracy:6.2f}%  {seconds:6.1f} s", flush=True)
    return result


def run_mnist1d(args: argparse.Namespace) -> list[Result]:
    train, test = load_sequences("mnist1d", "train"), load_sequences("mnist1d", "test")
    cnn = Recipe(epochs=args.epochs or 20)
    mlp = cnn  # the same recipe for both
    shuffled = shuffle_positions(train, 0), shuffle_positions(test, 0)
    return [train_and_test("mnist1d", "mnist1d_cnn", zoo.mnist1d_cnn, train, test, cnn),
            train_and_test("mnist1d", "mlp", zoo.mlp, train, test, mlp),
            train_and_test("mnist1d", "mnist1d_cnn (shuffled)", zoo.mnist1d_cnn, *shuffled, cnn),
            train_and_test("mnist1d", "mlp (shuffled)", zoo.mlp, *shuffled, mlp)]


def run_spoken(args: argparse.Namespace) -> list[Result]:
    options = {"config": quick_spoken_config()} if args.quick else {}
    train = load_sequences("spoken-digits", "train", **options)
    test = load_sequences("spoken-digits", "test", **options)
    print(f"  spoken: {len(train)} train utterances ({', '.join(train.meta['accents'])}), "
          f"{len(test)} test ({', '.join(test.meta['accents'])})")
    return [train_and_test("spoken", f"spectro1d (seed {seed})", zoo.spectro1d, train, test,
                           Recipe(epochs=args.epochs or 30, batch_size=64, lr=3e-3, seed=seed))
            for seed in (0, 1, 2)]


def quick_spoken_config():  # noqa: ANN201 - a SpokenDigitsConfig
    from cnnlab.data.spoken import SpokenDigitsConfig

    return SpokenDigitsConfig(train_accents=("en-us",), test_accents=("en-029",),
                              train_variants=("m1", "f2"), test_variants=("m6",), repeats=1)


def ngram_baseline(train: SequenceSet, test: SequenceSet, ngrams: tuple[int, int]) -> Result:
    """Logistic regression on character n-gram counts of the same words (scikit-learn)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(analyzer="char_wb", ngram_range=ngrams)
    x_train = vectorizer.fit_transform(train.meta["words"])
    start = time.perf_counter()
    classifier = LogisticRegression(max_iter=2000, C=1.0).fit(x_train, train.labels.numpy())
    seconds = time.perf_counter() - start
    predicted = classifier.predict(vectorizer.transform(test.meta["words"]))
    acc = float((predicted == test.labels.numpy()).mean())
    name = f"logistic regression {ngrams[0]}-{ngrams[1]}-grams"
    params = classifier.coef_.size + classifier.intercept_.size
    print(f"  words    {name:28s} {params:>8,d} params  {100 * acc:6.2f}%  {seconds:6.1f} s")
    return Result("words", name, params, acc, seconds)


def run_words(args: argparse.Namespace) -> list[Result]:
    per_language = 300 if args.quick else 5000
    train = load_sequences("words", "train", per_language=per_language)
    test = load_sequences("words", "test", per_language=per_language)
    return [ngram_baseline(train, test, (1, 1)), ngram_baseline(train, test, (1, 3)),
            train_and_test("words", "char1d", zoo.char1d, train, test,
                           Recipe(epochs=args.epochs or 6, batch_size=128, lr=3e-3))]


def run_moving(args: argparse.Namespace) -> list[Result]:
    counts = (200, 100) if args.quick else (4000, 1000)
    root = str(SHARED_DATA) if SHARED_DATA.is_dir() else None  # else $CNNLAB_DATA
    train = load_sequences("moving-mnist", "train", count=counts[0], root=root)
    test = load_sequences("moving-mnist", "test", count=counts[1], root=root)
    recipe = Recipe(epochs=args.epochs or 6, batch_size=50, lr=3e-3)
    return [train_and_test("moving", "c3d_small", zoo.c3d_small, train, test, recipe),
            train_and_test("moving", "late_fusion", zoo.late_fusion, train, test, recipe),
            train_and_test("moving", "early_fusion", zoo.early_fusion, train, test, recipe)]


def checks(results: list[Result]) -> list[tuple[str, str, bool]]:
    """The issue's targets against what was measured: (target, measured, met)."""
    acc = {r.model: r.accuracy for r in results}
    out: list[tuple[str, str, bool]] = []
    if "mnist1d_cnn" in acc:
        cnn = next(r for r in results if r.model == "mnist1d_cnn")
        gap = acc["mnist1d_cnn (shuffled)"] - acc["mlp (shuffled)"]
        drift = acc["mlp (shuffled)"] - acc["mlp"]
        out += [("MNIST-1D CNN >= 92% in <= 60 s", f"{100 * cnn.accuracy:.2f}% in "
                 f"{cnn.train_s:.0f} s", cnn.accuracy >= 0.92 and cnn.train_s <= 60),
                ("CNN(shuffled) <= MLP(shuffled) + 2 points", f"{100 * gap:+.2f} points",
                 gap <= 0.02),
                ("|MLP(shuffled) - MLP| <= 2 points", f"{100 * drift:+.2f} points",
                 abs(drift) <= 0.02)]
    spoken = [r.accuracy for r in results if r.experiment == "spoken"]
    if spoken:
        mean = statistics.mean(spoken)
        out.append(("spoken digits, unseen voices: mean of 3 seeds >= 85%",
                    f"{100 * mean:.2f}% (seeds: "
                    f"{', '.join(f'{100 * a:.1f}' for a in spoken)})", mean >= 0.85))
    if "char1d" in acc:
        best = max(v for k, v in acc.items() if k.startswith("logistic"))
        out.append(("words: CNN beats 1-gram and 1-3-gram logistic regression",
                    f"{100 * (acc['char1d'] - best):+.2f} points over the better",
                    acc["char1d"] > best))
    if "c3d_small" in acc:
        params = {r.model: r.params for r in results if r.experiment == "moving"}
        ratio = params["late_fusion"] / params["c3d_small"]
        gap = acc["c3d_small"] - acc["late_fusion"]
        out.append(("moving-MNIST: 3-D CNN >= late fusion + 20 points, params within 10%",
                    f"{100 * gap:+.2f} points, params x{ratio:.3f}",
                    gap >= 0.20 and abs(ratio - 1) <= 0.10))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=EXPERIMENTS, action="append",
                        help="run only this experiment (repeatable)")
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="tiny sets, 1 epoch: plumbing")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    runners = {"mnist1d": run_mnist1d, "spoken": run_spoken, "words": run_words,
               "moving": run_moving}
    results: list[Result] = []
    for name in args.only or EXPERIMENTS:
        print(f"{name}:", flush=True)
        results += runners[name](args)
    table = markdown_table(["experiment", "model", "parameters", "test accuracy", "train s"],
                           [[r.experiment, r.model, f"{r.params:,}", f"{100 * r.accuracy:.2f}%",
                             f"{r.train_s:.1f}"] for r in results])
    verdicts = markdown_table(["target", "measured", "met"],
                              [[t, m, "yes" if ok else "NO"] for t, m, ok in checks(results)])
    print("\n" + table + "\n\n" + verdicts)
    if args.record and not args.quick:
        write_section("beyond-images", "## Not just images (issue 23)\n\n" + recorded_header()
                      + "\n" + table + "\n\n" + verdicts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
