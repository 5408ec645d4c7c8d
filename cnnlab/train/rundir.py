"""Run directories: naming, the git SHA saved beside checkpoints, and finding the run a
torchrun restart (``--max-restarts``) must continue."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.errors import CheckpointError
from cnnlab.files import atomic_write_bytes
from cnnlab.train.checkpoint import newest_checkpoint


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the cnnlab checkout, if it is one (saved beside every checkpoint)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def new_run_dir(config: TrainConfig) -> Path:
    """``out/name``; a default name is ``<model>-<data>-<YYYYmmdd-HHMMSS>``, never reused."""
    data_name = Path(config.data).name or config.data
    name = config.name or f"{Path(config.model).stem[:24]}-{data_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(config.out) / name
    earlier = elastic_run_dir(config)  # a torchrun restart before the first checkpoint
    if earlier is not None:
        (earlier / "metrics.jsonl").unlink(missing_ok=True)
        return earlier
    suffix = 1
    while (run_dir / "config.yaml").exists():
        suffix += 1
        run_dir = Path(config.out) / f"{name}-{suffix}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # lets a restarted attempt find this run
        marker = {"run_id": os.environ["TORCHELASTIC_RUN_ID"], "name": config.name}
        atomic_write_bytes(run_dir / ELASTIC_MARKER, json.dumps(marker).encode())
    return run_dir


ELASTIC_MARKER = "torchrun.json"


def elastic_run_dir(config: TrainConfig) -> Path | None:
    """Under a torchrun restart (``TORCHELASTIC_RESTART_COUNT > 0``): the run directory the
    first attempt of this job created, found by the ``torchrun.json`` marker holding
    torchrun's ``TORCHELASTIC_RUN_ID`` (and ``--name``, when given); None otherwise."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) <= 0 or not run_id:
        return None
    found = []
    for marker in Path(config.out).glob(f"*/{ELASTIC_MARKER}"):
        try:
            values = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if (isinstance(values, dict) and values.get("run_id") == run_id
                and values.get("name") == config.name):
            found.append((marker.stat().st_mtime_ns, marker.parent))
    return max(found)[1] if found else None


def restarted_run(config: TrainConfig) -> Path | None:
    """The run to continue when torchrun restarts a job (``--max-restarts``).

    A restarted attempt runs the same command line as the first; instead of starting a fresh
    ``NAME-2`` it finds the first attempt's run directory (:func:`elastic_run_dir`) and
    continues from its newest complete checkpoint. None when there is no such run or no
    complete checkpoint yet (then :func:`new_run_dir` reuses that directory from scratch).
    """
    run_dir = elastic_run_dir(config)
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return None
    try:
        newest_checkpoint(run_dir)
    except CheckpointError:
        return None
    return run_dir
