"""Warn when a run is stuck: the loss of a model that ignores its input, or a main metric of 0.

A network that has learned nothing predicts the training targets' frequencies whatever the
image: its loss is the *chance loss* (:meth:`cnnlab.tasks.Task.chance_loss`, ``log K`` for K
balanced classes). Karpathy's "A Recipe for Training Neural Networks" (2019) starts every run by
checking the loss against that number. After ``max(3, 25% of the epochs)`` epochs, if the
training loss is still >= 0.98x the chance loss, or the main metric has been 0 for 3 epochs,
:class:`StuckRun` prints one warning with what to try.
"""

from __future__ import annotations

import math

from cnnlab.train.observers import Observer

RATIO = 0.98  # training loss >= RATIO x chance loss: nothing learned
ZERO_EPOCHS = 3  # the main metric at 0 this many epochs in a row


def first_check(epochs: int) -> int:
    """The first epoch (1-based) at which a stuck run is reported: max(3, 25% of the epochs).

    Example:
        >>> first_check(10), first_check(20), first_check(2)
        (3, 5, 3)
    """
    return max(3, math.ceil(0.25 * epochs))


class StuckRun(Observer):
    """One warning, through ``log``, when the run has not started learning (module doc)."""

    def __init__(self, log=print) -> None:
        self.log, self.chance, self.zeros, self.warned = log, None, 0, False

    def on_run_start(self, run) -> None:
        try:
            self.chance = run.task.chance_loss(run.train.labels, len(run.classes))
        except (TypeError, ValueError, RuntimeError, AttributeError):  # targets it cannot count
            self.chance = None  # (a task without class targets): only the metric test applies

    def on_epoch_end(self, run, record: dict) -> None:
        value = record.get(run.main_metric)
        self.zeros = self.zeros + 1 if value == 0 else 0
        if self.warned or record["epoch"] < first_check(run.config.epochs):
            return
        problem = self.problem(run, record)
        if problem is not None:
            self.warned = True
            self.log(f"warning: the run looks stuck: {problem}. {stuck_hint(run.config)}")

    def problem(self, run, record: dict) -> str | None:
        """What is wrong after this epoch, in words, or None."""
        loss, epoch = record["train_loss"], record["epoch"]
        if self.chance and loss >= RATIO * self.chance:
            return (f"after epoch {epoch} of {run.config.epochs} the training loss {loss:.4f} "
                    f"is {loss / self.chance:.2f}x the chance loss {self.chance:.4f} (the loss "
                    f"of predicting the class frequencies whatever the image)")
        if self.zeros >= ZERO_EPOCHS:
            return f"{run.main_metric} has been 0 for the last {self.zeros} epochs"
        return None


def stuck_hint(config) -> str:
    """What to try, in the config's own terms."""
    lr = config.lr
    return (f"Try a 10x smaller or larger --lr (now {lr:g}: --lr {lr / 10:g} or --lr "
            f"{lr * 10:g}), --optimizer adam --lr 0.001, or a model with batch normalisation "
            f"(e.g. --model c3x16p1-bn-relu-p2-c3x32p1-bn-relu-gap); a loss that has not moved "
            f"from the start also points at the data's labels")
