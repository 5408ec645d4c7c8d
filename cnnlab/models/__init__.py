"""Model zoo: one family per module, all reachable through :func:`create`.

The registry (:mod:`cnnlab.models.registry`) imports the family modules listed in its
``FAMILIES`` on first use; each registers its builders. Names here load on first use, so
``cnnlab models`` (which reads the catalog, :mod:`cnnlab.models.catalog`) needs no torch.
"""

from __future__ import annotations

from cnnlab.lazy import lazy_attributes

_EXPORTS = {"ImageClassifier": "cnnlab.models.base", "ModelInfo": "cnnlab.models.registry",
            "create": "cnnlab.models.registry", "default_input_size": "cnnlab.models.registry",
            "is_spec": "cnnlab.models.registry", "list_models": "cnnlab.models.registry",
            "model_definition": "cnnlab.models.registry", "model_info": "cnnlab.models.registry"}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
