"""The flat, typed configuration of a training run, each setting described once.

A run saves its resolved config as ``RUN/config.yaml``; ``cnnlab train --config RUN/config.yaml``
re-runs it. Every field is one flag of ``cnnlab train`` with the same name (``batch_size`` ->
``--batch-size``); the flags, their groups, help texts, choices and bounds are generated from
the field definitions below (:func:`setting`), so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnnlab.errors import ConfigError
from cnnlab.files import atomic_write_bytes
from cnnlab.yamltext import load_yaml

GROUPS = ("data", "model", "optimisation", "schedule", "augmentation", "speed", "run")
MAX_IMAGE_SIZE = 4096  # pixels per side (issue 18: bounded before anything is allocated)
MAX_SEED = 2 ** 63 - 1


def setting(default=dataclasses.MISSING, *, group: str, help: str, factory=None,
            choices: tuple[str, ...] | None = None, low: float | None = None,
            high: float | None = None, low_open: bool = False, high_open: bool = False,
            flag: str | None = None):
    """A TrainConfig field with its help text, flag group, choices and allowed range
    (``[low, high]``; ``low_open``/``high_open`` exclude that end)."""
    assert group in GROUPS, group
    meta = {"group": group, "help": help, "choices": choices, "low": low, "high": high,
            "low_open": low_open, "high_open": high_open, "flag": flag}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything that defines a training run."""

    # data
    data: str = setting("digits", group="data",
                        help="data set name (see `cnnlab datasets`) or image-folder path")
    data_root: str | None = setting(None, group="data",
                                    help="directory holding data sets (also $CNNLAB_DATA)")
    download: bool = setting(False, group="data",
                             help="download a missing named data set from its official source")
    skip_bad: bool = setting(False, group="data",
                             help="skip unreadable images with a warning instead of stopping")
    data_budget: float | None = setting(None, group="data", low=0, low_open=True,
                                        help="GiB of memory a data set may take (default: "
                                             "min(8, half the RAM))")
    val_fraction: float = setting(0.1, group="data", low=0, high=1, high_open=True,
                                  help="fraction of the training split held out for validation")
    train_per_class: int | None = setting(None, group="data", low=1,
                                          help="train on only N images per class (seeded, "
                                               "before the validation split)")
    # model
    model: str = setting("lenet5", group="model",
                         help="zoo name (`cnnlab models`), spec string like c5x6-relu-p2-f10, "
                              "or a YAML file")
    model_options: dict = setting(group="model", factory=dict, flag="option",
                                  help="model option KEY=VALUE, repeatable "
                                       "(e.g. --option activation=relu)")
    task: str = setting("classify", group="model",
                        help="what is learned: classify, multilabel (sigmoid + BCE), segment "
                             "(a class per pixel), detect (boxes: CenterNet) or instance (a "
                             "mask per object) on scene sets or COCO folders (see cnnlab.tasks)")
    class_weights: str = setting("none", group="model", choices=("none", "median"),
                                 help="segment: median-frequency class weights (SegNet)")
    image_size: int | None = setting(None, group="model", low=1, high=MAX_IMAGE_SIZE,
                                     help="side of the square model input (default: the "
                                          "model's own)")
    resize: str = setting("auto", group="model", choices=("auto", "pad", "resize"),
                          help="how images are fitted to --image-size")
    # optimisation
    epochs: int = setting(10, group="optimisation", low=1,
                          help="passes over the training data")
    batch_size: int = setting(64, group="optimisation", low=1,
                              help="images per optimizer step (the global batch)")
    optimizer: str = setting("sgd", group="optimisation",
                             choices=("sgd", "muon", "adam", "adamw"),
                             help="muon: orthogonalised momentum for conv filters, SGD for "
                                  "the rest")
    lr: float = setting(0.05, group="optimisation", low=0, low_open=True,
                        help="peak learning rate")
    momentum: float = setting(0.9, group="optimisation", low=0, high=1, high_open=True,
                              help="SGD momentum (Adam: beta1)")
    nesterov: bool = setting(False, group="optimisation", help="Nesterov momentum (SGD)")
    weight_decay: float = setting(5e-4, group="optimisation", low=0,
                                  help="L2 weight decay on conv/linear weights (not biases "
                                       "or norms)")
    label_smoothing: float = setting(0.0, group="optimisation", low=0, high=1, high_open=True,
                                     help="label smoothing of the cross-entropy, e.g. 0.1")
    bias_lr_scale: float = setting(1.0, group="optimisation", low=0, low_open=True,
                                   help="learning-rate multiplier of biases and BatchNorm "
                                        "shifts (airbench: 64)")
    lookahead: float = setting(0.0, group="optimisation", low=0, high=1, high_open=True,
                               help="lookahead slow-weight decay per update, e.g. 0.77 "
                                    "(0 = off)")
    lookahead_every: int = setting(5, group="optimisation", low=1,
                                   help="optimizer steps between lookahead updates")
    muon_lr: float = setting(0.24, group="optimisation", low=0, low_open=True,
                             help="--optimizer muon: peak learning rate of the conv filters")
    muon_momentum: float = setting(0.6, group="optimisation", low=0, high=1, high_open=True,
                                   help="--optimizer muon: Nesterov momentum of the filters")
    muon_normalize: bool = setting(False, group="optimisation",
                                   help="--optimizer muon: keep each conv's filters at norm "
                                        "sqrt(out) (only where BatchNorm follows the conv)")
    # schedule
    schedule: str = setting("cosine", group="schedule",
                            choices=("constant", "step", "cosine", "onecycle", "triangle"),
                            help="learning-rate schedule")
    step_epochs: int = setting(10, group="schedule", low=1,
                               help="step schedule: decay every N epochs")
    step_gamma: float = setting(0.1, group="schedule", low=0, low_open=True,
                                help="step schedule: decay factor")
    warmup_epochs: float = setting(0.0, group="schedule", low=0,
                                   help="linear warm-up length in epochs")
    patience: int | None = setting(None, group="schedule", low=1,
                                   help="early stopping: end the run once the main validation "
                                        "metric has not improved for N epochs")
    # augmentation
    augment: str = setting("", group="augmentation",
                           help='batched augmentations, e.g. "crop:4,flip" or '
                                '"elastic:alpha=34,sigma=4" (see cnnlab.data.augment)')
    tta: str = setting("", group="augmentation",
                       help='test-time augmentation of the final test: "flip", "translate", '
                            '"flip,translate"')
    # speed
    seed: int = setting(0, group="speed", low=0, high=MAX_SEED,
                        help="random seed (data order, augmentation, initialisation)")
    device: str = setting("auto", group="speed", choices=("auto", "cpu", "cuda"),
                          help="where to train")
    precision: str = setting("fp32", group="speed", choices=("fp32", "bf16"),
                             help="bf16: autocast (fast on CPUs with AMX and on GPUs)")
    channels_last: bool = setting(False, group="speed",
                                  help="channels_last memory format (faster convolutions)")
    compile: bool = setting(False, group="speed",
                            help="torch.compile the model (falls back to eager with a warning)")
    threads: int | None = setting(None, group="speed", low=1, high=1024,
                                  help="CPU threads torch may use (default: torch's)")
    deterministic: bool = setting(False, group="speed",
                                  help="deterministic algorithms only (reproducible on CUDA, "
                                       "may be slower)")
    dist_timeout: float = setting(300.0, group="speed", low=0, low_open=True,
                                  help="data parallel: seconds a collective waits for a silent "
                                       "rank before the job fails")
    # run
    out: str = setting("runs", group="run", help="parent directory of run directories")
    name: str | None = setting(None, group="run",
                               help="run directory name (default: <model>-<data>-<time>)")
    checkpoint_every: int = setting(1, group="run", low=1,
                                    help="epochs between saves of the last checkpoint")
    snapshot_epochs: list[int] = setting(group="run", factory=list,
                                         help="comma-separated epochs whose weights are kept, "
                                              "e.g. 1,2,5,10")
    tensorboard: bool = setting(False, group="run",
                                help="also log to RUN/tensorboard (needs the tensorboard package)")
    progress: bool = setting(True, group="run", help="show a progress bar")

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work, naming the flag."""
        from cnnlab.tasks import get_task  # torch: only once a run is about to start

        check_types(self)
        task = get_task(self.task)
        for item in dataclasses.fields(self):
            check_range(item, getattr(self, item.name))
        task.check(self)
        if self.name is not None:
            check_run_name(self.name)
        if any(e < 1 for e in self.snapshot_epochs):
            raise ConfigError(f"--snapshot-epochs {self.snapshot_epochs}: epochs count from 1")
        from cnnlab.data.augment import parse_tta  # torch, as above

        parse_tta(self.tta)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "config") -> TrainConfig:
        return settings_from_dict(cls, values, source=source)


def settings_from_dict(cls: type, values: dict, *, source: str = "config"):
    """The settings dataclass ``cls`` (TrainConfig, BovwConfig) from a dict read from YAML:
    an unknown key or a value of the wrong type is a ConfigError naming ``source``."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got "
                          f"{type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known, key=str)
    if unknown:
        raise ConfigError(f"{source}: unknown setting {unknown[0]!r}")
    config = cls(**values)
    check_types(config, source)
    return config


def flag_name(item: dataclasses.Field) -> str:
    """``--batch-size`` for ``batch_size`` (or the field's own flag)."""
    return f"--{item.metadata.get('flag') or item.name.replace('_', '-')}"


def _type_ok(value: object, kind: str) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    table = {"str": isinstance(value, str), "bool": isinstance(value, bool),
             "int": isinstance(value, int) and not isinstance(value, bool),
             "float": number and math.isfinite(value),
             "dict": isinstance(value, dict) and all(isinstance(k, str) for k in value),
             "list[int]": isinstance(value, list) and all(
                 isinstance(v, int) and not isinstance(v, bool) for v in value)}
    return table[kind]


def check_types(config: object, source: str = "config") -> None:
    """Every value has its field's type (YAML ``epochs: "1"``, ``data: [digits]``,
    ``model_options: [1, 2]``, NaN or infinite numbers are refused, naming the setting)."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        kind = str(item.type).replace(" | None", "")
        if value is None and "None" in str(item.type):
            continue
        if not _type_ok(value, kind):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise ConfigError(f"{source}: {item.name} ({flag_name(item)}) must be "
                              f"{'a finite number' if kind == 'float' else kind}, got {shown}")


def check_range(item: dataclasses.Field, value: object) -> None:
    """The field's choices and bounds, as its flag names them."""
    meta = item.metadata
    if value is None:
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{flag_name(item)} {value!r} is not one of: "
                          f"{', '.join(meta['choices'])}")
    low, high = meta.get("low"), meta.get("high")
    too_low = low is not None and (value <= low if meta["low_open"] else value < low)
    too_high = high is not None and (value >= high if meta["high_open"] else value > high)
    if too_low or too_high:
        raise ConfigError(f"{flag_name(item)} must be {_describe_range(meta)}, got {value}")


def _describe_range(meta: dict) -> str:
    low, high = meta["low"], meta["high"]
    if high is None:
        return f"{'>' if meta['low_open'] else '>='} {_number(low)}"
    if low is None:
        return f"{'<' if meta['high_open'] else '<='} {_number(high)}"
    left, right = "(" if meta["low_open"] else "[", ")" if meta["high_open"] else "]"
    return f"in {left}{_number(low)}, {_number(high)}{right}"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_run_name(name: str, flag: str = "--name") -> str:
    """A run name is one folder name: not empty, not ``.``/``..``, no path separator."""
    if not isinstance(name, str) or name.strip() in ("", ".", "..") or "\0" in name \
            or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise ConfigError(f"{flag} {name!r}: a run name must be a single folder name (no "
                          f"'/', not empty, not '.' or '..'); put parent folders in --out")
    return name


def config_yaml(config: TrainConfig) -> str:
    """``config`` as the YAML text ``cnnlab train --config`` reads back."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def save_config(config: TrainConfig, path: Path) -> None:
    """Write ``config`` as YAML (atomically) so ``cnnlab train --config`` re-runs it."""
    atomic_write_bytes(path, config_yaml(config).encode())


MAX_CONFIG_BYTES = 1 << 20


def load_config(path: str | Path, base: dict | None = None) -> TrainConfig:
    """Read a config written by :func:`save_config` (or by hand): at most 1 MiB and a few YAML
    aliases (:func:`cnnlab.yamltext.load_yaml`), then type-checked. ``base``: settings the file
    does not give (a recipe's), instead of the defaults."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a config")
    return config_from_text(path.read_text(errors="replace"), str(path), base)


def config_from_text(text: str, source: str, base: dict | None = None) -> TrainConfig:
    """A TrainConfig from YAML ``text`` (``source`` names it in errors), checked like a file;
    ``base`` as in :func:`load_config`."""
    values = load_yaml(text, source) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of settings")
    return TrainConfig.from_dict({**(base or {}), **values}, source=source)
