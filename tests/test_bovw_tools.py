"""A bovw run among the other runs (issue 24): open_run knows its kind, and compare, report,
evaluate and predict work on it, visualize and export refuse in one line; damaged files are
one-line errors. The run is built once on a small colour image folder and once on digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cnnlab.bovw.run import BovwRun
from cnnlab.cli.main import main
from cnnlab.errors import CheckpointError
from cnnlab.runs import open_run

CLASSES = ("dots", "hstripes", "vstripes")
FLAGS = ["--words", "8", "--levels", "1", "--patch", "8", "--step", "4",
         "--codebook-samples", "300"]


def pattern(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A 16x16 RGB image: horizontal or vertical stripes of a random phase, or dots, + noise."""
    y, x = np.mgrid[:16, :16]
    phase = rng.integers(0, 4)
    ink = {"hstripes": (y + phase) % 4 < 2, "vstripes": (x + phase) % 4 < 2,
           "dots": ((y + phase) % 5 < 2) & ((x + phase) % 5 < 2)}[kind]
    grey = np.where(ink, 170, 70) + rng.integers(-110, 110, (16, 16))
    colour = rng.uniform(0.6, 1.0, 3)
    return np.clip(grey[..., None] * colour, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A bovw run on an image folder (12 training, 8 test images per class) and that folder."""
    root = tmp_path_factory.mktemp("bovw-tools")
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 8)):
        for kind in CLASSES:
            (root / "shapes" / split / kind).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(pattern(kind, rng)).save(root / "shapes" / split / kind / f"{i}.png")
    assert main(["bovw", "--data", str(root / "shapes"), *FLAGS, "--out", str(root),
                 "--name", "run"]) == 0
    return root / "run", root / "shapes"


def recorded_acc(run) -> float:
    """run.json's test accuracy at level L (a float32 mean: compared to 1e-6)."""
    return json.loads((run / "run.json").read_text())["test"]["acc"]


def one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_open_run_knows_a_bovw_run(folder_run):
    run, _ = folder_run
    opened = open_run(run)
    assert isinstance(opened, BovwRun) and opened.kind == "bovw" and not opened.is_network
    assert opened.task.name == "bovw" and opened.task.picture_kinds == ()
    assert opened.classes == list(CLASSES) and opened.config["words"] == 8
    assert opened.meta["model"]["input_size"] == [3, 16, 16]
    assert [r["level"] for r in opened.metrics()] == [0, 1]
    assert opened.metrics()[-1]["test_acc"] == pytest.approx(recorded_acc(run), abs=1e-6)
    assert opened.pipeline.codebook.centroids.shape == (8, 128)
    assert open_run(run / "classifier.safetensors").kind == "bovw"  # a file of the run
    assert opened.read_file("words.png")[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("notes.txt", "snapshots/epoch-/../../../x.json"):
        with pytest.raises(CheckpointError, match="not a file of the run layout"):
            opened.read_file(name)


def test_an_unknown_run_kind_is_one_line(tmp_path):
    (tmp_path / "run.json").write_text('{"kind": "hog-svm"}')
    with pytest.raises(CheckpointError, match="kind 'hog-svm', which this cnnlab cannot read"):
        open_run(tmp_path)


def test_predict_on_the_test_images_reproduces_the_recorded_accuracy(folder_run, capsys):
    run, shapes = folder_run
    capsys.readouterr()
    assert main(["predict", str(run), str(shapes / "test"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 24 and 0.4 < recorded_acc(run) < 1  # some right, some wrong
    right = [r["class"] == r["path"].split("/")[-2] for r in results]
    assert sum(right) / len(right) == pytest.approx(recorded_acc(run), abs=1e-6)
    assert all(list(r["scores"]) == list(CLASSES) and len(r["top"]) == 3 for r in results)
    assert main(["predict", str(run), str(shapes / "test" / "dots" / "0.png")]) == 0
    assert "one-vs-one votes" in capsys.readouterr().out


def test_evaluate_reproduces_the_recorded_accuracy(folder_run, capsys):
    run, _ = folder_run
    assert main(["evaluate", str(run)]) == 0
    assert f"top-1 {100 * recorded_acc(run):6.2f}%" in capsys.readouterr().out
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert metrics["count"] == 24
    assert metrics["members"][0]["top1"] == pytest.approx(recorded_acc(run), abs=1e-6)


def test_evaluate_draws_the_runs_own_test_subset(tmp_path, capsys):
    """--test-count 60 of digits' 360 test images: evaluate scores the same 60."""
    assert main(["bovw", "--data", "digits", "--train-per-class", "10", "--test-count", "60",
                 *FLAGS[:2], "--levels", "1", "--patch", "4", "--step", "2",
                 "--codebook-samples", "300", "--out", str(tmp_path), "--name", "d"]) == 0
    assert main(["evaluate", str(tmp_path / "d")]) == 0
    metrics = json.loads((tmp_path / "d" / "eval-test" / "metrics.json").read_text())
    assert metrics["count"] == 60
    assert metrics["members"][0]["top1"] == pytest.approx(recorded_acc(tmp_path / "d"), abs=1e-6)
    one_line_error(capsys, ["evaluate", str(tmp_path / "d"), str(tmp_path / "d")])


def test_compare_lists_the_bovw_run_beside_a_network_run(folder_run, tmp_path, capsys):
    run, _ = folder_run
    cnn = tmp_path / "lenet"
    cnn.mkdir()
    (cnn / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5, "train_acc": 0.8}\n')
    (cnn / "run.json").write_text('{"test": {"acc": 0.9}}')
    capsys.readouterr()
    assert main(["compare", str(cnn), str(run), "--out", str(tmp_path / "cmp")]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("run ") and "epochs" not in line)
    assert row.split()[1:] == ["-", "-", "-", "-", f"{100 * recorded_acc(run):.2f}%"]
    assert next(line for line in lines if line.startswith("lenet ")).split()[1:] == [
        "1", "0.5000", "20.00%", "-", "90.00%"]
    assert any(line.startswith("run: a bovw run") and "acc_level0" in line for line in lines)


def test_report_has_a_bovw_section(folder_run):
    run, _ = folder_run
    assert main(["report", str(run), "--out", str(run.parent / "report.html")]) == 0
    page = (run.parent / "report.html").read_text()
    assert '<section id="bovw">' in page and '<section id="summary">' not in page
    levels = open_run(run).metrics()
    for record in levels:
        assert f"<td>L={record['level']}</td><td class=num>{100 * record['test_acc']:.2f}%" in page
    assert all(f"<td>{name}</td>" in page for name in CLASSES)  # accuracy per class
    for caption in ("confusion matrix", "visual words", "word map", "histograms at levels"):
        assert caption in page.replace("coloured by its visual word", "word map")
    assert page.count("<img ") == 5  # confusion, levels, words, word map, pyramid


@pytest.mark.parametrize("argv, needle", [
    (["visualize", "filters"], "is a bovw run, not a network"),
    (["visualize", "maps"], "no filters or feature maps"),
    (["export"], "is a bovw run, not a network"),
    (["summary"], "this command needs a trained network"),  # tools that read run.model
    (["probe"], "this command needs a trained network"),
    (["finetune", "--data", "digits"], "no network weights"),
])
def test_visualize_and_export_refuse_in_one_line(folder_run, capsys, argv, needle):
    run, _ = folder_run
    assert needle in one_line_error(capsys, [*argv, str(run)])


def copy_run(run, tmp_path):
    import shutil

    return shutil.copytree(run, tmp_path / "copy", ignore=shutil.ignore_patterns("eval-*"))


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "codebook.safetensors").unlink(), "no codebook.safetensors"),
    (lambda d: _tamper(d / "codebook.safetensors", "centroids", torch.zeros(8, 64)),
     "'centroids' has shape (8, 64), expected (K >= 2, 128)"),
    (lambda d: _tamper(d / "classifier.safetensors", "support", torch.zeros(3, 7)),
     "'n_support' must hold counts"),
    (lambda d: _tamper(d / "classifier.safetensors", "dual_coef", torch.zeros(2, 1)),
     "'dual_coef' has shape (2, 1)"),
    (lambda d: _tamper(d / "classifier.safetensors", "classes", torch.tensor([0, 1, 7])),
     "'classes' must hold class indices 0..2"),
    (lambda d: (d / "config.yaml").write_text("words: eight\n"), "words (--words) must be int"),
])
def test_damaged_run_files_are_one_line_errors(folder_run, tmp_path, capsys, damage, needle):
    copy = copy_run(folder_run[0], tmp_path)
    damage(copy)
    for argv in (["evaluate", str(copy)], ["predict", str(copy), str(folder_run[1] / "test")]):
        assert needle in one_line_error(capsys, argv)


def _tamper(path, name: str, value: torch.Tensor) -> None:
    """Rewrite one tensor of a safetensors file, keeping its metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    tensors = load_file(path)
    tensors[name] = value
    if name == "support":  # a count that does not add up, too
        tensors["n_support"] = torch.tensor([-1.0, 2.0, 2.0])
    save_file(tensors, str(path), metadata=meta)


def test_kernel_svm_scores_are_scikit_learns_ovr_decision_function():
    from sklearn.svm import SVC

    from cnnlab.bovw.classify import fit_kernel_svm, fit_knn, fit_linear
    from cnnlab.bovw.kernels import intersection_kernel

    rng = np.random.default_rng(1)
    labels = torch.arange(4).repeat_interleave(15)
    centres = torch.from_numpy(rng.random((4, 20)))
    x = (centres[labels] + 0.6 * torch.from_numpy(rng.random((60, 20)))).float()
    x = x / x.sum(1, keepdim=True)  # histogram-like rows
    test = x[::3] + 0.01
    svm, _ = fit_kernel_svm(intersection_kernel(x, x), x, labels, c=1.0, kernel_name="pyramid")
    reference = SVC(kernel="precomputed", C=1.0).fit(intersection_kernel(x, x).numpy(),
                                                     labels.numpy())
    expected = reference.decision_function(intersection_kernel(test, x).numpy())  # (20, 4)
    np.testing.assert_allclose(svm.scores(test).numpy(), expected, rtol=1e-6, atol=1e-8)
    linear = fit_linear(x, labels, c=1.0, seed=0)
    assert torch.equal(linear.scores(test).argmax(1), linear.predict(test))
    knn = fit_knn(x, labels, neighbours=5)
    shares = knn.scores(test)
    assert torch.allclose(shares.sum(1), torch.ones(len(test), dtype=torch.float64))
    assert torch.equal(shares.argmax(1), knn.predict(test))


@pytest.mark.parametrize("values, needle", [
    ({"words": 8, "colour": True}, "c.yaml: unknown setting 'colour'"),
    ({"seed": "1"}, "c.yaml: seed (--seed) must be int, got '1'"),
    ([1, 2], "c.yaml: expected a mapping of settings, got list"),
])
def test_one_settings_reader_for_training_and_bovw_configs(values, needle):
    """TrainConfig.from_dict and BovwConfig.from_dict are config.settings_from_dict."""
    from cnnlab.bovw.config import BovwConfig
    from cnnlab.config import TrainConfig
    from cnnlab.errors import ConfigError

    for cls in (TrainConfig, BovwConfig):
        with pytest.raises(ConfigError) as error:
            cls.from_dict(values, source="c.yaml")
        assert str(error.value) == needle
    assert BovwConfig.from_dict({"words": 8}).words == TrainConfig.from_dict({"seed": 3}).seed + 5
