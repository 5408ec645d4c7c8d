"""What is learned from an image: one class, a set of classes, or a class per pixel.

| task       | target                 | loss                      | main metric | metrics               |
|------------|------------------------|---------------------------|-------------|-----------------------|
| classify   | labels ``(N,)``        | cross-entropy             | accuracy    | top-1                 |
| multilabel | present ``(N, K)``     | BCE on sigmoid outputs    | mAP         | per-class AP, F1      |
| segment    | masks ``(N, H, W)``    | per-pixel cross-entropy   | mIoU        | pixel accuracy, IoU   |
| detect     | boxes ``(N, M, 4)``    | CenterNet focal + L1      | box AP      | AP50, AP75 (COCO)     |
| instance   | boxes + instance maps  | + mask BCE, semantic CE   | mask AP     | + baseline mask AP    |

``acc`` is always reported: top-1 accuracy, the fraction of scenes whose label set is exactly
right, or pixel accuracy. A new task is one :class:`Task` subclass plus one
:func:`register_task` line below.

Example:
    >>> get_task("segment").main_metric, get_task("multilabel", threshold=0.3).threshold
    ('miou', 0.3)
"""

from __future__ import annotations

from cnnlab.errors import ConfigError, choices_hint
from cnnlab.tasks.base import Task, check_output_shape
from cnnlab.tasks.detect import Detect
from cnnlab.tasks.instance import Instance
from cnnlab.tasks.metrics import THRESHOLD
from cnnlab.tasks.multilabel import MultiLabel, check_threshold, label_set
from cnnlab.tasks.segment import Segment, median_frequency_weights

_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Add a task class under its ``name`` (``--task NAME``)."""
    assert cls.name not in _TASKS, f"task {cls.name} registered twice"
    _TASKS[cls.name] = cls
    return cls


for _cls in (Task, MultiLabel, Segment, Detect, Instance):
    register_task(_cls)

TASKS = tuple(_TASKS)


def task_names() -> list[str]:
    return list(_TASKS)


def get_task(name: str, **options: object) -> Task:
    """The task called ``name`` (raises ConfigError listing the choices); ``options`` go to its
    constructor (``threshold`` for multilabel; ignored by tasks without them)."""
    if name not in _TASKS:
        raise ConfigError(f"unknown --task {choices_hint(name, list(_TASKS))}")
    cls = _TASKS[name]
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in options.items() if k in accepted and v is not None})


def task_of(meta: dict, **options: object) -> Task:
    """The task a checkpoint's metadata was trained for (``classify`` for runs before tasks)."""
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    return get_task(config.get("task", "classify"), **options)


__all__ = ["TASKS", "THRESHOLD", "Detect", "Instance", "MultiLabel", "Segment", "Task", "check_output_shape",
           "check_threshold", "get_task", "label_set", "median_frequency_weights",
           "register_task", "task_names", "task_of"]
