"""Checkpoint files: one safetensors file holding weights, optimizer state and RNG, written
atomically; reading them checks every field before anything is built.

Layout of ``NAME.safetensors``: tensors ``model.<key>``, ``optim.<param>.<key>``, ``rng.<name>``;
the header's metadata ``cnnlab`` is a JSON document with the config, epoch, position in the
epoch, metrics, class names, input shape and preprocessing. ``NAME.json`` beside it repeats that
metadata for people (the file of record is the safetensors one). Nothing is ever unpickled.

A write goes to a temporary file in the same directory, is flushed and fsync'ed, then renamed
over the target: a crash at any moment leaves either the old or the new checkpoint, never a mix.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from cnnlab.errors import CheckpointError, ResourceError, is_out_of_memory
from cnnlab.files import atomic_write_bytes
from cnnlab.weightfile import not_safetensors

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
    try:
        blob, sidecar = _serialise(path, model, meta, optimizer, rng, extra)
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        raise ResourceError(f"out of memory while saving {path.name} (copying the weights and "
                            "optimizer state to host memory); free memory or use a smaller "
                            "model; the previous checkpoint is kept") from error
    atomic_write_bytes(path, blob)
    atomic_write_bytes(path.with_suffix(".json"), sidecar)  # derived: rewritten on resume


def write_sidecar(path: Path, meta: dict) -> None:
    """``NAME.json`` beside ``NAME.safetensors``: its metadata for people, derived from the
    checkpoint (which is the file of record)."""
    sidecar = {k: v for k, v in meta.items() if k != "optimizer"}
    atomic_write_bytes(Path(path).with_suffix(".json"), json.dumps(sidecar, indent=2).encode())


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
    except RecursionError:  # metadata JSON nested thousands deep
        raise CheckpointError(f"{path}: its metadata is nested too deeply to be a cnnlab "
                              "checkpoint") from None
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError, TypeError) as error:
        reason = f"not a readable safetensors checkpoint ({error})"
        raise not_safetensors(path, data, reason) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its '{META_KEY}' metadata is not a JSON object")
    return tensors, meta


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


def _is_finite(value: object) -> bool:
    return _is_number(value) and math.isfinite(value)


# Sizes a checkpoint may declare (issue 18): checked before anything is built, so a crafted
# header cannot make cnnlab allocate terabytes (num_classes = 10**12 asked for 336 TB).
MAX_CLASSES = 100_000
MAX_CHANNELS = 4_096
MAX_SIDE = 8_192
MIN_STD = 1e-6  # a standard deviation below this divides pixels into infinities


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
    for key, most in (("num_classes", MAX_CLASSES), ("in_channels", MAX_CHANNELS)):
        if not (_is_int(spec.get(key), 1) and spec[key] <= most):
            raise _bad(path, f"model.{key}", f"an integer from 1 to {most:,}", spec.get(key))
    size = spec.get("input_size")
    dims = spec.get("dims", 2)  # k-D runs (issue 23) say how many spatial axes; images 2
    if not (dims in (1, 2, 3) and isinstance(size, list) and len(size) == dims + 1
            and all(_is_int(v, 1) for v in size)
            and size[0] == spec["in_channels"] and max(size[1:]) <= MAX_SIDE):
        raise _bad(path, "model.input_size", f"[in_channels, height, width] (1-D: "
                   f"[in_channels, length]; 3-D: [in_channels, depth, height, width], with "
                   f"model.dims) with sides up to {MAX_SIDE:,}", size)
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
              "size": (lambda v: isinstance(v, list) and 1 <= len(v) <= 3
                       and all(_is_int(x, 1) for x in v),
                       "[height, width] (k-D: [length] or [depth, height, width])"),
              "fit": (lambda v: isinstance(v, str), "a string"),
              "mean": (lambda v: isinstance(v, list) and v and all(map(_is_finite, v)),
                       "finite numbers"),
              "std": (lambda v: isinstance(v, list) and v and all(
                  _is_finite(x) and x >= MIN_STD for x in v), f"numbers >= {MIN_STD:g}"),
              "background": (_is_finite, "a finite number")}
    for key, (ok, wanted) in checks.items():
        if not ok(values.get(key)):
            raise _bad(path, f"preprocess.{key}", wanted, values.get(key))
    if len(values["mean"]) != values["channels"] or len(values["std"]) != values["channels"]:
        raise _bad(path, "preprocess.mean", f"{values['channels']} values (one per channel)",
                   values["mean"])
    if max(values["size"]) > MAX_SIDE:
        raise _bad(path, "preprocess.size", f"sides up to {MAX_SIDE:,}", values["size"])
    if values.get("ink_fraction") is not None and not _is_finite(values["ink_fraction"]):
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
        if key in state and not (_is_finite(value) or (key == "best_metric" and value is None)):
            raise _bad(path, f"state.{key}", "a finite number", value)
    if "observers" in state and not isinstance(state["observers"], dict):
        raise _bad(path, "state.observers", "an object", state["observers"])
    unknown = sorted(set(state) - {*STATE_INTS, "loss_sum", "correct", "best_metric",
                                   "observers"})
    if unknown:
        raise _bad(path, f"state.{unknown[0]}", "absent (unknown field)", state[unknown[0]])
    optimizer = meta.get("optimizer")
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("param_groups"), list)
            and all(isinstance(g, dict) for g in optimizer["param_groups"])
            and isinstance(optimizer.get("scalars"), dict)):
        raise _bad(path, "optimizer", "an object with param_groups and scalars", optimizer)
    _check_param_groups(path, optimizer["param_groups"])
    return state["step"]


NUMERIC_GROUP_KEYS = ("lr", "momentum", "weight_decay", "dampening", "eps", "lr_scale")


def _check_param_groups(path: Path, groups: list[dict]) -> None:
    """Hyper-parameters an optimizer will compute with must be finite numbers (``betas`` a
    pair of them); ``params`` a list of integer ids."""
    for i, group in enumerate(groups):
        for key in NUMERIC_GROUP_KEYS:
            if key in group and not _is_finite(group[key]):
                raise _bad(path, f"optimizer.param_groups[{i}].{key}", "a finite number",
                           group[key])
        betas = group.get("betas")
        if betas is not None and not (isinstance(betas, list) and len(betas) == 2
                                      and all(map(_is_finite, betas))):
            raise _bad(path, f"optimizer.param_groups[{i}].betas", "two numbers", betas)
        params = group.get("params")
        if not (isinstance(params, list) and all(_is_int(p) for p in params)):
            raise _bad(path, f"optimizer.param_groups[{i}].params", "a list of ids", params)


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
