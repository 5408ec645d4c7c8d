"""A Caffe net as a graph: its layers in Caffe's TEST phase, bottoms resolved to blob versions
(an in-place layer, top == bottom, makes a new version of its blob), the outputs and their
loss weights, and the output ("head") layers (see :mod:`cnnlab.models.caffe`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnlab.errors import ModelError
from cnnlab.models.caffe_inputs import train_phase_notes
from cnnlab.models.caffe_layers import LAYER_TYPES, WEIGHT_TYPES
from cnnlab.models.caffe_params import CaffeLayer
from cnnlab.models.prototxt import Message, parse_prototxt

NET_KEYS = {"name", "input", "input_dim", "input_shape", "layer", "force_backward", "state",
            "debug_info"}
LAYER_KEYS = {"name", "type", "bottom", "top", "phase", "loss_weight", "param", "include",
              "exclude", "propagate_down", "loss_param", "accuracy_param", "transform_param",
              "input_param", "data_param", "image_data_param", "memory_data_param"}
DROPPED = ("SoftmaxWithLoss", "Accuracy", "Silence")
INPUT_TYPES = ("Input", "Data", "ImageData", "MemoryData")
PASS_THROUGH = ("ReLU", "Dropout", "Pooling", "Flatten", "Split", "Sigmoid", "TanH")


def caffe_layers(text: str, source: str) -> tuple[Message, list[CaffeLayer], list[str]]:
    """The net's top-level message, its layers in Caffe's TEST phase, and notes on the layers
    phase rules left out."""
    net = parse_prototxt(text, source)
    if net.all("layers"):
        raise ModelError(f"{source}:{net.line_of('layers')}: 'layers' is Caffe's old V1 format; "
                         "upgrade it (Caffe's upgrade_net_proto_text tool) to 'layer' entries")
    unknown = [k for k in net.names() if k not in NET_KEYS]
    if unknown:
        raise ModelError(f"{source}:{net.line_of(unknown[0])}: unknown net field "
                         f"{unknown[0]!r}; a net has: {', '.join(sorted(NET_KEYS))}")
    layers, left_out = [], []
    for message in net.all("layer"):
        layer = _layer(message, source)
        (layers if _in_test_phase(layer) else left_out).append(layer)
    notes = [f"built Caffe's TEST phase; left out: {', '.join(_names(left_out))}"] \
        if left_out else []
    notes += train_phase_notes(left_out)
    if not layers:
        raise ModelError(f"{source}: no layers in Caffe's TEST phase (write 'layer {{ ... }}')")
    return net, layers, notes


def _names(layers: list[CaffeLayer]) -> list[str]:
    return [f"{layer.type} {layer.name!r}" for layer in layers]


def _layer(message: object, source: str) -> CaffeLayer:
    if not isinstance(message, Message):
        raise ModelError(f"{source}: 'layer' must be a message: layer {{ ... }}")
    name, kind = message.get("name"), message.get("type")
    label = f"{source}:{message.line}: layer {name!r}"
    if not isinstance(kind, str):
        raise ModelError(f"{label}: needs a type, e.g. type: \"Convolution\"")
    where = f"{label} ({kind})"
    if kind not in LAYER_TYPES and kind not in DROPPED and kind not in INPUT_TYPES:
        raise ModelError(f"{where}: layer type {kind!r} is not supported; supported: "
                         f"{', '.join(sorted([*LAYER_TYPES, *DROPPED, *INPUT_TYPES]))}")
    own = LAYER_TYPES[kind][0] if kind in LAYER_TYPES else None
    for key in message.names():
        if key not in LAYER_KEYS and key != own:
            hint = f"; it takes {own}" if own else ""
            raise ModelError(f"{where}: field {key!r} (line {message.line_of(key)}) does not "
                             f"apply to a {kind} layer{hint}")
    bottoms, tops = message.all("bottom"), message.all("top")
    if not all(isinstance(b, str) for b in [*bottoms, *tops]):
        raise ModelError(f"{where}: bottom and top are blob names in quotes")
    return CaffeLayer(str(name or f"{kind.lower()}{message.line}"), kind, bottoms, tops,
                      message, where)


def _rule_met(rule: object, where: str) -> bool:
    """Caffe's NetStateRule against the TEST phase at level 0 with no stages."""
    if not isinstance(rule, Message):
        raise ModelError(f"{where}: include/exclude must be a message {{ phase: TEST }}")
    phase = str(rule.get("phase", "TEST")).upper()
    if phase not in ("TRAIN", "TEST"):
        raise ModelError(f"{where}: phase {phase!r}; choose TRAIN or TEST")
    return (phase == "TEST" and rule.get("min_level", 0) <= 0 <= rule.get("max_level", 0)
            and not rule.all("stage"))


def _in_test_phase(layer: CaffeLayer) -> bool:
    include, exclude = layer.message.all("include"), layer.message.all("exclude")
    if include and exclude:
        raise ModelError(f"{layer.where}: give include or exclude rules, not both")
    if include:
        return any(_rule_met(rule, layer.where) for rule in include)
    return not any(_rule_met(rule, layer.where) for rule in exclude)


@dataclass
class Step:
    """A layer to run: reads blob versions ``inputs``, writes new versions ``outputs``."""

    layer: CaffeLayer
    inputs: list[int]
    outputs: list[int]


@dataclass
class Graph:
    """The layers to run as versioned blobs (an in-place layer makes a new version of its
    blob), the output versions (main first) and their loss weights."""

    input_blob: str
    steps: list[Step] = field(default_factory=list)
    producer: dict[int, int] = field(default_factory=dict)  # version -> step index
    outputs: list[int] = field(default_factory=list)
    loss_weights: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resized: str = ""  # what a num_classes unlike the file's changed (not logged: expected)


def build_graph(layers: list[CaffeLayer], input_blob: str, labels: set[str],
                source: str) -> Graph:
    """Resolve bottoms to blob versions, and pick the outputs."""
    graph, current, consumed, losses = Graph(input_blob), {input_blob: 0}, set(), []
    dropped, version = [], 0
    for layer in layers:
        if layer.type in INPUT_TYPES:
            continue
        # a loss or accuracy layer's other bottoms are the labels, which cnnlab supplies
        for bottom in layer.bottoms[:1] if layer.type in DROPPED else layer.bottoms:
            if bottom in labels and bottom not in current:
                raise ModelError(f"{layer.where}: reads {bottom!r}, the labels of the input "
                                 "layer; cnnlab feeds only the image to the model")
            if bottom not in current:
                raise ModelError(f"{layer.where}: bottom {bottom!r} is not the top of any "
                                 f"earlier layer (blobs so far: {', '.join(current)})")
        if layer.type in DROPPED:
            dropped.append(layer)
            if layer.type == "SoftmaxWithLoss":
                losses.append((current[layer.bottoms[0]], _loss_weight(layer, 1.0), layer))
            continue
        if _loss_weight(layer, 0.0):
            raise ModelError(f"{layer.where}: loss_weight applies to SoftmaxWithLoss layers only")
        inputs = [current[b] for b in layer.bottoms]
        consumed.update(inputs)
        outputs = list(range(version + 1, version + 1 + len(layer.tops)))
        version += len(layer.tops)
        graph.producer.update({v: len(graph.steps) for v in outputs})
        current.update(zip(layer.tops, outputs, strict=True))
        graph.steps.append(Step(layer, inputs, outputs))
    if dropped:
        graph.notes.append(f"dropped {', '.join(_names(dropped))} (cnnlab trains with "
                           "softmax cross-entropy on the logits and reports accuracy itself)")
    unused = [v for v, i in graph.producer.items()
              if v not in consumed and graph.steps[i].layer.type != "Split"]
    _pick_outputs(graph, losses, unused, source)
    return graph


def _loss_weight(layer: CaffeLayer, default: float) -> float:
    weights = layer.message.all("loss_weight")
    if len(weights) > 1 or not all(isinstance(w, int | float) for w in weights):
        raise ModelError(f"{layer.where}: loss_weight must be one number")
    return float(weights[0]) if weights else default


def _pick_outputs(graph: Graph, losses: list, unused: list[int], source: str) -> None:
    if losses:
        main = max(range(len(losses)), key=lambda i: (losses[i][1], i))
        weighted = [losses[main]] + [w for i, w in enumerate(losses) if i != main and w[1]]
        graph.outputs = [v for v, _, _ in weighted]
        graph.loss_weights = [w for _, w, _ in weighted]
        return
    outputs = []
    for v in unused:
        step = graph.steps[graph.producer[v]]
        if step.layer.type == "Softmax":
            graph.notes.append(f"dropped the final Softmax {step.layer.name!r}: training uses "
                               "the logits (cross-entropy applies the softmax)")
            v = step.inputs[0]
        outputs.append(v)
    if len(outputs) != 1:
        names = [graph.steps[graph.producer[v]].layer.name for v in outputs]
        raise ModelError(f"{source}: the net has {len(outputs)} outputs ({', '.join(names) or 'none'}); "
                         "mark the class scores with a SoftmaxWithLoss layer")
    graph.outputs, graph.loss_weights = outputs, [1.0]


def needed_steps(graph: Graph, outputs: list[int]) -> list[int]:
    """Indices of the steps the ``outputs`` depend on, in order."""
    needed, todo = set(), [v for v in outputs if v]
    while todo:
        index = graph.producer[todo.pop()]
        if index not in needed:
            needed.add(index)
            todo += [v for v in graph.steps[index].inputs if v]
    return sorted(needed)


def head_step(graph: Graph, version: int) -> Step | None:
    """The weight layer that computes output ``version`` (through ReLU, dropout, pooling...)."""
    while version:
        step = graph.steps[graph.producer[version]]
        if step.layer.type in WEIGHT_TYPES:
            return step
        if step.layer.type not in PASS_THROUGH:
            return None
        version = step.inputs[0]
    return None


def num_output(step: Step) -> int:
    value = (step.layer.message.get(LAYER_TYPES[step.layer.type][0]) or Message(0)).get(
        "num_output")
    return value if isinstance(value, int) else 0
