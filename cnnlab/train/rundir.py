"""Run directories: naming, the git SHA saved beside checkpoints, and finding the run a
torchrun restart (``--max-restarts``) must continue."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.errors import CheckpointError
from cnnlab.runs import RunFolder, claim_run_dir, default_run_name
from cnnlab.runs.checkpoint import newest_checkpoint
from cnnlab.runs.layout import CONFIG, ELASTIC_MARKER, METRICS, STEPS


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the cnnlab checkout, if it is one (saved beside every checkpoint)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def new_run_dir(config: TrainConfig) -> RunFolder:
    """Claim ``out/name`` for a fresh run (:func:`cnnlab.runs.claim_run_dir`); a default name
    is ``<model>-<data>-<YYYYmmdd-HHMMSS>``, ``-2``, ``-3``... on a clash, never reused.

    Under a torchrun restart before the first checkpoint, the first attempt's directory is
    taken again (it belongs to this job), minus its metrics.
    """
    earlier = elastic_run_dir(config)  # a torchrun restart before the first checkpoint
    if earlier is not None:
        for name in (METRICS, STEPS):  # written by this job's first attempt
            (earlier / name).unlink(missing_ok=True)
        return RunFolder(earlier, created=True)
    folder = claim_run_dir(config.out, config.name, default_run_name(config.model, config.data))
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # lets a restarted attempt find this run
        marker = {"run_id": os.environ["TORCHELASTIC_RUN_ID"], "name": config.name}
        folder.write_bytes(ELASTIC_MARKER, json.dumps(marker).encode())
    return folder


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
    if run_dir is None or not (run_dir / CONFIG).is_file():
        return None
    try:
        newest_checkpoint(run_dir)
    except CheckpointError:
        return None
    return run_dir
