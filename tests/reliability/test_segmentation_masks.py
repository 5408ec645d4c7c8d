"""Item 12: segmentation masks from the user's own files (:mod:`cnnlab.data.masks`) are checked
before training starts, every problem reported with its file name in one DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config import TrainConfig
from cnnlab.data.datasets import load_dataset
from cnnlab.data.masks import load_mask_set
from cnnlab.data.scenes import SceneSet
from cnnlab.errors import DataError
from cnnlab.train.fit import fit

pytestmark = pytest.mark.reliability


def write_pair(base: Path, name: str, image: np.ndarray | None, mask: np.ndarray | None) -> None:
    """``base/images/NAME.png`` (uint8 grey or RGB) and ``base/masks/NAME.png`` (mode L)."""
    for sub, array in (("images", image), ("masks", mask)):
        (base / sub).mkdir(parents=True, exist_ok=True)
        if array is not None:
            Image.fromarray(array.astype(np.uint8)).save(base / sub / f"{name}.png")


def square_scene(rng: np.random.Generator, side: int = 32, k: int = 2):
    """A bright square of class ``c`` on black: image ``(side, side)`` and its mask."""
    image, mask = np.zeros((side, side), np.uint8), np.zeros((side, side), np.uint8)
    c = int(rng.integers(1, k + 1))
    y, x = rng.integers(0, side - 12, 2)
    image[y:y + 12, x:x + 12] = 120 * c
    mask[y:y + 12, x:x + 12] = c
    return image, mask


def make_folder(root: Path, n: int = 6, *, split: bool = False, seed: int = 0) -> dict:
    """A tiny mask folder (``classes.txt`` = a, b); returns the masks written per split."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in (("train", "test") if split else ("train",)):
        base = root / name if split else root
        written[name] = []
        for i in range(n):
            image, mask = square_scene(rng)
            write_pair(base, f"s{i:02d}", image, mask)
            written[name].append(mask)
    (root / "classes.txt").write_text("a\nb\n")
    return written


def test_round_trip_gives_the_masks_written(tmp_path):
    written = make_folder(tmp_path, split=True)
    for name in ("train", "test"):
        data = load_dataset(str(tmp_path), name)
        assert isinstance(data, SceneSet) and data.classes == ["a", "b"]
        assert torch.equal(data.masks, torch.from_numpy(np.stack(written[name])).long())
        assert data.images.shape == (6, 1, 32, 32)
        # an object pixel is exactly 120 * class, the rest black
        assert torch.equal(data.images[:, 0].long(), 120 * data.masks)
        present = torch.stack([(data.masks == c).any((1, 2)) for c in (1, 2)], 1)
        assert torch.equal(data.present, present)
        assert data.boxes.shape == (6, 0, 4)


def test_palette_masks_give_indices_not_colours(tmp_path):
    mask = np.array([[0, 1], [2, 0]], np.uint8)
    write_pair(tmp_path, "p", np.zeros((2, 2, 3), np.uint8), None)
    img = Image.fromarray(mask, "P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    img.save(tmp_path / "masks" / "p.png")
    data = load_mask_set(tmp_path)
    assert data.classes == ["1", "2"]  # no classes.txt: 1 .. largest value
    assert data.masks[0].tolist() == mask.tolist()


def test_out_of_range_values_are_named(tmp_path):
    make_folder(tmp_path, n=3)
    bad = np.zeros((32, 32), np.uint8)
    bad[0, 0] = 7
    write_pair(tmp_path, "s01", None, bad)
    with pytest.raises(DataError) as caught:
        load_dataset(str(tmp_path))
    message = str(caught.value)
    assert "s01.png: mask value 7 >= 3" in message and "1 problem(s)" in message
    assert "\n" not in message


def test_size_mismatch_is_named(tmp_path):
    make_folder(tmp_path, n=3)
    write_pair(tmp_path, "s02", None, np.zeros((30, 32), np.uint8))
    with pytest.raises(DataError, match=r"s02\.png: mask is 30x32 but its image s02\.png is 32x32"):
        load_mask_set(tmp_path)


def test_unpaired_images_and_masks_are_named_and_counted(tmp_path):
    make_folder(tmp_path, n=3, split=True)
    zeros = np.zeros((32, 32), np.uint8)
    for i in range(4):  # test split: 4 images without masks
        write_pair(tmp_path / "test", f"lonely{i}", zeros, None)
    write_pair(tmp_path / "train", "orphan", None, zeros)  # a mask without an image
    with pytest.raises(DataError) as caught:
        load_mask_set(tmp_path, "train")  # the test split is checked too, before training
    message = str(caught.value)
    assert "5 problem(s)" in message and "and 0 more" not in message
    assert "orphan.png: mask has no image" in message
    assert "lonely0.png: image has no mask" in message and "lonely3.png" in message
    write_pair(tmp_path / "train", "orphan2", None, zeros)  # 6 problems: 5 shown, 1 counted
    with pytest.raises(DataError, match=r"6 problem\(s\).*; and 1 more$"):
        load_mask_set(tmp_path, "test")


def test_colour_mask_is_refused_with_its_name(tmp_path):
    make_folder(tmp_path, n=2)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "masks" / "s00.png")
    with pytest.raises(DataError, match=r"s00\.png: mask is RGB, expected a single-channel"):
        load_mask_set(tmp_path)


def test_bad_masks_stop_training_before_it_starts(tmp_path):
    data = tmp_path / "data"
    make_folder(data, n=3)
    write_pair(data, "s00", None, np.full((32, 32), 9, np.uint8))
    config = TrainConfig(task="segment", model="fcn", data=str(data), epochs=1, batch_size=4,
                         out=str(tmp_path / "runs"), progress=False, seed=0,
                         model_options={"widths": [8, 16]})
    with pytest.raises(DataError, match=r"s00\.png: mask value 9"):
        fit(config, log=lambda *_: None)
    assert not any((tmp_path / "runs").rglob("*.safetensors"))


def test_one_epoch_of_fcn_on_a_mask_folder_completes(tmp_path):
    data = tmp_path / "data"
    make_folder(data, n=8, split=True)
    config = TrainConfig(task="segment", model="fcn", data=str(data), epochs=1, batch_size=4,
                         out=str(tmp_path / "runs"), progress=False, seed=0,
                         model_options={"widths": [8, 16]})
    result = fit(config, log=lambda *_: None)
    assert result.status == "completed"
    assert len(result.test_metrics["per_class_iou"]) == 3  # background, a, b
    assert (Path(result.run_dir) / "best.safetensors").is_file()
