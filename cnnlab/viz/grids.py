"""Image grids: tensors of tiles -> one PNG, with an exact, testable layout.

Every visualisation ends here: filters, feature maps, top patches and error lists are all
``(N, C, h, w)`` stacks of tiles laid out row by row. The layout is fixed by :class:`GridLayout`
so a test can find tile ``i`` at ``layout.box(i)`` and check what it holds.

Example:
    >>> import torch
    >>> grid = make_grid(torch.rand(6, 1, 5, 5), columns=3, scale=4)
    >>> grid.layout.rows, grid.image.size
    (2, (68, 46))
"""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from cnnlab.runs.outputs import write_output

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
DPI = 100  # pixels per inch of every saved picture
FONT_PX = 13  # caption font: 13 px = 9.4 pt at DPI, the smallest text on any picture
TITLE_PX = 16  # title font
CAPTION_LINE = 16  # pixels per caption line


@functools.cache
def font(size: int = FONT_PX) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font at ``size`` pixels (its bitmap font, ~11 px, only when
    Pillow was built without FreeType)."""
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class GridLayout:
    """Where each tile of a grid lies: ``count`` tiles of ``tile_w x tile_h``, row-major."""

    count: int
    columns: int
    tile_w: int
    tile_h: int
    pad: int
    caption_h: int = 0

    @property
    def rows(self) -> int:
        return -(-self.count // self.columns) if self.count else 0

    @property
    def size(self) -> tuple[int, int]:
        """Image ``(width, height)``."""
        width = self.pad + self.columns * (self.tile_w + self.pad)
        height = self.pad + self.rows * (self.tile_h + self.caption_h + self.pad)
        return width, height

    def box(self, index: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` of tile ``index`` (caption excluded)."""
        row, col = divmod(index, self.columns)
        left = self.pad + col * (self.tile_w + self.pad)
        top = self.pad + row * (self.tile_h + self.caption_h + self.pad)
        return left, top, left + self.tile_w, top + self.tile_h


@dataclass
class Grid:
    """A rendered grid and its layout."""

    image: Image.Image
    layout: GridLayout
    note: str = ""  # e.g. what was left out when a grid was capped
    title: str = ""  # what the picture shows: layer, run, data
    legend: Image.Image | None = None  # a colour bar or class legend shown under the grid

    def framed(self, *, title: bool = True) -> Image.Image:
        """The grid with its title above, its note and legend below (what :meth:`save`
        writes; the report puts the title in its caption instead: ``title=False``)."""
        image = with_footer(self.image, self.note) if self.note else self.image
        image = below(image, self.legend) if self.legend is not None else image
        return titled(image, self.title) if self.title and title else image

    @property
    def top(self) -> int:
        """Pixels above the grid in :meth:`framed` (the title's height)."""
        return TITLE_PX + 10 if self.title else 0

    def _repr_png_(self) -> bytes:
        """Jupyter: the framed grid, inline."""
        buffer = io.BytesIO()
        self.framed().save(buffer, format="PNG")
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the grid (title above, note, if any, as a line of text below it)."""
        return save_png(self.framed(), path)


def normalize_tiles(tiles: torch.Tensor, mode: str = "each") -> torch.Tensor:
    """Min-max scale float tiles ``(N, C, h, w)`` to [0, 1]: per tile (``each``), jointly
    (``all``) or not at all (``none``, values are clamped). Constant tiles become 0.5."""
    x = tiles.detach().float().cpu()
    if mode == "none" or x.numel() == 0:
        return x.clamp(0, 1)
    dims = (1, 2, 3) if mode == "each" else (0, 1, 2, 3)
    low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    span = high - low
    return torch.where(span > 0, (x - low) / span.clamp(min=1e-12), torch.full_like(x, 0.5))


def signed_tiles(tiles: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Grey tiles ``(N, 1, h, w)`` on one shared, symmetric scale -> :func:`diverging` RGB
    tiles and the scale ``m`` (white = 0, full red = +m, full blue = -m)."""
    m = float(tiles.detach().abs().max()) if tiles.numel() else 0.0
    return diverging(tiles.detach().float().cpu() / max(m, 1e-12)), m


def to_pil(tile: torch.Tensor) -> Image.Image:
    """A float ``(C, h, w)`` tile in [0, 1] (C = 1 or 3) -> an RGB Pillow image."""
    array = (tile.clamp(0, 1) * 255).round().to(torch.uint8)
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return Image.fromarray(array.permute(1, 2, 0).contiguous().numpy(), "RGB")


def make_grid(
    tiles: torch.Tensor, *, columns: int | None = None, scale: int = 1, pad: int = 2,
    normalize: str = "each", captions: list[str] | None = None,
) -> Grid:
    """Lay out ``tiles`` ``(N, C, h, w)`` (C = 1 or 3) as a grid, each magnified ``scale``x
    (nearest neighbour, so pixels stay visible), with optional text under each tile."""
    if tiles.dim() != 4 or tiles.shape[1] not in (1, 3):
        raise ValueError(f"tiles must be (N, 1|3, h, w), got {tuple(tiles.shape)}")
    n, _, h, w = tiles.shape
    columns = columns or max(1, min(n, round(n ** 0.5 + 0.5)))
    lines = max((c.count("\n") + 1 for c in captions), default=0) if captions else 0
    layout = GridLayout(n, columns, w * scale, h * scale, pad, lines * CAPTION_LINE)
    image = Image.new("RGB", layout.size, BACKGROUND)
    x = normalize_tiles(tiles, normalize)
    if scale != 1:
        x = F.interpolate(x, scale_factor=scale, mode="nearest")  # (N, C, h*s, w*s)
    draw = ImageDraw.Draw(image)
    for i in range(n):
        left, top, _, bottom = layout.box(i)
        image.paste(to_pil(x[i]), (left, top))
        for k, line in enumerate(captions[i].split("\n") if captions else []):
            draw.text((left, bottom + k * CAPTION_LINE), clip_text(line, font(),
                      layout.tile_w + pad), fill=TEXT, font=font())
    return Grid(image, layout)


def clip_text(text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text`` shortened (with a trailing ``~``) to fit ``width`` pixels in ``font``."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "~") > width:
        text = text[:-1]
    return text + "~"


def with_footer(image: Image.Image, text: str) -> Image.Image:
    """``image`` with a line of ``text`` below it (the grid itself stays at the top left)."""
    width = max(image.width, int(font().getlength(text)) + 4)
    framed = Image.new("RGB", (width, image.height + CAPTION_LINE + 4), BACKGROUND)
    framed.paste(image, (0, 0))
    ImageDraw.Draw(framed).text((2, image.height + 2), text, fill=TEXT, font=font())
    return framed


def titled(image: Image.Image, title: str) -> Image.Image:
    """``image`` below a line of ``title`` (at :data:`TITLE_PX`), widened when the title is."""
    big = font(TITLE_PX)
    width = max(image.width, int(big.getlength(title)) + 8)
    out = Image.new("RGB", (width, image.height + TITLE_PX + 10), BACKGROUND)
    ImageDraw.Draw(out).text((4, 4), title, fill=TEXT, font=big)
    out.paste(image, (0, TITLE_PX + 10))
    return out


def diverging(x: torch.Tensor) -> torch.Tensor:
    """Signed values in [-1, 1] ``(N, 1, h, w)`` -> RGB ``(N, 3, h, w)``: blue for negative,
    white for 0, red for positive (a diverging map: the sign of a weight stays readable).

    Example:
        >>> diverging(torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1, 1))[:, :, 0, 0].tolist()
        [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    """
    v = x.clamp(-1, 1)
    pos, neg = v.clamp(min=0), (-v).clamp(min=0)
    return torch.cat([1 - neg, 1 - pos - neg, 1 - pos], dim=1)


def colour_bar(low: float, high: float, label: str, *, signed: bool = False,
               colours=None, width: int = 200) -> Image.Image:
    """A horizontal colour bar from ``low`` to ``high`` (grey; :func:`diverging` when
    ``signed``; or ``colours``, a function of values in [0, 1] ``(1, 1, h, w)`` -> RGB
    ``(1, 3, h, w)``), its ends numbered below, ``label`` to its right."""
    ramp = torch.linspace(-1 if signed else 0, 1, width).view(1, 1, 1, width).expand(1, 1, 12, -1)
    strip = (diverging(ramp) if signed else colours(ramp) if colours
             else ramp.expand(1, 3, -1, -1))[0]
    out = Image.new("RGB", (width + 16 + int(font().getlength(label)), 12 + CAPTION_LINE + 6),
                    BACKGROUND)
    out.paste(to_pil(strip), (4, 2))
    draw = ImageDraw.Draw(out)
    draw.text((4, 16), f"{low:.3g}", fill=TEXT, font=font())
    right = f"{high:.3g}"
    draw.text((4 + width - font().getlength(right), 16), right, fill=TEXT, font=font())
    draw.text((width + 12, 0), label, fill=TEXT, font=font())
    return out


def below(image: Image.Image, extra: Image.Image) -> Image.Image:
    """``image`` with ``extra`` (a colour bar, a legend) under it, left-aligned."""
    out = Image.new("RGB", (max(image.width, extra.width), image.height + extra.height),
                    BACKGROUND)
    out.paste(image, (0, 0))
    out.paste(extra, (0, image.height))
    return out


def fit_width(image: Image.Image, max_width: int) -> Image.Image:
    """Shrink ``image`` to at most ``max_width`` pixels wide (thumbnails for reports)."""
    if image.width <= max_width:
        return image
    height = max(1, round(image.height * max_width / image.width))
    return image.resize((max_width, height), Image.Resampling.LANCZOS)


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as PNG, creating the parent folder (never over a file cnnlab did not
    write: :func:`cnnlab.runs.outputs.write_output`)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_output(path, buffer.getvalue())


def compact(image: Image.Image, colors: int | None = None) -> Image.Image:
    """``image`` in the smallest PNG mode that keeps it: grey (``L``) when every pixel is
    grey, a palette when it has at most 256 colours (both lossless); with ``colors``, a
    palette of that many colours even when that loses some (charts: flat colours, antialiased
    edges)."""
    rgb = image.convert("RGB")
    r, g, b = rgb.split()
    if r.tobytes() == g.tobytes() == b.tobytes():
        return r
    if rgb.getcolors(256) is not None:
        return rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    if colors:
        return rgb.quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                            dither=Image.Dither.NONE)
    return rgb


def png_data_uri(image: Image.Image, colors: int | None = None) -> str:
    """``data:image/png;base64,...`` of ``image`` (:func:`compact`), for self-contained HTML."""
    buffer = io.BytesIO()
    compact(image, colors).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


PHOTO_QUALITY = 85  # WebP quality of embedded colour photographs


def data_uri(image: Image.Image, colors: int | None = None) -> str:
    """A ``data:`` URI as small as the picture allows: a lossless PNG for grey pictures,
    pictures of at most 256 colours and charts (``colors``), a WebP of quality
    :data:`PHOTO_QUALITY` for colour photographs (CIFAR tiles: about a quarter of the PNG)."""
    kept = compact(image, colors)
    if kept.mode != "RGB":
        return png_data_uri(kept)
    buffer = io.BytesIO()
    kept.save(buffer, format="WEBP", quality=PHOTO_QUALITY, method=6)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
