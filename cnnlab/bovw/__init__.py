"""Bag of visual words with spatial pyramids: the hand-crafted baseline of lecture 004, beside
the CNNs (``cnnlab bovw``; guide: docs/BOVW.md).

Example:
    >>> from cnnlab.bovw import BovwConfig, run_bovw, save_bovw, load_bovw
    >>> result = run_bovw(BovwConfig(data="mnist", train_per_class=200, test_count=1000))  # doctest: +SKIP
    >>> save_bovw(result, "runs/bovw-mnist")  # doctest: +SKIP
    >>> load_bovw("runs/bovw-mnist").model.predict(images)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_EXPORTS = {"BovwConfig": "cnnlab.bovw.config", "BovwResult": "cnnlab.bovw.pipeline",
            "run_bovw": "cnnlab.bovw.pipeline", "load_bovw": "cnnlab.bovw.store",
            "save_bovw": "cnnlab.bovw.store"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # imported on first use: ``cnnlab bovw --help`` needs no torch
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cnnlab.bovw' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
