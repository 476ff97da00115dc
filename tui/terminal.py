"""What the terminal can draw, asked in one round trip before the app starts (``--images auto``).

textual-image asks on import, one question at a time, each waiting up to 0.1 s for an answer:
Sixel (the device attributes), the Kitty graphics protocol (which most terminals never answer, so
it always waited its 0.1 s) and the cell size in pixels (unanswered by many). Here the three
questions go out together, the device-attributes one last: every terminal answers that one, and
answers in order, so its answer ends the wait at once; a terminal that answers nothing costs one
:data:`TIMEOUT` at most, counted from the question, and ``diffui`` imports the UI's modules in
the meantime. textual-image is then imported with what was learnt, asking nothing again.
"""

from __future__ import annotations

import os
import re
import select
import sys
import time
from dataclasses import dataclass

TIMEOUT = 0.2  # seconds to wait for a terminal that answers nothing at all
KITTY_QUERY = "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\"  # a 1x1 image, only queried
CELL_QUERY = "\x1b[16t"  # the cell size in pixels: CSI 6 ; height ; width t
DA1_QUERY = "\x1b[c"  # primary device attributes: CSI ? attrs c (attribute 4: Sixel)

DA1_ANSWER = re.compile(r"\x1b\[\?([0-9;]*)c")
CELL_ANSWER = re.compile(r"\x1b\[6;([0-9]+);([0-9]+)t")
KITTY_OK = re.compile(r"\x1b_Gi=31;OK\x1b\\")


@dataclass(frozen=True)
class Answer:
    """What the terminal said: its graphics protocol ("sixel", "tgp" or "" for none) and its
    cell size in pixels (None when it did not say)."""

    protocol: str = ""
    cell: tuple[int, int] | None = None  # (width, height)


def parse_answer(text: str) -> Answer | None:
    """The answer in what the terminal wrote back so far; None until its device attributes (the
    last answer) have come."""
    da1 = DA1_ANSWER.search(text)
    if da1 is None:
        return None
    cell = CELL_ANSWER.search(text)
    size = (int(cell.group(2)), int(cell.group(1))) if cell else None
    if KITTY_OK.search(text):  # Kitty: the graphics protocol performs better than Sixel
        protocol = "tgp"
    elif "4" in da1.group(1).split(";"):
        protocol = "sixel"
    else:
        protocol = ""
    return Answer(protocol, size if size and all(size) else None)


class Question:
    """The three questions, sent at once (:meth:`send`); :meth:`answer` reads what came back.
    Between the two the terminal is in cbreak mode without echo, so that its answers are not
    shown and arrive as they are written: the UI's modules are imported in the meantime, and
    the wait is over before it begins unless the terminal answers nothing at all."""

    def __init__(self, fd_in: int, fd_out: int, timeout: float = TIMEOUT):
        self.fd_in, self.fd_out, self.timeout = fd_in, fd_out, timeout
        self.saved: list | None = None
        self.deadline = 0.0

    def send(self) -> Question:
        import termios
        import tty

        self.saved = termios.tcgetattr(self.fd_in)
        tty.setcbreak(self.fd_in, termios.TCSANOW)
        try:
            os.write(self.fd_out, (KITTY_QUERY + CELL_QUERY + DA1_QUERY).encode())
        except BaseException:
            self.restore()
            raise
        self.deadline = time.monotonic() + self.timeout
        return self

    def answer(self) -> Answer:
        """Read until the device attributes come or the time is up (an empty :class:`Answer`
        then); the terminal's mode is restored either way."""
        try:
            text = ""
            while (answer := parse_answer(text)) is None:
                left = self.deadline - time.monotonic()
                if not select.select([self.fd_in], [], [], max(0.0, left))[0]:
                    return Answer()
                chunk = os.read(self.fd_in, 1024)
                if not chunk:
                    return Answer()
                text += chunk.decode(errors="replace")
            return answer
        finally:
            self.restore()

    def restore(self) -> None:
        import termios

        if self.saved is not None:
            termios.tcsetattr(self.fd_in, termios.TCSANOW, self.saved)
            self.saved = None


def ask(fd_in: int, fd_out: int, timeout: float = TIMEOUT) -> Answer:
    """Ask the terminal on ``fd_out`` and wait for its answers on ``fd_in``."""
    return Question(fd_in, fd_out, timeout).send().answer()


def question() -> Question | None:
    """The questions sent to the terminal of stdin and stdout, or None when either is not one."""
    if not on_a_terminal():
        return None
    return Question(sys.__stdin__.fileno(), sys.__stdout__.fileno()).send()  # type: ignore[union-attr]


def on_a_terminal() -> bool:
    """Whether stdin and stdout are both a terminal (the only case worth asking)."""
    try:
        return (
            sys.__stdin__ is not None
            and sys.__stdout__ is not None
            and (os.isatty(sys.__stdin__.fileno()) and os.isatty(sys.__stdout__.fileno()))
        )
    except (OSError, ValueError):
        return False


def cell_size(answer: Answer) -> tuple[int, int]:
    """The cell size in pixels as textual-image would find it, ``answer`` in place of its own
    question: the terminal's window size ioctl, the answer, ``TEXTUAL_CELL_WIDTH`` and
    ``TEXTUAL_CELL_HEIGHT``, else a VT340's 10 x 20."""
    try:
        import fcntl
        import struct
        import termios

        raw = fcntl.ioctl(sys.__stdout__.fileno(), termios.TIOCGWINSZ, bytes(8))  # type: ignore[union-attr]
        rows, cols, width, height = struct.unpack("HHHH", raw)
        if rows and cols and width // cols and height // rows:
            return width // cols, height // rows
    except (OSError, ValueError, AttributeError):
        pass
    if answer.cell is not None:
        return answer.cell
    w, h = os.environ.get("TEXTUAL_CELL_WIDTH", ""), os.environ.get("TEXTUAL_CELL_HEIGHT", "")
    if w.isdigit() and h.isdigit() and int(w) and int(h):
        return int(w), int(h)
    return 10, 20


def import_textual_image(answer: Answer):
    """textual-image's widget module, imported without its own questions to the terminal: its
    cell size is :func:`cell_size`, and its import-time protocol detection is told nothing
    answers (diffui picks the widget class itself from ``answer``)."""
    from textual_image import _terminal

    _terminal.get_cell_size._result = _terminal.CellSize(*cell_size(answer))  # type: ignore[attr-defined]
    asked = _terminal.capture_terminal_response

    def unanswered(*args, **kw):
        raise _terminal.TerminalError("asked already (tui.terminal)")

    _terminal.capture_terminal_response = unanswered  # type: ignore[assignment]
    try:
        from textual_image import widget
    finally:
        _terminal.capture_terminal_response = asked  # type: ignore[assignment]
    return widget
