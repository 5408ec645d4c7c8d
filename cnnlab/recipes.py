"""Named training recipes: every hyper-parameter of a time-to-accuracy result in one place.

``cnnlab train --recipe mnist-1min`` starts from a recipe (precedence: defaults < recipe <
``--config`` < flags); ``python bench/recipes.py`` times them and records the results in
docs/BENCHMARKS.md. Targets are test accuracies on the data set's official test split within
``limit_s`` seconds on 2 CPU cores. A recipe of several runs (the ensemble) is not one training
run: ``--recipe`` refuses it and ``bench/recipes.py run`` trains and averages its seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnlab.errors import ConfigError, choices_hint

FAST = {"precision": "bf16", "channels_last": True}  # ~4x on AMX CPUs (issue 8's figures)
LENET = {"activation": "relu", "pooling": "max"}
# airbench94's optimisation (Jordan 2024) for a mean (not summed) loss: its lr 11.5 and weight
# decay 0.0153 "per 1024 examples" with momentum 0.85 become lr 11.5 / (1 + 1 / 0.15) = 1.5
# and decay 0.0153 / (1 + 1 / 0.15) / 1.5 = 1.33e-3; BatchNorm biases learn 64x faster;
# lookahead 0.95^5 every 5 steps; test-time flip + 1-pixel translate (6 views).
AIRBENCH = dict(batch_size=1024, lr=1.5, momentum=0.85, nesterov=True, weight_decay=1.33e-3,
                bias_lr_scale=64, schedule="onecycle", label_smoothing=0.2,
                augment="altflip,translate:2", lookahead=0.77, lookahead_every=5,
                tta="flip,translate", val_fraction=0.0, **FAST)

# airbench94_muon (Jordan 2024, 94% in 8 epochs) for a mean loss at batch 512: conv filters by
# Muon (its lr 0.24 at batch 2000; 0.12 was best of 0.08/0.12/0.24 at 4x the steps per epoch),
# momentum 0.6, filters kept at norm sqrt(out); head lr 0.67 per summed example -> 0.67 * 512 *
# (9 / 256)^2 = 0.424 (its scores are divided by 256, ours by 9); BatchNorm biases 64x that;
# decay 2e-6 per example (0.001 per step = lr * 2.4e-3); linear decay from the first step
# (a one-step warm-up); no lookahead (86.31% with it vs 86.55% without, 4-epoch proxy).
MUON = dict(batch_size=512, optimizer="muon", lr=0.424, momentum=0.85, nesterov=True,
            weight_decay=2.4e-3, bias_lr_scale=64, muon_lr=0.12, muon_momentum=0.6,
            muon_normalize=True, schedule="onecycle", warmup_epochs=0.01, label_smoothing=0.2,
            augment="altflip,translate:2", tta="flip,translate", val_fraction=0.0, **FAST)


@dataclass
class Recipe:
    """A config and what it must reach: ``test_acc >= target`` within ``limit_s`` seconds."""

    config: dict
    target: float  # test accuracy
    limit_s: float  # wall-clock seconds on 2 CPU cores
    note: str = ""
    seeds: list[int] = field(default_factory=lambda: [0])  # > 1: an ensemble of runs
    nproc: int = 1  # > 1: data-parallel processes (`cnnlab train --nproc`), one thread each


# airbench's body at other widths for the grey 28x28 sets: 1 channel -> 8 whitening filters,
# 28 -> 27 -> 13 -> 6 -> 3. Measured train images/s in bf16 + channels_last on the 2-core AMD
# EPYC VM (no AMX): [32,64,128] ~3,000 (fp32 ~1,800); [48,96,192] ~1,550; CIFAR-10 at 32x32:
# [64,256,256] (airbench94) ~390 (fp32 ~210), [48,192,192] ~680, [32,128,128] ~1,160.
GREY_SMALL = {"widths": [32, 64, 128]}
GREY_WIDE = {"widths": [48, 96, 192]}
# Digits: whole-pixel shifts only (no flips). Bilinear resampling (elastic, affine) blurs the
# training images, and airbench's 2x2 whitening amplifies exactly the high frequencies that blur
# removes: with it, 3 epochs on MNIST gave 99.59% without augmentation, 98.87% with
# elastic:alpha=34,sigma=4 and 99.44% with affine:deg=8,translate=0.08 (docs/BENCHMARKS.md).
DIGITS = {**AIRBENCH, "augment": "translate:2", "tta": "translate"}

RECIPES: dict[str, Recipe] = {
    "mnist-1min": Recipe(
        dict(model="lenet5", model_options=LENET, data="mnist", epochs=3, batch_size=64,
             lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle",
             val_fraction=0.0), 0.9905, 60, "LeNet-5 <= 0.95% (LeCun et al. 1998)"),
    "mnist-15min": Recipe(
        dict(model="airbench94", model_options=GREY_SMALL, data="mnist", image_size=28,
             epochs=12, **DIGITS), 0.996, 15 * 60,
        "<= 0.40% (Simard et al. 2003 reached 0.40% with elastic distortions)"),
    "mnist-ensemble": Recipe(
        dict(model="airbench94", model_options=GREY_SMALL, data="mnist", image_size=28,
             epochs=9, **DIGITS), 0.997, 7 * 5 * 60,
        "7 seeds averaged, <= 0.30% (Ciresan et al. 2011: 0.27%)", seeds=list(range(7))),
    "fashion-93": Recipe(
        dict(model="airbench94", model_options=GREY_SMALL, data="fashion-mnist",
             image_size=28, epochs=20, **AIRBENCH), 0.93, 10 * 60, ">= 93% in 10 min"),
    "fashion-94.5": Recipe(
        dict(model="airbench94", model_options=GREY_WIDE, data="fashion-mnist",
             image_size=28, epochs=30, **AIRBENCH), 0.945, 30 * 60, ">= 94.5% in 30 min"),
    "cifar10-90": Recipe(
        dict(model="airbench94", model_options={"widths": [56, 224, 224]}, data="cifar10",
             epochs=8, **{**MUON, "muon_lr": 0.1}), 0.90, 10 * 60,
        "airbench body at widths 56/224/224 trained by Muon, 8 epochs on 2 data-parallel "
        "processes, >= 90% in 10 min", nproc=2),
    "cifar10-94": Recipe(
        dict(model="airbench94", data="cifar10", epochs=8, **{**MUON, "muon_lr": 0.1}), 0.94,
        20 * 60, "airbench94 trained by Muon, 8 epochs (airbench94_muon: 94.01% in 8) on 2 "
        "processes, >= 94% in 20 min (CPU record: 94.05% in 815 s)", nproc=2),
}


def recipe_names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (ConfigError listing the choices otherwise)."""
    if name not in RECIPES:
        raise ConfigError(f"unknown --recipe {choices_hint(name, list(RECIPES))}")
    return RECIPES[name]


def training_recipe(name: str) -> Recipe:
    """The recipe ``name`` as one training run (``cnnlab train --recipe``): a ConfigError for a
    recipe of several runs."""
    recipe = get_recipe(name)
    if len(recipe.seeds) > 1:
        raise ConfigError(f"--recipe {name} is an ensemble of {len(recipe.seeds)} runs, not "
                          f"one training run: train it with `python bench/recipes.py run "
                          f"{name}`, which trains each seed and averages them")
    return recipe
