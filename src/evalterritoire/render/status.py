"""What a batch keeps in its output directory, and what decides that a report is fresh.

Owns the files of an output directory other than the reports' content: the atomic write every
file goes through (:func:`_atomic_write`: temporary file in the same directory, then rename,
usual permissions), file hashes (:func:`_sha256_file`), the status record
(:data:`STATUS_FILE`, one entry per territory) with its append-only journal (a killed run loses
nothing), the fingerprint of the package's own sources (:func:`_hash_package_sources`,
:func:`_package_fingerprint`) and the freshness test of a status entry (:func:`_is_fresh`).

The digest of a task (``_task_digest``) stays in :mod:`evalterritoire.render.reports`, where it reads
``_package_fingerprint`` at call time (tests replace it there). Imports nothing from the other render
modules.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Status record of an output directory (one entry per territory).
STATUS_FILE = ".render_status.json"
_JOURNAL_FILE = ".render_status.jsonl"
_TMP_PREFIX = ".et-"


# --------------------------------------------------------------------------- atomic files
@functools.cache
def _file_mode() -> int:
    """Mode of a new file under the process umask (``mkstemp`` alone would give 0o600)."""
    try:  # Linux: read the umask without changing it (os.umask is process-wide, not atomic)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file in the same directory, then rename it.

    A reader (or a killed run) never sees a partial file; the file gets the usual permissions
    of a new file (``0o666`` minus the umask), not the private ones of a temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), _file_mode())
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- status record
def _load_status(out_dir: Path) -> dict[str, dict[str, Any]]:
    status: dict[str, dict[str, Any]] = {}
    path = out_dir / STATUS_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            status.update(data.get("territories", {}))
        except (ValueError, AttributeError):
            status = {}  # a corrupt record only costs re-rendering
    journal = out_dir / _JOURNAL_FILE
    if journal.is_file():
        for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                status[entry["territory"]] = _status_entry(entry)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by an interrupted run
    return status


def _status_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "attempts": record.get("attempts"),
        "digest": record.get("digest"),
        "error": record.get("error"),
        "outputs": dict(sorted(record.get("outputs", {}).items())),
        "status": record.get("status"),
    }


def _write_status(out_dir: Path, status: Mapping[str, Mapping[str, Any]]) -> Path:
    path = out_dir / STATUS_FILE
    data = {"format": 1, "territories": {k: status[k] for k in sorted(status)}}
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    _atomic_write(path, text.encode("utf-8"))
    (out_dir / _JOURNAL_FILE).unlink(missing_ok=True)
    return path


#: Files of the package whose content can change a report (code, stylesheet, templates, data).
_SOURCE_SUFFIXES = frozenset({".py", ".css", ".html", ".yaml", ".yml", ".md", ".json", ".toml"})


def _hash_package_sources(root: Path) -> str:
    """SHA-256 over the package's source files (relative path and content, sorted).

    Parameters
    ----------
    root : Path
        The package directory.

    Returns
    -------
    str
        Hex digest; byte-code caches and hidden files are ignored.
    """
    digest = hashlib.sha256()
    files = sorted(
        path
        for path in root.rglob("*")
        if path.suffix in _SOURCE_SUFFIXES
        and path.is_file()
        and not any(
            part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts
        )
    )
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(_sha256_file(path).encode("ascii") + b"\n")
    return digest.hexdigest()


@functools.cache
def _package_fingerprint() -> str:
    """Hash of this package's sources, computed once per process (see :func:`_task_digest`)."""
    import evalterritoire

    return _hash_package_sources(Path(evalterritoire.__file__).resolve().parent)


def _is_fresh(
    entry: Mapping[str, Any] | None, digest: str, formats: Sequence[str], out_dir: Path
) -> bool:
    if not entry or entry.get("status") != "ok" or entry.get("digest") != digest:
        return False
    outputs = entry.get("outputs", {})
    return all(fmt in outputs and (out_dir / outputs[fmt]).is_file() for fmt in formats)
