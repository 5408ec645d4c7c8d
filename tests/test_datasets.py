"""Named data sets: search order, built-in sets, downloads (from a local server only), errors."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import tarfile
import threading

import numpy as np
import pytest

from cnnlab.cli.main import main
from cnnlab.data.cifar import cifar_source
from cnnlab.data.datasets import SYSTEM_ROOT, data_source, list_datasets, load_dataset
from cnnlab.data.idx import idx_source
from cnnlab.errors import DataError
from tests.test_data_formats import idx_bytes, write_cifar10
from tests.test_data_registry import registered


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / 'www'`` (no test touches the internet)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def publish_idx(www, n=5):
    """Tiny MNIST-layout files on the server; returns their MD5s."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n, dtype=np.uint8),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3, dtype=np.uint8)}
    md5 = {}
    for name, array in arrays.items():
        data = gzip.compress(idx_bytes(array))
        (www / name).write_bytes(data)
        md5[name] = hashlib.md5(data).hexdigest()
    return arrays, md5


def tiny_idx(url: str, md5: dict[str, str]):
    """An IDX set served by the local server, registered for one test."""
    return registered(idx_source("tiny-idx", "test IDX set", classes=tuple("abcdefghij"),
                                 url=url, md5=md5))


def test_download_verifies_checksums_then_loads(local_server, tmp_path):
    www, url = local_server
    arrays, md5 = publish_idx(www)
    root = tmp_path / "data"
    with tiny_idx(url, md5):
        with pytest.raises(DataError, match="not found.*or add --download"):
            load_dataset("tiny-idx", "train", root=root)
        train = load_dataset("tiny-idx", "train", root=root, download=True)
        found = {s.name: s.found_at for s in list_datasets(root)}
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte.gz"])
    assert sorted(p.name for p in (root / "tiny-idx").iterdir()) == sorted(md5)
    assert found["tiny-idx"] == str(root / "tiny-idx")


def test_download_with_wrong_checksum_leaves_no_file(local_server, tmp_path):
    www, url = local_server
    _, md5 = publish_idx(www)
    md5["t10k-images-idx3-ubyte.gz"] = "0" * 32
    root = tmp_path / "data"
    with tiny_idx(url, md5), pytest.raises(
            DataError, match="t10k-images-idx3-ubyte.gz: md5 checksum mismatch"):
        load_dataset("tiny-idx", "test", root=root, download=True)
    left = sorted(p.name for p in (root / "tiny-idx").iterdir())
    assert "t10k-images-idx3-ubyte.gz" not in left and not any(".part" in n for n in left)


def test_cifar_archive_downloads_and_extracts(local_server, tmp_path, monkeypatch):
    www, url = local_server
    staging = tmp_path / "staging"
    staging.mkdir()
    write_cifar10(staging)
    with tarfile.open(www / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5((www / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    monkeypatch.setenv("CNNLAB_DATA", "")
    source = cifar_source("tiny-cifar", "test CIFAR set", variant="cifar10",
                          url=url + "cifar-10-python.tar.gz", md5=md5)
    with registered(source):
        test = load_dataset("tiny-cifar", "test", root=tmp_path / "data", download=True)
    assert tuple(test.images.shape) == (3, 3, 32, 32) and test.name == "tiny-cifar"
    assert (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()


def test_search_order_root_then_environment(tmp_path, monkeypatch, shared_data):
    (tmp_path / "mnist").mkdir()
    publish_idx(tmp_path / "mnist", n=4)
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    assert len(load_dataset("mnist", "train", root=tmp_path)) == 4  # --data-root wins
    assert len(load_dataset("mnist", "test")) == 10000  # then $CNNLAB_DATA


def test_fashion_mnist_from_debian_package(fashion_mnist):
    found = data_source("fashion-mnist").locate([SYSTEM_ROOT])
    test = load_dataset("fashion-mnist", "test", root=found.parent)
    assert tuple(test.images.shape) == (10000, 1, 28, 28)
    assert test.classes[9] == "Ankle boot" and test.labels.bincount().tolist() == [1000] * 10


def test_digits_split_is_stratified_and_disjoint():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert tuple(train.images.shape[1:]) == (1, 8, 8) and train.images.max() == 255
    whole = (train.labels.bincount() + test.labels.bincount()).float()
    assert ((test.labels.bincount() - 0.2 * whole).abs() <= 1).all()  # 20% of each class
    flat = {bytes(x) for x in train.images.reshape(len(train), -1).numpy()}
    overlap = sum(bytes(x) in flat for x in test.images.reshape(len(test), -1).numpy())
    assert overlap < 5  # sklearn's digits hold a few exact duplicates, no more


def test_image_folder_path_with_train_and_test(tmp_path):
    from tests.test_data_formats import make_folder

    make_folder(tmp_path / "set" / "train")
    make_folder(tmp_path / "set" / "test", per_class=1)
    assert len(load_dataset(str(tmp_path / "set"), "train")) == 6
    assert len(load_dataset(str(tmp_path / "set"), "test")) == 2


def test_unknown_data_set_lists_the_choices(capsys):
    with pytest.raises(DataError, match="unknown data set 'minst'.*did you mean 'mnist'"):
        load_dataset("minst")
    assert main(["train", "--data", "minst", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "minst" in err[0]


def test_datasets_command_lists_what_is_found(capsys, shared_data):
    assert main(["datasets", "--data-root", str(shared_data)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert str(shared_data / "mnist") in lines["mnist"]
    assert str(shared_data / "cifar10-jpg") in lines["cifar10"]
    assert "built in" in lines["digits"]
