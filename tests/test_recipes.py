"""bench/recipes.py publishes each time-to-accuracy recipe as a `cnnlab train` command (issue 8):
that command must parse back to exactly the recipe's configuration."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import recipes  # noqa: E402

from cnnlab.cli.main import build_parser  # noqa: E402
from cnnlab.cli.train import config_from_args  # noqa: E402
from cnnlab.config import TrainConfig  # noqa: E402


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_published_command_parses_to_the_recipe(name):
    command = recipes.show(name).split("#")[0]  # the ensemble adds "--seed S   # for S in ..."
    argv = shlex.split(command)
    assert argv[:2] == ["cnnlab", "train"]
    argv = [a for a in argv[1:] if a not in ("--seed", "S")]
    args = build_parser("train").parse_args(argv)
    config = config_from_args(args)
    expected = TrainConfig(**recipes.RECIPES[name].config)
    assert dataclasses.asdict(config) == dataclasses.asdict(expected)
    assert (args.nproc or 1) == recipes.RECIPES[name].nproc


def test_a_data_parallel_recipe_runs_on_two_processes_and_reads_their_result(tmp_path, capsys):
    recipe = recipes.RECIPES["cifar10-90"]
    assert recipe.nproc == 2
    assert recipes.run("cifar10-90", quick=True, record=False, root=None,
                       keep=str(tmp_path)) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    accuracy = recipes.read_test_accuracy(tmp_path / "seed0")
    assert f"test accuracy {100 * accuracy:.2f}%" in line and accuracy > 0.5  # digits, 1 epoch
    assert (tmp_path / "seed0" / "torchrun.json").is_file()  # it ran under torchrun


def test_recorded_header_names_how_the_cores_were_used():
    import common

    assert "(2 processes x 1 torch thread)" in common.recorded_header("2 processes x 1 torch thread")
    assert f"({__import__('torch').get_num_threads()} torch threads)" in common.machine()


def parsed(*argv: str) -> TrainConfig:
    return config_from_args(build_parser("train").parse_args(["train", *argv]))


def test_recipe_precedence_defaults_recipe_config_flags(tmp_path):
    """``cnnlab train --recipe`` (issue 21): defaults < recipe < --config < flags."""
    from cnnlab.recipes import RECIPES as PACKAGED

    assert PACKAGED is recipes.RECIPES  # bench times the package's recipes
    config_file = tmp_path / "partial.yaml"
    config_file.write_text("epochs: 5\nlr: 0.01\n")
    config = parsed("--recipe", "mnist-1min", "--config", str(config_file), "--lr", "0.02")
    assert config.schedule == "onecycle" and config.nesterov  # the recipe's, not the defaults
    assert config.model_options == {"activation": "relu", "pooling": "max"}
    assert config.epochs == 5  # --config over the recipe's 3
    assert config.lr == 0.02  # the flag over --config's 0.01 and the recipe's 0.05
    assert config.seed == TrainConfig().seed and config.augment == ""  # defaults stay
    assert parsed("--recipe", "mnist-1min").epochs == 3


def test_a_recipe_of_several_runs_or_an_unknown_one_is_a_one_line_error(capsys):
    from cnnlab.cli.main import main

    assert main(["train", "--recipe", "mnist-ensemble"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is an ensemble of 7 runs, not one training run" in err
    assert main(["train", "--recipe", "mnist-1mn"]) == 2
    assert "did you mean 'mnist-1min'" in capsys.readouterr().err


def test_train_with_a_recipe_saves_its_settings(tmp_path, capsys):
    from cnnlab.cli.main import main
    from cnnlab.config import load_config

    assert main(["train", "--recipe", "mnist-1min", "--data", "digits", "--epochs", "1",
                 "--threads", "1", "--no-progress", "--out", str(tmp_path), "--name", "r"]) == 0
    saved = load_config(tmp_path / "r" / "config.yaml")
    assert (saved.model, saved.schedule, saved.data, saved.epochs) == ("lenet5", "onecycle",
                                                                       "digits", 1)
