"""Run directories: their layout, claiming one safely, the training lock, and reading them.

Every command that reads a run goes through :func:`open_run`.
"""

from cnnlab.config import check_run_name
from cnnlab.runs.folder import RunFolder, claim_run_dir, default_run_name
from cnnlab.runs.layout import LAYOUT, is_run_dir, is_run_file, owning_run
from cnnlab.runs.lock import RunInUse, RunLock
from cnnlab.runs.reader import OpenRun, load_model, open_run

__all__ = ["LAYOUT", "OpenRun", "RunFolder", "RunInUse", "RunLock", "check_run_name",
           "claim_run_dir", "default_run_name", "is_run_dir", "is_run_file", "load_model",
           "open_run", "owning_run"]
