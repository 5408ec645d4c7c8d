"""Checkpoints: one safetensors file holding weights, optimizer state and RNG, written atomically.

Layout of ``NAME.safetensors``: tensors ``model.<key>``, ``optim.<param>.<key>``, ``rng.<name>``;
the header's metadata ``cnnlab`` is a JSON document with the config, epoch, position in the
epoch, metrics, class names, input shape and preprocessing. ``NAME.json`` beside it repeats that
metadata for people (the file of record is the safetensors one). Nothing is ever unpickled.

A write goes to a temporary file in the same directory, is flushed and fsync'ed, then renamed
over the target: a crash at any moment leaves either the old or the new checkpoint, never a mix.
"""

from __future__ import annotations

import io
import json
import pickletools
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from cnnlab.errors import CheckpointError, ResourceError
from cnnlab.files import atomic_write_bytes

META_KEY = "cnnlab"


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
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save weights (+ optimizer and RNG state when given) and ``meta`` to ``path``.

    ``extra`` tensors (e.g. ``lookahead.*`` slow weights) are stored under their own names.
    """
    from cnnlab.train.loop import is_out_of_memory

    try:
        blob, sidecar = _serialise(path, model, meta, optimizer, rng, extra)
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        raise ResourceError(f"out of memory while saving {path.name} (copying the weights and "
                            "optimizer state to host memory); free memory or use a smaller "
                            "model; the previous checkpoint is kept") from error
    atomic_write_bytes(path, blob)
    atomic_write_bytes(path.with_suffix(".json"), sidecar)


def _serialise(path: Path, model: nn.Module, meta: dict, optimizer, rng: bool,
               extra: dict | None) -> tuple[bytes, bytes]:
    """The safetensors bytes and the JSON sidecar of one checkpoint."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(extra or {})
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
    sidecar = {k: v for k, v in meta.items() if k != "optimizer"}
    return blob, json.dumps(sidecar, indent=2).encode()


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


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Return ``(tensors, meta)`` of a cnnlab checkpoint file (safetensors only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    if path.suffix != ".safetensors":
        raise not_safetensors(path, data, "cnnlab checkpoints are .safetensors files (use "
                              "cnnlab.models.create(name, weights=...) for .pth weights)")
    try:
        tensors = load_safetensors_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get(META_KEY, "{}"))
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError, TypeError) as error:
        reason = f"not a readable safetensors checkpoint ({error})"
        raise not_safetensors(path, data, reason) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its '{META_KEY}' metadata is not a JSON object")
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
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: {key} has NaN/Inf values; refusing to load it")
    model.load_state_dict(state)


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


def _is_int(value: object, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad(path: Path, field: str, wanted: str, value: object) -> CheckpointError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return CheckpointError(f"{path}: metadata field {field!r} must be {wanted}, got {shown}")


def check_model_meta(path: Path, meta: dict) -> dict:
    """Check the fields :func:`load_model` and prediction read; return ``meta["model"]``.

    A file with a crafted or damaged header is refused with a CheckpointError naming the file
    and the field, never a KeyError or TypeError.
    """
    spec = meta.get("model")
    if not spec:
        raise CheckpointError(f"{path}: no cnnlab model description in its metadata")
    if not isinstance(spec, dict):
        raise _bad(path, "model", "an object with name, num_classes, in_channels, input_size",
                   spec)
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise _bad(path, "model.name", "a model name", spec.get("name"))
    for key in ("num_classes", "in_channels"):
        if not _is_int(spec.get(key), 1):
            raise _bad(path, f"model.{key}", "a positive integer", spec.get(key))
    size = spec.get("input_size")
    if not (isinstance(size, list) and len(size) == 3 and all(_is_int(v, 1) for v in size)):
        raise _bad(path, "model.input_size", "[channels, height, width]", size)
    if not isinstance(spec.get("options", {}), dict):
        raise _bad(path, "model.options", "an object", spec.get("options"))
    definition = spec.get("definition")
    if definition is not None and not (isinstance(definition, dict)
                                       and isinstance(definition.get("text"), str)
                                       and isinstance(definition.get("format"), str)):
        raise _bad(path, "model.definition", "an object with the model file's format and text",
                   definition)
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list)
                                    and all(isinstance(c, str) for c in classes)):
        raise _bad(path, "classes", "a list of class names", classes)
    _check_preprocess(path, meta.get("preprocess"))
    return spec


def _check_preprocess(path: Path, values: object) -> None:
    """``meta["preprocess"]`` (optional) must rebuild a :class:`~cnnlab.data.pipeline.Preprocess`."""
    if values is None:
        return
    if not isinstance(values, dict):
        raise _bad(path, "preprocess", "an object", values)
    checks = {"channels": (lambda v: _is_int(v, 1), "a positive integer"),
              "size": (lambda v: isinstance(v, list) and len(v) == 2
                       and all(_is_int(x, 1) for x in v), "[height, width]"),
              "fit": (lambda v: isinstance(v, str), "a string"),
              "mean": (lambda v: isinstance(v, list) and all(map(_is_number, v)), "numbers"),
              "std": (lambda v: isinstance(v, list) and all(map(_is_number, v)), "numbers"),
              "background": (_is_number, "a number")}
    for key, (ok, wanted) in checks.items():
        if not ok(values.get(key)):
            raise _bad(path, f"preprocess.{key}", wanted, values.get(key))
    if values.get("ink_fraction") is not None and not _is_number(values["ink_fraction"]):
        raise _bad(path, "preprocess.ink_fraction", "a number or null", values["ink_fraction"])
    unknown = sorted(set(values) - {*checks, "ink_fraction"})
    if unknown:
        raise _bad(path, f"preprocess.{unknown[0]}", "absent (unknown field)", values[unknown[0]])


STATE_INTS = ("epoch", "batch", "step", "seen", "best_epoch")


def check_training_meta(path: Path, meta: dict) -> int:
    """Check what resuming reads (``state``, ``optimizer``); return the global step."""
    state = meta.get("state")
    if not isinstance(state, dict):
        raise _bad(path, "state", "an object", state)
    if not _is_int(state.get("step")):
        raise _bad(path, "state.step", "an integer", state.get("step"))
    for key in STATE_INTS:  # the others may be absent (TrainState's defaults), not mistyped
        if key in state and not _is_int(state[key], -1 if key == "best_epoch" else 0):
            raise _bad(path, f"state.{key}", "an integer", state[key])
    for key in ("loss_sum", "correct", "best_metric"):
        value = state.get(key)
        if key in state and not (_is_number(value) or (key == "best_metric" and value is None)):
            raise _bad(path, f"state.{key}", "a number", value)
    unknown = sorted(set(state) - {*STATE_INTS, "loss_sum", "correct", "best_metric"})
    if unknown:
        raise _bad(path, f"state.{unknown[0]}", "absent (unknown field)", state[unknown[0]])
    optimizer = meta.get("optimizer")
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("param_groups"), list)
            and all(isinstance(g, dict) for g in optimizer["param_groups"])
            and isinstance(optimizer.get("scalars"), dict)):
        raise _bad(path, "optimizer", "an object with param_groups and scalars", optimizer)
    return state["step"]


def newest_checkpoint(run_dir: str | Path) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """``(path, tensors, meta)`` of the complete training checkpoint furthest into the run.

    Candidates are ``last``, ``best`` and ``snapshots/*`` (each holds weights, optimizer, RNG and
    position); the highest global step wins, ``last`` on ties. A file that does not load is
    skipped with a warning, so ``--resume`` continues from the newest one that does.
    """
    run_dir = Path(run_dir)
    candidates = [run_dir / "last.safetensors", run_dir / "best.safetensors",
                  *sorted((run_dir / "snapshots").glob("*.safetensors"))]
    newest, newest_step = None, -1
    for path in candidates:
        if not path.is_file():
            continue
        try:
            tensors, meta = read_checkpoint(path)
        except CheckpointError as error:
            warnings.warn(f"skipping unreadable checkpoint: {error}", stacklevel=2)
            continue
        if "optimizer" not in meta:
            continue  # weights only (e.g. exported): nothing to resume the optimizer from
        try:
            step = check_training_meta(path, meta)
        except CheckpointError as error:
            warnings.warn(f"skipping checkpoint with bad metadata: {error}", stacklevel=2)
            continue
        if step > newest_step:
            newest, newest_step = (path, tensors, meta), step
    if newest is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint to resume from (expected "
                              "last.safetensors, best.safetensors or snapshots/)")
    return newest


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
    spec = check_model_meta(file, meta)
    try:
        model = create(spec["name"], num_classes=spec["num_classes"],
                       in_channels=spec["in_channels"], input_size=tuple(spec["input_size"]),
                       definition=(spec.get("definition") or {}).get("text"),
                       **spec.get("options", {}))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{file}: metadata 'model' does not build a model "
                              f"({error})") from None
    classes = meta.get("classes")
    if classes is not None and len(classes) != spec["num_classes"]:
        raise CheckpointError(f"{file}: {len(classes)} class names for a model with "
                              f"{spec['num_classes']} outputs; the checkpoint is inconsistent")
    load_state_checked(model, model_state(tensors), source=str(file))
    return model.to(device).eval(), meta
