"""Training: the loop, optimisers and schedules, checkpoints, whole runs."""

from cnnlab.runs.reader import load_model
from cnnlab.train.fit import RunResult, fit

__all__ = ["RunResult", "fit", "load_model"]
