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

from evalterritoire.codebook import Codebook
from evalterritoire.codebook.text import normalise_header, role_of_header
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
    """What a header cell names: a variable, an option column, or a column to keep or ignore.

    In this order: the codebook's ``columns.map`` (source header → variable or
    ``<id>__<option>``); a variable's id, label or synonym (case, accents, spaces, ``_`` and
    ``-`` alike); a pandas-renamed duplicate (``q3.1``); a multi-select option column
    (``item/option``, ``item__option``, ``item[option]``); a Kobo group prefix (``groupe/item``);
    the ``columns.keep`` then ``columns.ignore`` patterns. Returns ``("var", id)``,
    ``("opt", id, option)``, ``("keep", header)``, ``("ignored", header)``, ``("unnamed",)``,
    ``("mangled", cell, id)`` or ``("unknown", cell)``.
    """
    key = normalise_header(cell)
    if key == "":
        return ("unnamed",)
    mapped = codebook.columns.target(cell)
    if mapped is not None:
        base, _, option = mapped.partition("__")
        return ("opt", base, option) if option else ("var", base)
    index = codebook.header_index
    if key in index:
        return ("var", index[key])
    mangled = re.fullmatch(r"(.+)\.(\d+)", key)
    if mangled and mangled.group(1) in index:
        # pandas renames a repeated column 'q3' to 'q3.1': a duplicated header in disguise
        # (unless it names an option of a multi-select item: 'item.2')
        base = codebook[index[mangled.group(1)]]
        if base.type != "multi_select" or mangled.group(2) not in {
            normalise_header(str(k)) for k in base.options
        }:
            return ("mangled", cell, base.id)
    option = _option_target(cell, codebook)
    if option is not None:
        return option
    if "/" in key:  # Kobo group prefix "groupe/item"
        tail = key.rsplit("/", 1)[-1]
        if tail in index:
            return ("var", index[tail])
    if codebook.columns.keeps(cell):
        return ("keep", cell.strip())
    if codebook.columns.ignores(cell):
        return ("ignored", cell.strip())
    return ("unknown", cell)


def _option_target(cell: str, codebook: Codebook) -> tuple[str, ...] | None:
    """``("opt", id, option)`` for a 0/1 column of a multi-select, else None."""
    m = re.match(r"^(.+?)(?:__|/|\[|\.)([^\]/]+)\]?$", cell.strip())
    if not m:
        return None
    base = normalise_header(m.group(1)).rsplit("/", 1)[-1]
    vid = codebook.header_index.get(base)
    if vid and codebook[vid].type == "multi_select":
        opt = normalise_header(m.group(2))
        for okey, olabel in codebook[vid].options.items():
            if opt in (normalise_header(okey), normalise_header(olabel)):
                return ("opt", vid, okey)
    return None


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
        if t[0] == "unnamed":
            continue
        key = (t[0], normalise_header(t[1])) if t[0] in _UNMATCHED else t
        if key in seen:
            dups.append((seen[key], j))
        seen.setdefault(key, j)
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
        for vid in missing:
            close = _columns_like(codebook[vid], unknown)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            hints.append(f"{vid}{hint}")
        shown = ", ".join(repr(h) for h in header)
        raise FileRejectedError(
            f"{name}: missing required column(s) {', '.join(hints)}; header on line {line} has "
            f"{len(header)} column(s): {shown}"
        )
    return {"targets": targets}


#: Targets of header cells that match no variable (compared by normalised header for duplicates).
_UNMATCHED = frozenset({"unknown", "keep", "ignored"})


def _columns_like(var, columns: Sequence[str]) -> list[str]:
    """Header cells that could be ``var``: of its role, or close to its id, label or synonyms."""
    out = [c for c in columns if var.role is not None and role_of_header(c) == var.role]
    choices = {normalise_header(c): c for c in columns}
    for cand in (var.id, var.label_fr, *var.synonyms):
        for close in difflib.get_close_matches(normalise_header(cand), list(choices), 1, 0.75):
            if choices[close] not in out:
                out.append(choices[close])
    return out


def _suggest_variable(header: str, codebook: Codebook, exclude: set[str]) -> str:
    """`` → id (the <role> role)?`` for the variable a header most likely is, else ``""``.

    Only variables the export does not already have (``exclude``) are suggested.
    """
    role = role_of_header(header)
    var = codebook.role(role) if role is not None else None
    if var is not None and var.id not in exclude:
        return f"; → {var.id} (the {role} role)?"
    names = {
        normalise_header(n): v.id
        for v in codebook
        if v.id not in exclude
        for n in (v.id, v.label_fr, *v.synonyms)
    }
    close = difflib.get_close_matches(normalise_header(header), list(names), 1, 0.75)
    return f"; → {names[close[0]]}?" if close else ""
