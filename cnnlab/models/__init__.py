"""Model zoo: one family per module, all reachable through :func:`create`.

Importing this package imports every family module, which registers its builders.
"""

from cnnlab.models import (  # noqa: F401  (each family module registers its builders)
    airbench,
    alexnet,
    cifarnets,
    googlenet,
    lenet,
    resnet,
    segmentation,
    vgg,
    xonet,
)
from cnnlab.models.base import ImageClassifier
from cnnlab.models.registry import (
    ModelInfo,
    create,
    default_input_size,
    is_spec,
    list_models,
    model_definition,
    model_info,
)

__all__ = ["ImageClassifier", "ModelInfo", "create", "default_input_size", "is_spec",
           "list_models", "model_definition", "model_info"]
