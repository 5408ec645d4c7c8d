"""Not just images (issue 23) reproduced with `cnnlab train` commands: the same recipes as
bench/beyond_images.py (AdamW, one-cycle learning rate, cross-entropy, no validation split),
each one command a user can type.

    python bench/beyond_images_cli.py                    # everything (40 min on 2 loaded cores)
    python bench/beyond_images_cli.py --only mnist1d     # one experiment
    python bench/beyond_images_cli.py --list             # print the commands only
    python bench/beyond_images_cli.py --record           # also write docs/BENCHMARKS.md

The test accuracy is read from each run's run.json, the training seconds are the sum of the
epochs' ``seconds`` in metrics.jsonl (data generation and testing excluded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, recorded_header, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # MNIST for moving-mnist (else $CNNLAB_DATA)
ADAMW = "--optimizer adamw --schedule onecycle --weight-decay 5e-4 --val-fraction 0"
MNIST1D = f"--epochs 20 --batch-size 100 --lr 0.01 {ADAMW}"
SPOKEN = f"--epochs 30 --batch-size 64 --lr 0.003 {ADAMW}"
MOVING = f"--data moving-mnist:count=4000 --epochs 6 --batch-size 50 --lr 0.003 {ADAMW}"
# experiment -> [(run name, arguments of `cnnlab train`)]
EXPERIMENTS: dict[str, list[tuple[str, str]]] = {
    "mnist1d": [
        ("mnist1d_cnn", f"--data mnist1d --model mnist1d_cnn {MNIST1D}"),
        ("mlp", f"--data mnist1d --model mlp {MNIST1D}"),
        ("mnist1d_cnn shuffled", f"--data mnist1d:shuffle=0 --model mnist1d_cnn {MNIST1D}"),
        ("mlp shuffled", f"--data mnist1d:shuffle=0 --model mlp {MNIST1D}"),
    ],
    "spoken": [(f"spectro1d seed {seed}",
                f"--data spoken-digits --model spectro1d {SPOKEN} --seed {seed}")
               for seed in (0, 1, 2)],
    "words": [("char1d", f"--data words --model char1d --epochs 6 --batch-size 128 --lr 0.003 "
                         f"{ADAMW}")],
    "moving": [(model, f"{MOVING} --model {model}")
               for model in ("c3d_small", "late_fusion", "early_fusion")],
}


def train(name: str, arguments: str, out: Path, threads: int) -> dict:
    """Run one `cnnlab train` command; its test accuracy and training seconds."""
    folder = name.replace(" ", "-")
    root = f" --data-root {SHARED_DATA}" if "moving" in arguments and SHARED_DATA.is_dir() else ""
    command = (f"{sys.executable} -m cnnlab train {arguments}{root} --threads {threads} "
               f"--no-progress --out {out} --name {folder}")
    subprocess.run(command.split(), check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    run = out / folder
    index = json.loads((run / "run.json").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {"name": name, "command": f"cnnlab train {arguments}",
            "accuracy": index["test"]["acc"], "seconds": sum(e["seconds"] for e in epochs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(EXPERIMENTS),
                        help=f"comma-separated subset of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args()
    chosen = [e for e in args.only.split(",") if e]
    if args.list:
        for experiment in chosen:
            for _, arguments in EXPERIMENTS[experiment]:
                print(f"cnnlab train {arguments}")
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-beyond-") as out:
        for experiment in chosen:
            for name, arguments in EXPERIMENTS[experiment]:
                result = train(name, arguments, Path(out), args.threads)
                print(f"  {name:24s} {100 * result['accuracy']:6.2f}%  "
                      f"{result['seconds']:6.1f} s", flush=True)
                results.append(result)
    table = markdown_table(["run", "test accuracy", "train s", "command"],
                           [[r["name"], f"{100 * r['accuracy']:.2f}%", f"{r['seconds']:.1f}",
                             f"`{r['command']}`"] for r in results])
    print(table)
    if args.record:
        write_section("beyond-images-cli", "## Not just images, from `cnnlab train` (issue 23)"
                      "\n\n" + recorded_header(f"{args.threads} torch thread(s) per run, "
                                               "measured under load") + "\n" + table)


if __name__ == "__main__":
    main()
