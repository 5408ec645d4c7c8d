"""Fast paths: channels_last and bf16 autocast really apply and keep the predictions; --compile
falls back to eager cleanly; inference runs under torch.inference_mode."""

from __future__ import annotations

import dataclasses
import importlib
import warnings

import pytest
import torch

from cnnlab.config import TrainConfig
from cnnlab.runs import RunFolder
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.train.distributed import CompileFallback, compile_model
from cnnlab.train.fit import fit
from cnnlab.train.loop import predict_logits
from cnnlab.weightfile import model_state

fit_module = importlib.import_module("cnnlab.train.fit")


def config(tmp_path, **overrides) -> TrainConfig:
    values = dict(model="lenet5", data="digits", epochs=1, batch_size=64, lr=0.05, seed=1,
                  val_fraction=0.05, out=str(tmp_path), progress=False,
                  model_options={"activation": "relu", "pooling": "max"})
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet-5 trained 3 epochs on the digits scans, as a Run (model + test source)."""
    cfg = config(tmp_path_factory.mktemp("runs"), epochs=3, name="fp32")
    result = fit(cfg, log=lambda *_: None)
    run = fit_module.Run(cfg, RunFolder(result.run_dir, created=False), torch.device("cpu"))
    run.model.load_state_dict(model_state(read_checkpoint(result.run_dir / "last.safetensors")[0]))
    return run, result


@pytest.mark.slow
def test_channels_last_gives_the_same_predictions(trained):
    run, _ = trained
    reference = predict_logits(run.model, run.test)
    assert float((reference.argmax(1) == run.test.labels).float().mean()) > 0.8
    model = run.model.to(memory_format=torch.channels_last)
    c3 = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]  # 6 -> 16 maps
    assert c3.weight.is_contiguous(memory_format=torch.channels_last)
    assert not c3.weight.is_contiguous()  # NHWC strides, not NCHW
    source = dataclasses.replace(run.test, channels_last=True)
    x, _ = next(source.batches())
    assert x.is_contiguous(memory_format=torch.channels_last)  # (1 channel: NCHW == NHWC)
    torch.testing.assert_close(predict_logits(model, source), reference, atol=1e-4, rtol=1e-4)
    run.model.to(memory_format=torch.contiguous_format)


@pytest.mark.slow
def test_bf16_autocast_runs_convolutions_in_bf16_and_keeps_predictions(trained):
    run, _ = trained
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    dtypes = []
    handle = conv.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    try:
        fp32 = predict_logits(run.model, run.test, precision="fp32")
        n_fp32 = len(dtypes)
        bf16 = predict_logits(run.model, run.test, precision="bf16")
    finally:
        handle.remove()
    assert set(dtypes[:n_fp32]) == {torch.float32} and set(dtypes[n_fp32:]) == {torch.bfloat16}
    assert bf16.dtype == torch.float32  # logits come back as float32
    agree = float((bf16.argmax(1) == fp32.argmax(1)).float().mean())
    assert agree >= 0.98  # bf16 keeps 8 bits of mantissa: a few near-ties may flip
    assert float((bf16 - fp32).abs().max()) < 0.1 * float(fp32.abs().max())


@pytest.mark.slow
def test_predict_logits_runs_under_inference_mode(trained):
    run, _ = trained
    flags = []
    handle = run.model.register_forward_hook(
        lambda _m, _i, out: flags.append(torch.is_inference_mode_enabled()))
    try:
        predict_logits(run.model, run.test)
    finally:
        handle.remove()
    assert flags and all(flags)


def test_compile_that_cannot_start_warns_and_returns_the_model(monkeypatch):
    def unavailable(model, **_):
        raise RuntimeError("no backend here")

    monkeypatch.setattr(torch, "compile", unavailable)
    model = torch.nn.Linear(3, 2)
    with pytest.warns(RuntimeWarning, match="--compile unavailable.*no backend here"):
        assert compile_model(model) is model


@pytest.mark.slow
def test_compile_failing_at_first_call_trains_eagerly_with_identical_weights(tmp_path,
                                                                            monkeypatch):
    eager = fit(config(tmp_path, name="eager"), log=lambda *_: None)

    def broken(model, **_):
        def call(*_args, **_kwargs):
            raise RuntimeError("inductor: C++ compiler not found")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = fit(config(tmp_path, name="compiled", compile=True), log=lambda *_: None)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert sum("--compile failed" in m for m in messages) == 1  # warned once, then eager
    a = model_state(read_checkpoint(eager.run_dir / "last.safetensors")[0])
    b = model_state(read_checkpoint(compiled.run_dir / "last.safetensors")[0])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert compiled.test_acc == eager.test_acc


def test_compile_fallback_uses_the_compiled_module_while_it_works():
    model = torch.nn.Linear(3, 2)
    calls = []

    def compiled(x):
        calls.append(x.shape)
        return model(x)

    wrapper = CompileFallback(model, compiled)
    wrapper(torch.zeros(4, 3))
    assert calls == [(4, 3)] and wrapper.compiled is compiled
