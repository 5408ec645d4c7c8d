"""Semantic segmentation networks: label every pixel (lecture 002, "Semantic Segmentation").

"Design a network as a number of convolutional layers with downsampling and upsampling inside
the network": every model maps ``(B, C, H, W)`` to per-pixel class scores ``(B, K, H, W)``.

| model     | paper                         | downsampling   | upsampling                        |
|-----------|-------------------------------|----------------|-----------------------------------|
| fcn       | Long et al. CVPR 2015         | 3 max-pools    | score skips + bilinear (FCN-8s)    |
| segnet    | Badrinarayanan 2017, Noh 2015 | 3 max-pools    | selectable: nearest, bed_of_nails, |
|           |                               |                | max_unpool, transposed, bilinear   |
| unet      | Ronneberger et al. MICCAI 2015| 3 max-pools    | 2x2 up-conv, concatenated skips    |
| patchnet  | Farabet 2013 / Long 2015      | none (stride 1)| none: a patch classifier as convs  |

Widths are small (16-32-64) so the models train on a CPU in minutes. Convolutions are padded
(the U-Net paper's are not, and it crops its skips instead). The total stride is 8: an input
whose side is not a multiple of 8 is padded (replicating the border) and the output cropped back,
or, with ``pad_input=False``, refused with the padding that fits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.upsample import (
    BedOfNails,
    MaxPoolWithIndices,
    NearestUpsample,
    upsample_transposed,
)
from cnnlab.models.base import ImageClassifier
from cnnlab.models.registry import register

UPSAMPLING = ("nearest", "bed_of_nails", "max_unpool", "transposed", "bilinear")
SEGMENTATION_MODELS = ("fcn", "segnet", "unet", "patchnet")  # (B, K, H, W) scores per pixel


def fitting_padding(height: int, width: int, stride: int) -> tuple[int, int]:
    """Rows and columns to add so both sides become multiples of ``stride``."""
    return (-height) % stride, (-width) % stride


def conv_block(cin: int, cout: int, convs: int = 2) -> nn.Sequential:
    """``convs`` x (3x3 conv, pad 1 -> batch norm -> ReLU): size-preserving."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SegmentationModel(ImageClassifier):
    """Base: pads the input to a multiple of ``total_stride`` and crops the scores back.

    Subclasses implement ``segment(x)`` for inputs whose sides are multiples of the stride.
    """

    total_stride: int = 8
    head_path = "classifier"

    def __init__(self, pad_input: bool = True) -> None:
        super().__init__()
        self.pad_input = pad_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = fitting_padding(h, w, self.total_stride)
        if pad_h or pad_w:
            if not self.pad_input:
                raise ModelError(
                    f"{type(self).__name__}: input {h}x{w} is not a multiple of the total stride "
                    f"{self.total_stride}; pad it to {h + pad_h}x{w + pad_w} (add {pad_h} rows "
                    f"and {pad_w} columns) or build the model with pad_input=True")
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")  # (B, C, H', W')
        return self.segment(x)[..., :h, :w]  # (B, K, H, W)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class FCN(SegmentationModel):
    """Fully convolutional network with FCN-8s-style skips (Long et al. 2015, figure 3).

    Class scores of the deepest map (stride 8) are upsampled x2 by a learned transposed conv,
    summed with scores of the stride-4 map, again with the stride-2 map, then bilinearly
    upsampled x2 to the input size. ``skips=False`` is FCN-32s-like: one bilinear x8.
    """

    def __init__(self, *, num_classes: int, in_channels: int, widths: tuple[int, ...],
                 skips: bool, pad_input: bool) -> None:
        super().__init__(pad_input)
        self.total_stride = 2 ** len(widths)
        chans = [in_channels, *widths]
        self.stages = nn.ModuleList(
            nn.Sequential(conv_block(chans[i], chans[i + 1]), nn.MaxPool2d(2))
            for i in range(len(widths)))
        self.skips = skips
        self.reset_classifier(num_classes)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x)  # strides 2, 4, 8
        scores = self.classifier(x)  # (B, K, H/8, W/8)
        for feats, score, up in zip(pooled[-2::-1], self.skip_scores[::-1], self.up,
                                    strict=False):
            scores = up(scores) + score(feats)  # (B, K, 2h, 2w); none without skips
        return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)

    def reset_classifier(self, num_classes: int) -> None:
        """New score layers (all of them depend on the number of classes)."""
        widths = [s[0][0].out_channels for s in self.stages]
        shallow = widths[:-1] if self.skips else []
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)  # scores at the deepest stride
        self.skip_scores = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in shallow)
        self.up = nn.ModuleList(upsample_transposed(num_classes) for _ in shallow)


class Upsample2x(nn.Module):
    """One of lecture 002's x2 upsamplings; ``forward(x, indices)`` (indices for max_unpool)."""

    def __init__(self, kind: str, channels: int) -> None:
        super().__init__()
        if kind not in UPSAMPLING:
            raise ModelError(f"upsampling {kind!r} is not one of: {', '.join(UPSAMPLING)}")
        self.kind = kind
        layers = {"nearest": lambda: NearestUpsample(2), "bed_of_nails": lambda: BedOfNails(2),
                  "max_unpool": lambda: nn.MaxUnpool2d(2),
                  "transposed": lambda: upsample_transposed(channels),
                  "bilinear": lambda: nn.Upsample(scale_factor=2, mode="bilinear")}
        self.layer = layers[kind]()

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        if self.kind == "max_unpool":
            return self.layer(x, indices)  # values back where the encoder's maxima were
        return self.layer(x)  # (B, C, 2H, 2W)


class EncoderDecoder(SegmentationModel):
    """SegNet-style encoder-decoder (Badrinarayanan et al. 2017; Noh et al. ICCV 2015).

    Encoder: conv block + 2x2 max-pool (remembering where each max was) per stage. Decoder: the
    mirror, each stage upsampling x2 with the chosen method then a conv block; ``max_unpool``
    reuses the encoder's pooling indices ("Corresponding pairs of downsampling and upsampling
    layers"). No skip connections carry features, only (for max_unpool) positions.
    """

    def __init__(self, *, num_classes: int, in_channels: int, widths: tuple[int, ...],
                 upsampling: str, pad_input: bool) -> None:
        super().__init__(pad_input)
        self.total_stride = 2 ** len(widths)
        self.upsampling = upsampling
        chans = [in_channels, *widths]
        self.encoder = nn.ModuleList(conv_block(chans[i], chans[i + 1])
                                     for i in range(len(widths)))
        self.feature_stages = tuple(f"encoder.{i}" for i in range(len(widths)))  # pre-pool maps
        self.pool = MaxPoolWithIndices(2)
        outs = [*widths[-2::-1], widths[0]]  # decoder widths, e.g. 32, 16, 16
        ins = widths[::-1]
        self.ups = nn.ModuleList(Upsample2x(upsampling, c) for c in ins)
        self.decoder = nn.ModuleList(conv_block(c, o) for c, o in zip(ins, outs, strict=True))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        where = []
        for block in self.encoder:
            x, indices = self.pool(block(x))  # (B, C, H/2, W/2)
            where.append(indices)
        for up, block, indices in zip(self.ups, self.decoder, where[::-1], strict=True):
            x = block(up(x, indices))  # (B, C', 2H, 2W)
        return self.classifier(x)


class UNet(SegmentationModel):
    """U-Net (Ronneberger et al. 2015): contracting path, expanding path with 2x2 up-convs, and
    the contracting path's features concatenated at every scale (the skip connections)."""

    def __init__(self, *, num_classes: int, in_channels: int, widths: tuple[int, ...],
                 pad_input: bool) -> None:
        super().__init__(pad_input)
        self.total_stride = 2 ** (len(widths) - 1)
        chans = [in_channels, *widths]
        self.down = nn.ModuleList(conv_block(chans[i], chans[i + 1]) for i in range(len(widths)))
        rev = widths[::-1]  # e.g. 128, 64, 32, 16
        self.upconv = nn.ModuleList(nn.ConvTranspose2d(rev[i], rev[i + 1], 2, stride=2)
                                    for i in range(len(rev) - 1))
        self.up = nn.ModuleList(conv_block(2 * rev[i + 1], rev[i + 1]) for i in range(len(rev) - 1))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)  # strides 1, 2, 4, 8
        for upconv, block, skip in zip(self.upconv, self.up, skips[-2::-1], strict=True):
            x = block(torch.cat([skip, upconv(x)], dim=1))  # (B, C, 2H, 2W)
        return self.classifier(x)


class PatchNet(SegmentationModel):
    """A patch classifier written as convolutions (Long et al. 2015, "convolutionalization").

    On a ``patch x patch`` input it returns one score vector ``(B, K, 1, 1)``: the class of the
    patch's centre pixel (the sliding-window classifier of Farabet et al. 2013). On a whole
    image, padded by ``patch // 2``, the same weights give every pixel's scores in one pass.
    Unpadded 3x3 convs, then the "fully connected" layer as a conv over what is left.
    """

    def __init__(self, *, num_classes: int, in_channels: int, widths: tuple[int, ...],
                 hidden: int, fc_kernel: int, pad_input: bool) -> None:
        super().__init__(pad_input)
        self.total_stride = 1
        self.patch = 1 + 2 * len(widths) + fc_kernel - 1  # receptive field, e.g. 13
        chans = [in_channels, *widths]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Conv2d(widths[-1], hidden, fc_kernel), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(hidden, num_classes, 1)

    def classify_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, C, P, P)`` patches -> ``(B, K)`` scores of their centre pixels."""
        return self.classifier(self.fc(self.features(patches))).flatten(1)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        r = self.patch // 2
        x = F.pad(x, (r, r, r, r), mode="replicate")  # (B, C, H + 2r, W + 2r)
        return self.classifier(self.fc(self.features(x)))  # (B, K, H, W)


def _widths(widths: tuple[int, ...] | list[int], least: int) -> tuple[int, ...]:
    widths = tuple(int(w) for w in widths)
    if len(widths) < least or min(widths) < 1:
        raise ModelError(f"widths={list(widths)}: expected at least {least} positive channel "
                         f"counts, e.g. [16, 32, 64]")
    return widths


@register("fcn", input_size=(1, 64, 64), paper="Long et al. CVPR 2015 (FCN-8s style)")
def fcn(*, num_classes: int = 11, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64),
        skips: bool = True, pad_input: bool = True) -> FCN:
    """FCN: 3 conv stages with max-pools (stride 8), score skips at strides 4 and 2, bilinear x2."""
    return FCN(num_classes=num_classes, in_channels=in_channels, widths=_widths(widths, 1),
               skips=skips, pad_input=pad_input)


@register("segnet", input_size=(1, 64, 64), paper="Badrinarayanan et al. 2017; Noh et al. 2015")
def segnet(*, num_classes: int = 11, in_channels: int = 1,
           widths: tuple[int, ...] = (16, 32, 64), upsampling: str = "max_unpool",
           pad_input: bool = True) -> EncoderDecoder:
    """Encoder-decoder; ``upsampling``: nearest, bed_of_nails, max_unpool, transposed, bilinear."""
    return EncoderDecoder(num_classes=num_classes, in_channels=in_channels,
                          widths=_widths(widths, 1), upsampling=upsampling, pad_input=pad_input)


@register("unet", input_size=(1, 64, 64), paper="Ronneberger et al. MICCAI 2015")
def unet(*, num_classes: int = 11, in_channels: int = 1,
         widths: tuple[int, ...] = (16, 32, 64, 128), pad_input: bool = True) -> UNet:
    """U-Net with 4 levels (3 down-samplings, stride 8) of widths 16-32-64-128."""
    return UNet(num_classes=num_classes, in_channels=in_channels, widths=_widths(widths, 2),
                pad_input=pad_input)


@register("patchnet", input_size=(1, 64, 64), paper="Farabet et al. 2013; Long et al. 2015")
def patchnet(*, num_classes: int = 11, in_channels: int = 1,
             widths: tuple[int, ...] = (16, 32, 32, 32), hidden: int = 64, fc_kernel: int = 5,
             pad_input: bool = True) -> PatchNet:
    """Sliding-window patch classifier (13x13 patches by default), fully convolutional form."""
    return PatchNet(num_classes=num_classes, in_channels=in_channels, widths=_widths(widths, 1),
                    hidden=hidden, fc_kernel=fc_kernel, pad_input=pad_input)
