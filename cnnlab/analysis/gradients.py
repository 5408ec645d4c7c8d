"""Gradient flow: per-layer gradient norms at initialisation and over the first steps.

Lecture 002, "Optimizing Deep Neural Networks": with sigmoid units
``dC/db_1 = s'(z_1) w_2 s'(z_2) w_3 s'(z_3) w_4 s'(z_4) dC/da_4``; every factor ``w s'(z)`` is
below 1/4 when ``|w| < 1`` (the maximum of ``s'`` is 1/4 at 0), so the first layers' gradients
shrink geometrically with depth: the *vanishing gradient*, "later layers learn faster than
earlier ones". ReLU (``s' = 1`` where active) and residual connections (``x + F(x)`` passes the
gradient through the identity) keep it alive, which is why ResNet can be deep (He et al. 2015).

Two tools:
- :func:`depth_sweep` builds fully connected nets of growing depth, plain or residual, sigmoid
  or ReLU (:func:`toy_net`), and tabulates the first and last layer's gradient norm at init.
- :func:`gradient_profile` takes any zoo model (``plain20`` vs ``resnet20``, ``lenet5``) and
  records every conv/linear layer's weight-gradient norm at init and after each of the first
  SGD steps on real data.

Example:
    >>> rows = depth_sweep([2, 8, 32], activations=("sigmoid", "relu"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis.features import pyplot, save_plot, write_csv, write_figure
from cnnlab.data.request import DataRequest
from cnnlab.errors import ConfigError, choices_hint
from cnnlab.models.base import make_activation
from cnnlab.progress import track

KINDS = ("plain", "residual")
LAYER_TYPES = (nn.Conv2d, nn.Linear)


class ResidualLayer(nn.Module):
    """``x + act(W x + b)``: one hidden layer with an identity shortcut, ``(B, D) -> (B, D)``."""

    def __init__(self, width: int, activation: str) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.linear(x))


INITS = ("default", "he")


def toy_net(kind: str, depth: int, *, activation: str = "sigmoid", in_features: int = 64,
            width: int = 64, num_classes: int = 10, init: str = "default") -> nn.Sequential:
    """A fully connected net with ``depth`` hidden layers.

    ``(B, in_features)`` -> ``(B, num_classes)``. ``kind="residual"`` adds an identity shortcut
    around every hidden layer after the first. ``init="default"`` is PyTorch's uniform
    ``|w| < 1/sqrt(fan_in)`` (the slide's "|weight| < 1"); ``"he"`` is He et al. 2015's
    ``N(0, 2/fan_in)`` with zero biases, which keeps ReLU signals at constant scale.
    """
    if init not in INITS:
        raise ConfigError(f"unknown init {choices_hint(init, list(INITS))}")
    if kind not in KINDS:
        raise ConfigError(f"unknown network kind {choices_hint(kind, list(KINDS))}")
    if depth < 1:
        raise ConfigError(f"depth must be >= 1, got {depth}")
    layers: list[nn.Module] = [nn.Linear(in_features, width), make_activation(activation)]
    for _ in range(depth - 1):
        if kind == "residual":
            layers.append(ResidualLayer(width, activation))
        else:
            layers += [nn.Linear(width, width), make_activation(activation)]
    layers.append(nn.Linear(width, num_classes))
    net = nn.Sequential(*layers)
    if init == "he":
        for module in net.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
    return net


def layer_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``||dC/dW||`` of every conv/linear weight for one cross-entropy batch, input to output."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return {name: float(module.weight.grad.norm()) for name, module in model.named_modules()
            if isinstance(module, LAYER_TYPES) and module.weight.grad is not None}


def digits_batch(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` standardised 8x8 digit scans ``(n, 1, 8, 8)`` and their labels (a real batch)."""
    from cnnlab.data.datasets import load_dataset

    data = load_dataset("digits", "train")
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    x = data.images[pick].float() / 255
    return (x - x.mean()) / x.std(), data.labels[pick]


def depth_sweep(depths: Sequence[int], *, kinds: Sequence[str] = KINDS,
                activations: Sequence[str] = ("sigmoid", "relu"), init: str = "default",
                seed: int = 0, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> list[dict]:
    """At initialisation, one row per (kind, activation, depth): the gradient norm of the first
    and last layer's weights and their ratio (``first / last`` << 1 means vanishing)."""
    x, y = batch if batch is not None else digits_batch(seed=seed)
    x = x.flatten(1)  # (B, 64)
    rows = []
    nets = [(k, a, d) for k in kinds for a in activations for d in depths]
    for kind, activation, depth in track(nets, "gradients: depth sweep", unit="net"):
        torch.manual_seed(seed)
        net = toy_net(kind, depth, activation=activation, in_features=x.shape[1],
                      num_classes=int(y.max()) + 1, init=init)
        per_layer = layer_gradient_norms(net, x, y)
        norms = list(per_layer.values())
        rows.append({"kind": kind, "activation": activation, "init": init, "depth": depth,
                     "first": norms[0], "last": norms[-1],
                     "ratio": norms[0] / max(norms[-1], 1e-30), "layer_norms": per_layer})
    return rows


def sweep_layer_rows(rows: list[dict]) -> list[dict]:
    """:func:`depth_sweep` rows in long form: one row per net and layer (``layer_index`` 1 is
    the first layer), for plotting the norm against depth inside each net."""
    return [{"kind": r["kind"], "activation": r["activation"], "init": r["init"],
             "depth": r["depth"], "layer_index": i + 1, "layer": name, "grad_norm": norm}
            for r in rows for i, (name, norm) in enumerate(r["layer_norms"].items())]


def gradient_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 5,
                     lr: float = 0.05, batch_size: int = 64) -> list[dict]:
    """Rows ``step, layer_index, layer, grad_norm`` at init (step 0) and after each SGD step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    rows = []
    for step in range(steps + 1):
        start = (step * batch_size) % max(1, len(y) - batch_size + 1)
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        norms = layer_gradient_norms(model, xb, yb)
        rows += [{"step": step, "layer_index": i, "layer": name, "grad_norm": value}
                 for i, (name, value) in enumerate(norms.items())]
        optimizer.step()
    return rows


def model_batch(model_name: str, data: DataRequest | str = "digits", n: int = 512,
                seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A zoo model sized for ``data`` and ``n`` of its training images, prepared as fit does."""
    from cnnlab.data.pipeline import make_preprocess, to_batch_source
    from cnnlab.models import create, default_input_size

    images = DataRequest.of(data).load("train")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    images = images.subset(pick)
    c, h, w = default_input_size(model_name)
    c = images.image_shape[0]
    preprocess = make_preprocess(images, c, (h, w), "auto")
    source = to_batch_source(images, preprocess, batch_size=n, device=torch.device("cpu"))
    x, y = next(source.batches())
    torch.manual_seed(seed)
    model = create(model_name, num_classes=len(images.classes), in_channels=c,
                   input_size=(c, h, w))
    return model, x, y


def plot_sweep(rows: list[dict], path: str | Path) -> Path:
    """First-layer gradient norm against depth (log scale), one line per kind x activation."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in dict.fromkeys((r["kind"], r["activation"]) for r in rows):
        mine = [r for r in rows if (r["kind"], r["activation"]) == key]
        ax.plot([r["depth"] for r in mine], [r["first"] for r in mine], marker="o",
                label=f"{key[0]} {key[1]}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden layers")
    return save_plot(fig, ax, path, title="vanishing gradients (lecture 002)",
                       ylabel="||dC/dW|| of the first layer at init")


def plot_profiles(profiles: dict[str, list[dict]], path: str | Path) -> Path:
    """Per-layer gradient norm at init (solid) and after the last step (dashed), per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rows in profiles.items():
        last = max(r["step"] for r in rows)
        for step, style in ((0, "-"), (last, "--")):
            mine = [r for r in rows if r["step"] == step]
            ax.plot([r["layer_index"] for r in mine], [r["grad_norm"] for r in mine], style,
                    label=f"{name} step {step}")
    ax.set_yscale("log")
    ax.set_xlabel("layer (input -> output)")
    ax.set_ylabel("||dC/dW||")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return write_figure(fig, path)


def profile_report(models: Sequence[str], out: str | Path, *, data: DataRequest | str = "digits",
                   steps: int = 5, lr: float = 0.05) -> dict[str, list[dict]]:
    """:func:`gradient_profile` of each zoo model; ``out/gradients.csv`` and ``.png``."""
    profiles = {}
    for name in track(models, "gradients: profiling", unit="model"):
        model, x, y = model_batch(name, data)
        profiles[name] = gradient_profile(model, x, y, steps=steps, lr=lr)
    rows = [{"model": name, **r} for name, rows in profiles.items() for r in rows]
    write_csv(rows, Path(out) / "gradients.csv")
    plot_profiles(profiles, Path(out) / "gradients.png")
    return profiles


def sweep_report(depths: Sequence[int], out: str | Path, **options) -> list[dict]:
    """:func:`depth_sweep` as ``out/gradient-depths.csv`` (first and last layer) and ``.png``,
    and every layer's norm as ``out/gradient-depths-layers.csv`` (:func:`sweep_layer_rows`)."""
    rows = depth_sweep(depths, **options)
    write_csv([{k: v for k, v in r.items() if k != "layer_norms"} for r in rows],
              Path(out) / "gradient-depths.csv")
    write_csv(sweep_layer_rows(rows), Path(out) / "gradient-depths-layers.csv")
    plot_sweep(rows, Path(out) / "gradient-depths.png")
    return rows
