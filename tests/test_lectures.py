"""Golden tests of ``cnnlab lectures``: for every worked example, cnnlab's numbers (computed here
by hand or with an independent oracle) and every entry where the slide differs, exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_xo as xo  # the X's and O's tables typed from the slides
from scipy.ndimage import correlate

from cnnlab.analysis.lectures import as_printed, examples, run_example
from cnnlab.cli.main import main
from cnnlab.data.xo import X_IMAGE

ROOT = Path(__file__).resolve().parents[1]
BOX_7X7 = [[128, 128, 109, 90, 71, 52, 52], [128, 128, 109, 90, 71, 52, 52],
           [109, 109, 100, 90, 81, 71, 71], [90] * 7, [71, 71, 81, 90, 100, 109, 109],
           [52, 52, 71, 90, 109, 128, 128], [52, 52, 71, 90, 109, 128, 128]]
# lecture 001 "Zero-padding to maintain input dimensionality", the slide's output
ZERO_PADDING_SLIDE = np.array([[1, 1, 2, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 2, 1], [1, 0, 2, 1, 0],
                               [0, 1, 1, 3, 0]])
IMAGE_5X5 = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0],
                      [0, 1, 1, 0, 0]])
PADDING_KERNEL = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 1]])
GAUSSIAN_IMAGE = np.zeros((11, 11))
GAUSSIAN_IMAGE[2:8, 3:8] = 90
GAUSSIAN_IMAGE[6, 4] = 0
GAUSSIAN_IMAGE[9, 2] = 90
GAUSSIAN = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
ALEXNET_MACS = (55 * 55 * 96 * 363 + 27 * 27 * 256 * 48 * 25 + 13 * 13 * 384 * 256 * 9
                + 13 * 13 * 384 * 192 * 9 + 13 * 13 * 256 * 192 * 9 + 9216 * 4096 + 4096 * 4096
                + 4096 * 1000)
ALEXNET_UNITS = 55 * 55 * 96 + 27 * 27 * 256 + 2 * 13 * 13 * 384 + 13 * 13 * 256 + 4096 * 2 + 1000


def grid_diffs(quantity: str, slide: object, cnnlab: object) -> list[tuple]:
    """(quantity, index, slide, cnnlab) for every entry where two equal-shaped grids differ."""
    a, b = np.asarray(slide, dtype=float), np.asarray(cnnlab, dtype=float)
    return [(quantity, tuple(int(i) for i in idx), a[tuple(idx)], b[tuple(idx)])
            for idx in np.argwhere(~np.isclose(a, b))]


def with_entries(grid: list[list[float]], changes: dict) -> list[list[float]]:
    out = [list(row) for row in grid]
    for (i, j), value in changes.items():
        out[i][j] = value
    return out


# id -> (cnnlab's numbers, the differences (quantity, index, slide, cnnlab), the quantities
# that agree only after the slide's rounding: {quantity: status})
GOLDEN: dict[str, tuple[dict, list, dict]] = {
    "padded-conv": ({"output": [[2, -1, -6], [4, -3, -5], [1, -2, -4]]},
                    [("output", (2, 2), -2, -4)], {}),
    "what-if": ({"first output row": [5, -4, -18]},
                [("first output row", (0,), 2, 5), ("first output row", (1,), -1, -4)], {}),
    "fc-vs-conv": ({
        "inputs of a 256x256x3 image": 65536 * 3,
        "fully connected, first layer (slide \"Neural Networks\")": 65536 * 3 * 500,
        "fully connected, 500 hidden + 10 classes": 65536 * 3 * 500 + 500 * 10,
        "one 11x11 conv layer (500 maps) + 10 classes": 11 * 11 * 3 * 500 + 500 * 10,
        "two conv layers, the first layer's term": 11 * 11 * 3 * 500,
        "two conv layers (11x11, then 3x3, 500 maps each)":
            11 * 11 * 3 * 500 + 3 * 3 * 500 * 500 + 500 * 10},
        [("one 11x11 conv layer (500 maps) + 10 classes", None, 155_000, 186_500),
         ("two conv layers, the first layer's term", None, 150_000, 181_500)],
        {"fully connected, first layer (slide \"Neural Networks\")": "rounded",
         "fully connected, 500 hidden + 10 classes": "rounded",
         "two conv layers (11x11, then 3x3, 500 maps each)": "rounded"}),
    "lenet-alexnet": ({
        "LeNet (1989) categories": 10, "LeNet (1989) image size": "16x16",
        "LeNet (1989) units": 256 + 768 + 192 + 30 + 10, "LeNet (1989) parameters": 9_760,
        "LeNet (1989) connections": 768 * 26 + 192 * 201 + 30 * 193 + 10 * 31,
        "LeNet (1998) categories": 10, "LeNet (1998) image size": "32x32",
        "LeNet (1998) units": 1024 + 4704 + 1600 + 120 + 84 + 10,
        "LeNet (1998) parameters": 156 + 60 * 25 + 16 + 48_120 + 10_164 + 850,
        "LeNet (1998) connections": 28 * 28 * 6 * 26 + 100 * (60 * 25 + 16) + 120 * 401
        + 84 * 121 + 10 * 85,
        "AlexNet categories": 1000, "AlexNet image size": "227x227x3",
        "AlexNet units": ALEXNET_UNITS + 227 * 227 * 3, "AlexNet parameters": 60_965_224,
        "AlexNet connections": ALEXNET_MACS + ALEXNET_UNITS},
        [("LeNet (1998) image size", None, "28x28", "32x32"),
         ("LeNet (1998) units", None, 8084, 7542), ("LeNet (1998) connections", None, 344_000,
                                                    333_038),
         ("AlexNet image size", None, "256x256x3", "227x227x3"),
         ("AlexNet units", None, 658_000, 813_859),
         ("AlexNet connections", None, 652_000_000, 725_066_088)],
        {"LeNet (1989) connections": "rounded", "LeNet (1998) parameters": "rounded",
         "AlexNet parameters": "rounded"}),
    "image-size": ({"input variables of a 1920x1080x3 image": 1920 * 1080 * 3,
                    "input variables of a 256x256 RGB image": 256 * 256 * 3,
                    "1 layer of 1,000 neurons on it, parameters": 256 * 256 * 3 * 1000 + 1000},
                   [], {"input variables of a 256x256 RGB image": "rounded",
                        "1 layer of 1,000 neurons on it, parameters": "rounded"}),
    "shared-filter": ({"result": [[4, 3, 4], [2, 4, 3], [2, 3, 4]]}, [], {}),
    "conv-gradient": ({"d a_rc / d w_ij": [[1, 1, 0], [1, 1, 0], [1, 1, 1]]},
                      grid_diffs("d a_rc / d w_ij", np.full((3, 3), 7),
                                 [[1, 1, 0], [1, 1, 0], [1, 1, 1]]), {}),
    "locally-connected": ({"filters along x": 24, "filters along y": 24,
                           "parameters in total (weights)": 24 * 24 * 5 * 7 * 7 * 3}, [],
                          {"parameters in total (weights)": "rounded"}),
    "do-not-click": ({"output size": 2.5, "rows/columns of the image never seen": 1}, [],
                     {"rows/columns of the image never seen": "cnnlab only"}),
    "pooling-gradients": ({"max pooling": [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0],
                                           [1, 0, 0, 1]],
                           "average pooling": np.full((4, 4), 0.25).tolist()}, [], {}),
    "alexnet-neurons": ({"input": 227 * 227 * 3, "conv1": 55 * 55 * 96, "conv2": 27 * 27 * 256,
                         "conv3": 13 * 13 * 384, "conv4": 13 * 13 * 384, "conv5": 13 * 13 * 256,
                         "fc6": 4096, "fc7": 4096, "fc8": 1000},
                        [("input", None, 150_528, 154_587), ("conv1", None, 253_440, 290_400)],
                        {}),
    "layer-removal": ({"removing layer 7": 4096 * 4096 + 4096,
                       "removing layers 6, 7": (9216 * 4096 + 4096) + (4096 * 4096 + 4096)
                       - (9216 - 4096) * 1000,
                       "removing layers 3, 4": (9 * 256 * 384 + 384) + (9 * 192 * 384 + 384)
                       + 9 * (192 - 128) * 256},
                      [("removing layers 3, 4", None, 1_000_000, 1_696_512)],
                      {"removing layer 7": "truncated", "removing layers 6, 7": "rounded"}),
    "small-filters": ({"one 5x5 layer, output side (H - 2d)": 28,
                       "two 3x3 layers, output side (H - 2d)": 28,
                       "one 5x5 layer, weights per filter ((2d+1)^2)": 25,
                       "two 3x3 layers, weights per filter, each ((d+1)^2)": 9,
                       "one 5x5 layer, receptive field": 5,
                       "two 3x3 layers, receptive field": 5}, [], {}),
    "inception-saving": ({"computations saved (%)": 68.2, "naive module output": "28x28x672",
                          "reduced module output": "28x28x480"},
                         [("computations saved (%)", None, 60, 68.2)],
                         {"naive module output": "cnnlab only",
                          "reduced module output": "cnnlab only"}),
    "googlenet": ({"layers (with weights, on the longest path)": 22, "parameters": 6_624_904,
                   "times fewer parameters than AlexNet": 9.2},
                  [("parameters", None, 5_000_000, 6_624_904),
                   ("times fewer parameters than AlexNet", None, 12, 9.2)], {}),
    "vanishing-gradient": ({"max of the sigmoid's derivative": 0.25, "... reached at z =": 0,
                            "dC/db1 at the bound, (1/4)^4": 1 / 256,
                            "dC/db3 at the bound, (1/4)^2": 1 / 16}, [], {}),
    "resnet-152": ({"layers": 1 + 3 * (3 + 8 + 36 + 3) + 1}, [], {}),
    "unpooling": ({"nearest neighbor": [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]],
                   "bed of nails": [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]],
                   "max pooling": [[5, 6], [7, 8]],
                   "max unpooling": [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]],
                   "transpose convolution output": "4x4"}, [], {}),
    "one-by-one": ({"output": "56x56x32",
                    "weights per filter (a 64-dimensional dot product)": 64}, [], {}),
    "x-image": ({"X": [list(r) for r in X_IMAGE],
                 "rows of the slide's X after dropping its repeated centre row, equal to "
                 "cnnlab's": 9}, [("X", None, "10x9", "9x9")], {}),
    "filtering": ({"sum of the products": 9, "divided by the 9 pixels": 1.0},
                  [("sum of the products", None, 8, 9)], {}),
    "every-match": ({"diagonal": xo.CONV_DIAGONAL, "cross": xo.CONV_CROSS,
                     "anti-diagonal": xo.CONV_ANTI_DIAGONAL}, [], {}),
    "conv-layer": ({"diagonal": xo.CONV_DIAGONAL, "cross": xo.CONV_CROSS,
                    "anti-diagonal": xo.CONV_ANTI_DIAGONAL},
                   [("diagonal", (0, 4), 0.05, 0.55), ("diagonal", (1, 4), 0.11, -0.11),
                    ("diagonal", (3, 4), 0.33, -0.33), ("diagonal", (4, 1), 0.11, -0.11),
                    ("diagonal", (4, 5), 0.11, -0.11), ("diagonal", (5, 4), 0.11, -0.11),
                    ("cross", (1, 4), 0.55, -0.55), ("cross", (3, 4), 0.77, -0.77),
                    ("cross", (4, 4), 0.65, 0.55), ("cross", (4, 5), -0.65, -0.55),
                    ("cross", (5, 4), 0.65, -0.55), ("cross", (5, 5), 0.65, 0.55),
                    ("anti-diagonal", (1, 4), 0.11, -0.11), ("anti-diagonal", (2, 5), 0.11, -0.11),
                    ("anti-diagonal", (3, 4), 0.33, -0.33), ("anti-diagonal", (5, 4), 0.11, -0.11),
                    ("anti-diagonal", (6, 5), 0.11, -0.11)], {}),
    "pooling": ({"diagonal": xo.POOL_DIAGONAL, "cross": xo.POOL_CROSS,
                 "anti-diagonal": xo.POOL_ANTI_DIAGONAL}, [], {}),
    "relu-layer": ({"cross map, before": xo.CONV_CROSS, "diagonal, rectified": xo.RELU_DIAGONAL,
                    "cross, rectified": xo.RELU_CROSS, "anti-diagonal, rectified": xo.RELU_ANTI_DIAGONAL},
                   [("cross map, before", (4, 2), 0.65, 0.55),
                    ("cross map, before", (4, 4), 0.65, 0.55),
                    ("diagonal, rectified", (2, 4), 0, 0.11),
                    ("diagonal, rectified", (2, 5), 0.11, 0),
                    ("diagonal, rectified", (2, 6), 0, 0.55)], {}),
    "relus": ({"diagonal, rectified": xo.RELU_DIAGONAL},
              [("diagonal, rectified", None, "8x7", "7x7")], {}),
    "box-filter": ({"output": BOX_7X7, "top-left 6x6 of the output": [r[:6] for r in BOX_7X7[:6]],
                    "output of a 9x9 step edge": [r[:6] for r in BOX_7X7[:6]]},
                   [("output", None, "6x6", "7x7")], {}),
    "conv-output-size": ({"output volume, stride 1": "32x32x10",
                          "output volume, stride 2": "16x16x10",
                          "parameters per filter (5*5*3 + 1)": 76,
                          "parameters in this layer": 760}, [], {}),
    "fc-2b": ({"parameters": 200 * 200 * 40_000 + 40_000}, [], {"parameters": "rounded"}),
    "spatial-7x7": ({"stride 1": "5x5", "stride 2": "3x3", "stride 3": "does not fit",
                     "stride 3, padding 1": "3x3", "(7 - 3 + 2*0)/1 + 1": 5}, [], {}),
    "conv-example": ({"output volume": "32x32x10", "parameters per filter (5*5*3 + 1)": 76,
                      "parameters in this layer": 760}, [], {}),
    "fc-stretch": ({"input stretched to": 3072,
                    "fully connected activation, a dot product of length": 3072,
                    "convolutional activation, a dot product of length (5x5x3)": 75}, [], {}),
    "nn-size": ({"neurons": 9, "weights": 3 * 4 + 4 * 4 + 4 * 1, "biases": 9, "parameters": 41},
                [], {}),
    "gaussian": ({"kernel x 16": [[1, 2, 1], [2, 4, 2], [1, 2, 1]],
                  "integral of h(u, v) over the plane": 0.5,
                  "smoothed image (zero padding 1)":  # printed with 2 decimals, half up
                      (np.floor(correlate(GAUSSIAN_IMAGE, GAUSSIAN, mode="constant") * 100 + 0.5)
                       / 100).tolist()},
                 [("integral of h(u, v) over the plane", None, 1, 0.5)],
                 {"smoothed image (zero padding 1)": "cnnlab only"}),
    "shrinking": ({"sizes": [32, 28, 24]}, [], {}),
}
CORRELATION = [[3, 4, 4, 2, 1], [2, 4, 4, 4, 2], [1, 3, 5, 4, 2], [1, 4, 5, 3, 0],
               [1, 3, 2, 0, 0]]
CONVOLUTION = [[1, 2, 3, 2, 1], [2, 4, 4, 4, 2], [1, 2, 4, 5, 4], [0, 1, 4, 6, 3],
               [0, 2, 4, 3, 1]]
GOLDEN["zero-padding"] = (
    {"padded input": "7x7", "output, cross-correlation": CORRELATION,
     "output, true convolution": CONVOLUTION,
     "differing entries under the best of the kernel's 8 flips and rotations": 20},
    [("padded input", None, "6x7", "7x7"),
     *grid_diffs("output, cross-correlation", ZERO_PADDING_SLIDE, CORRELATION),
     *grid_diffs("output, true convolution", ZERO_PADDING_SLIDE, CONVOLUTION),
     ("differing entries under the best of the kernel's 8 flips and rotations", None, 0, 20)],
    {})


def test_every_example_has_a_golden_test() -> None:
    assert [e.id for e in examples()] == list(dict.fromkeys(e.id for e in examples()))
    assert {e.id for e in examples()} == set(GOLDEN)
    assert len(GOLDEN) >= 36


def test_zero_padding_oracles_are_scipy() -> None:
    # the expected grids above, from an independent implementation (scipy.ndimage)
    corr = correlate(IMAGE_5X5, PADDING_KERNEL, mode="constant")
    conv = correlate(IMAGE_5X5, PADDING_KERNEL[::-1, ::-1], mode="constant")
    assert corr.tolist() == CORRELATION and conv.tolist() == CONVOLUTION
    assert (corr[2, 2], conv[2, 2]) == (5, 4)  # docs/EXPLAIN.md: "at the centre ... 5 ... 4"


def test_gaussian_smoothing_is_scipys_correlation() -> None:
    smoothed = next(c.cnnlab for c in run_example("gaussian").comparisons
                    if c.quantity.startswith("smoothed"))
    np.testing.assert_allclose(smoothed, correlate(GAUSSIAN_IMAGE, GAUSSIAN, mode="constant"),
                               atol=1e-12)


def _same(value: object, expected: object) -> bool:
    if isinstance(expected, str) or isinstance(value, str):
        return value == expected
    return bool(np.allclose(np.asarray(value, dtype=float), np.asarray(expected, dtype=float),
                            rtol=0, atol=1e-9))


@pytest.mark.parametrize("example_id", list(GOLDEN))
def test_example_numbers(example_id: str) -> None:
    expected, differences, rounded = GOLDEN[example_id]
    result = run_example(example_id)
    assert [c.quantity for c in result.comparisons] == list(expected)
    for c in result.comparisons:
        shown = as_printed(c.cnnlab, result.example)
        assert _same(shown, expected[c.quantity]), (c.quantity, shown)
    found = [(d.quantity, d.index, d.slide, d.cnnlab) for d in result.differences]
    assert len(found) == len(differences)
    for got, want in zip(found, differences, strict=True):
        assert got[:2] == want[:2] and _same(got[2], want[2]) and _same(got[3], want[3]), got
    wrong = {q for q, *_ in differences}
    for c in result.comparisons:
        status = "differs" if c.quantity in wrong else rounded.get(c.quantity, "same")
        assert c.status == status, (c.quantity, c.status)
        if status == "same":  # then the slide's number is cnnlab's, as printed
            assert _same(c.slide, expected[c.quantity]), c.quantity
        if status == "differs":
            assert c.why or example_id in ("zero-padding",), f"{c.quantity}: say why"


def test_cli_lists_and_runs_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lectures"]) == 0
    listing = capsys.readouterr().out
    for example in examples():
        assert f"\n{example.id} " in listing and example.slide[:20] in listing
    assert main(["lectures", "padded-conv"]) == 0
    out = capsys.readouterr().out
    assert "  [2,2]: slide -2, cnnlab -4" in out and "-2*" in out and "-4*" in out
    assert "why (output): the last frame's bottom-right entry" in out
    assert "verdict: 1 of 1 quantities differ from the slide (1 entry)" in out
    assert main(["lectures", "lenet-alexnet", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    units = next(q for q in data["quantities"] if q["quantity"] == "LeNet (1989) units")
    assert (units["slide"], units["cnnlab"], units["status"]) == (1256, 1256, "same")
    assert main(["lectures", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(GOLDEN)
    assert main(["lectures", "padded-conv-x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'padded-conv'" in err


def test_docs_list_the_catalogue() -> None:
    text = (ROOT / "docs" / "EXPLAIN.md").read_text()
    assert "cnnlab lectures" in text
    for example in examples():
        assert f"`{example.id}`" in text, example.id
    assert "cnnlab lectures" in (ROOT / "README.md").read_text()


def test_package_data_from_a_wheel(tmp_path: Path) -> None:
    """The lecture inputs and the catalogue ship in a non-editable install."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "cnnlab", source / "cnnlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "wheel")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("cnnlab-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    code = ("import cnnlab, json; from cnnlab.cli.main import main; print(cnnlab.__file__); "
            "main(['lectures', 'box-filter', '--json']); "
            "main(['explain', 'conv', '--input-file', 'lecture:x', '--kernel-file', "
            "'lecture:diagonal', '--normalize', '--json'])")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=env, cwd=tmp_path).stdout
    first, rest = out.split("\n", 1)
    assert first.startswith(str(tmp_path / "site"))
    decoder = json.JSONDecoder()
    box, end = decoder.raw_decode(rest)
    corner = np.array(box["quantities"][1]["cnnlab"])  # exact: 1288/16 = 80.5 and 99.5 stay
    assert np.array_equal(np.floor(corner + 0.5), [r[:6] for r in BOX_7X7[:6]])
    assert corner[2, 4] == 80.5 and box["quantities"][1]["status"] == "same"
    conv = json.loads(rest[end:])
    np.testing.assert_allclose(np.trunc(np.array(conv["result"]) * 100) / 100, xo.CONV_DIAGONAL)
