"""Export (cnnlab.export): TorchScript and ONNX files reproduce LeNet-5's outputs."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch

from cnnlab import export as export_module
from cnnlab.cli.main import main
from cnnlab.data.datasets import load_dataset
from cnnlab.errors import ModelError
from cnnlab.export import export_model
from cnnlab.models import create
from cnnlab.runs.checkpoint import save_checkpoint
from cnnlab.runs.reader import load_model

PREPROCESS = {"channels": 1, "size": [32, 32], "fit": "resize", "mean": [0.3], "std": [0.4],
              "background": 0.0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory holding a LeNet-5 (ReLU, max pooling) ``best`` checkpoint."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    options = {"activation": "relu", "pooling": "max"}
    model = create("lenet5", num_classes=10, in_channels=1, input_size=(1, 32, 32), **options)
    meta = {"model": {"name": "lenet5", "num_classes": 10, "in_channels": 1,
                      "input_size": [1, 32, 32], "options": options},
            "classes": [str(d) for d in range(10)], "preprocess": PREPROCESS}
    save_checkpoint(folder / "best.safetensors", model=model, meta=meta)
    return folder


def digit_batch(n: int) -> torch.Tensor:
    """``n`` real 8x8 scans resized to 32x32 and normalised: ``(n, 1, 32, 32)``."""
    images = load_dataset("digits", "test").images[:n].float() / 255
    x = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear")
    return (x - 0.3) / 0.4


def reference_logits(run_dir, x: torch.Tensor) -> np.ndarray:
    model, _ = load_model(run_dir)
    with torch.no_grad():
        return model(x).numpy()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_file_matches_pytorch_on_real_digits(run_dir, tmp_path):
    result = export_model(run_dir, format="torchscript", out=tmp_path / "lenet5.pt")
    assert result.checked_with == "torch.jit.load" and result.max_abs_diff <= 1e-5
    loaded = torch.jit.load(str(result.path))
    for n in (1, 7):  # the batch dimension is free
        x = digit_batch(n)
        got = loaded(x).detach().numpy()
        np.testing.assert_allclose(got, reference_logits(run_dir, x), atol=1e-5, rtol=1e-5)
    info = json.loads(result.sidecar.read_text())
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["input"]["shape"] == ["batch", 1, 32, 32]
    assert info["preprocess"]["mean"] == [0.3]


def test_onnx_file_matches_pytorch_in_onnxruntime(run_dir):
    result = export_model(run_dir, format="onnx")
    assert result.path == run_dir / "best.onnx"
    assert result.checked_with == "onnxruntime" and result.max_abs_diff <= 1e-4
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for n in (1, 9):
        x = digit_batch(n)
        (got,) = session.run(["logits"], {"images": x.numpy()})
        np.testing.assert_allclose(got, reference_logits(run_dir, x), atol=1e-4, rtol=1e-4)


def test_a_parity_failure_is_an_error(run_dir, tmp_path, monkeypatch):
    original = export_module.run_exported

    def off_by_a_bit(path, fmt, inputs):
        outputs, runtime = original(path, fmt, inputs)
        return [o + 1e-2 for o in outputs], runtime

    monkeypatch.setattr(export_module, "run_exported", off_by_a_bit)
    with pytest.raises(ModelError, match="differ from PyTorch by 0.01"):
        export_model(run_dir, format="torchscript", out=tmp_path / "bad.pt")


def test_cli_export_writes_the_file_and_rejects_unknown_formats(run_dir, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(out)]) == 0
    assert out.is_file() and "checked with torch.jit.load" in capsys.readouterr().out
    assert main(["export", str(run_dir), "--format", "onx"]) == 2
    assert "did you mean 'onnx'" in capsys.readouterr().err
