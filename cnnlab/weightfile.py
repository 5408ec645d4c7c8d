"""Weight-file I/O shared by checkpoints and model weights: state dicts loaded exactly or not at
all, and pickles recognised (never executed) so a refusal can say what they would run."""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CheckpointError


def pickle_imports(data: bytes) -> list[str]:
    """``module.name`` globals a pickle (or a torch ``.pth`` zip of one) would import.

    Read statically with :mod:`pickletools` (nothing is executed), so a refusal can say what a
    file tried to run, e.g. ``['posix.system']``. Unparseable data gives what was read so far.
    """
    if data[:4] == b"PK\x03\x04":  # torch.save's zip layout: the pickle is */data.pkl
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                with archive.open(name) as member:
                    data = member.read(1 << 24)  # enough to name imports; bounds a zip bomb
        except Exception:  # not a readable zip: nothing to report
            return []
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # truncated or not a pickle: report what was found before
        pass
    return list(dict.fromkeys(found))


def not_safetensors(path: Path, data: bytes, reason: str) -> CheckpointError:
    """The error for a file that is not a safetensors checkpoint; a pickle is never unpickled."""
    imports = pickle_imports(data)
    if not imports and data[:1] != b"\x80" and data[:4] != b"PK\x03\x04":
        return CheckpointError(f"{path}: {reason}")
    what = f"it would import {', '.join(imports)}" if imports else "a pickle"
    return CheckpointError(f"{path}: refused to load a pickle checkpoint ({what}); cnnlab never "
                           "unpickles checkpoints (load torchvision .pth weights with "
                           "cnnlab.models.create(name, weights=...), which accepts only tensors)")


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``model.*`` entries of a checkpoint with the prefix removed."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], *, source: str,
                       assign: bool = False) -> None:
    """``load_state_dict`` with a one-line error naming the first missing/odd key, shape or
    dtype (``assign``: for a model on the meta device, which only checks)."""
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
        if value.dtype != expected[key].dtype:  # loads exactly or not at all: no silent cast
            raise CheckpointError(f"{source}: {key} is {str(value.dtype).removeprefix('torch.')}"
                                  f", the model holds {str(expected[key].dtype).removeprefix('torch.')}"
                                  f"; convert the file first (cnnlab never casts weights)")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: {key} has NaN/Inf values; refusing to load it")
    if assign:
        return  # a meta-device model: the check was the point
    model.load_state_dict(state)
