"""Issue 9, items 2-3: dependency floors, and weights files that load exactly or not at all."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
import tomllib
import torch
from packaging.requirements import Requirement
from packaging.version import Version
from safetensors.torch import save_file

from cnnlab.errors import CheckpointError
from cnnlab.models import create
from cnnlab.runs.checkpoint import read_checkpoint, save_checkpoint
from cnnlab.runs.reader import load_model

pytestmark = pytest.mark.reliability
FLOORS = {"torch": Version("2.10"), "pillow": Version("12.2")}
REPO = Path(__file__).resolve().parents[2]


def declared_floors(requirements: list[str]) -> dict:
    declared = {}
    for text in requirements:
        requirement = Requirement(text)
        declared[requirement.name.lower()] = requirement.specifier
    return declared


def test_security_floors_are_declared_in_pyproject():
    """The source of truth: installed egg-info/dist-info metadata can be stale."""
    with (REPO / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    declared = declared_floors(project["dependencies"])
    for name, floor in FLOORS.items():
        assert f">={floor}" in {str(s) for s in declared[name]}, f"{name}: {declared[name]}"
        assert not declared[name].contains(str(Version(f"{floor.major}.{floor.minor - 1}")))


def test_security_floors_are_declared_and_installed():
    declared = declared_floors(importlib.metadata.requires("cnnlab"))
    for name, floor in FLOORS.items():
        specifier = declared[name]
        assert f">={floor}" in {str(s) for s in specifier}, f"{name}: {specifier}"
        assert not specifier.contains(str(Version(f"{floor.major}.{floor.minor - 1}")))
        installed = importlib.metadata.version(name)
        assert specifier.contains(installed, prereleases=True), f"{name} {installed}"
        assert Version(installed) >= floor


def lenet_meta(model_name: str = "lenet5") -> dict:
    return {"model": {"name": model_name, "num_classes": 10, "in_channels": 1,
                      "input_size": [1, 32, 32], "options": {}},
            "classes": [str(d) for d in range(10)]}


def test_safetensors_round_trip_is_bit_exact_for_awkward_values(tmp_path):
    model = create("lenet5")
    weight = model.classifier[-1].weight  # (10, 84)
    awkward = torch.tensor([-0.0, 1e-45, -1e-45, 3.4028235e38, -3.4028235e38, 1 / 3, 1e-38])
    with torch.no_grad():
        weight[0, :len(awkward)] = awkward  # signed zero, subnormals, extremes
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, model=model, meta=lenet_meta())
    loaded, _ = load_model(path)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a.view(torch.int32), b.view(torch.int32)), name
    via_create = create("lenet5", weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 via_create.state_dict().values(), strict=True))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_in_a_file_are_refused_naming_the_key(tmp_path, bad):
    state = {f"model.{k}": v.clone() for k, v in create("lenet5").state_dict().items()}
    state["model.features.0.bias"][2] = bad
    path = tmp_path / "best.safetensors"
    save_file(state, str(path), metadata={"cnnlab": json.dumps(lenet_meta())})
    with pytest.raises(CheckpointError, match=r"features\.0\.bias has NaN/Inf"):
        load_model(path)
    with pytest.raises(CheckpointError, match=r"features\.0\.bias has NaN/Inf"):
        create("lenet5", weights=str(path))
    with pytest.raises(CheckpointError, match=r"refusing to save.*features\.0\.bias"):
        model = create("lenet5")
        model.load_state_dict({k[6:]: v for k, v in state.items()})
        save_checkpoint(tmp_path / "again.safetensors", model=model, meta={})
    assert not (tmp_path / "again.safetensors").exists()


def edited_state(edit: str) -> dict[str, torch.Tensor]:
    state = dict(create("lenet5").state_dict())
    if edit == "missing":
        del state["features.3.weight"]
    elif edit == "unexpected":
        state["features.9.weight"] = torch.zeros(3)
    else:
        state["features.3.weight"] = torch.zeros(16, 6, 3, 3)  # 5x5 kernels expected
    return state


@pytest.mark.parametrize("edit,message", [
    ("missing", r"missing key 'features\.3\.weight'"),
    ("unexpected", r"unexpected key 'features\.9\.weight'"),
    ("shape", r"features\.3\.weight has shape \(16, 6, 3, 3\).*expects \(16, 6, 5, 5\)"),
])
def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path, edit, message):
    state = edited_state(edit)
    plain = tmp_path / "weights.safetensors"
    save_file(state, str(plain))
    with pytest.raises(CheckpointError, match=message):
        create("lenet5", weights=str(plain))
    pth = tmp_path / "weights.pth"
    torch.save(state, pth)
    with pytest.raises(CheckpointError, match=message):
        create("lenet5", weights=str(pth))
    checkpoint = tmp_path / "best.safetensors"
    save_file({f"model.{k}": v for k, v in state.items()}, str(checkpoint),
              metadata={"cnnlab": json.dumps(lenet_meta())})
    with pytest.raises(CheckpointError, match=message):
        load_model(checkpoint)
    assert read_checkpoint(checkpoint)[1]["model"]["name"] == "lenet5"  # the file itself reads
