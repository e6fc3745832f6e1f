"""Raw table of one export and its header: what every reader produces, before any typing.

Owns :class:`_Raw` (the text cells of the data records, dictionary-encoded per column, with their
physical lines, the structurally bad records and the cell flags of the reader), the format
detection by magic bytes (:func:`_sniff_format`), the footer-line pattern shared by the readers,
and the header logic: mapping a header cell to a codebook target (synonyms, Kobo group prefixes,
multi-select option columns, pandas-mangled duplicates), locating the header among the first
rows (multi-row / Qualtrics headers) and rejecting duplicated or missing required columns.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, normalise_text
from evalterritoire.errors import FileRejectedError

_FOOTER = re.compile(r"^(total|totaux|sous-total|source\s*:|sources\s*:)(\W|$)")


@dataclass
class _Raw:
    """Text cells of the data records of one export, before any interpretation."""

    header: list[str]
    header_line: int
    codes: list[np.ndarray]  # per header column: int codes into uniques
    uniques: list[np.ndarray]  # per header column: distinct texts (object arrays)
    lines: np.ndarray  # physical (start) line of each data row
    raw_text: Callable[[np.ndarray], list[str]]
    bad_records: list[dict[str, Any]] = field(default_factory=list)  # line, raw, rule, message
    cell_errors: list[tuple[int, int, str, str, str]] = field(default_factory=list)
    blank_lines: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    norms: list[tuple[str, str, int, str]] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.lines)


def _factorize_rows(
    rows: list[list[str]], n_cols: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    codes, uniques = [], []
    for j in range(n_cols):
        col = np.array([r[j] if j < len(r) else "" for r in rows], dtype=object)
        c, u = pd.factorize(col) if len(col) else (np.zeros(0, np.intp), np.array([], object))
        codes.append(np.asarray(c, dtype=np.int64))
        uniques.append(np.asarray(u, dtype=object))
    return codes, uniques


# --------------------------------------------------------------------------- detection
def _sniff_format(path: Path, head: bytes) -> str:
    low = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    if head.startswith((b"$FL2", b"$FL3")):
        return "sav"
    if head.startswith(b"PAR1"):
        return "parquet"
    if low.startswith((b"<html", b"<!doctype", b"<table", b"<?xml")):
        return "html"
    ext = path.suffix.lower()
    if ext in {".xlsx", ".xlsm", ".xls", ".sav", ".parquet"}:
        return "mismatch"
    return "csv"


# --------------------------------------------------------------------------- header
def _header_target(cell: str, codebook: Codebook) -> tuple[str, ...]:
    key = normalise_text(cell)
    if key == "":
        return ("unnamed",)
    if key in codebook.header_lookup:
        return ("var", codebook.header_lookup[key])
    mangled = re.fullmatch(r"(.+)\.(\d+)", key)
    if mangled and mangled.group(1) in codebook.header_lookup:
        # pandas renames a repeated column 'q3' to 'q3.1': a duplicated header in disguise
        # (unless it names an option of a multi-select item: 'item.2')
        base = codebook[codebook.header_lookup[mangled.group(1)]]
        if base.type != "multi_select" or mangled.group(2) not in {
            normalise_text(str(k)) for k in base.options
        }:
            return ("mangled", cell, base.id)
    m = re.match(r"^(.+?)(?:__|/|\[|\.)([^\]/]+)\]?$", cell.strip())
    if m:
        base = normalise_text(m.group(1)).rsplit("/", 1)[-1]
        vid = codebook.header_lookup.get(base)
        if vid and codebook[vid].type == "multi_select":
            opt = normalise_text(m.group(2))
            for okey, olabel in codebook[vid].options.items():
                if opt in (normalise_text(okey), normalise_text(olabel)):
                    return ("opt", vid, okey)
    if "/" in key:  # Kobo group prefix "groupe/item"
        tail = key.rsplit("/", 1)[-1]
        if tail in codebook.header_lookup:
            return ("var", codebook.header_lookup[tail])
    return ("unknown", cell)


def _looks_like_header(cells: Sequence[str], codebook: Codebook) -> bool:
    filled = [c for c in cells if c.strip()]
    if not filled:
        return False
    if any(
        c.lstrip().startswith('{"ImportId"') or c.lstrip().startswith("{'ImportId'") for c in filled
    ):
        return True
    known = sum(_header_target(c, codebook)[0] in {"var", "opt"} for c in filled)
    return known >= max(2, 0.5 * len(filled))


def _required(codebook: Codebook) -> list[str]:
    return [v.id for v in codebook if v.required and v.level == "respondent"]


def _found_required(cells: Sequence[str], codebook: Codebook) -> set[str]:
    return {t[1] for t in (_header_target(c, codebook) for c in cells) if t[0] == "var"}


def _locate_header(
    candidates: list[tuple[int, list[str]]],
    codebook: Codebook,
    name: str,
    header_row: int | None,
    profile: str,
) -> tuple[int, list[int]]:
    """Pick the header among the first non-blank rows; returns (index, extra header indexes)."""
    if not candidates:
        raise FileRejectedError(f"{name}: the file is empty (no header, no data)")
    required = set(_required(codebook))
    if header_row is not None:
        idx = next((i for i, (ln, _) in enumerate(candidates) if ln == header_row), None)
        if idx is None:
            raise FileRejectedError(
                f"{name}: --header-row {header_row} is not a non-blank row of the file"
            )
    else:
        idx = 0
    extra: list[int] = []
    nxt = candidates[idx + 1 : idx + 3]
    import_rows = [k for k, (_, cells) in enumerate(nxt) if any("ImportId" in c for c in cells)]
    if import_rows:
        extra = list(range(idx + 1, idx + 2 + import_rows[-1]))
    else:
        j = idx + 1
        while (
            j < len(candidates) and j <= idx + 2 and _looks_like_header(candidates[j][1], codebook)
        ):
            extra.append(j)
            j += 1
    missing = required - _found_required(candidates[idx][1], codebook)
    if header_row is None and profile != "qualtrics":
        later = [
            candidates[k][0]
            for k in range(idx + 1, len(candidates))
            if not (required - _found_required(candidates[k][1], codebook))
        ]
        if missing and later:
            raise FileRejectedError(
                f"{name}: line {candidates[idx][0]} is not the header; the column names appear "
                f"on line {later[0]} (multi-row or merged header): pass --header-row {later[0]}"
            )
        if extra:
            kind = (
                "Qualtrics-style header rows (question texts / ImportId)"
                if any("ImportId" in c for k in extra for c in candidates[k][1])
                else "several header rows"
            )
            lines = ", ".join(str(candidates[k][0]) for k in extra)
            raise FileRejectedError(
                f"{name}: {kind} on line(s) {lines} after the header: pass --profile qualtrics "
                f"or --header-row N to say which row holds the column names"
            )
    return idx, extra


def _map_header(header: list[str], codebook: Codebook, name: str, line: int) -> dict[str, Any]:
    """Map header cells to codebook targets; reject duplicates and missing required columns."""
    targets = [_header_target(c, codebook) for c in header]
    seen: dict[tuple, int] = {}
    mangled = [(j, t) for j, t in enumerate(targets) if t[0] == "mangled"]
    if mangled:
        desc = "; ".join(f"{header[j]!r} (column {j + 1}, a copy of {t[2]!r})" for j, t in mangled)
        raise FileRejectedError(
            f"{name}: duplicated column names on line {line}: {desc}; a tool renamed a repeated "
            "column: re-export the file with unique column names"
        )
    dups = []
    for j, t in enumerate(targets):
        if t[0] in {"unnamed", "unknown"}:
            if t[0] == "unknown":
                key = ("unknown", normalise_text(t[1]))
                if key in seen:
                    dups.append((seen[key], j))
                seen.setdefault(key, j)
            continue
        if t in seen:
            dups.append((seen[t], j))
        seen.setdefault(t, j)
    if dups:
        desc = "; ".join(
            f"{header[a]!r} (column {a + 1}) and {header[b]!r} (column {b + 1})" for a, b in dups
        )
        raise FileRejectedError(f"{name}: duplicated column names on line {line}: {desc}")
    found = {t[1] for t in targets if t[0] in {"var", "opt"}}
    missing = [v for v in _required(codebook) if v not in found]
    if missing:
        unknown = [t[1] for t in targets if t[0] == "unknown"]
        hints = []
        choices = {normalise_text(u): u for u in unknown}
        for vid in missing:
            var = codebook[vid]
            close: list[str] = []
            for cand in (var.id, var.label_fr, *var.synonyms):
                close += difflib.get_close_matches(
                    normalise_text(cand), list(choices), n=1, cutoff=0.75
                )
            hint = f" (did you mean {choices[close[0]]!r}?)" if close else ""
            hints.append(f"{vid}{hint}")
        shown = ", ".join(repr(h) for h in header[:12]) + (" …" if len(header) > 12 else "")
        raise FileRejectedError(
            f"{name}: missing required column(s) {', '.join(hints)}; header on line {line} has "
            f"{len(header)} column(s): {shown}"
        )
    return {"targets": targets}
