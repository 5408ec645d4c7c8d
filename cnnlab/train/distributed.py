"""Data-parallel training on ``torch.distributed``: gloo on CPU, NCCL on CUDA.

One process per device (``torchrun --nproc-per-node N -m cnnlab train ...`` or
``cnnlab train --nproc N``). Every rank holds the whole split in memory and walks the same
seeded epoch permutation; global batch ``b`` is cut into ``world_size`` disjoint contiguous
parts and rank ``r`` trains on part ``r`` (:class:`cnnlab.data.pipeline.BatchSource` does the
cut). ``--batch-size`` is the *global* batch, so the optimizer sees the same steps as a
single process, and each rank's loss is scaled so that DDP's gradient mean equals the
single-process mean even when the last batch splits unevenly.

Per step one small all-reduce sums ``[loss * n, correct, n, stop]`` over the ranks: the logged
loss is the global one, a NaN stops every rank at the same step, and a Ctrl-C/SIGTERM seen by
any rank stops all of them after the same step (no rank is left waiting in a collective).
Rank 0 alone writes the run directory. Evaluation gives each rank a contiguous shard of the
split and sums loss and correct counts, so every sample counts exactly once (a padded
``DistributedSampler`` would repeat samples to even out the shards and skew the metrics).

Resume works across a change of world size: a checkpoint records the global batch index, which
means the same thing whatever the number of ranks.

Example (2 CPU processes on one machine)::

    torchrun --standalone --nproc-per-node 2 -m cnnlab train --data digits --epochs 2
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cnnlab.data.pipeline import BatchSource
from cnnlab.train.loop import StepTotals, evaluate, predict_logits
from cnnlab.train.session import die_with_parent


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job; ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def setup(device: torch.device, *, timeout_s: float = 300.0) -> tuple[DistContext, torch.device]:
    """Join the process group described by torchrun's environment (or stay single).

    ``timeout_s`` (``--dist-timeout``) bounds how long a collective or the rendezvous store
    waits for a rank that went silent (hung, not dead: a dead rank's closed sockets fail the
    others at once) before raising, so a job never hangs for long.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``, which
    ``init_process_group`` reads itself). On CUDA each rank takes ``cuda:LOCAL_RANK``. Returns
    the context and the device this rank trains on.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE, device
    ctx = DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    die_with_parent()  # a worker never outlives the torchrun agent that started it
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        dist.init_process_group(backend, timeout=timeout, **_attempt_store(ctx, timeout),
                                **({"device_id": device} if device.type == "cuda" else {}))
        atexit.register(teardown)
    return ctx, device


def _attempt_store(ctx: DistContext, timeout: datetime.timedelta) -> dict:
    """Under ``torchrun --max-restarts``: the agent's store, with a prefix per attempt.

    torchrun keeps one store for all attempts, so a restarted job would read the dead
    workers' addresses and fail to connect ("Gloo connectFullMesh failed"); a fresh key prefix
    per restart avoids that. Outside torchrun's agent store this returns ``{}`` (env://).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          ctx.world_size, is_master=False, timeout=timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return {"store": dist.PrefixStore(f"cnnlab/attempt-{attempt}", store), "rank": ctx.rank,
            "world_size": ctx.world_size}


def teardown() -> None:
    """Leave the process group (registered with ``atexit`` by :func:`setup`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _sync_device() -> torch.device:
    """Collectives run on CUDA tensors under NCCL, CPU tensors under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_object(value: object, ctx: DistContext) -> object:
    """Rank 0's ``value`` on every rank (e.g. the run directory it created)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint others will read)."""
    if ctx.enabled:
        dist.barrier()


def agree(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. a stop request)."""
    if not ctx.enabled:
        return flag
    value = torch.tensor([float(flag)], device=_sync_device())
    dist.all_reduce(value)
    return bool(value.item() > 0)


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of rank ``rank`` among ``n`` items; shards differ by <= 1.

    Every index lands in exactly one shard (no padding):
    >>> [shard_range(7, r, 3) for r in range(3)]
    [(0, 3), (3, 5), (5, 7)]
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def shard_batches(source: BatchSource, ctx: DistContext) -> BatchSource:
    """The training source of this rank: its part of every global batch."""
    if not ctx.enabled:
        return source
    return dataclasses.replace(source, rank=ctx.rank, world_size=ctx.world_size)


class StepSync:
    """Sums one step's totals over the ranks (one all-reduce of 4 numbers per step)."""

    def __init__(self, ctx: DistContext) -> None:
        self.world_size = ctx.world_size

    def all_reduce(self, totals: StepTotals) -> StepTotals:
        values = torch.tensor([totals.loss_sum, totals.correct, totals.seen, float(totals.stop)],
                              dtype=torch.float64, device=_sync_device())
        dist.all_reduce(values)
        loss_sum, correct, seen, stop = values.tolist()
        return StepTotals(loss_sum, int(correct), int(seen), stop > 0)


def step_sync(ctx: DistContext) -> StepSync | None:
    """A :class:`StepSync` for data-parallel runs, ``None`` for a single process."""
    return StepSync(ctx) if ctx.enabled else None


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` that falls back to eager, with a warning, wherever it fails.

    Compilation happens at the first call; :class:`CompileFallback` catches a failure there
    (e.g. no C++ compiler, an unsupported operator) and keeps training eagerly.
    """
    try:
        compiled = torch.compile(model)
    except Exception as error:  # noqa: BLE001 - any backend failure means "run eagerly"
        warnings.warn(f"--compile unavailable ({type(error).__name__}: {error}); running "
                      "eagerly", RuntimeWarning, stacklevel=2)
        return model
    return CompileFallback(model, compiled)


class CompileFallback(nn.Module):
    """Calls the compiled module; on its first failure warns once and runs ``model`` eagerly."""

    def __init__(self, model: nn.Module, compiled: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.compiled: nn.Module | None = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as error:  # noqa: BLE001 - see compile_model
                warnings.warn(f"--compile failed ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); "
                              "running eagerly", RuntimeWarning, stacklevel=2)
                self.compiled = None
        return self.model(x)


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device, *,
               compile: bool = False) -> nn.Module:
    """The module ``train_one_epoch`` calls: ``model`` (its weights are what we save), optionally
    compiled, inside ``DistributedDataParallel`` when data parallel."""
    wrapped = model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
    return compile_model(wrapped) if compile else wrapped


def broadcast_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics) before evaluating."""
    if ctx.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def evaluate_sharded(model: nn.Module, source: BatchSource, ctx: DistContext, *,
                     precision: str = "fp32", tta: str = "", progress: str = "") -> dict:
    """Loss and top-1 accuracy over all of ``source``, each rank scoring one contiguous shard.

    Same result as :func:`cnnlab.train.loop.evaluate` on one process; ``count`` is the number of
    samples scored over all ranks (== ``len(source)``: every sample exactly once).
    """
    if not ctx.enabled:
        return {**evaluate(model, source, precision=precision, tta=tta, progress=progress),
                "count": len(source)}
    broadcast_buffers(model, ctx)
    start, stop = shard_range(len(source), ctx.rank, ctx.world_size)
    shard = dataclasses.replace(source, images=source.images[start:stop],
                                labels=source.labels[start:stop], rank=0, world_size=1)
    loss_sum, correct = 0.0, 0
    if stop > start:
        logits = predict_logits(model, shard, precision=precision, tta=tta,  # (n, classes)
                                progress=progress if ctx.is_main else "")
        labels = shard.labels.cpu()
        loss_sum = float(F.cross_entropy(logits, labels, reduction="sum"))
        correct = int((logits.argmax(1) == labels).sum())
    totals = torch.tensor([loss_sum, correct, stop - start], dtype=torch.float64,
                          device=_sync_device())
    dist.all_reduce(totals)
    loss_sum, correct, count = totals.tolist()
    return {"loss": loss_sum / count, "acc": correct / count, "count": int(count)}
