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
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.choices import FINETUNE_MODES
from cnnlab.config import TrainConfig, load_config
from cnnlab.errors import CheckpointError, ConfigError, ModelError, choices_hint
from cnnlab.runs.layout import CONFIG, FINETUNE
from cnnlab.runs.reader import open_run
from cnnlab.train.epochs import EpochTrainer
from cnnlab.train.fit import RunResult, fit
from cnnlab.train.loop import StepInfo
from cnnlab.train.observers import Observer
from cnnlab.train.optim import apply_param_options, parameter_groups, set_lr
from cnnlab.weightfile import load_state_checked

MODES = FINETUNE_MODES


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
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"finetune: unknown setting {unknown[0]!r} (settings are the fields "
                          f"of cnnlab.TrainConfig)")
    return TrainConfig(**{k: v for k, v in values.items() if v is not None})


def make_prepare(source: Source | None, config: TrainConfig, *, freeze: str | None,
                 new_head: bool, lr_pretrained: float, lr_new: float,
                 head_at_lr_new: bool | None = None, pretrained: bool = True):
    """``fit``'s ``prepare`` hook: load source weights, freeze, return discriminative groups.

    ``head_at_lr_new`` (default: ``new_head``) trains the classifier at ``lr_new`` even when it
    is kept; ``pretrained=False`` loads nothing (training from scratch, every layer at lr_new);
    ``source=None`` (resuming) loads nothing but freezes and groups as the run started.
    """
    fast_head = new_head if head_at_lr_new is None else head_at_lr_new

    def prepare(model: nn.Module) -> list[dict]:
        if not hasattr(model, "reset_classifier"):
            raise ModelError(f"{config.model}: transfer needs a zoo/spec model with a head")
        if not pretrained:
            return discriminative_groups(model, new_head=True, lr_pretrained=lr_new,
                                         lr_new=lr_new, weight_decay=config.weight_decay)
        if source is None:  # resuming: the run's own checkpoint holds the weights
            freeze_layers(model, frozen_names(model, freeze))
            return discriminative_groups(model, new_head=fast_head, lr_pretrained=lr_pretrained,
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
             limit_per_class: int | None = None, log=print, observers: list = (),
             **overrides: object) -> RunResult:
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
    if new_head:
        log(f"notice: {data} has {len(classes)} classes, {source.path} was trained on "
            f"{len(source.meta.get('classes') or [])}: its classifier is replaced by a new, "
            f"randomly initialised one for {len(classes)} classes (trained at --lr-new {lr_new:g})")
    log(f"transfer {source.path} -> {data}: {json.dumps(settings)}")
    definition = source.meta["model"].get("definition")  # a file-defined model's own text
    trainer = HeadOnFeatures() if mode == "features" else None
    return fit(config, prepare=prepare, log=log, definition=definition, trainer=trainer,
               observers=[SaveSettings(settings), *observers])


class SaveSettings(Observer):
    """Writes ``RUN/finetune.json`` as the run starts, so an interrupted run can resume."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings

    def on_run_start(self, run) -> None:
        if run.dist.is_main:
            run.folder.write_bytes(FINETUNE, json.dumps(self.settings, indent=2).encode())


def resume_finetune(run_dir: str | Path, *, log=print, stop_after_epochs: int | None = None,
                    observers: list = (), break_lock: bool = False) -> RunResult:
    """Continue an interrupted fine-tuning run with the freezing, learning rates and mode it
    started with (``RUN/finetune.json``); ``cnnlab train --resume RUN`` calls this."""
    try:
        settings = json.loads((Path(run_dir) / FINETUNE).read_text())
        config = load_config(Path(run_dir) / CONFIG)
        prepare = make_prepare(None, config, freeze=settings["freeze"],
                               new_head=bool(settings["new_head"]),
                               lr_pretrained=float(settings["lr_pretrained"]),
                               lr_new=float(settings["lr_new"]),
                               head_at_lr_new=settings["new_head"] or settings["mode"] == "features")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{run_dir}: unreadable {FINETUNE} ({error})") from None
    trainer = HeadOnFeatures() if settings["mode"] == "features" else None
    return fit(config, resume=run_dir, prepare=prepare, log=log, trainer=trainer,
               stop_after_epochs=stop_after_epochs, observers=observers, break_lock=break_lock)


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


class HeadOnFeatures(EpochTrainer):
    """Solution II, "use h_S as a feature extractor": the frozen body's output (the head's
    input) is computed once for every image, then only the head trains on it, with the run's
    optimizer, schedule, stop signals, checkpoints and observers (the whole network is saved).
    Batches follow ``(seed, epoch)`` so a resumed run sees the same ones."""

    def __init__(self) -> None:
        self.train_x: torch.Tensor | None = None
        self.val_x: torch.Tensor | None = None

    def _cache(self, run) -> None:
        if self.train_x is None:
            self.train_x = head_inputs(run.model, run.train)
            self.val_x = head_inputs(run.model, run.val) if run.val is not None else None

    def train_epoch(self, run, stop, on_step) -> bool:
        self._cache(run)
        config, state, head = run.config, run.state, run.model.get_classifier()
        labels = run.train.labels
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(
            config.seed * 1_000_003 + state.epoch)).to(labels.device)
        head.train()
        for index in list(order.split(config.batch_size))[state.batch:]:
            set_lr(run.optimizer, run.schedule.lr(state.step))
            logits = head(self.train_x[index])
            loss = run.task.loss(logits, labels[index], config.label_smoothing)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            correct = run.task.correct(logits, labels[index])
            state.step, state.batch, state.seen = state.step + 1, state.batch + 1, \
                state.seen + len(index)
            state.loss_sum += loss.item() * len(index)
            state.correct += correct
            on_step(StepInfo(state.epoch, state.batch, state.step, loss.item(), correct,
                             len(index), run.optimizer.param_groups[0]["lr"]))
            if stop:
                return False
        return True

    @torch.no_grad()
    def validate(self, run) -> dict:
        self._cache(run)
        head = run.model.get_classifier().eval()
        meter = run.task.meter(0)
        meter.update(head(self.val_x), run.val.labels)
        return meter.result()
