"""Decode one image file into a uint8 ``(H, W, C)`` array, predictably and safely.

Only the formats cnnlab supports are tried (PNG, JPEG, BMP, GIF, PPM/PGM/PBM, TIFF, WEBP), so a
file is never handed to an exotic decoder. The size in the header is checked against
``max_pixels`` *before* any pixel is decoded (a 100 kB PNG can claim 50,000 x 50,000 pixels).
PIL's process-wide ``Image.MAX_IMAGE_PIXELS`` and ``ImageFile.LOAD_TRUNCATED_IMAGES`` are never
changed; above ``2 * Image.MAX_IMAGE_PIXELS`` PIL itself refuses too (also a DataError).
Every chunk checksum of a PNG is verified (PIL alone ignores a corrupt pixel-data CRC).
The EXIF orientation tag is applied, so photos taken sideways come out upright (tags 2-8).

How each PIL mode becomes 8-bit grey (G) or RGB:

    ======================  ======================================================  =====
    mode                    conversion                                              kind
    ======================  ======================================================  =====
    1                       0 -> 0, 1 -> 255                                        G
    L                       as is                                                   G
    LA                      composited over black: round(L * A / 255)               G
    I;16, I;16L/B/N         16-bit -> 8-bit: round(v / 257) (65535 -> 255, no clip;  G
                            integer maths, no float copy)
    I                       as I;16 when all values lie in 0..65535, else min..max
                            stretched linearly onto 0..255                          G
    F                       round(v * 255) when all values lie in 0..1, else
                            min..max stretched onto 0..255; NaN/inf -> DataError    G
    P                       palette -> RGB; with a transparent index -> RGBA and
                            composited over black; grey if the result has R=G=B     G/RGB
    RGBA, PA, RGBa          composited over black: round(C * A / 255)               RGB
    RGB                     as is                                                   RGB
    CMYK, YCbCr, LAB, HSV   PIL's ``convert("RGB")``                                RGB
    ======================  ======================================================  =====

16-bit colour PNGs (RGB/RGBA, 16 bits per sample): Pillow itself decodes them to 8-bit RGB(A)
by keeping each sample's high byte, ``floor(v / 256)`` (65535 -> 255, 1000 -> 3), and cnnlab
takes that as is; it can differ by 1 from the ``round(v / 257)`` of 16-bit grey.

Memory: besides ``max_pixels``, the header's size times the peak bytes per pixel of its mode
(``decode_bytes``: PIL's buffer, the EXIF-orientation copy, the conversion's arrays) must stay
under ``max_bytes`` (512 MiB), so a small file declaring a huge 16-bit or RGBA image is refused
before decoding. The folder reader decodes in up to 8 threads, so its peak is at most 8 times
that (typical training images need a few hundred kB each).

Transparent pixels become black, as if the picture were drawn on a dark canvas (MNIST-like
polarity); state it in a data set's notes when that matters. ``channels=1`` turns RGB into grey
with PIL's ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B); ``channels=3`` repeats grey;
``channels=None`` keeps grey as 1 channel and colour as 3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cnnlab.errors import DataError

SUPPORTED_FORMATS = ["PNG", "JPEG", "BMP", "GIF", "PPM", "TIFF", "WEBP"]
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tif", ".tiff",
     ".webp"}
)
MAX_PIXELS = 64_000_000  # 64 megapixels: far above any training image, far below a bomb
MAX_DECODE_BYTES = 1 << 29  # 512 MiB: peak memory of decoding + converting one image

# Peak bytes per pixel while one image is decoded and converted (cnnlab.data.images.decode):
# PIL's own buffer (1 byte for 1/L/P, 2 for 16-bit, else 4: PIL pads RGB to 4 bytes), a second
# one when the EXIF orientation is applied, plus the NumPy arrays of the conversion.
DECODED_BYTES = {"1": 1, "L": 1, "P": 1, **dict.fromkeys(["I;16", "I;16L", "I;16B", "I;16N"], 2)}
CONVERSION_BYTES = {"L": 1, "1": 2, "P": 12, "RGB": 3, "LA": 23, "RGBA": 23, "PA": 23,
                    "RGBa": 23, "I": 17, "F": 25, **dict.fromkeys(["I;16", "I;16L", "I;16B",
                                                                 "I;16N"], 11)}

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
ALPHA_MODES = frozenset({"RGBA", "PA", "RGBa"})


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map min..max linearly onto 0..255 (a constant image becomes 0)."""
    low, high = float(values.min()), float(values.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.round((values.astype(np.float64) - low) * scale).astype(np.uint8)


def sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    """0..65535 -> round(v / 257) in integer maths (no float64 copy of a large image).

    ``v / 257 == v * 255 / 65535``, and ``(v * 255 + 32767) // 65535`` rounds it to nearest
    (65535 is odd, so there are no ties); the largest intermediate, 16.7 M, fits in uint32.
    """
    wide = values.astype(np.uint32)
    wide *= 255
    wide += 32767
    wide //= 65535
    return wide.astype(np.uint8)


def wide_grey_to_uint8(img: Image.Image, path: Path) -> np.ndarray:
    """16-bit, 32-bit integer and float grey images -> uint8 ``(H, W)``, never clipping."""
    values = np.asarray(img)
    if img.mode == "F":
        if not np.isfinite(values).all():
            raise DataError(f"{path}: float image contains NaN or infinite values")
        if values.min() >= 0 and values.max() <= 1:
            return np.round(values.astype(np.float64) * 255).astype(np.uint8)
        return stretch_to_uint8(values)
    if img.mode in SIXTEEN_BIT_MODES or (values.min() >= 0 and values.max() <= 65535):
        return sixteen_bit_to_uint8(values)  # 65535 / 257 = 255
    return stretch_to_uint8(values)


def composite_over_black(img: Image.Image) -> np.ndarray:
    """LA / RGBA-like image -> ``(H, W, C)`` uint8 with colour scaled by alpha."""
    values = np.asarray(img.convert("LA" if img.mode == "LA" else "RGBA"), dtype=np.uint16)
    colour, alpha = values[..., :-1], values[..., -1:]
    return ((colour * alpha + 127) // 255).astype(np.uint8)  # round(C * A / 255)


def to_uint8_array(img: Image.Image, path: Path) -> np.ndarray:
    """Any PIL mode -> uint8 ``(H, W, 1)`` grey or ``(H, W, 3)`` RGB (see the module table)."""
    mode = img.mode
    if mode == "L":
        pixels = np.asarray(img)
    elif mode == "1":
        pixels = np.asarray(img.convert("L"))
    elif mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        pixels = wide_grey_to_uint8(img, path)
    elif mode == "LA" or mode in ALPHA_MODES:
        pixels = composite_over_black(img)
    elif mode == "P":
        has_alpha = "transparency" in img.info
        pixels = composite_over_black(img) if has_alpha else np.asarray(img.convert("RGB"))
        if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all():
            pixels = pixels[..., 0]  # a grey palette stays grey
    else:
        pixels = np.asarray(img if mode == "RGB" else img.convert("RGB"))
    return pixels[..., None] if pixels.ndim == 2 else pixels


def set_channels(pixels: np.ndarray, channels: int | None) -> np.ndarray:
    """``(H, W, 1|3)`` -> ``(H, W, channels)``; grey repeats, colour uses ITU-R 601-2 luma."""
    have = pixels.shape[2]
    if channels is None or channels == have:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=2)
    return np.asarray(Image.fromarray(pixels, "RGB").convert("L"))[..., None]


def verify_png_checksums(path: Path) -> None:
    """Check every PNG chunk's CRC; PIL's decoder skips those of the pixel data (IDAT)."""
    with Image.open(path, formats=["PNG"]) as img:
        img.verify()  # reads chunks without decoding; raises on a bad CRC or truncation


def decode_bytes(mode: str, width: int, height: int) -> int:
    """Estimated peak memory of decoding and converting a ``width x height`` image of ``mode``."""
    per_pixel = 2 * DECODED_BYTES.get(mode, 4) + CONVERSION_BYTES.get(mode, 7)
    return width * height * per_pixel


def check_size(path: Path, img: Image.Image, max_pixels: int, max_bytes: int) -> None:
    """Refuse, from the header alone, an image with too many pixels or too costly to decode."""
    width, height = img.size  # from the header: nothing decoded yet
    if width * height > max_pixels:
        raise DataError(f"{path}: {width}x{height} = {width * height} pixels exceeds the "
                        f"limit of {max_pixels} (possible decompression bomb); pass a "
                        "larger max_pixels if the image is genuine")
    needed = decode_bytes(img.mode, width, height)
    if needed > max_bytes:
        raise DataError(f"{path}: decoding this {width}x{height} {img.mode} image would need "
                        f"about {needed >> 20} MiB, more than the limit of {max_bytes >> 20} "
                        "MiB (possible decompression bomb); pass a larger max_bytes if the "
                        "image is genuine")


def decode(path: Path, channels: int | None, max_pixels: int,
           max_bytes: int = MAX_DECODE_BYTES) -> np.ndarray:
    """Open, check the header size, decode, orient and convert; PIL errors pass through."""
    with Image.open(path, formats=SUPPORTED_FORMATS) as img:
        check_size(path, img, max_pixels, max_bytes)
        if img.format == "PNG":
            verify_png_checksums(path)
        img.load()  # decode now, so truncation errors surface here
        upright = ImageOps.exif_transpose(img)
        return set_channels(to_uint8_array(upright, path), channels)


def load_image(
    path: str | Path, *, channels: int | None = None, max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_DECODE_BYTES,
) -> np.ndarray:
    """Read an image file as uint8 ``(H, W, C)``; C = ``channels`` or 1 for grey, 3 for colour.

    Raises DataError naming the path for a missing, truncated, empty, non-image or oversized
    file: more than ``max_pixels`` pixels, or an estimated peak memory of decoding and
    converting it (:func:`decode_bytes`: pixels x bytes per pixel of its mode) above
    ``max_bytes``, both read from the header before any pixel is decoded.

    Example:
        >>> load_image("cat.jpg", channels=3).shape  # doctest: +SKIP
        (32, 32, 3)
    """
    if channels not in (None, 1, 3):
        raise DataError(f"{path}: channels must be 1, 3 or None, got {channels!r}")
    path = Path(path)
    try:
        pixels = decode(path, channels, max_pixels, max_bytes)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... on bad files
        reason = str(error) or type(error).__name__
        raise DataError(f"{path}: cannot decode image ({reason})") from None
    return np.ascontiguousarray(pixels)
