"""How fast cnnlab starts: ``cnnlab --help``, ``cnnlab models``, ``cnnlab datasets`` and a
command's ``--help``, each a fresh process, against ``python -c "import torch"`` in the same run.

Targets (issue 17): ``cnnlab --help`` <= 0.3 s; ``models`` and ``datasets`` <= the torch import
+ 0.5 s. Median of ``--repeats`` runs, alternating the commands so load drifts hit all alike.

    python bench/startup.py [--repeats 7] [--record]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import markdown_table, recorded_header, write_section

PYTHON = sys.executable
COMMANDS = {
    'python -c "import torch"': [PYTHON, "-c", "import torch"],
    "cnnlab --help": [PYTHON, "-m", "cnnlab", "--help"],
    "cnnlab train --help": [PYTHON, "-m", "cnnlab", "train", "--help"],
    "cnnlab models": [PYTHON, "-m", "cnnlab", "models"],
    "cnnlab datasets": [PYTHON, "-m", "cnnlab", "datasets"],
}
TARGETS = {"cnnlab --help": lambda t, torch: t <= 0.3,
           "cnnlab models": lambda t, torch: t <= torch + 0.5,
           "cnnlab datasets": lambda t, torch: t <= torch + 0.5}


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env={"OMP_NUM_THREADS": "2",
                                                                "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - start


def measure(repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # warm the file cache once
        time_once(argv)
    for _ in range(repeats):
        for name, argv in COMMANDS.items():
            times[name].append(time_once(argv))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--record", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args()
    medians = measure(args.repeats)
    torch_s = medians['python -c "import torch"']
    rows = []
    for name, seconds in medians.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else ("met" if target(seconds, torch_s) else "NOT met")
        rows.append([f"`{name}`", f"{seconds:.3f}", f"{seconds / torch_s:.2f}", verdict])
    table = markdown_table(["command", "median s", "x torch import", "target"], rows)
    print(table)
    if args.record:
        write_section("startup", "## Start-up time (issue 17)\n\n" + recorded_header() +
                      f"Median of {args.repeats} fresh processes each.\n\n" + table)


if __name__ == "__main__":
    main()
