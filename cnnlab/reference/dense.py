"""Rectification and fully connected layers in NumPy, forward and backward.

- ReLU: ``max(0, x)`` (lecture 003, "Change everything negative to zero"); its gradient passes
  where ``x > 0`` and is 0 elsewhere.
- Fully connected: ``y = W x + b`` (lecture 004, "one matrix multiplication followed by a bias
  offset"); ``x`` is ``(N, D)``, ``W`` is ``(M, D)`` (PyTorch's ``nn.Linear`` layout).

Example (lecture 004's 3-4-4-1 network has 3*4 + 4*4 + 4*1 = 32 weights + 9 biases = 41):
    >>> linear(np.ones((1, 3)), np.ones((4, 3)), np.zeros(4)).tolist()
    [[3.0, 3.0, 3.0, 3.0]]
"""

from __future__ import annotations

import numpy as np


def relu(x: np.ndarray) -> np.ndarray:
    """``max(0, x)`` element by element."""
    return np.maximum(x, 0)


def relu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Upstream gradient where the input was positive, 0 elsewhere (subgradient 0 at 0)."""
    return np.where(x > 0, dy, 0)


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``(N, D) @ (M, D)^T + (M,) -> (N, M)``."""
    y = x @ w.T
    return y if b is None else y + b


def linear_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dX, dW, db) = (dy W, dy^T x, sum_n dy)``."""
    return dy @ w, dy.T @ x, dy.sum(axis=0)
