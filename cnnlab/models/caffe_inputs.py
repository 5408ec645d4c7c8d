"""The input of a Caffe net: which blob is the image, the size it declares, and what its
``transform_param`` means for cnnlab.

Caffe declares inputs as an ``Input`` layer (``input_param { shape { dim: 1 dim: 3 dim: 227
dim: 227 } }``), the net's ``input: "data"`` with ``input_dim`` x4 or ``input_shape``, or a data
layer reading a database (``Data``, ``ImageData``, ``MemoryData``). cnnlab feeds the image from
``--data`` instead, standardised by the training set's per-channel mean and std, so a data
layer's ``transform_param`` is mapped onto that preprocessing:

- ``scale``, ``mean_value``, ``mean_file``: replaced by cnnlab's standardisation (a note says so);
- ``crop_size: N``: the declared input is N x N (cnnlab fits images to it by padding or
  resizing, ``--resize``; it does not crop);
- ``mirror: true`` in the TRAIN phase: a note to pass ``--augment flip``; in the TEST phase
  (random flips of test images) an error;
- ``force_gray`` / ``force_color``: 1 or 3 input channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnlab.errors import ModelError
from cnnlab.models.caffe_params import CaffeLayer
from cnnlab.models.prototxt import Message

TRANSFORM_KEYS = {"scale", "mirror", "crop_size", "mean_file", "mean_value", "force_color",
                  "force_gray"}
DATA_KEYS = {"data_param": {"source", "batch_size", "backend", "rand_skip", "prefetch"},
             "image_data_param": {"source", "batch_size", "rand_skip", "shuffle", "new_height",
                                  "new_width", "is_color", "root_folder"},
             "memory_data_param": {"batch_size", "channels", "height", "width"}}


@dataclass
class Found:
    """The image blob, the ``(C, H, W)`` declared for it (or None), other input tops (labels,
    which cnnlab does not feed to the model) and notes."""

    blob: str
    declared: tuple[int, int, int] | None = None
    labels: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _shape(dims: list, where: str) -> tuple[int, int, int]:
    if len(dims) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                 for d in dims):
        raise ModelError(f"{where}: the input shape must be 4 positive dims N x C x H x W, got "
                         f"{dims}")
    return tuple(dims[1:])  # type: ignore[return-value]


def find_input(net: Message, layers: list[CaffeLayer], source: str) -> Found:
    """The net's one image input (see the module doc); a ModelError if it has several."""
    found: list[Found] = []
    if net.all("input"):
        found.append(_net_fields(net, source))
    for layer in layers:
        if layer.type == "Input":
            found.append(_input_layer(layer))
        elif layer.type in ("Data", "ImageData", "MemoryData"):
            found.append(_data_layer(layer))
    if len(found) > 1:
        raise ModelError(f"{source}: {len(found)} inputs ({', '.join(f.blob for f in found)}) in "
                         "the TEST phase; cnnlab models take one image input")
    if found:
        return found[0]
    first = next((layer for layer in layers if layer.bottoms), None)
    if first is None:
        raise ModelError(f"{source}: no input: add an Input layer (input_param {{ shape {{ dim: 1 "
                         "dim: 3 dim: 227 dim: 227 } })")
    return Found(first.bottoms[0], notes=[f"no input layer: {first.bottoms[0]!r} (the first "
                                          "layer's bottom) is the input"])


def _net_fields(net: Message, source: str) -> Found:
    names = net.all("input")
    where = f"{source}:{net.line_of('input')}"
    if len(names) != 1:
        raise ModelError(f"{where}: {len(names)} inputs; cnnlab models take one image input")
    shapes = net.all("input_shape")
    dims = net.all("input_dim") or (shapes[0].all("dim") if shapes else [])
    return Found(str(names[0]), _shape(dims, where) if dims else None)


def _input_layer(layer: CaffeLayer) -> Found:
    param = layer.message.get("input_param") or Message(0)
    shapes = param.all("shape")
    if [k for k in param.names() if k != "shape"] or not layer.tops:
        raise ModelError(f"{layer.where}: expected input_param {{ shape {{ dim: ... }} }} and a top")
    declared = _shape(shapes[0].all("dim"), layer.where) if shapes else None
    return Found(layer.tops[0], declared, set(layer.tops[1:]))


def _data_layer(layer: CaffeLayer) -> Found:
    if not layer.tops:
        raise ModelError(f"{layer.where}: a data layer needs a top (the image blob)")
    block = {"Data": "data_param", "ImageData": "image_data_param",
             "MemoryData": "memory_data_param"}[layer.type]
    param = layer.message.get(block) or Message(0)
    for key in param.names():
        if key not in DATA_KEYS[block]:
            raise ModelError(f"{layer.where}: {block} field {key!r} is not supported"
                             + ("; move it to transform_param (Caffe's newer form)"
                                if key in TRANSFORM_KEYS else ""))
    channels, side, notes = _transform(layer)
    declared = (channels, side, side) if side else None
    if layer.type == "MemoryData":
        declared = (param.get("channels", 0), param.get("height", 0), param.get("width", 0))
        declared = _shape([1, *declared], layer.where)
    elif layer.type == "ImageData" and param.get("new_height") and not side:
        declared = (1 if param.get("is_color") is False else channels, param.get("new_height"),
                    param.get("new_width", param.get("new_height")))
    return Found(layer.tops[0], declared, set(layer.tops[1:]), notes)


def _transform(layer: CaffeLayer, train: bool = False) -> tuple[int, int | None, list[str]]:
    """``transform_param`` -> (channels, crop side or None, notes), or a ModelError; ``train``:
    the layer is in the TRAIN phase (not built, but its augmentation is reported)."""
    t = layer.message.get("transform_param") or Message(0)
    unknown = [k for k in t.names() if k not in TRANSFORM_KEYS]
    if unknown:
        raise ModelError(f"{layer.where}: transform_param {unknown[0]!r} is not supported; "
                         f"cnnlab maps {', '.join(sorted(TRANSFORM_KEYS))}")
    if t.all("mean_file") and t.all("mean_value"):
        raise ModelError(f"{layer.where}: give mean_file or mean_value, not both (as in Caffe)")
    if t.get("force_gray") and t.get("force_color"):
        raise ModelError(f"{layer.where}: force_gray and force_color contradict each other")
    notes = []
    if t.get("mirror") is True and train:
        notes.append(f"{layer.name} (TRAIN): mirror: true -> pass --augment flip to cnnlab "
                     "train")
    elif t.get("mirror") is True:
        raise ModelError(f"{layer.where}: transform_param mirror: true in the TEST phase flips "
                         "test images at random, which cnnlab does not do; set mirror: false "
                         "(and train with --augment flip)")
    mapped = [k for k in ("scale", "mean_value", "mean_file") if t.all(k)]
    if mapped:
        notes.append(f"{layer.name}: transform_param {'/'.join(mapped)} -> cnnlab standardises "
                     "inputs by the training set's per-channel mean and std instead")
    crop = t.get("crop_size")
    if crop is not None and (not isinstance(crop, int) or crop < 1):
        raise ModelError(f"{layer.where}: crop_size {crop!r} is not a positive integer")
    if crop:
        notes.append(f"{layer.name}: crop_size {crop} -> the input is {crop}x{crop}; cnnlab "
                     "fits images to it by padding or resizing (--resize), it does not crop")
    return (1 if t.get("force_gray") else 3), crop, notes


def train_phase_notes(layers: list[CaffeLayer]) -> list[str]:
    """Checks and notes for the TRAIN-phase data layers, which are not built: their
    ``transform_param`` must be one cnnlab can map, and ``mirror`` becomes advice."""
    notes: list[str] = []
    for layer in layers:
        if layer.type in ("Data", "ImageData", "MemoryData"):
            notes += [n for n in _transform(layer, train=True)[2] if "(TRAIN)" in n]
    return notes
