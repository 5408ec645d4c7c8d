"""Bag of visual words with spatial pyramids: the hand-crafted baseline of lecture 004, beside
the CNNs (``cnnlab bovw``; guide: docs/BOVW.md).

Example:
    >>> from cnnlab.bovw import BovwConfig, run_bovw, save_bovw, load_bovw
    >>> result = run_bovw(BovwConfig(data="mnist", train_per_class=200, test_count=1000))  # doctest: +SKIP
    >>> save_bovw(result, "runs/bovw-mnist")  # doctest: +SKIP
    >>> load_bovw("runs/bovw-mnist").model.predict(images)  # doctest: +SKIP
    >>> evaluate_bovw("runs/bovw-mnist").main.top1  # the run's own test images  # doctest: +SKIP
"""

from __future__ import annotations

from cnnlab.lazy import lazy_attributes

_EXPORTS = {"BovwConfig": "cnnlab.bovw.config", "BovwResult": "cnnlab.bovw.pipeline",
            "run_bovw": "cnnlab.bovw.pipeline", "load_bovw": "cnnlab.bovw.store",
            "save_bovw": "cnnlab.bovw.store", "BovwRun": "cnnlab.bovw.run",
            "evaluate_bovw": "cnnlab.bovw.run"}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
