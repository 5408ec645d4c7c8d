"""Load pretrained weights into a zoo model: ``create(name, weights=PATH)``.

Accepted files:

- ``.safetensors``: a plain state dict, or a cnnlab checkpoint (keys ``model.<name>``, as
  written by ``cnnlab train``; its optimizer and RNG entries are ignored);
- ``.pth`` / ``.pt``: a torchvision-layout state dict (e.g. torchvision's ``alexnet``,
  ``vgg16`` or ``resnet18`` ImageNet files), read with ``torch.load(weights_only=True)``. A
  pickle that would import anything but tensors is refused with a CheckpointError naming the
  file and what it tried to import; there is no fallback to unsafe loading.

Every shape is checked (an error names the key). When the file's classifier has another number
of classes than asked for (``create("alexnet", num_classes=10, weights="alexnet.pth")``), the
backbone is loaded and the model keeps its freshly initialised head: the transfer-learning set-up
of lecture 001 ("fine-tuning"). The skipped head keys are logged. Without ``num_classes``
(``create("resnet18", weights="resnet18.pth")``) the file's head is loaded as it is.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CheckpointError
from cnnlab.weightfile import load_state_checked, model_state, pickle_imports

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".pth", ".pt")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weight file as a state dict (prefixes ``model.``/``module.`` removed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    if path.suffix not in SUFFIXES:
        raise CheckpointError(f"{path}: unknown weight file type {path.suffix!r}; expected "
                              f"{', '.join(SUFFIXES)}")
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_pickle(path)
    if any(key.startswith("model.") for key in state):
        state = model_state(state)  # a cnnlab checkpoint: weights under model.*
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}  # DataParallel
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        imports = pickle_imports(path.read_bytes())
        what = f"it would import {', '.join(imports)}" if imports else "not only tensors"
        raise CheckpointError(f"{path}: refused to load ({what}); only files of plain tensors "
                              "are read (weights_only=True), never arbitrary pickles") from None
    except Exception as error:  # torch raises KeyError, RuntimeError, EOFError... on junk
        raise CheckpointError(f"{path}: not a readable PyTorch weight file "
                              f"({type(error).__name__}: {error})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # {"state_dict": ...}, a common training-script layout
    if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors), got "
                              f"{type(loaded).__name__}")
    return dict(loaded)


def _head_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the classifier (``head_path``), e.g. ``classifier.6.weight``."""
    head = getattr(model, "head_path", None)
    if head is None:
        return []
    return [f"{head}.{name}" for name in model.get_submodule(head).state_dict()]


def load_weights(model: nn.Module, path: str | Path, *, num_classes: int | None = None
                 ) -> list[str]:
    """Load the file at ``path`` into ``model`` in place; return the keys left as initialised.

    ``num_classes`` is the class count the caller asked for. When the file's head has another
    (a 1000-class ImageNet file for a 10-class model), the head keys are skipped and the model
    keeps its new head. ``None`` (nothing asked) takes the file's head as it is, resizing the
    model's head to the file's class count if they differ.

    Example:
        >>> model = create("alexnet", num_classes=10)                    # doctest: +SKIP
        >>> load_weights(model, "alexnet-owt-7be5be79.pth", num_classes=10)  # doctest: +SKIP
        ['classifier.6.weight', 'classifier.6.bias']
    """
    state = read_state_dict(path)
    expected = model.state_dict()
    unused = tuple(getattr(model, "unused_weight_prefixes", ()))  # e.g. GoogLeNet aux heads off
    state = {k: v for k, v in state.items() if k in expected or not k.startswith(unused)}
    if num_classes is None:
        _match_file_head(model, state, path)
        expected = model.state_dict()
        num_classes = _head_rows(expected, _head_keys(model))
    skipped = []
    for key in _head_keys(model):
        file_rows = state[key].shape[0] if key in state and state[key].dim() else None
        if file_rows is not None and file_rows != num_classes:
            skipped.append(key)
    if skipped:
        log.info("%s: head has %d classes, the model %d: keeping a new head (%s not loaded)",
                 path, state[skipped[0]].shape[0], num_classes, ", ".join(skipped))
        state = {**state, **{key: expected[key] for key in skipped}}
    load_state_checked(model, state, source=str(path))
    return skipped


def _head_rows(state: dict[str, torch.Tensor], keys: list[str]) -> int | None:
    """Output rows (classes) of the head in ``state``, or None when it holds no head."""
    rows = [state[key].shape[0] for key in keys if key in state and state[key].dim()]
    return rows[0] if rows else None


def _match_file_head(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Give ``model`` a head with as many classes as the file's (when the two differ)."""
    keys = _head_keys(model)
    own = model.state_dict()
    file_rows, model_rows = _head_rows(state, keys), _head_rows(own, keys)
    # only a head that differs in its class count alone (else the shape check names the key)
    same_inputs = all(state[k].shape[1:] == own[k].shape[1:] for k in keys if k in state)
    if (file_rows is not None and file_rows != model_rows and same_inputs
            and hasattr(model, "reset_classifier")):
        log.info("%s: head has %d classes (model default %d): using the file's head",
                 path, file_rows, model_rows)
        model.reset_classifier(file_rows)
