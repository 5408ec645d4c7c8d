"""Issue 9, item 11: folder layout rules, the class map in the checkpoint, bad IDX/CIFAR files."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cnnlab.data.cifar import read_batch
from cnnlab.data.folder import read_image_folder
from cnnlab.data.idx import load_idx_pair, read_idx
from cnnlab.errors import CheckpointError, DataError
from cnnlab.evaluate import evaluate_runs
from cnnlab.predict import predict_images
from cnnlab.runs.checkpoint import read_checkpoint
from cnnlab.runs.reader import load_model
from cnnlab.train.fit import fit

from .helpers import quick_config

pytestmark = pytest.mark.reliability


def image(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def test_hidden_folders_and_files_are_ignored(tmp_path):
    for cls, value in (("cat", 10), ("dog", 200)):
        for i in range(3):
            image(tmp_path / cls / f"{i}.png", value)
    image(tmp_path / ".git" / "objects" / "a.png", 0)  # a class-looking hidden folder
    image(tmp_path / ".ipynb_checkpoints" / "x.png", 0)
    image(tmp_path / "cat" / ".ipynb_checkpoints" / "0-checkpoint.png", 0)
    image(tmp_path / "dog" / "._0.png", 0)  # macOS resource fork
    (tmp_path / "README.txt").write_text("not a class")
    data = read_image_folder(tmp_path)
    assert data.classes == ["cat", "dog"] and len(data) == 6
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert not any("/." in p for p in data.paths)


@pytest.mark.parametrize("content", ["nothing", "only hidden", "only text"])
def test_an_empty_class_folder_is_reported_by_name(tmp_path, content):
    image(tmp_path / "cat" / "0.png", 10)
    (tmp_path / "dog").mkdir()
    if content == "only hidden":
        image(tmp_path / "dog" / ".ipynb_checkpoints" / "0.png", 10)
    elif content == "only text":
        (tmp_path / "dog" / "notes.txt").write_text("todo")
    with pytest.raises(DataError, match=r"dog: class folder has no images"):
        read_image_folder(tmp_path)


@pytest.fixture
def folder_run(tmp_path, monkeypatch):
    """A one-epoch run on a two-class image folder (train/ and test/)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # decoded-image cache
    for split in ("train", "test"):
        for cls, value in (("circle", 30), ("square", 220)):
            for i in range(12):
                image(tmp_path / "shapes" / split / cls / f"{i}.png", value + i)
    config = quick_config(tmp_path / "runs", data=str(tmp_path / "shapes"), epochs=1,
                          batch_size=8, name="shapes")
    return fit(config, log=lambda *_: None).run_dir


def test_class_map_is_stored_and_checked_at_prediction_time(tmp_path, folder_run):
    _, meta = read_checkpoint(folder_run / "best.safetensors")
    assert meta["classes"] == ["circle", "square"]
    assert json.loads((folder_run / "best.json").read_text())["classes"] == meta["classes"]
    result = predict_images(folder_run, [str(tmp_path / "shapes" / "test" / "square" / "0.png")])
    assert {label for label, _ in result[0]["top"]} == {"circle", "square"}
    # another data set with other classes: evaluation refuses instead of mislabelling
    for split in ("train", "test"):
        image(tmp_path / "other" / split / "circle" / "0.png", 30)
        image(tmp_path / "other" / split / "triangle" / "0.png", 120)
    with pytest.raises(CheckpointError, match=r"trained on classes \['circle', 'square'\]"):
        evaluate_runs([folder_run], data=str(tmp_path / "other"))
    # a class map that disagrees with the model's outputs is refused when loading
    tensors, meta = read_checkpoint(folder_run / "best.safetensors")
    meta["classes"] = ["circle", "square", "triangle"]
    save_file(tensors, str(folder_run / "best.safetensors"), metadata={"cnnlab": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="3 class names for a model with 2 outputs"):
        load_model(folder_run)


def idx_bytes(type_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


@pytest.mark.parametrize("data,message", [
    (b"\x08\x03\x00\x00", r"not an IDX file \(magic 08030000"),
    (idx_bytes(0x07, (2,), b"ab"), r"unknown IDX type code 0x07"),
    (bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02", r"header declares 3 dimensions but the file "
                                                 r"has 8 bytes"),
    (idx_bytes(0x08, (2, 3, 3), bytes(17)), r"payload has 17 bytes but the header \(2, 3, 3\) "
                                            r"\(uint8\) needs 18"),
    (idx_bytes(0x08, (2, 3, 3), bytes(19)), r"payload has 19 bytes .* needs 18"),
    (idx_bytes(0x0C, (2,), bytes(4)), r"payload has 4 bytes .*\(int32\) needs 8"),
    # 12-byte header whose sizes multiply to 2^64 (int64 overflow in np.prod)
    (idx_bytes(0x08, (1 << 22, 1 << 21, 1 << 21), b""),
     r"header \(4194304, 2097152, 2097152\) \(uint8\) declares 18446744073709551616 bytes"),
    (idx_bytes(0x0E, (1 << 31, 1 << 31), b""), r"header .* \(float64\) declares 36893488147419103232 "
                                              r"bytes, more than the 64 GiB"),
])
@pytest.mark.parametrize("packing", ["raw", "gzip"])
def test_bad_idx_header_or_size_names_the_file_and_the_mismatch(tmp_path, data, message,
                                                                packing):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if packing == "gzip" else data)
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + message):
        read_idx(path)


def test_idx_images_and_labels_that_disagree_are_named(tmp_path):
    images, labels = tmp_path / "images.idx", tmp_path / "labels.idx"
    images.write_bytes(idx_bytes(0x08, (3, 2, 2), bytes(12)))
    labels.write_bytes(idx_bytes(0x08, (2,), bytes([1, 2])))
    with pytest.raises(DataError, match=r"labels.idx: 2 labels but .*images.idx has 3 images"):
        load_idx_pair(images, labels, name="toy", classes=list("0123456789"))
    labels.write_bytes(idx_bytes(0x08, (3,), bytes([1, 2, 12])))
    with pytest.raises(DataError, match=r"labels.idx: labels span 1..12 but toy has 10"):
        load_idx_pair(images, labels, name="toy", classes=list("0123456789"))


@pytest.mark.parametrize("batch,message", [
    ({"data": np.zeros((2, 3072), np.uint8)}, r"missing 'labels'"),
    ({"data": np.zeros((2, 3000), np.uint8), "labels": [0, 1]},
     r"'data' must be \(N, 3072\), got \(2, 3000\)"),
    ({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]},
     r"'data' must be uint8, got float32"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1, 2]},
     r"2 images but 'labels' has shape \(3,\)"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, r"labels span 0..10"),
    ([1, 2, 3], r"expected a dict, got list"),
])
def test_bad_cifar_batch_names_the_file_and_the_mismatch(tmp_path, batch, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + message):
        read_batch(path, "labels", 10)
    truncated = tmp_path / "test_batch"
    truncated.write_bytes(pickle.dumps(batch, protocol=2)[:-20])
    with pytest.raises(DataError, match=r"test_batch: corrupt pickle"):
        read_batch(truncated, "labels", 10)


def test_a_good_cifar_batch_reads(tmp_path):
    """Sanity for the fixtures above: a good batch reads (the refusals are not blanket)."""
    path = tmp_path / "data_batch_1"
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    path.write_bytes(pickle.dumps({"data": data, "labels": [3, 9]}, protocol=2))
    got, labels = read_batch(path, "labels", 10)
    assert np.array_equal(got, data) and torch.equal(torch.from_numpy(labels),
                                                     torch.tensor([3, 9]))


def test_a_symlink_loop_in_a_class_folder_is_followed_once(tmp_path, monkeypatch):
    """A link back to a parent (``cat/sub/back -> ..``) adds nothing and does not recurse
    forever; a symlinked class folder elsewhere is followed; an unreadable folder is named."""
    for i in range(2):
        image(tmp_path / "data" / "cat" / f"{i}.png", 10)
    image(tmp_path / "elsewhere" / "0.png", 200)
    (tmp_path / "data" / "cat" / "sub").mkdir()
    (tmp_path / "data" / "cat" / "sub" / "back").symlink_to("..")
    (tmp_path / "data" / "cat" / "self").symlink_to("self")  # a link to itself (ELOOP)
    (tmp_path / "data" / "dog").symlink_to(tmp_path / "elsewhere")
    data = read_image_folder(tmp_path / "data")
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [0, 0, 1]
    (tmp_path / "data" / "cat" / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):  # what a folder without read permission gives a non-root user
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match=r"cat/locked: cannot list the folder \(Permission"):
        read_image_folder(tmp_path / "data")
