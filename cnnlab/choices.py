"""The names a user chooses from on the command line, defined once for the library and its CLI.

They live in this small module (no torch) so that ``cnnlab COMMAND --help`` can list them
without importing the library behind the command.
"""

from __future__ import annotations

THRESHOLD = 0.5  # multilabel decision threshold on each class's sigmoid
EXPORT_FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}  # format -> file suffix
FINETUNE_MODES = ("finetune", "features", "scratch")
TRANSFORMS = {"translate": "pixels (dx, right)", "scale": "factor", "rotate": "degrees"}
CENTERING = ("none", "image")  # embed: subtract nothing, or each image's own mean feature
PROBE_CLASSIFIERS = {"svm": "SVM", "softmax": "Softmax"}
PICTURE_KINDS = ("filters", "maps", "top-patches", "saliency", "class-model", "evolution",
                 "errors", "top-losses", "curves", "confusion",
                 "segmentation", "gradcam")  # cnnlab visualize KIND
