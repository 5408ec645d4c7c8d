"""Lookahead weight averaging (Zhang, Lucas, Hinton & Ba 2019) as airbench uses it (Jordan 2024).

Every ``every`` optimizer steps the slow weights move towards the fast (trained) ones and the
fast weights restart from them::

    slow <- decay * slow + (1 - decay) * fast        fast <- slow

with ``decay = lookahead * (step / total_steps) ** 3``: no averaging early on, averaging over
the last few updates (~ 1 / (1 - decay)) at the end, when the step size is small. BatchNorm's
running statistics are averaged the same way. The slow weights are saved in every checkpoint
(``lookahead.*`` tensors) so a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import CheckpointError

PREFIX = "lookahead."


class Lookahead:
    """Slow copies of ``model``'s floating-point state, updated by :meth:`update`.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> slow = Lookahead(model, decay=0.77, every=5, total_steps=100)
        >>> slow.decay_at(50)  # 0.77 * (50 / 100) ** 3
        0.09625
    """

    def __init__(self, model: nn.Module, *, decay: float, every: int, total_steps: int) -> None:
        self.model, self.decay, self.every, self.total_steps = model, decay, every, total_steps
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items()
                     if v.is_floating_point()}

    def decay_at(self, step: int) -> float:
        """The decay of the update after optimizer step ``step`` (1-based count of steps)."""
        return self.decay * (step / self.total_steps) ** 3

    @torch.no_grad()
    def update(self, step: int) -> None:
        """After optimizer step ``step``: average and reset every ``every`` steps and at the end."""
        if step % self.every and step != self.total_steps:
            return
        decay = self.decay_at(step)
        for name, fast in self.model.state_dict().items():
            if name in self.slow:
                slow = self.slow[name]
                slow.lerp_(fast.to(slow.dtype), 1 - decay)  # decay * slow + (1 - decay) * fast
                fast.copy_(slow)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """``{"lookahead.<name>": slow weight}`` for a checkpoint."""
        return {PREFIX + k: v for k, v in self.slow.items()}

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the slow weights from a checkpoint's tensors (all must be present)."""
        missing = [name for name in self.slow if PREFIX + name not in tensors]
        if missing:
            raise CheckpointError(f"checkpoint has no lookahead weights (e.g. {missing[0]}): "
                                  "it was saved by a run without --lookahead")
        for name, slow in self.slow.items():
            slow.copy_(tensors[PREFIX + name])
