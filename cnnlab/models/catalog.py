"""The zoo as a table (what ``cnnlab models`` prints)."""

from __future__ import annotations

import torch

from cnnlab.models.registry import list_models


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_table(num_classes: int = 10) -> list[dict]:
    """One row per registered model: name, family, parameters, input size, paper.

    Models are built on the ``meta`` device, so even VGG-19 costs no memory here.
    """
    rows = []
    for info in list_models():
        with torch.device("meta"):
            model = info.builder(num_classes=num_classes)
        rows.append({"name": info.name, "family": info.family,
                     "parameters": count_parameters(model),
                     "input_size": list(info.input_size), "paper": info.paper})
    return rows
