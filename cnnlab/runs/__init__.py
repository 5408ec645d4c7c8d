"""Run directories: their layout, claiming one safely, the training lock, and reading them.

Every command that reads a run goes through :func:`open_run`. Names are imported on first use
(the layout and outputs need no torch; the reader does).
"""

from __future__ import annotations

from cnnlab.lazy import lazy_attributes

_EXPORTS = {
    "LAYOUT": "cnnlab.runs.layout", "is_run_dir": "cnnlab.runs.layout",
    "is_run_file": "cnnlab.runs.layout", "owning_run": "cnnlab.runs.layout",
    "RunFolder": "cnnlab.runs.folder", "claim_run_dir": "cnnlab.runs.folder",
    "default_run_name": "cnnlab.runs.folder", "check_run_name": "cnnlab.config",
    "RunInUse": "cnnlab.runs.lock", "RunLock": "cnnlab.runs.lock",
    "OpenRun": "cnnlab.runs.reader", "load_model": "cnnlab.runs.reader",
    "open_run": "cnnlab.runs.reader",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
