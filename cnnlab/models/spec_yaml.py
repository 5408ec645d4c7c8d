"""YAML layer lists: cnnlab's layer names, Caffe's spellings and Keras/TensorFlow's, computed as
TensorFlow computes them (lecture 004: ``tf.layers.conv2d(inputs, filters=32, kernel_size=[5,
5], padding="same", activation=tf.nn.relu)``).

A file holds a ``layers:`` list (or a bare list) of mappings with a ``type`` and its keys:

| type (any case)                                   | keys                                      |
|---------------------------------------------------|-------------------------------------------|
| conv, convolution, conv2d                         | filters/num_output, kernel/kernel_size,   |
| locally_connected                                 | stride/strides, padding, activation,      |
|                                                   | use_bias                                  |
| max_pool, maxpooling2d; avg_pool, averagepooling2d| kernel/pool_size, stride/strides, padding |
| global_avg_pool, globalaveragepooling2d           | -                                         |
| fc, dense, linear, innerproduct                   | units/num_output, activation, use_bias    |
| flatten                                           | -                                         |
| batch_norm, batchnormalization                    | epsilon, momentum (Keras's meaning: kept) |
| dropout                                           | rate                                      |
| activation                                        | activation                                |
| an activation name, leakyrelu, softmax            | alpha/negative_slope (leaky ReLU)         |

``padding`` is an int (the lecture's ``(W - F + 2P)/S + 1``, which must be whole unless
``strict=False``), ``same`` or ``valid``; these two are TensorFlow's and never refused:
``same`` gives ``ceil(W / S)`` positions, padding ``max((out-1) S + F - W, 0)`` split with the
extra pixel at the bottom/right (any stride, even kernels); ``valid`` gives
``ceil((W - F + 1) / S)``. Keras type names (``Conv2D``, ``MaxPooling2D``, ...) default to
``valid`` as in Keras; cnnlab's names default to 0. Activations are written as TensorFlow
writes them (``relu``, ``tanh``, ``sigmoid``, ``elu``, ``leaky_relu`` with TensorFlow's slope 0.2,
``softmax``, ``linear`` = none; ``tf.nn.relu`` also reads); cnnlab's ``lrelu`` keeps the
lecture's ``max(0.1x, x)``. A final softmax is accepted and dropped from the trained graph
(cnnlab trains on the logits; a note says so); a softmax elsewhere is an error. Keras's
``BatchNormalization`` uses Keras's defaults (epsilon 1e-3, momentum 0.99, i.e. torch's 0.01).
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.errors import ConfigError, ModelError
from cnnlab.models.spec_layers import ACTIVATION_NAMES, Layer, read_model_file
from cnnlab.yamltext import load_yaml

TF_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "elu": "elu",
                  "leaky_relu": "leaky_relu", "softmax": "softmax", "linear": "linear",
                  "lrelu": "leaky_relu", "maxout": "maxout"}
TF_LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu / keras.activations.leaky_relu
KERAS_LEAKY_SLOPE = 0.3  # keras.layers.LeakyReLU
LECTURE_LEAKY_SLOPE = 0.1  # lecture 003: max(0.1x, x), cnnlab's lrelu
KERAS_TYPES = {"conv2d": "conv", "dense": "fc", "maxpooling2d": "maxpool",
               "averagepooling2d": "avgpool", "globalaveragepooling2d": "gap",
               "batchnormalization": "bn", "leakyrelu": "act"}
TYPES = {"conv": "conv", "convolution": "conv", "locally_connected": "lc",
         "max_pool": "maxpool", "avg_pool": "avgpool", "global_avg_pool": "gap",
         "fc": "fc", "linear": "fc", "innerproduct": "fc", "flatten": "flatten",
         "batch_norm": "bn", "dropout": "drop", "activation": "act", "softmax": "act",
         **KERAS_TYPES, **{a: "act" for a in ACTIVATION_NAMES}}
WINDOW = {"kernel", "stride", "padding"}
KEYS = {"conv": {"filters", "activation", "bias", *WINDOW}, "lc": {"filters", "activation",
                                                                   "bias", *WINDOW},
        "maxpool": WINDOW, "avgpool": WINDOW, "fc": {"units", "activation", "bias"},
        "drop": {"rate"}, "gap": set(), "flatten": set(), "bn": {"eps", "momentum"},
        "act": {"activation", "slope"}}
ALIASES = {"num_output": None, "kernel_size": "kernel", "pool_size": "kernel", "strides": "stride",
           "p": "rate", "use_bias": "bias", "epsilon": "eps", "alpha": "slope",
           "negative_slope": "slope"}  # None: filters or units


def load_layers(path: str | Path, text: str | None = None) -> list[Layer]:
    """Read a YAML layer list (a ``layers:`` key or a bare list) into :class:`Layer` objects;
    ``text``: the file's content as stored in a run (then ``path`` only names it)."""
    path = Path(path)
    if text is None:
        text = read_model_file(path)
    try:
        data = load_yaml(text, str(path))
    except ConfigError as error:  # not YAML, or an alias bomb
        raise ModelError(str(error)) from None
    entries = data.get("layers") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ModelError(f"{path}: expected a non-empty list of layers under 'layers:'")
    layers: list[Layer] = []
    for i, entry in enumerate(entries, start=1):
        layers += _yaml_layer(entry, f"{path.name}: layer {i}")
    return layers


def _activation(value: object, where: str) -> str:
    """A TensorFlow activation name (``relu``, ``tf.nn.relu``, ``keras.activations.relu``)."""
    name = str(value).lower().rsplit(".", 1)[-1]
    if name not in TF_ACTIVATIONS:
        raise ModelError(f"{where}: unknown activation {value!r}; choose one of: "
                         f"{', '.join(TF_ACTIVATIONS)}")
    return name


def _yaml_layer(entry: object, where: str) -> list[Layer]:
    """One YAML mapping -> its layer, plus an activation layer when it has ``activation:``."""
    if not isinstance(entry, dict) or "type" not in entry:
        raise ModelError(f"{where}: expected a mapping with a 'type', got {entry!r}")
    values = dict(entry)
    type_name = str(values.pop("type"))
    if "name" in values:
        where = f"{where} {values.pop('name')!r}"
    kind = TYPES.get(type_name.lower())
    if kind is None:
        raise ModelError(f"{where}: unknown type {type_name!r}; choose one of: "
                         f"{', '.join(sorted(TYPES))}")
    where = f"{where} ({type_name})"
    values = _resolve_aliases(values, kind)
    unknown = set(values) - KEYS[kind]
    if unknown:
        raise ModelError(f"{where}: unknown key {sorted(unknown)[0]!r}; this type takes: "
                         f"{', '.join(sorted(KEYS[kind])) or '(no keys)'}")
    if type_name.lower() in KERAS_TYPES and kind in ("conv", "maxpool", "avgpool"):
        values.setdefault("padding", "valid")  # Keras's default
    if kind == "act":
        return _activation_layers(type_name.lower(), values, where)
    layer = _layer_from_values(kind, values, where, type_name.lower())
    if values.get("activation") is None:
        return [layer]
    return [layer, *_activation_layers("activation", values, where, " activation")]


def _activation_layers(type_name: str, values: dict, where: str, suffix: str = "") -> list[Layer]:
    """``relu``/``Activation`` + ``activation: relu``/``LeakyReLU`` -> one activation layer
    (none for ``linear``)."""
    if type_name == "leakyrelu":
        name, slope = "leaky_relu", KERAS_LEAKY_SLOPE
    elif type_name == "activation":
        if "activation" not in values:
            raise ModelError(f"{where}: 'activation' missing (e.g. activation: relu)")
        name = _activation(values["activation"], where)
        slope = LECTURE_LEAKY_SLOPE if name == "lrelu" else TF_LEAKY_SLOPE
    else:
        if "activation" in values:
            raise ModelError(f"{where}: 'activation' applies to type Activation and to layers "
                             "with weights")
        name = _activation(type_name, where)
        slope = LECTURE_LEAKY_SLOPE if type_name == "lrelu" else TF_LEAKY_SLOPE
    if "slope" in values and name not in ("leaky_relu", "lrelu"):
        raise ModelError(f"{where}: a slope applies to leaky_relu only")
    slope = values.get("slope", slope)
    if isinstance(slope, bool) or not isinstance(slope, int | float):
        raise ModelError(f"{where}: slope {slope!r} is not a number")
    if name == "linear":
        return []
    return [Layer("act", where + suffix, activation=TF_ACTIVATIONS[name], slope=float(slope))]


def _resolve_aliases(values: dict, kind: str) -> dict:
    resolved = {}
    for key, value in values.items():
        if key in ALIASES:
            key = ALIASES[key] or ("units" if kind == "fc" else "filters")
        resolved[key] = value
    return resolved


def _integer(values: dict, key: str, where: str, default: int | None = None) -> int:
    value = values.get(key, default)
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        value = value[0]  # TensorFlow's kernel_size: [5, 5]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        need = "missing" if value is None else f"{value!r} is not a non-negative integer"
        raise ModelError(f"{where}: '{key}' {need} (square kernels only)")
    return value


def _padding(values: dict, where: str) -> tuple[int, str]:
    """(integer padding, TensorFlow rule ``same``/``valid`` or "")."""
    padding = values.get("padding", 0)
    if isinstance(padding, str):
        if padding.lower() not in ("same", "valid"):
            raise ModelError(f"{where}: padding {padding!r}; use an int, 'same' or 'valid'")
        return 0, padding.lower()
    return _integer(values, "padding", where, 0), ""


def _flag(values: dict, key: str, where: str, default: bool) -> bool:
    value = values.get(key, default)
    if not isinstance(value, bool):
        raise ModelError(f"{where}: '{key}' {value!r} is not true or false")
    return value


def _layer_from_values(kind: str, values: dict, where: str, type_name: str) -> Layer:
    if kind == "fc":
        return Layer(kind, where, units=_integer(values, "units", where),
                     bias=_flag(values, "bias", where, True))
    if kind in ("conv", "lc"):
        padding, rule = _padding(values, where)
        return Layer(kind, where, _integer(values, "filters", where),
                     _integer(values, "kernel", where), _integer(values, "stride", where, 1),
                     padding, tf_padding=rule, bias=_flag(values, "bias", where, True))
    if kind in ("maxpool", "avgpool"):
        kernel = _integer(values, "kernel", where)
        padding, rule = _padding(values, where)
        return Layer(kind, where, kernel=kernel, stride=_integer(values, "stride", where, kernel),
                     padding=padding, tf_padding=rule)
    if kind == "drop":
        rate = values.get("rate", 0.5)
        if not isinstance(rate, int | float) or isinstance(rate, bool):
            raise ModelError(f"{where}: 'rate' {rate!r} is not a number")
        return Layer(kind, where, rate=float(rate))
    if kind == "bn":  # momentum as Keras means it: the fraction of the running mean kept
        keras = type_name in KERAS_TYPES
        eps, momentum = values.get("eps", 1e-3 if keras else 1e-5), values.get("momentum")
        momentum = 0.99 if momentum is None and keras else momentum
        if not all(isinstance(v, int | float) and not isinstance(v, bool)
                   for v in (eps, 0.5 if momentum is None else momentum)):
            raise ModelError(f"{where}: epsilon and momentum must be numbers")
        return Layer(kind, where, eps=float(eps),
                     momentum=0.1 if momentum is None else 1.0 - float(momentum))
    return Layer(kind, where)
