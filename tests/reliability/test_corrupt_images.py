"""Issue 9, items 8-9: corrupt images, decompression bombs, unsupported formats, PIL's flags.

Every bad file is refused with a DataError naming its path; ``skip_bad`` warns once per file,
reports the count and aborts above ``max_bad_fraction``. A header declaring a huge image is
refused before a single pixel is decoded. cnnlab never flips PIL's process-wide switches.
"""

from __future__ import annotations

import importlib
import io
import pkgutil
import re
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import cnnlab
from cnnlab.data.datasets import load_dataset
from cnnlab.data.folder import read_image_folder
from cnnlab.data.images import MAX_PIXELS, SUPPORTED_FORMATS, decode_bytes, load_image
from cnnlab.errors import DataError

pytestmark = pytest.mark.reliability
PIL_DEFAULT_MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)  # Pillow's documented default


def encoded(fmt: str, size=(16, 16), mode="RGB") -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bad_idat_crc() -> bytes:
    data = bytearray(encoded("PNG"))
    start = data.find(b"IDAT")
    length = struct.unpack(">I", data[start - 4:start])[0]
    data[start + 4 + length] ^= 0xFF  # first byte of the pixel data's CRC
    return bytes(data)


CORRUPT = {
    "truncated.jpg": lambda: encoded("JPEG")[:300],
    "empty.jpg": lambda: b"",
    "text.jpg": lambda: b"this is a shopping list, not a photo\n",
    "bad-crc.png": bad_idat_crc,
    "truncated.png": lambda: encoded("PNG")[:-30],
}


@pytest.mark.parametrize("name", CORRUPT)
def test_corrupt_file_is_a_data_error_naming_the_path(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(CORRUPT[name]())
    with pytest.raises(DataError, match=re.escape(str(path))):
        load_image(path)


def make_folder(root: Path, good_per_class: int, bad: list[str]) -> None:
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(good_per_class):
            (root / cls / f"{i:03d}.png").write_bytes(encoded("PNG", (8, 8)))
    for name in bad:
        (root / "dog" / name).write_bytes(CORRUPT[name]())


def test_folder_reader_stops_at_a_bad_file_by_default(tmp_path):
    make_folder(tmp_path, 20, ["bad-crc.png"])
    with pytest.raises(DataError, match=r"dog/bad-crc\.png.*--skip-bad"):
        read_image_folder(tmp_path)


def test_skip_bad_warns_per_file_counts_and_aborts_above_the_threshold(tmp_path):
    make_folder(tmp_path, 40, ["truncated.jpg", "empty.jpg"])
    with pytest.warns(UserWarning) as caught:
        data = read_image_folder(tmp_path, skip_bad=True, max_bad_fraction=0.05)
    messages = [str(w.message) for w in caught]
    assert len(data) == 80
    assert sum("skipping unreadable image" in m for m in messages) == 2
    assert any("truncated.jpg" in m for m in messages) and any("empty.jpg" in m for m in messages)
    assert any(re.search(r"skipped 2 of 82 unreadable images", m) for m in messages)
    with warnings.catch_warnings(), pytest.raises(DataError, match=r"2 of 82 .* max_bad_frac"):
        warnings.simplefilter("ignore")
        read_image_folder(tmp_path, skip_bad=True, max_bad_fraction=0.01)


def test_skip_bad_reaches_the_folder_reader_through_load_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the decoded-image cache goes there
    make_folder(tmp_path / "pets", 40, ["text.jpg"])
    with pytest.raises(DataError, match=r"text\.jpg"):
        load_dataset(str(tmp_path / "pets"))
    with pytest.warns(UserWarning) as caught:
        assert len(load_dataset(str(tmp_path / "pets"), skip_bad=True)) == 80
    messages = " | ".join(str(w.message) for w in caught)
    assert "skipping unreadable image" in messages and "skipped 1 of 81" in messages


def bomb(fmt: str, width: int, height: int) -> bytes:
    """A small valid file whose header claims ``width`` x ``height`` pixels."""
    data = bytearray(encoded(fmt, (8, 8)))
    if fmt == "PNG":
        ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
        return bytes(data[:8]) + png_chunk(b"IHDR", ihdr) + bytes(data[33:])
    if fmt == "JPEG":
        sof = data.find(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
        return bytes(data)
    data[18:26] = struct.pack("<ii", width, height)  # BMP info header
    return bytes(data)


# 10,000^2 is above cnnlab's 64 MP limit but under PIL's own refusal (2 * MAX_IMAGE_PIXELS);
# the larger ones are refused by PIL when the header is parsed, also before decoding.
@pytest.mark.parametrize("fmt,width,height", [("PNG", 10_000, 10_000), ("JPEG", 9_000, 9_000),
                                              ("BMP", 10_000, 9_000), ("PNG", 100_000, 100_000),
                                              ("JPEG", 65_000, 65_000)])
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch, fmt, width, height):
    path = tmp_path / f"bomb.{fmt.lower()}"
    path.write_bytes(bomb(fmt, width, height))
    assert path.stat().st_size < 2000

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(DataError, match=rf"bomb\.{fmt.lower()}.*decompression bomb") as error:
        load_image(path)
    if width * height < 2 * Image.MAX_IMAGE_PIXELS:
        assert f"{width}x{height} = {width * height} pixels exceeds the limit of {MAX_PIXELS}" \
            in str(error.value)


@pytest.mark.parametrize("fmt", ["PCX", "TGA", "SGI", "ICO", "DDS"])
def test_formats_outside_the_supported_list_are_never_decoded(tmp_path, fmt):
    path = tmp_path / "looks-like.png"  # the name does not matter, the content decides
    path.write_bytes(encoded(fmt, (16, 16), "RGBA" if fmt == "DDS" else "RGB"))
    assert Image.open(path).format == fmt  # PIL itself would decode it
    with pytest.raises(DataError, match="looks-like.png: cannot decode image"):
        load_image(path)


def test_supported_formats_are_the_documented_ones(tmp_path):
    assert SUPPORTED_FORMATS == ["PNG", "JPEG", "BMP", "GIF", "PPM", "TIFF", "WEBP"]
    for fmt in SUPPORTED_FORMATS:
        path = tmp_path / f"ok.{fmt.lower()}"
        path.write_bytes(encoded(fmt))
        assert load_image(path).shape == (16, 16, 3), fmt


def test_cnnlab_never_changes_pillows_process_wide_flags(tmp_path):
    flags = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
    assert flags == (False, PIL_DEFAULT_MAX_PIXELS)
    for module in pkgutil.walk_packages(cnnlab.__path__, "cnnlab."):
        if not module.name.endswith("__main__"):  # that one runs the CLI
            importlib.import_module(module.name)
    for name, make in CORRUPT.items():
        (tmp_path / name).write_bytes(make())
        with pytest.raises(DataError):
            load_image(tmp_path / name)
    (tmp_path / "bomb.png").write_bytes(bomb("PNG", 100_000, 100_000))
    with pytest.raises(DataError):
        load_image(tmp_path / "bomb.png")
    assert (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS) == flags
    source = "\n".join(p.read_text() for p in Path(cnnlab.__file__).parent.rglob("*.py"))
    assert not re.search(r"(LOAD_TRUNCATED_IMAGES|MAX_IMAGE_PIXELS)\s*=[^=]", source)


def sixteen_bit_png(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A 16-bit grey PNG (IHDR bit depth 16, colour type 0); ``rows`` of pixel data or one
    compressed all-zero image (a 7999x8000 one compresses to about 120 kB)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    if rows is None:
        compressor = zlib.compressobj(9)
        line = bytes(1 + 2 * width)
        rows = b"".join(compressor.compress(line) for _ in range(height)) + compressor.flush()
    else:
        rows = zlib.compress(rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", rows)
            + png_chunk(b"IEND", b""))


def test_sixteen_bit_bomb_under_the_pixel_limit_is_refused_by_its_byte_budget(
        tmp_path, monkeypatch):
    """The audit's file: 7999x8000 16-bit grey, 64 MP (under MAX_PIXELS) in ~120 kB, used to
    take 1.57 GB. Its decoded bytes (2 per pixel, twice, + the conversion's) exceed 512 MiB."""
    path = tmp_path / "deep.png"
    path.write_bytes(sixteen_bit_png(7999, 8000))
    assert path.stat().st_size < 200_000 and 7999 * 8000 < MAX_PIXELS
    assert decode_bytes("I;16", 7999, 8000) == 7999 * 8000 * (2 * 2 + 11)

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(DataError, match=r"deep\.png: decoding this 7999x8000 I;16 image would "
                                        r"need about 915 MiB, more than the limit of 512 MiB"):
        load_image(path)


def test_sixteen_bit_conversion_stays_within_its_memory_estimate(tmp_path):
    """tracemalloc sees NumPy's arrays: integer scaling needs 2 + 4 + 1 bytes per pixel (the
    float64 version needed over 18), and the result is round(v / 257) exactly."""
    width = height = 600
    values = np.arange(width * height, dtype=np.uint32) * 181 % 65536  # every residue mix
    path = tmp_path / "wide.png"
    rows = b"".join(b"\x00" + values[r * width:(r + 1) * width].astype(">u2").tobytes()
                    for r in range(height))
    path.write_bytes(sixteen_bit_png(width, height, rows))
    tracemalloc.start()
    try:
        pixels = load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = np.floor(values / 257 + 0.5).astype(np.uint8).reshape(height, width, 1)
    assert np.array_equal(pixels, expected)
    assert peak < 9 * width * height, f"peak {peak} bytes for {width * height} pixels"
    assert peak < decode_bytes("I;16", width, height)


def test_sixteen_bit_colour_png_keeps_pillows_high_byte(tmp_path):
    """Documented: Pillow decodes 16-bit RGB to 8-bit by keeping the high byte (floor(v/256))."""
    samples = [65535, 32768, 255, 1000, 300, 65280]
    ihdr = struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" + struct.pack(">6H", *samples)))
            + png_chunk(b"IEND", b""))
    path = tmp_path / "rgb16.png"
    path.write_bytes(data)
    assert load_image(path).reshape(-1).tolist() == [v // 256 for v in samples]
