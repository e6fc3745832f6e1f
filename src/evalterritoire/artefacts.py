"""Writing artefacts: atomically, with the umask's permissions, and safe to open in a spreadsheet.

Every file the package writes (tables, contexts, reports, manifests, CSV downloads) goes through
:func:`write_bytes_atomic`: a temporary file in the same folder, flushed to disk, then renamed
over the target. A reader — or a run killed at any moment — sees the previous good file or the
new one, never a truncated one; the file gets the permissions of any new file (``0o666`` minus
the umask), not the private ``0o600`` of a temporary file, so a web server or a colleague
sharing the build can read it.

CSV files a person may open in Excel or LibreOffice are written by :func:`write_csv`, which
neutralises cells that a spreadsheet would evaluate as a formula (:func:`neutralise_cell`).
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "file_mode",
    "neutralise_cell",
    "write_bytes_atomic",
    "write_csv",
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


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write text atomically (see :func:`write_bytes_atomic`)."""
    return write_bytes_atomic(path, text.encode(encoding))


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
