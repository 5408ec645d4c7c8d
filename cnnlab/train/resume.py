"""Continuing a run: the optimizer and RNG state saved in a checkpoint put back in place."""

from __future__ import annotations

import torch

from cnnlab.errors import CheckpointError
from cnnlab.runs.checkpoint import _unflatten_optimizer


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    """Load the optimizer state saved by :func:`save_checkpoint`, each state tensor checked
    against its parameter first (a momentum buffer has the parameter's shape and dtype)."""
    state = _unflatten_optimizer(tensors, meta["optimizer"])
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for param_id, values in state["state"].items():
        if not 0 <= param_id < len(params):
            raise CheckpointError(f"optimizer state names parameter {param_id}; this run's "
                                  f"optimizer has {len(params)}")
        param = params[param_id]
        for key, value in values.items():
            if torch.is_tensor(value) and value.dim() > 0 and (
                    value.shape != param.shape or value.dtype != param.dtype):
                raise CheckpointError(
                    f"optimizer state {key} of parameter {param_id} is {tuple(value.shape)} "
                    f"{value.dtype}, the parameter is {tuple(param.shape)} {param.dtype}")
    try:
        optimizer.load_state_dict(state)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        raise CheckpointError(f"optimizer state does not fit this run's optimizer "
                              f"({type(error).__name__}: {error})") from None


def restore_rng(tensors: dict) -> None:
    """Restore the global torch (and CUDA) RNG so dropout continues its exact stream."""
    if "rng.torch" in tensors:
        saved, current = tensors["rng.torch"], torch.get_rng_state()
        if saved.dtype != torch.uint8 or saved.shape != current.shape:
            raise CheckpointError(f"checkpoint RNG state is {saved.dtype} {tuple(saved.shape)}, "
                                  f"torch's is uint8 {tuple(current.shape)}")
        torch.set_rng_state(saved)
    if torch.cuda.is_available():
        states = [tensors[f"rng.cuda{i}"] for i in range(torch.cuda.device_count())
                  if f"rng.cuda{i}" in tensors]
        if states:
            torch.cuda.set_rng_state_all(states)
