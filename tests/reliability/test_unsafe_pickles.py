"""Issue 9, item 1: a checkpoint crafted to run code on load is refused at every entry point.

Each payload's ``__reduce__`` would create a sentinel file (via ``os.system`` or ``exec``);
it is written with pickle protocols 0-5, raw and in torch.save's zip layout, as .pth/.pt, or
dropped over a run's checkpoint. Every loader must refuse it with an error naming what it tried
to import, the sentinel must never appear, and no unsafe load may be attempted as a fallback.
"""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from cnnlab.cli.main import main as cnnlab_main
from cnnlab.data.cifar import read_batch, read_cifar
from cnnlab.errors import CheckpointError, DataError
from cnnlab.models import create
from cnnlab.runs.checkpoint import read_checkpoint, save_checkpoint
from cnnlab.runs.reader import load_model

pytestmark = [pytest.mark.reliability,
              pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")]
PROTOCOLS = range(6)


class SystemPayload:
    """Unpickling calls ``os.system("touch SENTINEL")`` (imports ``posix.system``)."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


class ExecPayload(SystemPayload):
    """Unpickling calls ``exec("open(SENTINEL, 'w')")`` (imports ``builtins.exec``)."""

    def __reduce__(self):
        return exec, (f"open({self.sentinel!r}, 'w').close()",)


PAYLOADS = {"system": (SystemPayload, r"posix\.system"),
            "exec": (ExecPayload, r"(builtins|__builtin__)\.exec")}  # protocols < 3: py2 name


def write_payload(path, payload, protocol: int, layout: str) -> None:
    """A weight-file-looking dict whose ``weight`` entry is the payload."""
    content = {"features.0.weight": payload, "features.0.bias": torch.zeros(6)}
    if layout == "zip":
        torch.save(content, path, pickle_protocol=protocol)
    else:
        path.write_bytes(pickle.dumps(content, protocol=protocol))


@pytest.fixture(autouse=True)
def no_unsafe_loading(monkeypatch):
    """Fail the test if anything unpickles without restrictions or calls torch.load unsafely."""
    real_load = torch.load

    def guarded_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real_load(*args, **kwargs)

    def forbidden(*_args, **_kwargs):
        raise AssertionError("unrestricted pickle.load(s) called")

    monkeypatch.setattr(torch, "load", guarded_load)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("layout,suffix", [("zip", ".pth"), ("raw", ".pt")])
def test_create_with_crafted_weights_is_refused(tmp_path, payload, protocol, layout, suffix):
    cls, imported = PAYLOADS[payload]
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / f"evil{suffix}"
    write_payload(path, cls(sentinel), protocol, layout)
    with pytest.raises(CheckpointError, match=rf"evil{suffix}.*import.*{imported}"):
        create("lenet5", weights=str(path))
    assert not sentinel.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", ["evil.pth", "evil.pt", "last.safetensors"])
def test_checkpoint_readers_refuse_crafted_pickles(tmp_path, payload, protocol, name):
    cls, imported = PAYLOADS[payload]
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / name
    write_payload(path, cls(sentinel), protocol, "zip" if protocol % 2 else "raw")
    for load in (read_checkpoint, load_model):
        with pytest.raises(CheckpointError, match=rf"refused.*import.*{imported}"):
            load(path)
    assert not sentinel.exists()


def test_predict_refuses_a_run_whose_checkpoint_was_replaced(tmp_path, capsys):
    run = tmp_path / "run"
    save_checkpoint(run / "best.safetensors", model=create("lenet5"), meta={})
    sentinel = tmp_path / "SENTINEL"
    write_payload(run / "best.safetensors", SystemPayload(sentinel), 2, "zip")
    image = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (28, 28), 255).save(image)
    code = cnnlab_main(["predict", str(run), str(image)])
    err = capsys.readouterr().err
    assert code == 2
    assert "cnnlab predict: error:" in err and "import posix.system" in err
    assert not sentinel.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cifar_batch_reader_refuses_crafted_pickles(tmp_path, payload, protocol):
    cls, imported = PAYLOADS[payload]
    sentinel = tmp_path / "SENTINEL"
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": cls(sentinel), "labels": [0]}, protocol=protocol))
    with pytest.raises(DataError, match=rf"data_batch_1.*refused.*'{imported}'"):
        read_batch(batch, "labels", 10)
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(cls(sentinel), protocol=protocol))
    with pytest.raises(DataError, match=rf"batches.meta.*'{imported}'"):
        read_cifar(tmp_path, "train")
    assert not sentinel.exists()


def test_pickle_opcodes_outside_globals_cannot_smuggle_a_call(tmp_path):
    """INST/OBJ (protocol 0/1 class instantiation) also go through find_class."""
    sentinel = tmp_path / "SENTINEL"
    # protocol 0: (S'touch ...' \n i posix \n system \n  -> INST calls posix.system(...)
    text = f"(S'touch {sentinel}'\nios\nsystem\n.".encode()
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(text)
    with pytest.raises(DataError, match="refused.*'os.system'"):
        read_batch(batch, "labels", 10)
    weights = tmp_path / "evil.pt"
    weights.write_bytes(text)
    with pytest.raises(CheckpointError, match="import.*os.system"):
        create("lenet5", weights=str(weights))
    assert not sentinel.exists()
