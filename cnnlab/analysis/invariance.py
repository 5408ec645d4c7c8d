"""Invariance and equivariance of a trained network, layer by layer.

Invariance (lecture 001, "Is AlexNet translation/scale/rotation invariant?", after Zeiler &
Fergus 2014 fig. 5): transform test images by a growing amount and plot, per magnitude,
(1) each layer's normalised feature distance ``||f(Tx) - f(x)|| / ||f(x)||``, (2) the mean
probability of the true class and (3) how often the top-1 label equals the untransformed one.

Equivariance (lecture 003, ``f(rho(g) x) = rho(g) f(x)``): shifting the input by ``k`` pixels
shifts a convolutional layer's output by ``k / stride``. With circular padding (and a shift that
the cumulative stride divides) this holds exactly on the whole map; with zero padding it holds
in the interior, away from the borders the shift and the padding touch.

Example:
    >>> data = load_run_data("runs/lenet5-digits", limit=256)  # doctest: +SKIP
    >>> rows = invariance_curves(data, "rotate", [-30, 0, 30])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import torch
from torch import nn

from cnnlab.analysis.features import (
    RunData,
    capture,
    pyplot,
    resolve_layers,
    write_csv,
    write_figure,
)
from cnnlab.choices import TRANSFORMS
from cnnlab.data.augment import affine_transform
from cnnlab.errors import ConfigError, choices_hint
from cnnlab.progress import track

DOWNSAMPLING_TYPES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
UPSAMPLING_TYPES = (nn.ConvTranspose2d, nn.MaxUnpool2d)
EQUIVARIANCE_TYPES = DOWNSAMPLING_TYPES + UPSAMPLING_TYPES


def check_transform(kind: str) -> None:
    if kind not in TRANSFORMS:
        raise ConfigError(f"unknown transform {choices_hint(kind, list(TRANSFORMS))}")


def default_values(kind: str, size: int, steps: int = 9) -> list[float]:
    """Magnitudes to sweep: +-size/4 pixels, scale 0.5..1.5, rotation -180..180 degrees."""
    check_transform(kind)
    low, high = {"translate": (-size / 4, size / 4), "scale": (0.5, 1.5),
                 "rotate": (-180.0, 180.0)}[kind]
    return torch.linspace(low, high, steps).tolist()


def apply_transform(x: torch.Tensor, kind: str, value: float) -> torch.Tensor:
    """``(B, C, H, W)`` images in [0, 1] moved by ``value`` (see :data:`TRANSFORMS` for units)."""
    check_transform(kind)
    b = x.shape[0]
    angle, scale, shift = torch.zeros(b), torch.ones(b), torch.zeros(b, 2)
    if kind == "translate":
        shift[:, 0] = value
    elif kind == "scale":
        scale[:] = value
    else:
        angle[:] = value
    return affine_transform(x, angle=angle, shift=shift, scale=scale)


@torch.no_grad()
def invariance_curves(data: RunData, kind: str, values: Sequence[float], *,
                      layers: str | list[str] | None = "all", batch_size: int = 128) -> list[dict]:
    """One row per magnitude: ``value``, ``p_true``, ``top1_agreement``, ``accuracy`` and a
    ``dist:<layer>`` column per layer (mean over images of the normalised feature distance)."""
    model = data.model.eval()
    names = resolve_layers(model, layers)
    rows = []
    for value in track(values, f"invariance: {kind}", unit="value"):
        sums = {"p_true": 0.0, "top1_agreement": 0.0, "accuracy": 0.0}
        dist = dict.fromkeys(names, 0.0)
        for start in range(0, len(data.labels), batch_size):
            x = data.images[start:start + batch_size]  # (B, C, H, W) in [0, 1]
            y = data.labels[start:start + batch_size]
            with capture(model, names) as out:
                logits = model(data.inputs(x))
                base = {n: out[n].flatten(1) for n in names}  # (B, D) per layer
                moved_logits = model(data.inputs(apply_transform(x, kind, value)))
                for n in names:
                    moved = out[n].flatten(1)
                    ratio = (moved - base[n]).norm(dim=1) / base[n].norm(dim=1).clamp_min(1e-12)
                    dist[n] += float(ratio.sum())
            probs = moved_logits.softmax(1)  # (B, classes)
            sums["p_true"] += float(probs.gather(1, y[:, None]).sum())
            sums["top1_agreement"] += float((moved_logits.argmax(1) == logits.argmax(1)).sum())
            sums["accuracy"] += float((moved_logits.argmax(1) == y).sum())
        n_images = len(data.labels)
        row = {"transform": kind, "value": round(float(value), 4)}
        row.update({k: v / n_images for k, v in sums.items()})
        row.update({f"dist:{n}": dist[n] / n_images for n in names})
        rows.append(row)
    return rows


def plot_invariance(rows: list[dict], path: str | Path) -> Path:
    """Three panels against the magnitude: layer distances, p(true class), top-1 agreement."""
    plt = pyplot()
    values = [r["value"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key in [k for k in rows[0] if k.startswith("dist:")]:
        axes[0].plot(values, [r[key] for r in rows], marker=".", label=key[5:])
    axes[0].set_ylabel("||f(Tx) - f(x)|| / ||f(x)||")
    axes[0].legend(fontsize=7)
    axes[1].plot(values, [r["p_true"] for r in rows], marker=".")
    axes[1].set_ylabel("P(true class)")
    axes[2].plot(values, [r["top1_agreement"] for r in rows], marker=".", label="agreement")
    axes[2].plot(values, [r["accuracy"] for r in rows], marker=".", label="accuracy")
    axes[2].set_ylabel("top-1 agreement / accuracy")
    axes[2].legend()
    kind = rows[0]["transform"]
    for ax in axes:
        ax.set_xlabel(f"{kind} ({TRANSFORMS[kind]})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return write_figure(fig, path)


def invariance_report(data: RunData, kind: str, values: Sequence[float], out: str | Path, *,
                      layers: str | list[str] | None = "all") -> list[dict]:
    """Curves as ``out/invariance-<kind>.csv`` and ``.png``; returns the rows."""
    rows = invariance_curves(data, kind, values, layers=layers)
    out = Path(out)
    write_csv(rows, out / f"invariance-{kind}.csv")
    plot_invariance(rows, out / f"invariance-{kind}.png")
    return rows


def circular_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose convolutions pad circularly (wrap around) instead of with 0."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.padding_mode = "circular"
    return model


def equivariance_layers(model: nn.Module) -> list[str]:
    """Conv, pooling and upsampling layers: those whose output is a spatial map."""
    return [n for n, m in model.named_modules() if isinstance(m, EQUIVARIANCE_TYPES)]


def _side_ratio(before: int, after: int) -> Fraction:
    """Input side / output side as a stride, rounded to an integer or 1/integer: a valid
    convolution (32 -> 28) counts as 1, an x2 upsampling (16 -> 32) as 1/2."""
    if before >= after:
        return Fraction(max(1, round(before / after)))
    return Fraction(1, max(1, round(after / before)))


def _own_stride(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Fraction:
    """Input pixels per output pixel of one module: ``stride`` for convs and pools,
    ``1/stride`` for transposed convs and max-unpooling, else the ratio of the map sides."""
    stride = getattr(module, "stride", None)
    if stride is not None and isinstance(module, UPSAMPLING_TYPES):
        return Fraction(1, int(stride[0] if isinstance(stride, tuple) else stride))
    if stride is not None and isinstance(module, DOWNSAMPLING_TYPES):
        return Fraction(int(stride[0] if isinstance(stride, tuple) else stride))
    return _side_ratio(x.shape[2], y.shape[2])


def _first_map(value) -> torch.Tensor | None:
    """``value`` or the first tensor of a tuple (``MaxPoolWithIndices`` returns two)."""
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    return value if torch.is_tensor(value) and value.dim() == 4 else None


@torch.no_grad()
def cumulative_strides(model: nn.Module, x: torch.Tensor) -> dict[str, Fraction]:
    """Input pixels per output pixel of every module with a map output, by tracing tensors.

    A module's output stride is its input's stride times its own (:func:`_own_stride`), a
    :class:`~fractions.Fraction` composed along the path: valid convolutions (32 -> 28) keep
    their input's stride, and upsampling divides it (an x2 decoder stage after stride 8 is at
    stride 4, the full-resolution output of a segmentation net at stride 1). A tensor made
    outside any module (``F.interpolate``, a skip sum) gets the side ratio to the input.
    """
    known: dict[int, tuple[torch.Tensor, Fraction]] = {id(x): (x, Fraction(1))}
    strides: dict[str, Fraction] = {}

    def hook(module, inputs, output, name):
        first = _first_map(inputs[0]) if inputs else None
        result = _first_map(output)
        if first is None or result is None:
            return
        before = known.get(id(first), (None, _side_ratio(x.shape[2], first.shape[2])))[1]
        if id(result) not in known:
            known[id(result)] = (result, before * _own_stride(module, first, result))
        strides[name] = known[id(result)][1]

    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n))
               for n, m in model.named_modules()]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return strides


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Every named layer's output map and the model's output (key ``output``)."""
    with capture(model, names) as out:
        final = model(x)
        return dict(out, output=final)


def _reach(ref: torch.Tensor, perturbed: torch.Tensor, axis: int, c: int,
           s: Fraction) -> tuple[Fraction, Fraction] | None:
    """``(before, after)`` from the output positions along ``axis`` that changed when input
    row/column ``c`` did; ``None`` where none did."""
    other = tuple(d for d in range(4) if d != axis)
    change = (perturbed - ref).abs().amax(dim=other)
    hit = (change > 1e-6 * ref.abs().max().clamp_min(1e-12)).nonzero()
    if len(hit) == 0:
        return None
    lo, hi = int(hit.min()), int(hit.max())
    # one input row pins the reach down only to the stride: take the largest reach consistent
    # with j = hi changing and j = hi + 1 not (likewise below lo)
    return (max(hi * s - c, (hi + 1) * s - c - 1), max(c - lo * s, c - (lo - 1) * s - 1))


def dependency_extents(model: nn.Module, x: torch.Tensor, names: list[str],
                       strides: dict[str, Fraction]) -> dict[str, list]:
    """Per layer and axis (rows, columns) the input reach ``(before, after)``: output index
    ``j`` depends on input pixels ``j*stride - before .. j*stride + after``.

    Measured, not derived: one input row (column) near the middle is replaced by large noise and
    the extent of the output positions that change gives the receptive field, whatever the
    model's wiring (skips, unpooling, bilinear upsampling). This is repeated at every phase
    modulo the largest stride (an unpooled map's reach depends on the position in its 2x2
    window) and the largest reach kept. ``None`` where nothing changed.
    """
    names = [n for n in names if n != "output"]  # the model's output is always included
    base = _outputs(model, x, names)
    period = max([math.ceil(s) for s in strides.values()] + [1])
    gen = torch.Generator().manual_seed(1)
    extents: dict[str, list] = {name: [] for name in base}
    for axis in (2, 3):
        reach: dict[str, list] = {name: [] for name in base}
        for c in range(x.shape[axis] // 2, x.shape[axis] // 2 + period):
            moved = x.clone()
            index = [slice(None)] * 4
            index[axis] = c % x.shape[axis]
            moved[tuple(index)] = 10 * torch.randn(moved[tuple(index)].shape, generator=gen)
            perturbed = _outputs(model, moved, names)
            for name, ref in base.items():
                if ref.dim() == 4:
                    reach[name].append(_reach(ref, perturbed[name], axis, c,
                                              strides.get(name, Fraction(1))))
        for name, found in reach.items():
            found = [r for r in found if r is not None]
            extents[name].append((max(r[0] for r in found), max(r[1] for r in found))
                                 if found else None)
    return extents


def interior_ranges(extent: list, stride: Fraction, shift: int, side: int,
                    out_side: int) -> list[range] | None:
    """Output rows and columns whose receptive field, on the rolled input, touches neither the
    image border nor the seam where the roll wrapped around (so both maps see the same pixels)."""
    ranges = []
    for reach in extent:
        if reach is None:
            return None
        before, after = reach
        first = math.ceil((max(shift, 0) + before) / stride)
        last = math.floor((side - 1 + min(shift, 0) - after) / stride)
        first, last = max(first, 0), min(last, out_side - 1)
        if last < first:
            return None
        ranges.append(range(first, last + 1))
    return ranges


def _relative(diff: torch.Tensor, expected: torch.Tensor) -> float:
    """``||diff|| / ||expected - mean||`` (mean per image and channel over the region): an
    untrained net's map can be dominated by its biases, which any shift preserves."""
    centred = expected - expected.mean(dim=(2, 3), keepdim=True)
    return float(diff.norm() / centred.norm().clamp_min(1e-12))


def _shift_error(base: torch.Tensor, moved: torch.Tensor, step: int,
                 interior: list[range] | None) -> tuple[float, float]:
    """Relative error of ``moved`` vs ``base`` rolled by ``step``: whole map and interior."""
    expected = base.roll((step, step), dims=(2, 3))  # (B, C, H', W')
    diff = moved - expected
    full = _relative(diff, expected)
    if interior is None:
        return full, float("nan")
    rows, cols = (slice(r.start, r.stop) for r in interior)
    inner = (slice(None), slice(None), rows, cols)
    return full, _relative(diff[inner], expected[inner])


def _fixed_interior(margin: int, h: int, w: int) -> list[range] | None:
    if 2 * margin >= min(h, w):
        return None
    return [range(margin, h - margin), range(margin, w - margin)]


@torch.no_grad()
def equivariance_errors(model: nn.Module, x: torch.Tensor, shift: int, *,
                        layers: list[str] | None = None, margin: int | None = None) -> list[dict]:
    """Per layer: does ``f(roll(x, k)) == roll(f(x), k / stride)``? (lecture 003).

    ``x`` ``(B, C, H, W)``; the shift is ``k`` pixels down and right (circular roll). ``stride``
    is the layer's cumulative stride (:func:`cumulative_strides`, a Fraction: 1/2 after an x2
    upsampling of the input resolution). Errors are ``||diff|| / ||f - mean f||`` on the whole
    map and on the interior: by default the positions whose measured receptive field
    (:func:`dependency_extents`) avoids the border and the roll's seam; with ``margin``, that many
    output pixels cut from each side. ``nan`` where the interior is empty or ``k / stride`` is
    not an integer. A model whose output is a map (dense prediction) gets a row ``output`` too.
    """
    model = model.eval()
    names = layers if layers is not None else equivariance_layers(model)
    base = _outputs(model, x, names)
    moved = _outputs(model, x.roll((shift, shift), dims=(2, 3)), names)
    strides = cumulative_strides(model, x)
    strides["output"] = strides.get("", Fraction(1))
    if base["output"].dim() == 4:
        names = [*names, "output"]
    extents = dependency_extents(model, x, names, strides) if margin is None else {}
    rows = []
    for name in names:
        stride = strides[name]
        step = Fraction(shift) / stride
        row = {"layer": name, "shape": "x".join(map(str, base[name].shape[1:])),
               "stride": stride, "output_shift": float(step)}
        if step.denominator != 1:
            row.update(error_full=float("nan"), error_interior=float("nan"))
        else:
            h, w = base[name].shape[2:]
            interior = (_fixed_interior(margin, h, w) if margin is not None else
                        interior_ranges(extents[name], stride, shift, x.shape[2], h))
            full, inner = _shift_error(base[name], moved[name], int(step), interior)
            row.update(error_full=full, error_interior=inner)
        rows.append(row)
    return rows


def sweep_values(kind: str, span: Sequence[float] | None, steps: int, size: int) -> list[float]:
    """``steps`` magnitudes from ``span = (low, high)``, or :func:`default_values`."""
    check_transform(kind)
    if steps < 2:
        raise ConfigError(f"--steps must be >= 2, got {steps}")
    if span is None:
        return default_values(kind, size, steps)
    return torch.linspace(float(span[0]), float(span[1]), steps).tolist()


def equivariance_of(model_or_run: str | Path, *, shift: int = 4, circular: bool = False,
                    size: int | None = None, seed: int = 0,
                    margin: int | None = None) -> list[dict]:
    """:func:`equivariance_errors` of a run's model (or a fresh zoo/spec model) on random input.

    Equivariance is a property of the architecture and weights, not of the data, so the input is
    Gaussian noise ``(2, C, size, size)`` (default: the model's own input size).
    """
    from cnnlab.models import create, default_input_size
    from cnnlab.runs.reader import load_model

    if Path(model_or_run).exists():
        model, meta = load_model(model_or_run)
        c, h, _ = meta["model"]["input_size"]
    else:
        c, h, _ = default_input_size(str(model_or_run))
        model = create(str(model_or_run), input_size=(c, size or h, size or h))
    model = circular_copy(model) if circular else model
    side = size or h
    x = torch.randn(2, c, side, side, generator=torch.Generator().manual_seed(seed))
    return equivariance_errors(model, x, shift, margin=margin)
