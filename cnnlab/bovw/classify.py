"""Step 5 of the bag-of-features pipeline (lecture 004, "a classifier: kNN, SVM, etc."):
classifiers of pyramid vectors that keep only tensors, so a run saves them as safetensors.

- :class:`KernelSVM`: scikit-learn's ``SVC(kernel="precomputed")`` on the histogram
  intersection / pyramid match kernel, kept as libsvm keeps it (support vectors, dual
  coefficients, intercepts) and predicted one-vs-one as libsvm does (ties: the lower class).
- :class:`LinearModel`: ``LinearSVC`` on standardised pyramid vectors (one-vs-rest).
- :class:`KnnModel`: the k nearest training images by histogram intersection, majority vote.

Example:
    >>> x = torch.eye(3).repeat(4, 1)  # 12 one-word "histograms"
    >>> knn = fit_knn(x, torch.arange(3).repeat(4), neighbours=3)
    >>> knn.predict(torch.eye(3)).tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.bovw.kernels import intersection_kernel
from cnnlab.errors import ConfigError

MAX_KERNEL_TRAIN = 10_000  # a precomputed N x N kernel: 10,000^2 float64 = 800 MB


def check_kernel_train_size(count: int, classifier: str) -> None:
    """The precomputed-kernel SVM stores an N x N matrix; refuse more than 10,000 images."""
    if count > MAX_KERNEL_TRAIN:
        raise ConfigError(f"--classifier {classifier} (an SVM on a precomputed {count} x {count} "
                          f"kernel) takes at most {MAX_KERNEL_TRAIN:,} training images, got "
                          f"{count:,}; pass --train-per-class N or use --classifier linear")


@dataclass
class KernelSVM:
    """A one-vs-one SVM on the intersection kernel of its inputs with ``support`` ``(S, D)``;
    ``dual_coef`` ``(C-1, S)``, ``intercept`` ``(C(C-1)/2,)``, ``n_support`` ``(C,)``,
    ``classes`` ``(C,)`` (labels), support vectors grouped by class in that order."""

    support: torch.Tensor
    dual_coef: torch.Tensor
    intercept: torch.Tensor
    n_support: torch.Tensor
    classes: torch.Tensor
    kernel: str = "pyramid-match"  # what the intersection of the inputs computes

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` pyramid vectors -> ``(N,)`` labels."""
        return self.predict_from_kernel(intersection_kernel(features, self.support))

    def predict_from_kernel(self, kernel: torch.Tensor) -> torch.Tensor:
        """``(N, S)`` kernel values against the support vectors -> ``(N,)`` labels."""
        kernel = kernel.double()
        starts = torch.cat([torch.zeros(1, dtype=torch.long), self.n_support.cumsum(0)])
        votes = torch.zeros(len(kernel), len(self.classes), dtype=torch.long)
        pair = 0
        for i in range(len(self.classes)):
            for j in range(i + 1, len(self.classes)):
                si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
                decision = (kernel[:, si] @ self.dual_coef[j - 1, si].double()
                            + kernel[:, sj] @ self.dual_coef[i, sj].double()
                            + float(self.intercept[pair]))  # (N,)
                votes[:, i] += decision > 0
                votes[:, j] += decision <= 0
                pair += 1
        return self.classes[_first_argmax(votes)]


@dataclass
class LinearModel:
    """``scores = ((x - mean) / scale) @ coef.T + intercept``; ``coef`` ``(C, D)`` (or
    ``(1, D)`` for two classes: positive means ``classes[1]``)."""

    mean: torch.Tensor
    scale: torch.Tensor
    coef: torch.Tensor
    intercept: torch.Tensor
    classes: torch.Tensor

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.double() - self.mean.double()) / self.scale.double()
        scores = x @ self.coef.double().T + self.intercept.double()  # (N, C) or (N, 1)
        if scores.shape[1] == 1:
            return self.classes[(scores[:, 0] > 0).long()]
        return self.classes[_first_argmax(scores)]


@dataclass
class KnnModel:
    """The ``neighbours`` most similar training images (largest histogram intersection) vote."""

    train: torch.Tensor
    labels: torch.Tensor
    neighbours: torch.Tensor  # a 0-d int64 tensor (k), so that every field is a tensor

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.predict_from_kernel(intersection_kernel(features, self.train))

    def predict_from_kernel(self, kernel: torch.Tensor) -> torch.Tensor:
        """``(N, M)`` similarity to the training images -> ``(N,)`` labels (ties: lower)."""
        k = min(int(self.neighbours), kernel.shape[1])
        # stable sort: equally similar images are taken in training order
        nearest = kernel.argsort(dim=1, descending=True, stable=True)[:, :k]  # (N, k)
        classes = int(self.labels.max()) + 1
        votes = torch.zeros(len(kernel), classes, dtype=torch.long)
        votes.scatter_add_(1, self.labels[nearest], torch.ones_like(nearest))
        return _first_argmax(votes)


CLASSIFIER_TYPES = {"kernel-svm": KernelSVM, "linear-svm": LinearModel, "knn": KnnModel}
Classifier = KernelSVM | LinearModel | KnnModel


def fit_kernel_svm(kernel: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, *,
                   c: float, kernel_name: str) -> tuple[KernelSVM, torch.Tensor]:
    """``SVC(kernel="precomputed")`` on the ``(N, N)`` training kernel of ``features``; also
    the indices of the support vectors among the training images (columns of a test kernel)."""
    from sklearn.svm import SVC

    check_kernel_train_size(len(labels), kernel_name)
    svm = SVC(kernel="precomputed", C=c).fit(kernel.numpy(), labels.numpy())
    support = torch.from_numpy(svm.support_).long()
    model = KernelSVM(features[support].clone(), torch.from_numpy(svm._dual_coef_.copy()),
                      torch.from_numpy(svm._intercept_.copy()),  # libsvm's signs (-rho)
                      torch.from_numpy(svm.n_support_.astype(np.int64)),
                      torch.from_numpy(svm.classes_.astype(np.int64)), kernel_name)
    return model, support


def fit_linear(features: torch.Tensor, labels: torch.Tensor, *, c: float,
               seed: int) -> LinearModel:
    """``LinearSVC`` on standardised features (zero mean, unit variance per dimension)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    x = features.double()
    mean, scale = x.mean(0), x.std(0, unbiased=False)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # constant dimensions
    svm = LinearSVC(C=c, max_iter=5000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(((x - mean) / scale).numpy(), labels.numpy())
    return LinearModel(mean.float(), scale.float(), torch.from_numpy(svm.coef_),
                       torch.from_numpy(svm.intercept_),
                       torch.from_numpy(svm.classes_.astype(np.int64)))


def fit_knn(features: torch.Tensor, labels: torch.Tensor, *, neighbours: int) -> KnnModel:
    """Keep the training vectors (kNN learns nothing else)."""
    return KnnModel(features.clone(), labels.long().clone(), torch.tensor(neighbours))


def _first_argmax(values: torch.Tensor) -> torch.Tensor:
    """Row-wise index of the first maximum (libsvm's and scikit-learn's tie rule)."""
    best = values.max(dim=1, keepdim=True).values
    return (values == best).long().argmax(dim=1)
