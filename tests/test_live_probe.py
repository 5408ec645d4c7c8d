"""Poke the network: the page's probabilities equal ``cnnlab predict``'s for the same image
(light or dark digits, colour, large), directly and through the server; the payload shows what
the model saw; bad uploads are DataErrors naming the upload; the model is left as it was.
The network is the stored real run tests/fixtures/v0-run (a small conv net trained on digits)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cnnlab.errors import DataError, ModelError
from cnnlab.live.probe import LiveProbe, model_probe, run_probe, upload_input
from cnnlab.live.server import TOKEN_HEADER, LiveServer
from cnnlab.predict import predict_images, prepare_image
from cnnlab.runs import open_run

RUN = Path(__file__).parent / "fixtures" / "v0-run"


def digit_png(*, ink: int, paper: int, size: tuple[int, int] = (120, 160),
              mode: str = "L") -> bytes:
    """A hand-drawn-looking 7 as PNG bytes."""
    image = Image.new(mode, size, paper if mode == "L" else (paper,) * 3)
    draw = ImageDraw.Draw(image)
    w, h = size
    colour = ink if mode == "L" else (ink, ink // 2, 0)
    draw.line([(0.25 * w, 0.2 * h), (0.75 * w, 0.2 * h), (0.4 * w, 0.85 * h)], fill=colour,
              width=max(3, w // 10))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


IMAGES = {"light-on-dark": digit_png(ink=255, paper=0),
          "dark-on-light": digit_png(ink=0, paper=255),  # inverted, as predict does
          "colour": digit_png(ink=250, paper=10, mode="RGB"),
          "large": digit_png(ink=255, paper=0, size=(900, 700))}


@pytest.fixture(scope="module")
def probe():
    return run_probe(RUN)


def pixels(uri: str) -> np.ndarray:
    data = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", uri).group(1)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"))


@pytest.mark.parametrize("name", list(IMAGES))
def test_probabilities_equal_cnnlab_predict(probe, name, tmp_path):
    path = tmp_path / f"{name}.png"
    path.write_bytes(IMAGES[name])
    result = probe(IMAGES[name])
    (predicted,) = predict_images(RUN, [str(path)])
    assert [(c, round(p, 4)) for c, p in result["top"]] == predicted["top"]
    run = open_run(RUN)
    with torch.no_grad():
        expected = run.model(prepare_image(path, run.preprocess)).float().softmax(1)[0]
    assert result["probabilities"] == expected.tolist()  # the same numbers, not just close


def test_the_page_gets_the_same_numbers_through_the_server(probe):
    with LiveServer(probe=probe) as server:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", "/api/probe", IMAGES["dark-on-light"],
                     {TOKEN_HEADER: server.token, "Content-Type": "image/png"})
        answer = conn.getresponse()
        result = json.loads(answer.read())
        conn.close()
    assert answer.status == 200
    assert result["probabilities"] == probe(IMAGES["dark-on-light"])["probabilities"]


def test_the_payload_shows_what_the_model_saw(probe):
    result = probe(IMAGES["dark-on-light"])
    run = open_run(RUN)
    x = upload_input(IMAGES["dark-on-light"], run.preprocess)  # (1, 1, 8, 8)
    seen = pixels(result["input"])
    expected = (x[0, 0] * run.preprocess.std[0] + run.preprocess.mean[0]).clamp(0, 1)
    assert seen.shape == (8, 8)
    assert np.abs(seen - np.round(expected.numpy() * 255)).max() <= 1
    assert pixels(result["saliency"]).shape == (8, 8)
    assert [layer["name"] for layer in result["layers"]] == [
        "features.0", "features.1", "features.2", "classifier.0", "classifier.1"]
    assert result["layers"][0]["output"] == [4, 8, 8] and result["classes"] == run.classes
    assert result["top"][0][0] == run.classes[int(np.argmax(result["probabilities"]))]


def test_a_probe_leaves_the_model_as_it_was():
    run = open_run(RUN)
    model = run.model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model_probe(model, run.preprocess, run.classes)(IMAGES["light-on-dark"])
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_bad_uploads_are_data_errors_naming_the_upload(probe, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(DataError, match="the uploaded image: cannot decode") as caught:
        probe(b"GIF89a but not really")
    assert str(tmp_path) not in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # the temporary copy is gone


def test_only_classifiers_can_be_poked(scene_runs):
    with pytest.raises(ModelError, match="needs a classifier"):
        run_probe(scene_runs["multilabel"])


def test_the_live_probe_sees_the_weights_of_its_last_update_only():
    run = open_run(RUN)
    model = run.model.train()
    probe = LiveProbe(model, run.preprocess, run.classes)
    before = probe(IMAGES["light-on-dark"])["probabilities"]
    with torch.no_grad():
        model.classifier[1].bias.add_(torch.arange(10.0))  # training moves the weights
    assert probe(IMAGES["light-on-dark"])["probabilities"] == before  # not updated yet
    probe.update(model)
    after = probe(IMAGES["light-on-dark"])["probabilities"]
    expected = model_probe(open_run(RUN).model, run.preprocess, run.classes)
    assert after != before
    assert model.training and all(p.grad is None for p in model.parameters())
    model.eval()
    assert after == model_probe(model, run.preprocess, run.classes)(IMAGES["light-on-dark"])[
        "probabilities"]
    assert before == expected(IMAGES["light-on-dark"])["probabilities"]
