"""Reading ``.wav`` files: 8/16-bit PCM or 32/64-bit float, mono or stereo, any rate, resampled.

Python's ``wave`` module reads PCM only, so cnnlab parses the RIFF chunks itself (a few lines):
``RIFF....WAVE`` then chunks ``fmt `` (format, channels, rate, bits) and ``data``. Every problem
is one line naming the file: not a WAV file, a truncated or damaged chunk, a format cnnlab does
not read (24/32-bit integer PCM, A-law, ADPCM...), a signal with no samples.

    >>> from cnnlab.data.wav import load_wav
    >>> wave, rate = load_wav("seven.wav", rate=8000)   # doctest: +SKIP
    >>> wave.dtype, rate                                # doctest: +SKIP
    (dtype('float32'), 8000)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError

PCM, IEEE_FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
# (format, bits) -> NumPy dtype of one sample; what this reader accepts
SAMPLE_TYPES = {(PCM, 8): np.dtype("u1"), (PCM, 16): np.dtype("<i2"),
                (IEEE_FLOAT, 32): np.dtype("<f4"), (IEEE_FLOAT, 64): np.dtype("<f8")}
STREAMING_SIZE = 0x7FFF0000  # data sizes this large are "until the end" (espeak-ng --stdout)
SUPPORTED = "8/16-bit PCM or 32/64-bit float"


@dataclass(frozen=True)
class WavFormat:
    """The ``fmt `` chunk: sample format code, channels, sample rate, bits per sample."""

    code: int
    channels: int
    rate: int
    bits: int


def riff_chunks(data: bytes, path: Path) -> dict[str, bytes]:
    """The first ``fmt `` and ``data`` chunks of a RIFF/WAVE file's bytes."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError(f"{path}: not a WAV file (no RIFF/WAVE header); give a .wav file")
    chunks: dict[str, bytes] = {}
    at = 12
    while at + 8 <= len(data) and not {"fmt ", "data"} <= chunks.keys():
        name = data[at:at + 4].decode("latin-1")
        size = struct.unpack_from("<I", data, at + 4)[0]
        body = data[at + 8:]
        if name == "data" and size >= STREAMING_SIZE:
            size = len(body)  # a stream's placeholder size: the samples run to the end
        if size > len(body):
            raise DataError(f"{path}: corrupt WAV: the {name.strip()!r} chunk says {size} bytes "
                            f"but {len(body)} follow (truncated file?)")
        chunks.setdefault(name, body[:size])
        at += 8 + size + (size & 1)  # chunks are padded to an even size
    for needed in ("fmt ", "data"):
        if needed not in chunks:
            raise DataError(f"{path}: corrupt WAV: no {needed.strip()!r} chunk")
    return chunks


def parse_format(chunk: bytes, path: Path) -> WavFormat:
    """The ``fmt `` chunk as a :class:`WavFormat` (WAVE_FORMAT_EXTENSIBLE -> its sub-format)."""
    if len(chunk) < 16:
        raise DataError(f"{path}: corrupt WAV: 'fmt' chunk of {len(chunk)} bytes (needs 16)")
    code, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", chunk)
    if code == EXTENSIBLE and len(chunk) >= 26:
        code = struct.unpack_from("<H", chunk, 24)[0]  # first 2 bytes of the sub-format GUID
    if channels == 0 or rate == 0:
        raise DataError(f"{path}: corrupt WAV: {channels} channels at {rate} Hz")
    return WavFormat(code, channels, rate, bits)


def decode_samples(payload: bytes, fmt: WavFormat, path: Path) -> np.ndarray:
    """Interleaved samples -> float32 mono in [-1, 1] (channels averaged)."""
    dtype = SAMPLE_TYPES.get((fmt.code, fmt.bits))
    if dtype is None:
        kind = {PCM: "integer PCM", IEEE_FLOAT: "float"}.get(fmt.code, f"format code {fmt.code}")
        raise DataError(f"{path}: unsupported WAV format ({fmt.bits}-bit {kind}); cnnlab reads "
                        f"{SUPPORTED}: convert it, e.g. `sox IN.wav -b 16 OUT.wav`")
    frame = dtype.itemsize * fmt.channels
    frames = len(payload) // frame
    if frames == 0:
        raise DataError(f"{path}: a 0-length signal (no samples in the 'data' chunk); record "
                        f"some sound")
    samples = np.frombuffer(payload[:frames * frame], dtype=dtype).reshape(frames, fmt.channels)
    if fmt.code == PCM:  # 8-bit is unsigned around 128, 16-bit signed
        scale, offset = (128.0, 128.0) if fmt.bits == 8 else (32768.0, 0.0)
        values = (samples.astype(np.float32) - offset) / scale
    else:
        values = samples.astype(np.float32)
        if not np.isfinite(values).all():
            raise DataError(f"{path}: corrupt WAV: float samples that are NaN or infinite")
    return values.mean(axis=1)  # (T,) mono


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``wave`` from ``rate`` to ``target`` Hz by polyphase filtering (scipy)."""
    if rate == target:
        return wave
    from scipy.signal import resample_poly  # scipy comes with scikit-learn; only needed here

    divisor = math.gcd(rate, target)
    return resample_poly(wave, target // divisor, rate // divisor).astype(np.float32)


def load_wav(path: str | Path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """A ``.wav`` file as float32 mono samples in [-1, 1] and its rate (``rate``: resampled to
    that many Hz)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a .wav file") from None
    chunks = riff_chunks(data, path)
    fmt = parse_format(chunks["fmt "], path)
    wave = decode_samples(chunks["data"], fmt, path)
    if rate is None:
        return wave, fmt.rate
    return resample(wave, fmt.rate, rate), rate
