"""Continuing a run: the optimizer and RNG state saved in a checkpoint put back in place."""

from __future__ import annotations

import torch

from cnnlab.errors import CheckpointError
from cnnlab.runs.checkpoint import _unflatten_optimizer


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    """Load the optimizer state saved by :func:`save_checkpoint`."""
    try:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        raise CheckpointError(f"optimizer state does not fit this run's optimizer "
                              f"({type(error).__name__}: {error})") from None


def restore_rng(tensors: dict) -> None:
    """Restore the global torch (and CUDA) RNG so dropout continues its exact stream."""
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[f"rng.cuda{i}"] for i in range(torch.cuda.device_count())
                  if f"rng.cuda{i}" in tensors]
        if states:
            torch.cuda.set_rng_state_all(states)
