"""cnnlab's side of each worked example in ``lecture_data/catalogue.yaml`` (lectures 000-002;
003-004 in :mod:`cnnlab.analysis.lecture_examples_late`).

One function per example id, registered in :data:`COMPUTE`; each takes the catalogue entry and
returns ``{quantity: value}`` for the quantities the entry lists, computed with ``summary``,
``explain``, the NumPy reference operators and the zoo (big models on the ``meta`` device).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cnnlab import reference as ref
from cnnlab.analysis.explain import explain_conv
from cnnlab.analysis.explain_text import lecture_input, parse_matrix
from cnnlab.analysis.explain_upsampling import explain_transpose_conv
from cnnlab.analysis.lecture_models import build_lecture_model
from cnnlab.analysis.summary import Summary, summary
from cnnlab.layers.local import LocallyConnected2d
from cnnlab.models import create
from cnnlab.models.catalog import count_parameters

COMPUTE: dict[str, Callable[..., dict]] = {}


def computes(example_id: str) -> Callable:
    """Register the function computing cnnlab's numbers for ``example_id``."""
    def add(function: Callable[..., dict]) -> Callable[..., dict]:
        COMPUTE[example_id] = function
        return function
    return add


def matrix(name: str) -> np.ndarray:
    """A lecture matrix shipped with cnnlab (``--input-file lecture:NAME``)."""
    return parse_matrix(lecture_input(name), f"lecture:{name}")


def meta_summary(build: Callable[[], nn.Module], size: tuple[int, ...]) -> Summary:
    """Summary of a model built on the ``meta`` device (no memory for big layers)."""
    with torch.device("meta"):
        model = build()
    return summary(model, size)


def meta_model(name: str, **options: object) -> nn.Module:
    with torch.device("meta"):
        return create(name, **options)


def volume(shape: tuple[int, ...]) -> str:
    """(C, H, W) -> "HxWxC", as the slides write volumes; (H, W) -> "HxW"."""
    return "x".join(str(v) for v in (*shape[1:], shape[0])) if len(shape) == 3 else \
        "x".join(str(v) for v in shape)


def weights(model: nn.Module) -> int:
    """Parameters named ``weight`` (the slides' counts leave the biases out)."""
    return sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))


@computes("padded-conv")
def _padded_conv(_example: object) -> dict:
    e = explain_conv(matrix("conv_input"), matrix("conv_kernel"), padding=1)
    return {"output": e.grids["output"].tolist()}


@computes("what-if")
def _what_if(_example: object) -> dict:
    e = explain_conv(matrix("what_if"), matrix("conv_kernel"))  # the grid is already padded
    return {"first output row": e.grids["output"][0].tolist()}


@computes("fc-vs-conv")
def _fc_vs_conv(_example: object) -> dict:
    fc, one, two = (build_lecture_model(n) for n in ("fc256", "conv256", "conv256x2"))
    return {"inputs of a 256x256x3 image": summary(fc, (3, 256, 256)).input_units,
            "fully connected, first layer (slide \"Neural Networks\")": fc[1].weight.numel(),
            "fully connected, 500 hidden + 10 classes": weights(fc),
            "one 11x11 conv layer (500 maps) + 10 classes": weights(one),
            "two conv layers, the first layer's term": two[0].weight.numel(),
            "two conv layers (11x11, then 3x3, 500 maps each)": weights(two)}


def _table_column(prefix: str, s: Summary, parameters: int) -> dict:
    return {f"{prefix} categories": s.rows[-1].output_shape[0],
            f"{prefix} image size": volume(s.input_size) if s.input_size[0] > 1
            else "x".join(map(str, s.input_size[1:])),
            f"{prefix} units": s.total_units + s.input_units,
            f"{prefix} parameters": parameters, f"{prefix} connections": s.total_connections}


@computes("lenet-alexnet")
def _lenet_alexnet(_example: object) -> dict:
    old = summary(create("lenet1989"), (1, 16, 16))
    lenet5 = create("lenet5", partial_c3=True)
    new = summary(lenet5, (1, 32, 32))
    c3 = lenet5.features[3]  # C3 with the paper's table: only 1,516 of its 2,416 are connected
    connected = new.total_params - sum(p.numel() for p in c3.parameters()) + \
        c3.connected_parameters()
    alexnet = meta_summary(lambda: create("alexnet_paper"), (3, 227, 227))
    return {**_table_column("LeNet (1989)", old, old.total_params),
            **_table_column("LeNet (1998)", new, connected),
            **_table_column("AlexNet", alexnet, alexnet.total_params)}


@computes("image-size")
def _image_size(_example: object) -> dict:
    hd = summary(nn.Flatten(), (3, 1080, 1920))
    one_layer = meta_summary(lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 256 * 256, 1000)),
                             (3, 256, 256))
    return {"input variables of a 1920x1080x3 image": hd.input_units,
            "input variables of a 256x256 RGB image": one_layer.input_units,
            "1 layer of 1,000 neurons on it, parameters": one_layer.total_params}


@computes("shared-filter")
def _shared_filter(_example: object) -> dict:
    e = explain_conv(matrix("shared_image"), matrix("shared_kernel"), flip=True)
    return {"result": e.grids["output"].tolist()}


@computes("conv-gradient")
def _conv_gradient(_example: object) -> dict:
    """a_rc = sum_ij x_(r-i,c-j) w_ij is a true convolution: a correlation with the flipped
    kernel, whose weight gradient (dY = 1 at the centre) is flipped back."""
    x, w = matrix("shared_image")[None, None], matrix("shared_kernel")[None, None]
    dy = np.zeros((1, 1, 3, 3))
    dy[0, 0, 1, 1] = 1.0  # a_rc at the image's centre, r = c = 2
    _, dw_flipped, _ = ref.conv2d_backward(x, ref.flip_kernel(w), dy)
    return {"d a_rc / d w_ij": ref.flip_kernel(dw_flipped)[0, 0].tolist()}


@computes("locally-connected")
def _locally_connected(_example: object) -> dict:
    with torch.device("meta"):
        layer = LocallyConnected2d(3, 5, (30, 30), kernel_size=7)
    _, out_h, out_w = summary(layer, (3, 30, 30)).rows[0].output_shape
    return {"filters along x": out_w, "filters along y": out_h,
            "parameters in total (weights)": layer.weight.numel()}


@computes("zero-padding")
def _zero_padding(example: object) -> dict:
    x, kernel = matrix("shared_image"), matrix("padding_kernel")
    slide = np.array(example.numbers["output, cross-correlation"])  # type: ignore[attr-defined]
    turns = [np.rot90(kernel, r) for r in range(4)] + [np.rot90(kernel.T, r) for r in range(4)]
    outputs = [ref.conv2d(x[None, None], k[None, None], padding=1)[0, 0] for k in turns]
    return {"padded input": volume(ref.pad2d(x, 1).shape),
            "output, cross-correlation": explain_conv(x, kernel, padding=1).grids["output"],
            "output, true convolution": explain_conv(x, kernel, padding=1, flip=True)
            .grids["output"],
            "differing entries under the best of the kernel's 8 flips and rotations":
                min(int(np.sum(y != slide)) for y in outputs)}


@computes("do-not-click")
def _do_not_click(_example: object) -> dict:
    s = summary(nn.Conv2d(1, 1, 3, stride=2), (1, 6, 6))
    seen = sum(last - first + 1 for first, last in s.output_field.coverage(0))
    return {"output size": ref.output_size(6, 3, stride=2),
            "rows/columns of the image never seen": 6 - seen}


@computes("pooling-gradients")
def _pooling_gradients(_example: object) -> dict:
    x, dy = matrix("pool_input")[None, None], np.ones((1, 1, 2, 2))
    _, where = ref.max_pool2d(x, 2)
    return {"max pooling": ref.max_pool2d_backward(dy, where, x.shape)[0, 0].tolist(),
            "average pooling": ref.avg_pool2d_backward(dy, x.shape, 2)[0, 0].tolist()}


@computes("alexnet-neurons")
def _alexnet_neurons(_example: object) -> dict:
    s = summary(meta_model("alexnet_paper"), (3, 227, 227))
    units = [r.units for r in s.rows if r.units]
    names = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    return {"input": s.input_units, **dict(zip(names, units, strict=True))}


@computes("layer-removal")
def _layer_removal(_example: object) -> dict:
    full = count_parameters(meta_model("alexnet_paper"))
    return {f"removing layer{'s' if ',' in key else ''} {key}":
            full - count_parameters(meta_model("alexnet_paper", remove=layers))
            for key, layers in (("7", ("fc7",)), ("6, 7", ("fc6", "fc7")),
                                ("3, 4", ("conv3", "conv4")))}


@computes("small-filters")
def _small_filters(_example: object) -> dict:
    one = summary(nn.Conv2d(1, 1, 5, bias=False), (1, 32, 32))
    two = summary(nn.Sequential(nn.Conv2d(1, 1, 3, bias=False), nn.Conv2d(1, 1, 3, bias=False)),
                  (1, 32, 32))
    return {"one 5x5 layer, output side (H - 2d)": one.rows[-1].output_shape[-1],
            "two 3x3 layers, output side (H - 2d)": two.rows[-1].output_shape[-1],
            "one 5x5 layer, weights per filter ((2d+1)^2)": one.total_params,
            "two 3x3 layers, weights per filter, each ((d+1)^2)": two.rows[0].params,
            "one 5x5 layer, receptive field": one.output_field.size[0],
            "two 3x3 layers, receptive field": two.output_field.size[0]}


@computes("inception-saving")
def _inception_saving(_example: object) -> dict:
    naive, reduced = (summary(build_lecture_model(n), (256, 28, 28))
                      for n in ("inception-naive", "inception-reduced"))
    return {"computations saved (%)": round(100 * (1 - reduced.total_macs / naive.total_macs), 1),
            "naive module output": volume(naive.rows[-1].output_shape),
            "reduced module output": volume(reduced.rows[-1].output_shape)}


@computes("googlenet")
def _googlenet(_example: object) -> dict:
    s = summary(meta_model("googlenet"), (3, 224, 224))
    alexnet = count_parameters(meta_model("alexnet_paper"))
    return {"layers (with weights, on the longest path)": s.depth,
            "parameters": s.total_params,
            "times fewer parameters than AlexNet": round(alexnet / s.total_params, 1)}


@computes("vanishing-gradient")
def _vanishing_gradient(_example: object) -> dict:
    z = (torch.arange(-10_000, 10_001, dtype=torch.float64) / 1000).requires_grad_()
    (slope,) = torch.autograd.grad(torch.sigmoid(z).sum(), z)  # sigma'(z) on a 0.001 grid
    layers = [nn.Linear(1, 1).double() for _ in range(4)]
    with torch.no_grad():  # weights 1; biases making every pre-activation 0 (sigma' = 1/4)
        for k, layer in enumerate(layers):
            layer.weight.fill_(1.0)
            layer.bias.fill_(0.0 if k == 0 else -0.5)
    a = torch.zeros(1, 1, dtype=torch.float64)
    for layer in layers:
        a = torch.sigmoid(layer(a))
    grads = torch.autograd.grad(a.sum(), [layers[0].bias, layers[2].bias])  # C = a4
    return {"max of the sigmoid's derivative": float(slope.max()),
            "... reached at z =": float(z.detach()[slope.argmax()]),
            "dC/db1 at the bound, (1/4)^4": float(grads[0]),
            "dC/db3 at the bound, (1/4)^2": float(grads[1])}


@computes("resnet-152")
def _resnet_152(_example: object) -> dict:
    return {"layers": summary(meta_model("resnet152"), (3, 224, 224)).depth}


@computes("unpooling")
def _unpooling(_example: object) -> dict:
    x, seen = matrix("unpool_input")[None, None], matrix("pool_input")[None, None]
    pooled, where = ref.max_pool2d(seen, 2)
    up = explain_transpose_conv(x[0, 0], np.ones((3, 3)), stride=2, padding=1, output_padding=1)
    return {"nearest neighbor": ref.nearest_upsample(x, 2)[0, 0].tolist(),
            "bed of nails": ref.bed_of_nails(x, 2)[0, 0].tolist(),
            "max pooling": pooled[0, 0].tolist(),
            "max unpooling": ref.max_unpool2d(x, where, (4, 4))[0, 0].tolist(),
            "transpose convolution output": volume(up.grids["output"].shape)}


@computes("one-by-one")
def _one_by_one(_example: object) -> dict:
    s = meta_summary(lambda: nn.Conv2d(64, 32, 1), (64, 56, 56))
    return {"output": volume(s.rows[0].output_shape),
            "weights per filter (a 64-dimensional dot product)": (s.total_params - 32) // 32}
