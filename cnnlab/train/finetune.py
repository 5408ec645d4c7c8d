"""Transfer learning as lecture 001 teaches it ("Transfer learning", "How to fine-tune?").

- The pre-trained weights initialise the new network; when the target's label set differs from
  the source's, the classifier is new ("different labels -> delete the layer and start over").
- ``freeze="conv2"`` keeps every layer up to and including ``conv2`` fixed. Frozen batch-norm
  layers become :class:`FrozenBatchNorm`, which always normalises with the source's running
  statistics: a plain ``requires_grad=False`` would still update them in ``model.train()`` mode
  (the classic trap).
- Discriminative learning rates: ``lr_pretrained`` (0.001, "a mild learning rate") for layers
  initialised from the source and ``lr_new`` (0.01, "aggressive") for the new classifier.
- ``mode="features"`` ("Solution II: use h_S as a feature extractor"): the classifier's inputs
  are computed once for every image, then only the classifier is trained on them.

A fine-tuning run is an ordinary run directory (``cnnlab.train.fit``), plus ``finetune.json``.

Example:
    >>> result = finetune("runs/lenet5-mnist", data="digits", freeze="features.3")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError, ModelError, choices_hint
from cnnlab.files import atomic_write_bytes
from cnnlab.runs import RunFolder
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.runs.layout import FINETUNE
from cnnlab.runs.reader import open_run
from cnnlab.train.fit import Run, RunResult, fit
from cnnlab.train.optim import apply_param_options, lr_at, parameter_groups, set_lr
from cnnlab.train.rundir import new_run_dir
from cnnlab.train.session import resolve_device
from cnnlab.weightfile import load_state_checked, model_state

MODES = ("finetune", "features", "scratch")


class FrozenBatchNorm(nn.Module):
    """Batch norm with fixed statistics and affine parameters (buffers, not parameters).

    Same state-dict keys as ``nn.BatchNorm2d``, so a checkpoint loads into the unfrozen model;
    ``train()`` changes nothing. Input ``(B, C, ...)`` -> same shape.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        c = bn.num_features
        ones, zeros = torch.ones(c), torch.zeros(c)
        self.eps = bn.eps
        self.register_buffer("weight", bn.weight.detach().clone() if bn.affine else ones)
        self.register_buffer("bias", bn.bias.detach().clone() if bn.affine else zeros)
        self.register_buffer("running_mean", bn.running_mean.clone())
        self.register_buffer("running_var", bn.running_var.clone())
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


def frozen_names(model: nn.Module, freeze: str | None) -> list[str]:
    """Parameter names up to and including layer ``freeze`` (``all``: all but the head)."""
    names = [name for name, _ in model.named_parameters()]
    if not freeze or freeze == "none":
        return []
    if freeze == "all":
        head = f"{model.head_path}."
        return [n for n in names if not n.startswith(head)]
    inside = [i for i, n in enumerate(names) if n.startswith(f"{freeze}.")]
    if not inside:
        layers = [n for n, m in model.named_modules() if any(True for _ in m.parameters(False))]
        raise ConfigError(f"--freeze: no layer with parameters named "
                          f"{choices_hint(freeze, ['none', 'all', *layers])}")
    return names[:inside[-1] + 1]


def freeze_layers(model: nn.Module, names: list[str]) -> None:
    """Stop gradients for ``names``; batch norms inside the frozen range (up to the last module
    holding a frozen parameter, in definition order) become :class:`FrozenBatchNorm` (statistics
    fixed too). With nothing frozen no batch norm is touched, ``affine=False`` ones included."""
    frozen = set(names)
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    modules = list(model.named_modules())
    owners = [i for i, (name, m) in enumerate(modules)
              if any(f"{name}.{p}" in frozen if name else p in frozen
                     for p, _ in m.named_parameters(recurse=False))]
    if not owners:
        return
    for name, module in modules[:max(owners) + 1]:
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and \
                all(f"{name}.{p}" in frozen for p, _ in module.named_parameters()):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child,
                    FrozenBatchNorm(module))


def discriminative_groups(model: nn.Module, *, new_head: bool, lr_pretrained: float,
                          lr_new: float, weight_decay: float) -> list[dict]:
    """Optimizer groups: pre-trained layers at ``lr_pretrained``, a new head at ``lr_new``.

    The run's ``lr`` is ``lr_new``; each group's ``lr_scale`` makes the schedule give it its own
    rate (see ``cnnlab.train.optim.set_lr``). Weight decay skips biases and norms as usual.
    """
    head = model.get_classifier()
    head_ids = {id(p) for p in head.parameters()} if new_head else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    pretrained = [p for p in trainable if id(p) not in head_ids]
    fresh = [p for p in trainable if id(p) in head_ids]
    groups = []
    for params, scale in ((pretrained, lr_pretrained / lr_new), (fresh, 1.0)):
        for group in parameter_groups(nn.ParameterList(params), weight_decay):
            groups.append({**group, "lr_scale": scale})
    if not groups:
        raise ConfigError("nothing left to train: every parameter is frozen")
    return apply_param_options(groups, model, weight_decay)  # a Caffe net's lr_mult/decay_mult


@dataclasses.dataclass
class Source:
    """The pre-trained checkpoint: weights, classes and how its model was built."""

    path: Path
    state: dict[str, torch.Tensor]
    meta: dict

    @classmethod
    def load(cls, checkpoint: str | Path) -> Source:
        run = open_run(checkpoint)
        return cls(run.checkpoint, run.weights(), run.meta)


def target_config(source: Source, data: str, **overrides: object) -> TrainConfig:
    """The source's recipe and architecture on ``data``, at ``lr_new``; ``overrides`` win."""
    values = {f.name: source.meta.get("config", {}).get(f.name) for f in
              dataclasses.fields(TrainConfig) if f.name in source.meta.get("config", {})}
    spec = source.meta["model"]
    values.update(model=spec["name"], model_options=dict(spec.get("options", {})), data=data,
                  image_size=spec["input_size"][1], name=None, snapshot_epochs=[])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**{k: v for k, v in values.items() if v is not None})


def make_prepare(source: Source, config: TrainConfig, *, freeze: str | None, new_head: bool,
                 lr_pretrained: float, lr_new: float, head_at_lr_new: bool | None = None,
                 pretrained: bool = True):
    """``fit``'s ``prepare`` hook: load source weights, freeze, return discriminative groups.

    ``head_at_lr_new`` (default: ``new_head``) trains the classifier at ``lr_new`` even when it
    is kept; ``pretrained=False`` loads nothing (training from scratch, every layer at lr_new).
    """
    fast_head = new_head if head_at_lr_new is None else head_at_lr_new

    def prepare(model: nn.Module) -> list[dict]:
        if not hasattr(model, "reset_classifier"):
            raise ModelError(f"{config.model}: transfer needs a zoo/spec model with a head")
        if not pretrained:
            return discriminative_groups(model, new_head=True, lr_pretrained=lr_new,
                                         lr_new=lr_new, weight_decay=config.weight_decay)
        state = dict(source.state)
        if new_head:  # "different labels -> delete the layer and start over"
            head = model.head_path
            state = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
            state.update({f"{head}.{k}": v for k, v in model.get_classifier().state_dict().items()})
        load_state_checked(model, state, source=str(source.path))
        freeze_layers(model, frozen_names(model, freeze))
        return discriminative_groups(model, new_head=fast_head, lr_pretrained=lr_pretrained,
                                     lr_new=lr_new, weight_decay=config.weight_decay)
    return prepare


def _target_classes(config: TrainConfig) -> tuple[list[str], int]:
    from cnnlab.data.datasets import load_dataset

    train = load_dataset(config.data, "train", root=config.data_root, download=config.download)
    return train.classes, train.image_shape[0]


def check_freeze(source: Source, freeze: str | None, num_classes: int) -> None:
    """Validate ``--freeze`` on the source architecture (shapes only) before anything runs."""
    from cnnlab.models import create

    spec = source.meta["model"]
    with torch.device("meta"):
        model = create(spec["name"], num_classes=num_classes, in_channels=spec["in_channels"],
                       input_size=tuple(spec["input_size"]),
                       definition=(spec.get("definition") or {}).get("text"),
                       **dict(spec.get("options", {})))
    if not hasattr(model, "head_path"):
        raise ModelError(f"{spec['name']}: transfer needs a zoo/spec model with a head")
    frozen_names(model, freeze)


def finetune(checkpoint: str | Path, *, data: str, mode: str = "finetune",
             freeze: str | None = None, lr_pretrained: float = 0.001, lr_new: float = 0.01,
             limit_per_class: int | None = None, log=print, **overrides: object) -> RunResult:
    """Transfer ``checkpoint`` to ``data``; returns the new run's :class:`RunResult`.

    ``mode``: ``finetune`` (all unfrozen layers train), ``features`` (the head alone, on
    features computed once, at ``lr_new``) or ``scratch`` (the same architecture, recipe and
    data, randomly initialised, every layer at ``lr_new``: the baseline). ``limit_per_class``
    trains on that many images per class of the target (a small target, lecture 001).
    ``overrides`` are TrainConfig fields (epochs, batch_size, out, name, seed, ...); the rest of
    the recipe is the source run's. ``lr`` is ``lr_new``.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown --mode {choices_hint(mode, list(MODES))}")
    if not (lr_pretrained > 0 and lr_new > 0):
        raise ConfigError("--lr-pretrained and --lr-new must be > 0")
    if limit_per_class is not None and limit_per_class < 1:
        raise ConfigError(f"--limit-per-class must be >= 1, got {limit_per_class}")
    if mode == "scratch" and freeze not in (None, "none"):
        raise ConfigError("--mode scratch trains every layer: drop --freeze")
    source = Source.load(checkpoint)
    config = target_config(source, data, lr=lr_new, train_per_class=limit_per_class, **overrides)
    classes, channels = _target_classes(config)
    if channels != source.meta["model"]["in_channels"]:
        raise ConfigError(f"{data} has {channels}-channel images but {source.path} was trained "
                          f"on {source.meta['model']['in_channels']}-channel ones")
    new_head = classes != source.meta.get("classes")
    if mode == "features":
        freeze, config = "all", dataclasses.replace(config, augment="")
    check_freeze(source, freeze, len(classes))
    prepare = make_prepare(source, config, freeze=freeze, new_head=new_head,
                           lr_pretrained=lr_pretrained, lr_new=lr_new,
                           head_at_lr_new=new_head or mode == "features",
                           pretrained=mode != "scratch")
    settings = {"source": str(source.path), "mode": mode, "freeze": freeze,
                "new_head": new_head, "lr_pretrained": lr_pretrained, "lr_new": lr_new,
                "limit_per_class": limit_per_class}
    log(f"transfer {source.path} -> {data}: {json.dumps(settings)}")
    definition = source.meta["model"].get("definition")  # a file-defined model's own text
    if mode == "features":
        result = train_head_on_features(config, prepare, log=log, definition=definition)
    else:
        result = fit(config, prepare=prepare, log=log, definition=definition)
    atomic_write_bytes(result.run_dir / FINETUNE, json.dumps(settings, indent=2).encode())
    return result


@torch.no_grad()
def head_inputs(model: nn.Module, source) -> torch.Tensor:
    """What the classifier receives for every image of ``source``: ``(N, D)``, computed once."""
    model.eval()
    captured: list[torch.Tensor] = []
    handle = model.get_classifier().register_forward_pre_hook(
        lambda _m, inputs: captured.append(inputs[0].detach()))
    try:
        for x, _ in source.batches():
            model(x)
    finally:
        handle.remove()
    return torch.cat(captured)


def train_head_on_features(config: TrainConfig, prepare, *, log=print,
                           definition: dict | None = None) -> RunResult:
    """Solution II: cache the head's inputs, train the head alone with the run's optimizer and
    schedule, save the whole network as a normal run (best epoch chosen on validation)."""
    config.validate()
    torch.manual_seed(config.seed)
    folder = new_run_dir(config)  # claimed and locked
    try:
        return _train_head(config, folder, prepare, log, definition)
    except BaseException:
        if not folder.has_checkpoint():
            folder.abandon()  # failed before training: leave nothing behind
        raise
    finally:
        folder.release()


def _train_head(config: TrainConfig, folder: RunFolder, prepare, log,
                definition: dict | None) -> RunResult:
    run_dir = folder.path
    run = Run(config, folder, resolve_device(config.device), prepare, definition=definition)
    run.write_setup()
    head, state = run.model.get_classifier(), run.state
    train_x, train_y = head_inputs(run.model, run.train), run.train.labels
    val = (head_inputs(run.model, run.val), run.val.labels) if run.val is not None else None
    for epoch in range(config.epochs):
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(
            config.seed * 1_000_003 + epoch)).to(train_y.device)
        head.train()
        for index in order.split(config.batch_size):
            set_lr(run.optimizer, lr_at(state.step, run.schedule.total_steps,
                                        run.schedule.steps_per_epoch, config))
            logits = head(train_x[index])
            loss = F.cross_entropy(logits, train_y[index])
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            state.step += 1
            state.loss_sum += loss.item() * len(index)
            state.correct += int((logits.argmax(1) == train_y[index]).sum())
            state.seen += len(index)
        _end_head_epoch(run, head, val, log)
    run.write_index("completed")
    test_acc = None
    if run.test is not None:
        tensors, _ = read_checkpoint(run_dir / "best.safetensors")
        run.model.load_state_dict(model_state(tensors))
        test_acc = run.evaluate(run.test)["acc"]
        log(f"test accuracy {test_acc:.4f} on {len(run.test)} images")
    val_acc = None if math.isinf(state.best_metric) else state.best_metric
    return RunResult(run_dir, "completed", state.epoch, val_acc, test_acc, state.best_epoch + 1)


@torch.no_grad()
def _end_head_epoch(run: Run, head: nn.Module, val, log) -> None:
    state = run.state
    record = {"epoch": state.epoch + 1, "step": state.step,
              "train_loss": state.loss_sum / max(state.seen, 1),
              "train_acc": state.correct / max(state.seen, 1),
              "lr": run.optimizer.param_groups[0]["lr"]}
    if val is not None:
        head.eval()
        logits = head(val[0])
        record.update(val_loss=float(F.cross_entropy(logits, val[1])),
                      val_acc=float((logits.argmax(1) == val[1]).float().mean()))
    metric = record.get("val_acc", record["train_acc"])
    improved = metric > state.best_metric
    if improved:
        state.best_metric, state.best_epoch = metric, state.epoch
    state.epoch += 1
    state.start_epoch()
    run.log(record)
    log(f"epoch {record['epoch']}/{run.config.epochs}  loss {record['train_loss']:.4f}  "
        f"val_acc {record.get('val_acc', float('nan')):.4f}")
    if improved:
        run.save("best", record)
    if state.epoch == run.config.epochs:
        run.save("last", record)
