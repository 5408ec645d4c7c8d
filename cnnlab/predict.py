"""Predict labels for a user's own images with the preprocessing stored in the checkpoint.

A digit model was trained on light strokes on a dark background, centred and size-normalised
(MNIST's 20x20 box in a 28x28 frame). A user's PNG is usually dark ink on white paper at any
size, so for single-channel models trained on a dark background the image is inverted when its
border is light, cropped to its ink, scaled so its longer side fills the same fraction of the
frame as in training, and centred. Colour models only get resized.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data.pipeline import Preprocess, border_mean
from cnnlab.errors import DataError
from cnnlab.train.checkpoint import load_model

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                  ".webp"}
DIGIT_BOX_FRACTION = 20 / 28  # MNIST: a 20x20 box in a 28x28 frame


def collect_images(inputs: list[str]) -> list[Path]:
    """Files given directly, plus image files inside given folders (sorted)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
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
                   threshold: float = 0.5) -> list[dict]:
    """Top-``k`` labels with probabilities for each image file (or folder of images).

    Multilabel and segment runs give each image's set of ``labels`` instead; segment runs also
    write a coloured mask PNG per image into ``out`` (default ``RUN/masks``). ``threshold`` is
    the multilabel decision threshold on each class's sigmoid.

    Example:
        >>> predict_images("runs/lenet5-mnist", ["my_digit.png"])  # doctest: +SKIP
        [{'path': 'my_digit.png', 'top': [('7', 0.98), ('1', 0.01), ('9', 0.004)]}]
    """
    model, meta = load_model(run, which=which, device=device)
    if meta.get("config", {}).get("task", "classify") != "classify":
        from cnnlab.train.tasks import predict_scenes

        out = out or (Path(run) if Path(run).is_dir() else Path(run).parent) / "masks"
        return predict_scenes(model, meta, collect_images(inputs), device=device, out_dir=out,
                              k=k, threshold=threshold)
    preprocess = Preprocess.from_dict(meta["preprocess"])
    classes = meta["classes"]
    results = []
    for path in collect_images(inputs):
        x = prepare_image(path, preprocess).to(device)
        probs = model(x).float().softmax(1)[0].cpu()
        top = probs.topk(min(k, len(classes)))
        results.append({"path": str(path), "top": [(classes[i], round(float(p), 4))
                                                   for p, i in zip(top.values, top.indices, strict=False)]})
    return results
