"""The 1-D/3-D generators, the .wav reader, the tabular control and the sequence models
(issue 23): shapes, classes, determinism, disjoint splits, bad input as one-line errors."""

from __future__ import annotations

import math
import struct
import wave

import numpy as np
import pytest
import torch

from cnnlab.data import spoken
from cnnlab.data.mnist1d import generate, load_mnist1d
from cnnlab.data.moving import DIRECTIONS, load_moving_mnist
from cnnlab.data.sequences import SequenceSet, load_sequences, shuffle_positions
from cnnlab.data.voxels import load_voxel_shapes, rasterise, voxel_centres
from cnnlab.data.wav import load_wav
from cnnlab.data.words import ALPHABET, WORD_LISTS, encode_word, load_words, unique_words
from cnnlab.errors import DataError
from cnnlab.models import sequence as zoo


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- SequenceSet and the tabular control ---------------------------------------------------

def test_sequence_set_rejects_bad_tensors():
    with pytest.raises(DataError, match="uint8 or float32"):
        SequenceSet(torch.zeros(2, 1, 4, dtype=torch.float64), torch.zeros(2), ["a"])
    with pytest.raises(DataError, match="2 samples"):
        SequenceSet(torch.zeros(2, 1, 4), torch.zeros(3), ["a"])
    with pytest.raises(DataError, match="labels span 0..2"):
        SequenceSet(torch.zeros(2, 1, 4), torch.tensor([0, 2]), ["a", "b"])


@pytest.mark.parametrize("shape", [(5, 2, 12), (5, 1, 3, 4, 4)])
def test_shuffle_positions_is_one_permutation_for_every_sample(shape):
    data = torch.rand(shape)
    dataset = SequenceSet(data, torch.zeros(shape[0], dtype=torch.long), ["a"], "x")
    shuffled = shuffle_positions(dataset, seed=3).data.reshape(shape[0], shape[1], -1)
    flat = data.reshape(shape[0], shape[1], -1)
    # recover the permutation from sample 0, channel 0 (distinct values) and apply it to all
    order = [int((flat[0, 0] == v).nonzero()) for v in shuffled[0, 0]]
    assert torch.equal(flat[:, :, order], shuffled)
    assert order != sorted(order)
    assert torch.equal(shuffle_positions(dataset, 3).data, shuffle_positions(dataset, 3).data)
    assert not torch.equal(shuffle_positions(dataset, 3).data, shuffle_positions(dataset, 4).data)


def test_load_sequences_names_unknown_sets_and_splits():
    with pytest.raises(DataError, match="did you mean 'mnist1d'"):
        load_sequences("mnist1", "train")
    with pytest.raises(DataError, match="unknown split"):
        load_sequences("mnist1d", "val")


# --- MNIST-1D ------------------------------------------------------------------------------

def test_mnist1d_matches_the_published_set_and_leaves_global_rng_alone():
    state = np.random.get_state()[1].copy()
    train, test = load_mnist1d("train"), load_mnist1d("test")
    assert np.array_equal(np.random.get_state()[1], state)
    assert tuple(train.data.shape) == (4000, 1, 40) and tuple(test.data.shape) == (1000, 1, 40)
    assert train.data.dtype == torch.float32 and train.classes == [str(d) for d in range(10)]
    both = torch.cat([train.labels, test.labels])
    assert both.bincount().tolist() == [500] * 10  # 5,000 samples, 500 per template
    everything = torch.cat([train.data, test.data]).double()
    assert abs(float(everything.mean())) < 1e-4 and abs(float(everything.std()) - 1) < 1e-3
    again = generate.__wrapped__(42)  # generated anew, not from the in-process cache
    assert np.array_equal(again["x_test"].astype(np.float32), test.data[:, 0].numpy())


# --- words ---------------------------------------------------------------------------------

@pytest.fixture
def tiny_dicts(tmp_path):
    """Six tiny word lists exercising every filtering rule."""
    lists = {
        "english": ["Apple", "apple's", "Chat", "x-ray", "house", "dog", "tree",
                    "onomatopoeiasandmorewords", "cat"],
        "french": ["chat", "été", "c'est", "maison", "chien", "arbre", "pomme"],
        "german": ["Haus", "Hund", "Baum", "straße", "über", "Katze"],
        "spanish": ["casa", "perro", "árbol", "gato", "niño", "manzana"],
        "italian": ["casa", "cane", "albero", "gatto", "città", "mela"],
        "dutch": ["huis", "hond", "boom", "kat", "appel", "2cv", "één"],
    }
    for language, words in lists.items():
        (tmp_path / WORD_LISTS[language][0]).write_text("\n".join(words) + "\n", encoding="utf-8")
    return tmp_path


def test_words_filtering_rules(tiny_dicts):
    train = load_words("train", per_language=4, dict_dir=tiny_dicts)
    test = load_words("test", per_language=4, dict_dir=tiny_dicts)
    words = train.meta["words"] + test.meta["words"]
    labels = torch.cat([train.labels, test.labels]).tolist()
    assert train.labels.bincount().tolist() == [3] * 6 and test.labels.bincount().tolist() == [1] * 6
    assert all(w == w.lower() and "'" not in w and set(w) <= set(ALPHABET) for w in words)
    for shared in ("chat", "casa"):  # in two lists: no single language
        assert shared not in words
    for outside in ("x-ray", "2cv", "apple's"):
        assert outside not in words
    assert len(set(words)) == len(words) == 24
    assert all(len(w) <= 20 for w in words)
    language = dict(zip(words, labels, strict=True))
    assert language.get("straße", 2) == 2 and language.get("été", 1) == 1
    assert tuple(train.data.shape) == (18, len(ALPHABET), 20) and train.data.dtype == torch.uint8
    assert torch.equal(train.data, load_words("train", per_language=4, dict_dir=tiny_dicts).data)


def test_words_errors_name_the_problem(tiny_dicts):
    with pytest.raises(DataError, match="choose at most 5"):
        load_words("train", per_language=6, dict_dir=tiny_dicts)
    (tiny_dicts / "dutch").unlink()
    unique_words.cache_clear()  # the lists are read once per process
    with pytest.raises(DataError, match="apt-get install wdutch") as error:
        load_words("train", per_language=4, dict_dir=tiny_dicts)
    one_line(error)


def test_encode_word_one_hot_and_bad_characters():
    onehot = encode_word("Straße")
    assert onehot.sum() == 6 and onehot[:, 6:].sum() == 0
    assert [ALPHABET[i] for i in onehot[:, :6].argmax(0)] == list("straße")
    for bad, outside in [("don't", "'"), ("naïve!", "!"), ("x2", "2")]:
        with pytest.raises(DataError, match="outside the alphabet") as error:
            encode_word(bad)
        assert repr([outside]) in one_line(error)
    with pytest.raises(DataError, match="at most 20"):
        encode_word("a" * 21)


# --- the .wav reader -----------------------------------------------------------------------

def write_pcm(path, samples: np.ndarray, rate: int, width: int, channels: int = 1) -> None:
    """A PCM .wav through Python's own ``wave`` module (the independent writer)."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


def float_wav(samples: np.ndarray, rate: int, bits: int = 32, code: int = 3) -> bytes:
    """RIFF bytes of an IEEE-float (format 3) mono .wav, written by hand."""
    payload = samples.astype("<f4" if bits == 32 else "<f8").tobytes()
    fmt = struct.pack("<HHIIHH", code, 1, rate, rate * bits // 8, bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_wav_reader_pcm_float_stereo_and_resampling(tmp_path):
    pcm16 = np.array([0, 16384, -32768, 32767, -1], dtype="<i2")
    write_pcm(tmp_path / "a.wav", pcm16, 8000, 2)
    values, rate = load_wav(tmp_path / "a.wav")
    assert rate == 8000 and np.allclose(values, pcm16 / 32768.0)
    pcm8 = np.array([128, 255, 0, 192], dtype="u1")
    write_pcm(tmp_path / "b.wav", pcm8, 11025, 1)
    assert np.allclose(load_wav(tmp_path / "b.wav")[0], (pcm8 - 128.0) / 128.0)
    stereo = np.array([[1000, 3000], [-2000, 2000]], dtype="<i2")
    write_pcm(tmp_path / "c.wav", stereo, 8000, 2, channels=2)
    assert np.allclose(load_wav(tmp_path / "c.wav")[0], stereo.mean(1) / 32768.0)
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
    (tmp_path / "d.wav").write_bytes(float_wav(tone, 16000))
    assert np.array_equal(load_wav(tmp_path / "d.wav")[0], tone)
    resampled, rate = load_wav(tmp_path / "d.wav", rate=8000)
    spectrum = np.abs(np.fft.rfft(resampled))
    assert rate == 8000 and len(resampled) == 8000 and spectrum.argmax() == 440  # 1 Hz bins


@pytest.mark.parametrize("make,match", [
    (lambda: b"not a wav at all", "not a WAV file"),
    (lambda: float_wav(np.zeros(100, np.float32), 8000)[:-40], "truncated"),
    (lambda: float_wav(np.zeros(0, np.float32), 8000), "0-length signal"),
    (lambda: float_wav(np.zeros(10, np.float32), 8000, code=6), "unsupported WAV format"),
    (lambda: float_wav(np.array([0.0, np.nan], np.float32), 8000), "NaN"),
])
def test_wav_reader_bad_files_are_one_line_errors(tmp_path, make, match):
    path = tmp_path / "bad.wav"
    path.write_bytes(make())
    with pytest.raises(DataError, match=match) as error:
        load_wav(path)
    assert str(path) in one_line(error)


def test_wav_reader_refuses_24_bit_pcm(tmp_path):
    write_pcm(tmp_path / "e.wav", np.zeros(30, dtype="u1"), 8000, 3)
    with pytest.raises(DataError, match=r"24-bit integer PCM.*8/16-bit PCM") as error:
        load_wav(tmp_path / "e.wav")
    one_line(error)


# --- spoken digits (espeak-ng) -------------------------------------------------------------

TINY_VOICES = spoken.SpokenDigitsConfig(train_accents=("en-us",), test_accents=("en-029",),
                                        train_variants=("m1", "f2"), test_variants=("m6",),
                                        repeats=1)


@pytest.fixture
def fresh_spoken_cache():
    spoken.build.cache_clear()
    yield
    spoken.build.cache_clear()


def test_spoken_digits_split_by_voice_and_cached(tmp_path, fresh_spoken_cache, monkeypatch):
    train = spoken.load_spoken_digits("train", config=TINY_VOICES, cache_dir=tmp_path)
    test = spoken.load_spoken_digits("test", config=TINY_VOICES, cache_dir=tmp_path)
    assert tuple(train.data.shape) == (20, 64, 63) and train.data.dtype == torch.float32
    assert tuple(test.data.shape) == (10, 64, 63) and test.classes[7] == "seven"
    assert train.labels.bincount().tolist() == [2] * 10 and test.labels.bincount().tolist() == [1] * 10
    assert not set(train.meta["accents"]) & set(test.meta["accents"])
    assert not set(train.meta["variants"]) & set(test.meta["variants"])
    assert len(list(tmp_path.glob("spoken-digits-*.safetensors"))) == 1
    # a second process reads the cache: synthesising again would fail here
    spoken.build.cache_clear()
    monkeypatch.setattr(spoken, "synthesise", lambda *a: pytest.fail("cache not used"))
    again = spoken.load_spoken_digits("train", config=TINY_VOICES, cache_dir=tmp_path)
    assert torch.equal(again.data, train.data)


def test_spoken_digits_damaged_cache_is_detected_and_rebuilt(tmp_path, fresh_spoken_cache):
    first = spoken.load_spoken_digits("test", config=TINY_VOICES, cache_dir=tmp_path)
    path = next(tmp_path.glob("spoken-digits-*.safetensors"))
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF  # one flipped byte inside the tensors: still a valid safetensors file
    path.write_bytes(bytes(raw))
    spoken.build.cache_clear()
    with pytest.warns(UserWarning, match="fails its checksum"):
        rebuilt = spoken.load_spoken_digits("test", config=TINY_VOICES, cache_dir=tmp_path)
    assert torch.equal(rebuilt.data, first.data)  # espeak-ng is deterministic


def test_spoken_digits_bad_setups_are_one_line_errors(tmp_path, fresh_spoken_cache, monkeypatch):
    overlap = spoken.SpokenDigitsConfig(train_accents=("en-us",), test_accents=("en-us",),
                                        train_variants=("m1",), test_variants=("m6",))
    with pytest.raises(DataError, match="never be heard in training"):
        spoken.load_spoken_digits("test", config=overlap, cache_dir=tmp_path)
    unknown = spoken.SpokenDigitsConfig(train_variants=("m1", "nosuchvoice"))
    with pytest.raises(DataError, match="nosuchvoice"):
        spoken.load_spoken_digits("test", config=unknown, cache_dir=tmp_path)
    monkeypatch.setattr(spoken.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="apt-get install espeak-ng") as error:
        spoken.load_spoken_digits("test", config=TINY_VOICES, cache_dir=tmp_path / "other")
    one_line(error)


def test_wav_features_of_a_silent_file_is_an_error(tmp_path):
    write_pcm(tmp_path / "silence.wav", np.zeros(800, dtype="<i2"), 8000, 2)
    with pytest.raises(DataError, match="silent signal") as error:
        spoken.wav_features(tmp_path / "silence.wav")
    assert "silence.wav" in one_line(error)


# --- moving MNIST and voxel shapes ---------------------------------------------------------

def centroid(frame: torch.Tensor) -> torch.Tensor:
    """Intensity centroid (x, y) of one frame (H, W)."""
    ys, xs = torch.meshgrid(torch.arange(frame.shape[0]), torch.arange(frame.shape[1]),
                            indexing="ij")
    weight = frame.double()
    return torch.stack([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


def test_moving_mnist_clips_move_as_labelled():
    clips = load_moving_mnist("test", count=40)
    assert tuple(clips.data.shape) == (40, 1, 8, 48, 48) and clips.data.dtype == torch.uint8
    moves = list(DIRECTIONS.values())
    for clip, label in zip(clips.data, clips.labels, strict=True):
        step = centroid(clip[0, 1]) - centroid(clip[0, 0])  # whole digit inside: exact shift
        assert torch.allclose(step, 2 * torch.tensor(moves[label], dtype=torch.double))
        assert clip[0, 0].sum() == clip[0, -1].sum()  # never clipped at the border
    digits = load_moving_mnist("test", count=40, target="digit")
    assert torch.equal(digits.data, clips.data) and torch.equal(digits.labels, clips.meta["digits"])
    assert not torch.equal(load_moving_mnist("test", count=40, seed=1).data,
                           clips.data)


def test_moving_mnist_bad_geometry():
    with pytest.raises(DataError, match="use a larger size"):
        load_moving_mnist("test", count=2, size=32)


def test_voxel_shapes_balanced_deterministic_and_volumes_match_formulas():
    shapes = load_voxel_shapes("test", count=60, grid=16)
    assert tuple(shapes.data.shape) == (60, 1, 16, 16, 16)
    assert shapes.labels.bincount().tolist() == [10] * 6
    assert torch.equal(load_voxel_shapes("test", count=60, grid=16).data, shapes.data)
    centres, grid, scale = voxel_centres(48), 48, 0.8
    voxel = (2 / grid) ** 3  # each voxel's volume in [-1, 1]^3 units
    volumes = {"sphere": 4 / 3 * math.pi * scale**3, "cube": (2 * 0.577 * scale) ** 3,
               "octahedron": 4 / 3 * scale**3,
               "torus": 2 * math.pi**2 * 0.65 * 0.3**2 * scale**3}
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    for solid, volume in volumes.items():
        inside = rasterise(solid, centres, rotation, scale, np.zeros(3)).sum() * voxel
        assert inside == pytest.approx(volume, rel=0.03), solid


# --- models --------------------------------------------------------------------------------

@pytest.mark.parametrize("build,shape,classes", [
    (zoo.mnist1d_cnn, (3, 1, 40), 10), (zoo.mlp, (3, 1, 40), 10),
    (zoo.spectro1d, (3, 64, 63), 10), (zoo.char1d, (3, 50, 20), 6),
    (zoo.c3d_small, (3, 1, 8, 48, 48), 8), (zoo.late_fusion, (3, 1, 8, 48, 48), 8),
    (zoo.early_fusion, (3, 1, 8, 48, 48), 8),
])
def test_sequence_models_shapes_and_gradients(build, shape, classes):
    model = build()
    out = model(torch.randn(shape))
    assert tuple(out.shape) == (shape[0], classes)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mlp_is_greydanus_baseline_and_fusion_budgets():
    assert zoo.parameter_count(zoo.mlp()) == (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)
    c3d = zoo.parameter_count(zoo.c3d_small())
    for baseline in (zoo.late_fusion(), zoo.early_fusion()):
        assert abs(zoo.parameter_count(baseline) / c3d - 1) <= 0.10


def test_late_fusion_cannot_see_frame_order_but_c3d_can():
    torch.manual_seed(0)
    clip = torch.rand(2, 1, 8, 48, 48)
    reverse = clip.flip(2)  # the same frames played backwards: the opposite motion
    late, c3d = zoo.late_fusion().eval(), zoo.c3d_small().eval()
    with torch.no_grad():
        assert (late(clip) - late(reverse)).abs().max() < 1e-6
        assert (c3d(clip) - c3d(reverse)).abs().max() > 1e-4  # far above float rounding
