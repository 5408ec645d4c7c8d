"""``cnnlab compare``: several runs' curves on shared axes (He et al. 2015 fig. 6), checked on
hand-written run directories: the CSV rows, the plotted errors, the table and one-line errors."""

from __future__ import annotations

import csv
import json

import pytest

from cnnlab.cli.main import main
from cnnlab.viz.curves import compare_figure, compare_rows


def make_run(path, losses, train_accs, val_accs=None, test_acc=None):
    path.mkdir(parents=True)
    records = []
    for epoch, (loss, acc) in enumerate(zip(losses, train_accs, strict=True), start=1):
        record = {"epoch": epoch, "train_loss": loss, "train_acc": acc, "lr": 0.1}
        if val_accs is not None:
            record["val_acc"] = val_accs[epoch - 1]
        records.append(record)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    index = {"status": "completed"}
    if test_acc is not None:
        index["test"] = {"acc": test_acc, "loss": 1.0, "count": 100.0}
    (path / "run.json").write_text(json.dumps(index))
    return records


@pytest.fixture
def two_runs(tmp_path):
    plain = make_run(tmp_path / "plain56", [2.3, 2.2, 2.1], [0.10, 0.15, 0.25],
                     [0.12, 0.18, 0.22], test_acc=0.2471)
    res = make_run(tmp_path / "resnet56", [2.8, 1.9, 1.5], [0.14, 0.30, 0.45])
    return tmp_path, plain, res


def test_compare_writes_every_epoch_of_every_run_and_the_table(two_runs, capsys):
    root, plain, res = two_runs
    out = root / "cmp"
    assert main(["compare", str(root / "plain56"), str(root / "resnet56"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with open(out / "compare.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["run"], int(r["epoch"])) for r in rows] == [
        ("plain56", 1), ("plain56", 2), ("plain56", 3),
        ("resnet56", 1), ("resnet56", 2), ("resnet56", 3)]
    assert [float(r["train_loss"]) for r in rows[3:]] == [2.8, 1.9, 1.5]
    assert rows[3]["val_acc"] == ""  # resnet56 had no validation split
    assert (out / "compare.png").stat().st_size > 1000
    plain_line = next(line for line in printed.splitlines() if line.startswith("plain56"))
    assert plain_line.split()[1:] == ["3", "2.1000", "75.00%", "22.00%", "24.71%"]
    res_line = next(line for line in printed.splitlines() if line.startswith("resnet56"))
    assert res_line.split()[1:] == ["3", "1.5000", "55.00%", "-", "-"]


def test_compare_figure_plots_errors_in_percent(two_runs):
    _, plain, res = two_runs
    fig = compare_figure({"plain56": plain, "resnet56": res})
    loss_ax, err_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["plain56", "resnet56"]
    labels = [line.get_label() for line in err_ax.lines]
    assert labels == ["plain56 train", "plain56 val", "resnet56 train"]
    assert list(err_ax.lines[0].get_ydata()) == pytest.approx([90.0, 85.0, 75.0])
    assert list(err_ax.lines[1].get_ydata()) == pytest.approx([88.0, 82.0, 78.0])
    assert err_ax.lines[0].get_linestyle() == "--" and err_ax.lines[1].get_linestyle() == "-"


def test_compare_rows_take_the_last_epoch_and_the_best_validation(two_runs):
    _, plain, _ = two_runs
    (row,) = compare_rows({"p": plain}, {"p": {"acc": 0.5}})
    assert row == {"run": "p", "epochs": 3, "train_loss": 2.1, "train_err": pytest.approx(0.75),
                   "best_val_acc": 0.22, "test_acc": 0.5}


@pytest.mark.parametrize("extra, needle", [
    (["--names", "only-one"], "--names gives 1 labels for 2 runs"),
    (["--names", "a,a"], "two runs share a label"),
])
def test_compare_label_errors_are_one_line(two_runs, capsys, extra, needle):
    root, _, _ = two_runs
    assert main(["compare", str(root / "plain56"), str(root / "resnet56"), *extra,
                 "--out", str(root / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("cnnlab compare: error:") and needle in err


def test_compare_names_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert "empty: no metrics.jsonl" in err and "\n" not in err


def test_compare_warns_about_a_broken_run_index_and_shows_the_curves(two_runs):
    """Issue 18, item 16: a torn run.json or a string metric no longer stops compare."""
    root, _, _ = two_runs
    (root / "plain56" / "run.json").write_text("{not json")
    with pytest.warns(UserWarning, match="run.json: not a readable cnnlab run index"):
        assert main(["compare", str(root / "plain56"), "--out", str(root / "cmp")]) == 0
    (root / "plain56" / "run.json").write_text('{"test": {"acc": "0.9", "loss": 0.3}}')
    assert main(["compare", str(root / "plain56"), "--out", str(root / "cmp2")]) == 0


def test_compare_skips_a_torn_last_line_of_the_metrics(two_runs):
    root, _, _ = two_runs
    metrics = root / "plain56" / "metrics.jsonl"
    epochs = len(metrics.read_text().splitlines())
    with open(metrics, "a") as handle:
        handle.write('{"epoch": 9, "train_lo')  # a crash mid-write
    assert main(["compare", str(root / "plain56"), "--out", str(root / "cmp")]) == 0
    rows = (root / "cmp" / "compare.csv").read_text().splitlines()
    assert len(rows) == 1 + epochs


def test_an_output_folder_that_cannot_be_made_is_a_one_line_error(two_runs, capsys):
    root, _, _ = two_runs
    (root / "a-file").write_text("not a folder")
    assert main(["compare", str(root / "plain56"), "--out", str(root / "a-file" / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab compare: error:") and "a-file" in err and "\n" not in err


def test_compare_defaults_to_a_new_folder_and_warns_about_mixed_data(two_runs, capsys,
                                                                      monkeypatch):
    """Issue 21, item 10: never the same compare/ folder twice; runs on different data."""
    root, _, _ = two_runs
    (root / "plain56" / "config.yaml").write_text("data: mnist\n")
    (root / "resnet56" / "config.yaml").write_text("data: cifar10\n")
    monkeypatch.chdir(root)
    assert main(["compare", "plain56", "resnet56"]) == 0
    printed = capsys.readouterr().out
    assert "warning: the runs were trained on different data sets (plain56 on mnist, " \
           "resnet56 on cifar10)" in printed
    (folder,) = root.glob("compare-*")
    assert (folder / "compare.csv").is_file() and f"wrote {folder.name}/compare.png" in printed
    (root / "resnet56" / "config.yaml").write_text("data: mnist\n")
    assert main(["compare", "plain56", "resnet56", "--out", "again"]) == 0
    assert "warning" not in capsys.readouterr().out
