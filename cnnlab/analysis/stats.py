"""How alike are values a shift apart? The correlation prior behind convolution, measured.

Lecture 000: "The correlation prior for horizontal and vertical shifts (averaged over 1000
images)": long-range correlation, and local correlation stronger than non-local. Lecture 003,
"Not just images": any data where "things closer together are more closely related than things
far away" suits a ConvNet; its "Limitations" slide: data that cannot be made to look like an
image (customer records) do not. This module measures that for every data set cnnlab has.

For each sample n and channel c the values are standardised over the sample's positions
(mean 0, variance 1; constant channels drop out), then for a shift s along axis a

    r_n(s) = sum_{c,p} z[c, p] z[c, p + s e_a] / sqrt(sum z[c, p]^2 * sum z[c, p + s e_a]^2)

over the positions p where both ends lie inside, and r(s) is the mean of r_n(s) over the
samples where it is defined. r(0) = 1; for a stationary AR(1) signal x_t = phi x_{t-1} + noise,
r(s) ~ phi^s. With positions shuffled by one fixed permutation (the tabular control) r(s) is
flat near 0 at every s >= 1.

    >>> import torch
    >>> from cnnlab.analysis.stats import shift_correlation
    >>> result = shift_correlation(torch.rand(100, 1, 50), max_shift=3)
    >>> round(result.r["position"][0], 3)
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data.request import DataRequest
from cnnlab.errors import ConfigError

AXES_BY_DIMS = {1: ["position"], 2: ["vertical", "horizontal"], 3: ["depth", "vertical",
                                                                     "horizontal"]}


@dataclass
class ShiftCorrelation:
    """r(s) per axis: ``r[axis][s]`` for s = 0..max_shift (NaN where no sample defines it)."""

    name: str
    axes: list[str]
    shifts: list[int]
    r: dict[str, list[float]]
    samples: int
    meta: dict = field(default_factory=dict)


def standardise(values: torch.Tensor) -> torch.Tensor:
    """``(N, C, *spatial)`` float -> per (sample, channel) mean 0, variance 1 over positions
    (a constant channel becomes all 0)."""
    flat = values.flatten(2)  # (N, C, P)
    centred = flat - flat.mean(dim=2, keepdim=True)
    std = centred.square().mean(dim=2, keepdim=True).sqrt()
    return (centred / torch.where(std > 0, std, torch.ones_like(std))).reshape(values.shape)


def correlation_at(z: torch.Tensor, axis: int, shift: int) -> float:
    """Mean over samples of r_n(shift) along tensor dimension ``axis`` of standardised ``z``."""
    length = z.shape[axis]
    a = z.narrow(axis, 0, length - shift).flatten(1)  # (N, overlap)
    b = z.narrow(axis, shift, length - shift).flatten(1)
    numerator = (a * b).sum(dim=1)
    denominator = (a.square().sum(dim=1) * b.square().sum(dim=1)).sqrt()
    defined = denominator > 0  # an all-constant overlap has no correlation
    if not defined.any():
        return float("nan")
    return float((numerator[defined] / denominator[defined]).mean())


def pick_samples(count: int, samples: int, seed: int) -> torch.Tensor:
    """``samples`` indices out of ``count``, drawn without replacement from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:samples]


def shift_correlation(data: torch.Tensor, *, max_shift: int | None = None, samples: int = 1000,
                      seed: int = 0, axes: list[str] | None = None,
                      name: str = "") -> ShiftCorrelation:
    """r(s) along every spatial axis of ``data`` ``(N, C, *spatial)`` (uint8 or float) for
    s = 0..``max_shift`` (default: half the shortest axis), over ``samples`` random samples."""
    spatial = data.dim() - 2
    if spatial not in AXES_BY_DIMS:
        raise ConfigError(f"{name}: stats needs (N, C, L), (N, C, H, W) or (N, C, D, H, W) "
                          f"data, got shape {tuple(data.shape)}")
    axes = list(axes or AXES_BY_DIMS[spatial])
    shortest = min(data.shape[2:])
    max_shift = shortest // 2 if max_shift is None else max_shift
    if not 0 <= max_shift < shortest:
        raise ConfigError(f"--max-shift {max_shift}: must be 0..{shortest - 1} (the shortest "
                          f"axis of {name or 'the data'} has {shortest} positions)")
    if samples < 1:
        raise ConfigError(f"--samples {samples}: must be at least 1")
    index = pick_samples(data.shape[0], samples, seed)
    z = standardise(data[index].float())
    r = {label: [correlation_at(z, 2 + i, s) for s in range(max_shift + 1)]
         for i, label in enumerate(axes)}
    return ShiftCorrelation(name, axes, list(range(max_shift + 1)), r, len(index))


def table_rows(result: ShiftCorrelation) -> list[list[object]]:
    """``[["shift", axis...], [0, 1.0, ...], ...]``: the CSV and the printed table."""
    rows: list[list[object]] = [["shift", *result.axes]]
    for s in result.shifts:
        rows.append([s, *(round(result.r[axis][s], 4) for axis in result.axes)])
    return rows


def format_table(result: ShiftCorrelation) -> str:
    """The table as aligned text, one row per shift."""
    rows = table_rows(result)
    width = max(10, *(len(a) + 2 for a in result.axes))
    lines = [f"{rows[0][0]:>5s}" + "".join(f"{a:>{width}s}" for a in rows[0][1:])]
    lines += [f"{row[0]:>5d}" + "".join(f"{v:>{width}.3f}" for v in row[1:]) for row in rows[1:]]
    return "\n".join(lines)


def correlation_figure(result: ShiftCorrelation):  # noqa: ANN201 - a matplotlib Figure
    """r(s) per axis as lines, with r = 0 marked."""
    import matplotlib  # plotting only when a figure is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for axis in result.axes:
        ax.plot(result.shifts, result.r[axis], marker="o", markersize=3, label=axis)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("shift (positions)")
    ax.set_ylabel("correlation r(shift)")
    ax.set_ylim(min(-0.2, *(min(v) for v in result.r.values())) - 0.05, 1.05)
    ax.set_title(f"{result.name}: correlation vs shift ({result.samples} samples)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig


def write_stats(result: ShiftCorrelation, out: str | Path) -> list[Path]:
    """``stats.csv`` and ``stats.png`` in ``out`` (never over a file cnnlab did not write)."""
    import matplotlib.pyplot as plt

    from cnnlab.runs.outputs import csv_text, save_figure, write_text_output

    out = Path(out)
    paths = [write_text_output(out / "stats.csv", csv_text(table_rows(result)))]
    fig = correlation_figure(result)
    try:
        paths.append(save_figure(fig, out / "stats.png"))
    finally:
        plt.close(fig)
    return paths


def load_values(data: str | DataRequest, split: str = "train", *,
                root: str | Path | None = None) -> tuple[torch.Tensor, list[str] | None]:
    """The samples ``(N, C, *spatial)`` of a named set and its axis names: a 1-D/3-D set of
    :mod:`cnnlab.data.sequences`, else an image set of :func:`cnnlab.data.datasets.load_dataset`
    (``data``: a name, or a request with ``--data-root``/``--download``/``--skip-bad``)."""
    from cnnlab.data.sequences import is_sequence_name, load_sequences

    request = DataRequest.of(data).with_defaults(None, None if root is None else str(root))
    name, root = request.name, request.root
    if is_sequence_name(name):
        options = {"root": root} if name.lower() == "moving-mnist" else {}
        sequences = load_sequences(name, split, **options)
        return sequences.data, sequences.meta.get("axes")
    return request.load(split).images, None


def data_stats(name: str | DataRequest, *, split: str = "train", root: str | Path | None = None,
               samples: int = 1000, max_shift: int | None = None, shuffle: int | None = None,
               seed: int = 0) -> ShiftCorrelation:
    """r(s) per axis for the data set ``name`` (``shuffle``: positions permuted first by that
    seed, the tabular control). The back-end of ``cnnlab stats``.

    Example:
        >>> result = data_stats("digits", samples=200, max_shift=4)   # doctest: +SKIP
        >>> print(format_table(result))                               # doctest: +SKIP
    """
    from cnnlab.data.sequences import permute_positions

    values, axes = load_values(name, split, root=root)
    label = name = DataRequest.of(name).name
    if shuffle is not None:
        values, label = permute_positions(values, shuffle), f"{name} (positions shuffled)"
    result = shift_correlation(values, max_shift=max_shift, samples=samples, seed=seed,
                               axes=axes, name=label)
    result.meta = {"split": split, "shuffle": shuffle, "shape": list(values.shape[1:])}
    return result
