"""Visualisations check what they compute against independent references: brute-force top-k,
autograd gradients, a hand-computed Grad-CAM, the layout of every grid, a real tiny run's metrics.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cnnlab.analysis.features import capture
from cnnlab.analysis.receptive import receptive_field
from cnnlab.cli.main import main
from cnnlab.config import TrainConfig
from cnnlab.errors import CheckpointError, ModelError
from cnnlab.runs import open_run
from cnnlab.train.fit import fit
from cnnlab.viz.classmodel import class_model
from cnnlab.viz.curves import confusion_figure, curves_figure, read_metrics
from cnnlab.viz.errors import caption_width, error_caption, errors_grid, split_scores
from cnnlab.viz.evolution import feature_evolution, snapshot_files
from cnnlab.viz.filters import filter_grid
from cnnlab.viz.grids import make_grid, normalize_tiles
from cnnlab.viz.inputs import to_display
from cnnlab.viz.maps import feature_maps, maps_grid, resolve_layer
from cnnlab.viz.patches import crop_patch, merge_top, top_activations, top_patches
from cnnlab.viz.report import spread_order
from cnnlab.viz.saliency import grad_cam, heat_overlay, saliency
from cnnlab.viz.visualize import saliency_tiles


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A LeNet-5 trained 2 epochs on the 8x8 digits, with snapshots of both epochs."""
    out = tmp_path_factory.mktemp("runs")
    config = TrainConfig(model="lenet5", data="digits", epochs=2, out=str(out), name="viz",
                         progress=False, device="cpu", snapshot_epochs=[1, 2])
    return fit(config, log=lambda *_: None).run_dir


@pytest.fixture(scope="module")
def run(run_dir):
    return open_run(run_dir)


@pytest.fixture(scope="module")
def source(run):
    return run.source("test", batch_size=37)  # batches that do not divide 360


def tile_pixels(grid, index: int) -> np.ndarray:
    return np.asarray(grid.image.crop(grid.layout.box(index)), dtype=np.float64)


def test_grid_places_each_tile_at_its_box():
    tiles = torch.rand(7, 3, 4, 5)
    grid = make_grid(tiles, columns=3, scale=2, pad=1, normalize="none")
    assert grid.layout.rows == 3 and grid.image.size == (1 + 3 * 11, 1 + 3 * 9)
    for i in range(7):
        expected = tiles[i].repeat_interleave(2, 1).repeat_interleave(2, 2)  # (3, 8, 10)
        expected = (expected * 255).round().permute(1, 2, 0).numpy()
        assert np.array_equal(tile_pixels(grid, i), expected)
    assert np.all(tile_pixels(grid, 7) == 255)  # the empty ninth cell is background


def diverging_reference(w: torch.Tensor, m: float) -> np.ndarray:
    """Blue-white-red by hand: v = w / m; red = 1 - max(-v, 0), green = 1 - |v|, blue =
    1 - max(v, 0), in 0..255."""
    v = (w / m).clamp(-1, 1)
    rgb = torch.stack([1 - (-v).clamp(min=0), 1 - v.abs(), 1 - v.clamp(min=0)], -1)
    return (rgb * 255).round().numpy()


def test_filter_grid_has_one_numbered_tile_per_filter_on_one_signed_scale(run):
    """C1's kernels share one symmetric scale (white = 0, red = +max|w|, blue = -max|w|), so
    a weak filter looks weak; the colour bar names that scale."""
    weight = run.model.features[0].weight.detach()  # C1: (6, 1, 5, 5)
    grid = filter_grid(run.model, scale=4)
    assert grid.layout.count == 6 and grid.image.size == grid.layout.size
    assert (grid.layout.tile_w, grid.layout.tile_h) == (20, 20)
    m = float(weight.abs().max())
    for i in range(6):
        got = tile_pixels(grid, i)[::4, ::4]  # one pixel per kernel weight
        assert np.abs(got - diverging_reference(weight[i, 0], m)).max() <= 1
    assert grid.legend is not None and grid.framed().height > grid.image.height
    assert grid.layout.caption_h > 0  # the tiles are numbered
    deep = filter_grid(run.model, "conv2", scale=2)  # C3 per input channel: 16 rows of 6
    assert deep.layout.count == 16 * 6 and deep.layout.columns == 6
    assert "one row per filter" in deep.note


def test_deep_filters_share_one_signed_scale(run):
    """All of C3's slices are drawn on the layer's one scale max|w|: the largest weight is
    full red or full blue, every other in proportion (a per-tile min-max would fail this)."""
    weight = run.model.features[3].weight.detach()  # (16, 6, 5, 5)
    grid = filter_grid(run.model, "conv2", scale=1)
    m = float(weight.abs().max())
    for f in (0, 7, 15):
        got = np.stack([tile_pixels(grid, f * 6 + c) for c in range(6)])
        assert np.abs(got - diverging_reference(weight[f], m)).max() <= 1


def test_per_channel_filter_grids_are_capped_with_a_note():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 10, 3), nn.Conv2d(10, 200, 1))
    capped = filter_grid(model, "conv2", max_channels=3)
    assert capped.layout.columns == 3 and capped.layout.count == 10 * 3
    assert capped.note == "showing 10 of 10 filters x 3 of 4 input channels"
    budget = filter_grid(model, "conv3", scale=4, max_pixels=10 * 6 * 6 * 10)
    assert budget.layout.count == 10 * 10 and "showing 10 of 200 filters" in budget.note
    assert budget.image.size[0] * budget.image.size[1] <= 2 * 10 * 6 * 6 * 10


def test_feature_maps_are_the_conv_output_even_before_an_inplace_relu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 2))
    x = torch.randn(2, 1, 8, 8)
    maps = feature_maps(model, x, ["conv1"])["conv1"]
    expected = F.conv2d(x, model[0].weight, model[0].bias)
    assert (expected < 0).any() and torch.allclose(maps, expected)
    assert torch.allclose(model(x), model[3](F.relu(expected).flatten(1)))  # output unchanged


def test_layer_names_resolve_and_unknown_names_suggest_choices(run):
    assert resolve_layer(run.model, "conv2") == "features.3"
    assert resolve_layer(run.model, None, default="last") == "features.3"
    with pytest.raises(ModelError, match="did you mean 'conv2'"):
        resolve_layer(run.model, "conv22")


def test_top_activations_match_brute_force(run, source):
    model, layer = run.model, "features.3"
    top = top_activations(model, source, "conv2", units=[0, 5, 15], k=9)
    with capture(model, [layer]) as store, torch.no_grad():
        model(source.preprocess.normalize(source.images.float() / 255))
        maps = store[layer][:, [0, 5, 15]]  # (360, 3, 10, 10)
    per_image = maps.flatten(2).amax(2)  # (360, 3)
    best = per_image.topk(9, dim=0)  # over images
    assert torch.allclose(top.values, best.values.T)
    assert torch.equal(top.images, best.indices.T)
    for u in range(3):  # the stored position holds that maximum
        for i, (r, c) in zip(top.images[u], top.positions[u].tolist(), strict=True):
            assert maps[i, u, r, c] == per_image[i, u]


def test_merge_top_keeps_the_k_largest_over_a_stream():
    gen = torch.Generator().manual_seed(1)
    values = torch.randn(4, 50, generator=gen)
    best = None
    for start in range(0, 50, 7):
        chunk = values[:, start:start + 7]
        index = torch.arange(start, start + chunk.shape[1]).expand(4, -1)
        best = merge_top(best, chunk, index, torch.zeros(4, chunk.shape[1], 2, dtype=torch.long),
                         5)
    assert torch.equal(best[1], values.topk(5, dim=1).indices)


def test_top_patch_is_the_whole_receptive_field(run, source):
    """Replacing everything outside the cropped patch by the mean keeps the unit's value."""
    model = run.model
    top = top_activations(model, source, "conv2", units=[3], k=2)
    field = receptive_field(model, run.input_size, "features.3")
    patches = top_patches(top, source, field)  # (1, 2, 1, 14, 14)
    assert patches.shape == (1, 2, 1, 14, 14)
    for j in range(2):
        r, c = top.positions[0, j].tolist()
        t, left, b, right = field.box(r, c)
        image = source.images[top.images[0, j]].float() / 255  # (1, 32, 32)
        assert torch.equal(patches[0, j], source.images[top.images[0, j]][:, t:b, left:right])
        masked = torch.full_like(image, source.preprocess.mean[0])
        masked[:, t:b, left:right] = image[:, t:b, left:right]
        value = feature_maps(model, source.preprocess.normalize(masked[None]), ["conv2"])
        assert value["conv2"][0, 3, r, c] == pytest.approx(float(top.values[0, j]), abs=1e-5)


def test_crop_patch_fills_outside_the_image():
    image = torch.arange(16, dtype=torch.uint8).view(1, 4, 4)
    field = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)), (1, 4, 4), "0")
    patch = crop_patch(image, 0, 0, field, torch.tensor([99], dtype=torch.uint8))
    assert patch[0, 0].tolist() == [99, 99, 99] and patch[0, 1].tolist() == [99, 0, 1]


def test_saliency_equals_the_autograd_gradient_of_the_class_score(run, source):
    x = source.preprocess.normalize(source.images[:2].float() / 255)
    for i, target in enumerate((3, 7)):
        jac = torch.autograd.functional.jacobian(lambda v, t=target: run.model(v)[0, t],
                                                 x[i:i + 1])  # (1, 1, 32, 32)
        assert torch.allclose(saliency(run.model, x[i:i + 1], target)[0],
                              jac.abs().amax(1)[0], atol=1e-6)
    both = saliency(run.model, x, torch.tensor([3, 7]))  # per-sample targets in one batch
    assert torch.allclose(both[1], saliency(run.model, x[1:2], 7)[0], atol=1e-6)


def test_saliency_panel_rows_belong_to_their_own_images(run, source):
    """Row i of the panel: image i, image i's own saliency (computed alone), its Grad-CAM."""
    x = source.preprocess.normalize(source.images[:4].float() / 255)
    tiles = saliency_tiles(run, x, None, None)  # (12, 3, 32, 32)
    for i in range(4):
        alone = x[i:i + 1]
        assert torch.allclose(tiles[3 * i], to_display(alone, run.preprocess)[0].expand(3, -1, -1))
        assert torch.allclose(tiles[3 * i + 1, 0],
                              normalize_tiles(saliency(run.model, alone)[:, None])[0, 0],
                              atol=1e-5)
        cam = grad_cam(run.model, alone)[0]
        image = to_display(alone, run.preprocess)[0]
        assert torch.allclose(tiles[3 * i + 2], heat_overlay(image, cam), atol=1e-5)
    assert not torch.allclose(tiles[1], tiles[4])


def test_grad_cam_on_a_vector_layer_names_the_layer_and_the_convolutions(run, source):
    x = source.preprocess.normalize(source.images[:1].float() / 255)
    with pytest.raises(ModelError, match=r"classifier\.1 outputs \(1, 120\).*conv1 "
                                         r"\(features\.0\), conv2 \(features\.3\)"):
        grad_cam(run.model, x, layer="classifier.1")


def test_grad_cam_equals_a_hand_computation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    x = torch.randn(2, 1, 6, 6)
    cam = grad_cam(net, x, 1, upsample=False)  # default layer: the only (last) conv
    maps = F.conv2d(x, net[0].weight, net[0].bias)  # A: (2, 2, 4, 4)
    alpha = net[2].weight[1].view(2, 4, 4).mean((1, 2))  # dS_1/dA is the linear weight
    expected = F.relu((alpha.view(1, 2, 1, 1) * maps).sum(1))
    assert torch.allclose(cam, expected, atol=1e-6)
    full = grad_cam(net, x, 1)
    assert full.shape == (2, 6, 6) and (full >= 0).all()


def test_grad_cam_on_a_trained_lenet_is_input_sized_and_non_negative(run, source):
    x = source.preprocess.normalize(source.images[:4].float() / 255)
    cam = grad_cam(run.model, x)
    assert cam.shape == (4, 32, 32) and (cam >= 0).all() and cam.sum() > 0


def test_class_model_ascent_raises_the_class_score(run):
    result = class_model(run.model, [4, 7], run.input_size, steps=40)
    assert (result.scores[-1] > result.scores[0] + 1.0).all()
    assert (result.objectives[-1] > result.objectives[0]).all()
    assert run.model(result.images).argmax(1).tolist() == [4, 7]
    alone = class_model(run.model, 7, run.input_size, steps=40)  # the batch does not interact
    assert torch.allclose(alone.images[0], result.images[1], atol=1e-5)


def test_class_model_objective_holds_the_l2_penalty(run):
    """Along the ascent, objective = S_c(I) - lambda ||I||^2 of that step's image (runs cut
    short after 0, 5 and 20 steps are the long run's intermediate images), and the penalty
    keeps the image smaller than the unregularised ascent does."""
    l2 = 1e-3
    full = class_model(run.model, [4, 7], run.input_size, steps=20, l2=l2)
    for steps in (0, 5, 20):
        part = class_model(run.model, [4, 7], run.input_size, steps=steps, l2=l2)
        with torch.no_grad():
            score = run.model(part.images)[torch.arange(2), torch.tensor([4, 7])]
        norm2 = part.images.pow(2).flatten(1).sum(1)
        assert torch.allclose(part.objectives[-1], score - l2 * norm2, atol=1e-4)
        assert torch.allclose(full.objectives[steps], part.objectives[-1], atol=1e-4)
        if steps:
            assert (norm2 > 1).all()  # the penalty term is not negligible in this check
    free = class_model(run.model, [4, 7], run.input_size, steps=20, l2=0.0)
    assert torch.equal(free.objectives, free.scores)
    assert (full.images.flatten(1).norm(dim=1) < free.images.flatten(1).norm(dim=1)).all()


def test_errors_grid_shows_every_error_with_its_caption(run):
    scores, images = split_scores(run, "test")
    with torch.no_grad():
        x = run.preprocess.normalize(images.float() / 255)
        pred = run.model(x).argmax(1)
    labels = torch.tensor([run.classes.index(c) for c in _true_labels(run)])
    assert len(scores.errors) == int((pred != labels).sum()) > 0
    grid = errors_grid(scores.errors, images, max_errors=1000)
    cells = [tile_pixels(grid, i).std() > 0 for i in range(grid.layout.rows * 10)]
    assert grid.layout.count == len(scores.errors) == sum(cells)
    probs = torch.softmax(run.model(x), 1)
    for error in scores.errors[:20]:  # true, then the best two guesses with probabilities
        p, best = probs[error["index"]].topk(2)
        true = run.classes[int(labels[error["index"]])]
        lines = error_caption(error).split("\n")
        assert lines == [f"true {true}", f"pred {run.classes[best[0]]} ({p[0]:.2f})",
                         f"2nd {run.classes[best[1]]} ({p[1]:.2f})"]


def _true_labels(run):
    from cnnlab.data.datasets import load_dataset

    test = load_dataset("digits", "test")
    return [run.classes[i] for i in test.labels]


def test_curves_plot_the_runs_metrics(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    fig = curves_figure(read_metrics(run_dir))
    loss, acc, lr = fig.axes[:3]
    assert list(loss.lines[0].get_ydata()) == [r["train_loss"] for r in records]
    assert list(loss.lines[1].get_ydata()) == [r["val_loss"] for r in records]
    assert list(acc.lines[1].get_ydata()) == [r["val_acc"] for r in records]
    assert list(lr.lines[0].get_xdata()) == [1, 2]


def test_confusion_heat_map_holds_the_matrix(run):
    scores, _ = split_scores(run, "test")
    fig = confusion_figure(scores.confusion, run.classes)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert np.array_equal(shown, np.array(scores.confusion)) and shown.sum() == 360


def test_evolution_finds_each_snapshots_strongest_patch(run_dir, run):
    evo = feature_evolution(run_dir, "conv1", units=[0, 2], limit=100)
    assert evo.epochs == [1, 2] and evo.patches.shape == (2, 2, 1, 5, 5)
    source = run.source("test", limit=100)
    for e, (_, path) in enumerate(snapshot_files(run_dir)):
        model = open_run(path).model
        with torch.no_grad():
            maps = feature_maps(model, source.preprocess.normalize(source.images.float() / 255),
                                ["conv1"])["conv1"][:, [0, 2]]
        assert torch.allclose(evo.values[:, e], maps.transpose(0, 1).flatten(1).amax(1))
    assert not torch.equal(evo.values[:, 0], evo.values[:, 1])  # weights changed in between


def test_evolution_without_snapshots_says_how_to_get_them(tmp_path):
    with pytest.raises(CheckpointError, match="--snapshot-epochs"):
        snapshot_files(tmp_path)


def test_normalize_tiles_scales_each_tile_to_full_range():
    tiles = torch.stack([torch.linspace(-3, 1, 16).view(1, 4, 4), torch.full((1, 4, 4), 2.0)])
    out = normalize_tiles(tiles)
    assert out[0].min() == 0 and out[0].max() == 1 and torch.all(out[1] == 0.5)


@pytest.mark.parametrize("kind", ["filters", "maps", "top-patches", "saliency", "class-model",
                                  "evolution", "errors", "top-losses", "curves", "confusion"])
def test_cli_writes_pngs_for_every_kind(run_dir, tmp_path, capsys, kind):
    out = tmp_path / kind
    extra = ["--class", "3"] if kind == "class-model" else []
    assert main(["visualize", kind, str(run_dir), "--out", str(out), "--limit", "100"] + extra) == 0
    written = [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert written and all(Image.open(p).size[0] > 10 for p in written)


@pytest.mark.parametrize(("argv", "message"), [
    (["maps", "--layer", "conv9"], "unknown layer 'conv9'"),
    (["saliency", "--class", "cat"], "unknown class 'cat'"),
    (["maps", "--units", "0,99"], "unit 99 does not exist: layer conv1 has units 0..5"),
    (["maps", "--units", "5-2"], "range 5-2 runs backwards"),
    (["maps", "--units", "a"], "expected numbers like 0,3,5-7"),
    (["saliency", "--layer", "classifier.1"], "Grad-CAM needs feature maps, but layer "
                                              "classifier.1 outputs"),
    (["top-patches", "--limit", "0"], "--limit 0: expected 1 or more"),
    (["evolution", "--limit", "-3"], "--limit -3: expected 1 or more"),
    (["maps", "--index", "360"], "--index 360: the test split has 360 images (0..359)"),
    (["maps", "--index", "-1"], "--index -1: expected 0 or more"),
])
def test_cli_user_errors_are_one_line(run_dir, tmp_path, capsys, argv, message):
    code = main(["visualize", argv[0], str(run_dir), "--out", str(tmp_path), *argv[1:]])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err


@pytest.mark.parametrize("limit", ["0", "-5", "x"])
def test_report_limit_below_one_is_a_one_line_error(run_dir, tmp_path, capsys, limit):
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r.html"), "--limit",
                 limit]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--limit" in err
    assert not (tmp_path / "r.html").exists()


def test_maps_tiles_are_the_captured_activations_of_the_chosen_image(run_dir, run, tmp_path,
                                                                     capsys):
    """``maps --index 7 --layer conv2 --units 1,4,9``: tile j is channel units[j] of C3's
    output for test image 7 (computed here with plain conv2d), on the maps' shared scale."""
    assert main(["visualize", "maps", str(run_dir), "--out", str(tmp_path), "--index", "7",
                 "--layer", "conv2", "--units", "1,4,9"]) == 0
    source = run.source("test")
    x = source.preprocess.normalize(source.images[7:8].float() / 255)
    f = run.model.features
    with torch.no_grad():
        c3 = F.conv2d(f[2](f[1](f[0](x))), f[3].weight, f[3].bias)[0, [1, 4, 9]]  # (3, 10, 10)
    image = Image.open(tmp_path / "maps-conv2.png")
    grid = maps_grid(c3, units=[1, 4, 9])
    grid.title = "t"
    layout, top = grid.layout, grid.top
    assert layout.count == 3 and image.height == grid.framed().height
    m = float(c3.abs().max())  # one signed scale for the three maps
    for j in range(3):
        left, upper, right, lower = layout.box(j)
        got = np.asarray(image.crop((left, upper + top, right, lower + top)),
                         dtype=np.float64)[::6, ::6]
        assert np.abs(got - diverging_reference(c3[j], m)).max() <= 1
    shown = np.asarray(Image.open(tmp_path / "input.png"), dtype=np.float64)
    assert np.array_equal(shown[top + 2:top + 2 + 128:4, 2:2 + 128:4, 0],
                          source.images[7, 0].double().numpy())


def test_evolution_patches_are_cut_from_their_own_images(run_dir, run):
    """Each (unit, epoch) patch is that snapshot's receptive field at the unit's strongest
    position in the image it names, and that image's maximum is the caption's value."""
    evo = feature_evolution(run_dir, "conv2", units=[1, 6], limit=60)
    source = run.source("test", limit=60)
    field = receptive_field(run.model, run.input_size, "features.3")
    for e, (_, path) in enumerate(snapshot_files(run_dir)):
        model = open_run(path).model
        for u, unit in enumerate(evo.units):
            i = int(evo.images[u, e])
            x = source.preprocess.normalize(source.images[i:i + 1].float() / 255)
            m = feature_maps(model, x, ["conv2"])["conv2"][0, unit]  # (10, 10)
            assert float(m.max()) == pytest.approx(float(evo.values[u, e]), abs=1e-5)
            r, c = divmod(int(m.argmax()), m.shape[1])
            expected = crop_patch(source.images[i], r, c, field,
                                  torch.tensor([round(source.preprocess.mean[0] * 255)],
                                               dtype=torch.uint8))
            assert torch.equal(evo.patches[u, e], expected)


def test_error_captions_give_the_guesses_with_their_probabilities():
    error = {"index": 0, "true": "airplane", "pred": "automobile",
             "top2": [("automobile", 0.6), ("airplane", 0.3)]}
    assert error_caption(error) == "true airplane\npred automobile (0.60)\n2nd airplane (0.30)"
    assert error_caption(error, width=60) == "airplane\nautomobile .60\nairplane .30"
    grid = errors_grid([error], torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    shown = error_caption(error, grid.layout.tile_w + grid.layout.pad)
    assert shown == "airplane\nautomobile .60\nairplane .30"  # the long lines did not fit
    assert all(caption_width(line) <= grid.layout.tile_w + grid.layout.pad
               for line in shown.split("\n"))  # nothing is cut off


def test_unit_captions_separate_the_unit_from_the_value():
    grid_captions = []
    import cnnlab.viz.patches as patches

    real = patches.make_grid
    patches.make_grid = lambda tiles, **kw: grid_captions.extend(kw["captions"]) or real(
        tiles, **kw)
    try:
        patches.patches_grid(torch.zeros(2, 2, 1, 5, 5, dtype=torch.uint8),
                             torch.tensor([[7.84, 1.5], [2.0, 1.0]]), [1, 3])
    finally:
        patches.make_grid = real
    assert grid_captions == ["u1: 7.84", "1.50", "u3: 2.00", "1.00"]


def test_spread_order_takes_one_image_of_each_class_in_turn():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])  # sorted by class, as in a folder data set
    assert spread_order(labels) == [0, 3, 5, 1, 4, 2]
