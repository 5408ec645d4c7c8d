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
import io
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from cnnlab.runs.outputs import write_output

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
CAPTION_LINE = 13  # pixels per caption line (Pillow's default font is ~12 px high)


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

    def save(self, path: str | Path) -> Path:
        """Write the grid (with its note, if any, as a line of text below it)."""
        return save_png(with_footer(self.image, self.note) if self.note else self.image, path)


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
    font = ImageFont.load_default()
    for i in range(n):
        left, top, _, bottom = layout.box(i)
        image.paste(to_pil(x[i]), (left, top))
        if captions:
            text = "\n".join(clip_text(line, font, layout.tile_w + pad)
                             for line in captions[i].split("\n"))
            draw.multiline_text((left, bottom), text, fill=TEXT, font=font, spacing=0)
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
    font = ImageFont.load_default()
    width = max(image.width, int(font.getlength(text)) + 4)
    framed = Image.new("RGB", (width, image.height + CAPTION_LINE + 4), BACKGROUND)
    framed.paste(image, (0, 0))
    ImageDraw.Draw(framed).text((2, image.height + 2), text, fill=TEXT, font=font)
    return framed


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


def png_data_uri(image: Image.Image) -> str:
    """``data:image/png;base64,...`` of ``image``, for self-contained HTML."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
