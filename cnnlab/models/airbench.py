"""airbench: the fast CIFAR-10 network of K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single
GPU" (2024), itself descended from D. Page's ResNet-9 (2018, ``cifar_fast``).

The network: a frozen 2x2 *whitening* convolution whose filters are computed from the training
images (PCA of their 2x2 patches, each eigenvector scaled by ``1 / sqrt(eigenvalue + 5e-4)`` and
used with both signs, so ``2 * C * 4`` output channels: 24 for RGB), GELU, then three conv groups
``conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU``, a global max-pool and a
bias-free linear classifier whose scores are multiplied by 1/9. Convolutions start near the
identity (``dirac_`` on their first ``in_channels`` filters); BatchNorm keeps its weight fixed at
1 and learns only its bias (airbench trains those biases 64x faster: ``--bias-lr-scale 64``).

The whitening layer needs data: :meth:`AirbenchNet.init_from_data` takes normalised training
images; :func:`cnnlab.train.fit.fit` calls it on a seeded sample of 5,000 training images for
every model that has the method (before any checkpoint is loaded, which then overrides it).

| model      | widths of the three groups | params (N=10, RGB) | airbench's result            |
|------------|----------------------------|--------------------|------------------------------|
| airbench94 | 64, 256, 256               | 1,972,480          | 94.01% in 9.9 epochs (TTA)   |
| airbench95 | 128, 384, 384              | 4,606,208          | 95.01% in 15 epochs (TTA)    |
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import DataError, ModelError
from cnnlab.models.base import ImageClassifier, check_input_size
from cnnlab.models.registry import register

VARIANTS: dict[str, tuple[int, int, int]] = {"airbench94": (64, 256, 256),
                                             "airbench95": (128, 384, 384)}
WHITEN_EPS = 5e-4  # added to each patch eigenvalue (airbench's value)
BN_MOMENTUM = 0.4  # torch's convention: airbench keeps 0.6 of the running statistics per step
SCORE_SCALE = 1 / 9  # airbench's fixed multiplier of the class scores
MIN_INPUT = 9  # the 2x2 whitening removes a pixel, then three halvings need 8


class Whitening2x2(nn.Module):
    """Frozen ``kernel x kernel`` conv that whitens image patches (airbench's first layer).

    ``(B, C, H, W) -> (B, 2 * C * k^2, H - k + 1, W - k + 1)``. After :meth:`init_from_data`
    the first ``C * k^2`` outputs on the fitting images have covariance
    ``diag(lambda / (lambda + eps))`` (~ identity); the other half are their negatives.

    Example:
        >>> layer = Whitening2x2(3)
        >>> layer.init_from_data(torch.randn(16, 3, 8, 8))
        >>> layer(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 24, 7, 7])
    """

    def __init__(self, in_channels: int, kernel: int = 2, eps: float = WHITEN_EPS) -> None:
        super().__init__()
        self.kernel, self.eps = kernel, eps
        dim = in_channels * kernel * kernel
        self.out_channels = 2 * dim
        # A buffer, not a parameter: never trained, but saved and moved with the model.
        self.register_buffer("weight", torch.zeros(2 * dim, in_channels, kernel, kernel))

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """All ``k x k`` patches of ``(N, C, H, W)`` as rows ``(N * (H-k+1) * (W-k+1), C*k*k)``,
        flattened in the conv weight's (C, kh, kw) order."""
        k, c = self.kernel, images.shape[1]
        windows = images.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H-k+1, W-k+1, k, k)
        return windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, chunk: int = 1000) -> None:
        """Set the filters from float ``(N, C, H, W)`` images (normalised like the model input)."""
        dim = self.out_channels // 2
        if images.dim() != 4 or images.shape[1] * self.kernel**2 != dim:
            raise DataError(f"whitening init: expected (N, {dim // self.kernel**2}, H, W) "
                            f"images, got {tuple(images.shape)}")
        total = torch.zeros(dim, dtype=torch.float64)
        outer = torch.zeros(dim, dim, dtype=torch.float64)
        count = 0
        for part in images.split(chunk):  # bounded memory: 1,000 images of patches at a time
            rows = self.patches(part.cpu().double())  # (n, C*k*k)
            total += rows.sum(0)
            outer += rows.T @ rows
            count += rows.shape[0]
        mean = total / count
        covariance = outer / count - torch.outer(mean, mean)  # (C*k*k, C*k*k)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        filters = (eigenvectors / torch.sqrt(eigenvalues.clamp(min=0) + self.eps)).T  # row = filter
        filters = filters.flip(0).reshape(dim, -1, self.kernel, self.kernel)  # largest first
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype))  # (B, 2*C*k*k, H-k+1, W-k+1)


def identity_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 conv, no bias, whose first ``in_channels`` filters start as the identity (Dirac)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:in_channels])
    return conv


def bias_only_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm whose scale stays 1 (not trained): only the shift (bias) is learnt."""
    norm = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
    norm.weight.requires_grad_(False)
    return norm


def conv_group(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv -> max-pool 2 -> BN -> GELU -> conv -> BN -> GELU: ``(B, Cin, H, W) ->
    (B, Cout, H/2, W/2)``."""
    return nn.Sequential(identity_conv(in_channels, out_channels), nn.MaxPool2d(2),
                         bias_only_norm(out_channels), nn.GELU(),
                         identity_conv(out_channels, out_channels),
                         bias_only_norm(out_channels), nn.GELU())


class AirbenchNet(ImageClassifier):
    """``whiten`` -> GELU -> three conv groups -> global max-pool -> ``fc`` x 1/9."""

    head_path = "fc"

    def __init__(self, widths: tuple[int, int, int], *, num_classes: int, in_channels: int,
                 name: str) -> None:
        super().__init__()
        self.name = name
        self.whiten = Whitening2x2(in_channels)
        w1, w2, w3 = widths
        self.features = nn.Sequential(nn.GELU(), conv_group(self.whiten.out_channels, w1),
                                      conv_group(w1, w2), conv_group(w2, w3))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(w3, num_classes, bias=False)

    def init_from_data(self, images: torch.Tensor) -> None:
        """Fit the whitening layer to normalised training images ``(N, C, H, W)``."""
        self.whiten.init_from_data(images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, MIN_INPUT, self.name)
        x = self.features(self.whiten(x))  # (B, w3, (H-1)/8, (W-1)/8)
        return self.fc(self.pool(x).flatten(1)) * SCORE_SCALE  # (B, num_classes)


def _airbench(name: str, num_classes: int, in_channels: int,
              widths: list[int] | tuple[int, ...] | None = None) -> AirbenchNet:
    """The named variant, or its body at other ``widths`` (three positive integers)."""
    if widths is None:
        widths = VARIANTS[name]
    if (not isinstance(widths, (list, tuple)) or len(widths) != 3
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0
                       for w in widths)):
        raise ModelError(f"{name} widths must be three positive integers, e.g. [48,192,192]; "
                         f"got {widths!r}")
    return AirbenchNet(tuple(widths), num_classes=num_classes, in_channels=in_channels,
                       name=name)


@register("airbench94", input_size=(3, 32, 32), paper="Jordan 2024 (airbench94)")
def airbench94(*, num_classes: int = 10, in_channels: int = 3,
               widths: list[int] | None = None) -> AirbenchNet:
    """airbench94: widths 64, 256, 256 (94% on CIFAR-10 in ~10 epochs with flip+translate TTA).

    Example:
        >>> airbench94()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    return _airbench("airbench94", num_classes, in_channels, widths)


@register("airbench95", input_size=(3, 32, 32), paper="Jordan 2024 (airbench95)")
def airbench95(*, num_classes: int = 10, in_channels: int = 3,
               widths: list[int] | None = None) -> AirbenchNet:
    """airbench95: widths 128, 384, 384 (95% in 15 epochs on a GPU).

    Example:
        >>> airbench95()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    return _airbench("airbench95", num_classes, in_channels, widths)
