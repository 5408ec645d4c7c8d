"""Export a trained run for deployment: ONNX or TorchScript, with a parity check of outputs.

The exported graph takes the *normalised* input ``(B, C, H, W)`` float32 (batch size free) and
returns logits ``(B, num_classes)``. A JSON file beside it holds what a deployment needs around
the graph: class names, input shape and the preprocessing (fit, mean, std) from the checkpoint.

Parity: the exported file is loaded back (onnxruntime for ONNX when it is installed,
``torch.jit.load`` for TorchScript) and its outputs on a seeded batch, and on a batch of 1, are
compared with the PyTorch model's; a difference above ``tolerance`` is an error.

ONNX uses ``torch.onnx.export(..., dynamo=False)`` (the TorchScript-based exporter, which needs
no ``onnxscript``); ``pip install onnx onnxruntime`` enables the parity check.

Example:
    >>> result = export_model("runs/lenet5-digits", format="onnx")  # doctest: +SKIP
    >>> result.path, result.max_abs_diff  # doctest: +SKIP
    (PosixPath('runs/lenet5-digits/best.onnx'), 1.8e-08)
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.choices import EXPORT_FORMATS
from cnnlab.errors import ConfigError, ModelError, choices_hint
from cnnlab.runs.checkpoint import resolve_checkpoint
from cnnlab.runs.outputs import check_output_path, write_output, write_text_output
from cnnlab.runs.reader import load_model, open_run

FORMATS = EXPORT_FORMATS


@dataclass
class ExportResult:
    """Where the export went and how closely it reproduces the PyTorch model."""

    path: Path
    format: str
    sidecar: Path
    max_abs_diff: float | None  # None when no runtime was available to check
    checked_with: str


def check_inputs(input_size: tuple[int, int, int], batch: int, seed: int = 0) -> list[torch.Tensor]:
    """A seeded normal batch ``(batch, C, H, W)`` and a batch of one (the dynamic-batch check)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *input_size, generator=gen)
    return [x, x[:1].clone()]


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Trace ``model`` on ``example`` and save the TorchScript archive at ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice in torch >= 2.9
        traced = torch.jit.trace(model, example)
        traced.save(str(path))


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int = 17) -> None:
    """Write ``model`` as ONNX, batch dimension free (input ``images``, output ``logits``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as error:  # noqa: BLE001 - any exporter failure becomes one line
        raise ModelError(f"ONNX export failed ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}); try "
                         "--format torchscript") from error


def run_exported(path: Path, fmt: str, inputs: list[torch.Tensor]) -> tuple[list[np.ndarray], str]:
    """Outputs of the exported file on ``inputs``, and the runtime used ("" if none)."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notice, as in export_torchscript
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.inference_mode():
            return [loaded(x).numpy() for x in inputs], "torch.jit.load"
    try:
        import onnxruntime
    except ImportError:
        return [], ""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [session.run(None, {"images": x.numpy()})[0] for x in inputs], "onnxruntime"


def default_output(run: str | Path, which: str, fmt: str) -> Path:
    """``RUN/best.onnx`` (beside the checkpoint it comes from)."""
    checkpoint = resolve_checkpoint(run, which)
    return checkpoint.with_name(checkpoint.stem + FORMATS[fmt])


def export_model(run: str | Path, *, format: str = "onnx", out: str | Path | None = None,
                 which: str = "best", batch: int = 4, tolerance: float = 1e-4) -> ExportResult:
    """Export the ``which`` checkpoint of ``run`` to ``format`` and check output parity."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {choices_hint(format, list(FORMATS))}")
    opened = open_run(run, checkpoint=which)
    if not opened.is_network:
        raise ConfigError(f"export: {opened.run_dir} is a {opened.task.name} run, not a "
                          f"network: there is no model to write as {format}")
    path = Path(out) if out is not None else default_output(run, which, format)
    sidecar = path.with_name(path.name + ".json")
    check_output_path(path)  # before any work: never over a checkpoint or a user's file
    check_output_path(sidecar)
    model, meta = load_model(opened, which=which)  # eval mode, CPU
    input_size = tuple(meta["model"]["input_size"])
    inputs = check_inputs(input_size, batch)
    with tempfile.TemporaryDirectory(prefix="cnnlab-export-") as folder:
        draft = Path(folder) / path.name  # exported and checked here, then written to path
        (export_onnx if format == "onnx" else export_torchscript)(model, inputs[0], draft)
        with torch.inference_mode():
            expected = [model(x).numpy() for x in inputs]
        outputs, runtime = run_exported(draft, format, inputs)
        exported = draft.read_bytes()
    diff = None
    if runtime:
        diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs, expected, strict=True))
        if not diff <= tolerance:
            raise ModelError(f"{path}: exported outputs differ from PyTorch by {diff:.3g} "
                             f"(> {tolerance:g}); the export is not faithful")
    checked = runtime or "not checked (pip install 'cnnlab[export]' to check)"
    info = {"format": format, "source": str(resolve_checkpoint(run, which)),
            "input": {"name": "images", "shape": ["batch", *input_size], "dtype": "float32"},
            "output": {"name": "logits", "shape": ["batch", *expected[0].shape[1:]]},
            "classes": meta["classes"], "preprocess": meta["preprocess"],
            "parity": {"max_abs_diff": diff, "checked_with": checked, "tolerance": tolerance}}
    write_output(path, exported)
    write_text_output(sidecar, json.dumps(info, indent=2))
    return ExportResult(path, format, sidecar, diff, checked)
