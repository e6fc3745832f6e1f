"""What a batch keeps in its output directory, and what decides that a report is fresh.

Owns the files of an output directory other than the reports' content: the atomic write every
file goes through (:func:`_atomic_write`, i.e. :func:`evalterritoire.artefacts.write_bytes_atomic`:
temporary file in the same directory, fsync, rename, usual permissions), file hashes
(:func:`_sha256_file`), the status record (:data:`STATUS_FILE`, one entry per territory) with its
append-only journal (a killed run loses nothing), the removal of the reports of territories that
left the data (:func:`prune_reports`), the fingerprint of the package's own sources
(:func:`_hash_package_sources`, :func:`_package_fingerprint`) and the freshness test of a status
entry (:func:`_is_fresh`).

The digest of a task (``_task_digest``) stays in :mod:`evalterritoire.render.reports`, where it reads
``_package_fingerprint`` at call time (tests replace it there). Imports nothing from the other render
modules.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evalterritoire.artefacts import TMP_PREFIX, write_bytes_atomic

#: Status record of an output directory (one entry per territory).
STATUS_FILE = ".render_status.json"
_JOURNAL_FILE = ".render_status.jsonl"
#: Prefix of the temporary files of :func:`_atomic_write` (those of an interrupted run are removed).
_TMP_PREFIX = TMP_PREFIX


# --------------------------------------------------------------------------- atomic files
def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` atomically (:func:`evalterritoire.artefacts.write_bytes_atomic`).

    A reader (or a killed run) never sees a partial file; the file gets the usual permissions
    of a new file (``0o666`` minus the umask), not the private ones of a temporary file.
    """
    write_bytes_atomic(path, data)


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


#: Extensions of the files a batch writes (one per format).
_OUTPUT_SUFFIXES = frozenset({".html", ".pdf", ".docx", ".ipynb"})


def prune_downloads(data_dir: str | Path, keep: Iterable[str]) -> list[Path]:
    """Remove the download folders (``donnees/<code>/``) of territories not in ``keep``.

    The national folder stays. Like :func:`prune_reports`, so that a territory that left the
    data leaves no file behind in the publication.

    Parameters
    ----------
    data_dir : str or Path
        The publication's ``donnees`` folder.
    keep : iterable of str
        The territory codes that still have a report.

    Returns
    -------
    list of Path
        The folders removed, sorted.
    """
    import shutil

    from evalterritoire.manifest import safe_filename

    folder = Path(data_dir)
    if not folder.is_dir():
        return []
    stems = {safe_filename(code) for code in keep} | {"national"}
    removed = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in stems)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def prune_reports(out_dir: str | Path, keep: Iterable[str]) -> list[Path]:
    """Remove the reports of the territories that are not in ``keep`` (they left the data).

    Every ``<stem>.html|pdf|docx|ipynb`` of ``out_dir`` whose stem is not the file name of a
    kept territory is deleted, and the status entries of the other territories are dropped, so
    neither the index, the manifest nor a later ``--only-failed`` sees them again.

    Parameters
    ----------
    out_dir : str or Path
        A batch's output directory.
    keep : iterable of str
        The territory codes that still have a report.

    Returns
    -------
    list of Path
        The files removed, sorted.
    """
    from evalterritoire.manifest import safe_filename

    out = Path(out_dir)
    if not out.is_dir():
        return []
    codes = set(keep)
    stems = {safe_filename(code) for code in codes}
    removed = sorted(
        p
        for p in out.iterdir()
        if p.is_file() and p.suffix in _OUTPUT_SUFFIXES and p.stem not in stems
    )
    for path in removed:
        path.unlink(missing_ok=True)
    status = _load_status(out)
    if set(status) - codes:
        _write_status(out, {code: entry for code, entry in status.items() if code in codes})
    return removed
