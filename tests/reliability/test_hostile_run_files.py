"""Issue 18, items 11-18, 21-25, 28, 29: hostile or damaged run files, bad flags and values,
and promises made true (one test id per sub-case)."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from cnnlab.cli.main import main as cnnlab_main
from cnnlab.config import TrainConfig, load_config
from cnnlab.errors import CheckpointError, ConfigError, TrainingDiverged
from cnnlab.runs import open_run
from cnnlab.runs.checkpoint import META_KEY, read_checkpoint
from cnnlab.train.fit import fit

from .helpers import REPO, finish, quick_config, start_child, wait_for_line

pytestmark = pytest.mark.reliability
QUIET = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A 3-epoch digits run stopped after epoch 1 (resumable)."""
    out = tmp_path_factory.mktemp("stopped")
    return fit(quick_config(out, name="r", epochs=3), stop_after_epochs=1, **QUIET).run_dir


@pytest.fixture
def run_copy(stopped, tmp_path):
    return shutil.copytree(stopped, tmp_path / "r")


def rewrite(path, *, meta=None, tensors=None, raw_meta: str | None = None) -> None:
    """Write ``path`` again with changed metadata and/or tensors (as a crafted file would)."""
    old_tensors, old_meta = read_checkpoint(path)
    text = raw_meta if raw_meta is not None else json.dumps(meta(old_meta) if meta else old_meta)
    save_file(tensors(old_tensors) if tensors else old_tensors, str(path),
              metadata={META_KEY: text})


def cli(argv, capsys) -> tuple[int, str]:
    code = cnnlab_main(argv)
    return code, capsys.readouterr().err


# --- 11: sizes are bounded and checked before anything is built ---------------------------------

@pytest.mark.parametrize("field,value", [("num_classes", 10 ** 12), ("in_channels", 10 ** 6),
                                         ("input_size", [1, 100_000, 100_000])])
def test_a_crafted_size_is_refused_before_anything_is_allocated(run_copy, field, value):
    def craft(meta):
        meta["model"][field] = value
        return meta

    rewrite(run_copy / "best.safetensors", meta=craft)
    with pytest.raises(CheckpointError, match=f"model.{field}"):
        assert open_run(run_copy).model is None


def test_a_header_whose_shapes_disagree_with_its_tensors_is_refused_on_the_meta_device(run_copy):
    def wider(meta):
        meta["model"]["name"] = "c3x4p1-relu-p2-c3x4000p1-f10"  # would build a huge layer
        return meta

    rewrite(run_copy / "best.safetensors", meta=wider)
    with pytest.raises(CheckpointError, match="key"):
        assert open_run(run_copy).model is None


# --- 12: deeply nested metadata --------------------------------------------------------------

def test_metadata_nested_100000_deep_is_one_error_and_a_skipped_checkpoint(run_copy, tmp_path,
                                                                          capsys):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    nested = "[" * 100_000 + "]" * 100_000
    rewrite(run_copy / "best.safetensors", raw_meta=nested)
    code, err = cli(["predict", str(run_copy), str(tmp_path / "x.png")], capsys)
    assert code == 2 and "nested too deeply" in err and err.count("\n") == 1
    with pytest.warns(UserWarning, match="nested too deeply"):  # resume skips it for last
        assert fit(None, resume=run_copy, **QUIET).status == "completed"


# --- 13: resume refuses optimizer and RNG state that does not fit ----------------------------

@pytest.mark.parametrize("case", ["optimizer-shape", "rng-dtype", "rng-length", "lr-string"])
def test_resume_validates_optimizer_rng_and_hyper_parameters(run_copy, case):
    def tensors(t):
        if case == "optimizer-shape":
            key = next(k for k in t if k.startswith("optim."))
            t[key] = torch.zeros(3, 3)
        elif case == "rng-dtype":
            t["rng.torch"] = t["rng.torch"].float()
        elif case == "rng-length":
            t["rng.torch"] = t["rng.torch"][:100]
        return t

    def meta(m):
        m["optimizer"]["param_groups"][0]["lr"] = "0.05"
        return m

    rewrite(run_copy / "last.safetensors", **({"meta": meta} if case == "lr-string"
                                              else {"tensors": tensors}))
    (run_copy / "best.safetensors").unlink()
    with pytest.raises(CheckpointError):  # (a bad hyper-parameter: the file is skipped, warned)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(None, resume=run_copy, **QUIET)


# --- 14: weights load exactly or not at all --------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int8])
def test_weights_of_another_dtype_are_refused_not_cast(run_copy, dtype):
    rewrite(run_copy / "best.safetensors",
            tensors=lambda t: {k: (v.to(dtype) if k.startswith("model.") and
                                   v.is_floating_point() else v) for k, v in t.items()})
    with pytest.raises(CheckpointError, match="cnnlab never casts weights"):
        assert open_run(run_copy).model is None


# --- 15: values that cannot be right ---------------------------------------------------------

@pytest.mark.parametrize("field,value", [("mean", [math.nan]), ("std", [1e-300]),
                                         ("background", math.inf)])
def test_impossible_preprocessing_values_are_refused(run_copy, field, value):
    def craft(meta):
        meta["preprocess"][field] = value
        return meta

    rewrite(run_copy / "best.safetensors", raw_meta=None, meta=craft)
    with pytest.raises(CheckpointError, match=f"preprocess.{field}"):
        assert open_run(run_copy).preprocess is None


@pytest.mark.parametrize("field,value", [("batch", 10 ** 9), ("loss_sum", math.inf)])
def test_impossible_training_state_is_refused_on_resume(run_copy, field, value):
    def craft(meta):
        meta["state"][field] = value
        return meta

    for name in ("last.safetensors", "best.safetensors"):
        rewrite(run_copy / name, meta=craft)
    with pytest.raises(CheckpointError):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(None, resume=run_copy, **QUIET)


# --- 17: the checkpoint is the truth, its sidecars are derived -------------------------------

def test_a_sidecar_left_a_step_behind_is_rewritten_from_the_checkpoint_on_resume(run_copy):
    (run_copy / "last.json").write_text(json.dumps({"state": {"epoch": 0}}))
    (run_copy / "run.json").write_text(json.dumps({"status": "running", "last": {"epoch": 0}}))
    fit(None, resume=run_copy, stop_after_epochs=1, **QUIET)
    _, meta = read_checkpoint(run_copy / "last.safetensors")
    assert json.loads((run_copy / "last.json").read_text())["state"] == meta["state"]
    assert json.loads((run_copy / "run.json").read_text())["last"]["epoch"] == 2


# --- 18: a full disk is one line and run.json says so ----------------------------------------

def test_a_full_disk_during_a_run_names_the_file_and_marks_the_run(tmp_path, monkeypatch,
                                                                   capsys):
    import cnnlab.train.observers as observers

    real_open, writes = open, []

    def full(path, mode="r", *args, **kwargs):
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            writes.append(path)
            if len(writes) == 2:  # the disk fills up in epoch 2, after a checkpoint
                raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(observers, "open", full, raising=False)
    code, err = cli(["train", "--data", "digits", "--epochs", "2", "--no-progress",
                     "--out", str(tmp_path), "--name", "full"], capsys)
    assert code == 2 and "metrics.jsonl: No space left on device" in err
    assert err.count("\n") == 1
    assert json.loads((tmp_path / "full" / "run.json").read_text())["status"] == "failed"


# --- 21: flag and config values --------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--step-epochs", "0"], "--step-epochs must be >= 1"),
    (["--threads", "-1"], "--threads must be in [1, 1024]"),
    (["--seed", str(2 ** 64)], "--seed must be in"),
    (["--warmup-epochs", "nan"], "must be a finite number"),
    (["--image-size", "50000"], "--image-size must be in [1, 4096]"),
])
def test_bad_flag_values_are_one_line(argv, message, tmp_path, capsys):
    code, err = cli(["train", "--data", "digits", "--out", str(tmp_path), *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text,message", [
    ('epochs: "1"\n', "epochs (--epochs) must be int"),
    ("data: [digits]\n", "data (--data) must be str"),
    ("model_options: [1, 2]\n", "model_options (--option) must be dict"),
    ("a: &a [1, 1]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: &d [*c, *c]\ne: &e [*d, *d]\n"
     "f: &f [*e, *e]\ng: &g [*f, *f]\nh: &h [*g, *g]\nsnapshot_epochs: [*h, *h, *h, *h, *h, "
     "*h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, "
     "*h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n", "YAML aliases"),
    ("epochs: [\n", "not valid YAML"),
])
def test_bad_config_files_are_one_line(text, message, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(text)
    code, err = cli(["train", "--config", str(tmp_path / "c.yaml")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


# --- 22: tools' flags ------------------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["predict", "{run}", "{image}", "--top-k", "-1"], "--top-k -1: expected 1 or more"),
    (["evaluate", "{run}", "--top-k", "0"], "--top-k 0: expected 1 or more"),
    (["predict", "{run}", "{image}", "--device", "foo"], "--device 'foo'"),
    (["evaluate", "{run}", "--device", "cuda:x"], "--device 'cuda:x'"),
])
def test_bad_tool_flags_are_one_line(argv, message, stopped, tmp_path, capsys):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    argv = [a.format(run=stopped, image=tmp_path / "x.png") for a in argv]
    code, err = cli(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_device_cuda_without_a_gpu_is_one_line(stopped, capsys):
    code, err = cli(["evaluate", str(stopped), "--device", "cuda"], capsys)
    assert code == 2 and "no CUDA GPU is available" in err


# --- 23: predict on a folder with odd entries ------------------------------------------------

def test_predict_skips_non_files_and_can_skip_bad_images(stopped, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "in"
    (folder / "x.png").mkdir(parents=True)  # a folder named like an image
    Image.new("L", (8, 8), 255).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"not a png")
    code, err = cli(["predict", str(stopped), str(folder)], capsys)
    assert code == 2 and "bad.png" in err and "--skip-bad" in err
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        assert cli(["predict", str(stopped), str(folder), "--skip-bad", "--json"], capsys)[0] == 0


# --- 24: divergence names the last good checkpoint; a failed resume keeps its settings -------

def test_a_diverged_resume_names_the_last_good_checkpoint_and_keeps_the_old_settings(run_copy):
    before = (run_copy / "config.yaml").read_text()
    config = load_config(run_copy / "config.yaml")
    config.lr = 1e12
    with pytest.raises(TrainingDiverged, match=r"the last good checkpoint is .*last.safetensors "
                                               r"\(epoch 1"):
        fit(config, resume=run_copy, **QUIET)
    assert (run_copy / "config.yaml").read_text() == before
    assert json.loads((run_copy / "run.json").read_text())["status"] == "diverged"


# --- 25: the thread count is part of exact resume --------------------------------------------

def test_resuming_with_another_thread_count_warns(run_copy):
    _, meta = read_checkpoint(run_copy / "last.safetensors")
    assert meta["threads"] == 1  # quick_config trains with --threads 1
    config = load_config(run_copy / "config.yaml")
    config.threads = 2
    with pytest.warns(UserWarning, match="trained with 1: the result will not be bit-identical"):
        fit(config, resume=run_copy, stop_after_epochs=1, **QUIET)


# --- 28: "completed" only with a test result -------------------------------------------------

def test_sigterm_during_the_final_test_leaves_an_untested_run_that_resume_tests(tmp_path):
    config = quick_config(tmp_path, name="t", epochs=1)
    child = start_child(["train", "--data", "digits", "--epochs", "1", "--threads", "1",
                         "--no-progress", "--out", str(tmp_path), "--name", "t",
                         "--seed", str(config.seed)], env={"PAUSE_TEST": "1"})
    wait_for_line(child, "testing")  # the test evaluation has begun
    child.send_signal(signal.SIGTERM)
    finish(child)
    index = json.loads((tmp_path / "t" / "run.json").read_text())
    assert index["status"] == "trained" and "test" not in index
    result = fit(None, resume=tmp_path / "t", **QUIET)
    assert result.status == "completed" and result.test_acc is not None
    assert json.loads((tmp_path / "t" / "run.json").read_text())["status"] == "completed"


# --- 29: YAML errors are one line ------------------------------------------------------------

def test_a_yaml_error_is_one_line_with_its_position(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("epochs: 3\n  lr: [0.1\n")
    code, err = cli(["train", "--config", str(tmp_path / "c.yaml")], capsys)
    assert code == 2 and err.count("\n") == 1 and "line" in err


def test_tests_can_run_the_cli_in_a_subprocess():  # the helpers' entry point still works
    out = subprocess.run([sys.executable, "-m", "cnnlab", "--version"], capture_output=True,
                         text=True, cwd=REPO, check=True).stdout
    assert out.startswith("cnnlab ")


def test_config_values_are_type_checked_from_python_too():
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs="1").validate()
    _ = load_file  # (imported for crafting files above)


def test_a_model_yaml_alias_bomb_is_one_error(tmp_path, capsys):
    """Item 10 for model files too: a YAML layer list with nested aliases is refused."""
    lines = ["a: &a [1, 1]"] + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]"
                                for i in range(8)]
    lines.append("layers: [" + ", ".join(["*i"] * 60) + "]")
    (tmp_path / "net.yaml").write_text("\n".join(lines) + "\n")
    code, err = cli(["summary", str(tmp_path / "net.yaml"), "--input", "1x8x8"], capsys)
    assert code == 2 and "YAML aliases" in err and err.count("\n") == 1
