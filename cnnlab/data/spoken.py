"""Spoken digits: "zero".."nine" synthesised by Debian's espeak-ng, as log-spectrograms.

Lecture 003, "Not just images": sound is data whose near neighbours (in time) are related. Each
word is spoken by espeak-ng in an accent (``-v en-us``, ``en-gb-scotland``...) and a variant
(``+m3``, ``+klatt2``, ``+croak``...: timbre, formants, voicing) at a speed and pitch drawn per
utterance. The split is by speaker: the test accents and the test variants are never heard in
training (a test utterance has a held-out accent *and* a held-out variant).

Waveforms are resampled to 8 kHz, trimmed of silence, centred in one second, and turned into
log-power spectrograms with ``torch.stft`` (256-sample Hann window, hop 128, bins averaged in
pairs): float32 ``(N, 64, 63)``, 64 frequency channels by 63 time frames, for a 1-D CNN over
time (:func:`cnnlab.models.sequence.spectro1d`). Both splits are generated once (about a minute)
and cached in ``~/.cache/cnnlab/spoken-digits/`` as safetensors, named by a hash of the
espeak-ng version and every parameter; a SHA-256 of the tensors inside detects damage, and a
damaged file is rebuilt.

    >>> from cnnlab.data.spoken import load_spoken_digits
    >>> test = load_spoken_digits("test")        # doctest: +SKIP
    >>> test.meta["accents"]                     # doctest: +SKIP
    ['en-gb-scotland', 'en-029', 'en-us-nyc']
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shutil
import struct
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.sequences import SequenceSet
from cnnlab.data.wav import load_wav
from cnnlab.errors import DataError
from cnnlab.files import atomic_write_bytes

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ESPEAK = "espeak-ng"
CACHE_DIR = Path("~/.cache/cnnlab/spoken-digits")


@dataclass(frozen=True)
class SpokenDigitsConfig:
    """Who speaks in which split, how often, and how sound becomes a spectrogram."""

    train_accents: tuple[str, ...] = ("en", "en-us", "en-gb-x-rp", "en-gb-x-gbclan",
                                      "en-gb-x-gbcwmd")
    test_accents: tuple[str, ...] = ("en-gb-scotland", "en-029", "en-us-nyc")
    train_variants: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "klatt",
                                       "klatt2", "klatt3", "croak", "grandpa", "Alex", "Andy",
                                       "Annie")
    test_variants: tuple[str, ...] = ("m6", "m7", "f4", "f5", "klatt4", "grandma", "Andrea",
                                      "Mike")
    repeats: int = 2             # utterances per (accent, variant, word)
    speed: tuple[int, int] = (120, 220)  # words per minute, drawn uniformly per utterance
    pitch: tuple[int, int] = (20, 80)    # espeak-ng's 0..99 scale, drawn uniformly
    rate: int = 8000             # Hz after resampling
    seconds: float = 1.0         # every utterance centred in this much signal
    n_fft: int = 256             # 32 ms Hann window at 8 kHz
    hop: int = 128               # 16 ms
    seed: int = 0

    def key(self, version: str) -> str:
        """The cache file's name: a hash of espeak-ng's version and every field."""
        text = json.dumps({"espeak-ng": version, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def espeak_version() -> str:
    """espeak-ng's version line; a DataError naming the Debian package when it is missing."""
    if shutil.which(ESPEAK) is None:
        raise DataError("spoken-digits needs espeak-ng, which is not installed: "
                        "apt-get install espeak-ng (Debian package espeak-ng)")
    out = subprocess.run([ESPEAK, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split("Data at")[0].strip()


def installed_voices(kind: str) -> set[str]:
    """Accent codes (``kind="en"``) or variant names (``kind="variant"``) espeak-ng has."""
    out = subprocess.run([ESPEAK, f"--voices={kind}"], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1:]
    if kind == "variant":
        return {line.split()[4].removeprefix("!v/") for line in out if "!v/" in line}
    return {line.split()[1] for line in out if line.split()}


def check_voices(config: SpokenDigitsConfig) -> None:
    """espeak-ng falls back silently on an unknown voice: refuse it instead."""
    for kind, names in (("en", config.train_accents + config.test_accents),
                        ("variant", config.train_variants + config.test_variants)):
        missing = sorted(set(names) - installed_voices(kind))
        if missing:
            raise DataError(f"spoken-digits: espeak-ng has no {kind} voice {missing}; "
                            f"see `espeak-ng --voices={kind}`")
    overlap = (set(config.train_accents) & set(config.test_accents)) | \
        (set(config.train_variants) & set(config.test_variants))
    if overlap:
        raise DataError(f"spoken-digits: {sorted(overlap)} in both splits; test voices must "
                        f"never be heard in training")


def synthesise(word: str, voice: str, speed: int, pitch: int, folder: Path) -> Path:
    """One espeak-ng utterance written to a .wav file in ``folder``."""
    path = folder / "utterance.wav"
    subprocess.run([ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path),
                    word], check=True, capture_output=True)
    return path


def centre_signal(wave: np.ndarray, length: int, threshold: float = 0.02) -> np.ndarray:
    """Trim leading/trailing samples below ``threshold`` x the peak, centre in ``length``
    samples (cropping the middle if longer), peak-normalise to 1."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak == 0.0:
        raise DataError("a silent signal (every sample is 0): nothing to recognise")
    loud = np.flatnonzero(np.abs(wave) >= threshold * peak)
    wave = wave[loud[0]:loud[-1] + 1] / peak
    if len(wave) > length:
        start = (len(wave) - length) // 2
        return wave[start:start + length].astype(np.float32)
    out = np.zeros(length, dtype=np.float32)
    start = (length - len(wave)) // 2
    out[start:start + len(wave)] = wave
    return out


def log_spectrogram(wave: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    """Log power spectrogram ``(n_fft // 4, frames)``: ``torch.stft`` with a Hann window, the
    Nyquist bin dropped, neighbouring bins averaged in pairs."""
    stft = torch.stft(torch.from_numpy(wave), n_fft, hop, window=torch.hann_window(n_fft),
                      return_complex=True)  # (n_fft/2 + 1, frames)
    power = stft.abs().square()[:-1]  # (n_fft/2, frames)
    power = power.reshape(n_fft // 4, 2, -1).mean(dim=1)  # (n_fft/4, frames)
    return torch.log(power + 1e-6)


def wav_features(path: str | Path, config: SpokenDigitsConfig | None = None) -> torch.Tensor:
    """A ``.wav`` file as the ``(64, 63)`` log-spectrogram the spoken-digits models take."""
    config = config or SpokenDigitsConfig()
    wave, _ = load_wav(path, rate=config.rate)
    try:
        wave = centre_signal(wave, int(config.rate * config.seconds))
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    return log_spectrogram(wave, config.n_fft, config.hop)


def utterance_plan(config: SpokenDigitsConfig, split: str) -> list[tuple[str, int, int, int]]:
    """(voice, label, speed, pitch) of every utterance in ``split``, drawn from ``seed``."""
    accents = config.train_accents if split == "train" else config.test_accents
    variants = config.train_variants if split == "train" else config.test_variants
    rng = np.random.default_rng([config.seed, 0 if split == "train" else 1])
    plan = []
    for accent in accents:
        for variant in variants:
            for label in range(len(WORDS)):
                for _ in range(config.repeats):
                    plan.append((f"{accent}+{variant}", label,
                                 int(rng.integers(config.speed[0], config.speed[1] + 1)),
                                 int(rng.integers(config.pitch[0], config.pitch[1] + 1))))
    return plan


def generate_split(config: SpokenDigitsConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthesise every utterance of ``split``: spectrograms ``(N, 64, 63)`` and labels."""
    features, labels = [], []
    with tempfile.TemporaryDirectory(prefix="cnnlab-espeak-") as folder:
        for voice, label, speed, pitch in utterance_plan(config, split):
            wav = synthesise(WORDS[label], voice, speed, pitch, Path(folder))
            features.append(wav_features(wav, config))
            labels.append(label)
    return torch.stack(features), torch.tensor(labels, dtype=torch.int64)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names and bytes (stored in the cache file, checked on read)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached tensors, or None when the file is missing or damaged (with a warning)."""
    if not path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        raw = path.read_bytes()
        header_size = struct.unpack_from("<Q", raw)[0]  # safetensors: u64 size + JSON header
        expected = json.loads(raw[8:8 + header_size])["__metadata__"]["sha256"]
        tensors = load(raw)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, struct.error) as error:
        warnings.warn(f"{path}: damaged spoken-digits cache ({error}); rebuilding it",
                      stacklevel=2)
        return None
    if expected != tensors_digest(tensors):
        warnings.warn(f"{path}: spoken-digits cache fails its checksum; rebuilding it",
                      stacklevel=2)
        return None
    return tensors


def write_cache(path: Path, tensors: dict[str, torch.Tensor], version: str,
                config: SpokenDigitsConfig) -> None:
    from safetensors.torch import save

    meta = {"sha256": tensors_digest(tensors), "espeak-ng": version,
            "config": json.dumps(dataclasses.asdict(config))}
    atomic_write_bytes(path, save(tensors, metadata=meta))


@functools.lru_cache(maxsize=2)
def build(config: SpokenDigitsConfig, cache_dir: Path) -> dict[str, torch.Tensor]:
    """Both splits from the cache, or synthesised (then cached)."""
    version = espeak_version()
    path = cache_dir / f"spoken-digits-{config.key(version)}.safetensors"
    tensors = read_cache(path)
    if tensors is None:
        check_voices(config)
        tensors = {}
        for split in ("train", "test"):
            tensors[f"{split}_data"], tensors[f"{split}_labels"] = generate_split(config, split)
        write_cache(path, tensors, version, config)
    return tensors


def load_spoken_digits(split: str = "train", *, config: SpokenDigitsConfig | None = None,
                       cache_dir: str | Path | None = None) -> SequenceSet:
    """The ``split`` of spoken digits as float32 log-spectrograms ``(N, 64, 63)``."""
    config = config or SpokenDigitsConfig()
    cache = Path(cache_dir or CACHE_DIR).expanduser()
    tensors = build(config, cache)
    accents = config.train_accents if split == "train" else config.test_accents
    variants = config.train_variants if split == "train" else config.test_variants
    return SequenceSet(tensors[f"{split}_data"].clone(), tensors[f"{split}_labels"].clone(),
                       list(WORDS), "spoken-digits",
                       {"accents": list(accents), "variants": list(variants),
                        "config": dataclasses.asdict(config), "split": split, "axes": ["time"]})
