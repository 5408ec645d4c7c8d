"""Checkpoints: one safetensors file holding weights, optimizer state and RNG, written atomically.

Layout of ``NAME.safetensors``: tensors ``model.<key>``, ``optim.<param>.<key>``, ``rng.<name>``;
the header's metadata ``cnnlab`` is a JSON document with the config, epoch, position in the
epoch, metrics, class names, input shape and preprocessing. ``NAME.json`` beside it repeats that
metadata for people (the file of record is the safetensors one). Nothing is ever unpickled.

A write goes to a temporary file in the same directory, is flushed and fsync'ed, then renamed
over the target: a crash at any moment leaves either the old or the new checkpoint, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from cnnlab.errors import CheckpointError

META_KEY = "cnnlab"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file beside it and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer state dict into tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim.{param_id}.{key}"] = value
            else:
                scalars[f"{param_id}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict, saved: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = value
    for name, value in saved["scalars"].items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": saved["param_groups"]}


def save_checkpoint(
    path: Path, *, model: nn.Module, meta: dict,
    optimizer: torch.optim.Optimizer | None = None, rng: bool = True,
) -> None:
    """Save weights (+ optimizer and RNG state when given) and ``meta`` to ``path``."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = dict(meta)
    if optimizer is not None:
        optim_tensors, meta["optimizer"] = _flatten_optimizer(optimizer)
        tensors.update(optim_tensors)
    if rng:
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda{i}"] = state
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    for name, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"refusing to save {path.name}: {name} has NaN/Inf values")
    blob = save_safetensors_bytes(tensors, metadata={META_KEY: json.dumps(meta)})
    atomic_write_bytes(path, blob)
    sidecar = {k: v for k, v in meta.items() if k != "optimizer"}
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(sidecar, indent=2).encode())


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Return ``(tensors, meta)`` of a cnnlab checkpoint file (safetensors only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: cnnlab checkpoints are .safetensors files "
                              "(use cnnlab.models.create(name, weights=...) for .pth weights)")
    data = path.read_bytes()
    try:
        tensors = load_safetensors_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get(META_KEY, "{}"))
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({error})") from None
    return tensors, meta


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``model.*`` entries of a checkpoint with the prefix removed."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict`` with a one-line error naming the first missing/odd key or shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        key = missing[0] if missing else unexpected[0]
        kind = "missing" if missing else "unexpected"
        raise CheckpointError(f"{source}: {kind} key {key!r} ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected): checkpoint of another architecture?")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, the model "
                                  f"expects {tuple(expected[key].shape)}")
    model.load_state_dict(state)


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    """Load the optimizer state saved by :func:`save_checkpoint`."""
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))


def restore_rng(tensors: dict) -> None:
    """Restore the global torch (and CUDA) RNG so dropout continues its exact stream."""
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[f"rng.cuda{i}"] for i in range(torch.cuda.device_count())
                  if f"rng.cuda{i}" in tensors]
        if states:
            torch.cuda.set_rng_state_all(states)


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A run directory -> its ``best`` (or ``last``) checkpoint; a file -> itself."""
    path = Path(path)
    if path.is_dir():
        candidate = path / f"{which}.safetensors"
        if not candidate.is_file():
            candidate = path / "last.safetensors"
        if not candidate.is_file():
            raise CheckpointError(f"{path}: no checkpoint in this run directory "
                                  "(expected best.safetensors or last.safetensors)")
        return candidate
    if not path.exists():
        raise CheckpointError(f"no run directory or checkpoint at {path}")
    return path


def load_model(path: str | Path, *, which: str = "best", device: str | torch.device = "cpu",
               ) -> tuple[nn.Module, dict]:
    """Rebuild the model of a run directory or checkpoint file, weights loaded, in eval mode.

    Returns ``(model, meta)``; ``meta["classes"]`` and ``meta["preprocess"]`` describe the data.

    Example:
        >>> model, meta = load_model("runs/lenet5-digits")  # doctest: +SKIP
    """
    from cnnlab.models import create

    file = resolve_checkpoint(path, which)
    tensors, meta = read_checkpoint(file)
    spec = meta.get("model")
    if not spec:
        raise CheckpointError(f"{file}: no cnnlab model description in its metadata")
    model = create(spec["name"], num_classes=spec["num_classes"],
                   in_channels=spec["in_channels"], input_size=tuple(spec["input_size"]),
                   **spec.get("options", {}))
    load_state_checked(model, model_state(tensors), source=str(file))
    return model.to(device).eval(), meta
