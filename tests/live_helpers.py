"""A fake trainer for the live page tests: a thread that publishes a scripted run (scalars,
epochs, and layers/maps/predictions computed by cnnlab.live.snapshot from a real LeNet-5 and a
fixed batch of real digits), then applies and records the controls the page sends, answering
each with a ``controls`` event as the real observer will.
"""

from __future__ import annotations

import math
import threading

import torch

from cnnlab.data.datasets import load_dataset
from cnnlab.data.pipeline import make_preprocess, to_batch_source
from cnnlab.live.channel import Control, LiveChannel
from cnnlab.live.snapshot import (
    display_images,
    inspect_batch,
    layer_stats,
    maps_payload,
    predictions_payload,
    scalars_payload,
)
from cnnlab.models import create

STEPS, EVERY, PER_EPOCH, BATCH = 120, 40, 60, 64


def fixed_batch(count: int = 8) -> tuple[torch.Tensor, torch.Tensor, list[str], object]:
    """The first ``count`` digits test images, normalised for LeNet-5, their labels, the class
    names and the preprocessing."""
    data = load_dataset("digits", "test")
    preprocess = make_preprocess(data, 1, (32, 32), "auto")
    source = to_batch_source(data.subset(torch.arange(count)), preprocess, batch_size=count,
                             device=torch.device("cpu"))
    x, y = next(source.batches())
    return x, y, list(data.classes), preprocess


class FakeTrainer(threading.Thread):
    """Publishes :data:`STEPS` steps of a made-up run on ``channel``, then serves controls
    until :meth:`finish`. ``controls`` lists what was applied; ``got_control`` is set on each."""

    def __init__(self, channel: LiveChannel, *, final_test_acc: float = 0.75) -> None:
        super().__init__(daemon=True)
        self.channel, self.final_test_acc = channel, final_test_acc
        torch.manual_seed(0)
        self.model = create("lenet5", num_classes=10, in_channels=1)
        self.x, self.y, self.classes, self.preprocess = fixed_batch()
        self.controls: list[Control] = []
        self.got_control = threading.Event()
        self.published = threading.Event()
        self._finish = threading.Event()
        self.values = {"paused": False, "lr_multiplier": 1.0, "momentum": 0.9,
                       "weight_decay": 5e-4, "batch_size": BATCH}

    def run(self) -> None:
        channel = self.channel
        channel.publish("status", {"state": "training", "run": "fake", "model": "lenet5",
                                   "data": "digits", "epoch": 1, "epochs": 2, "step": 0})
        for step in range(1, STEPS + 1):
            self.publish_step(step)
        self.published.set()
        while not self._finish.wait(0.05):  # the trainer's next steps: apply what was asked
            self.apply(channel.poll_controls(), STEPS)
        channel.publish("status", {"state": "finished", "run": "fake", "step": STEPS,
                                   "test": {"acc": self.final_test_acc}})

    def publish_step(self, step: int) -> None:
        epoch = 1 + (step - 1) // PER_EPOCH
        loss = 2.3 * math.exp(-step / 40) + 0.1 * math.sin(step)  # a made-up falling loss
        correct = min(BATCH, int(BATCH * (1 - math.exp(-step / 30))))
        self.channel.publish("scalars", scalars_payload(
            step=step, epoch=epoch, examples=step * BATCH, loss=loss, correct=correct,
            batch=BATCH, lr=0.05, seconds=0.01, forward_s=0.004, backward_s=0.006))
        if step % EVERY == 0:
            seen = inspect_batch(self.model, self.x, self.y)
            pictures = display_images(self.x, self.preprocess)
            self.channel.publish("layers", {"step": step, "layers": layer_stats(seen)})
            self.channel.publish("maps", {"step": step, **maps_payload(seen, pictures[0])})
            self.channel.publish("predictions", {"step": step, **predictions_payload(
                seen.logits, self.y, self.classes, pictures)})
        if step % PER_EPOCH == 0:
            self.channel.publish("epoch", {"epoch": epoch, "step": step, "train_loss": loss,
                                           "train_acc": correct / BATCH, "val_loss": loss,
                                           "val_acc": 0.5 + step / 1000, "lr": 0.05})

    def apply(self, controls: list[Control], step: int) -> None:
        if not controls:
            return
        for control in controls:
            if control.action in ("pause", "resume"):
                self.values["paused"] = control.action == "pause"
            elif control.value is not None:
                self.values[control.action] = control.value
        self.controls += controls
        self.channel.publish("controls", {"step": step, "values": dict(self.values),
                                          "applied": [c.to_dict() for c in controls]})
        state = "paused" if self.values["paused"] else "training"
        self.channel.publish("status", {"state": state, "run": "fake", "step": step})
        self.got_control.set()

    def finish(self) -> None:
        self._finish.set()
        self.join()
