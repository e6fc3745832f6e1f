"""Writing artefacts: atomically, with the umask's permissions, and safe to open in a spreadsheet.

Every file the package writes (tables, contexts, reports, manifests, CSV downloads) goes through
:func:`write_bytes_atomic`: a temporary file in the same folder, flushed to disk, then renamed
over the target. A reader — or a run killed at any moment — sees the previous good file or the
new one, never a truncated one; the file gets the permissions of any new file (``0o666`` minus
the umask), not the private ``0o600`` of a temporary file, so a web server or a colleague
sharing the build can read it.

CSV files a person may open in Excel or LibreOffice are written by :func:`write_csv`, which
neutralises cells that a spreadsheet would evaluate as a formula (:func:`neutralise_cell`).
Result tables go through :func:`write_parquet` and JSON documents through :func:`write_json`
(both deterministic: no index, sorted keys); :func:`sha256_bytes` and :func:`sha256_file` hash
what was written or read (the provenance records of :mod:`evalterritoire.provenance`).

:func:`folder_lock` holds an exclusive lock on a build folder for the duration of a step, so
that two runs never write the same artefacts at the same time: the second one is refused with
a message naming the first (its process id and command). The lock is an ``flock`` on the file
``.evalterritoire.lock`` of the folder: the kernel releases it when its process ends, however
it ends, so a killed run never leaves a stale lock behind. It is re-entrant within a process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from evalterritoire.errors import BuildLockedError

__all__ = [
    "LOCK_FILE",
    "adopt_folder_locks",
    "file_mode",
    "folder_lock",
    "neutralise_cell",
    "sha256_bytes",
    "sha256_file",
    "sync_filesystem",
    "write_bytes_atomic",
    "write_csv",
    "write_json",
    "write_parquet",
    "write_text_atomic",
]

#: Prefix of the temporary files (hidden, and recognisable as leftovers of an interrupted write).
TMP_PREFIX = "."
#: A cell that is a plain number (a leading ``-`` or ``+`` is then not a formula); digits
#: separated by spaces (« +33 6 12… ») are not one: a spreadsheet would evaluate them.
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?%?")
#: First characters a spreadsheet reads as the start of a formula (OWASP « CSV injection »).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@functools.cache
def file_mode() -> int:
    """Permissions of a new file under this process's umask (``0o666 & ~umask``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path : str or Path
        Target file; its folder is created when missing.
    data : bytes
        The whole content.
    durable : bool, default True
        ``fsync`` the file before the rename and the folder after it, so that the new content
        survives a power cut, not only a killed process.

    Returns
    -------
    Path
        The target path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), file_mode())
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)
    return path


def write_text_atomic(
    path: str | Path, text: str, *, encoding: str = "utf-8", durable: bool = True
) -> Path:
    """Write text atomically (see :func:`write_bytes_atomic`)."""
    return write_bytes_atomic(path, text.encode(encoding), durable=durable)


def sync_filesystem(path: str | Path) -> None:
    """Flush to disk everything written on the filesystem that holds ``path``, in one call.

    For a batch of files written with ``durable=False`` (each one still atomic: a killed run
    leaves the old file or the new one): once this returns, the whole batch survives a power
    cut too, for one flush instead of two ``fsync`` a file (a national wave's downloads are
    ~25,000 files). Linux's ``syncfs``; elsewhere ``os.sync`` (every filesystem) when the
    platform has it.

    Parameters
    ----------
    path : str or Path
        A file or folder on the filesystem to flush.
    """
    import ctypes
    import ctypes.util

    syncfs = None
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        syncfs = getattr(libc, "syncfs", None)
    if syncfs is not None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    if hasattr(os, "sync"):
        os.sync()


def neutralise_cell(value: Any) -> Any:
    """A cell a spreadsheet will show as text, never evaluate.

    A string starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed
    with an apostrophe (``'=1+2``), unless it is a plain number (``-1,5``, ``+33``, ``-2e3``).
    Other values are returned unchanged.

    Examples
    --------
    >>> neutralise_cell("=1+2")
    "'=1+2"
    >>> neutralise_cell("-1,5")
    '-1,5'
    """
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    if _PLAIN_NUMBER.fullmatch(value.strip()):
        return value
    return "'" + value


def write_csv(
    frame: Any,
    path: str | Path,
    *,
    sep: str = ",",
    encoding: str = "utf-8",
    text_columns: Iterable[str] | None = None,
) -> Path:
    """Write a table as CSV atomically, with every text cell neutralised for spreadsheets.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table (written without its index, Unix line ends).
    path : str or Path
        Target file.
    sep : str, default ","
        Field separator (``";"`` for the French Excel downloads).
    encoding : str, default "utf-8"
        ``"utf-8-sig"`` adds the byte-order mark Excel needs to read UTF-8.
    text_columns : iterable of str, optional
        Columns to neutralise (default: every column of object or string dtype).

    Returns
    -------
    Path
        The target path.
    """
    import pandas as pd

    out = frame.copy()
    columns = (
        list(text_columns)
        if text_columns is not None
        else [
            c
            for c in out.columns
            if pd.api.types.is_object_dtype(out[c]) or pd.api.types.is_string_dtype(out[c])
        ]
    )
    for column in columns:
        out[column] = out[column].map(neutralise_cell, na_action="ignore")
    text = out.to_csv(index=False, sep=sep, lineterminator="\n")
    return write_bytes_atomic(path, text.encode(encoding))


# --------------------------------------------------------------------------- tables and JSON
def _json_default(value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.name
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    return str(value)


def parquet_bytes(frame: Any) -> bytes:
    """The Parquet bytes of a table as the pipeline writes it (no index, pandas metadata)."""
    import io

    buffer = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(buffer, index=False)
    return buffer.getvalue()


def json_bytes(obj: Any) -> bytes:
    """Indented UTF-8 JSON with sorted keys and a final newline (numpy values as Python's)."""
    text = json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=_json_default)
    return (text + "\n").encode("utf-8")


def write_parquet(frame: Any, path: str | Path) -> Path:
    """Write a table as Parquet atomically (see :func:`write_bytes_atomic`).

    Parameters
    ----------
    frame : pandas.DataFrame
        The table; its index is dropped.
    path : str or Path
        Target file.

    Returns
    -------
    Path
        The target path.
    """
    return write_bytes_atomic(path, parquet_bytes(frame))


def write_json(obj: Any, path: str | Path) -> Path:
    """Write a JSON document atomically (sorted keys, indented, numpy values converted)."""
    return write_bytes_atomic(path, json_bytes(obj))


def sha256_bytes(data: bytes) -> str:
    """sha256 of bytes (hex)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes (hex), read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- folder lock
#: Lock file of a build folder (holds the process id and command of the run holding it).
LOCK_FILE = ".evalterritoire.lock"
_HELD: dict[str, list[int]] = {}  # resolved folder → [file descriptor, depth]
_HELD_GUARD = threading.Lock()
_ADOPTED: set[str] = set()  # resolved folders whose lock this process's parent holds for it


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"process {int(info['pid'])}: {str(info['command'])[:200]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _acquire(folder: Path, command: str) -> int:
    """Open and lock ``folder/LOCK_FILE`` without waiting; its file descriptor."""
    import fcntl

    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, file_mode())
    except OSError as exc:
        raise BuildLockedError(
            f"cannot lock {folder} ({exc.strerror}): the folder must be writable"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise BuildLockedError(
            f"{folder} is being written by another evalterritoire run ({_holder(path)}); "
            "wait for it to finish, or stop it, then run this command again"
        ) from None
    info = json.dumps({"pid": os.getpid(), "command": command}).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)
    return fd


def adopt_folder_locks(folders: Sequence[str | Path]) -> None:
    """In a child process, take the locks of ``folders`` as held: its parent holds them.

    For a process that the holder of the locks starts to do part of its step, and waits for
    while it holds them (the child must end when its parent does:
    :func:`evalterritoire.render.lifeline.watch_parent`). :func:`folder_lock` then lets the
    child write in these folders without locking them again, which ``flock`` would refuse.

    Parameters
    ----------
    folders : sequence of str or Path
        The build folders whose locks the parent holds.
    """
    _ADOPTED.update(str(Path(folder).resolve()) for folder in folders)


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str = "evalterritoire") -> Iterator[Path]:
    """Hold the exclusive lock of a build folder (re-entrant within this process).

    Parameters
    ----------
    folder : str or Path
        The folder (created when missing).
    command : str
        What holds the lock, shown to a run that is refused.

    Yields
    ------
    Path
        The resolved folder.

    Raises
    ------
    BuildLockedError
        When another process holds the lock (the message names it), or the folder cannot be
        written.
    """
    key = str(Path(folder).resolve())
    if not hasattr(os, "O_CLOEXEC") or key in _ADOPTED:  # no flock; or the parent holds it
        yield Path(key)
        return
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is None:
            _HELD[key] = held = [_acquire(Path(key), command), 0]
        held[1] += 1
    try:
        yield Path(key)
    finally:
        with _HELD_GUARD:
            held[1] -= 1
            if held[1] == 0:
                del _HELD[key]
                os.close(held[0])  # closing the descriptor releases the flock
