"""Metrics of the tasks, computed from accumulated batches: accuracy, mAP/F1, IoU.

A *meter* accumulates batches of ``(logits, targets)`` and returns a dict of metrics; each task
makes its own (:meth:`cnnlab.tasks.Task.meter`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.choices import THRESHOLD


class Meter:
    """Accumulates batches of ``(logits, targets)`` and returns a dict of metrics."""

    def __init__(self, task) -> None:
        self.task, self.loss_sum, self.count = task, 0.0, 0

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += float(self.task.loss(logits, y)) * y.shape[0]
        self.count += y.shape[0]

    def result(self) -> dict:
        raise NotImplementedError


class ClassifyMeter(Meter):
    """Cross-entropy over the whole split at once (not a mean of batch means) and top-1."""

    def __init__(self, task) -> None:
        super().__init__(task)
        self.logits, self.labels = [], []

    def update(self, logits, y) -> None:
        self.logits.append(logits.float().cpu())
        self.labels.append(y.cpu())

    def result(self) -> dict:
        logits, labels = torch.cat(self.logits), torch.cat(self.labels)
        return {"loss": float(F.cross_entropy(logits, labels)),
                "acc": float((logits.argmax(1) == labels).float().mean())}


class MultiLabelMeter(Meter):
    def __init__(self, task) -> None:
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
    def __init__(self, task, num_classes: int) -> None:
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
    from sklearn.metrics import average_precision_score  # heavy: only multilabel runs need it

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
    """``(K, K)`` pixel counts, rows = true class, columns = predicted class.

    Example:
        >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2).tolist()
        [[1, 1], [0, 1]]
    """
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
