"""Bag of visual words with spatial pyramids (lecture 004; Lazebnik et al. 2006): dense
SIFT/HOG/DAISY descriptors, a k-means codebook, word histograms at pyramid levels 0..L and an SVM
on the pyramid match kernel (or a linear SVM, or kNN); the test accuracy of every level.

examples:
  cnnlab bovw --data mnist --train-per-class 200 --test-count 1000 --words 200 --levels 2
  cnnlab bovw --data fashion-mnist --train-per-class 200 --descriptor hog --classifier linear
  cnnlab bovw --data cifar10 --train-per-class 200 --test-count 1000 --assignment soft
  cnnlab bovw --texture                        # lecture 003: mean abs filter response, linear SVM
  cnnlab bovw --texture --data fashion-mnist --train-per-class 200 --test-count 1000
  cnnlab bovw --filters runs/lenet5-mnist      # learned first-layer filters vs Sobel/Gabor/Gaussian

Writes OUT/NAME (default runs/bovw-DATA-TIME): config.yaml, metrics.jsonl (one line per level),
run.json, codebook.safetensors, classifier.safetensors, and words, word_map, pyramid, levels,
confusion PNGs. --texture and --filters write their table as JSON and their figures there.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

from cnnlab.bovw.config import ASSIGNMENTS, CLASSIFIERS, DESCRIPTORS, BovwConfig

# flag -> (type, help); every flag maps to the BovwConfig field of the same name.
FLAGS: dict[str, tuple[type, str]] = {
    "data": (str, "data set name (see `cnnlab datasets`) or image-folder path (default mnist; "
                  "--texture: textures, scikit-image's brick/grass/gravel)"),
    "data-root": (str, "directory holding data sets (also $CNNLAB_DATA)"),
    "train-per-class": (int, "train on N images per class (seeded), e.g. 200"),
    "test-count": (int, "test on N test images (seeded draw; default all)"),
    "descriptor": (str, f"dense descriptor: {', '.join(DESCRIPTORS)} (default sift)"),
    "step": (int, "pixels between grid points (default max(2, patch / 4))"),
    "patch": (int, "patch side in pixels (default: a finest-level cell, side / 2^L, <= 16)"),
    "words": (int, "K, visual words in the codebook (default 200)"),
    "codebook-samples": (int, "descriptors k-means is fitted on (default 100000)"),
    "levels": (int, "L, pyramid levels 0..L (default 2)"),
    "assignment": (str, f"{' or '.join(ASSIGNMENTS)}: nearest word, or kernel-codebook weights"),
    "classifier": (str, f"{', '.join(CLASSIFIERS)} (default pyramid: SVM on the pyramid match "
                        f"kernel; intersection: unweighted levels)"),
    "svm-c": (float, "C of the SVMs (default 1)"),
    "neighbours": (int, "k of --classifier knn (default 5)"),
    "seed": (int, "random seed (subsets, codebook sample, k-means)"),
    "out": (str, "parent directory of the run directory (default runs)"),
    "name": (str, "run directory name (default bovw-<data>-<time>); must be new or empty"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, (kind, help_text) in FLAGS.items():
        parser.add_argument(f"--{flag}", type=kind, help=help_text)
    parser.add_argument("--download", action="store_true",
                        help="download a missing named data set from its official source")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable images with a warning instead of stopping")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--texture", action="store_true",
                      help="texture by mean abs response of an edge/bar filter bank (lecture 003)")
    mode.add_argument("--filters", metavar="RUN",
                      help="compare RUN's first-layer filters with Sobel, Gabor, Gaussian")


def make_config(args: argparse.Namespace) -> BovwConfig:
    """The flags given (None = not given) over BovwConfig's defaults."""
    names = {f.name for f in dataclasses.fields(BovwConfig)}
    values = {k: v for k, v in vars(args).items()
              if k in names and v is not None and v is not False}
    return BovwConfig(**values)


def run_directory(config: BovwConfig, prefix: str) -> Path:

    data = Path(config.data).name or config.data
    return Path(config.out) / (config.name or f"{prefix}-{data}-{time.strftime('%Y%m%d-%H%M%S')}")


def run(args: argparse.Namespace) -> int:
    if args.filters:
        return run_filters(args)
    if args.texture:
        return run_texture(args)
    from cnnlab.bovw import run_bovw, save_bovw
    from cnnlab.bovw.store import prepare_directory

    config = make_config(args)
    config.validate()
    directory = run_directory(config, "bovw")
    prepare_directory(directory, create=False)  # refuse a used folder before the work
    with warnings.catch_warnings():
        warnings.showwarning = one_line_warning
        result = run_bovw(config)
    save_bovw(result, directory)
    print(format_levels(result))
    print(f"run saved in {directory}")
    print(f"next: cnnlab report {directory}; cnnlab evaluate {directory}; cnnlab predict "
          f"{directory} IMAGE; cnnlab compare RUN {directory}")
    return 0


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line, like the errors: ``cnnlab bovw: warning: ...``."""
    print(f"cnnlab bovw: warning: {message}", file=sys.stderr)


def format_levels(result) -> str:
    """Accuracy per pyramid level, then per class at level L."""
    lines = [f"{result.data['train']} training / {result.data['test']} test images, "
             f"{result.config.descriptor} {result.config.patch}px every {result.config.step}px "
             f"({result.data['descriptors_per_image']} per image), K={result.config.words}, "
             f"{result.config.classifier}",
             "level  test acc  train acc  seconds"]
    lines += [f"L={r.level:<4} {100 * r.test_acc:7.2f}%  {100 * r.train_acc:8.2f}%  "
              f"{r.seconds:7.1f}" for r in result.levels]
    per_class = ", ".join(f"{name} {'-' if acc is None else f'{100 * acc:.1f}'}"
                          for name, acc in zip(result.model.classes,
                                               result.levels[-1].per_class_acc, strict=True))
    lines.append(f"per class at L={result.levels[-1].level}: {per_class}")
    lines.append(f"total {result.seconds['total']:.1f} s")
    return "\n".join(lines)


def run_texture(args: argparse.Namespace) -> int:
    from cnnlab.bovw import texture
    from cnnlab.bovw.store import prepare_directory, save_figures, write_json

    config = make_config(args)
    config.data = args.data or "textures"
    directory = prepare_directory(run_directory(config, "texture"), create=False)
    result = texture.run_texture(config.data, data_root=config.data_root,
                                 train_per_class=config.train_per_class,
                                 test_count=config.test_count, seed=config.seed)
    prepare_directory(directory)
    names, bank = texture.filter_bank()
    save_figures({"bank": texture.bank_figure(names, bank),
                  "responses": texture.responses_figure(result, names,
                                                        list(result.per_class_acc))}, directory)
    record = {k: v for k, v in dataclasses.asdict(result).items() if k != "class_means"}
    write_json(directory / "texture.json", record)
    print(f"{result.data}: {result.filters} filters, {result.train} training / {result.test} "
          f"test images: test accuracy {100 * result.test_acc:.2f}% ({result.seconds:.1f} s)")
    print(f"saved in {directory}")
    return 0


def run_filters(args: argparse.Namespace) -> int:
    from cnnlab.bovw import handcrafted
    from cnnlab.bovw.store import prepare_directory, save_figures, write_json

    comparison = handcrafted.compare_run_filters(args.filters, seed=args.seed or 0)
    out = Path(args.out or "runs") / (args.name or f"filters-{Path(args.filters).name}")
    directory = prepare_directory(out)
    save_figures({"filters": handcrafted.filters_figure(comparison)}, directory)
    rows = comparison.rows()
    write_json(directory / "filters.json",
               {"matches": [{"filter": i, "match": name, "correlation": c} for i, name, c in rows],
                "random_baseline": comparison.random_baseline})
    for i, name, corr in rows:
        print(f"filter {i:3d}  closest: {name:28s} r = {corr:+.2f}")
    mean = sum(abs(c) for _, _, c in rows) / len(rows)
    print(f"mean best |r| {mean:.2f}; random filters {comparison.random_baseline:.2f}")
    print(f"saved in {directory}")
    return 0
