"""Files written so that a reader never sees half of one: atomic writes (temp file, fsync,
rename), folders made with a one-line error, and an OSError told in one line."""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any

import platformdirs


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path``, fsync, rename: readers see old or new, never half.
    A failure (a full or read-only disk) leaves no temp file and raises an OSError naming
    ``path`` (see :func:`os_error_line`)."""
    path = Path(path)
    tmp = None
    try:
        make_dir(path.parent)
        fd, tmp = _temp_file(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:
            raise write_error(e, path) from None
        raise


def _temp_file(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path``, open for writing: (descriptor, its path). Its mode is
    ``path``'s when it replaces a file (a user's ``chmod`` stays), else 0666 less the umask,
    as ``open()`` makes files (``tempfile.mkstemp`` makes them 0600, which a report or a run
    folder shared with others must not be)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        break
    try:
        os.chmod(fd, stat.S_IMODE(os.stat(path).st_mode))
    except OSError:  # no file to replace, or its mode cannot be copied: the default stays
        pass
    return fd, str(tmp)


def make_dir(path: Path) -> Path:
    """``mkdir -p path``; a failure raises an OSError marked as a failed write."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(e, e.filename or path) from None
    return Path(path)


def write_error(e: OSError, path: Path) -> OSError:
    """``e`` (same class and errno) naming ``path``, marked as a failed write."""
    err = OSError(e.errno, e.strerror, str(path))
    setattr(err, "writing", True)  # noqa: B010 (OSError picks its subclass by errno; no subclass of ours)
    return err


def os_error_line(e: OSError) -> str:
    """An OSError in one line for the user: "no space left on the device of PATH", "cannot
    write PATH: REASON" (a failed write, see :func:`write_error`) or "cannot use PATH: REASON"."""
    where = e.filename if e.filename is not None else "a file"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device of {where} ({e.strerror}): free some and run again"
    if getattr(e, "writing", False) or e.errno == errno.EROFS:
        return f"cannot write {where}: {e.strerror or e}"
    return f"cannot use {where}: {e.strerror or e}"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def atomic_save(save_fn, path: Path) -> None:
    """``save_fn(file_object)`` into ``path`` atomically (for torch.save, numpy.save, PIL)."""

    buf = io.BytesIO()
    save_fn(buf)
    atomic_write_bytes(path, buf.getvalue())


def keep_file(path: Path, keep: Path) -> None:
    """Make ``keep`` a copy of ``path`` (a hard link where the file system has them) before
    ``path`` is replaced; ``path`` never goes missing meanwhile. Nothing when there is no
    ``path``."""

    if not path.exists():
        return
    tmp = keep.with_name(f".{keep.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
    os.replace(tmp, keep)


def cache_dir() -> Path:
    """diffui's cache folder (the FID classifier, the plan's calibrations):
    ``$DIFFUI_CACHE_DIR``, or the user cache folder (platformdirs)."""
    if os.environ.get("DIFFUI_CACHE_DIR"):
        return Path(os.environ["DIFFUI_CACHE_DIR"])
    return Path(platformdirs.user_cache_dir("diffui"))
