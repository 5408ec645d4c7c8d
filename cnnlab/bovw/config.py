"""The flat, typed settings of a bag-of-visual-words run (``cnnlab bovw``).

Every field is one flag of ``cnnlab bovw`` with the same name (``words`` is ``--words``). A run
saves them as ``config.yaml``; :meth:`BovwConfig.from_dict` reads them back.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

from cnnlab.config import settings_from_dict
from cnnlab.errors import ConfigError, DataError

DESCRIPTORS = ("sift", "hog", "daisy")
ASSIGNMENTS = ("hard", "soft")
CLASSIFIERS = ("pyramid", "intersection", "linear", "knn")
MIN_PATCH = 4  # pixels: a SIFT/HOG patch needs 2x2 cells of at least 2 px


class PyramidWarning(UserWarning):
    """A setting that works but makes the spatial pyramid pointless (e.g. patch >= cell)."""


@dataclass
class BovwConfig:
    """Everything that defines a bag-of-visual-words run (units in comments)."""

    # data
    data: str = "mnist"  # data set name or image-folder path (as cnnlab train)
    data_root: str | None = None
    download: bool = False
    skip_bad: bool = False
    train_per_class: int | None = None  # keep this many training images per class (seeded)
    test_count: int | None = None  # test on this many test images (seeded draw; None = all)
    # 1. feature extraction: dense descriptors on a grid
    descriptor: str = "sift"  # sift (OpenCV) | hog | daisy (scikit-image)
    step: int | None = None  # pixels between grid points; None = max(2, patch // 4)
    patch: int | None = None  # side of the square patches, pixels; None = min(16, side / 2^L)
    # 2. codebook formation, 3. quantisation
    words: int = 200  # K, the size of the visual vocabulary (k-means centroids)
    codebook_samples: int = 100_000  # descriptors k-means is fitted on (seeded draw)
    assignment: str = "hard"  # hard (nearest word) | soft (Gaussian kernel codebook)
    # 4. histograms at pyramid levels 0..L
    levels: int = 2  # L: level l splits the image into 2^l x 2^l cells
    # 5. classifier
    classifier: str = "pyramid"  # pyramid | intersection | linear | knn
    svm_c: float = 1.0  # C of the SVMs
    neighbours: int = 5  # k of --classifier knn
    seed: int = 0
    # output
    out: str = "runs"  # parent directory of run directories
    name: str | None = None  # run directory name; None = bovw-<data>-<time>

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work, naming the flag."""
        _choice("descriptor", self.descriptor, DESCRIPTORS)
        _choice("assignment", self.assignment, ASSIGNMENTS)
        _choice("classifier", self.classifier, CLASSIFIERS)
        if self.words < 2:
            raise ConfigError(f"--words must be >= 2 (a codebook of K visual words), got "
                              f"{self.words}")
        if self.levels < 0:
            raise ConfigError(f"--levels must be >= 0 (0 = one histogram of the whole image), "
                              f"got {self.levels}")
        for flag, value, low in (("step", self.step or 1, 1),
                                 ("patch", self.patch or MIN_PATCH, MIN_PATCH),
                                 ("neighbours", self.neighbours, 1),
                                 ("codebook-samples", self.codebook_samples, self.words)):
            if value < low:
                raise ConfigError(f"--{flag} must be >= {low}, got {value}")
        for flag, value in (("train-per-class", self.train_per_class),
                            ("test-count", self.test_count)):
            if value is not None and value < 1:
                raise ConfigError(f"--{flag} must be >= 1, got {value}")
        if not self.svm_c > 0:
            raise ConfigError(f"--svm-c must be > 0, got {self.svm_c}")

    def resolved(self, height: int, width: int) -> BovwConfig:
        """A copy with ``patch`` and ``step`` chosen for ``height x width`` images when unset:
        the patch fills a cell of the finest pyramid level (at most 16 px, at least 4)."""
        patch = self.patch or max(MIN_PATCH, min(16, min(height, width) // 2**self.levels))
        return dataclasses.replace(self, patch=patch, step=self.step or max(2, patch // 4))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "config") -> BovwConfig:
        """Settings read back (``config.yaml``): unknown keys and wrong types are refused."""
        return settings_from_dict(cls, values, source=source)


def check_patch_fits(patch: int, height: int, width: int, levels: int) -> None:
    """A patch larger than the image is an error; one larger than a level-L cell
    (side / 2^L) is warned about: every patch then spans several cells of the finest level."""
    side = min(height, width)
    if patch > side:
        raise DataError(f"--patch {patch} is larger than the {height}x{width} images; use "
                        f"--patch {side} or less")
    cell = side / 2**levels
    if patch > cell:
        fitting = max(0, int(math.log2(side / patch)))  # the deepest level the patch fits
        fix = f"--patch {int(cell)} or " if cell >= MIN_PATCH else ""
        warnings.warn(f"--patch {patch} is larger than a pyramid cell at L={levels} "
                      f"({side}/2^{levels} = {cell:g} px), so the finest level adds little; use "
                      f"{fix}--levels {fitting}", PyramidWarning, stacklevel=2)


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"--{flag} {value!r} is not one of: {', '.join(choices)}")
