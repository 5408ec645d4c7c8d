"""Readers for the formats users have: IDX, CIFAR python batches, image files and folders."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.cifar import read_cifar
from cnnlab.data.folder import read_image_folder
from cnnlab.data.idx import load_idx_pair, read_idx
from cnnlab.data.images import load_image
from cnnlab.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format by hand (magic 0x0000 08 ndim, sizes, data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_real_mnist_is_pixel_exact(shared_data):
    # ../shared/data/README.md publishes the MD5 of the uncompressed training images.
    raw = gzip.decompress((shared_data / "mnist/train-images-idx3-ubyte.gz").read_bytes())
    assert hashlib.md5(raw).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"
    images = read_idx(shared_data / "mnist/train-images-idx3-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images.reshape(-1), np.frombuffer(raw[16:], dtype=np.uint8))


def test_idx_raw_and_gzip_read_the_same(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array))
    (tmp_path / "b.idx").write_bytes(gzip.compress(idx_bytes(array)))  # name says nothing
    assert np.array_equal(read_idx(tmp_path / "a.idx"), array)
    assert np.array_equal(read_idx(tmp_path / "b.idx"), array)


@pytest.mark.parametrize("cut", [1, 7, 20])
def test_idx_header_disagreeing_with_size_names_the_file(tmp_path, cut):
    data = idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))[:-cut]
    path = tmp_path / "short-images-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError, match="short-images-idx3-ubyte"):
        read_idx(path)


def test_idx_pair_checks_counts_and_labels(tmp_path):
    (tmp_path / "img").write_bytes(idx_bytes(np.zeros((3, 2, 2), dtype=np.uint8)))
    (tmp_path / "lab").write_bytes(idx_bytes(np.array([0, 1], dtype=np.uint8)))
    with pytest.raises(DataError, match="2 labels but .*img has 3 images"):
        load_idx_pair(tmp_path / "img", tmp_path / "lab", name="t", classes=["a", "b"])
    (tmp_path / "lab").write_bytes(idx_bytes(np.array([0, 1, 5], dtype=np.uint8)))
    with pytest.raises(DataError, match="labels span 0..5"):
        load_idx_pair(tmp_path / "img", tmp_path / "lab", name="t", classes=["a", "b"])


def write_cifar10(root, n_train=4, n_test=3):
    """A miniature cifar-10-batches-py folder in the official layout."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else n_train
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, n)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return batches


def test_cifar_batches_decode_planes_into_rgb_images(tmp_path):
    batches = write_cifar10(tmp_path)
    test = read_cifar(tmp_path, "test")
    data, labels = batches["test_batch"]
    assert tuple(test.images.shape) == (3, 3, 32, 32)
    # first 1024 values are the red plane, row-major
    assert np.array_equal(test.images[1, 0].numpy().reshape(-1), data[1, :1024])
    assert np.array_equal(test.images[2, 2].numpy().reshape(-1), data[2, 2048:])
    assert test.labels.tolist() == labels and test.classes[3] == "c3"
    assert len(read_cifar(tmp_path / "cifar-10-batches-py", "train")) == 20  # 5 x 4


def test_cifar_pickle_that_imports_code_is_refused(tmp_path):
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DataError, match="refused to load 'builtins.print'"):
        read_cifar(tmp_path, "test")


def save(image: Image.Image, path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def test_image_modes_convert_predictably(tmp_path):
    grey = Image.fromarray(np.array([[0, 128], [255, 64]], dtype=np.uint8), "L")
    save(grey, tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").tolist() == [[[0], [128]], [[255], [64]]]
    assert load_image(tmp_path / "g.png", channels=3)[0, 1].tolist() == [128, 128, 128]
    wide = Image.fromarray(np.array([[0, 65535], [257, 32896]], dtype=np.uint16))
    save(wide, tmp_path / "w.png")
    assert load_image(tmp_path / "w.png")[..., 0].tolist() == [[0, 255], [1, 128]]  # /257
    rgba = Image.fromarray(np.array([[[200, 100, 50, 255], [200, 100, 50, 0]]], np.uint8), "RGBA")
    save(rgba, tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").tolist() == [[[200, 100, 50], [0, 0, 0]]]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 3), dtype=np.uint8)
    pixels[0, 2] = 255  # top-right corner lit
    image = Image.fromarray(pixels, "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    save(image, tmp_path / "r.png", exif=exif)
    upright = load_image(tmp_path / "r.png")[..., 0]
    assert upright.shape == (3, 2)
    assert upright[2, 1] == 255 and upright.sum() == 255  # top-right -> bottom-right


def make_folder(root, classes=("cat", "dog"), per_class=3, size=(6, 5)):
    rng = np.random.default_rng(1)
    for c in classes:
        for i in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            save(Image.fromarray(pixels, "RGB"), root / c / f"{i}.png")


def test_image_folder_reads_classes_in_sorted_order(tmp_path):
    make_folder(tmp_path, classes=("dog", "cat"))
    (tmp_path / ".ipynb_checkpoints").mkdir()
    data = read_image_folder(tmp_path)
    assert data.classes == ["cat", "dog"]
    assert tuple(data.images.shape) == (6, 3, 6, 5)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    first = np.asarray(Image.open(tmp_path / "cat/0.png")).transpose(2, 0, 1)
    assert np.array_equal(data.images[0].numpy(), first)


def test_image_folder_bad_image_named_or_skipped(tmp_path):
    make_folder(tmp_path, per_class=30)
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="broken.png"):
        read_image_folder(tmp_path)
    with pytest.warns(UserWarning, match="broken.png"):
        data = read_image_folder(tmp_path, skip_bad=True)
    assert len(data) == 60


def test_image_folder_empty_class_is_an_error(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        read_image_folder(tmp_path)
