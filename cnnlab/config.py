"""The flat, typed configuration of a training run.

A run saves its resolved config as ``RUN/config.yaml``; ``cnnlab train --config RUN/config.yaml``
re-runs it. Every field is one CLI flag of ``cnnlab train`` with the same name.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnnlab.errors import ConfigError


@dataclass
class TrainConfig:
    """Everything that defines a training run (units in comments)."""

    # what
    model: str = "lenet5"
    model_options: dict = field(default_factory=dict)  # builder keyword options
    data: str = "digits"  # data set name or folder path
    task: str = "classify"  # classify | multilabel | segment (see cnnlab.tasks)
    class_weights: str = "none"  # none | median (segment: median-frequency weighted loss)
    data_root: str | None = None
    download: bool = False
    image_size: int | None = None  # square side fed to the model; None = model default
    resize: str = "auto"  # auto | pad | resize: how images are fitted to image_size
    val_fraction: float = 0.1  # of the training split, chosen by seed
    train_per_class: int | None = None  # keep only this many training images per class (seeded)
    skip_bad: bool = False
    # optimisation
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | muon | adam | adamw
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # constant | step | cosine | onecycle | triangle
    step_epochs: int = 10  # step schedule: multiply by step_gamma every step_epochs
    step_gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: str = ""  # e.g. "crop:4,flip" (see cnnlab.data.augment)
    bias_lr_scale: float = 1.0  # lr multiplier of biases and norm shifts (airbench: 64)
    lookahead: float = 0.0  # slow-weight decay per update, ramped by (step/total)^3; 0 = off
    lookahead_every: int = 5  # optimizer steps between lookahead updates
    muon_lr: float = 0.24  # --optimizer muon: peak lr of the conv filters (airbench94_muon)
    muon_momentum: float = 0.6  # --optimizer muon: the filters' Nesterov momentum
    muon_normalize: bool = False  # rescale filters to norm sqrt(out) each step (BN nets only)
    tta: str = ""  # test-time views of the final test: "", "flip", "translate", "flip,translate"
    # execution
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    channels_last: bool = False
    compile: bool = False  # torch.compile the model (falls back to eager with a warning)
    threads: int | None = None  # torch CPU threads; None = torch default
    deterministic: bool = False  # torch.use_deterministic_algorithms (+ cuBLAS setting on CUDA)
    tensorboard: bool = False  # also log scalars and first-layer filters to RUN/tensorboard
    dist_timeout: float = 300.0  # data parallel: seconds a collective waits for a silent rank
    # output
    out: str = "runs"  # parent directory of run directories
    name: str | None = None  # run directory name; None = <model>-<data>-<time>
    checkpoint_every: int = 1  # epochs between "last" checkpoints
    snapshot_epochs: list[int] = field(default_factory=list)  # extra kept snapshots
    progress: bool = True

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work, naming the flag."""
        from cnnlab.tasks import get_task

        task = get_task(self.task)
        _choice("optimizer", self.optimizer, ("sgd", "muon", "adam", "adamw"))
        _choice("schedule", self.schedule, ("constant", "step", "cosine", "onecycle", "triangle"))
        _choice("device", self.device, ("auto", "cpu", "cuda"))
        _choice("precision", self.precision, ("fp32", "bf16"))
        _choice("resize", self.resize, ("auto", "pad", "resize"))
        _choice("class-weights", self.class_weights, ("none", "median"))
        task.check(self)
        for flag, value in (("epochs", self.epochs), ("batch-size", self.batch_size)):
            if value < 1:
                raise ConfigError(f"--{flag} must be >= 1, got {value}")
        if self.name is not None:
            check_run_name(self.name)
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.train_per_class is not None and self.train_per_class < 1:
            raise ConfigError(f"--train-per-class must be >= 1, got {self.train_per_class}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not self.dist_timeout > 0:
            raise ConfigError(f"--dist-timeout must be > 0 seconds, got {self.dist_timeout}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        self._validate_fast_cifar()

    def _validate_fast_cifar(self) -> None:
        """The airbench options: bias lr scale, lookahead and test-time augmentation."""
        from cnnlab.data.augment import parse_tta

        if not self.bias_lr_scale > 0:
            raise ConfigError(f"--bias-lr-scale must be > 0, got {self.bias_lr_scale}")
        if not 0 <= self.lookahead < 1:
            raise ConfigError(f"--lookahead must be in [0, 1) (e.g. 0.77), got {self.lookahead}")
        if self.lookahead_every < 1:
            raise ConfigError(f"--lookahead-every must be >= 1, got {self.lookahead_every}")
        if not self.muon_lr > 0:
            raise ConfigError(f"--muon-lr must be > 0, got {self.muon_lr}")
        if not 0 <= self.muon_momentum < 1:
            raise ConfigError(f"--muon-momentum must be in [0, 1), got {self.muon_momentum}")
        parse_tta(self.tta)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting {unknown[0]!r}")
        return cls(**values)


def check_run_name(name: str, flag: str = "--name") -> str:
    """A run name is one folder name: not empty, not ``.``/``..``, no path separator."""
    if not isinstance(name, str) or name.strip() in ("", ".", "..") or "\0" in name \
            or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise ConfigError(f"{flag} {name!r}: a run name must be a single folder name (no "
                          f"'/', not empty, not '.' or '..'); put parent folders in --out")
    return name


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"--{flag.replace('_', '-')} {value!r} is not one of: "
                          f"{', '.join(choices)}")


def config_yaml(config: TrainConfig) -> str:
    """``config`` as the YAML text ``cnnlab train --config`` reads back."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def save_config(config: TrainConfig, path: Path) -> None:
    """Write ``config`` as YAML (atomically) so ``cnnlab train --config`` re-runs it."""
    from cnnlab.files import atomic_write_bytes

    atomic_write_bytes(path, config_yaml(config).encode())


def load_config(path: str | Path) -> TrainConfig:
    """Read a config written by :func:`save_config` (or by hand)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return TrainConfig.from_dict(values, source=str(path))
