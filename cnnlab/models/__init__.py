"""Model zoo: one family per module, all reachable through :func:`create`.

Importing this package imports every family module, which registers its builders.
"""

from cnnlab.models import lenet  # noqa: F401  (registers lenet1/4/5)
from cnnlab.models.base import ImageClassifier
from cnnlab.models.registry import ModelInfo, create, default_input_size, list_models, model_info

__all__ = ["ImageClassifier", "ModelInfo", "create", "default_input_size", "list_models",
           "model_info"]
