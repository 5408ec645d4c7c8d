"""The interface every zoo model offers, so analysis, probes, transfer and detection heads work
on all of them (timm's uniform model API).

Module names follow torchvision's layout (``features``/``classifier`` for AlexNet and VGG,
``conv1``/``layer1``/``fc`` for ResNet) so its weight files load; ``head_path`` names the final
layer whatever the family calls it. :meth:`ImageClassifier.feature_info` lists the feature
stages (channels and stride of the last map at each resolution of the downsampling path) and
:meth:`ImageClassifier.forward_features` returns those maps, for any model: zoo, spec string,
YAML or Caffe file.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError, choices_hint
from cnnlab.layers.activations import MaxOverPieces


class ImageClassifier(nn.Module):
    """Base class: ``head_path`` is the dotted name of the last layer (an ``nn.Linear``)."""

    head_path: str = "fc"
    input_shape: tuple[int, int, int] | None = None  # (C, H, W) it was built for (create())
    # The stage modules, when the family names them (else they are traced, see feature_info)
    feature_stages: tuple[str, ...] | None = None

    def feature_info(self, input_shape: tuple[int, int, int] | None = None) -> list[dict]:
        """One entry per stage of the downsampling path, shallow to deep: ``module`` (the
        dotted name whose output is the stage's map), ``channels``, ``stride`` (input side over
        map side, rounded) and ``size`` ``(H, W)`` at ``input_shape`` (default: the model's).

        A family may name its stages (``feature_stages``); otherwise a stage is the last module
        to finish at each resolution, traced by one forward of a blank image up to the first
        global pooling, flattening, upsampling or the head. ``stride`` is the input side over
        the map side, rounded: the scale a head maps back to pixels with (exactly the product
        of the layer strides where convolutions are padded).

        Example:
            >>> from cnnlab.models import create
            >>> [(s["channels"], s["stride"]) for s in create("resnet20").feature_info()]
            [(16, 1), (32, 2), (64, 4)]
        """
        shape = tuple(input_shape or self.input_shape or ())
        if len(shape) != 3:
            raise ModelError(f"{type(self).__name__}: give the input shape (C, H, W) to trace "
                             "its feature stages")
        cache = self.__dict__.setdefault("_feature_info_cache", {})
        if shape not in cache:
            cache[shape] = trace_stages(self, shape, self.feature_stages)
        return cache[shape]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps of :meth:`feature_info`'s stages for a batch ``x`` ``(B, C, H, W)``,
        shallow to deep; the forward stops after the last stage (the head is not run)."""
        shape = tuple(int(side) for side in x.shape[1:])  # ints also while ONNX traces
        stages = [s["module"] for s in self.feature_info(shape)]
        return run_to_stages(self, x, stages)

    def get_classifier(self) -> nn.Module:
        """The final layer that maps features to class scores."""
        return self.get_submodule(self.head_path)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer by a freshly initialised one with ``num_classes`` outputs."""
        old = self.get_classifier()
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(old.in_features, num_classes)
        elif isinstance(old, nn.Conv2d):
            new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding)
        else:
            raise ModelError(f"cannot reset head {self.head_path} of type {type(old).__name__}")
        parent_name, _, child = self.head_path.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, child, new)


class _LastStageDone(Exception):
    """Raised by a hook once the deepest stage has its output: nothing after it is computed."""


def _named_outputs(model: nn.Module, x: torch.Tensor, names: list[str] | None = None,
                   stop_at: str | None = None) -> list[tuple[str, torch.Tensor]]:
    """``(name, output)`` of the submodules ``names`` (default: all) in the order they finish,
    for one forward that stops once ``stop_at`` has finished."""
    finished: list[tuple[str, torch.Tensor]] = []

    def hook(name: str):
        def record(_module, _inputs, output):
            if torch.is_tensor(output):
                finished.append((name, output))
            if name == stop_at:
                raise _LastStageDone
        return record

    wanted = set(names) if names is not None else None
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if n and (wanted is None or n in wanted)]
    try:
        model(x)
    except _LastStageDone:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return finished


GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Upsample,
          nn.ConvTranspose2d)


def trace_stages(model: ImageClassifier, shape: tuple[int, int, int],
                 named: tuple[str, ...] | None = None) -> list[dict]:
    """:meth:`ImageClassifier.feature_info` of ``model`` at input ``shape`` (of the modules
    ``named``, when given)."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            finished = _named_outputs(model, torch.zeros(1, *shape, device=device),
                                      list(named) if named else None)
    finally:
        model.train(was_training)
    if named:
        found = dict(finished)
        return [_stage(name, found[name], shape[1]) for name in named]
    stages: dict[int, dict] = {}  # stride -> the last map at it
    head, side = model.head_path, shape[1]
    for name, output in finished:
        module = model.get_submodule(name)
        if name == head or name.startswith(f"{head}.") or isinstance(module, GLOBAL) \
                or output.dim() != 4:
            break
        stride = max(1, round(side / output.shape[-2]))
        if stages and stride < max(stages):
            break  # the resolution grows again: a decoder
        stages[stride] = _stage(name, output, side)
    return [stages[s] for s in sorted(stages)]


def _stage(name: str, output: torch.Tensor, side: int) -> dict:
    return {"module": name, "channels": int(output.shape[1]),
            "stride": max(1, round(side / output.shape[-2])), "size": tuple(output.shape[-2:])}


def run_to_stages(model: nn.Module, x: torch.Tensor, stages: list[str]) -> list[torch.Tensor]:
    """The outputs of the modules named ``stages`` for ``x``, computing nothing after the
    deepest one."""
    if not stages:
        raise ModelError(f"{type(model).__name__} has no convolutional feature stages")
    outputs = dict(_named_outputs(model, x, stages, stop_at=stages[-1]))
    return [outputs[name] for name in stages]


ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "maxout")
MAXOUT_PIECES = 2  # lecture 003: max(w1^T x + b1, w2^T x + b2)


def make_activation(name: str) -> nn.Module:
    """An activation layer by name (lecture 003, "Activation functions"): sigmoid, tanh,
    relu ``max(0, x)``, leaky_relu ``max(0.1x, x)``, elu ``x if x >= 0 else e^x - 1``, maxout.

    ``maxout`` takes the maximum over pairs of consecutive channels, so the layer before it must
    be :func:`activation_pieces` times wider (builders multiply their widths by it).

    Example:
        >>> make_activation("leaky_relu")(torch.tensor([-1.0, 2.0]))
        tensor([-0.1000,  2.0000])
    """
    table = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": lambda: nn.ReLU(inplace=True),
        "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),  # max(0.1x, x) as on the slide
        "elu": lambda: nn.ELU(alpha=1.0, inplace=True),
        "maxout": lambda: MaxOverPieces(MAXOUT_PIECES, dim=1),
    }
    if name not in table:
        raise ModelError(f"unknown activation {choices_hint(name, list(table))}")
    return table[name]()


def activation_pieces(name: str) -> int:
    """How many times wider a layer must be when ``name`` follows it: 2 for maxout, else 1."""
    return MAXOUT_PIECES if name == "maxout" else 1


def make_pool(name: str, kernel: int = 2, stride: int | None = None) -> nn.Module:
    """A pooling layer by name: ``max`` or ``avg``."""
    if name == "max":
        return nn.MaxPool2d(kernel, stride)
    if name == "avg":
        return nn.AvgPool2d(kernel, stride)
    raise ModelError(f"unknown pooling '{name}'; choose one of: avg, max")


def check_input_size(x: torch.Tensor, minimum: int, model: str) -> None:
    """Raise ModelError unless ``x`` is ``(B, C, H, W)`` with ``H, W >= minimum``.

    Example:
        >>> check_input_size(torch.zeros(1, 3, 16, 16), 32, "resnet18")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        cnnlab.errors.ModelError: resnet18 needs inputs of at least 32x32 pixels, got 16x16; ...
    """
    if x.dim() != 4:
        raise ModelError(f"{model} expects a batch of images (B, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h < minimum or w < minimum:
        raise ModelError(f"{model} needs inputs of at least {minimum}x{minimum} pixels, got "
                         f"{h}x{w}; resize the images (e.g. --image-size {minimum})")
