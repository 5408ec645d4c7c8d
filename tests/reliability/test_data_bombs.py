"""Issue 18, items 7-9, 19, 20, 26: data that hangs, bombs, or lies about itself."""

from __future__ import annotations

import gzip
import os
import struct
import time
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.budget import budget_bytes, data_budget
from cnnlab.data.datasets import load_dataset
from cnnlab.data.folder import read_image_folder
from cnnlab.data.idx import load_idx_pair, read_idx
from cnnlab.errors import DataError

pytestmark = pytest.mark.reliability


def idx_header(type_code: int, shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape)


def write_gzip_of_zeros(path, header: bytes, megabytes: int) -> None:
    """A small .gz that inflates to ``megabytes`` of zeros after ``header``."""
    chunk = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(header)
        for _ in range(megabytes):
            handle.write(chunk)


def test_a_fifo_named_like_an_image_is_skipped_not_waited_for(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("L", (4, 4), 10).save(tmp_path / cls / "1.png")
    os.mkfifo(tmp_path / "a" / "2.png")
    started = time.monotonic()
    data = read_image_folder(tmp_path)
    assert len(data) == 2 and time.monotonic() - started < 30


def test_an_idx_gz_that_inflates_far_past_its_header_is_read_only_as_far_as_declared(tmp_path):
    path = tmp_path / "labels.gz"
    write_gzip_of_zeros(path, idx_header(0x08, (784,)), megabytes=200)  # 200 MB of zeros
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    with pytest.raises(DataError, match="payload has 785 bytes but the header"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * (1 << 20)  # the 200 MB were never inflated


def test_an_idx_header_past_the_data_budget_is_refused_before_reading(tmp_path):
    path = tmp_path / "images.gz"
    write_gzip_of_zeros(path, idx_header(0x08, (10, 4096, 4096)), megabytes=1)
    with data_budget(0.05), pytest.raises(DataError, match=r"--data-budget"):
        read_idx(path)


def test_a_folder_of_large_images_stops_at_the_data_budget(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.new("RGB", (512, 512), (i, 0, 0)).save(tmp_path / cls / f"{i}.png")
    with data_budget(0.005), pytest.raises(DataError, match=r"needs .* GiB .*--data-budget"):
        read_image_folder(tmp_path)  # 12 x 0.75 MB decoded, twice: more than 5 MiB
    assert len(read_image_folder(tmp_path)) == 12  # the default budget is far above that


def test_the_default_budget_is_at_most_8_gib_and_half_the_memory():
    assert budget_bytes() <= 8 << 30
    assert budget_bytes() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 + 1


def test_a_scene_set_too_large_for_the_budget_is_refused_before_it_is_drawn():
    with data_budget(0.001), pytest.raises(DataError, match="digit-scenes"):
        load_dataset("digit-scenes:n=100000", "train")


def test_the_data_budget_flag_reaches_training(tmp_path, capsys):
    from cnnlab.cli.main import main

    code = main(["train", "--data", "digit-scenes:n=100000", "--task", "multilabel",
                 "--data-budget", "0.001", "--out", str(tmp_path), "--no-progress"])
    assert code == 2 and "--data-budget" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_class_folder_name_that_is_not_utf8_is_shown_escaped(tmp_path):
    root = os.fsencode(tmp_path)
    for name in (b"caf\xe9", b"tea"):  # a Latin-1 name on a UTF-8 system
        os.mkdir(root + b"/" + name)
        Image.new("L", (4, 4), 50).save(os.fsdecode(root + b"/" + name + b"/1.png"))
    data = read_image_folder(tmp_path)
    assert data.classes == ["caf\\xe9", "tea"]
    "".join(data.classes).encode("utf-8")  # printable and savable


def write_idx(path, array: np.ndarray, type_code: int) -> None:
    payload = array.astype(array.dtype.newbyteorder(">")).tobytes()  # IDX is big-endian
    path.write_bytes(idx_header(type_code, array.shape) + payload)


def test_idx_labels_that_are_floats_or_nan_are_refused(tmp_path):
    write_idx(tmp_path / "images", np.zeros((2, 4, 4), np.uint8), 0x08)
    write_idx(tmp_path / "labels", np.array([0.0, np.nan], np.float32), 0x0D)
    with pytest.raises(DataError, match="labels must be integers, got float32"):
        load_idx_pair(tmp_path / "images", tmp_path / "labels", name="x", classes=["a", "b"])


def test_idx_images_of_height_zero_are_refused(tmp_path):
    write_idx(tmp_path / "images", np.zeros((2, 0, 4), np.uint8), 0x08)
    write_idx(tmp_path / "labels", np.array([0, 1], np.uint8), 0x08)
    with pytest.raises(DataError, match="at least 1x1 pixels"):
        load_idx_pair(tmp_path / "images", tmp_path / "labels", name="x", classes=["a", "b"])


def test_the_decoded_cache_notices_content_changed_with_the_same_size_and_time(tmp_path):
    folder, cache = tmp_path / "data", tmp_path / "cache"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        Image.new("L", (4, 4), 10).save(folder / cls / "1.bmp")  # BMP: size fixed by the shape
    first = read_image_folder(folder, cache_dir=cache)
    target = folder / "a" / "1.bmp"
    stat = target.stat()
    Image.new("L", (4, 4), 200).save(tmp_path / "new.bmp")
    new = (tmp_path / "new.bmp").read_bytes()
    assert len(new) == stat.st_size
    with open(target, "r+b") as handle:  # new content in place: same size, same inode...
        handle.write(new)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and the same mtime (cp -p)
    assert target.stat().st_ino == stat.st_ino
    second = read_image_folder(folder, cache_dir=cache)
    assert int(first.images[0].max()) == 10 and int(second.images[0].max()) == 200
    assert not torch.equal(first.images, second.images)
