"""Bag of visual words, piece by piece, against hand-computed numbers and independent oracles
(NumPy, scikit-learn, OpenCV, SciPy)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from cnnlab.bovw.classify import (
    check_kernel_train_size,
    fit_kernel_svm,
    fit_knn,
    fit_linear,
)
from cnnlab.bovw.codebook import assign, fit_codebook
from cnnlab.bovw.config import BovwConfig, PyramidWarning, check_patch_fits
from cnnlab.bovw.descriptors import DenseGrid, describe
from cnnlab.bovw.kernels import intersection_kernel, level_kernels, pyramid_match_kernel
from cnnlab.bovw.pyramid import level_histograms, level_weights, pyramid_vector
from cnnlab.errors import ConfigError, DataError


def test_level_weights_are_lazebnik_et_al_eq_3():
    assert level_weights(0) == [1.0]
    assert level_weights(2) == [1 / 4, 1 / 4, 1 / 2]
    assert level_weights(3) == [1 / 8, 1 / 8, 1 / 4, 1 / 2]


def two_images_on_a_2x2_grid() -> list[torch.Tensor]:
    """4x4 images, one descriptor per quadrant; A's words [0, 0, 1, 1], B's [0, 1, 0, 1]."""
    centres = torch.tensor([[1.0, 1.0], [1.0, 3.0], [3.0, 1.0], [3.0, 3.0]])  # (y, x)
    words = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])
    weights = torch.nn.functional.one_hot(words, 2).float()  # (2 images, 4 descriptors, K=2)
    return level_histograms(weights, centres, 4, 4, levels=1)


def test_pyramid_match_kernel_on_histograms_computed_by_hand():
    hists = two_images_on_a_2x2_grid()
    # level 0: both [2, 2] / 4 -> I_0 = 1; level 1: cells (w0 | w0 | w1 | w1) vs
    # (w0 | w1 | w0 | w1), each 1/4: cells 0 and 3 agree -> I_1 = 1/2
    assert hists[0].tolist() == [[[0.5, 0.5]], [[0.5, 0.5]]]
    assert hists[1][0].tolist() == [[0.25, 0], [0.25, 0], [0, 0.25], [0, 0.25]]
    kernel = pyramid_match_kernel(hists, hists)
    # L = 1: weights 1/2, 1/2 -> K(A, B) = 1/2 * 1 + 1/2 * 1/2 = 3/4; K(A, A) = 1
    assert kernel.tolist() == [[1.0, 0.75], [0.75, 1.0]]
    levels = level_kernels(hists, hists)
    assert torch.equal(kernel, 0.5 * levels[0] + 0.5 * levels[1])
    vector = pyramid_vector(hists)  # intersecting weighted vectors = the pyramid match kernel
    assert torch.allclose(intersection_kernel(vector, vector), kernel, atol=1e-12)


def test_chunked_torch_kernel_equals_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.random((37, 300)) * (rng.random((37, 300)) < 0.1)  # sparse, like fine levels
    y = rng.random((23, 300)) * (rng.random((23, 300)) < 0.1)
    reference = np.minimum(x[:, None, :], y[None, :, :]).sum(-1)  # (37, 23), the definition
    ours = intersection_kernel(torch.from_numpy(x), torch.from_numpy(y), rows=5)  # 8 chunks
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-12, atol=1e-12)


def test_codebook_and_histograms_are_deterministic_per_seed():
    from cnnlab.data.datasets import load_dataset

    images = load_dataset("digits", "train").images[:40]  # (40, 1, 8, 8)
    grid = DenseGrid(8, 8, step=1, patch=4)
    sample = describe(images[:, 0].numpy(), grid, "sift").reshape(-1, 128)  # (1000, 128)
    first, again = (fit_codebook(sample, 16, seed=3) for _ in range(2))
    other = fit_codebook(sample, 16, seed=4)
    assert torch.equal(first.centroids, again.centroids) and first.sigma == again.sigma
    assert not torch.equal(first.centroids, other.centroids)
    hists = [level_histograms(assign(book, torch.from_numpy(sample), "hard").reshape(40, 25, 16),
                              grid.centres(), 8, 8, 2) for book in (first, again)]
    assert all(torch.equal(a, b) for a, b in zip(*hists, strict=True))
    assert all(torch.allclose(h.sum((1, 2)), torch.ones(40)) for h in hists[0])  # sum to 1


def test_hard_and_soft_assignment_against_numpy():
    rng = np.random.default_rng(1)
    book = fit_codebook(rng.normal(size=(400, 6)).astype(np.float32), 5, seed=0)
    d = rng.normal(size=(50, 6)).astype(np.float32)
    c = book.centroids.numpy().astype(np.float64)
    d2 = ((d[:, None, :] - c[None]) ** 2).sum(-1)  # (50, 5)
    hard = assign(book, torch.from_numpy(d), "hard").numpy()
    np.testing.assert_array_equal(hard, np.eye(5)[d2.argmin(1)])
    soft = np.exp(-d2 / (2 * book.sigma**2))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(assign(book, torch.from_numpy(d), "soft").numpy(), soft,
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("classes", [2, 4])
def test_kernel_svm_predicts_as_scikit_learn(classes):
    from sklearn.svm import SVC

    rng = np.random.default_rng(classes)
    labels = rng.permutation(np.arange(80) % classes)  # classes interleaved, not sorted
    x = rng.random((80, 30)) + labels[:, None] * 0.05 * (np.arange(30) % classes == 0)
    test = rng.random((40, 30))
    x_t, test_t = torch.from_numpy(x), torch.from_numpy(test)
    kernel = intersection_kernel(x_t, x_t)
    svm, support = fit_kernel_svm(kernel, x_t, torch.from_numpy(labels), c=10.0,
                                  kernel_name="intersection")
    oracle = SVC(kernel="precomputed", C=10.0).fit(kernel.numpy(), labels)
    expected = oracle.predict(intersection_kernel(test_t, x_t).numpy())
    assert torch.equal(svm.predict(test_t), torch.from_numpy(expected))
    assert torch.equal(support, torch.from_numpy(oracle.support_).long())


def test_linear_and_knn_predict_as_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(5)
    x = rng.random((90, 12))
    x /= x.sum(1, keepdims=True)  # equal mass: intersection order = L1 order
    labels = rng.integers(0, 3, 90)
    test = rng.random((30, 12))
    test /= test.sum(1, keepdims=True)
    linear = fit_linear(torch.from_numpy(x), torch.from_numpy(labels), c=1.0, seed=0)
    scaler = StandardScaler().fit(x)
    oracle = LinearSVC(C=1.0, max_iter=5000, random_state=0).fit(scaler.transform(x), labels)
    assert linear.predict(torch.from_numpy(test)).tolist() == oracle.predict(
        scaler.transform(test)).tolist()
    knn = fit_knn(torch.from_numpy(x), torch.from_numpy(labels), neighbours=5)
    neighbours = KNeighborsClassifier(5, metric="manhattan").fit(x, labels)
    assert knn.predict(torch.from_numpy(test)).tolist() == neighbours.predict(test).tolist()


def test_bad_settings_are_one_line_errors_naming_the_flag():
    for config, flag in ((BovwConfig(words=1), "--words"), (BovwConfig(levels=-1), "--levels"),
                         (BovwConfig(descriptor="surf"), "--descriptor"),
                         (BovwConfig(patch=2), "--patch")):
        with pytest.raises(ConfigError, match=flag):
            config.validate()
    with pytest.raises(ConfigError, match="--train-per-class.*--classifier linear"):
        check_kernel_train_size(10_001, "pyramid")
    check_kernel_train_size(10_000, "pyramid")


def test_patch_larger_than_image_is_an_error_and_larger_than_a_cell_a_warning():
    with pytest.raises(DataError, match="--patch 40 is larger than the 28x28 images"):
        check_patch_fits(40, 28, 28, levels=2)
    with pytest.warns(PyramidWarning, match=r"L=2 \(28/2\^2 = 7 px\).*--levels 1"):
        check_patch_fits(8, 28, 28, levels=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_patch_fits(7, 28, 28, levels=2)  # fits a level-2 cell: silent


def test_resolved_patch_fills_a_finest_cell():
    assert (BovwConfig(levels=2).resolved(28, 28).patch, BovwConfig().resolved(32, 32).step) == (7, 2)
    assert BovwConfig(levels=0).resolved(256, 256).patch == 16


def test_dense_sift_is_opencv_sift_at_the_grid_points_and_shifts_with_the_image():
    import cv2

    rng = np.random.default_rng(0)
    image = (rng.random((48, 48)) * 255).astype(np.uint8)
    grid = DenseGrid(48, 48, step=4, patch=8)
    ours = describe(image[None], grid, "sift")[0]  # (121, 128): corners 0, 4, ..., 40
    top, left = grid.corners()[13]
    point = cv2.KeyPoint(left + 3.5, top + 3.5, 8 / 6, 0)
    _, theirs = cv2.SIFT_create().compute(image, [point])
    np.testing.assert_array_equal(ours[13], theirs[0])
    # the picture moved right by one grid step: interior descriptors move by one grid position
    shifted = np.roll(image, 4, axis=1)
    moved = describe(shifted[None], grid, "sift")[0].reshape(11, 11, 128)
    np.testing.assert_allclose(moved[4:7, 5:7], ours.reshape(11, 11, 128)[4:7, 4:6], atol=1.0)


def test_hog_of_a_vertical_edge_points_across_it():
    image = np.zeros((8, 8), np.uint8)
    image[:, 4:] = 255  # intensity changes along x: gradient orientation 0 degrees
    hog = describe(image[None], DenseGrid(8, 8, step=8, patch=8), "hog")[0, 0].reshape(4, 9)
    assert hog.sum(0).argmax() == 0


def test_daisy_grid_matches_scikit_image_centres():
    from skimage.feature import daisy

    rng = np.random.default_rng(2)
    image = (rng.random((21, 21)) * 255).astype(np.uint8)
    grid = DenseGrid(21, 21, step=3, patch=7)  # centres 3, 6, ..., 17
    ours = describe(image[None], grid, "daisy")[0]
    theirs = daisy(image, step=3, radius=3, rings=2, histograms=6, orientations=8)
    assert len(grid.tops) == theirs.shape[0] == 5
    np.testing.assert_allclose(ours, theirs.reshape(25, -1), atol=1e-6)
    assert math.isclose(float(grid.centres()[0, 0]), 3.5)
