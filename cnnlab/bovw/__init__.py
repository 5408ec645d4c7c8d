"""Bag of visual words with spatial pyramids: the hand-crafted baseline of lecture 004, beside
the CNNs (``cnnlab bovw``; guide: docs/BOVW.md).

Example:
    >>> from cnnlab.bovw import BovwConfig, run_bovw, save_bovw, load_bovw
    >>> result = run_bovw(BovwConfig(data="mnist", train_per_class=200, test_count=1000))  # doctest: +SKIP
    >>> save_bovw(result, "runs/bovw-mnist")  # doctest: +SKIP
    >>> load_bovw("runs/bovw-mnist").model.predict(images)  # doctest: +SKIP
"""

from cnnlab.bovw.config import BovwConfig
from cnnlab.bovw.pipeline import BovwResult, run_bovw
from cnnlab.bovw.store import load_bovw, save_bovw

__all__ = ["BovwConfig", "BovwResult", "load_bovw", "run_bovw", "save_bovw"]
