"""Sample grids drawn in terminal cells, with no graphics protocol: :class:`HalfBlocks` (two
pixels a cell, ``▀`` in the top pixel's colour over the bottom one's: for 256 colours and more)
and :class:`Shades` (16 colours: four greys mixed by the shade glyphs ``░▒▓``, 13 grey levels, a
pixel a cell). They draw in their widget's size, whatever it is, and load nothing heavy (the
graphics protocols' widgets, from textual-image, are imported only when asked for)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

if TYPE_CHECKING:  # (PIL: imported when the first grid is read)
    from PIL import Image as PILImage

# (glyph, share of the foreground colour): the glyphs that mix two colours in a cell
SHADE_GLYPHS = ((" ", 0.0), ("░", 0.25), ("▒", 0.5), ("▓", 0.75))
# the greys of the 16 ANSI colours, darkest first, with their nominal levels (0-255)
ANSI_GREYS = (("black", 0), ("bright_black", 128), ("white", 192), ("bright_white", 255))


def shade_levels() -> list[tuple[float, str, str, str]]:
    """Every grey :class:`Shades` can draw, darkest first: (level, glyph, fg, bg); 13 levels."""
    out = []
    for (dark, lo), (light, hi) in zip(ANSI_GREYS, ANSI_GREYS[1:]):
        for glyph, share in SHADE_GLYPHS:
            out.append((lo + share * (hi - lo), glyph, light, dark))
    name, level = ANSI_GREYS[-1]
    out.append((float(level), " ", name, name))
    return out


SHADES = shade_levels()


class CellImage(Widget):
    """A PIL image scaled to the widget's cells (``image`` may be set at any time; None draws
    nothing). The interface of textual-image's widgets, so :class:`tui.widgets.GridView` takes
    either."""

    DEFAULT_CSS = "CellImage { width: auto; height: auto; }"
    PIXELS_PER_CELL = (1, 2)  # (across, down)

    def __init__(self, image: PILImage.Image | None = None, **kw):
        super().__init__(**kw)
        self._image = image
        self._strips: tuple[tuple[int, int], list[Strip]] | None = None

    @property
    def image(self) -> PILImage.Image | None:
        return self._image

    @image.setter
    def image(self, image: PILImage.Image | None) -> None:
        self._image, self._strips = image, None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        size = (self.size.width, self.size.height)
        if self._strips is None or self._strips[0] != size:
            self._strips = (size, self.strips(*size))
        strips = self._strips[1]
        return strips[y] if 0 <= y < len(strips) else Strip.blank(size[0])

    def strips(self, width: int, height: int) -> list[Strip]:
        """The image as ``height`` lines of ``width`` cells."""
        if self._image is None or width < 1 or height < 1:
            return [Strip.blank(max(0, width))] * max(0, height)
        across, down = self.PIXELS_PER_CELL
        grey = self._image.convert("L").resize((width * across, height * down))
        return self.cells(list(grey.getdata()), width, height)

    def cells(self, pixels: list[int], width: int, height: int) -> list[Strip]:
        raise NotImplementedError


class HalfBlocks(CellImage):
    """Two grey pixels a cell: ``▀`` in the top one's colour on the bottom one's."""

    def cells(self, pixels: list[int], width: int, height: int) -> list[Strip]:
        styles: dict[tuple[int, int], Style] = {}
        out = []
        for row in range(height):
            top, bottom = row * 2 * width, (row * 2 + 1) * width
            segments = []
            for x in range(width):
                key = (pixels[top + x], pixels[bottom + x])
                style = styles.get(key)
                if style is None:
                    style = styles[key] = Style.parse(
                        f"rgb({key[0]},{key[0]},{key[0]}) on rgb({key[1]},{key[1]},{key[1]})"
                    )
                segments.append(Segment("▀", style))
            out.append(Strip(Segment.simplify(segments), width))
        return out


class Shades(CellImage):
    """One grey pixel a cell in 16 colours: the nearest of :data:`SHADES` (four ANSI greys and
    the shade glyphs between each two), 13 levels of grey."""

    PIXELS_PER_CELL = (1, 1)

    def cells(self, pixels: list[int], width: int, height: int) -> list[Strip]:
        table = [nearest_shade(v) for v in range(256)]
        out = []
        for row in range(height):
            segments = [table[v] for v in pixels[row * width : (row + 1) * width]]
            out.append(Strip(Segment.simplify(segments), width))
        return out


def nearest_shade(value: int) -> Segment:
    """The cell of :data:`SHADES` nearest to grey ``value`` (0-255)."""
    _, glyph, fg, bg = min(SHADES, key=lambda s: abs(s[0] - value))
    return Segment(glyph, Style(color=fg, bgcolor=bg))
