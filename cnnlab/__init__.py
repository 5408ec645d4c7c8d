"""cnnlab: build, train, evaluate, inspect and understand convolutional neural networks.

The Python API mirrors the CLI (``cnnlab train`` -> :func:`fit`, ``cnnlab evaluate`` ->
:func:`evaluate_runs`, ``cnnlab predict`` -> :func:`predict_images`, ...). Attributes are
imported on first use, so ``import cnnlab`` (and ``cnnlab --help``) does not load torch.

Example:
    >>> import cnnlab
    >>> cnnlab.__version__
    '0.1.0'
    >>> result = cnnlab.fit(cnnlab.TrainConfig(model="lenet5", data="digits", epochs=3))  # doctest: +SKIP
"""

from __future__ import annotations

from cnnlab.lazy import lazy_attributes
from cnnlab.version import __version__ as __version__

# public name -> the module that defines it (imported when the name is first used)
_EXPORTS = {
    "TrainConfig": "cnnlab.config",
    "create": "cnnlab.models",
    "list_models": "cnnlab.models",
    "fit": "cnnlab.train.fit",
    "load_model": "cnnlab.runs.reader",
    "open_run": "cnnlab.runs.reader",
    "evaluate_runs": "cnnlab.evaluate",
    "predict_images": "cnnlab.predict",
    "summary": "cnnlab.analysis.summary",
    "visualize": "cnnlab.viz.visualize",
}

__all__ = sorted([*_EXPORTS, "__version__"])

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
