"""The one kind of error a user can fix: :class:`UserError`, said in one line that names the
file or option and what was expected. Front ends print it and exit 2 (batch mode, ``diffui
queue``) or show it (the UI); anything else is a bug or the machine's (an OSError)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix (an experiments file, a command line, a damaged file of a
    runs folder); ``str()`` is the one line to show."""
