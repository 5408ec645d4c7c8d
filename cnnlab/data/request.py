"""Which data set a command reads and from where: ``--data``, ``--data-root``, ``--download``,
``--skip-bad`` as one value, passed to the library instead of four loose arguments."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cnnlab.data.budget import data_budget


@dataclass(frozen=True)
class DataRequest:
    """A data set name or folder (``None``: the run's own), its root, and how to read it."""

    name: str | None = None
    root: str | None = None
    download: bool = False
    skip_bad: bool = False
    budget: float | None = None  # GiB (--data-budget); None: min(8 GiB, half the RAM)

    @classmethod
    def of(cls, value: DataRequest | str | None) -> DataRequest:
        """A request from a request, a bare name, or None."""
        return value if isinstance(value, DataRequest) else cls(name=value)

    def with_defaults(self, name: str | None, root: str | None) -> DataRequest:
        """Fill what the user left out (a run's own data set and root)."""
        return replace(self, name=self.name or name, root=self.root or root)

    def load(self, split: str = "train"):
        """``split`` of this data set (:func:`cnnlab.data.datasets.load_dataset`)."""
        from cnnlab.data.datasets import load_dataset  # the readers: torch, NumPy, Pillow

        with data_budget(self.budget):
            return load_dataset(self.name, split, root=self.root, download=self.download,
                                skip_bad=self.skip_bad)
