"""The zoo as a table (what ``cnnlab models`` prints)."""

from __future__ import annotations

import inspect

import torch

from cnnlab.models.registry import ModelInfo, list_models


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def default_classes(info: ModelInfo) -> int:
    """The class count a builder defaults to: its paper's (1000 for ImageNet, 10 for MNIST)."""
    return inspect.signature(info.builder).parameters["num_classes"].default


def model_table(num_classes: int | None = None) -> list[dict]:
    """One row per registered model: name, family, classes, parameters, input size, paper.

    ``num_classes=None`` counts each model with its paper's head (so AlexNet shows 61,100,840).
    Models are built on the ``meta`` device, so even VGG-19 costs no memory here.
    """
    rows = []
    for info in list_models():
        classes = num_classes or default_classes(info)
        with torch.device("meta"):
            model = info.builder(num_classes=classes)
        rows.append({"name": info.name, "family": info.family, "classes": classes,
                     "parameters": count_parameters(model),
                     "input_size": list(info.input_size), "paper": info.paper})
    return rows
