"""The issue-6 commands from the command line: tiny runs, what they print and write, and one-line
errors (exit code 2) for bad input (lectures 001-003; docs/UNDERSTANDING.md)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from cnnlab.cli.main import main
from cnnlab.config import TrainConfig
from cnnlab.train.fit import fit

SPEC = "c3x8p1-bn-relu-p2-c3x8p1-bn-relu-gap"  # features.4: a shape-preserving 8 -> 8 conv


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    config = TrainConfig(model=SPEC, data="digits", epochs=1, lr=0.1, progress=False, seed=0,
                         out=str(tmp_path_factory.mktemp("runs")), name="spec")
    return fit(config, log=lambda *_: None).run_dir


def ok(capsys, argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def fails(capsys, argv: list[str], *needles: str) -> str:
    """Exit code 2 and a single ``cnnlab CMD: error: ...`` line naming ``needles``."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"cnnlab {argv[0]}: error:"), err
    for needle in needles:
        assert needle in err, (needle, err)
    return captured.out


def rows_of(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_invariance(run_dir, tmp_path, capsys):
    out = ok(capsys, ["invariance", str(run_dir), "--transform", "rotate", "--range", "-30",
                      "30", "--steps", "3", "--limit", "20", "--out", str(tmp_path)])
    rows = rows_of(tmp_path / "invariance-rotate.csv")
    assert [float(r["value"]) for r in rows] == [-30, 0, 30]
    assert float(rows[1]["top1_agreement"]) == 1.0  # the unmoved images agree with themselves
    assert str(tmp_path / "invariance-rotate.csv") in out
    fails(capsys, ["invariance", str(run_dir), "--limit", "0"], "--limit")
    fails(capsys, ["invariance", str(run_dir), "--transform", "shear"], "shear", "rotate")


def test_equivariance(run_dir, capsys):
    out = ok(capsys, ["equivariance", str(run_dir), "--shift", "2", "--circular"])
    lines = [line.split() for line in out.splitlines()[1:]]
    assert [row[0] for row in lines] == ["features.0", "features.3", "features.4"]
    assert [row[2] for row in lines] == ["1", "2", "2"]  # strides; shifts 2, 1, 1
    assert all(float(row[4]) == 0 for row in lines)  # exact with circular padding
    out = ok(capsys, ["equivariance", "segnet", "--size", "16", "--shift", "8",
                      "--circular"])
    decoder = [line.split() for line in out.splitlines() if line.startswith("decoder.")]
    assert [row[2] for row in decoder[::2]] == ["4", "2", "1"]  # back up through unpooling
    output = out.splitlines()[-1].split()
    assert output[0] == "output" and output[2] == "1" and float(output[3]) == 8
    fails(capsys, ["equivariance", "no-such-model"])  # neither a zoo name nor a spec
    fails(capsys, ["equivariance", str(run_dir), "--size", "0"], "--size")


def test_embed(run_dir, tmp_path, capsys):
    out = ok(capsys, ["embed", str(run_dir), "--layer", "features.4", "--transform", "rotate",
                      "--steps", "3", "--images", "5", "--out", str(tmp_path)])
    written = re.search(r"wrote (\S+) and (\S+)", out).groups()
    assert all(Path(p).is_file() for p in written)
    assert Path(written[0]).name == "embed-features.4-rotate.csv"
    assert len(rows_of(Path(written[0]))) == 15  # 5 images x 3 angles
    fails(capsys, ["embed", str(run_dir), "--layer", "nope"], "nope", "features.0")
    fails(capsys, ["embed", str(run_dir), "--layer", "features.0", "--images", "0"], "--images")


def test_probe(run_dir, tmp_path, capsys):
    out = ok(capsys, ["probe", str(run_dir), "--classifier", "softmax", "--per-class", "10",
                      "--limit", "300", "--out", str(tmp_path)])
    assert re.search(r"accuracy rises with depth \(Softmax\): (yes|no) \(\d+\.\d% -> ", out)
    assert len(rows_of(tmp_path / "probe.csv")) == 3  # features.0, features.4, classifier.1
    fails(capsys, ["probe", str(run_dir), "--per-class", "0"], "--per-class")
    fails(capsys, ["probe", str(run_dir), "--repeats", "0"], "--repeats")
    fails(capsys, ["probe", str(run_dir), "--classifier", "tree"], "tree")


def test_finetune(run_dir, tmp_path, capsys):
    out = ok(capsys, ["finetune", str(run_dir), "--data", "xo", "--epochs", "1",
                      "--limit-per-class", "20", "--out", str(tmp_path), "--name", "xo",
                      "--no-progress"])
    assert out.startswith("notice: xo has 2 classes") and '\ntransfer ' in out
    assert '"new_head": true' in out
    assert (tmp_path / "xo" / "finetune.json").is_file()
    out = fails(capsys, ["finetune", str(run_dir), "--data", "xo", "--freeze", "nope"], "nope")
    assert "transfer" not in out  # validated before anything is announced or trained
    fails(capsys, ["finetune", str(run_dir), "--data", "xo", "--mode", "fine"], "fine")
    fails(capsys, ["finetune", str(run_dir), "--data", "xo", "--limit-per-class", "0"],
          "--limit-per-class")


def test_ablate(run_dir, tmp_path, capsys):
    out = ok(capsys, ["ablate", str(run_dir), "--remove", "features.4", "--epochs", "1",
                      "--out", str(tmp_path), "--no-progress"])
    assert "Removing features.4:" in out and "584 fewer parameters" in out  # 8*8*9 + 8
    assert len(rows_of(run_dir / "ablation" / "ablation.csv")) == 2
    fails(capsys, ["ablate", str(run_dir), "--remove", "nope"], "nope", "features.0")
    fails(capsys, ["ablate", str(run_dir), "--remove", "7"], "7")


def test_gradients(tmp_path, capsys):
    out = ok(capsys, ["gradients", "--sweep", "--depths", "1,2", "--per-layer", "--out",
                      str(tmp_path)])
    assert "plain sigmoid depth 2:" in out
    layers = rows_of(tmp_path / "gradient-depths-layers.csv")
    assert len(layers) == 4 * (2 + 3)  # 4 nets per depth, depth + 1 layers each
    out = ok(capsys, ["gradients", SPEC, "--steps", "1", "--out", str(tmp_path)])
    assert "3 layers" in out
    fails(capsys, ["gradients", "--sweep", "--depths", "a"], "--depths", "'a'")
    fails(capsys, ["gradients", "--sweep", "--depths", "0"], "--depths")
    fails(capsys, ["gradients"], "MODEL")


def test_shift_test(tmp_path, capsys):
    out = ok(capsys, ["shift-test", "--data", "digits", "--epochs", "1", "--train-limit", "200",
                      "--test-limit", "100", "--shifts", "0,2", "--out", str(tmp_path)])
    table = [line.split() for line in out.splitlines()[1:3]]
    assert [row[0] for row in table] == ["0.0", "2.0"] and all(len(r) == 3 for r in table)
    assert len(rows_of(tmp_path / "shift-test.csv")) == 4  # 2 models x 2 shifts
    fails(capsys, ["shift-test", "--shifts", "a"], "--shifts", "'a'")
    fails(capsys, ["shift-test", "--epochs", "0"], "--epochs")
