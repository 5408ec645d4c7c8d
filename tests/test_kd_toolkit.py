"""The toolkit in k dimensions (issue 23 phase 2): 1-D and 3-D models in the zoo and in spec
strings, training / evaluating / predicting on sequences and volumes through the CLI, summaries
against hand-computed shapes, parameters, multiply-adds and receptive fields per axis, and bad
input as one-line errors."""

from __future__ import annotations

import json
import math
import wave

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.analysis.explain_kd import explain_conv1d, explain_pool1d
from cnnlab.analysis.summary import summary
from cnnlab.cli.main import IMAGE_RUNS_ONLY, main
from cnnlab.config import TrainConfig
from cnnlab.data import spoken, words
from cnnlab.data.datasets import load_dataset
from cnnlab.data.sequences import SequenceSet, load_sequences, shuffle_positions
from cnnlab.errors import DataError, ModelError
from cnnlab.evaluate import evaluate_runs
from cnnlab.models import create, model_info
from cnnlab.models.spec import build_from_spec
from cnnlab.runs import open_run
from cnnlab.train.fit import fit
from cnnlab.train.run import check_input_fits
from cnnlab.viz.kd_maps import input_saliency

FAST = {"optimizer": "adamw", "lr": 0.01, "schedule": "onecycle", "batch_size": 50,
        "threads": 2, "progress": False, "val_fraction": 0.0}


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# --- models ------------------------------------------------------------------------------------

def test_zoo_knows_the_dimension_of_every_k_d_model(capsys):
    dims = {"mnist1d_cnn": 1, "mlp": 1, "spectro1d": 1, "char1d": 1, "c3d_small": 3,
            "late_fusion": 3, "early_fusion": 3, "lenet5": 2}
    assert {name: model_info(name).dims for name in dims} == dims
    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " 1x40 " in lines["mnist1d_cnn"] and " 1-D " in lines["mnist1d_cnn"]
    assert " 1x8x48x48 " in lines["c3d_small"] and " 3-D " in lines["c3d_small"]
    assert " 2-D " in lines["lenet5"]


def test_spec_tokens_build_1d_and_3d_layers():
    net = create("c5x6-relu-p2-bn-c4x4s2-gap", input_size=(2, 40), num_classes=3)
    kinds = [type(m) for m in net.features]
    assert kinds == [nn.Conv1d, nn.ReLU, nn.MaxPool1d, nn.BatchNorm1d, nn.Conv1d,
                     nn.AdaptiveAvgPool1d]
    assert net(torch.zeros(2, 2, 40)).shape == (2, 3)
    net3 = create("c3x2-p2-f4", input_size=(1, 6, 8, 8), num_classes=4)
    assert [type(m) for m in net3.features] == [nn.Conv3d, nn.MaxPool3d]
    assert net3.features[0].weight.shape == (2, 1, 3, 3, 3)
    assert net3(torch.zeros(2, 1, 6, 8, 8)).shape == (2, 4)


def test_k_d_specs_refuse_what_does_not_fit_in_one_line():
    with pytest.raises(ModelError, match="layer 2 'p2'.*does not fit the 1-pixel length"):
        build_from_spec("c5x8-p2-p2", num_classes=2, input_size=(1, 5))
    with pytest.raises(ModelError, match="locally connected layers are 2-D only"):
        build_from_spec("lc3x4", num_classes=2, input_size=(1, 20))
    with pytest.raises(ModelError, match="cannot take inputs of 1x2"):
        check_input_fits(create("mnist1d_cnn"), (1, 2))  # pooled to length 0


# --- summary against hand computation ------------------------------------------------------------

def test_conv1d_summary_matches_hand_computation():
    # (2, 40) -> c5x6: 6x36, (5*2 + 1) * 6 = 66 params, 36 * 6 * 5 * 2 = 2160 MACs, RF 5 jump 1
    # -> p2: 6x18, RF 5 + 1 * 1 = 6, jump 2 -> c4x4s2: (18 - 4) / 2 + 1 = 8 positions,
    # (4 * 6 + 1) * 4 = 100 params, 8 * 4 * 4 * 6 = 768 MACs, RF 6 + 3 * 2 = 12, jump 4
    model = build_from_spec("c5x6-p2-c4x4s2-f3", num_classes=3, input_size=(2, 40))
    s = summary(model, (2, 40))
    rows = {r.name: r for r in s.rows}
    conv1, pool, conv2 = rows["features.0"], rows["features.1"], rows["features.2"]
    assert (conv1.output_shape, conv1.params, conv1.macs) == ((6, 36), 66, 2160)
    assert pool.output_shape == (6, 18)
    assert (conv2.output_shape, conv2.params, conv2.macs) == ((4, 8), 100, 768)
    assert [(r.field.size, r.field.jump) for r in (conv1, pool, conv2)] == \
        [((5,), (1,)), ((6,), (2,)), ((12,), (4,))]
    assert s.total_params == 66 + 100 + (32 * 3 + 3)
    text = s.render()
    assert "on a 2x40 input (C x L, batch 1)" in text and "receptive field unknown" not in text
    assert s.warnings == []
    # c3 leaves 38, p2 19: (19 - 4)/2 + 1 = 8.5, the last position is never seen
    lenient = build_from_spec("c3x6-p2-c4x4s2", num_classes=3, input_size=(2, 40), strict=False)
    assert summary(lenient, (2, 40)).warnings == [
        "features.2 (Conv1d): does not fit, (19 - 4 + 2*0)/2 + 1 = 8.5 is not whole; the last 1 "
        "position(s) of its input are never seen"]


def test_conv3d_summary_matches_hand_computation():
    # (1, 6, 8, 8) -> c3x2: 2x4x6x6, (27 + 1) * 2 = 56 params, 4*6*6 * 2 * 27 = 7776 MACs,
    # RF 3 per axis -> p2: 2x2x3x3, RF 4 jump 2
    model = build_from_spec("c3x2-p2-f5", num_classes=5, input_size=(1, 6, 8, 8))
    s = summary(model, (1, 6, 8, 8))
    conv, pool = s.rows[0], s.rows[1]
    assert (conv.output_shape, conv.params, conv.macs) == ((2, 4, 6, 6), 56, 7776)
    assert (conv.field.size, pool.field.size, pool.field.jump) == ((3, 3, 3), (4, 4, 4),
                                                                   (2, 2, 2))
    assert pool.output_shape == (2, 2, 3, 3)


# --- data ----------------------------------------------------------------------------------------

def test_k_d_sets_are_in_the_data_table_with_the_shuffled_control():
    test = load_sequences("mnist1d", "test")
    shuffled = load_dataset("mnist1d:shuffle=3", "test")
    assert torch.equal(shuffled.data, shuffle_positions(test, 3).data)
    assert shuffled.image_shape == (1, 40) and shuffled.paths is None
    with pytest.raises(DataError, match="unknown option 'bogus=1'; it takes shuffle=none"):
        load_dataset("mnist1d:bogus=1", "test")


# --- training, evaluation, prediction --------------------------------------------------------------

def test_training_on_mnist1d_beats_chance_resumes_and_evaluates(tmp_path, capsys):
    config = TrainConfig(model="c5x16p2-relu-p2-c5x32p2-relu-gap", data="mnist1d", epochs=4,
                         train_per_class=200, out=str(tmp_path), name="m1d", **FAST)
    first = fit(config, stop_after_epochs=2, log=lambda *a: None)
    assert first.status == "stopped" and first.epochs_done == 2
    result = fit(None, resume=first.run_dir, log=lambda *a: None)
    assert result.status == "completed" and result.test_acc > 0.3  # chance is 0.1
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    report = evaluate_runs([result.run_dir])
    assert report.count == 1000 and report.main.top1 == pytest.approx(result.test_acc)
    meta = open_run(result.run_dir).meta["model"]
    assert meta["dims"] == 1 and meta["input_size"] == [1, 40]
    assert main(["evaluate", str(result.run_dir)]) == 0
    assert "mnist1d test: 1000" in capsys.readouterr().out
    assert main(["predict", str(result.run_dir), "--text", "hello"]) == 2
    assert "score this run with cnnlab evaluate" in error_line(capsys)
    for kind in ("filters", "maps", "saliency"):  # 1-D: curves and heat maps
        assert main(["visualize", kind, str(result.run_dir), "--out", str(tmp_path / "viz")]) == 0
    assert {p.name for p in (tmp_path / "viz").glob("*.png")} == {
        "filters-features-0.png", "maps-features-0-0.png", "saliency-0.png"}


def test_1d_saliency_of_a_linear_model_is_its_weights():
    # score_k = sum W[k, c*L + l] x[c, l] + b: d score / d x[c, l] = W[k, c*L + l]
    model = build_from_spec("f3", num_classes=3, input_size=(2, 5))
    saliency, target = input_saliency(model, torch.randn(1, 2, 5), 1)
    weight = model.classifier[1].weight.detach()
    assert target == 1 and torch.allclose(saliency, weight[1].reshape(2, 5).abs().sum(0))


def test_a_2d_model_on_1d_data_is_one_line(tmp_path, capsys):
    assert main(["train", "--data", "mnist1d", "--model", "lenet5", "--out", str(tmp_path)]) == 2
    err = error_line(capsys)
    assert "--model lenet5 takes 2-D input (1x32x32) but --data mnist1d is 1-D (1x40)" in err
    assert "mnist1d_cnn" in err
    assert main(["train", "--data", "digits", "--model", "c3d_small", "--out",
                 str(tmp_path)]) == 2
    assert "takes 3-D input (1x8x48x48) but --data digits is 2-D" in error_line(capsys)
    assert main(["train", "--data", "mnist1d", "--model", "mlp", "--augment", "flip", "--out",
                 str(tmp_path)]) == 2
    assert "--augment flip: 2-D images only; mnist1d is 1-D data" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_training_a_3d_net_on_voxels(tmp_path, capsys):
    assert main(["train", "--data", "voxel-shapes:count=24,test_count=12,grid=8", "--model",
                 "c3x4p1-relu-p2-gap", "--epochs", "1", "--out", str(tmp_path), "--name", "vox",
                 "--threads", "2", "--no-progress", "--val-fraction", "0"]) == 0
    run = tmp_path / "vox"
    assert open_run(run).input_size == (1, 8, 8, 8)
    capsys.readouterr()
    assert main(["summary", str(run)]) == 0
    out = capsys.readouterr().out
    assert "(C x D x H x W, batch 1)" in out and "Conv3d" in out
    assert main(["visualize", "filters", str(run), "--out", str(tmp_path / "viz")]) == 0
    assert (tmp_path / "viz" / "filters-features-0.png").stat().st_size > 1000  # 3x3x3 slices
    assert main(["visualize", "maps", str(run), "--out", str(tmp_path / "viz")]) == 2
    assert "visualize maps: 2-D image runs only; this run is 3-D" in error_line(capsys)
    assert main(["report", str(run)]) == 2
    assert "report: 2-D image runs only" in error_line(capsys)
    assert main(["compare", str(run), "--out", str(tmp_path / "cmp")]) == 0
    assert "vox" in capsys.readouterr().out


def write_wav(path, seconds: float = 0.6, rate: int = 8000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * math.pi * 440 * t) * np.hanning(len(t)) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone.tobytes())


def fake_set(data: torch.Tensor, classes: list[str], name: str):
    labels = torch.arange(len(data)) % len(classes)
    return lambda split, **_: SequenceSet(data.clone(), labels, list(classes), name)


def test_predict_on_a_wav_matches_the_model_on_its_spectrogram(tmp_path, monkeypatch, capsys):
    data = torch.randn(40, 64, 63, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(spoken, "load_spoken_digits", fake_set(data, spoken.WORDS,
                                                               "spoken-digits"))
    run = fit(TrainConfig(model="c3x8-relu-gap", data="spoken-digits", epochs=1,
                          out=str(tmp_path), **FAST), log=lambda *a: None).run_dir
    wav = tmp_path / "tone.wav"
    write_wav(wav)
    assert main(["predict", str(run), str(wav), "--top-k", "10", "--json"]) == 0
    got = dict(json.loads(capsys.readouterr().out)[0]["top"])
    # independently: the spectrogram standardised with the training set's per-bin statistics
    mean, std = data.mean(dim=(0, 2))[:, None], data.std(dim=(0, 2))[:, None]
    x = (spoken.wav_features(wav) - mean) / std
    with torch.no_grad():
        probs = open_run(run).model(x[None]).softmax(1)[0]
    assert got == pytest.approx({w: float(p) for w, p in zip(spoken.WORDS, probs, strict=True)},
                                abs=2e-4)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert main(["predict", str(run), str(tmp_path / "bad.wav")]) == 2
    assert "corrupt WAV" in error_line(capsys)
    assert main(["predict", str(run), "--text", "seven"]) == 2
    assert "a spoken-digits run reads files: give .wav files" in error_line(capsys)


def test_predict_text_on_a_words_run(tmp_path, monkeypatch, capsys):
    vocabulary = ["chat", "house", "haus", "casa", "maison", "huis"] * 6
    onehot = words.one_hot(vocabulary)
    monkeypatch.setattr(words, "load_words", fake_set(onehot, list(words.WORD_LISTS), "words"))
    run = fit(TrainConfig(model="c3x8-relu-gap", data="words", epochs=1, out=str(tmp_path),
                          **FAST), log=lambda *a: None).run_dir
    assert main(["predict", str(run), "--text", "Maison", "--top-k", "6", "--json"]) == 0
    got = dict(json.loads(capsys.readouterr().out)[0]["top"])
    with torch.no_grad():  # one-hot letters go in as 0/1
        probs = open_run(run).model(words.encode_word("maison").float()[None]).softmax(1)[0]
    assert got == pytest.approx(dict(zip(words.WORD_LISTS, probs.tolist(), strict=True)),
                                abs=2e-4)
    assert main(["predict", str(run), "--text", "chat1"]) == 2
    assert "characters outside the alphabet ['1']" in error_line(capsys)
    assert main(["predict", str(run)]) == 2
    assert "give .wav files (spoken-digits) or --text WORD (words)" in error_line(capsys)


# --- explain on 1-D sequences ---------------------------------------------------------------------

def test_1d_explain_matches_numpy(capsys):
    rng = np.random.default_rng(0)
    x, w = rng.integers(-3, 4, size=11).astype(float), rng.integers(-2, 3, size=(2, 3))
    e = explain_conv1d(x, w.astype(float), bias=np.array([1.0, -1.0]), stride=2, padding=1)
    padded = np.pad(x, 1)
    expected = np.stack([np.correlate(padded, k, mode="valid")[::2] for k in w]) + [[1], [-1]]
    assert np.array_equal(e.grids["output"], expected) and len(e.steps) == expected.size
    pooled = explain_pool1d(x, 3, 2, "avg").grids["output"]
    assert np.allclose(pooled, [x[i:i + 3].mean() for i in range(0, 9, 2)])
    assert main(["explain", "conv", "--input", "[1,3,1,0,-1]", "--kernel", "[1,0,-1]"]) == 0
    assert "y[0] = 1*1 + 1*(-1) = 0" in capsys.readouterr().out
    assert main(["explain", "conv", "--input", "[1,3]", "--kernel", "[1,0,-1]"]) == 2
    assert "larger than the 1x2 input" in error_line(capsys)


EXTRA_ARGS = {"embed": ["--layer", "features"], "finetune": ["--data", "digits"],
              "ablate": ["--remove", "features.0"]}


@pytest.mark.parametrize("command", IMAGE_RUNS_ONLY)
def test_image_only_commands_refuse_a_1d_run_in_one_line(command, tmp_path, capsys):
    (tmp_path / "best.json").write_text(json.dumps({"model": {"dims": 1, "name": "mlp"}}))
    assert main([command, str(tmp_path), *EXTRA_ARGS.get(command, [])]) == 2
    assert f"{command}: 2-D image runs only; {tmp_path} is a 1-D run" in error_line(capsys)
