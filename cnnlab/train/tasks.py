"""What is learned from an image: one class, a set of classes, or a class per pixel.

Lecture 002, "Computer Vision Problems": multi-class (softmax over K classes, one answer),
multi-label (K independent yes/no answers: sigmoid + binary cross-entropy, then a threshold) and
semantic segmentation (a softmax per pixel). A :class:`Task` tells the training loop which
targets to take from a data set, which loss to use, and which metrics to report:

| task       | target                 | loss                      | metrics                        |
|------------|------------------------|---------------------------|--------------------------------|
| classify   | labels ``(N,)``        | cross-entropy             | top-1 accuracy                 |
| multilabel | present ``(N, K)``     | BCE on sigmoid outputs    | mAP, per-class AP, F1, exact   |
| segment    | masks ``(N, H, W)``    | per-pixel cross-entropy   | pixel accuracy, IoU, mean IoU  |

``acc`` is always reported (the loop keeps the best epoch by it): top-1 accuracy, the fraction of
scenes whose label set is exactly right, or pixel accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.data.base import ImageSet
from cnnlab.errors import ConfigError, choices_hint

TASKS = ("classify", "multilabel", "segment")
THRESHOLD = 0.5  # multilabel decision threshold on the sigmoid output


class Task:
    """Classification, the default (the loss and count the loop always used)."""

    name = "classify"

    def num_outputs(self, classes: list[str]) -> int:
        return len(self.output_names(classes))

    def output_names(self, classes: list[str]) -> list[str]:
        """The name of each model output (saved as the checkpoint's ``classes``)."""
        return list(classes)

    def targets(self, data: ImageSet) -> torch.Tensor:
        return data.labels

    def loss(self, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0):
        return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        """How many samples' worth of the batch is right (summed into the epoch accuracy)."""
        return int((logits.argmax(1) == y).sum())

    def meter(self, num_outputs: int) -> Meter:
        return ClassifyMeter(self)

    def check(self, config) -> None:
        """Raise ConfigError for settings this task cannot train with (including a model
        whose output has the wrong shape for the task)."""
        check_output_shape(self, config.model, config.model_options)

    def expected_shape(self, batch: int, classes: int, size: tuple[int, int]) -> tuple:
        """The output shape the loss needs: one score per class, ``(B, K)``."""
        return (batch, classes)

    def model_hint(self) -> str:
        from cnnlab.models.segmentation import SEGMENTATION_MODELS

        return (f"use a classifier (e.g. lenet5, resnet20), or --task segment for a "
                f"segmentation model ({', '.join(SEGMENTATION_MODELS)})")

    def input_size(self, config, data: ImageSet, size: tuple[int, int]) -> tuple[int, int]:
        """The model input ``(H, W)``: the model's (or ``--image-size``) unless dense targets
        tie it to the data's own size."""
        return size


class MultiLabel(Task):
    """K independent sigmoid outputs trained with binary cross-entropy; a class is predicted
    present where its sigmoid is at least ``threshold``."""

    name = "multilabel"

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold

    def targets(self, data: ImageSet) -> torch.Tensor:
        return _scene_field(data, "present", self.name)

    def loss(self, logits, y, label_smoothing: float = 0.0):
        return F.binary_cross_entropy_with_logits(logits.float(), y.float())

    def correct(self, logits, y) -> float:
        return float(((logits.float().sigmoid() >= self.threshold) == y.bool()).all(1).sum())

    def meter(self, num_outputs: int) -> Meter:
        return MultiLabelMeter(self)


class Segment(Task):
    """A softmax over background + K classes at every pixel; ``weights`` ``(1 + K,)``, when
    given, weight each class's pixels in the cross-entropy (see
    :func:`median_frequency_weights`)."""

    name = "segment"

    def __init__(self, weights: torch.Tensor | None = None) -> None:
        self.weights = weights

    def loss(self, logits, y, label_smoothing: float = 0.0):
        w = None if self.weights is None else self.weights.to(logits.device)
        return F.cross_entropy(logits.float(), y, weight=w, label_smoothing=label_smoothing)

    def output_names(self, classes: list[str]) -> list[str]:
        return ["background", *classes]  # mask value c + 1 = class c

    def targets(self, data: ImageSet) -> torch.Tensor:
        return _scene_field(data, "masks", self.name)

    def correct(self, logits, y) -> float:
        return float((logits.argmax(1) == y).float().mean((1, 2)).sum())

    def meter(self, num_outputs: int) -> Meter:
        return SegmentMeter(self, num_outputs)

    def check(self, config) -> None:
        if config.augment:
            raise ConfigError(f"--task segment: --augment {config.augment!r} would move the "
                              f"pixels but not their mask; train without --augment")
        super().check(config)

    def expected_shape(self, batch: int, classes: int, size: tuple[int, int]) -> tuple:
        """Scores for every class at every pixel: ``(B, K, H, W)``."""
        return (batch, classes, *size)

    def model_hint(self) -> str:
        from cnnlab.models.segmentation import SEGMENTATION_MODELS

        return f"use a segmentation model: {', '.join(SEGMENTATION_MODELS)}"

    def input_size(self, config, data: ImageSet, size: tuple[int, int]) -> tuple[int, int]:
        own = data.image_shape[1:]
        if config.image_size and (config.image_size, config.image_size) != own:
            raise ConfigError(f"--task segment trains at the scenes' own size {own[0]}x{own[1]} "
                              f"(masks are not resized): drop --image-size {config.image_size} "
                              f"or make scenes of that size (e.g. {config.data.split(':')[0]}:"
                              f"canvas={config.image_size})")
        return own


def median_frequency_weights(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class weights ``median(f) / f_c`` from the pixel frequencies ``f_c`` of ``masks``
    (Eigen & Fergus 2015, used by SegNet, Badrinarayanan et al. 2017, 3.2): rare classes count
    more. Classes absent from ``masks`` get the largest weight.

    Example:
        >>> median_frequency_weights(torch.tensor([[0, 0, 0, 1], [0, 0, 2, 2]]), 3)
        tensor([0.4000, 2.0000, 1.0000])
    """
    freq = torch.bincount(masks.flatten().long(), minlength=num_classes).double()
    freq = freq / freq.sum()
    seen = freq > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[seen] = freq[seen].median() / freq[seen]
    weights[~seen] = weights[seen].max() if seen.any() else 1.0
    return weights.float()


def get_task(name: str, threshold: float = THRESHOLD) -> Task:
    """The task called ``name`` (raises ConfigError listing the choices); ``threshold`` is the
    multilabel decision threshold."""
    table = {"classify": Task, "multilabel": MultiLabel, "segment": Segment}
    if name not in table:
        raise ConfigError(f"unknown --task {choices_hint(name, list(TASKS))}")
    if name == "multilabel":
        return MultiLabel(check_threshold(threshold))
    return table[name]()


def training_task(config, train: ImageSet) -> Task:
    """The task ``fit`` trains with: ``get_task(config.task)``, with the segmentation loss
    weighted by ``train``'s median class frequencies when ``config.class_weights == "median"``."""
    task = get_task(config.task)
    if config.class_weights == "median":
        masks = task.targets(train)
        return Segment(median_frequency_weights(masks, len(task.output_names(train.classes))))
    return task


def check_threshold(threshold: float) -> float:
    """The multilabel decision threshold, which must lie strictly between 0 and 1."""
    if not 0 < threshold < 1:
        raise ConfigError(f"--threshold {threshold}: expected a value between 0 and 1 "
                          f"(exclusive), e.g. 0.5")
    return threshold


def check_output_shape(task: Task, model: str, options: dict | None = None) -> None:
    """One dry forward of ``model`` on a tiny batch, on the ``meta`` device (shapes only, no
    arithmetic), at the model's own input size; ConfigError when the output shape is not the
    one ``task``'s loss needs. A model that cannot be built or run this way is left to the
    training to report."""
    from cnnlab.models import create, default_input_size

    batch, classes = 2, 3
    try:
        c, h, w = default_input_size(model)
        with torch.device("meta"), torch.no_grad():
            net = create(model, num_classes=classes, in_channels=c, input_size=(c, h, w),
                         **(options or {}))
            got = tuple(net.eval()(torch.zeros(batch, c, h, w)).shape)
    except Exception:  # noqa: BLE001 - unknown options, YAML files...: reported later
        return
    want = task.expected_shape(batch, classes, (h, w))
    if got != want:
        raise ConfigError(f"--model {model} gives outputs of shape {got} for a batch of shape "
                          f"{(batch, c, h, w)} with {classes} classes, but --task {task.name} "
                          f"needs {want}: {task.model_hint()}")


def _scene_field(data: ImageSet, field: str, task: str) -> torch.Tensor:
    value = getattr(data, field, None)
    if value is None:
        raise ConfigError(f"--task {task} needs {field} for every image; {data.name} has one "
                          f"label per image (use a scene set: digit-scenes, mnist-scenes, "
                          f"fashion-scenes)")
    return value


class Meter:
    """Accumulates batches of ``(logits, targets)`` and returns a dict of metrics."""

    def __init__(self, task: Task) -> None:
        self.task, self.loss_sum, self.count = task, 0.0, 0

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += float(self.task.loss(logits, y)) * y.shape[0]
        self.count += y.shape[0]


class ClassifyMeter(Meter):
    def __init__(self, task: Task) -> None:
        super().__init__(task)
        self.correct = 0

    def update(self, logits, y) -> None:
        super().update(logits, y)
        self.correct += self.task.correct(logits, y)

    def result(self) -> dict:
        return {"loss": self.loss_sum / self.count, "acc": self.correct / self.count}


class MultiLabelMeter(Meter):
    def __init__(self, task: Task) -> None:
        super().__init__(task)
        self.scores, self.targets = [], []

    def update(self, logits, y) -> None:
        super().update(logits, y)
        self.scores.append(logits.float().sigmoid())
        self.targets.append(y.bool())

    def result(self) -> dict:
        scores, targets = torch.cat(self.scores), torch.cat(self.targets)
        return {"loss": self.loss_sum / self.count,
                **multilabel_metrics(scores, targets, getattr(self.task, "threshold", THRESHOLD))}


class SegmentMeter(Meter):
    def __init__(self, task: Task, num_classes: int) -> None:
        super().__init__(task)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, logits, y) -> None:
        super().update(logits, y)
        self.confusion += confusion_matrix(logits.argmax(1), y, self.confusion.shape[0])

    def result(self) -> dict:
        return {"loss": self.loss_sum / self.count, **segmentation_metrics(self.confusion)}


def multilabel_metrics(scores: torch.Tensor, targets: torch.Tensor,
                       threshold: float = THRESHOLD) -> dict:
    """mAP, per-class AP (sklearn's average_precision_score), micro F1 and exact-set accuracy.

    ``scores`` ``(N, K)`` in [0, 1], ``targets`` ``(N, K)`` bool. Classes never present in
    ``targets`` have no AP (None) and are left out of the mean.

    Example:
        >>> m = multilabel_metrics(torch.tensor([[0.9, 0.2]]), torch.tensor([[True, False]]))
        >>> m["map"], m["f1"], m["acc"]
        (1.0, 1.0, 1.0)
    """
    from sklearn.metrics import average_precision_score

    s, t = scores.double().numpy(), targets.numpy()
    ap = [float(average_precision_score(t[:, k], s[:, k])) if t[:, k].any() else None
          for k in range(t.shape[1])]
    known = [a for a in ap if a is not None]
    pred = scores >= threshold
    tp = int((pred & targets).sum())
    f1 = 2 * tp / max(int(pred.sum()) + int(targets.sum()), 1)
    return {"acc": float((pred == targets).all(1).float().mean()),
            "map": sum(known) / max(len(known), 1), "f1": f1, "per_class_ap": ap}


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, K)`` pixel counts, rows = true class, columns = predicted class."""
    index = target.flatten().long() * num_classes + pred.flatten().long()
    return torch.bincount(index, minlength=num_classes ** 2).view(num_classes, num_classes)


def segmentation_metrics(confusion: torch.Tensor) -> dict:
    """Pixel accuracy, per-class IoU = TP / (TP + FP + FN) and their mean (Long et al. 2015, 5).

    Classes absent from both truth and prediction have no IoU (None) and are left out of the
    mean; background (class 0) counts like any class, as in PASCAL VOC.

    Example:
        >>> segmentation_metrics(torch.tensor([[3, 1], [0, 4]]))["miou"]  # 3/4 and 4/5
        0.775
    """
    c = confusion.double()
    tp = c.diag()
    union = c.sum(0) + c.sum(1) - tp
    iou = [float(tp[k] / union[k]) if union[k] > 0 else None for k in range(len(tp))]
    known = [v for v in iou if v is not None]
    return {"acc": float(tp.sum() / c.sum().clamp(min=1)),
            "miou": sum(known) / max(len(known), 1), "per_class_iou": iou}


def run_task(run: str) -> str:
    """The task a run (directory or checkpoint) was trained for; ``classify`` for old runs."""
    from cnnlab.train.checkpoint import read_checkpoint, resolve_checkpoint

    _, meta = read_checkpoint(resolve_checkpoint(run))
    return meta.get("config", {}).get("task", "classify")


def evaluate_task_run(run: str, *, data: str | None = None, split: str = "test",
                      data_root: str | None = None, which: str = "best", device: str = "cpu",
                      out: str | None = None, examples: int = 8,
                      threshold: float = THRESHOLD) -> dict:
    """``cnnlab evaluate`` for a multilabel or segment run: metrics with class names, a few
    predicted vs true label sets, and (segment) a PNG of image / truth / prediction.

    ``threshold``: multilabel decision threshold on the sigmoids (F1, exact sets, label sets).
    Multilabel scenes of another size than the trained one are resized to it (like ``predict``);
    segment models are fully convolutional and take any size.

    Example:
        >>> report = evaluate_task_run("runs/fcn")  # doctest: +SKIP
        >>> report["miou"]  # doctest: +SKIP
    """
    import dataclasses
    import json
    from pathlib import Path

    from cnnlab.data.datasets import load_dataset
    from cnnlab.data.pipeline import Preprocess, fit_to_size, to_batch_source
    from cnnlab.train.checkpoint import load_model
    from cnnlab.train.loop import evaluate_task

    model, meta = load_model(run, which=which, device=device)
    config, task = meta.get("config", {}), get_task(run_task(run), threshold)
    dataset = load_dataset(data or config["data"], split, root=data_root or config.get("data_root"))
    _check_classes(run, meta, dataset, task)
    preprocess = Preprocess.from_dict(meta["preprocess"])
    if task.name != "segment" and tuple(dataset.image_shape[1:]) != tuple(preprocess.size):
        dataset = dataclasses.replace(dataset, images=fit_to_size(
            dataset.images, preprocess.size, "resize"))  # the trained input size
    source = to_batch_source(dataset, preprocess, batch_size=64, device=torch.device(device))
    source.labels = task.targets(dataset).to(device)
    report = {"run": str(run), "task": task.name, "data": data or config["data"], "split": split,
              "count": len(dataset), "classes": dataset.classes,
              **({"threshold": threshold} if task.name == "multilabel" else {}),
              **evaluate_task(model, source, precision="fp32", task=task)}
    folder = Path(out) if out else (Path(run) if Path(run).is_dir() else Path(run).parent)
    folder = folder / f"eval-{split}" if not out else folder
    x, _ = next(source.batches())
    with torch.no_grad():
        logits = model(x[:examples]).float().cpu()
    if task.name == "segment":
        from cnnlab.viz.segmentation import segmentation_panel

        report["panel"] = str(segmentation_panel(dataset.images[:examples],
                                                 dataset.masks[:examples], logits.argmax(1),
                                                 folder / "masks.png", classes=dataset.classes))
    else:
        report["examples"] = [{"true": label_set(t, dataset.classes), "pred": label_set(
            p.sigmoid() >= threshold, dataset.classes)} for t, p in
            zip(dataset.present[:examples], logits, strict=True)]
    from cnnlab.runs.outputs import write_text_output  # the evaluate back-end (moves up)

    report["metrics_file"] = str(write_text_output(folder / "metrics.json",
                                                   json.dumps(report, indent=2)))
    return report


def _check_classes(run: str, meta: dict, dataset: ImageSet, task: Task) -> None:
    want = list(meta["classes"])
    have = task.output_names(list(dataset.classes))
    if want != have:
        from cnnlab.errors import CheckpointError

        raise CheckpointError(f"{run}: trained on classes {want[:6]}..., the data has "
                              f"{have[:6]}...: wrong data set for this model?")


def label_set(flags: torch.Tensor, classes: list[str]) -> list[str]:
    """``(K,)`` booleans -> the names of the classes that are on."""
    return [classes[k] for k in flags.nonzero().flatten().tolist()]


def format_task_report(report: dict) -> str:
    """The text ``cnnlab evaluate`` prints for a multilabel or segment run."""
    lines = [f"{report['data']} {report['split']}: {report['count']} scenes ({report['task']})"]
    if report["task"] == "segment":
        names = ["background", *report["classes"]]
        lines.append(f"pixel accuracy {100 * report['acc']:.2f}%  mean IoU {report['miou']:.4f}")
        lines += [f"  IoU {n:<12} {'-' if v is None else f'{v:.4f}'}"
                  for n, v in zip(names, report["per_class_iou"], strict=True)]
        lines.append(f"wrote {report['panel']}")
    else:
        lines.append(f"mAP {report['map']:.4f}  F1 {report['f1']:.4f}  exact label set "
                     f"{100 * report['acc']:.2f}%  (threshold {report['threshold']:g})")
        lines += [f"  AP {n:<12} {'-' if v is None else f'{v:.4f}'}"
                  for n, v in zip(report["classes"], report["per_class_ap"], strict=True)]
        lines += [f"  scene {i}: true {{{', '.join(e['true'])}}}  predicted "
                  f"{{{', '.join(e['pred'])}}}" for i, e in enumerate(report["examples"])]
    lines.append(f"wrote {report['metrics_file']}")
    return "\n".join(lines)


@torch.inference_mode()
def predict_scenes(model, meta: dict, paths: list, *, device: str = "cpu",
                   out_dir=None, k: int = 3, threshold: float = THRESHOLD) -> list[dict]:
    """``cnnlab predict`` for multilabel and segment runs: the label set of each image (with
    the ``k`` best scores), and for segment a coloured mask PNG over the image in ``out_dir``.

    Images are inverted when their border is light (dark ink on paper -> the scenes' polarity);
    segment models take the image at its own size, multilabel models at the trained size.
    A multilabel class is in the label set where its sigmoid is at least ``threshold``.
    """
    check_threshold(threshold)
    from cnnlab.data.images import load_image
    from cnnlab.data.pipeline import Preprocess, border_mean, fit_to_size

    preprocess, classes = Preprocess.from_dict(meta["preprocess"]), meta["classes"]
    segment = meta.get("config", {}).get("task") == "segment"
    results = []
    for path in paths:
        image = torch.tensor(load_image(path, channels=preprocess.channels)).permute(2, 0, 1)
        if preprocess.background < 0.2 and border_mean(image[None]) > 0.5:
            image = 255 - image  # (C, H, W) uint8, light strokes on dark
        if not segment:
            image = fit_to_size(image[None], preprocess.size, "resize")[0]
        x = preprocess.normalize(image[None].float().div(255)).to(device)
        logits = model(x).float().cpu()[0]
        if segment:
            results.append(_mask_result(path, image, logits.argmax(0), classes[1:], out_dir))
            continue
        probs = logits.sigmoid()
        top = probs.topk(min(k, len(classes)))
        results.append({"path": str(path), "labels": label_set(probs >= threshold, classes),
                        "top": [(classes[i], round(float(p), 4))
                                for p, i in zip(top.values, top.indices, strict=True)]})
    return results


def _mask_result(path, image: torch.Tensor, mask: torch.Tensor, classes: list[str],
                 out_dir) -> dict:
    from pathlib import Path

    from cnnlab.viz.segmentation import legend_colours, segmentation_panel

    found = [int(c) - 1 for c in mask.unique().tolist() if c > 0]
    pixels = {classes[c]: int((mask == c + 1).sum()) for c in found}
    target = Path(out_dir) / f"{Path(path).stem}.mask.png"
    segmentation_panel(image[None], None, mask[None], target, classes=classes, legend=True)
    colours = legend_colours(classes)
    return {"path": str(path), "labels": sorted(pixels, key=pixels.get, reverse=True),
            "pixels": pixels, "mask": str(target), "top": [],
            "colours": {name: colours[name] for name in pixels}}
