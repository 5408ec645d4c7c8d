"""Layer ablations: remove layers, retrain with the same recipe, compare accuracy and size.

Lecture 001's AlexNet slides (from Zeiler & Fergus 2014, table 3): "Removing layer 7: 1.1% drop
in performance, 16 million less parameters"; layers 6 and 7: 5.7%, 50 million; layers 3 and 4:
3.0%, 1 million; layers 3, 4, 6 and 7: 33.5% ("Conclusion? Depth!").

For a model whose builder takes ``remove=`` (AlexNet: ``cnnlab.models.alexnet``) the layers are
removed by the builder, which rewires the next layer to the new width; layers may be given as
the slide's numbers (``7``, ``3,4``). For any other model a removed layer is replaced by
``nn.Identity``, which only works where the layer keeps its input's shape (a 3x3 "same" conv with
as many filters as inputs, an activation, a residual block without downsampling).

Parameter counts for AlexNet at 1000 classes (hand counts, see tests/test_ablate.py):
fc7 removed: 4096*4096 + 4096 = 16,781,312 fewer ("16 million").

Example:
    >>> rows = ablate("runs/alexnet-cifar10", [["fc7"], ["fc6", "fc7"]])  # doctest: +SKIP
    >>> print(format_table(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

import cnnlab.models.alexnet  # noqa: F401  (registers alexnet/alexnet_paper if the zoo has not)
from cnnlab.analysis.features import resolve_layer, write_csv
from cnnlab.config import load_config
from cnnlab.errors import ConfigError, ModelError, choices_hint
from cnnlab.models import create, model_info
from cnnlab.models.catalog import count_parameters
from cnnlab.models.registry import is_spec
from cnnlab.runs.reader import open_run


def has_remove_option(model_name: str) -> bool:
    """True when the zoo builder takes ``remove=`` (AlexNet)."""
    if is_spec(model_name):
        return False
    return "remove" in inspect.signature(model_info(model_name).builder).parameters


def layer_names(removal: str | Sequence[str], model_name: str) -> list[str]:
    """``"3,4"`` or ``["3", "4"]`` -> ``["conv3", "conv4"]`` for AlexNet; names pass through."""
    from cnnlab.models.alexnet import alexnet_layer_names

    items = [s.strip() for s in removal.split(",")] if isinstance(removal, str) else list(removal)
    if has_remove_option(model_name):
        paper = alexnet_layer_names()
        items = [paper[int(s) - 1] if s.isdigit() and 1 <= int(s) <= len(paper) else s
                 for s in items]
    return [s for s in items if s]


def module_paths(spec: dict, names: list[str]) -> list[str]:
    """Names as every command takes them (``conv2`` = the second convolution, or a module
    path) -> module paths of the model a checkpoint's ``spec`` describes; AlexNet's builder
    takes its own names (``conv3``, ``fc7``) and keeps them."""
    if has_remove_option(spec["name"]):
        return names
    with torch.device("meta"):  # shapes only
        model = create(spec["name"], num_classes=spec["num_classes"],
                       in_channels=spec["input_size"][0], input_size=tuple(spec["input_size"]),
                       **spec.get("options", {}))
    return [resolve_layer(model, name) for name in names]


def removable_layers(model: nn.Module) -> list[str]:
    """Names of the submodules that hold parameters of their own (the layers one can remove)."""
    return [n for n, m in model.named_modules()
            if n and next(m.parameters(recurse=False), None) is not None]


def check_layer_names(model: nn.Module, names: Sequence[str]) -> None:
    """ModelError naming the first unknown layer and the choices."""
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or name == "":
            raise ModelError(f"no layer {choices_hint(name, removable_layers(model))} to remove")


def replace_with_identity(model: nn.Module, names: Sequence[str],
                          input_size: tuple[int, int, int]) -> None:
    """Replace each named submodule by ``nn.Identity`` and check the model still runs."""
    check_layer_names(model, names)
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    for module in model.modules():  # two in-place ReLUs may now meet: autograd forbids that
        if getattr(module, "inplace", False):
            module.inplace = False
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, *input_size))
    except RuntimeError as error:
        raise ModelError(f"removing {', '.join(names)} breaks the shapes (only layers whose "
                         f"output has their input's shape can become identities): "
                         f"{str(error).splitlines()[0]}") from None


def ablated_model(model_name: str, options: dict, names: Sequence[str], *, num_classes: int,
                  input_size: tuple[int, int, int]) -> nn.Module:
    """The model with ``names`` removed (builder ``remove=`` or identity replacement)."""
    c = input_size[0]
    if has_remove_option(model_name):
        return create(model_name, num_classes=num_classes, in_channels=c, input_size=input_size,
                      **{**options, "remove": list(names)})
    model = create(model_name, num_classes=num_classes, in_channels=c, input_size=input_size,
                   **options)
    replace_with_identity(model, names, input_size)
    return model


def parameters_removed(model_name: str, names: Sequence[str], *, num_classes: int = 1000,
                       input_size: tuple[int, int, int] | None = None,
                       options: dict | None = None) -> tuple[int, int]:
    """``(parameters of the full model, parameters removed)``.

    Example: ``parameters_removed("alexnet", ["fc7"])`` -> ``(61100840, 16781312)``.
    """
    from cnnlab.models import default_input_size

    size = tuple(input_size or default_input_size(model_name))
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        full = count_parameters(create(model_name, num_classes=num_classes, in_channels=size[0],
                                       input_size=size, **(options or {})))
        less = count_parameters(ablated_model(model_name, options or {}, names,
                                              num_classes=num_classes, input_size=size))
    return full, full - less


def baseline_accuracy(run: str | Path) -> float:
    """Test accuracy of the run's best checkpoint (``cnnlab.evaluate``)."""
    from cnnlab.evaluate import evaluate_runs

    return 1.0 - evaluate_runs([run]).members[0].error_rate


def retrain_without(run: str | Path, names: Sequence[str], *, log=print, **overrides):
    """Retrain ``run``'s recipe with ``names`` removed; returns fit's RunResult."""
    from cnnlab.train.fit import fit

    config = load_config(Path(run) / "config.yaml")
    tag = "+".join(names)
    config = dataclasses.replace(config, name=f"{Path(run).name}-minus-{tag}",
                                 **{k: v for k, v in overrides.items() if v is not None})
    if has_remove_option(config.model):
        options = {**config.model_options, "remove": list(names)}
        return fit(dataclasses.replace(config, model_options=options), log=log)

    def prepare(model: nn.Module) -> None:
        replace_with_identity(model, names, tuple(model_input_size(run)))
    return fit(config, prepare=prepare, log=log)


def model_input_size(run: str | Path) -> list[int]:
    return open_run(run).meta["model"]["input_size"]


def ablate(run: str | Path, removals: Sequence[str | Sequence[str]], *, log=print,
           csv_dir: str | Path | None = None, **overrides) -> list[dict]:
    """One row per removal: layers, parameters removed, test accuracy and its change.

    ``overrides`` (e.g. ``epochs``, ``out``) replace fields of the run's recipe for the
    retraining; by default it is exactly the original recipe. With ``csv_dir``, writes
    ``ablation.csv`` there.
    """
    if not removals:
        raise ConfigError("give at least one set of layers to remove, e.g. --remove fc7")
    spec = open_run(run).meta["model"]
    plans = []  # every removal is checked (names, shapes) before anything is trained
    for removal in removals:
        names = module_paths(spec, layer_names(removal, spec["name"]))
        if not names:
            raise ConfigError(f"empty removal {removal!r}: give layer names, e.g. --remove fc7")
        full, removed = parameters_removed(spec["name"], names, num_classes=spec["num_classes"],
                                           input_size=tuple(spec["input_size"]),
                                           options=spec.get("options", {}))
        plans.append((names, full, removed))
    base = baseline_accuracy(run)
    rows = [{"removed": "(none)", "parameters": plans[0][1], "parameters_removed": 0,
             "test_acc": base, "change_pp": 0.0, "run": str(run)}]
    for names, full, removed in plans:
        result = retrain_without(run, names, log=log, **overrides)
        rows.append({"removed": ",".join(names), "parameters": full - removed,
                     "parameters_removed": removed, "test_acc": result.test_acc,
                     "change_pp": 100 * (result.test_acc - base), "run": str(result.run_dir)})
    if csv_dir is not None:
        write_csv(rows, Path(csv_dir) / "ablation.csv")
    return rows


def format_table(rows: list[dict]) -> str:
    """A table, then the slide's sentences with the change in percentage points of test
    accuracy (the slide's "1.1% drop" is 1.1 points): ``Removing fc7: 1.1 percentage points drop
    in test accuracy, 16,781,312 fewer parameters (16.8 million)``."""
    lines = [f"{'removed':<24} {'params':>12} {'removed':>12} {'test acc':>9} {'change':>8}"]
    for r in rows:
        lines.append(f"{r['removed']:<24} {r['parameters']:>12,} {r['parameters_removed']:>12,} "
                     f"{100 * r['test_acc']:>8.2f}% {r['change_pp']:>+7.2f}pp")
    for r in rows[1:]:
        word = "drop" if r["change_pp"] <= 0 else "gain"
        lines.append(f"Removing {r['removed']}: {abs(r['change_pp']):.1f} percentage points "
                     f"{word} in test accuracy, {r['parameters_removed']:,} fewer parameters "
                     f"({r['parameters_removed'] / 1e6:.1f} million)")
    return "\n".join(lines)
