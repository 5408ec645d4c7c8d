"""Feature evolution over training (lecture 001, "Given a neuron (outputs a single feature map):
strongest activation during training for epochs 1, 2, 5, 10, 20, 30, 40, 64"; Zeiler & Fergus
2014, fig. 4).

Train with ``cnnlab train ... --snapshot-epochs 1,2,5,10`` so the run keeps
``snapshots/epoch-NNN.safetensors``; for each snapshot and each chosen unit the data set is
searched (one pass, :func:`~cnnlab.viz.patches.top_activations` with ``k=1``) and the patch with
the strongest activation is cropped to the unit's receptive field.

Example:
    >>> evo = feature_evolution("runs/lenet5-mnist", "conv2", units=[0, 1, 2])  # doctest: +SKIP
    >>> evo.epochs  # doctest: +SKIP
    [1, 2, 5, 10]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.analysis.receptive import receptive_field
from cnnlab.errors import CheckpointError
from cnnlab.runs.reader import open_run
from cnnlab.viz.grids import Grid, make_grid
from cnnlab.viz.maps import resolve_layer, unit_count
from cnnlab.viz.patches import top_activations, top_patches


@dataclass
class Evolution:
    """The strongest patch of each unit at each snapshot epoch."""

    layer: str
    units: list[int]
    epochs: list[int]
    patches: torch.Tensor  # (U, E, C, s, s) uint8
    values: torch.Tensor  # (U, E) float: the activation each patch produced
    images: torch.Tensor  # (U, E) long: data-set index of each patch's image


def snapshot_files(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(epoch, path)]`` of ``RUN/snapshots/epoch-NNN.safetensors``, by epoch."""
    folder = Path(run_dir) / "snapshots"
    found = []
    for path in folder.glob("epoch-*.safetensors"):
        match = re.fullmatch(r"epoch-(\d+)\.safetensors", path.name)
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        raise CheckpointError(f"{run_dir}: no snapshots/epoch-NNN.safetensors; train with "
                              "--snapshot-epochs 1,2,5,10 to keep them")
    return sorted(found)


def feature_evolution(run_dir: str | Path, layer: str | None = None, *,
                      units: list[int] | None = None, split: str = "test",
                      limit: int | None = 2000) -> Evolution:
    """For each snapshot, each unit's strongest patch among the first ``limit`` images of
    ``split`` (default units: the first 8 of ``layer``, default layer: the last conv)."""
    snapshots = snapshot_files(run_dir)
    first = open_run(snapshots[0][1])
    path = resolve_layer(first.model, layer, default="last")
    source = first.source(split, limit=limit)
    field = receptive_field(first.model, first.input_size, path)
    if units is None:
        units = list(range(min(8, unit_count(first.model, path))))
    patches, values, images = [], [], []
    for _, file in snapshots:
        model = open_run(file).model
        top = top_activations(model, source, path, units=units, k=1)
        patches.append(top_patches(top, source, field)[:, 0])  # (U, C, s, s)
        values.append(top.values[:, 0])
        images.append(top.images[:, 0])
    return Evolution(path, list(units), [e for e, _ in snapshots], torch.stack(patches, 1),
                     torch.stack(values, 1), torch.stack(images, 1))


def evolution_grid(evo: Evolution, *, scale: int | None = None) -> Grid:
    """One row per unit, one column per snapshot epoch, captioned ``epoch N``."""
    epochs = evo.patches.shape[1]
    tiles = evo.patches.flatten(0, 1).float() / 255  # (U*E, C, s, s)
    scale = scale or math.ceil(64 / tiles.shape[-1])
    values = evo.values.flatten().tolist()  # unit-major, like the tiles
    captions = [f"ep {evo.epochs[i % epochs]}\n{v:.2f}" for i, v in enumerate(values)]
    for u, unit in enumerate(evo.units):  # name the unit under its row's first tile
        captions[u * epochs] = f"u{unit}: " + captions[u * epochs]
    return make_grid(tiles, columns=epochs, scale=scale, normalize="none", captions=captions)
