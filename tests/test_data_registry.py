"""Named data sets as a table (cnnlab.data.registry): one registration adds a set everywhere."""

from __future__ import annotations

import ast
import contextlib
import json
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.data.base import ImageSet
from cnnlab.data.datasets import (
    check_available,
    data_source,
    list_datasets,
    load_dataset,
    load_sources,
    locate,
)
from cnnlab.data.registry import (
    DataSource,
    LoadRequest,
    find_folder,
    register_source,
    registered_sources,
    unregister_source,
)
from cnnlab.data.scenes import parse_scene_name
from cnnlab.errors import DataError

DATA_PACKAGE = Path(__file__).resolve().parents[1] / "cnnlab" / "data"
SHIPPED = {"digits", "xo", "mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100",
           "digit-scenes", "mnist-scenes", "fashion-scenes"}


@contextlib.contextmanager
def registered(source: DataSource):
    """Register ``source`` for the duration of a ``with`` block (tests add sets of their own)."""
    load_sources()  # the shipped sets first, as a lookup would
    register_source(source)
    try:
        yield source
    finally:
        unregister_source(source.name)


# A set of our own, stored as ROOT/blobs/{train,test}.npz: images (N, 1, H, W) uint8 + labels.
def has_blob_files(folder: Path) -> bool:
    return all((folder / f"{split}.npz").is_file() for split in ("train", "test"))


def load_blobs(request: LoadRequest) -> ImageSet:
    with np.load(request.found / f"{request.split}.npz") as arrays:
        return ImageSet(torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]),
                        ["dark", "light"], name=request.name)


BLOBS = DataSource("blobs", "grey squares, dark or light (test set)", load_blobs,
                   locate=partial(find_folder, folder="blobs", complete=has_blob_files),
                   folder="blobs")


def write_blobs(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 6)
    images = np.where(labels[:, None, None, None] == 1, 200, 30).astype(np.uint8)
    images = np.broadcast_to(images, (6, 1, 4, 4)).copy()
    (root / "blobs").mkdir(parents=True)
    for split, part in (("train", slice(0, 4)), ("test", slice(4, 6))):
        np.savez(root / "blobs" / f"{split}.npz", images=images[part], labels=labels[part])
    return {"images": images, "labels": labels}


def inverted(request: LoadRequest) -> ImageSet:
    """A derived set: the source set's images, negated."""
    source = request.source
    return ImageSet(255 - source.images, source.labels, source.classes, name=request.name)


def test_every_registered_name_is_listed_with_its_description(capsys):
    load_sources()
    sources = dict(registered_sources())
    assert SHIPPED <= set(sources)
    assert main(["datasets"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
             if not line.startswith(" ")}
    for name, source in sources.items():
        assert source.description in lines[name], name
    assert main(["datasets", "--json"]) == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(sources)
    assert listed["mnist-scenes"]["options"].startswith("n=5000,canvas=64,")
    assert listed["mnist"]["options"] == "" and listed["mnist"]["downloadable"] is True


def test_one_registration_adds_a_file_based_set_everywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_DATA", "")
    written = write_blobs(tmp_path)
    with registered(BLOBS):
        check_available("blobs", root=tmp_path)
        nowhere = re.escape(str(tmp_path / "nowhere" / "blobs"))
        with pytest.raises(DataError, match=rf"data set 'blobs' not found \(looked in {nowhere}, "
                           r".*; pass --data-root or set CNNLAB_DATA$"):
            check_available("blobs", root=tmp_path / "nowhere")  # not downloadable: no --download
        test = load_dataset("BLOBS", "test", root=tmp_path)
        status = {s.name: s for s in list_datasets(tmp_path)}["blobs"]
        assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    assert np.array_equal(test.images.numpy(), written["images"][4:])
    assert test.labels.tolist() == written["labels"][4:].tolist() and test.name == "blobs"
    assert (status.found_at, status.downloadable) == (str(tmp_path / "blobs"), False)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("blobs "))
    assert BLOBS.description in line and str(tmp_path / "blobs") in line
    with pytest.raises(DataError, match="unknown data set 'blobs'"):  # removed again
        load_dataset("blobs", root=tmp_path)
    assert "blobs" not in {s.name for s in list_datasets(tmp_path)}


def test_a_generated_set_is_built_in():
    squares = DataSource("squares", "one white pixel per class (test set)", lambda request:
                         ImageSet(torch.eye(3, dtype=torch.uint8)[:, None, None] * 255,
                                  torch.arange(3), ["a", "b", "c"], name=request.name))
    with registered(squares):
        check_available("squares", root="/nonexistent")
        data = load_dataset("squares", "train")
        assert locate("squares", []) == "built in"
    assert data.images.shape == (3, 1, 1, 3) and data.images[1, 0, 0].tolist() == [0, 255, 0]


@pytest.mark.parametrize("call", [load_dataset, check_available])
def test_unknown_names_give_one_line_error_with_a_close_match(call):
    with pytest.raises(DataError) as error:
        call("mnist-scene")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("unknown data set 'mnist-scene'; choose one of: cifar10, ")
    assert "(did you mean 'mnist-scenes'?) (or give the path of an image folder)" in message
    with registered(BLOBS), pytest.raises(DataError, match="did you mean 'blobs'"):
        call("blobz")


def test_unknown_name_from_the_cli_is_one_line(capsys):
    assert main(["train", "--data", "fashion-minst", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'fashion-mnist'" in err[0]


def test_derived_sets_check_their_source(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", "")
    negated = DataSource("blobs-negated", "blobs, negated (test set)", inverted,
                         derived_from="blobs")
    with registered(BLOBS), registered(negated):
        with pytest.raises(DataError, match="data set 'blobs' not found"):
            check_available("blobs-negated", root=tmp_path)
        with pytest.raises(DataError, match="data set 'blobs' not found"):
            load_dataset("blobs-negated", root=tmp_path)
        assert {s.name: s for s in list_datasets(tmp_path)}["blobs-negated"].found_at is None
        written = write_blobs(tmp_path)
        check_available("blobs-negated", root=tmp_path)
        train = load_dataset("blobs-negated", "train", root=tmp_path)
        assert locate("blobs-negated", [tmp_path]) == str(tmp_path / "blobs")
    assert np.array_equal(train.images.numpy(), 255 - written["images"][:4])


def test_scene_sets_are_derived_from_their_source(shared_data):
    assert [data_source(n).derived_from for n in ("digit-scenes", "mnist-scenes",
                                                  "fashion-scenes")] == [
        "digits", "mnist", "fashion-mnist"]
    assert locate("mnist-scenes", [shared_data]) == locate("mnist", [shared_data]) == str(
        shared_data / "mnist")


def test_options_are_read_only_by_sets_that_take_them():
    with pytest.raises(DataError, match=r"data set 'mnist' takes no options \(got 'mnist:n=5'\)"):
        load_dataset("mnist:n=5")
    for name in ("digit-scenes", "mnist-scenes", "fashion-scenes"):  # listed defaults are true
        assert parse_scene_name(f"{name}:{data_source(name).options}") == parse_scene_name(name)
    assert load_dataset("digit-scenes:n=10", "test").images.shape == (2, 1, 32, 32)


def imported_data_modules(path: Path) -> set[str]:
    """``cnnlab.data`` modules that ``path`` imports anywhere (module or function level)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)  # "from cnnlab.data import idx" imports cnnlab.data.idx:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    modules = {f"cnnlab.data.{p.stem}" for p in DATA_PACKAGE.glob("*.py")}
    return {m.removesuffix(".__init__") for m in found if m in modules}


def import_cycles() -> list[list[str]]:
    """Import cycles among cnnlab.data's modules, found by depth-first search ([] when none)."""
    graph = {f"cnnlab.data.{p.stem}".removesuffix(".__init__"): imported_data_modules(p)
             for p in DATA_PACKAGE.glob("*.py")}
    cycles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return cycles


def test_no_module_in_cnnlab_data_imports_another_in_a_cycle():
    assert import_cycles() == []
    registry = imported_data_modules(DATA_PACKAGE / "registry.py")
    assert registry <= {"cnnlab.data.base", "cnnlab.data.download"}, registry


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    for name, imports in (("a", "from cnnlab.data.b import x"),
                          ("b", "def f():\n    from cnnlab.data import a")):
        (tmp_path / f"{name}.py").write_text(imports + "\n")
    monkeypatch.setattr(f"{__name__}.DATA_PACKAGE", tmp_path)
    assert import_cycles() == [["cnnlab.data.a", "cnnlab.data.b", "cnnlab.data.a"]]


def test_the_worked_example_in_docs_runs(shared_data, monkeypatch, capsys):
    text = (DATA_PACKAGE.parents[1] / "docs" / "DATA.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(DATA_PACKAGE.parents[1])  # the example's paths are relative to the repo
    try:
        exec(compile(code, "docs/DATA.md", "exec"), {"__name__": "docs_example"})
    finally:
        unregister_source("mnist-inverted")
    shape, found = capsys.readouterr().out.splitlines()
    assert shape == "(10000, 1, 28, 28) 255"
    assert Path(ast.literal_eval(found)[0]).resolve() == (shared_data / "mnist").resolve()
