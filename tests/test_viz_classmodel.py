"""Class-model images that look like their class (Simonyan et al. 2014 with the priors of
Yosinski et al. 2015): each image made from one network is read as its class by a second,
independently trained network (another seed, another augmentation), with p >= 0.5.
"""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import TrainConfig
from cnnlab.runs import open_run
from cnnlab.train.fit import fit
from cnnlab.viz.classmodel import Priors, gaussian_blur, regularized_class_model
from cnnlab.viz.visualize import pixel_range, visualize


def train(out, name: str, seed: int, augment: str = "") -> str:
    config = TrainConfig(model="lenet5", data="digits", epochs=3, out=str(out), name=name,
                         progress=False, device="cpu", seed=seed, augment=augment)
    return fit(config, log=lambda *_: None).run_dir


@pytest.mark.slow
def test_class_models_are_recognised_by_an_independent_network(tmp_path):
    maker = open_run(train(tmp_path, "maker", seed=0))
    judge = open_run(train(tmp_path, "judge", seed=1, augment="crop:2"))
    result = regularized_class_model(maker.model, list(range(10)), maker.input_size, steps=200,
                                     lr=0.1, **pixel_range(maker))
    # the judge sees the pixels, normalised by its own statistics
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (maker.preprocess.mean,
                                                              maker.preprocess.std))
    pixels = result.images * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5  # valid images
    with torch.no_grad():
        probs = judge.model(judge.preprocess.normalize(pixels)).softmax(1)
    assert (probs.diag() >= 0.5).all(), probs.diag()
    assert (result.scores[-1] > result.scores[0]).all()  # the ascent raised every score
    paths = visualize("class-model", maker.run_dir, out=tmp_path / "viz")
    assert paths.figures[0].width >= 5 * 128  # five per row, at least 128 px each


def test_priors_blur_and_decay_act_as_stated():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    blurred = gaussian_blur(x, 0.5)
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-5)  # a normalised kernel
    assert 0 < float(blurred[0, 0, 4, 4]) < 1 and float(blurred[0, 0, 4, 5]) > 0
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(81, 2, bias=False))
    torch.nn.init.ones_(model[1].weight)  # dS/dI = 1 everywhere: each step adds lr
    low, high = torch.tensor([-1.0]), torch.tensor([0.07])
    out = regularized_class_model(model, [0], (1, 9, 9), steps=2, lr=0.1, low=low, high=high,
                                  priors=Priors(jitter=0, decay=0.5, blur_every=0))
    # x1 = (0 + 0.1) * 0.5 = 0.05; x2 = (0.05 + 0.1) * 0.5 = 0.075, clipped to 0.07
    assert torch.allclose(out.images, torch.full((1, 1, 9, 9), 0.07))
    assert out.scores[:, 0].tolist() == pytest.approx([0.0, 81 * 0.05, 81 * 0.07])
