"""The one way the package writes a file: atomically, so a reader never sees half a profile."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from wasmtime_gp._errors import ProfilerValueError


def check_writable(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path, refused (ProfilerValueError) if it is a directory or its directory does not exist."""
    target = Path(path)
    if target.is_dir():
        raise ProfilerValueError(f"{target} is a directory; give a file name")
    if not target.parent.is_dir():
        raise ProfilerValueError(f"cannot write {target}: {target.parent} is not a directory")
    return target


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, fsync it, and rename it over `path`; return the path.

    The file gets the usual umask-based mode (not mkstemp's 0600); on any error the temporary file is removed.
    """
    target = check_writable(path)
    temporary = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return target
