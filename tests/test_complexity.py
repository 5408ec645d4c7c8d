"""``cnnlab models --plot``: the zoo's multiply-adds and parameters at each model's input size
(lecture 002's "Comparing complexity", Canziani et al. 2017) and the user's runs' accuracy."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

import cnnlab
from cnnlab.analysis.complexity import complexity_figure, run_points, zoo_complexity
from cnnlab.cli.main import main


def test_zoo_rows_are_hand_counted() -> None:
    rows = {r["name"]: r for r in zoo_complexity(["lenet5", "lenet1989", "resnet18"])}
    # LeNet-5: C1 28*28*6*25, C3 10*10*16*150, C5 400*120, F6 120*84, output 84*10
    assert rows["lenet5"]["macs"] == 117_600 + 240_000 + 48_000 + 10_080 + 840 == 416_520
    assert rows["lenet5"]["parameters"] == 61_706 and rows["lenet5"]["input_size"] == [1, 32, 32]
    # 1989: H1 8*8*12*25, H2 3 groups of 4*4*4*(8*25), H3 192*30, output 30*10
    assert rows["lenet1989"]["macs"] == 19_200 + 3 * 12_800 + 5_760 + 300
    assert rows["resnet18"]["parameters"] == 11_689_512  # torchvision's count
    assert rows["resnet18"]["depth"] == 18


def test_runs_are_placed_by_their_accuracy(tmp_path) -> None:
    config = cnnlab.TrainConfig(model="lenet1989", data="digits", image_size=16, epochs=1,
                                out=str(tmp_path / "runs"), progress=False, batch_size=64)
    result = cnnlab.fit(config, log=lambda *_: None)
    (point,) = run_points(tmp_path / "runs")
    recorded = json.loads((result.run_dir / "run.json").read_text())["test"]["acc"]
    assert point["accuracy"] == recorded and point["split"] == "test"
    assert (point["model"], point["data"], point["macs"]) == ("lenet1989", "digits", 63_660)
    fig = complexity_figure(zoo_complexity(["lenet1989", "lenet5"]), [point])
    left, right = fig.axes[:2]
    offsets = np.concatenate([c.get_offsets() for c in left.collections])
    assert sorted(map(tuple, offsets.tolist())) == [(63_660, 9_760), (416_520, 61_706)]
    assert right.collections[0].get_offsets().tolist() == [[63_660, 100 * recorded]]
    png = tmp_path / "zoo.png"
    assert main(["models", "--plot", str(png), "--runs", str(tmp_path / "runs"),
                 "--only", "lenet1989,lenet5"]) == 0
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]
    assert run_points(tmp_path / "missing") == []
