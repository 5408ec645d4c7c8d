"""Issue 9, item 15: random and mutated bytes reach the readers and get only cnnlab's errors.

Each reader sees 50 hypothesis examples (derandomized, so CI is reproducible): pure random bytes
and mutations (overwritten bytes plus truncation) of a valid file. The only exceptions allowed
are CnnlabError subclasses, i.e. one-line messages the CLI turns into exit code 2.
"""

from __future__ import annotations

import gzip
import io
import pickle
import warnings

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
from cnnlab.train.checkpoint import read_checkpoint

pytestmark = [pytest.mark.reliability,
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
FUZZ = settings(max_examples=50, deadline=None, derandomize=True, database=None,
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
