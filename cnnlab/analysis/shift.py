"""Shift test: a CNN and an MLP of similar size, trained on centred digits, tested on shifted ones.

Lecture 003, "Curse of Dimensionality": a fully connected net sees a shifted digit as a new point
in pixel space, so it "must learn shift invariance from data!"; a convolutional net shares its
filters over positions (equivariance) and pools (local invariance), so it generalises to shifts
it never saw. Both models here have about the same number of parameters: the MLP's hidden width
is chosen to match the CNN's count. Shifts move the digit ``k`` pixels right (zero fill, exact for
integer ``k``); training uses no augmentation unless ``augment`` is given.

Example:
    >>> rows = shift_experiment("digits", epochs=5, shifts=(0, 1, 2))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cnnlab.analysis.features import pyplot, save_plot, write_csv
from cnnlab.analysis.invariance import apply_transform
from cnnlab.config import TrainConfig
from cnnlab.data.base import ImageSet
from cnnlab.data.pipeline import Preprocess, make_preprocess, to_batch_source
from cnnlab.data.request import DataRequest
from cnnlab.models.catalog import count_parameters
from cnnlab.progress import Progress
from cnnlab.train.loop import Schedule, TrainState, train_one_epoch
from cnnlab.train.optim import build_optimizer, parameter_groups


def small_cnn(in_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """conv5x5(16) relu pool2, conv5x5(32) relu pool2, fc 64, fc classes ("same" padding)."""
    c, h, w = in_shape
    return nn.Sequential(
        nn.Conv2d(c, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, H/2, W/2)
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, H/4, W/4)
        nn.Flatten(), nn.Linear(32 * (h // 4) * (w // 4), 64), nn.ReLU(),
        nn.Linear(64, num_classes))


def matching_mlp(in_shape: tuple[int, int, int], num_classes: int, parameters: int) -> nn.Module:
    """One hidden layer, its width chosen so the MLP has about ``parameters`` parameters."""
    d = in_shape[0] * in_shape[1] * in_shape[2]
    hidden = max(1, round((parameters - num_classes) / (d + 1 + num_classes)))
    return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


def train_model(model: nn.Module, data: ImageSet, preprocess: Preprocess,
                config: TrainConfig, desc: str = "training") -> None:
    """``config.epochs`` epochs with the training loop of ``cnnlab train`` (progress on
    stderr as ``desc``)."""
    from cnnlab.data.augment import parse_augment

    augment = parse_augment(config.augment) if config.augment else None
    source = to_batch_source(data, preprocess, batch_size=config.batch_size,
                             device=torch.device("cpu"), augment=augment)
    optimizer = build_optimizer(parameter_groups(model, config.weight_decay), config)
    steps = source.num_batches()
    schedule, state = Schedule(steps * config.epochs, steps, config), TrainState()
    torch.manual_seed(config.seed)
    with Progress(len(data) * config.epochs, desc, unit="image") as progress:
        for _ in range(config.epochs):
            train_one_epoch(model, source, optimizer, state, schedule=schedule,
                            seed=config.seed, precision="fp32",
                            on_step=lambda step: progress.update(step.seen))
            state.epoch += 1
            state.start_epoch()


@torch.no_grad()
def shifted_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     preprocess: Preprocess, shift: float) -> float:
    """Accuracy on ``images`` (float [0, 1]) moved ``shift`` pixels right."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), 500):
        x = apply_transform(images[start:start + 500], "translate", shift)
        correct += int((model(preprocess.normalize(x)).argmax(1) ==
                        labels[start:start + 500]).sum())
    return correct / len(labels)


def _subset(data: ImageSet, limit: int | None, seed: int) -> ImageSet:
    if limit is None or limit >= len(data):
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(order[:limit].sort().values)


def shift_experiment(data: DataRequest | str = "mnist", *, shifts: Sequence[float] = (0, 1, 2, 3, 4, 6, 8),
                     epochs: int = 3, train_limit: int | None = 10000,
                     test_limit: int | None = 2000, augment: str = "", lr: float = 0.05,
                     seed: int = 0) -> list[dict]:
    """Train the CNN and the matching MLP on ``data`` (a name or a
    :class:`~cnnlab.data.request.DataRequest`); one row per (model, shift)."""
    request = DataRequest.of(data)
    train = _subset(request.load("train"), train_limit, seed)
    test = _subset(request.load("test"), test_limit, seed)
    shape = train.image_shape
    preprocess = make_preprocess(train, shape[0], shape[1:], "auto")
    config = TrainConfig(epochs=epochs, lr=lr, augment=augment, seed=seed, batch_size=64)
    torch.manual_seed(seed)
    cnn = small_cnn(shape, len(train.classes))
    models = {"cnn": cnn, "mlp": matching_mlp(shape, len(train.classes), count_parameters(cnn))}
    images = test.images.float() / 255  # (N, C, H, W) in [0, 1]
    rows = []
    for name, model in models.items():
        train_model(model, train, preprocess, config, desc=f"shift-test: training the {name}")
        for shift in shifts:
            rows.append({"model": name, "parameters": count_parameters(model),
                         "shift": shift, "accuracy": shifted_accuracy(
                             model, images, test.labels, preprocess, shift)})
    return rows


def plot_shift(rows: list[dict], path: str | Path) -> Path:
    """Test accuracy against shift, one line per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        ax.plot([r["shift"] for r in mine], [100 * r["accuracy"] for r in mine], marker="o",
                label=f"{name} ({mine[0]['parameters']:,} parameters)")
    ax.set_xlabel("shift (pixels right)")
    return save_plot(fig, ax, path, title="trained on centred digits (lecture 003)",
                       ylabel="test accuracy (%)")


def shift_report(data: DataRequest | str, out: str | Path, **options) -> list[dict]:
    """:func:`shift_experiment` as ``out/shift-test.csv`` and ``.png``."""
    rows = shift_experiment(data, **options)
    write_csv(rows, Path(out) / "shift-test.csv")
    plot_shift(rows, Path(out) / "shift-test.png")
    return rows
