"""The command line end to end: train -> evaluate -> predict, and one-line errors with exit 2."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.data.datasets import load_dataset


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    code = main(["train", "--data", "digits", "--epochs", "3", "--lr", "0.05", "--no-progress",
                 "--out", str(out), "--name", "r1", "--option", "activation=relu"])
    assert code == 0
    return out / "r1"


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_evaluate_writes_confusion_and_errors_with_top2(run_dir, capsys):
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    report = json.loads((run_dir / "eval-test" / "metrics.json").read_text())
    with open(run_dir / "eval-test" / "confusion.csv") as f:
        rows = list(csv.reader(f))
    matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    assert matrix.sum() == 360
    errors = list(csv.DictReader(open(run_dir / "eval-test" / "errors.csv")))
    assert len(errors) == 360 - np.trace(matrix)
    assert report["members"][0]["top1"] == pytest.approx(np.trace(matrix) / 360, abs=1e-6)
    assert f"{len(errors)} errors made by" in out
    for row in errors:  # the prediction is the top-1 guess, never the truth
        assert row["true"] != row["pred"]
    per_class = out.split("per-class accuracy")[1].split("errors made by")[0]
    for name, row in zip(rows[0][1:], matrix, strict=True):  # printed, from the confusion
        assert f"{name} {100 * row[int(name)] / row.sum():5.1f}%" in per_class


def test_evaluate_says_how_many_errors_it_lists(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--show-errors", "3", "--out",
                 str(run_dir.parent / "eval-3")]) == 0
    out = capsys.readouterr().out
    total = int(out.split(" errors made by")[0].split("\n")[-1])
    assert total > 3 and f"showing 3 of {total} (--show-errors N):" in out
    listed = out.split("(--show-errors N):\n")[1].split("\n\n")[0]
    assert len(listed.split()) == 3


def test_ensemble_reports_members_and_average(run_dir, tmp_path, capsys, monkeypatch):
    assert main(["train", "--data", "digits", "--epochs", "3", "--lr", "0.05", "--seed", "1",
                 "--no-progress", "--out", str(tmp_path), "--name", "r2",
                 "--option", "activation=relu"]) == 0
    capsys.readouterr()
    members = [run_dir, tmp_path / "r2"]
    before = {p: p.stat().st_mtime_ns for m in members for p in m.rglob("*")}
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", *map(str, members)]) == 0
    out = capsys.readouterr().out
    assert "ensemble" in out and str(run_dir) in out and str(tmp_path / "r2") in out
    after = {p: p.stat().st_mtime_ns for m in members for p in m.rglob("*")}
    assert after == before  # nothing written or replaced inside a member run
    written = json.loads(next(tmp_path.glob("eval-ensemble-*/metrics.json")).read_text())
    assert written["ensemble"]["name"] == "ensemble"


def test_an_ensemble_of_runs_on_different_data_sets_is_noted():
    from types import SimpleNamespace

    from cnnlab.evaluate import ensemble_notes

    same = [SimpleNamespace(path="a", data_name="mnist"), SimpleNamespace(path="b",
                                                                          data_name="mnist")]
    assert ensemble_notes(same) == []
    mixed = [same[0], SimpleNamespace(path="c", data_name="kmnist")]
    (note,) = ensemble_notes(mixed)
    assert "a on mnist, c on kmnist" in note


def test_predict_a_users_png_of_a_digit(run_dir, tmp_path, capsys):
    # Draw a dark-on-light "0" like a user would, larger than the training images.
    test = load_dataset("digits", "test")
    zero = test.images[test.labels == 0][0, 0].numpy()
    drawing = 255 - np.kron(zero, np.ones((12, 12), dtype=np.uint8))  # 96x96, dark ink
    Image.fromarray(drawing, "L").save(tmp_path / "zero.png")
    assert main(["predict", str(run_dir), str(tmp_path / "zero.png"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result[0]["top"][0][0] == "0"


@pytest.mark.parametrize("argv, needles", [
    (["train", "--model", "lenet9", "--epochs", "1"], ["lenet9", "did you mean 'lenet5'"]),
    (["train", "--optimizer", "sgdd"], ["sgdd"]),
    (["train", "--epochs", "0"], ["epochs"]),
    (["evaluate", "/no/such/run"], ["/no/such/run"]),
    (["predict", "/no/such/run", "x.png"], ["/no/such/run"]),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needles):
    one_line_error(capsys, argv, *needles)


def test_predict_rejects_unreadable_image_by_name(run_dir, tmp_path, capsys):
    (tmp_path / "notes.png").write_text("not an image")
    one_line_error(capsys, ["predict", str(run_dir), str(tmp_path / "notes.png")], "notes.png")


def test_checkpoint_of_another_architecture_is_refused(run_dir, tmp_path, capsys):
    from cnnlab.models import create
    from cnnlab.runs.checkpoint import read_checkpoint, save_checkpoint

    _, meta = read_checkpoint(run_dir / "best.safetensors")  # says lenet5 ...
    target = tmp_path / "bad"
    target.mkdir()
    (target / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    save_checkpoint(target / "best.safetensors", model=create("lenet1"), meta=meta)  # ... is not
    one_line_error(capsys, ["evaluate", str(target)], "best.safetensors")


def test_help_texts_explain_each_command():
    for command in ("train", "evaluate", "predict", "datasets", "models"):
        out = subprocess.run([sys.executable, "-m", "cnnlab", command, "--help"],
                             capture_output=True, text=True, check=True).stdout
        assert "example" in out.lower(), command


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "fast"], "cnnlab train: error: argument --lr: invalid float value: 'fast'"),
    (["explain", "conv", "--round", "up"], "cnnlab explain: error: argument --round: invalid "
                                            "choice: 'up'"),
    (["nonsense"], "cnnlab: error: argument COMMAND: invalid choice: 'nonsense'"),
])
def test_argparse_errors_are_one_line_with_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message)  # no usage block
    assert err.rstrip().endswith("--help)")


def test_unreadable_option_value_is_one_line_error(capsys):
    one_line_error(capsys, ["train", "--model", "airbench94", "--data", "digits",
                            "--option", "widths='[48,192,192]", "--no-progress"],
                   "--option", "widths=", "[1,2,3]")
