"""docs/MODELS.md, "Models from Caffe and TensorFlow definitions": every command runs as written
(the lecture 004 layers included), and prints the numbers the page gives."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cnnlab.cli.main import main

ROOT = Path(__file__).parents[1]
SECTION = "## Models from Caffe and TensorFlow definitions"


def section() -> str:
    text = (ROOT / "docs" / "MODELS.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end > 0 else None]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), re.S)


def run_block(block: str, capsys) -> list[str]:
    """Write the block's heredoc files, run its cnnlab commands; their outputs."""
    outputs, lines = [], iter(block.splitlines())
    for line in lines:
        if match := re.fullmatch(r"cat > (\S+) <<'END'", line):
            body = []
            for inner in lines:
                if inner == "END":
                    break
                body.append(inner)
            Path(match.group(1)).write_text("\n".join(body) + "\n")
        elif line.startswith("cnnlab "):
            argv = shlex.split(line.replace("cnnlab/models/caffe_examples/",
                                            f"{ROOT}/cnnlab/models/caffe_examples/"))[1:]
            assert main(argv) == 0, line
            outputs.append(capsys.readouterr().out)
    return outputs


def test_lecture_004_definitions_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    caffe, tensorflow = blocks("bash")[:2]
    (out,) = run_block(caffe, capsys)
    assert re.search(r"layers\.conv1\s+Conv2d\s+11\s+4\s+0\s+96x55x55\s+34,944", out), out
    assert "layer {\n    name: \"conv1\"" in Path("caffe_conv1.prototxt").read_text()
    (out,) = run_block(tensorflow, capsys)
    assert re.search(r"features\.0\s+Conv2d\s+5\s+1\s+2\s+32x28x28\s+832", out), out
    assert "parameters: 251,722" in out  # 832 + the appended 10-way head's 250,890


def test_caffe_and_keras_commands_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    examples, keras = blocks("bash")[2:]
    caffenet, cifar, googlenet, train = run_block(examples, capsys)
    assert "parameters: 60,965,224" in caffenet and "3x227x227 input" in caffenet
    assert "parameters: 145,578" in cifar
    assert "parameters: 10,334,030" in googlenet  # 13,378,280 - 3 x 1,025,000 + 3 x 10,250
    assert "test accuracy" in train
    assert (tmp_path / "runs" / "caffe-lenet" / "model.prototxt").is_file()
    (out,) = run_block(keras, capsys)
    assert "parameters: 3,256,202" in out and "64x7x7" in out


@pytest.mark.parametrize("index", [0])
def test_python_example_runs(index, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    exec(blocks("python")[index], {})  # noqa: S102 - the documented example itself
    out = capsys.readouterr().out.splitlines()
    assert out == ["(1.0, 0.3, 0.3)", "{'lr_scale': 2.0, 'weight_decay_scale': 0.0}"]
