"""Time-to-accuracy recipes (issue 8), timed: the recipes themselves are cnnlab/recipes.py
(``cnnlab train --recipe NAME`` trains one).

    python bench/recipes.py list                     # recipes, targets and time limits
    python bench/recipes.py show mnist-1min          # the equivalent `cnnlab train` command
    python bench/recipes.py run mnist-1min --record  # train, time it, record in BENCHMARKS.md
    python bench/recipes.py run cifar10-90 --quick   # plumbing check: digits, 1 epoch (< 1 min)
    python bench/recipes.py run cifar10-90 --keep runs/c90  # keep the run directories

The wall time counts everything ``cnnlab train`` does (data loading, validation, checkpoints,
the final test). Targets are on the data set's official test split; the ensemble is scored with
``cnnlab evaluate RUN...`` (model averaging, lecture 000). Recipes marked ``untested`` have not
been timed yet: tune them on the quiet machine before trusting their targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from cnnlab.config import TrainConfig  # noqa: E402
from cnnlab.recipes import RECIPES, Recipe  # noqa: E402  (the recipes live in the package)
from cnnlab.train.fit import fit  # noqa: E402
from cnnlab.train.launch import launch  # noqa: E402


def make_config(recipe: Recipe, seed: int, out: str, quick: bool) -> TrainConfig:
    config = TrainConfig(**{**recipe.config, "seed": seed, "out": out,
                            "name": f"seed{seed}", "progress": False})
    if quick:  # plumbing only: the same model and options on the tiny digits set
        config = dataclasses.replace(config, data="digits", epochs=1, image_size=None,
                                     batch_size=min(config.batch_size, 128), augment="")
    return config


def show(name: str) -> str:
    """The ``cnnlab train`` command equivalent to recipe ``name``."""
    recipe = RECIPES[name]
    parts = ["cnnlab train"]
    for key, value in recipe.config.items():
        flag = "--" + key.replace("_", "-")
        if key == "model_options":
            parts += [f"--option {k}={v}" if not isinstance(v, list) else
                      f"--option '{k}=[{','.join(map(str, v))}]'" for k, v in value.items()]
        elif value is True:
            parts.append(flag)
        else:
            parts.append(f"{flag} {value!r}" if isinstance(value, str) and "," in value
                         else f"{flag} {value}")
    if recipe.nproc > 1:
        parts.append(f"--nproc {recipe.nproc}")
    if len(recipe.seeds) > 1:
        parts.append("--seed S   # for S in " + " ".join(map(str, recipe.seeds)))
    return " ".join(parts)


def train(config: TrainConfig, nproc: int) -> Path:
    """Train ``config`` in this process, or on ``nproc`` processes; the run directory."""
    if nproc == 1:
        return fit(config).run_dir
    code = launch(config, nproc)
    if code != 0:
        raise SystemExit(f"cnnlab train --nproc {nproc} failed with exit code {code}")
    return Path(config.out) / config.name


def read_test_accuracy(run_dir: Path) -> float:
    """The final test accuracy that ``fit`` recorded in RUN/run.json."""
    return json.loads((run_dir / "run.json").read_text())["test"]["acc"]


def run(name: str, quick: bool, record: bool, root: str | None, keep: str | None = None) -> int:
    """Train recipe ``name``, time it, print (and with ``record`` write) the result; ``keep``:
    a folder that keeps the run directories (default: a temporary one)."""
    recipe = RECIPES[name]
    seeds = recipe.seeds[:1] if quick else recipe.seeds
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        out = keep or temporary
        runs = [train(dataclasses.replace(make_config(recipe, s, out, quick), data_root=root),
                      recipe.nproc) for s in seeds]
        accuracy = read_test_accuracy(runs[0])
        if len(runs) > 1:
            from cnnlab.evaluate import evaluate_runs

            accuracy = evaluate_runs([str(r) for r in runs]).main.top1
    seconds = time.perf_counter() - start
    ok = accuracy >= recipe.target and seconds <= recipe.limit_s
    print(f"{name}: test accuracy {100 * accuracy:.2f}% (target {100 * recipe.target:.2f}%) in "
          f"{seconds:.0f} s (limit {recipe.limit_s:.0f} s): {'MET' if ok else 'not met'}"
          f"{' [quick: digits, 1 epoch]' if quick else ''}")
    if record and not quick:
        row = [name, f"{100 * accuracy:.2f}%", f"{100 * recipe.target:.2f}%", f"{seconds:.0f}",
               f"{recipe.limit_s:.0f}", "yes" if ok else "no"]
        table = common.markdown_table(["recipe", "test acc", "target", "seconds", "limit s",
                                       "met"], [row])
        workers = (f"{recipe.nproc} processes x 1 torch thread" if recipe.nproc > 1 else None)
        common.write_section(f"recipe-{name}", common.recorded_header(workers)
                             + f"Equivalent: `{show(name)}`  \n\n" + table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["list", "show", "run"])
    parser.add_argument("name", nargs="?", choices=list(RECIPES))
    parser.add_argument("--quick", action="store_true", help="digits, 1 epoch: checks it runs")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--keep", metavar="DIR", help="keep the run directories in DIR")
    args = parser.parse_args(argv)
    if args.action == "list":
        for name, r in RECIPES.items():
            print(f"{name:14s} test acc >= {100 * r.target:.2f}% in {r.limit_s / 60:.0f} min  "
                  f"{r.note}")
        return 0
    if args.name is None:
        parser.error(f"{args.action} needs a recipe name")
    if args.action == "show":
        print(show(args.name))
        return 0
    root = args.data_root
    if root is None:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data"
        root = str(shared) if shared.is_dir() else None
    return run(args.name, args.quick, args.record, root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
