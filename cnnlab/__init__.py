"""cnnlab: build, train, evaluate, inspect and understand convolutional neural networks.

The Python API mirrors the CLI (``cnnlab train`` -> :func:`fit`, ``cnnlab evaluate`` ->
:func:`evaluate_runs`, ``cnnlab predict`` -> :func:`predict_images`, ...).

Example:
    >>> import cnnlab
    >>> result = cnnlab.fit(cnnlab.TrainConfig(model="lenet5", data="digits", epochs=3))  # doctest: +SKIP
"""

__version__ = "0.1.0"

from cnnlab.analysis.summary import summary  # noqa: E402
from cnnlab.config import TrainConfig  # noqa: E402
from cnnlab.evaluate import evaluate_runs  # noqa: E402
from cnnlab.models import create, list_models  # noqa: E402
from cnnlab.predict import predict_images  # noqa: E402
from cnnlab.train import fit, load_model  # noqa: E402

__all__ = ["TrainConfig", "create", "evaluate_runs", "fit", "list_models", "load_model",
           "predict_images", "summary"]
