"""The X's and O's of lecture 003 ("A toy ConvNet: X's and O's").

The lecture draws 9x9 pictures in a +-1 pixel convention (-1 background, +1 stroke), matches
them with three 3x3 features (diagonal, cross, anti-diagonal), divides each match by the 9
pixels of the feature, max-pools 2x2 with stride 2 and rectifies. ``X_IMAGE``, ``O_IMAGE`` and
``FEATURES`` hold those exact values; tests/test_xo.py checks them against the slides' tables.

``make_xo`` draws a labelled data set of X's and O's with the slide "Trickier cases":
translation, scaling, rotation and weight (stroke thickness). Images are rasterised
analytically: a pixel is stroke (+1) when its centre lies within half the stroke width of the
shape (two diagonal segments for X, a circle for O). They stay binary like the lecture's, and
are stored as uint8 with -1 -> 0 and +1 -> 255. Normalising with mean 0.5 and std 0.5 in [0, 1]
units (``(v / 255 - 0.5) / 0.5``) maps them back to exactly -1 and +1.

Example::

    >>> data = make_xo(100, seed=0)
    >>> data.images.shape, data.classes
    (torch.Size([100, 1, 9, 9]), ['O', 'X'])
"""

from __future__ import annotations

import math

import torch

from cnnlab.data.base import ImageSet
from cnnlab.data.registry import DataSource, LoadRequest, register_source
from cnnlab.errors import ConfigError, choices_hint

_ = -1  # background, so the tables below read like the slides

# The canonical X ("What computers see"): +1 diagonals from (1,1) to (7,7) and (1,7) to (7,1).
# The transcript prints it with 10 rows (centre row duplicated); the true image is 9x9.
X_IMAGE: tuple[tuple[int, ...], ...] = (
    (_, _, _, _, _, _, _, _, _),
    (_, 1, _, _, _, _, _, 1, _),
    (_, _, 1, _, _, _, 1, _, _),
    (_, _, _, 1, _, 1, _, _, _),
    (_, _, _, _, 1, _, _, _, _),
    (_, _, _, 1, _, 1, _, _, _),
    (_, _, 1, _, _, _, 1, _, _),
    (_, 1, _, _, _, _, _, 1, _),
    (_, _, _, _, _, _, _, _, _),
)

# A clean O: the pixel centres at distance 2.5..3.5 from the centre (4, 4), i.e. a ring of
# radius 3 and stroke width 1; symmetric under flips and 90-degree rotations.
O_IMAGE: tuple[tuple[int, ...], ...] = (
    (_, _, _, _, _, _, _, _, _),
    (_, _, _, 1, 1, 1, _, _, _),
    (_, _, 1, _, _, _, 1, _, _),
    (_, 1, _, _, _, _, _, 1, _),
    (_, 1, _, _, _, _, _, 1, _),
    (_, 1, _, _, _, _, _, 1, _),
    (_, _, 1, _, _, _, 1, _, _),
    (_, _, _, 1, 1, 1, _, _, _),
    (_, _, _, _, _, _, _, _, _),
)

# "Features match pieces of the image": diagonal, cross, anti-diagonal (in this order).
FEATURES: tuple[tuple[tuple[int, ...], ...], ...] = (
    ((1, _, _), (_, 1, _), (_, _, 1)),
    ((1, _, 1), (_, 1, _), (1, _, 1)),
    ((_, _, 1), (_, 1, _), (1, _, _)),
)

del _

CLASSES = ["O", "X"]  # label 0 = O, label 1 = X (alphabetical, like an image folder)
VARIATIONS = ("translate", "scale", "rotate", "weight")  # slide "Trickier cases"

# Ranges of the random variations, in pixels of the 9x9 canonical grid.
TRANSLATE_PX = 1.0  # shift uniform in [-1, 1] px per axis: the X's 1-px border may be crossed
SCALE_RANGE = (0.75, 1.15)  # shape size factor, uniform
ROTATE_DEG = 30.0  # rotation uniform in [-30, 30] degrees about the image centre
HALF_WIDTH = 0.5  # canonical stroke half-width: exactly the 1-px lines of the slides
WEIGHT_RANGE = (0.5, 1.0)  # stroke half-width with "weight": 1 to 2 px thick lines

_GRID = 9  # size of the lecture's canonical grid
_CENTRE = 4.0  # its centre pixel (row, col)
_ARM = 3.0  # X: diagonal from centre to (1, 1) spans 3 px per axis; O: ring radius


def lecture_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The lecture's X ``(9, 9)``, O ``(9, 9)`` and features ``(3, 3, 3)`` as float32 (+-1)."""
    x = torch.tensor(X_IMAGE, dtype=torch.float32)
    o = torch.tensor(O_IMAGE, dtype=torch.float32)
    features = torch.tensor(FEATURES, dtype=torch.float32)
    return x, o, features


def make_xo(
    n: int,
    *,
    seed: int,
    variations: tuple[str, ...] = VARIATIONS,
    size: int = 9,
) -> ImageSet:
    """Draw ``n`` X and O images ``(n, 1, size, size)`` uint8 with random "Trickier cases".

    Labels are balanced (one O more than X when ``n`` is odd) in random
    order; ``classes == ["O", "X"]``. All randomness comes from
    ``torch.Generator().manual_seed(seed)``, so the same arguments give identical tensors, and
    every variation's parameters are drawn whether enabled or not (turning one variation off does
    not change the others). ``variations=()`` gives exact copies of ``X_IMAGE``/``O_IMAGE``
    (scaled to ``size`` when ``size != 9``).
    """
    _check_make_xo_args(n, variations, size)
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 2)[torch.randperm(n, generator=gen)]  # (n,)
    shift, scale, angle, half_width = _draw_variations(n, gen, set(variations))
    stroke = _render(labels == 1, shift, scale, angle, half_width, size)  # (n, size, size)
    images = (stroke.to(torch.uint8) * 255).unsqueeze(1)  # (n, 1, size, size); +1 -> 255
    name = f"xo(seed={seed})"
    return ImageSet(images, labels, list(CLASSES), name=name)


def _check_make_xo_args(n: int, variations: tuple[str, ...], size: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"make_xo: n must be a positive number of images, got {n!r}")
    if not isinstance(size, int) or size < _GRID:
        raise ConfigError(f"make_xo: size must be an integer >= {_GRID} pixels, got {size!r}")
    if isinstance(variations, str):
        raise ConfigError(f"make_xo: variations must be a tuple of names, got {variations!r}")
    for name in variations:
        if name not in VARIATIONS:
            raise ConfigError(f"make_xo: unknown variation {choices_hint(name, list(VARIATIONS))}")


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _draw_variations(
    n: int, gen: torch.Generator, enabled: set[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image shift ``(n, 2)`` px, scale ``(n,)``, angle ``(n,)`` rad, half-width ``(n,)`` px."""
    shift = _uniform(gen, (n, 2), -TRANSLATE_PX, TRANSLATE_PX)
    scale = _uniform(gen, (n,), *SCALE_RANGE)
    angle = _uniform(gen, (n,), -math.radians(ROTATE_DEG), math.radians(ROTATE_DEG))
    half_width = _uniform(gen, (n,), *WEIGHT_RANGE)
    # Disabled variations take their exact identity values, so variations=() is exact.
    if "translate" not in enabled:
        shift = torch.zeros_like(shift)
    if "scale" not in enabled:
        scale = torch.ones_like(scale)
    if "rotate" not in enabled:
        angle = torch.zeros_like(angle)
    if "weight" not in enabled:
        half_width = torch.full_like(half_width, HALF_WIDTH)
    return shift, scale, angle, half_width


def _render(
    is_x: torch.Tensor,
    shift: torch.Tensor,
    scale: torch.Tensor,
    angle: torch.Tensor,
    half_width: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Boolean stroke masks ``(n, size, size)``: pixel centres within ``half_width`` of the shape.

    Distances are measured in canonical-grid pixels; output pixel ``j`` has its centre at
    canonical coordinate ``(j + 0.5) * 9 / size - 0.5`` (exactly ``j`` when ``size == 9``).
    """
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) * (_GRID / size) - 0.5  # (size,)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # (size, size) each
    # Undo translation, rotation and scaling: image point -> point of the canonical shape.
    dy = rows - _CENTRE - shift[:, 0, None, None]  # (n, size, size)
    dx = cols - _CENTRE - shift[:, 1, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    # Positive angle turns the shape counter-clockwise on screen (rows grow downwards).
    u = (cos * dx - sin * dy) / scale[:, None, None]  # canonical column offset
    v = (sin * dx + cos * dy) / scale[:, None, None]  # canonical row offset
    dist_x = torch.minimum(_segment_distance(u, v, 1.0), _segment_distance(u, v, -1.0))
    dist_o = (torch.sqrt(u * u + v * v) - _ARM).abs()
    # Back to image pixels, so stroke weight does not depend on the shape's scale.
    dist = torch.where(is_x[:, None, None], dist_x, dist_o) * scale[:, None, None]
    return dist <= half_width[:, None, None]


def _segment_distance(u: torch.Tensor, v: torch.Tensor, slope: float) -> torch.Tensor:
    """Distance from ``(u, v)`` to the segment from ``-3 * (slope, 1)`` to ``3 * (slope, 1)``."""
    along = ((u * slope + v) / 2).clamp(-_ARM, _ARM)  # projection onto (slope, 1), |.|^2 = 2
    return torch.hypot(u - along * slope, v - along)


def load_xo_split(request: LoadRequest) -> ImageSet:
    """The named set ``xo``: 1,000 training and 200 test images with every variation."""
    return make_xo(1000, seed=0) if request.split == "train" else make_xo(200, seed=1)


register_source(DataSource(
    "xo", "lecture 003's 9x9 X's and O's with variations (generated by seed)", load_xo_split))
