"""Issue 9, item 15: random and mutated bytes reach the readers and get only cnnlab's errors.

Each reader sees 50 hypothesis examples (derandomized, so CI is reproducible): pure random bytes
and mutations (overwritten bytes plus truncation) of a valid file. The only exceptions allowed
are CnnlabError subclasses, i.e. one-line messages the CLI turns into exit code 2. Each example
has a 2 s deadline, so a reader that hangs (or crawls) fails the test instead of stalling CI.
The checkpoint metadata is fuzzed too: random JSON in the header reaches ``load_model`` and
``newest_checkpoint`` (the ``model``, ``classes``, ``preprocess``, ``state`` fields).
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import warnings
from datetime import timedelta

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save

from cnnlab.data.cifar import read_batch
from cnnlab.data.idx import parse_idx, read_idx
from cnnlab.data.images import load_image
from cnnlab.errors import CnnlabError
from cnnlab.models import create
from cnnlab.runs.checkpoint import newest_checkpoint, read_checkpoint
from cnnlab.runs.reader import load_model

pytestmark = [pytest.mark.reliability,
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
FUZZ = settings(max_examples=50, deadline=timedelta(seconds=2), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with up to 8 bytes overwritten, then cut at a random length."""
    edits = st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)),
                     max_size=8)

    def apply(args: tuple[list[tuple[int, int]], int]) -> bytes:
        changes, keep = args
        data = bytearray(valid)
        for position, value in changes:
            data[position] = value
        return bytes(data[:keep])

    return st.tuples(edits, st.integers(0, len(valid))).map(apply)


def fuzz_input(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=4 * len(valid)), mutations(valid))


def only_cnnlab_errors(read, *args) -> None:
    try:
        read(*args)
    except CnnlabError:
        pass


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


IDX = bytes([0, 0, 8, 3]) + np.array([3, 4, 4], ">u4").tobytes() + bytes(range(48))


@FUZZ
@given(data=fuzz_input(IDX), packed=st.booleans())
def test_idx_reader(tmp_path, data, packed):
    only_cnnlab_errors(parse_idx, data, tmp_path / "x.idx")
    path = write(tmp_path, "x.idx.gz", gzip.compress(data) if packed else data)
    only_cnnlab_errors(read_idx, path)


CIFAR = pickle.dumps({"data": np.arange(2 * 3072, dtype=np.int64).astype(np.uint8)
                      .reshape(2, 3072), "labels": [3, 9], "filenames": ["a.png", "b.png"]},
                     protocol=2)


@FUZZ
@given(data=fuzz_input(CIFAR))
def test_cifar_batch_reader(tmp_path, data):
    only_cnnlab_errors(read_batch, write(tmp_path, "data_batch_1", data), "labels", 10)


def image_bytes(fmt: str) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@FUZZ
@given(data=st.one_of(fuzz_input(image_bytes("PNG")), mutations(image_bytes("JPEG")),
                      mutations(image_bytes("BMP"))))
def test_image_reader(tmp_path, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only_cnnlab_errors(load_image, write(tmp_path, "x.png", data))


def checkpoint_bytes() -> bytes:
    torch.manual_seed(0)
    state = {f"model.{k}": v for k, v in create("lenet1").state_dict().items()}
    return save(state, metadata={"cnnlab": '{"model": {"name": "lenet1"}}'})


@FUZZ
@given(data=fuzz_input(checkpoint_bytes()))
def test_checkpoint_reader(tmp_path, data):
    only_cnnlab_errors(read_checkpoint, write(tmp_path, "last.safetensors", data))


def pth_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(create("lenet1").state_dict(), buffer)
    return buffer.getvalue()


@FUZZ
@given(data=mutations(pth_bytes()))
def test_pth_weight_reader(tmp_path, data):
    only_cnnlab_errors(lambda path: create("lenet1", weights=path),
                       str(write(tmp_path, "w.pth", data)))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=True)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
VALID_META = {"model": {"name": "lenet1", "num_classes": 10, "in_channels": 1,
                        "input_size": [1, 28, 28], "options": {}},
              "classes": [str(d) for d in range(10)],
              "preprocess": {"channels": 1, "size": [28, 28], "fit": "none", "mean": [0.1],
                             "std": [0.3], "background": 0.0, "ink_fraction": 0.7},
              "state": {"epoch": 1, "batch": 0, "step": 5, "loss_sum": 0.0, "correct": 0,
                        "seen": 0, "best_metric": 0.5, "best_epoch": 0},
              "optimizer": {"param_groups": [], "scalars": {}}}
FIELDS = [("model",), ("model", "name"), ("model", "num_classes"), ("model", "in_channels"),
          ("model", "input_size"), ("model", "options"), ("classes",), ("preprocess",),
          ("preprocess", "size"), ("preprocess", "mean"), ("state",), ("state", "step"),
          ("state", "epoch"), ("optimizer",)]


def with_field(field: tuple[str, ...], value: object) -> dict:
    meta = json.loads(json.dumps(VALID_META))
    target = meta
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    return meta


def checkpoint_with_meta(meta: object) -> bytes:
    torch.manual_seed(0)
    state = {f"model.{k}": v for k, v in create("lenet1").state_dict().items()}
    return save(state, metadata={"cnnlab": json.dumps(meta)})


@pytest.mark.parametrize(("field", "value"), [
    (("model", "num_classes"), None), (("model",), "lenet5"), (("classes",), 5),
    (("state",), [1, 2]), (("preprocess", "size"), "28")])
def test_bad_metadata_fields_are_named(tmp_path, field, value):
    """The audit's cases: no num_classes, ``"model": "lenet5"``, ``"classes": 5``, a list state."""
    meta = with_field(field, value)
    if value is None:
        del meta["model"]["num_classes"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.safetensors").write_bytes(checkpoint_with_meta(meta))
    if field[0] == "state":
        with pytest.warns(UserWarning, match="'state'"), \
                pytest.raises(CnnlabError, match="no complete checkpoint"):
            newest_checkpoint(run)
        return
    with pytest.raises(CnnlabError, match=rf"best\.safetensors: metadata field "
                                          rf"'{'.'.join(field)}'|no cnnlab model"):
        load_model(run)
    assert load_model(write(tmp_path, "ok.safetensors",
                            checkpoint_with_meta(VALID_META)))[1]["classes"][0] == "0"


@FUZZ
@given(field=st.sampled_from(FIELDS), value=JSON, whole=st.booleans())
def test_checkpoint_metadata(tmp_path, field, value, whole):
    meta = value if whole else with_field(field, value)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "last.safetensors").write_bytes(checkpoint_with_meta(meta))
    only_cnnlab_errors(load_model, run / "last.safetensors")
    only_cnnlab_errors(newest_checkpoint, run)
