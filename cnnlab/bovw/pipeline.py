"""``run_bovw``: lecture 004's bag-of-features pipeline with spatial pyramids, end to end.

1. feature extraction: dense SIFT/HOG/DAISY on a grid (:mod:`cnnlab.bovw.descriptors`);
2. codebook formation: k-means on a seeded sample of training descriptors;
3. quantisation: each descriptor -> visual word(s) (hard or soft);
4. histograms of words at pyramid levels 0..L (Lazebnik et al. 2006);
5. a classifier (SVM on the pyramid match kernel, linear SVM or kNN), fitted once per pyramid
   height ``l = 0..L`` so the run reports the accuracy each level adds.

Example:
    >>> result = run_bovw(BovwConfig(data="mnist", train_per_class=200, test_count=1000))  # doctest: +SKIP
    >>> [round(r.test_acc, 3) for r in result.levels]  # L = 0, 1, 2  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from cnnlab.bovw.classify import (
    Classifier,
    check_kernel_train_size,
    confusion_matrix,
    fit_kernel_svm,
    fit_knn,
    fit_linear,
    per_class_accuracy,
)
from cnnlab.bovw.codebook import fit_codebook
from cnnlab.bovw.config import BovwConfig, check_patch_fits
from cnnlab.bovw.descriptors import DenseGrid, describe, to_grey
from cnnlab.bovw.kernels import combine_levels, level_kernels
from cnnlab.bovw.model import BovwModel
from cnnlab.bovw.pyramid import pyramid_vector
from cnnlab.bovw.splits import load_splits
from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import make_preprocess

KERNEL_CLASSIFIERS = ("pyramid", "intersection")


@dataclass
class LevelResult:
    """Accuracy of the classifier fitted on pyramid levels ``0..level``."""

    level: int
    test_acc: float
    train_acc: float
    per_class_acc: list[float | None]  # None: no test image of that class
    seconds: float  # fitting and predicting


@dataclass
class BovwResult:
    """What a run produced: the model (at level L), the per-level accuracies, the figures."""

    config: BovwConfig
    model: BovwModel
    levels: list[LevelResult]
    confusion: list[list[int]]  # at level L: rows true, columns predicted
    test_labels: torch.Tensor
    test_predictions: torch.Tensor  # at level L
    data: dict  # sizes of the splits, image size
    seconds: dict[str, float]
    figures: dict = field(default_factory=dict)  # name -> matplotlib Figure

    @property
    def test_acc(self) -> float:
        return self.levels[-1].test_acc


def codebook_sample(grey: np.ndarray, grid: DenseGrid, config: BovwConfig,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """About ``codebook_samples`` descriptors of seeded training images: float32 ``(M, D)``
    and where each came from, ``(M, 2)`` (image index, grid position)."""
    rng = np.random.default_rng(config.seed)
    images = rng.permutation(len(grey))[:math.ceil(config.codebook_samples / len(grid))]
    descriptors = describe(grey[images], grid, config.descriptor)  # (n, P, D)
    origin = np.stack(np.meshgrid(images, np.arange(len(grid)), indexing="ij"), -1)
    flat, origin = descriptors.reshape(-1, descriptors.shape[-1]), origin.reshape(-1, 2)
    keep = np.sort(rng.permutation(len(flat))[:config.codebook_samples])
    return flat[keep], origin[keep]


def fit_level(config: BovwConfig, level: int, hists: dict, labels: torch.Tensor,
              kernels: dict) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    """The classifier on levels ``0..level``; its training and test predictions."""
    weighted = config.classifier != "intersection"
    train_x = pyramid_vector(hists["train"][:level + 1], weighted=weighted)
    if config.classifier == "linear":
        model = fit_linear(train_x, labels, c=config.svm_c, seed=config.seed)
        test_x = pyramid_vector(hists["test"][:level + 1], weighted=weighted)
        return model, model.predict(train_x), model.predict(test_x)

    def kernel(split: str) -> torch.Tensor:  # pyramid match (weighted) or plain intersection
        if weighted:
            return combine_levels(kernels[split], level)
        return sum(kernels[split][:level + 1])

    if config.classifier == "knn":
        model = fit_knn(train_x, labels, neighbours=config.neighbours)
        return model, model.predict_from_kernel(kernel("train")), model.predict_from_kernel(
            kernel("test"))
    name = "pyramid-match" if weighted else "intersection"
    model, support = fit_kernel_svm(kernel("train"), train_x, labels, c=config.svm_c,
                                    kernel_name=name)
    return (model, model.predict_from_kernel(kernel("train")[:, support]),
            model.predict_from_kernel(kernel("test")[:, support]))


def build_model(config: BovwConfig, train: ImageSet, grid: DenseGrid,
                log: Callable[[str], None]) -> tuple[BovwModel, dict]:
    """Steps 1-2: the codebook of ``train``'s descriptors, in a model with no classifier yet;
    also what the word pictures need (grey images, the sample and where it came from)."""
    grey = to_grey(train.images, source=train.name or config.data, log=log)  # (N, H, W)
    sample, origin = codebook_sample(grey, grid, config)
    codebook = fit_codebook(sample, config.words, config.seed)
    log(f"codebook: {config.words} words from {len(sample)} descriptors")
    model = BovwModel(config.descriptor, config.step, config.patch, config.assignment,
                      config.levels, config.classifier != "intersection", codebook, None,
                      list(train.classes))
    return model, {"grey": grey, "sample": sample, "origin": origin}


def evaluate_levels(config: BovwConfig, hists: dict, kernels: dict, train: ImageSet,
                    test: ImageSet) -> tuple[list[LevelResult], Classifier, torch.Tensor]:
    """Step 5 once per pyramid height: the results, the level-L classifier and its test
    predictions."""
    levels = []
    for level in range(config.levels + 1):
        start = time.perf_counter()
        classifier, train_pred, predictions = fit_level(config, level, hists, train.labels,
                                                        kernels)
        levels.append(LevelResult(
            level, float((predictions == test.labels).float().mean()),
            float((train_pred == train.labels).float().mean()),
            per_class_accuracy(test.labels, predictions, len(train.classes)),
            time.perf_counter() - start))
    return levels, classifier, predictions


def input_preprocess(train: ImageSet) -> dict:
    """How ``cnnlab predict`` prepares a user's image for this run (as for a network: the
    training images' channels, size, border intensity and digit framing), with no
    normalisation: the descriptors see uint8 pixels."""
    channels, height, width = train.image_shape
    preprocess = make_preprocess(train, channels, (height, width), "resize")
    return {**preprocess.to_dict(), "mean": [0.0] * channels, "std": [1.0] * channels}


def run_bovw(config: BovwConfig, *, log: Callable[[str], None] = print) -> BovwResult:
    """Run the whole pipeline on ``config.data``; nothing is written (see ``save_bovw``)."""
    config.validate()
    marks = [("start", time.perf_counter())]
    train, test = load_splits(config)
    if config.classifier in KERNEL_CLASSIFIERS:
        check_kernel_train_size(len(train), config.classifier)
    height, width = train.image_shape[1:]
    config = config.resolved(height, width)
    check_patch_fits(config.patch, height, width, config.levels)
    grid = DenseGrid(height, width, config.step, config.patch)
    log(f"{len(train)} training / {len(test)} test images of {height}x{width}: "
        f"{len(grid)} {config.descriptor} descriptors of {config.patch}x{config.patch} per image")
    model, pictures = build_model(config, train, grid, log)
    marks.append(("codebook", time.perf_counter()))
    hists = {"train": model.histograms(train.images),
             "test": model.histograms(test.images)}  # the notice above covers both splits
    marks.append(("histograms", time.perf_counter()))
    kernels = {}
    if config.classifier != "linear":
        kernels = {"train": level_kernels(hists["train"], hists["train"]),
                   "test": level_kernels(hists["test"], hists["train"])}
    marks.append(("kernels", time.perf_counter()))
    levels, model.classifier, predictions = evaluate_levels(config, hists, kernels, train, test)
    marks.append(("classify", time.perf_counter()))
    seconds = {name: t - marks[i][1] for i, (name, t) in enumerate(marks[1:])}
    seconds["total"] = marks[-1][1] - marks[0][1]
    data = {"train": len(train), "test": len(test), "height": height, "width": width,
            "descriptors_per_image": len(grid), "preprocess": input_preprocess(train)}
    result = BovwResult(config, model, levels,
                        confusion_matrix(test.labels, predictions, len(train.classes)),
                        test.labels, predictions, data, seconds)
    from cnnlab.bovw.figures import run_figures  # matplotlib, only once there is a result

    result.figures = run_figures(result, test, **pictures)
    return result
