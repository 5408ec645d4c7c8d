"""Poke the network: an image drawn or uploaded in the page -> the preprocessed input, every
layer's activation maps, the class probabilities and a saliency map (lecture 003's convnetjs
demo, "test an uploaded image"; saliency: Simonyan et al. 2014, :mod:`cnnlab.viz.saliency`).

The upload is prepared exactly as ``cnnlab predict`` prepares an image file
(:func:`cnnlab.predict.prepare_image`: the same decoder with the same decode-bomb limits, the
same inversion and framing of a dark-on-light digit), so the page's probabilities equal
``cnnlab predict``'s for the same image.

Example:
    >>> probe = run_probe("runs/lenet5-mnist")  # doctest: +SKIP
    >>> probe(open("seven.png", "rb").read())["top"]  # doctest: +SKIP
    [['7', 0.98], ['1', 0.01], ['9', 0.004]]
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.pipeline import Preprocess
from cnnlab.errors import DataError, ModelError
from cnnlab.live.snapshot import (
    MAX_LAYERS,
    display_images,
    evaluating,
    image_uri,
    maps_uri,
    record_calls,
    top_classes,
)
from cnnlab.predict import prepare_image
from cnnlab.runs import open_run
from cnnlab.viz.saliency import heat_overlay, saliency

UPLOAD_NAME = "the uploaded image"


def upload_input(data: bytes, preprocess: Preprocess) -> torch.Tensor:
    """Image file bytes -> the model input ``(1, C, H, W)``, as ``cnnlab predict`` prepares a
    file; DataError (naming "the uploaded image") for anything the image reader refuses."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-upload-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            return prepare_image(path, preprocess)
        except DataError as error:
            raise DataError(str(error).replace(str(path), UPLOAD_NAME)) from None


def probe_payload(model: nn.Module, preprocess: Preprocess, classes: list[str],
                  x: torch.Tensor, *, k: int = 3) -> dict:
    """What the page shows for one input ``x`` ``(1, C, H, W)``: the picture the model sees,
    each layer's maps, the probabilities (softmax, as ``cnnlab predict``), the top ``k`` and
    the saliency of the predicted class over the picture."""
    with evaluating(model):
        with torch.no_grad(), record_calls(model) as calls:
            probs = model(x).float().softmax(1)[0].cpu()  # (K,)
        heat = saliency(model, x)[0].cpu()  # (H, W): max over channels of |dS_c/dI|
    picture = display_images(x, preprocess)[0]  # (C, H, W) in [0, 1]
    layers = [{"name": call.name, "type": type(call.module).__name__,
               "output": list(call.output.shape[1:]),
               "activations": maps_uri(call.output[0].detach().float().cpu())}
              for call in calls[:MAX_LAYERS]]
    return {"input": image_uri(picture), "probabilities": [float(p) for p in probs],
            "classes": list(classes), "top": top_classes(probs, classes, k),
            "saliency": image_uri(heat_overlay(picture, heat)), "layers": layers}


def model_probe(model: nn.Module, preprocess: Preprocess,
                classes: list[str]) -> Callable[[bytes], dict]:
    """``probe(image_bytes) -> payload`` for a model (one request at a time)."""
    lock = threading.Lock()
    device = next(model.parameters()).device

    def probe(data: bytes) -> dict:
        x = upload_input(data, preprocess).to(device)
        with lock:
            return probe_payload(model, preprocess, classes, x)

    return probe


class LiveProbe:
    """``probe(image_bytes) -> payload`` on the current weights of a model that is training.

    The server's threads never touch the training model: they probe a frozen copy, which the
    trainer replaces with :meth:`update` (in its own thread, between steps: e.g. with each
    snapshot), so a probe never sees half-updated weights nor flips the model to eval mode.
    """

    def __init__(self, model: nn.Module, preprocess: Preprocess, classes: list[str]) -> None:
        self.preprocess, self.classes = preprocess, list(classes)
        self._model = frozen_copy(model)
        self._lock = threading.Lock()

    def update(self, model: nn.Module) -> None:
        """Probe ``model``'s weights as they are now (copied here, swapped in at once)."""
        fresh = frozen_copy(model)
        with self._lock:
            self._model = fresh

    def __call__(self, data: bytes) -> dict:
        with self._lock:
            model = self._model
        x = upload_input(data, self.preprocess).to(next(model.parameters()).device)
        return probe_payload(model, self.preprocess, self.classes, x)


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose parameters need no gradient (the probe's saliency
    differentiates with respect to the input only)."""
    copy = deepcopy(model).eval()
    for parameter in copy.parameters():
        parameter.grad = None
        parameter.requires_grad_(False)
    return copy


def run_probe(run_dir: str | Path, *, which: str = "best",
              device: str = "cpu") -> Callable[[bytes], dict]:
    """The probe of a finished run's ``which`` checkpoint (``best``, ``last``, or a file)."""
    run = open_run(run_dir, checkpoint=which, device=device)
    if run.task.output_kind != "class":
        raise ModelError(f"{run_dir}: poking the network needs a classifier; this run is a "
                         f"{run.task.name} run")
    return model_probe(run.model, run.preprocess, run.classes)
