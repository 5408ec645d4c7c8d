"""Caffe network definitions (``.prototxt``) as cnnlab models (lecture 004's ``layer { ... }``).

``create("net.prototxt", input_size=(3, 227, 227))`` reads the file with cnnlab's own
protobuf-text reader (:mod:`cnnlab.models.prototxt`) and builds :class:`CaffeNet`, a DAG
over the layers' ``bottom``/``top`` blobs (in-place layers, top == bottom, included), with the
layer types of :mod:`cnnlab.models.caffe_layers`. What is built:

- **Caffe's TEST phase** (what Caffe evaluates and deploys): layers with ``include { phase:
  TRAIN }`` (or ``exclude { phase: TEST }``) are left out. Train/eval behaviour (dropout,
  batch statistics) follows cnnlab's training and evaluation as usual.
- **The input**: an ``Input`` layer, the net's ``input:``/``input_dim``/``input_shape`` fields, a
  ``Data``/``ImageData``/``MemoryData`` layer (its labels top is unused), or, when nothing
  declares one, the first layer's bottom. The declared size is the default input size; the
  data set's (or ``--input``/``--image-size``) replaces it.
- **Outputs**: the first bottom of each ``SoftmaxWithLoss`` layer; the one with the largest
  ``loss_weight`` (the last such) is the class scores, the others are auxiliary heads
  (GoogLeNet): in training mode the model returns ``(main, *aux)`` with ``loss_weights``, and
  evaluation returns the main scores only. Without loss layers the net's one unused top is the
  output; a final ``Softmax`` is dropped (training uses the logits), as are ``SoftmaxWithLoss``,
  ``Accuracy`` and ``Silence``.
- **num_classes**: the output layer's ``num_output`` (the last InnerProduct before the main
  output). A different ``num_classes`` resizes that layer, and every auxiliary output layer of
  the same size, to it (fine-tuning a 1000-class net on 10 classes): the resized layers start
  from their fillers.
- **param { lr_mult decay_mult }** (weights, then biases): :meth:`CaffeNet.param_group_options`,
  which :func:`cnnlab.train.optim.parameter_groups` turns into optimizer groups (learning rate
  x lr_mult, weight decay x decay_mult, biases included as in Caffe; lr_mult 0 freezes).
- **Fillers** as Caffe defines them; a weight without ``weight_filler`` starts at 0, as in Caffe.

Notes on what was dropped or mapped are in ``model.notes`` and logged once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.base import ImageClassifier
from cnnlab.models.caffe_graph import (
    Graph,
    Step,
    build_graph,
    caffe_layers,
    head_step,
    needed_steps,
    num_output,
)
from cnnlab.models.caffe_inputs import find_input
from cnnlab.models.caffe_layers import build_layer
from cnnlab.models.caffe_params import Built, CaffeLayer
from cnnlab.models.prototxt import Message
from cnnlab.models.spec_layers import read_model_file

EXAMPLES = Path(__file__).parent / "caffe_examples"  # Caffe's classic nets (package data)
log = logging.getLogger(__name__)
_LOGGED: set[int] = set()  # definitions whose notes were logged (once per process)


class CaffeOutputs(tuple):
    """Training-mode outputs ``(main, *auxiliary)`` with their ``loss_weights`` (Caffe's
    ``loss_weight``), which :func:`cnnlab.train.loop.training_loss` applies."""

    loss_weights: tuple[float, ...] = ()


class CaffeNet(ImageClassifier):
    """A network read from a Caffe ``.prototxt`` (see the module doc). Layers are
    ``layers[name]`` (parameters ``layers.conv1.weight``); ``(B, C, H, W) -> (B, classes)``."""

    def __init__(self, graph: Graph, modules: dict[str, nn.Module], input_size: tuple,
                 source: str, options: dict[str, dict]) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(modules)
        self.input_size, self.source, self.notes = tuple(input_size), source, graph.notes
        self.plan = [(_key(s.layer.name), s.inputs, s.outputs) for s in graph.steps]
        self.outputs, self.loss_weights = list(graph.outputs), tuple(graph.loss_weights)
        self.main_steps = needed_steps(graph, graph.outputs[:1])
        self.all_steps = needed_steps(graph, graph.outputs)
        head = head_step(graph, graph.outputs[0])
        self.head_path = f"layers.{_key(head.layer.name)}" if head else ""
        self._options = options

    def forward(self, x: torch.Tensor) -> torch.Tensor | CaffeOutputs:
        if tuple(x.shape[1:]) != self.input_size:
            raise ModelError(f"{self.source} was built for inputs "
                             f"{'x'.join(map(str, self.input_size))}, got "
                             f"{'x'.join(map(str, x.shape[1:]))}; pass input_size to create()")
        training = self.training and len(self.outputs) > 1
        blobs = {0: x}
        for index in self.all_steps if training else self.main_steps:
            key, inputs, outputs = self.plan[index]
            out = self.layers[key](*(blobs[v] for v in inputs))
            blobs.update(zip(outputs, out if len(outputs) > 1 else (out,), strict=True))
        scores = [_flat(blobs[v]) for v in (self.outputs if training else self.outputs[:1])]
        if not training:
            return scores[0]  # (B, classes)
        result = CaffeOutputs(scores)
        result.loss_weights = self.loss_weights
        return result

    def param_group_options(self) -> dict[str, dict[str, float]]:
        """``{parameter name: {"lr_scale": lr_mult, "weight_decay_scale": decay_mult}}`` from
        the layers' ``param { }`` blocks (Caffe's defaults: 1 and 1)."""
        return {name: dict(values) for name, values in self._options.items()}

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the output layer by a fresh one (torch's default initialisation)."""
        old = self.get_classifier()
        if isinstance(old, nn.Linear):
            new: nn.Module = type(old)(old.in_features, num_classes, old.bias is not None)
        else:
            super().reset_classifier(num_classes)
            return
        self.layers[self.head_path.split(".", 1)[1]] = new


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``(B, K, 1, 1) -> (B, K)`` (a fully convolutional net's scores), else unchanged."""
    return x.flatten(1) if x.dim() == 4 and x.shape[-2:] == (1, 1) else x


def _key(name: str) -> str:
    return name.replace(".", "_")


def _param_options(layer: CaffeLayer, blobs: tuple[str, ...], module: nn.Module) -> dict:
    """``param { lr_mult decay_mult }`` per blob (weights, then biases), by parameter name.
    BatchNorm's blobs are statistics, not learned (Caffe nets give them ``lr_mult: 0``)."""
    blocks = layer.message.all("param")
    if layer.type == "BatchNorm" and len(blocks) <= 3:
        return {}
    if len(blocks) > len(blobs):
        raise ModelError(f"{layer.where}: {len(blocks)} param blocks for {len(blobs)} "
                         f"parameter blobs ({', '.join(blobs) or 'none'})")
    options = {}
    for i, blob in enumerate(blobs):
        block = blocks[i] if i < len(blocks) else Message(0)
        if not isinstance(block, Message) or block.get("name") is not None:
            raise ModelError(f"{layer.where}: param blocks take lr_mult and decay_mult (shared "
                             "parameters by name are not supported)")
        values = [block.get(k, 1) for k in ("lr_mult", "decay_mult")]
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            raise ModelError(f"{layer.where}: lr_mult and decay_mult must be numbers")
        if values[0] == 0:
            getattr(module, blob).requires_grad_(False)  # lr_mult 0: Caffe does not learn it
        options[f"layers.{_key(layer.name)}.{blob}"] = {"lr_scale": float(values[0]),
                                                        "weight_decay_scale": float(values[1])}
    return options


def build_caffe(name: str, *, num_classes: int | None, in_channels: int | None,
                input_size: tuple[int, int, int] | None, text: str | None = None) -> CaffeNet:
    """Build the network of Caffe file ``name`` (``text``: its content as stored in a run)."""
    source = Path(name).name
    if text is None:
        text = read_model_file(Path(name).expanduser())
    net, layers, notes = caffe_layers(text, source)
    found = find_input(net, layers, source)
    size = input_size or found.declared
    if size is None:
        raise ModelError(f"{source}: its input layer does not say the input size; give it "
                         "(cnnlab summary --input CxHxW, or input_size=(C, H, W))")
    size = (in_channels or size[0], *size[1:])
    graph = build_graph(layers, found.blob, found.labels, source)
    graph.notes[:0] = notes + found.notes
    shapes, modules, options = {0: tuple(size)}, {}, {}
    for step in graph.steps:
        key = _key(step.layer.name)
        if key in modules:
            raise ModelError(f"{step.layer.where}: a layer named {step.layer.name!r} already "
                             "exists; layer names must be unique")
        built = _build_step(step, shapes, modules, options)
        graph.notes += built.notes
    _resize_outputs(graph, shapes, modules, options, num_classes)
    _check_outputs(graph, shapes, num_classes, source)
    _log_notes(source, text, graph.notes)
    graph.notes += [graph.resized] if graph.resized else []
    return CaffeNet(graph, modules, size, source, options)


def _build_step(step: Step, shapes: dict, modules: dict, options: dict) -> Built:
    """Build one layer from its bottoms' shapes, recording its module, tops and options."""
    built = build_layer(step.layer, [shapes[v] for v in step.inputs])
    modules[_key(step.layer.name)] = built.module
    shapes.update(zip(step.outputs, built.shapes, strict=True))
    options.update(_param_options(step.layer, built.blobs, built.module))
    return built


def _resize_outputs(graph: Graph, shapes: dict, modules: dict, options: dict,
                    num_classes: int | None) -> None:
    """Give the output layers ``num_classes`` outputs when the file says another count: the
    main output's layer and every auxiliary one of the same size, when their outputs are class
    scores (``(K,)`` or ``(K, 1, 1)``). They are rebuilt, so they start from their fillers."""
    main = head_step(graph, graph.outputs[0])
    size = num_output(main) if main is not None else 0
    if num_classes is None or not size or size == num_classes:
        return
    resized = []
    for version in graph.outputs:
        head = head_step(graph, version)
        if head is None or num_output(head) != size or shapes[version] not in \
                ((size,), (size, 1, 1)):
            continue
        head.layer.num_output = num_classes
        _build_step(head, shapes, modules, options)
        shapes[version] = (num_classes, *shapes[version][1:])
        resized.append(head.layer.name)
    if resized:
        graph.resized = (f"output layer(s) {', '.join(resized)}: {num_classes} outputs "
                         f"instead of {size} (new weights from the fillers)")


def _check_outputs(graph: Graph, shapes: dict, num_classes: int | None, source: str) -> None:
    """With ``num_classes`` (training), every output must be ``num_classes`` scores."""
    unused = [s.layer.name for i, s in enumerate(graph.steps)
              if i not in needed_steps(graph, graph.outputs) and s.layer.type != "Softmax"]
    if unused:
        graph.notes.append(f"left out {', '.join(unused)}: no path to an output")
    for version in graph.outputs if num_classes is not None else []:
        shape = shapes[version]
        if shape not in ((num_classes,), (num_classes, 1, 1)):
            name = graph.steps[graph.producer[version]].layer.name if version else "the input"
            raise ModelError(f"{source}: output {name!r} has shape {'x'.join(map(str, shape))}, "
                             f"not {num_classes} class scores; end the net with an InnerProduct "
                             f"layer with num_output: {num_classes}")


def _log_notes(source: str, text: str, notes: list[str]) -> None:
    key = hash((source, text))
    if notes and key not in _LOGGED:
        _LOGGED.add(key)
        log.warning("%s: %s", source, "; ".join(notes))


def declared_input_size(name: str, text: str | None = None) -> tuple[int, int, int] | None:
    """The ``(C, H, W)`` a Caffe file declares for its input, or None (e.g. a Data layer
    without ``crop_size``)."""
    source = Path(name).name
    net, layers, _ = caffe_layers(text if text is not None else
                                  read_model_file(Path(name).expanduser()), source)
    return find_input(net, layers, source).declared
