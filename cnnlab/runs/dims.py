"""How many spatial axes a run's model takes, read from a checkpoint's JSON sidecar (no torch):
1 (sequences), 2 (images), 3 (clips and volumes). Issue 23: the commands that transform,
shift or draw images check it first and refuse a 1-D or 3-D run in one line.

    >>> run_dims("runs/lenet5-mnist")   # doctest: +SKIP
    2
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnlab.errors import ConfigError
from cnnlab.runs.layout import checkpoint_name


def run_dims(path: str | Path) -> int | None:
    """The spatial dimensions of the run directory or checkpoint ``path`` (2 for checkpoints
    written before k-D runs existed); None when it is not a readable run."""
    path = Path(path)
    sidecars = ([path / Path(checkpoint_name(w)).with_suffix(".json") for w in ("best", "last")]
                if path.is_dir() else [path.with_suffix(".json")])
    for sidecar in sidecars:
        try:
            model = json.loads(sidecar.read_text()).get("model", {})
        except (OSError, ValueError, AttributeError):
            continue
        dims = model.get("dims", 2) if isinstance(model, dict) else 2
        return dims if isinstance(dims, int) else None
    return None


def require_image_run(command: str, path: str | Path) -> None:
    """ConfigError ``COMMAND: 2-D image runs only`` when ``path`` is a 1-D or 3-D run."""
    dims = run_dims(path)
    if dims is not None and dims != 2:
        raise ConfigError(f"{command}: 2-D image runs only; {path} is a {dims}-D run (use "
                          f"evaluate, predict, export, summary, probe, compare, visualize "
                          f"filters|curves|confusion)")
