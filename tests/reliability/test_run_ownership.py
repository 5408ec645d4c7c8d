"""Issue 18, items 0-5: cnnlab never deletes or overwrites a user's files.

Run folders are claimed exclusively (never adopted), a failed run gives back only what it wrote,
one process trains a run at a time, tool outputs never replace a run's files or a file cnnlab
did not write, and a model defined by a file lives on in the run that trained it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from cnnlab.cli.main import main as cnnlab_main
from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.runs import RunFolder, RunInUse, RunLock, claim_run_dir
from cnnlab.runs.layout import LOCK
from cnnlab.train import load_model
from cnnlab.train.fit import fit

from .helpers import REPO, finish, quick_config, start_child, wait_for_line

pytestmark = pytest.mark.reliability
QUIET = {"log": lambda *_: None}


def snapshot(folder):
    """Every path under ``folder`` with its bytes (None for folders)."""
    return {p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


def run_cli(argv, capsys) -> tuple[int, str]:
    code = cnnlab_main(argv)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 1-epoch LeNet-5 run on digits."""
    out = tmp_path_factory.mktemp("trained")
    return fit(quick_config(out, name="source", epochs=1), **QUIET).run_dir


# --- item 0: a run name is one folder name ------------------------------------------------------

@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "/tmp/elsewhere", "../escape"])
def test_a_name_that_is_not_one_folder_name_is_refused_and_nothing_is_touched(
        name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.tex").write_text("precious")
    before = snapshot(tmp_path)
    code, err = run_cli(["train", "--name", name, "--data", "nosuchdata"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "--name" in err and "single folder name" in err
    assert snapshot(tmp_path) == before


def test_a_config_file_name_that_escapes_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("name: ..\ndata: nosuchdata\nout: runs\n")
    before = snapshot(tmp_path)
    code, err = run_cli(["train", "--config", "c.yaml"], capsys)
    assert code == 2 and "single folder name" in err
    assert snapshot(tmp_path) == before
    with pytest.raises(ConfigError, match="single folder name"):
        TrainConfig(name="..").validate()


# --- item 1: never adopt or delete an existing folder --------------------------------------------

@pytest.mark.parametrize("data", ["nosuchdata", "digits"])
def test_an_explicit_name_of_a_users_folder_is_refused_and_the_folder_kept(
        data, tmp_path, monkeypatch, capsys):
    """The issue's repro: ``mkdir victim; echo precious > victim/thesis.tex; cnnlab train
    --out . --name victim --data nosuchdata`` deleted ``victim/``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "thesis.tex").write_text("precious")
    before = snapshot(tmp_path)
    code, err = run_cli(["train", "--out", ".", "--name", "victim", "--data", data,
                         "--epochs", "1", "--no-progress"], capsys)
    assert code == 2 and "not a cnnlab run" in err and err.count("\n") == 1
    assert snapshot(tmp_path) == before


def test_a_config_naming_a_users_folder_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "thesis.tex").write_text("precious")
    (tmp_path / "c.yaml").write_text("name: victim\nout: .\ndata: nosuchdata\n")
    before = snapshot(tmp_path)
    code, err = run_cli(["train", "--config", "c.yaml"], capsys)
    assert code == 2 and "not a cnnlab run" in err
    assert snapshot(tmp_path) == before


def test_a_failed_run_inside_a_users_out_folder_removes_only_its_own_folder(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "thesis.tex").write_text("precious")
    before = snapshot(tmp_path)
    code, err = run_cli(["train", "--out", "victim", "--data", "nosuchdata"], capsys)
    assert code == 2 and "nosuchdata" in err
    assert snapshot(tmp_path) == before  # the run folder it made inside victim/ is gone


def test_a_failed_run_removes_the_folder_it_created(tmp_path):
    with pytest.raises(Exception, match="nosuchdata"):
        fit(quick_config(tmp_path, name="fresh", data="nosuchdata"), **QUIET)
    assert not (tmp_path / "fresh").exists()


def test_an_empty_folder_named_by_the_user_is_used_and_kept_on_failure(tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(Exception, match="nosuchdata"):
        fit(quick_config(tmp_path, name="mine", data="nosuchdata"), **QUIET)
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())
    result = fit(quick_config(tmp_path, name="mine", epochs=1), **QUIET)
    assert result.run_dir == tmp_path / "mine" and result.status == "completed"


def test_a_failed_run_keeps_a_file_someone_else_put_in_its_folder(tmp_path):
    """Only the files this process wrote are removed, then the folder only if empty."""
    def prepare(model):
        (tmp_path / "r" / "notes.txt").write_text("mine")
        raise ConfigError("stop here")

    with pytest.raises(ConfigError, match="stop here"):
        fit(quick_config(tmp_path, name="r"), prepare=prepare, **QUIET)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["notes.txt"]


def test_an_explicit_name_of_an_earlier_run_starts_a_new_folder_beside_it(tmp_path, trained):
    first = fit(quick_config(tmp_path, name="twice", epochs=1), **QUIET).run_dir
    before = snapshot(first)
    second = fit(quick_config(tmp_path, name="twice", epochs=1), **QUIET).run_dir
    assert (first.name, second.name) == ("twice", "twice-2")
    assert snapshot(first) == before


def test_default_names_in_the_same_second_never_share_a_folder(tmp_path):
    folders = [claim_run_dir(tmp_path, None, "lenet5-digits-20260101-000000") for _ in range(3)]
    assert [f.path.name for f in folders] == ["lenet5-digits-20260101-000000",
                                              "lenet5-digits-20260101-000000-2",
                                              "lenet5-digits-20260101-000000-3"]
    assert all(f.created for f in folders)


@pytest.mark.parametrize("mode", ["finetune", "features"])
def test_finetune_never_adopts_a_users_folder(mode, trained, tmp_path):
    from cnnlab.train.finetune import finetune

    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "thesis.tex").write_text("precious")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="not a cnnlab run"):
        finetune(trained, data="digits", mode=mode, out=str(tmp_path), name="victim",
                 epochs=1, progress=False, **QUIET)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("mode", ["finetune", "features"])
def test_a_failed_finetune_leaves_no_folder(mode, trained, tmp_path):
    from cnnlab.train.finetune import finetune

    def broken(*args, **kwargs):
        raise ConfigError("fails after the folder is claimed")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("cnnlab.train.finetune.freeze_layers", broken)
        with pytest.raises(ConfigError, match="fails after"):
            finetune(trained, data="digits", mode=mode, out=str(tmp_path), name="ft",
                     epochs=1, progress=False, **QUIET)
    assert list(tmp_path.iterdir()) == []


def test_ablate_never_adopts_a_users_folder(trained, tmp_path):
    from cnnlab.analysis.ablate import retrain_without

    victim = tmp_path / "source-minus-features.3"
    victim.mkdir()
    (victim / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not a cnnlab run"):
        retrain_without(trained, ["features.3"], out=str(tmp_path), epochs=1, **QUIET)
    assert (victim / "thesis.tex").read_text() == "precious"


# --- every --out: an existing file cnnlab did not write is refused unless --overwrite --------

def _outputs(run, out):
    """command line -> the file it writes into ``out`` (a file name or the --out itself)."""
    return {"evaluate": (["evaluate", str(run), "--out", str(out)], out / "metrics.json"),
            "report": (["report", str(run), "--out", str(out / "r.html")], out / "r.html"),
            "export": (["export", str(run), "--out", str(out / "m.onnx")], out / "m.onnx"),
            "visualize": (["visualize", "filters", str(run), "--out", str(out)],
                          out / "filters-conv1.png"),
            "compare": (["compare", str(run), "--out", str(out)], out / "compare.csv")}


@pytest.mark.parametrize("command", ["evaluate", "report", "export", "visualize", "compare"])
def test_an_output_never_replaces_a_users_file_without_overwrite(command, trained, tmp_path,
                                                                 capsys):
    argv, target = _outputs(trained, tmp_path)[command]
    assert run_cli(argv, capsys)[0] == 0, "first write into a fresh folder"
    assert run_cli(argv, capsys)[0] == 0, "cnnlab may replace what it wrote itself"
    target.write_bytes(b"the user's own edit")
    code, err = run_cli(argv, capsys)
    assert code == 2 and "was not written by cnnlab" in err and "--overwrite" in err
    assert target.read_bytes() == b"the user's own edit"
    assert run_cli([*argv, "--overwrite"], capsys)[0] == 0
    assert target.read_bytes() != b"the user's own edit"


def test_an_output_through_a_symlink_replaces_the_link_never_its_target(trained, tmp_path,
                                                                        capsys):
    (tmp_path / "precious.html").write_text("precious")
    (tmp_path / "r.html").symlink_to(tmp_path / "precious.html")
    argv = ["report", str(trained), "--out", str(tmp_path / "r.html")]
    assert run_cli(argv, capsys)[0] == 2
    assert run_cli([*argv, "--overwrite"], capsys)[0] == 0
    assert (tmp_path / "precious.html").read_text() == "precious"
    assert not (tmp_path / "r.html").is_symlink()


# --- item 3: one process trains a run at a time ------------------------------------------------

def test_two_resumes_of_one_run_cannot_both_proceed(tmp_path):
    part = fit(quick_config(tmp_path, name="shared", epochs=3), stop_after_epochs=1, **QUIET)
    first = start_child(["train", "--resume", str(part.run_dir), "--no-progress"], pause_step=25)
    wait_for_line(first, "step 25")  # paused mid-epoch, holding the lock
    lock = json.loads((part.run_dir / LOCK).read_text())
    assert lock["pid"] == first.pid and lock["host"] == socket.gethostname()
    second = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--resume",
                             str(part.run_dir), "--no-progress"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert f"is being trained by pid {first.pid} on host" in second.stderr
    assert second.stderr.count("\n") == 1
    first.send_signal(15)
    assert finish(first)[0] == 143
    assert not (part.run_dir / LOCK).exists()  # released on the way out


def test_two_trainings_with_one_name_never_share_a_folder(tmp_path):
    argv = ["train", "--data", "digits", "--epochs", "2", "--threads", "1", "--no-progress",
            "--out", str(tmp_path), "--name", "same"]
    children = [start_child(argv) for _ in range(2)]
    assert all(finish(child, timeout=180)[0] == 0 for child in children)
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert folders == ["same", "same-2"]
    for name in folders:
        epochs = [json.loads(line)["epoch"]
                  for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2]


def _plant_lock(run_dir, **holder):
    values = {"pid": os.getpid(), "host": socket.gethostname(), "start_time": None,
              "started": 0.0, "lock_id": "planted", "job": None, **holder}
    (run_dir / LOCK).write_text(json.dumps(values))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over(tmp_path):
    part = fit(quick_config(tmp_path, name="stale"), stop_after_epochs=1, **QUIET)
    _plant_lock(part.run_dir, pid=_dead_pid())
    assert fit(None, resume=part.run_dir, **QUIET).status == "completed"
    assert not (part.run_dir / LOCK).exists()


def test_a_lock_whose_pid_was_reused_by_another_process_is_taken_over(tmp_path):
    part = fit(quick_config(tmp_path, name="reused"), stop_after_epochs=1, **QUIET)
    _plant_lock(part.run_dir, pid=os.getppid(), start_time=1)  # alive, but started at tick 1
    assert fit(None, resume=part.run_dir, **QUIET).status == "completed"


def test_a_lock_held_by_a_live_process_is_respected(tmp_path):
    part = fit(quick_config(tmp_path, name="alive"), stop_after_epochs=1, **QUIET)
    from cnnlab.runs.lock import process_start_time

    _plant_lock(part.run_dir, pid=os.getppid(), start_time=process_start_time(os.getppid()))
    with pytest.raises(RunInUse, match=f"pid {os.getppid()}"):
        fit(None, resume=part.run_dir, **QUIET)


def test_a_lock_from_another_host_is_broken_only_with_break_lock(tmp_path, capsys):
    part = fit(quick_config(tmp_path, name="remote"), stop_after_epochs=1, **QUIET)
    _plant_lock(part.run_dir, host="elsewhere.example", pid=1)
    code, err = run_cli(["train", "--resume", str(part.run_dir), "--no-progress"], capsys)
    assert code == 2 and "host elsewhere.example" in err and "--break-lock" in err
    code, _ = run_cli(["train", "--resume", str(part.run_dir), "--no-progress",
                       "--break-lock"], capsys)
    assert code == 0 and not (part.run_dir / LOCK).exists()


def test_the_lock_is_held_exclusively_within_one_process_too(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunInUse, match="wait for it"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released: free again
        pass
    assert not (tmp_path / LOCK).exists()


# --- item 4: outputs never replace a run's own files --------------------------------------------

@pytest.mark.parametrize("target", ["best.safetensors", "last.safetensors", "config.yaml",
                                    "run.json", "metrics.jsonl", "best.json"])
def test_export_refuses_to_write_over_a_runs_own_files(target, trained, capsys):
    before = snapshot(trained)
    for extra in ([], ["--overwrite"]):
        code, err = run_cli(["export", str(trained), "--out", str(trained / target), *extra],
                            capsys)
        assert code == 2 and "a file of the run" in err and err.count("\n") == 1
    assert snapshot(trained) == before


def test_no_output_of_any_tool_can_name_a_run_file(trained, capsys):
    before = snapshot(trained)
    code, err = run_cli(["report", str(trained), "--out", str(trained / "config.yaml")], capsys)
    assert code == 2 and "a file of the run" in err
    assert snapshot(trained) == before


# --- item 5: a model defined by a file is kept in the run ---------------------------------------

NET = "layers:\n  - {type: conv, filters: %d, kernel: 3}\n  - {type: relu}\n  - {type: max_pool, kernel: 2}\n"


def test_a_yaml_model_is_stored_in_the_run_and_never_read_again(tmp_path):
    net = tmp_path / "net.yaml"
    net.write_text(NET % 4)
    run = fit(quick_config(tmp_path, name="yaml", model=str(net), epochs=2),
              stop_after_epochs=1, **QUIET).run_dir
    assert (run / "model.yaml").read_text() == NET % 4
    model, meta = load_model(run, which="last")
    assert meta["model"]["definition"]["text"] == NET % 4
    x = torch.rand(3, 1, 8, 8)
    expected = model(x)
    net.write_text(NET % 7)  # edited: the run must not change
    assert torch.equal(load_model(run, which="last")[0](x), expected)
    net.unlink()  # moved away: the run still opens and resumes
    assert torch.equal(load_model(run, which="last")[0](x), expected)
    assert fit(None, resume=run, **QUIET).status == "completed"


def test_finetuning_a_yaml_run_uses_the_stored_definition(tmp_path):
    from cnnlab.train.finetune import finetune

    net = tmp_path / "net.yaml"
    net.write_text(NET % 4)
    source = fit(quick_config(tmp_path, name="src", model=str(net), epochs=1), **QUIET).run_dir
    net.unlink()
    result = finetune(source, data="digits", out=str(tmp_path), name="ft", epochs=1,
                      progress=False, **QUIET)
    assert (result.run_dir / "model.yaml").read_text() == NET % 4


def test_run_folder_abandon_touches_only_recorded_run_files(tmp_path):
    folder = RunFolder(tmp_path / "r", created=True)
    folder.path.mkdir()
    folder.write_bytes("run.json", b"{}")
    (folder.path / "config.yaml").write_text("not ours")  # same name, not written by us
    folder.abandon()
    assert sorted(p.name for p in folder.path.iterdir()) == ["config.yaml"]


# --- item 27: files honour the umask ------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_honour_the_umask(umask, mode, tmp_path):
    script = ("import os, sys; os.umask(int(sys.argv[1], 8)); "
              "from cnnlab.cli.main import main; "
              "sys.exit(main(['train', '--data', 'digits', '--epochs', '1', '--no-progress', "
              "'--threads', '1', '--out', sys.argv[2], '--name', 'u']))")
    subprocess.run([sys.executable, "-c", script, oct(umask), str(tmp_path)], cwd=REPO,
                   check=True, capture_output=True, timeout=120)
    files = [p for p in (tmp_path / "u").rglob("*") if p.is_file()]
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: mode for p in files}
    assert {"best.safetensors", "metrics.jsonl", "run.json", "config.yaml"} <= {p.name for p in files}
