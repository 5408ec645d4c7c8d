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
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cnnlab.analysis.features import RunData, capture, pyplot, resolve_layers, write_csv
from cnnlab.data.augment import affine_transform
from cnnlab.errors import ConfigError, choices_hint

TRANSFORMS = {"translate": "pixels (dx, right)", "scale": "factor", "rotate": "degrees"}
EQUIVARIANCE_TYPES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


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
    for value in values:
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


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
    """Conv and pooling layers: those whose output is a spatial map."""
    return [n for n, m in model.named_modules() if isinstance(m, EQUIVARIANCE_TYPES)]


def _own_stride(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    stride = getattr(module, "stride", None)
    if stride is not None and isinstance(module, EQUIVARIANCE_TYPES):
        return int(stride[0] if isinstance(stride, tuple) else stride)
    return max(1, round(x.shape[2] / y.shape[2]))


@torch.no_grad()
def cumulative_strides(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Input pixels per output pixel of every module with a map output, by tracing tensors.

    A module's output stride is its input's stride times its own (conv/pool ``stride``; for
    other modules the size ratio), so valid convolutions (32 -> 28) count as stride 1.
    """
    known: dict[int, tuple[torch.Tensor, int]] = {id(x): (x, 1)}  # tensor id -> (tensor, stride)
    strides: dict[str, int] = {}

    def hook(module, inputs, output, name):
        if not (inputs and torch.is_tensor(inputs[0]) and torch.is_tensor(output)):
            return
        if inputs[0].dim() != 4 or output.dim() != 4:
            return
        before = known.get(id(inputs[0]), (None, round(x.shape[2] / inputs[0].shape[2])))[1]
        if id(output) not in known:
            known[id(output)] = (output, before * _own_stride(module, inputs[0], output))
        strides[name] = known[id(output)][1]

    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n))
               for n, m in model.named_modules()]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return strides


def _shift_error(base: torch.Tensor, moved: torch.Tensor, step: int, margin: int) -> tuple:
    """Relative error of ``moved`` vs ``base`` rolled by ``step``: whole map and interior."""
    expected = base.roll((step, step), dims=(2, 3))  # (B, C, H', W')
    diff = moved - expected
    full = float(diff.norm() / expected.norm().clamp_min(1e-12))
    h, w = base.shape[2:]
    if 2 * margin >= min(h, w):
        return full, float("nan")
    inner = (slice(None), slice(None), slice(margin, h - margin), slice(margin, w - margin))
    return full, float(diff[inner].norm() / expected[inner].norm().clamp_min(1e-12))


@torch.no_grad()
def equivariance_errors(model: nn.Module, x: torch.Tensor, shift: int, *,
                        layers: list[str] | None = None, margin: int | None = None) -> list[dict]:
    """Per layer: does ``f(roll(x, k)) == roll(f(x), k / stride)``? (lecture 003).

    ``x`` ``(B, C, H, W)``; the shift is ``k`` pixels down and right (circular roll). ``stride``
    is the layer's cumulative stride (:func:`cumulative_strides`). Errors are
    ``||diff|| / ||f||`` on the whole map and on the interior (``margin`` output pixels cut
    from each side; default H'/4).
    A model whose output is a map (dense prediction) gets a row ``output`` too.
    """
    model = model.eval()
    names = layers if layers is not None else equivariance_layers(model)
    moved_x = x.roll((shift, shift), dims=(2, 3))
    with capture(model, names) as out:
        final = model(x)
        base = dict(out, output=final)
        moved_final = model(moved_x)
        moved = dict(out, output=moved_final)
    strides = cumulative_strides(model, x)
    strides["output"] = strides.get("", 1)
    if final.dim() == 4:
        names = [*names, "output"]
    rows = []
    for name in names:
        stride = strides[name]
        row = {"layer": name, "shape": "x".join(map(str, base[name].shape[1:])),
               "stride": stride, "output_shift": shift / stride}
        if shift % stride:
            row.update(error_full=float("nan"), error_interior=float("nan"))
        else:
            edge = margin if margin is not None else base[name].shape[2] // 4
            full, inner = _shift_error(base[name], moved[name], shift // stride, edge)
            row.update(error_full=full, error_interior=inner)
        rows.append(row)
    return rows


def sweep_values(kind: str, span: Sequence[float] | None, steps: int, size: int) -> list[float]:
    """``steps`` magnitudes from ``span = (low, high)``, or :func:`default_values`."""
    if span is None:
        return default_values(kind, size, steps)
    check_transform(kind)
    if steps < 2:
        raise ConfigError(f"--steps must be >= 2, got {steps}")
    return torch.linspace(float(span[0]), float(span[1]), steps).tolist()


def equivariance_of(model_or_run: str | Path, *, shift: int = 4, circular: bool = False,
                    size: int | None = None, seed: int = 0) -> list[dict]:
    """:func:`equivariance_errors` of a run's model (or a fresh zoo/spec model) on random input.

    Equivariance is a property of the architecture and weights, not of the data, so the input is
    Gaussian noise ``(2, C, size, size)`` (default: the model's own input size).
    """
    from cnnlab.models import create, default_input_size
    from cnnlab.train.checkpoint import load_model

    if Path(model_or_run).exists():
        model, meta = load_model(model_or_run)
        c, h, _ = meta["model"]["input_size"]
    else:
        c, h, _ = default_input_size(str(model_or_run))
        model = create(str(model_or_run), input_size=(c, size or h, size or h))
    model = circular_copy(model) if circular else model
    side = size or h
    x = torch.randn(2, c, side, side, generator=torch.Generator().manual_seed(seed))
    return equivariance_errors(model, x, shift)
