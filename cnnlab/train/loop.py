"""The training loop as plain code: ``train_one_epoch`` and ``evaluate``.

No hooks, no callbacks: the caller (:mod:`cnnlab.train.fit`) decides when to validate, save and
stop. A stop request (Ctrl-C / SIGTERM) is a flag checked between steps, so the checkpoint is
written at a safe point, never inside a signal handler.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.pipeline import BatchSource
from cnnlab.errors import TrainingDiverged
from cnnlab.train.optim import lr_at, set_lr


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint so resume continues exactly."""

    epoch: int = 0  # current epoch (0-based); == epochs when finished
    batch: int = 0  # next batch index within the epoch
    step: int = 0  # global optimizer steps taken
    loss_sum: float = 0.0  # running sums of the current epoch
    correct: int = 0
    seen: int = 0
    best_metric: float = -math.inf
    best_epoch: int = -1

    def to_dict(self) -> dict:
        values = asdict(self)
        if math.isinf(values["best_metric"]):
            values["best_metric"] = None
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainState:
        values = dict(values)
        if values.get("best_metric") is None:
            values["best_metric"] = -math.inf
        return cls(**values)

    def start_epoch(self) -> None:
        self.batch, self.loss_sum, self.correct, self.seen = 0, 0.0, 0, 0


class StopFlag:
    """Set by a signal handler; read by the loop between steps."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def request(self, signum: int, _frame: object = None) -> None:
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU/CUDA when ``precision == "bf16"``, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Schedule:
    """What ``lr_at`` needs: total steps, steps per epoch and the config."""

    total_steps: int
    steps_per_epoch: int
    config: object


def train_one_epoch(
    model: nn.Module, source: BatchSource, optimizer: torch.optim.Optimizer, state: TrainState,
    *, schedule: Schedule, seed: int, precision: str, label_smoothing: float = 0.0,
    stop: StopFlag | None = None, progress: object | None = None,
) -> bool:
    """Train from ``state.batch`` to the end of ``state.epoch``; False if stopped early.

    Raises TrainingDiverged (naming epoch, batch and step) on a NaN/Inf loss, before the
    optimizer applies that step.
    """
    model.train()
    device = source.images.device
    for x, y in source.batches(seed=seed, epoch=state.epoch, shuffle=True, start=state.batch):
        set_lr(optimizer, lr_at(state.step, schedule.total_steps, schedule.steps_per_epoch,
                                schedule.config))
        with autocast(device, precision):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"loss became {loss_value} at epoch {state.epoch + 1}, batch "
                                   f"{state.batch}, step {state.step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state.step += 1
        state.batch += 1
        state.loss_sum += loss_value * y.shape[0]
        state.correct += int((logits.argmax(1) == y).sum())
        state.seen += y.shape[0]
        if progress is not None:
            progress.update(y.shape[0], state)
        if stop:
            return False
    return True


@torch.inference_mode()
def predict_logits(model: nn.Module, source: BatchSource, *, precision: str = "fp32") -> torch.Tensor:
    """Logits ``(N, num_classes)`` for every sample of ``source``, in order, as float32 on CPU."""
    model.eval()
    device = source.images.device
    outputs = []
    for x, _ in source.batches():
        with autocast(device, precision):
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs)


def evaluate(model: nn.Module, source: BatchSource, *, precision: str = "fp32") -> dict:
    """Loss and top-1 accuracy of ``model`` on ``source``."""
    logits = predict_logits(model, source, precision=precision)
    labels = source.labels.cpu()
    return {
        "loss": float(F.cross_entropy(logits, labels)),
        "acc": float((logits.argmax(1) == labels).float().mean()),
    }


class Progress:
    """A tqdm bar per epoch showing loss, accuracy and images/s (silent when disabled)."""

    def __init__(self, enabled: bool, total: int, epoch: int, epochs: int, done: int) -> None:
        self.bar = None
        self.start, self.images = time.perf_counter(), 0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}/{epochs}",
                            unit="img", leave=False, dynamic_ncols=True)

    def update(self, n: int, state: TrainState) -> None:
        self.images += n
        if self.bar is not None:
            self.bar.update(n)
            if state.batch % 10 == 0:
                self.bar.set_postfix(loss=f"{state.loss_sum / state.seen:.4f}",
                                     acc=f"{state.correct / state.seen:.4f}",
                                     ips=f"{self.rate():.0f}", refresh=False)

    def rate(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
