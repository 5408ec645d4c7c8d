"""A Caffe layer as cnnlab reads it: the ``layer { ... }`` message (:class:`CaffeLayer`), checked
typed access to its ``*_param`` block (:class:`Params`) and what building it gives
(:class:`Built`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.prototxt import Message

Shape = tuple[int, ...]


@dataclass
class CaffeLayer:
    """One ``layer { ... }``; ``where`` names it in errors (``net.prototxt:12: layer 'conv1'
    (Convolution)``); ``num_output`` replaces the file's (a resized output layer)."""

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    message: Message
    where: str
    num_output: int | None = None


@dataclass
class Built:
    """A built layer: its module, the shape of each top, its parameters in Caffe's blob order
    (what the layer's ``param { }`` blocks refer to) and notes for the user."""

    module: nn.Module
    shapes: list[Shape]
    blobs: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


class Params:
    """A layer's ``<type>_param`` block with checked, typed getters."""

    def __init__(self, layer: CaffeLayer, block: str | None, allowed: set[str]) -> None:
        self.layer, self.block = layer, block
        self.message = (layer.message.get(block) if block else None) or Message(0)
        if not isinstance(self.message, Message):
            raise self.error(f"{block} must be a message {{ ... }}")
        unknown = [k for k in self.message.names() if k not in allowed]
        if unknown:
            raise self.error(f"unknown field {unknown[0]!r} in {block} (line "
                             f"{self.message.line_of(unknown[0])}); it takes: "
                             f"{', '.join(sorted(allowed))}")

    def error(self, message: str) -> ModelError:
        return ModelError(f"{self.layer.where}: {message}")

    def has(self, key: str) -> bool:
        return bool(self.message.all(key))

    def integer(self, key: str, default: int | None = None, minimum: int = 0) -> int:
        value = self.message.get(key, default)
        if value is None:
            raise self.error(f"{self.block} needs {key!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"{key} {value!r} is not an integer >= {minimum}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.message.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"{key} {value!r} is not a number")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.message.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{key} {value!r} is not true or false")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = str(self.message.get(key, default)).upper()
        if value not in choices:
            raise self.error(f"{key} {value!r}; choose one of: {', '.join(choices)}")
        return value

    def pair(self, key: str, default: int | None, minimum: int = 0) -> tuple[int, int]:
        """``kernel_size``/``pad``/``stride`` (one value, or one per axis) or their
        ``_h``/``_w`` forms, as ``(h, w)``."""
        name = "kernel_size" if key == "kernel" else key
        values = self.message.all(name)
        if self.has(f"{key}_h") or self.has(f"{key}_w"):
            if values:
                raise self.error(f"give either {name} or {key}_h and {key}_w, not both")
            return (self.integer(f"{key}_h", None, minimum), self.integer(f"{key}_w", None, minimum))
        if not values:
            if default is None:
                raise self.error(f"{self.block} needs {name} (or {key}_h and {key}_w)")
            return (default, default)
        if len(values) > 2:
            raise self.error(f"{name} has {len(values)} values; cnnlab builds 2-D layers")
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise self.error(f"{name} {value!r} is not an integer >= {minimum}")
        return (values[0], values[-1])

    def filler(self, key: str) -> Message | None:
        return self.message.get(key)
