"""The run layer (issue 17): one reader, each checkpoint file read at most once per command."""

from __future__ import annotations

import collections

import pytest
import torch
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.config import TrainConfig
from cnnlab.runs import open_run
from cnnlab.runs import reader as runs_reader
from cnnlab.runs.layout import LAYOUT, is_run_file, owning_run
from cnnlab.train.fit import fit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    config = TrainConfig(model="lenet5", data="digits", epochs=1, out=str(out), name="r",
                         progress=False, threads=1)
    return fit(config, log=lambda *_: None).run_dir


@pytest.fixture
def reads(monkeypatch):
    """Every checkpoint file the reader opens, counted."""
    counted = collections.Counter()
    real = runs_reader.read_checkpoint

    def counting(path):
        counted[str(path)] += 1
        return real(path)

    monkeypatch.setattr(runs_reader, "read_checkpoint", counting)
    return counted


def test_open_run_is_lazy_and_reads_the_checkpoint_once(run_dir, reads):
    run = open_run(run_dir)
    assert not reads  # nothing read until something is asked for
    assert run.task.name == "classify" and run.classes == list("0123456789")
    assert run.model(torch.zeros(1, *run.input_size)).shape == (1, 10)
    assert run.preprocess.size == (32, 32) and run.config["data"] == "digits"
    assert run.kind == "network" and run.index["status"] == "completed"
    assert [r["epoch"] for r in run.metrics()] == [1]
    assert len(run.load_split("test", limit=5)) == 5
    assert list(reads.values()) == [1]


@pytest.mark.parametrize("command", ["evaluate", "predict", "report", "visualize", "export"])
def test_each_command_reads_the_checkpoint_once(command, run_dir, reads, tmp_path):
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), 255).save(image)
    argv = {"evaluate": ["evaluate", str(run_dir), "--out", str(tmp_path / "e")],
            "predict": ["predict", str(run_dir), str(image)],
            "report": ["report", str(run_dir), "--out", str(tmp_path / "r.html"), "--limit", "50"],
            "visualize": ["visualize", "saliency", str(run_dir), "--out", str(tmp_path)],
            "export": ["export", str(run_dir), "--out", str(tmp_path / "m.onnx")]}[command]
    assert main(argv) == 0
    assert dict(reads) == {str(run_dir / "best.safetensors"): 1}


def test_the_layout_names_every_file_a_run_writes(run_dir):
    written = [p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()]
    assert written and all(is_run_file(name) for name in written), written
    assert {"config.yaml", "metrics.jsonl", "run.json", "best.safetensors"} <= set(written)
    assert len({entry.name for entry in LAYOUT}) == len(LAYOUT)
    assert owning_run(run_dir / "best.safetensors") == run_dir.absolute()
    assert owning_run(run_dir / "report.html") is None  # a tool's output, not a run file
