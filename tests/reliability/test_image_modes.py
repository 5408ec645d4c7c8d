"""Issue 9, item 10: every PIL mode and EXIF orientation gives the documented uint8 tensor.

The expected arrays are computed by hand from the table in ``cnnlab/data/images.py`` (alpha
composited over black, 16-bit scaled by 1/257 and never clipped); orientations are checked
against NumPy rotations/flips of a known upright image, not against PIL's own table.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.images import load_image

pytestmark = pytest.mark.reliability


def saved(tmp_path, img: Image.Image, name: str = "img.png", **kwargs) -> np.ndarray:
    path = tmp_path / name
    img.save(path, **kwargs)
    return load_image(path)


def test_grey_and_one_bit(tmp_path):
    grey = np.array([[0, 7, 128, 255]], np.uint8)
    assert np.array_equal(saved(tmp_path, Image.fromarray(grey, "L")), grey[..., None])
    bits = Image.fromarray(np.array([[0, 255, 255, 0]], np.uint8)).convert("1")
    assert np.array_equal(saved(tmp_path, bits, "bits.png")[..., 0], [[0, 255, 255, 0]])


def test_alpha_is_composited_over_black(tmp_path):
    la = np.array([[[200, 128], [200, 0], [200, 255], [10, 51]]], np.uint8)  # (1, 4, 2)
    out = saved(tmp_path, Image.fromarray(la, "LA"))
    # round(L * A / 255): 200*128/255 = 100.39 -> 100; 10*51/255 = 2
    assert out.shape == (1, 4, 1) and out[0, :, 0].tolist() == [100, 0, 200, 2]
    rgba = np.array([[[255, 100, 0, 128], [10, 20, 30, 255], [90, 90, 90, 0]]], np.uint8)
    out = saved(tmp_path, Image.fromarray(rgba, "RGBA"), "rgba.png")
    assert out.tolist() == [[[128, 50, 0], [10, 20, 30], [0, 0, 0]]]


def test_palette_with_a_transparent_index(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    img.putdata([0, 1, 2])
    out = saved(tmp_path, img, transparency=0)  # red is the transparent colour
    assert out.tolist() == [[[0, 0, 0], [0, 255, 0], [0, 0, 255]]]
    grey = Image.new("P", (2, 1))
    grey.putpalette([30, 30, 30, 220, 220, 220] + [0] * 762)
    grey.putdata([0, 1])
    assert saved(tmp_path, grey, "grey.png").tolist() == [[[30], [220]]]  # stays 1 channel


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32768, 65535]], np.uint16)
    img = Image.fromarray(values)
    assert img.mode.startswith("I;16")
    out = saved(tmp_path, img, "deep.png")
    expected = np.round(values / 257).astype(np.uint8)  # 1000 -> 4 (clipping would give 255)
    assert out[..., 0].tolist() == expected.tolist() == [[0, 1, 4, 128, 255]]


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 0, 255]]],
                    np.uint8)
    out = saved(tmp_path, Image.fromarray(cmyk, "CMYK"), "print.tif")
    # white, cyan, magenta, black: R = 255 - C (no black ink), all 0 with full black ink
    assert out.tolist() == [[[255, 255, 255], [0, 255, 255], [255, 0, 255], [0, 0, 0]]]


UPRIGHT = np.arange(1, 7, dtype=np.uint8).reshape(2, 3) * 40  # a 2x3 image with no symmetry

# EXIF orientation -> how the stored pixels relate to the upright picture (EXIF 2.3, tag 274).
STORED = {
    2: np.fliplr(UPRIGHT),  # mirrored left-right
    3: np.rot90(UPRIGHT, 2),  # upside down
    4: np.flipud(UPRIGHT),  # mirrored top-bottom
    5: UPRIGHT.T,  # mirrored along the main diagonal
    6: np.rot90(UPRIGHT, 1),  # camera turned: needs 90 degrees clockwise to view
    7: np.rot90(UPRIGHT, 2).T,  # mirrored along the anti-diagonal
    8: np.rot90(UPRIGHT, -1),  # needs 90 degrees counter-clockwise to view
}


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_is_applied(tmp_path, orientation):
    img = Image.fromarray(np.ascontiguousarray(STORED[orientation]), "L")
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = saved(tmp_path, img, exif=exif.tobytes())
    assert out[..., 0].tolist() == UPRIGHT.tolist()


def test_exif_orientation_of_a_jpeg_photo(tmp_path):
    upright = np.kron(UPRIGHT, np.ones((16, 16), np.uint8))  # (32, 48) blocks survive JPEG
    exif = Image.Exif()
    exif[0x0112] = 6
    out = saved(tmp_path, Image.fromarray(np.rot90(upright, 1).copy(), "L"), "photo.jpg",
                exif=exif.tobytes(), quality=95)
    assert out.shape == (32, 48, 1)
    assert np.abs(out[..., 0].astype(int) - upright).max() <= 8
