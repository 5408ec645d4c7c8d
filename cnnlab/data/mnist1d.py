"""MNIST-1D (Greydanus 2020): ten 1-D digit templates, padded, scaled, shifted, sheared, noised.

Generated offline by the PyPI package ``mnist1d`` (Apache-2.0) with its ``make_dataset(...)``
and default arguments: 5,000 sequences of length 40, 500 per class, split 4,000/1,000, the whole
set standardised to mean 0 and standard deviation 1. (Its ``get_dataset()`` downloads a pickle:
cnnlab never calls it.) Published test accuracies: logistic regression 32%, MLP 68%, CNN 94%,
and about 56% for the CNN when the positions are shuffled.

The data are float32 ``(N, 1, 40)``: real-valued signals, not 8-bit samples. Generating both
splits takes about a second, so nothing is cached.

    >>> from cnnlab.data.mnist1d import load_mnist1d
    >>> test = load_mnist1d("test")                         # doctest: +SKIP
    >>> tuple(test.data.shape), len(test.classes)           # doctest: +SKIP
    ((1000, 1, 40), 10)
"""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from cnnlab.data.sequences import SequenceSet
from cnnlab.errors import DataError

CLASSES = [str(d) for d in range(10)]
LENGTH = 40
DEFAULT_SEED = 42  # make_dataset's own default


def mnist1d_args(seed: int = DEFAULT_SEED):  # noqa: ANN201 - mnist1d's ObjectView
    """``mnist1d``'s default arguments (5,000 samples, train split 0.8, length 40), ``seed``."""
    try:
        from mnist1d.data import get_dataset_args  # optional dependency: the `sequences` extra
    except ImportError as error:
        raise DataError("mnist1d needs the Python package mnist1d: pip install "
                        "'cnnlab[sequences]' (or pip install mnist1d)") from error
    args = get_dataset_args()
    args.seed = seed
    return args


@functools.lru_cache(maxsize=4)
def generate(seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Both splits as NumPy arrays (``x``, ``y``, ``x_test``, ``y_test``), the global NumPy and
    ``random`` states left as they were (``make_dataset`` seeds them globally)."""
    args = mnist1d_args(seed)
    from mnist1d.data import make_dataset  # optional dependency, checked above

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {key: data[key] for key in ("x", "y", "x_test", "y_test")}


def load_mnist1d(split: str = "train", *, seed: int = DEFAULT_SEED) -> SequenceSet:
    """The ``split`` of MNIST-1D as float32 ``(N, 1, 40)``; 4,000 train, 1,000 test."""
    data = generate(seed)
    x, y = (data["x"], data["y"]) if split == "train" else (data["x_test"], data["y_test"])
    signals = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]  # (N, 1, 40)
    return SequenceSet(signals, torch.from_numpy(y.astype(np.int64)), list(CLASSES), "mnist1d",
                       {"generator": "mnist1d.make_dataset", "seed": seed, "split": split,
                        "axes": ["position"]})
