"""The report as a document: headings, paragraphs, tables and figures with captions, in order;
written once as Markdown (report.md, beside the figure files) and once as a PDF (report.pdf,
every table and figure in one file to hand in).

A :class:`Section` is a part someone else computes (the claims ledger): a title, paragraphs and
tables, placed where the writer is told (first, for the ledger).

Text pages of the PDF are A4 with monospaced tables (a table reads the same in ``pdftotext``);
each figure is a page of its own, its caption under it. matplotlib's ``PdfPages`` only, no pyplot.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

import engine.style as style
from engine.report.tables import Table


@dataclass
class Heading:
    text: str
    level: int = 2  # Markdown's: 1 for the report's title, 2 a section, 3 within one


@dataclass
class Paragraph:
    text: str  # Markdown: **bold** and `code` are kept in report.md, dropped in the PDF
    bold: bool = False


@dataclass
class FigureRef:
    """A figure of the report: its file (the PNG's name; a PDF beside it), its caption, how to
    draw it, and its number once drawn (0: not drawn, a file of its run is damaged)."""

    file: str
    caption: str
    draw: Callable[[], Figure] = field(repr=False, compare=False, default=lambda: Figure())
    number: int = 0


@dataclass
class Section:
    """A part of the report computed elsewhere (the claims ledger): its ``title``, then its
    ``paragraphs`` and ``tables``. ``write_report(sections=[...])`` puts it first."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)

    def items(self) -> list[Heading | Paragraph | Table]:
        return [Heading(self.title), *map(Paragraph, self.paragraphs), *self.tables]


Item = Heading | Paragraph | Table | FigureRef


# --- Markdown -------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(map(_cell, t.header)) + " |", "|" + "---|" * len(t.header)]
    for i, row in enumerate(t.rows):
        cells = [_cell(c) for c in row]
        if i in t.bold:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(items: list[Item]) -> str:
    lines: list[str] = []
    for it in items:
        if isinstance(it, FigureRef) and not it.number:
            continue  # not drawn
        if isinstance(it, Heading):
            lines += [f"{'#' * it.level} {it.text}", ""]
        elif isinstance(it, Paragraph):
            lines += [f"**{it.text}**" if it.bold else it.text, ""]
        elif isinstance(it, Table):
            lines += [*markdown_table(it), ""]
        else:
            pdf = it.file.rsplit(".", 1)[0] + ".pdf"
            lines += [
                f"![Figure {it.number}: {it.file}]({it.file})",
                "",
                f"*Figure {it.number}.* {it.caption} ([PDF]({pdf}))",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


# --- PDF ------------------------------------------------------------------------------------------

A4 = (8.27, 11.69)  # inches
MARGIN = 0.7
FONT = 8  # points, monospaced
COLUMNS = int((A4[0] - 2 * MARGIN) * 72 / (0.6 * FONT))  # characters per line
LINE = 1.4 * FONT / 72  # inches


def _plain(text: str) -> str:
    return text.replace("**", "").replace("`", "")


def _table_lines(t: Table) -> list[tuple[str, bool]]:
    """A table as monospaced lines (cells wrapped to fit the page), each with its boldness."""
    n = len(t.header)
    rows = [[_plain(c) for c in t.header]] + [[_plain(c) for c in r] for r in t.rows]
    widths = [max(len(r[k]) for r in rows) for k in range(n)]
    body = [max([len(r[k]) for r in rows[1:]] + [4]) for k in range(n)]
    room = COLUMNS - 3 * (n - 1)
    while sum(widths) > room:  # wrap long headers first, then narrow the widest column
        wider = [k for k in range(n) if widths[k] > body[k]] or [
            k for k in range(n) if widths[k] > 8
        ]
        if not wider:
            break
        k = max(wider, key=lambda k: widths[k])
        widths[k] -= 1
    out = []
    for i, row in enumerate(rows):
        cells = [textwrap.wrap(c, w) or [""] for c, w in zip(row, widths)]
        for k in range(max(map(len, cells))):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)]
            out.append((" | ".join(parts).rstrip(), i - 1 in t.bold))
        if i == 0:
            out.append(("-+-".join("-" * w for w in widths), False))
    return out + [("", False)]


def _text_lines(items: list[Item]) -> list[tuple[str, bool, int]]:
    """(text, bold, size) of each line of the text items."""
    out: list[tuple[str, bool, int]] = []
    for it in items:
        if isinstance(it, Heading):
            size = {1: 14, 2: 11}.get(it.level, 9)
            out += [("", False, FONT), (_plain(it.text), True, size), ("", False, FONT)]
        elif isinstance(it, Paragraph):
            wrapped = textwrap.wrap(_plain(it.text), COLUMNS) or [""]
            out += [(line, it.bold, FONT) for line in wrapped] + [("", False, FONT)]
        elif isinstance(it, Table):
            out += [(line, bold, FONT) for line, bold in _table_lines(it)]
    return out


def _text_pages(items: list[Item]) -> list[Figure]:
    """A4 pages holding the text items' lines, top to bottom."""
    pages: list[Figure] = []
    page, y = None, 0.0
    for text, bold, size in _text_lines(items):
        step = LINE * size / FONT
        if page is None or y - step < MARGIN:
            page, y = Figure(figsize=A4), A4[1] - MARGIN
            pages.append(page)
        y -= step
        if text:
            page.text(
                MARGIN / A4[0],
                y / A4[1],
                text,
                family="monospace",
                fontsize=size,
                weight="bold" if bold else "normal",
            )
    return pages


def figure_page(fig: Figure, ref: FigureRef) -> None:
    """Put ``ref``'s caption under ``fig`` (below its bottom edge: a tight bounding box takes
    it in)."""
    width = max(40, int(fig.get_figwidth() * 72 / (0.5 * style.LABEL)))
    fig.text(
        0.01,
        -0.02,
        textwrap.fill(f"Figure {ref.number}. {_plain(ref.caption)}", width),
        ha="left",
        va="top",
        fontsize=style.LABEL,
    )


class PdfReport:
    """report.pdf under way, in memory: text pages and figure pages in the document's order."""

    def __init__(self, title: str):
        self.buf = io.BytesIO()
        self.pdf = PdfPages(
            self.buf,
            metadata={"Title": title, "Creator": "diffui", "CreationDate": None},
        )
        self._text: list[Item] = []

    def add(self, item: Item, fig: Figure | None = None) -> None:
        """Queue a text item, or add figure ``fig`` of ``item`` (the text before it first)."""
        if not isinstance(item, FigureRef):
            self._text.append(item)
            return
        self._flush()
        if fig is not None:
            figure_page(fig, item)
            self.pdf.savefig(fig, bbox_inches="tight")

    def _flush(self) -> None:
        for page in _text_pages(self._text):
            self.pdf.savefig(page)
        self._text = []

    def close(self) -> bytes:
        self._flush()
        self.pdf.close()
        return self.buf.getvalue()
