"""What every benchmark records: the machine, versions, matmul peaks, and the results table.

Each recorded result says on what machine and with what versions it was measured (airbench's
habit); tables live in docs/BENCHMARKS.md between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` markers and are replaced whole by the script that owns them.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"


def cpu_model() -> str:
    """``lscpu``'s model name (or the platform's processor string)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        match = re.search(r"Model name:\s*(.+)", out)
        if match:
            return match.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def machine(workers: str | None = None) -> str:
    """One line: CPU model, cores, how they were used (default: this process's torch threads),
    torch and Python versions, GPU if any."""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    workers = workers or f"{torch.get_num_threads()} torch threads"
    return (f"{cpu_model()}, {os.cpu_count()} cores ({workers})"
            f"{gpu}; torch {torch.__version__}, Python {platform.python_version()}")


def command_line() -> str:
    """The command that produced the results (to re-run them)."""
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5,
                device: str = "cpu") -> float:
    """Achieved FLOP/s of an ``n x n @ n x n`` matmul in ``dtype`` (best of ``repeats``).

    2 n^3 floating-point operations per product; the physical ceiling for convolutions run as
    matrix products on this machine (issue 8: ~200 GFLOP/s fp32, ~2,000 bf16 with AMX).
    """
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up (thread pool, AMX tile configuration)
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, text: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the ``<!-- bench:NAME -->`` section of docs/BENCHMARKS.md (append if absent)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    doc = path.read_text() if path.is_file() else "# Benchmarks\n"
    if start in doc and end in doc:
        doc = doc[:doc.index(start)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)


def recorded_header(workers: str | None = None) -> str:
    """The lines above every recorded table: command, machine (``workers``: see
    :func:`machine`), date."""
    from cnnlab.train.rundir import git_sha

    sha = git_sha()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "cnnlab", "bench"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip() if sha else ""
    at = f" at commit {sha[:7]}{' + uncommitted code changes' if dirty else ''}" if sha else ""
    return (f"Command: `{command_line()}`  \nMachine: {machine(workers)}  \n"
            f"Measured: {time.strftime('%Y-%m-%d %H:%M')}{at}  \n")
