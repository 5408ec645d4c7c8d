"""Predict labels for a user's own images with the preprocessing stored in the checkpoint.

A digit model was trained on light strokes on a dark background, centred and size-normalised
(MNIST's 20x20 box in a 28x28 frame). A user's PNG is usually dark ink on white paper at any
size, so for single-channel models trained on a dark background the image is inverted when its
border is light, cropped to its ink, scaled so its longer side fills the same fraction of the
frame as in training, and centred. Colour models only get resized.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data.kdsets import read_sample
from cnnlab.data.letterbox import letterbox_image
from cnnlab.data.pipeline import Preprocess, border_mean, fit_to_size
from cnnlab.errors import ConfigError, DataError
from cnnlab.objects.predict import predict_boxes
from cnnlab.runs.reader import OpenRun, open_run
from cnnlab.tasks import THRESHOLD, label_set

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                  ".webp"}
DIGIT_BOX_FRACTION = 20 / 28  # MNIST: a 20x20 box in a 28x28 frame


def collect_images(inputs: list[str]) -> list[Path]:
    """Files given directly, plus the image files inside given folders (sorted; a folder or a
    FIFO that happens to be named ``x.png`` is not an image file and is left out)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                            and p.is_file()
                            and not any(part.startswith(".") for part in p.parts))
        elif path.is_file():
            paths.append(path)
        else:
            raise DataError(f"no image or folder at {path}")
    if not paths:
        raise DataError(f"no images found in {', '.join(inputs)}")
    return paths


def frame_digit(image: torch.Tensor, size: tuple[int, int], fraction: float) -> torch.Tensor:
    """Crop a float ``(1, H, W)`` digit (light on dark) to its ink, scale, centre in ``size``."""
    ink = image[0] > 0.2 * image.max()
    if not ink.any():
        return F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
    rows, cols = ink.any(1).nonzero().flatten(), ink.any(0).nonzero().flatten()
    crop = image[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape[1:]
    side = max(1, round(fraction * min(size)))
    scale = side / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    crop = F.interpolate(crop[None], size=(new_h, new_w), mode="bilinear", antialias=True)[0]
    out = torch.zeros(1, *size)
    top, left = (size[0] - new_h) // 2, (size[1] - new_w) // 2
    out[:, top:top + new_h, left:left + new_w] = crop
    return out


def prepare_image(path: Path, preprocess: Preprocess) -> torch.Tensor:
    """One image file -> the normalised model input ``(1, C, H, W)``."""
    from cnnlab.data.images import load_image

    array = load_image(path, channels=preprocess.channels)  # uint8 (H, W, C)
    image = torch.tensor(array).permute(2, 0, 1).float() / 255  # (C, H, W)
    digit_like = preprocess.channels == 1 and preprocess.background < 0.2
    if digit_like:
        if border_mean((image * 255).to(torch.uint8)[None]) > 0.5:
            image = 1 - image  # dark ink on light paper -> the training polarity
        fraction = preprocess.ink_fraction or DIGIT_BOX_FRACTION
        image = frame_digit(image, preprocess.size, fraction)
    elif tuple(image.shape[1:]) != tuple(preprocess.size):
        image = F.interpolate(image[None], size=preprocess.size, mode="bilinear",
                              antialias=True)[0]
    return preprocess.normalize(image[None])


@torch.inference_mode()
def predict_images(run: str | Path, inputs: list[str], *, k: int = 3, which: str = "best",
                   device: str = "cpu", out: str | Path | None = None,
                   threshold: float = THRESHOLD, skip_bad: bool = False,
                   texts: list[str] = (), keep_size: bool = False) -> list[dict]:
    """Top-``k`` labels with probabilities for each image file (or folder of images).

    Runs on 1-D or 3-D data read their own kind of input instead (:func:`predict_samples`):
    ``.wav`` files for spoken-digits runs, ``texts`` (``--text WORD``) for words runs.

    Runs that predict sets of labels or masks give each image's set of ``labels`` instead;
    mask runs also write a coloured mask PNG per image into ``out`` (default ``RUN/masks``).
    ``threshold`` is the multilabel decision threshold on each class's sigmoid; ``skip_bad``
    skips an unreadable image with a warning instead of stopping. A mask run rescales each
    image so that its longer side is the training canvas's (a scene at another scale gives
    garbage otherwise), unless ``keep_size``; ``size`` in the result is what the mask covers.

    Example:
        >>> predict_images("runs/lenet5-mnist", ["my_digit.png"])  # doctest: +SKIP
        [{'path': 'my_digit.png', 'top': [('7', 0.98), ('1', 0.01), ('9', 0.004)]}]
    """
    if k < 1:
        raise ConfigError(f"--top-k {k}: expected 1 or more")
    opened = open_run(run, checkpoint=which, device=device, threshold=threshold)
    if texts or len(opened.input_size) != 3:  # sequences, clips, volumes
        return predict_samples(opened, list(inputs), list(texts), k)
    paths = collect_images(inputs)
    out = Path(out) if out else opened.run_dir / "masks"
    predict = PREDICTORS[opened.task.output_kind]
    results = []
    for path in paths:
        try:
            results.append(predict(opened, path, k, out, keep_size=keep_size))
        except DataError as error:
            if not skip_bad:
                raise DataError(f"{error} (or pass --skip-bad to skip unreadable images)") \
                    from None
            warnings.warn(f"skipped: {error}", stacklevel=2)
    if skip_bad and len(results) < len(paths):
        warnings.warn(f"skipped {len(paths) - len(results)} of {len(paths)} images", stacklevel=2)
    return results


def predict_class(run: OpenRun, path: Path, k: int, out: Path, keep_size: bool = False) -> dict:
    """The ``k`` most probable classes of one image (softmax)."""
    x = prepare_image(path, run.preprocess).to(run.device)
    probs = run.model(x).float().softmax(1)[0].cpu()
    top = probs.topk(min(k, len(run.classes)))
    return {"path": str(path), "top": [(run.classes[i], round(float(p), 4))
                                       for p, i in zip(top.values, top.indices, strict=True)]}


def scene_input(run: OpenRun, path: Path, *, keep_size: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A user's image for a scene model: uint8 ``(C, H, W)`` in the scenes' polarity (inverted
    when its border is light: dark ink on paper), and the normalised input ``(1, C, H, W)``;
    resized to the trained input size unless ``keep_size``."""
    from cnnlab.data.images import load_image

    preprocess = run.preprocess
    image = torch.tensor(load_image(path, channels=preprocess.channels)).permute(2, 0, 1)
    if preprocess.background < 0.2 and border_mean(image[None]) > 0.5:
        image = 255 - image  # (C, H, W) uint8, light strokes on dark
    if not keep_size:
        image = fit_to_size(image[None], preprocess.size, "resize")[0]
    return image, preprocess.normalize(image[None].float().div(255)).to(run.device)


def predict_labels(run: OpenRun, path: Path, k: int, out: Path, keep_size: bool = False) -> dict:
    """The set of classes whose sigmoid reaches the run's threshold, and the ``k`` best."""
    _, x = scene_input(run, path, keep_size=False)
    probs = run.model(x).float().cpu()[0].sigmoid()
    top = probs.topk(min(k, len(run.classes)))
    return {"path": str(path), "labels": label_set(probs >= run.task.threshold, run.classes),
            "top": [(run.classes[i], round(float(p), 4))
                    for p, i in zip(top.values, top.indices, strict=True)]}


def predict_mask(run: OpenRun, path: Path, k: int, out: Path, keep_size: bool = False) -> dict:
    """A class per pixel: the classes found (by area) and a coloured mask PNG in ``out``."""
    from cnnlab.viz.segmentation import legend_colours, segmentation_panel

    image, x = scene_input(run, path, keep_size=True)  # fully convolutional: any size
    side = max(run.preprocess.size)
    if keep_size or max(image.shape[1:]) == side:
        mask = run.model(x).float().cpu()[0].argmax(0)
    else:
        image, mask = mask_at_training_scale(run, image, side)
    classes = run.classes[1:]  # output 0 is background
    found = [int(c) - 1 for c in mask.unique().tolist() if c > 0]
    pixels = {classes[c]: int((mask == c + 1).sum()) for c in found}
    target = out / f"{path.stem}.mask.png"
    segmentation_panel(image[None], None, mask[None], target, classes=classes, legend=True)
    colours = legend_colours(classes)
    return {"path": str(path), "labels": sorted(pixels, key=pixels.get, reverse=True),
            "pixels": pixels, "mask": str(target), "top": [], "size": list(mask.shape),
            "colours": {name: colours[name] for name in pixels}}


def predict_samples(run: OpenRun, files: list[str], texts: list[str], k: int) -> list[dict]:
    """Top-``k`` classes of a 1-D/3-D run for each ``.wav`` file or word, read as the run's
    data set reads its samples (:func:`cnnlab.data.kdsets.read_sample`: a spectrogram, one-hot
    letters) and normalised as in training."""
    if len(run.input_size) == 3:
        raise ConfigError(f"--text: {run.path} is a 2-D image run; give image files instead")
    if not files and not texts:
        raise ConfigError(f"{run.path} was trained on {run.data_name}: give .wav files "
                          "(spoken-digits) or --text WORD (words)")
    results = []
    for kind, value in [("file", f) for f in files] + [("text", t) for t in texts]:
        sample = read_sample(run.data_name, kind, value)  # (C, *spatial)
        if tuple(sample.shape) != tuple(run.input_size):
            raise DataError(f"{value}: a sample of {'x'.join(map(str, sample.shape))}, the "
                            f"model takes {'x'.join(map(str, run.input_size))}")
        x = run.preprocess.normalize(sample[None].float().div(255)).to(run.device)
        probs = run.model(x).float().softmax(1)[0].cpu()
        top = probs.topk(min(k, len(run.classes)))
        results.append({"path" if kind == "file" else "text": value,
                        "top": [(run.classes[i], round(float(p), 4))
                                for p, i in zip(top.values, top.indices, strict=True)]})
    return results


def mask_at_training_scale(run: OpenRun, image: torch.Tensor, side: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` uint8 ``(C, H, W)`` letterboxed onto the ``side x side`` training canvas (the
    longer side scaled to ``side``, the rest background, as the scenes' objects were drawn) and
    the mask predicted there, both cropped back to the scaled image."""
    boxed, (sx, sy, px, py) = letterbox_image(image.permute(1, 2, 0).numpy(), side)
    h, w = max(1, round(image.shape[1] * sy)), max(1, round(image.shape[2] * sx))
    x = run.preprocess.normalize(boxed[None].float().div(255)).to(run.device)
    mask = run.model(x).float().cpu()[0].argmax(0)
    return boxed[:, py:py + h, px:px + w], mask[py:py + h, px:px + w]


def predict_scores(run: OpenRun, path: Path, k: int, out: Path,
                   keep_size: bool = False) -> dict:
    """A run that is no network (a bag of visual words, ``run.score_images``): its class and
    the score of every class (SVM decision values or neighbour shares: ``run.score_name``)."""
    x = prepare_image(path, run.preprocess)  # the run's size and polarity; mean 0, std 1
    labels, scores = run.score_images((x * 255).round().clamp(0, 255).to(torch.uint8))
    ranked = scores[0].nan_to_num(float("-inf")).argsort(descending=True, stable=True)
    return {"path": str(path), "class": run.classes[int(labels[0])], "score": run.score_name,
            "top": [(run.classes[i], round(float(scores[0, i]), 4))
                    for i in ranked[:min(k, len(run.classes))].tolist()],
            "scores": {name: round(float(v), 4) for name, v in zip(run.classes, scores[0],
                                                                  strict=True)}}


PREDICTORS = {"class": predict_class, "labels": predict_labels, "mask": predict_mask,
              "scores": predict_scores, "boxes": predict_boxes}  # by the task's ``output_kind``
