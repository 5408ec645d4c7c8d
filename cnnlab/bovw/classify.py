"""Step 5 of the bag-of-features pipeline (lecture 004, "a classifier: kNN, SVM, etc."):
classifiers of pyramid vectors that keep only tensors, so a run saves them as safetensors.

- :class:`KernelSVM`: scikit-learn's ``SVC(kernel="precomputed")`` on the histogram
  intersection / pyramid match kernel, kept as libsvm keeps it (support vectors, dual
  coefficients, intercepts) and predicted one-vs-one as libsvm does (ties: the lower class).
- :class:`LinearModel`: ``LinearSVC`` on standardised pyramid vectors (one-vs-rest).
- :class:`KnnModel`: the k nearest training images by histogram intersection, majority vote.

Their scores: :func:`per_class_accuracy` and :func:`confusion_matrix`.

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
from cnnlab.errors import CheckpointError, ConfigError

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

    def pair_decisions(self, kernel: torch.Tensor) -> torch.Tensor:
        """``(N, S)`` kernel values against the support vectors -> ``(N, C(C-1)/2)`` libsvm
        decision values of the one-vs-one pairs ``(i, j)``, ``i < j``; positive means ``i``."""
        kernel = kernel.double()
        starts = torch.cat([torch.zeros(1, dtype=torch.long), self.n_support.cumsum(0)])
        columns, pair = [], 0
        for i in range(len(self.classes)):
            for j in range(i + 1, len(self.classes)):
                si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
                columns.append(kernel[:, si] @ self.dual_coef[j - 1, si].double()
                               + kernel[:, sj] @ self.dual_coef[i, sj].double()
                               + float(self.intercept[pair]))  # (N,)
                pair += 1
        return torch.stack(columns, 1) if columns else torch.zeros(len(kernel), 0)

    def votes_and_confidence(self, kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-vs-one votes ``(N, C)`` and the summed decision values for each class."""
        decisions = self.pair_decisions(kernel)
        votes = torch.zeros(len(kernel), len(self.classes), dtype=torch.long)
        confidence = torch.zeros(len(kernel), len(self.classes), dtype=torch.float64)
        pair = 0
        for i in range(len(self.classes)):
            for j in range(i + 1, len(self.classes)):
                votes[:, i] += decisions[:, pair] > 0
                votes[:, j] += decisions[:, pair] <= 0
                confidence[:, i] += decisions[:, pair]
                confidence[:, j] -= decisions[:, pair]
                pair += 1
        return votes, confidence

    def predict_from_kernel(self, kernel: torch.Tensor) -> torch.Tensor:
        """``(N, S)`` kernel values against the support vectors -> ``(N,)`` labels."""
        return self.classes[_first_argmax(self.votes_and_confidence(kernel)[0])]

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` one-vs-one votes plus the summed decision values squashed into
        (-1/3, 1/3): scikit-learn's ``decision_function_shape="ovr"`` scores."""
        votes, confidence = self.votes_and_confidence(
            intersection_kernel(features, self.support))
        return votes + confidence / (3 * (confidence.abs() + 1))

    def check(self, dims: int, classes: int, source: str) -> None:
        """CheckpointError unless the tensors fit together and ``dims``-d inputs."""
        count = len(self.classes)
        _shape(source, "n_support", self.n_support, (count,))
        if self.n_support.dtype.is_floating_point or bool((self.n_support < 0).any()):
            raise CheckpointError(f"{source}: 'n_support' must hold counts >= 0")
        _shape(source, "support", self.support, (int(self.n_support.sum()), dims))
        _shape(source, "dual_coef", self.dual_coef, (count - 1, len(self.support)))
        _shape(source, "intercept", self.intercept, (count * (count - 1) // 2,))
        _labels(source, "classes", self.classes, classes)


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

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` decision values (two classes: ``-s, s``)."""
        x = (features.double() - self.mean.double()) / self.scale.double()
        scores = x @ self.coef.double().T + self.intercept.double()
        return torch.cat([-scores, scores], 1) if scores.shape[1] == 1 else scores

    def check(self, dims: int, classes: int, source: str) -> None:
        rows = 1 if len(self.classes) == 2 else len(self.classes)
        for name, want in (("mean", (dims,)), ("scale", (dims,)), ("coef", (rows, dims)),
                           ("intercept", (rows,))):
            _shape(source, name, getattr(self, name), want)
        _labels(source, "classes", self.classes, classes)


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

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, C)``: the fraction of the k nearest training images of each class."""
        kernel = intersection_kernel(features, self.train)
        k = min(int(self.neighbours), kernel.shape[1])
        nearest = kernel.argsort(dim=1, descending=True, stable=True)[:, :k]
        votes = torch.zeros(len(kernel), int(self.labels.max()) + 1, dtype=torch.float64)
        votes.scatter_add_(1, self.labels[nearest], torch.ones_like(nearest, dtype=torch.float64))
        return votes / k

    def check(self, dims: int, classes: int, source: str) -> None:
        _shape(source, "train", self.train, (len(self.labels), dims))
        _shape(source, "labels", self.labels, (len(self.train),))
        _labels(source, "labels", self.labels, classes)
        if self.neighbours.dim() != 0 or int(self.neighbours) < 1:
            raise CheckpointError(f"{source}: 'neighbours' must be one number >= 1")


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


SCORE_NAMES = {KernelSVM: "one-vs-one votes + squashed decision values",
               LinearModel: "decision values", KnnModel: "share of the nearest neighbours"}


def _shape(source: str, name: str, tensor: torch.Tensor, want: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != tuple(want):
        raise CheckpointError(f"{source}: '{name}' has shape {tuple(tensor.shape)}, expected "
                              f"{tuple(want)} (a tampered or foreign file?)")


def _labels(source: str, name: str, labels: torch.Tensor, classes: int) -> None:
    """Integer labels, each an index into the run's ``classes`` class names."""
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or (
            len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes)):
        raise CheckpointError(f"{source}: '{name}' must hold class indices 0..{classes - 1}")


def _first_argmax(values: torch.Tensor) -> torch.Tensor:
    """Row-wise index of the first maximum (libsvm's and scikit-learn's tie rule)."""
    best = values.max(dim=1, keepdim=True).values
    return (values == best).long().argmax(dim=1)


def per_class_accuracy(labels: torch.Tensor, predictions: torch.Tensor,
                       classes: int) -> list[float | None]:
    """Recall of every class (None where the test split has none of it)."""
    return [float((predictions[labels == c] == c).float().mean()) if (labels == c).any()
            else None for c in range(classes)]


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, classes: int) -> list[list[int]]:
    """Counts ``[true][predicted]`` over the test images."""
    counts = torch.bincount(labels * classes + predictions, minlength=classes * classes)
    return counts.reshape(classes, classes).tolist()
