"""The zoo as a table (what ``cnnlab models`` prints), kept in ``catalog.json``.

Counting parameters means building every model (on the ``meta`` device, but still seconds for
41 models); the catalog stores the table so ``cnnlab models`` answers at once, without torch.
``tests/test_zoo.py`` checks the file equals a fresh count, so it never goes stale; after adding
or changing a model, rewrite it with ``python -m cnnlab.models.catalog``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

CATALOG = Path(__file__).with_name("catalog.json")


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def default_classes(info) -> int:
    """The class count a builder defaults to: its paper's (1000 for ImageNet, 10 for MNIST)."""
    return inspect.signature(info.builder).parameters["num_classes"].default


def counted_table(num_classes: int | None = None) -> list[dict]:
    """One row per registered model, each built on the ``meta`` device and counted now."""
    import torch  # building models: only when counting

    from cnnlab.models.registry import list_models

    rows = []
    for info in list_models():
        classes = num_classes or default_classes(info)
        with torch.device("meta"):
            model = info.builder(num_classes=classes)
        rows.append({"name": info.name, "family": info.family, "classes": classes,
                     "parameters": count_parameters(model),
                     "input_size": list(info.input_size), "dims": info.dims,
                     "paper": info.paper})
    return rows


def model_table(num_classes: int | None = None) -> list[dict]:
    """One row per registered model: name, family, classes, parameters, input size, paper.

    ``num_classes=None`` counts each model with its paper's head (so AlexNet shows 61,100,840)
    and is read from ``catalog.json``; another class count is counted now.
    """
    if num_classes is None and CATALOG.is_file():
        return json.loads(CATALOG.read_text())
    return counted_table(num_classes)


if __name__ == "__main__":
    CATALOG.write_text(json.dumps(counted_table(), indent=1) + "\n")
    print(f"wrote {CATALOG}")
