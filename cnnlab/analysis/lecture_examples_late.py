"""cnnlab's side of the worked examples of lectures 003 and 004 (see
:mod:`cnnlab.analysis.lecture_examples` for the registry and lectures 000-002)."""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from cnnlab import reference as ref
from cnnlab.analysis.explain import explain_conv, explain_pool
from cnnlab.analysis.lecture_examples import computes, matrix, meta_summary, volume
from cnnlab.analysis.summary import summary

FEATURES = ("diagonal", "cross", "anti_diagonal")


def xo_maps() -> dict[str, np.ndarray]:
    """Lecture 003: each feature matched everywhere on the X, divided by its 9 pixels."""
    return {name.replace("_", "-"): explain_conv(matrix("x"), matrix(name), normalize=True)
            .grids["output"] for name in FEATURES}


@computes("x-image")
def _x_image(example: object) -> dict:
    x = matrix("x")
    slide = np.array(example.numbers["X"])  # type: ignore[attr-defined]
    kept = np.delete(slide, 5, axis=0)  # the transcript's 6th row repeats the 5th
    return {"X": x.tolist(),
            "rows of the slide's X after dropping its repeated centre row, equal to cnnlab's":
                int(np.all(kept == x, axis=1).sum())}


@computes("filtering")
def _filtering(_example: object) -> dict:
    x, feature = matrix("x")[None, None], matrix("diagonal")[None, None]
    total = ref.conv2d(x, feature)[0, 0, 1, 1]  # the patch the feature matches exactly
    return {"sum of the products": total, "divided by the 9 pixels": total / feature.size}


@computes("every-match")
def _every_match(_example: object) -> dict:
    return {name: grid.tolist() for name, grid in xo_maps().items()}


@computes("conv-layer")
def _conv_layer(_example: object) -> dict:
    return _every_match(None)


@computes("pooling")
def _pooling(_example: object) -> dict:
    return {name: explain_pool(grid, 2, ceil_mode=True).grids["output"].tolist()
            for name, grid in xo_maps().items()}


@computes("relu-layer")
def _relu_layer(_example: object) -> dict:
    maps = xo_maps()
    return {"cross map, before": maps["cross"].tolist(),
            **{f"{name}, rectified": ref.relu(grid).tolist() for name, grid in maps.items()}}


@computes("relus")
def _relus(_example: object) -> dict:
    return {"diagonal, rectified": ref.relu(xo_maps()["diagonal"]).tolist()}


@computes("box-filter")
def _box_filter(_example: object) -> dict:
    box = matrix("box_4x4")
    out = explain_conv(matrix("step_edge"), box, normalize=True).grids["output"]
    nine = explain_conv(matrix("step_edge_9x9"), box, normalize=True).grids["output"]
    return {"output": out.tolist(), "top-left 6x6 of the output": out[:6, :6].tolist(),
            "output of a 9x9 step edge": nine.tolist()}


def _conv_layer_sizes() -> dict:
    one, two = (summary(nn.Conv2d(3, 10, 5, stride=s, padding=2), (3, 32, 32)) for s in (1, 2))
    return {"stride 1": volume(one.rows[0].output_shape),
            "stride 2": volume(two.rows[0].output_shape),
            "per filter": one.total_params // 10, "in all": one.total_params}


@computes("conv-output-size")
def _conv_output_size(_example: object) -> dict:
    sizes = _conv_layer_sizes()
    return {"output volume, stride 1": sizes["stride 1"],
            "output volume, stride 2": sizes["stride 2"],
            "parameters per filter (5*5*3 + 1)": sizes["per filter"],
            "parameters in this layer": sizes["in all"]}


@computes("conv-example")
def _conv_example(_example: object) -> dict:
    sizes = _conv_layer_sizes()
    return {"output volume": sizes["stride 1"],
            "parameters per filter (5*5*3 + 1)": sizes["per filter"],
            "parameters in this layer": sizes["in all"]}


@computes("fc-2b")
def _fc_2b(_example: object) -> dict:
    s = meta_summary(lambda: nn.Sequential(nn.Flatten(), nn.Linear(200 * 200, 40_000)),
                     (1, 200, 200))
    return {"parameters": s.total_params}


@computes("spatial-7x7")
def _spatial_7x7(_example: object) -> dict:
    def output(stride: int, padding: int = 0) -> str:
        s = summary(nn.Conv2d(1, 1, 3, stride=stride, padding=padding), (1, 7, 7))
        fits = not any("does not fit" in w for w in s.warnings)
        return "x".join(map(str, s.rows[0].output_shape[1:])) if fits else "does not fit"

    return {"stride 1": output(1), "stride 2": output(2), "stride 3": output(3),
            "stride 3, padding 1": output(3, 1),
            "(7 - 3 + 2*0)/1 + 1": ref.output_size(7, 3, stride=1, padding=0)}


@computes("fc-stretch")
def _fc_stretch(_example: object) -> dict:
    flat = summary(nn.Flatten(), (3, 32, 32))
    return {"input stretched to": flat.rows[0].output_shape[0],
            "fully connected activation, a dot product of length":
                nn.Linear(3072, 10).weight.shape[1],
            "convolutional activation, a dot product of length (5x5x3)":
                nn.Conv2d(3, 1, 5).weight[0].numel()}


@computes("nn-size")
def _nn_size(_example: object) -> dict:
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 4), nn.Sigmoid(),
                        nn.Linear(4, 1))
    s = summary(net, (3,))
    biases = sum(p.numel() for n, p in net.named_parameters() if n.endswith("bias"))
    return {"neurons": s.total_units, "weights": s.total_params - biases, "biases": biases,
            "parameters": s.total_params}


@computes("gaussian")
def _gaussian(_example: object) -> dict:
    sigma = 1 / math.sqrt(2 * math.log(2))  # where the correct density halves one pixel away
    u = np.arange(-1, 2)
    sampled = np.exp(-(u[:, None] ** 2 + u[None] ** 2) / (2 * sigma ** 2))
    step = 0.01
    grid = np.arange(-10, 10 + step / 2, step)
    uu, vv = np.meshgrid(grid, grid)
    slide_h = np.exp(-(uu ** 2 + vv ** 2) / 1.0 ** 2) / (2 * math.pi * 1.0 ** 2)  # sigma = 1
    smoothed = explain_conv(matrix("gaussian_image"), matrix("gaussian_kernel"), padding=1)
    return {"kernel x 16": np.round(16 * sampled / sampled.sum(), 9).tolist(),
            "integral of h(u, v) over the plane": round(float(slide_h.sum() * step ** 2), 6),
            "smoothed image (zero padding 1)": smoothed.grids["output"].tolist()}


@computes("shrinking")
def _shrinking(_example: object) -> dict:
    s = summary(nn.Sequential(nn.Conv2d(1, 1, 5), nn.Conv2d(1, 1, 5)), (1, 32, 32))
    return {"sizes": [32] + [r.output_shape[-1] for r in s.rows]}
