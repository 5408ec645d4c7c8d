"""The training loop as plain code: ``train_one_epoch`` and ``evaluate``.

No hooks, no callbacks: the caller (:mod:`cnnlab.train.fit`) decides when to validate, save and
stop. A stop request (Ctrl-C / SIGTERM) is a flag checked between steps, so the checkpoint is
written at a safe point, never inside a signal handler.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from cnnlab.data.pipeline import BatchSource
from cnnlab.errors import ResourceError, TrainingDiverged, is_out_of_memory
from cnnlab.progress import Progress
from cnnlab.tasks import Task
from cnnlab.train.optim import lr_at, set_lr

CLASSIFY = Task()  # the default task: one class per image


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
    observers: dict = field(default_factory=dict)  # what observers must resume (patience)

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


@contextlib.contextmanager
def out_of_memory_as_error(where: str, batch_size: int, device: torch.device,
                           advice: str | None = None):
    """Turn an allocator failure inside the block into a ResourceError naming the batch size
    (or saying ``advice``, where the batch size is not what fills the memory)."""
    try:
        yield
    except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(error):
            raise
        advice = advice or (f"try --batch-size {max(1, batch_size // 2)}, --precision bf16 or "
                            "a smaller --image-size")
        raise ResourceError(
            f"out of memory {where} with --batch-size {batch_size} on {device}; {advice} "
            "(the last complete checkpoint is kept)") from error


@dataclass
class StepTotals:
    """One step's summed loss, correct count, sample count and stop request.

    A data-parallel run sums these over the ranks (:class:`cnnlab.train.distributed.StepSync`).
    """

    loss_sum: float
    correct: int
    seen: int
    stop: bool


@dataclass(frozen=True)
class StepInfo:
    """What one optimizer step did, for the observers (:mod:`cnnlab.train.observers`).

    ``batch`` and ``step`` count the steps taken so far (this one included); ``loss`` is the
    step's mean loss, ``correct`` and ``seen`` its samples (summed over data-parallel ranks).
    """

    epoch: int
    batch: int
    step: int
    loss: float
    correct: float
    seen: int
    lr: float


@dataclass
class Schedule:
    """What ``lr_at`` needs: total steps, steps per epoch and the config; ``lr_scale``
    multiplies the scheduled rate (a control an observer may change between steps)."""

    total_steps: int
    steps_per_epoch: int
    config: object
    lr_scale: float = 1.0

    def lr(self, step: int) -> float:
        return self.lr_scale * lr_at(step, self.total_steps, self.steps_per_epoch, self.config)


def train_one_epoch(
    model: nn.Module, source: BatchSource, optimizer: torch.optim.Optimizer, state: TrainState,
    *, schedule: Schedule, seed: int, precision: str, label_smoothing: float = 0.0,
    stop: StopFlag | None = None, on_step: Callable[[StepInfo], None] | None = None,
    sync: object | None = None,
    task: Task = CLASSIFY, lookahead: object | None = None,
) -> bool:
    """Train from ``state.batch`` to the end of ``state.epoch``; False if stopped early.

    ``lookahead`` (:class:`cnnlab.train.lookahead.Lookahead`) is updated after every step.

    ``sync`` (data parallel) sums each step's totals over the ranks and rescales this rank's
    loss so that DDP's gradient mean is the mean over the whole global batch.

    Raises TrainingDiverged (naming epoch, batch and step) on a NaN/Inf loss, before the
    optimizer applies that step, and ResourceError (naming the batch size) when out of memory.
    """
    model.train()
    device = source.images.device
    for x, y in source.batches(seed=seed, epoch=state.epoch, shuffle=True, start=state.batch):
        set_lr(optimizer, schedule.lr(state.step))
        where = f"at epoch {state.epoch + 1}, batch {state.batch}, step {state.step}"
        with out_of_memory_as_error(where, source.batch_size, device):
            with autocast(device, precision):
                loss, logits = training_loss(model(x), y, task, label_smoothing)
            totals = StepTotals(loss.item() * y.shape[0], task.correct(logits, y),
                                y.shape[0], bool(stop))
            if sync is not None:  # every rank sees the global totals and stops together
                totals = sync.all_reduce(totals)
                loss = loss * (y.shape[0] * sync.world_size / totals.seen)
            loss_value = totals.loss_sum / totals.seen
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"loss became {loss_value} {where}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        state.step += 1
        if lookahead is not None:
            lookahead.update(state.step)
        state.batch += 1
        state.loss_sum += totals.loss_sum
        state.correct += totals.correct
        state.seen += totals.seen
        if on_step is not None:
            on_step(StepInfo(state.epoch, state.batch, state.step, totals.loss_sum / totals.seen,
                             totals.correct, totals.seen, optimizer.param_groups[0]["lr"]))
        if totals.stop:
            return False
    return True


AUX_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers (Szegedy et al. 2014, sec. 5)


def training_loss(outputs: torch.Tensor | tuple, y: torch.Tensor, task: Task,
                  label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, main logits); a tuple output is (main, *auxiliary heads), each auxiliary loss
    "added to the total loss of the network with a discount weight" of 0.3 (GoogLeNet), or
    the tuple's own ``loss_weights`` (a Caffe net's ``loss_weight``, main first)."""
    if not isinstance(outputs, tuple):
        return task.loss(outputs, y, label_smoothing), outputs
    logits, *auxiliary = outputs
    weights = getattr(outputs, "loss_weights", None) or (1.0,) + (AUX_WEIGHT,) * len(auxiliary)
    loss = task.loss(logits, y, label_smoothing)
    if weights[0] != 1.0:
        loss = weights[0] * loss
    for weight, extra in zip(weights[1:], auxiliary, strict=True):
        loss = loss + weight * task.loss(extra, y, label_smoothing)
    return loss, logits


def batch_logits(model: nn.Module, x: torch.Tensor, precision: str, tta: str) -> torch.Tensor:
    """float32 logits of one batch; ``tta`` (e.g. ``"flip,translate"``): the weighted mean over
    the views of :func:`cnnlab.data.augment.tta_views` (airbench's test-time augmentation)."""
    from cnnlab.data.augment import tta_views

    with autocast(x.device, precision):
        return sum(weight * model(view).float() for weight, view in tta_views(x, tta))


@torch.inference_mode()
def predict_logits(model: nn.Module, source: BatchSource, *, precision: str = "fp32",
                   tta: str = "", progress: str = "") -> torch.Tensor:
    """Logits ``(N, num_classes)`` for every sample of ``source``, in order, as float32 on CPU;
    ``progress``: name the pass on stderr when it takes over 2 s (:mod:`cnnlab.progress`)."""
    model.eval()
    outputs = []
    for x, _ in batches_with_progress(source, progress):
        with out_of_memory_as_error("while evaluating", source.batch_size, x.device):
            outputs.append(batch_logits(model, x, precision, tta).cpu())
    return torch.cat(outputs)


@torch.inference_mode()
def evaluate(model: nn.Module, source: BatchSource, *, precision: str = "fp32",
             task: Task = CLASSIFY, tta: str = "", progress: str = "") -> dict:
    """Loss and the metrics of ``task`` on ``source`` (``loss``, ``acc``, and e.g. ``map`` or
    ``miou``), accumulated batch by batch by the task's meter (dense outputs of a whole split
    would not fit in memory); ``progress`` as in :func:`predict_logits`."""
    model.eval()
    meter = None
    for x, y in batches_with_progress(source, progress):
        with out_of_memory_as_error("while evaluating", source.batch_size, x.device):
            logits = batch_logits(model, x, precision, tta).cpu()
        meter = meter or task.meter(logits.shape[1])
        meter.update(logits, y.cpu())
    return meter.result()


def batches_with_progress(source: BatchSource, desc: str):
    """``source.batches()`` in order; with ``desc``, progress in images on stderr."""
    if not desc:
        yield from source.batches()
        return
    with Progress(len(source), desc, unit="image") as progress:
        for x, y in source.batches():
            yield x, y
            progress.update(x.shape[0])
