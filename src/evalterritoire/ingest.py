"""Ingestion: any survey export → typed valid rows + quarantine + ingestion report.

Flow (one export file)::

    bytes ─ format by magic bytes ─ decode (BOM, UTF-8, cp1252; mixed → reject)
          ─ records with physical start lines (RFC 4180 quotes, vectorised with numpy)
          ─ header (synonyms, Qualtrics/multi-row detection, required columns)
          ─ cells as text (pyarrow, dictionary-encoded: every distinct text parsed once)
          ─ normalise with the codebook (labels, aliases, special codes, decimal comma, dates)
          ─ row checks (duplicates, coherence) ─ pandera lazy validation of the typed data
          ─ IngestResult(valid, quarantine, report)

Nothing is lost: every record is valid, quarantined (raw text, physical line, every reason) or
counted as a blank line, and ``rows_valid + rows_quarantined + blank_lines == rows_read`` is
asserted for every file. Every normalisation is counted in the report. The situations of
``messy_exports.md`` and their handling are listed in :data:`SITUATIONS`.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .codebook import FLOAT_TYPES, INTEGER_TYPES, Codebook, Variable, normalise_text
from .errors import FileRejectedError, IngestError
from .schemas import build_response_schema, compute_schema_failures

__all__ = [
    "PROFILES",
    "SITUATIONS",
    "IngestResult",
    "combine_results",
    "ingest_file",
    "write_ingest_outputs",
]

PROFILES = ("auto", "limesurvey", "sphinx", "kobo", "qualtrics", "google-forms")
DELIMITERS = (";", ",", "\t", "|")
_DELIM_NAMES = {";": "semicolon", ",": "comma", "\t": "tab", "|": "pipe"}
#: Above this many distinct texts in a column, simple texts are parsed vectorised.
_PY_UNIQUE_LIMIT = 4000
_MAX_REPORTED_WARN_LINES = 10

SITUATIONS: dict[str, str] = {
    "utf-8 BOM / utf-16 BOM": "AUTO: BOM detected, decoded, encoding reported",
    "cp1252 file": "AUTO: decoded as cp1252 when every non-ASCII line fails UTF-8; reported",
    "utf-8 and cp1252 lines mixed": "REJECT naming the lines and bytes",
    "garbled text (Ã©, â€™)": "warning naming lines and columns; repaired only with "
    "repair_mojibake=True (--repair-mojibake), each repair counted",
    "delimiter , ; tab |": "AUTO sniffed on the first lines, constant field count confirmed",
    "decimal comma, (narrow) NBSP / space thousands": "NORM on numeric columns, counted",
    "too many / too few fields": "QUAR with the raw line (rule field_count)",
    "multi-line quoted fields; unclosed quote": "RFC 4180; unclosed quote → QUAR its first line",
    "labels instead of codes": "NORM via codebook labels/aliases after normalise_text; unknown → QUAR",
    "special codes": "declared spellings → <id>__special; undeclared → QUAR",
    "SPSS user-missing values": "read with user_missing=True, mapped through value labels",
    "category variants, O/N/1/0": "NORM via declared aliases, counted",
    "header variants and synonyms": "NORM (counted); missing required columns → REJECT with suggestions",
    "duplicated header names": "REJECT (pandas-style 'q3.1' suffixes of a known column too)",
    "multi-row / Qualtrics headers": "REJECT with a hint unless --profile qualtrics or --header-row",
    "trailing delimiter → empty unnamed column": "dropped when empty (NORM); data there → QUAR",
    "duplicate respondent ids": "QUAR every copy within a wave, diverging columns named; the "
    "same id in another wave is fine",
    "dates: serial, dd/mm/yyyy, impossible, 2-digit years": "serial/day-first NORM; others QUAR",
    "ids in scientific notation": "QUAR (irrecoverable, re-export as text)",
    "INSEE codes without leading zero, 2a004, 75056.0": "NORM (pad 4 digits, upper, drop .0) + warning",
    "blank / separator-only lines; Total / Source lines": "blank counted; footer lines QUAR",
    "free numbers (trois, 5+, 2.0, 1,0, -2)": "integral floats NORM; others QUAR",
    "likert as floats": "4.0 NORM, 2.5 QUAR (never truncated)",
    "whole item on the wrong scale": "one column-level error, column emptied, rows kept",
    "multi-select in one cell": "split on declared options, longest first → 0/1 columns",
    "Kobo select_multiple text vs 0/1 columns": "QUAR with both values",
    "workbook data not on the first sheet": "sheet with the required columns; ambiguous → REJECT",
    "Excel error cells, formulas without cached value": "QUAR (read with openpyxl)",
    ".xls that is HTML, empty file, header without data": "REJECT",
    "cross-column incoherence": "QUAR naming the columns involved",
}

#: Cross-column coherence rules: (gate column, gate value, dependent columns).
COHERENCE_RULES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    (
        "part_existe",
        0.0,
        (
            "part_nb_actifs",
            "part_types_partenaires",
            "part_modes",
            "part_echelle",
            "part_objectifs",
        ),
    ),
    ("mat_eval_pratiquee", 0.0, ("mat_eval_types",)),
)

_GARBLED = re.compile(
    "Ã[\u0080-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039"
    "\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a"
    "\u0153\u017e\u0178]|â€|Â[\u00a0-\u00bf]"
)
_NUMBER = re.compile(r"^([+-]?)(\d{1,3}(?:[ \u00a0\u202f\u2007]\d{3})+|\d+)(?:([.,])(\d+))?$")
_SCI = re.compile(r"^[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
_FR_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?: \d{1,2}:\d{2}(?::\d{2})?)?$")
_EXCEL_EPOCH = dt.date(1899, 12, 30)
_FOOTER = re.compile(r"^(total|totaux|sous-total|source\s*:|sources\s*:)(\W|$)")
_ID_STRUCT = re.compile(r"^[^\s]+(?:.*[^\s])?$")


# =============================================================================== result
@dataclass
class IngestResult:
    """Outcome of ingesting one export (or several combined).

    Attributes
    ----------
    valid : DataFrame
        Typed valid rows (codebook columns, ``source_file``, ``source_line``), sorted by
        territory code, respondent id, file and line.
    quarantine : DataFrame
        One row per quarantined record: ``source_file``, ``source_line``, ``respondent_id``,
        ``n_reasons``, ``reasons``, ``raw``.
    report : dict
        The ingestion report (see ``ingestion.json``).
    """

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict[str, Any]

    @property
    def status(self) -> str:
        """``ok``, ``partial`` or ``rejected``."""
        return str(self.report["status"])

    @property
    def exit_code(self) -> int:
        """0 all rows valid, 1 some rows quarantined (or column errors), 2 rejected."""
        return {"ok": 0, "partial": 1, "rejected": 2}[self.status]

    def summary(self) -> str:
        """Short human summary (French)."""
        r = self.report
        if self.status == "rejected":
            msgs = "; ".join(e["message"] for e in r["errors"][:3])
            return f"{r['file']} : fichier rejeté — {msgs}"
        lines = [
            f"{r['file']} : {r['status']} — {r['rows_read']} enregistrement(s) lu(s), "
            f"{r['rows_valid']} valide(s), {r['rows_quarantined']} en quarantaine, "
            f"{r['blank_lines']} ligne(s) vide(s)",
            f"  format {r['format']}, encodage {r['encoding']}, séparateur {r['delimiter']!r}"
            + (f", feuille {r['sheet']!r}" if r.get("sheet") else ""),
        ]
        if r["normalisations"]:
            total = sum(n["count"] for n in r["normalisations"])
            lines.append(f"  {total} normalisation(s) ({len(r['normalisations'])} sorte(s))")
        for w in r["warnings"][:5]:
            lines.append(f"  avertissement : {w}")
        for e in r["errors"][:5]:
            lines.append(f"  erreur : {e['message']}")
        if len(r["errors"]) > 5:
            lines.append(f"  … et {len(r['errors']) - 5} autre(s) erreur(s) (voir ingestion.json)")
        return "\n".join(lines)


QUARANTINE_COLUMNS = ["source_file", "source_line", "respondent_id", "n_reasons", "reasons", "raw"]


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_file": pd.Series([], dtype=str),
            "source_line": pd.Series([], dtype="int64"),
            "respondent_id": pd.Series([], dtype=str),
            "n_reasons": pd.Series([], dtype="int64"),
            "reasons": pd.Series([], dtype=str),
            "raw": pd.Series([], dtype=str),
        }
    )


def _base_report(name: str) -> dict[str, Any]:
    return {
        "file": name,
        "files": [name],
        "status": "rejected",
        "format": None,
        "encoding": None,
        "delimiter": None,
        "sheet": None,
        "header_line": None,
        "columns": {},
        "rows_read": 0,
        "rows_valid": 0,
        "rows_quarantined": 0,
        "blank_lines": 0,
        "normalisations": [],
        "warnings": [],
        "errors": [],
    }


def _rejected(name: str, message: str, meta: Mapping[str, Any] | None = None) -> IngestResult:
    report = _base_report(name)
    report.update({k: v for k, v in (meta or {}).items() if k in report})
    report["status"] = "rejected"
    report["errors"] = [
        {"line": None, "column": "", "value": "", "rule": "file_rejected", "message": message}
    ]
    return IngestResult(pd.DataFrame(), _empty_quarantine(), report)


# =============================================================================== raw table
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


def _decode(data: bytes, name: str, forced: str | None) -> tuple[str | None, str, list[str]]:
    """Return (text, encoding name, warnings); raise FileRejectedError when undecidable.

    ``text`` is None for pure ASCII without a forced encoding: the bytes are already the UTF-8
    text (no decoding of a large file into a string only to encode it back).
    """
    if forced:
        try:
            return data.decode(forced), forced, []
        except LookupError:
            raise FileRejectedError(f"{name}: unknown encoding {forced!r}") from None
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise FileRejectedError(
                f"{name}: cannot be decoded as {forced} (line {line}, byte 0x{data[exc.start]:02X})"
            ) from None
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig", []
        except UnicodeDecodeError as exc:
            line = data[: exc.start + 3].count(b"\n") + 1
            raise FileRejectedError(
                f"{name}: UTF-8 BOM but invalid UTF-8 at line {line} "
                f"(byte 0x{data[exc.start + 3]:02X}); re-export the file as UTF-8"
            ) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16", []
        except UnicodeDecodeError:
            raise FileRejectedError(
                f"{name}: UTF-16 BOM but the text is not valid UTF-16"
            ) from None
    head = data[:4096]
    if b"\x00" in head:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        enc = "utf-16-le" if odd > 0.4 * len(head) / 2 and even == 0 else None
        enc = "utf-16-be" if even > 0.4 * len(head) / 2 and odd == 0 else enc
        if enc:
            try:
                return data.decode(enc), enc, [f"{name}: UTF-16 without BOM detected ({enc})"]
            except UnicodeDecodeError:
                pass
        raise FileRejectedError(f"{name}: binary content (NUL bytes): not a text survey export")
    if data.isascii():
        return None, "utf-8", []
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    utf8_lines, bad_lines = [], []
    for i, line in enumerate(data.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8_lines.append(i)
        except UnicodeDecodeError as exc:
            bad_lines.append((i, line[exc.start]))
    if utf8_lines and bad_lines:
        ex = ", ".join(f"line {ln} byte 0x{b:02X}" for ln, b in bad_lines[:5])
        raise FileRejectedError(
            f"{name}: mixed encodings — lines {', '.join(map(str, utf8_lines[:5]))} are UTF-8 "
            f"but {len(bad_lines)} line(s) are not ({ex}); re-export the file in one encoding"
        )
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileRejectedError(
            f"{name}: unknown encoding (neither UTF-8 nor Windows-1252: line {line}, "
            f"byte 0x{data[exc.start]:02X})"
        ) from None
    return text, "cp1252", [f"{name}: decoded as Windows-1252 (cp1252), not UTF-8"]


def _split_fields(text: str, delim: str) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=False))
    except csv.Error:
        return text.split(delim)
    out: list[str] = []
    for k, r in enumerate(rows):
        if k and out:
            out[-1] += "\n" + (r[0] if r else "")
            out.extend(r[1:])
        else:
            out.extend(r)
    return out if rows else [""]


def _sniff_delimiter(lines: list[str]) -> str | None:
    best, best_score = None, (-1, -1)
    for d in DELIMITERS:
        counts = [len(_split_fields(ln, d)) for ln in lines]
        if not counts or counts[0] < 2:
            continue
        score = (sum(c == counts[0] for c in counts), counts[0])
        if score > best_score:
            best, best_score = d, score
    return best


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


# --------------------------------------------------------------------------- CSV reading
def _join_runs(
    buf: bytes, starts: np.ndarray, ends: np.ndarray, ends_nocr: np.ndarray, keep: np.ndarray
) -> bytes:
    """The records ``keep`` (sorted positions), newline-terminated, copied run by run.

    ``ends`` is the position of each record's newline and ``ends_nocr`` its end without a
    carriage return. Records that follow each other in the file (the next one starts right after
    this one's newline) are copied as one slice of ``buf``, so the cost is one ``memcpy`` per run
    of kept records rather than one per record.
    """
    if not len(keep):
        return b""
    adjacent = starts[keep[1:]] == ends[keep[:-1]] + 1
    brk = np.flatnonzero(~adjacent) + 1
    first = keep[np.concatenate([[0], brk])]
    last = keep[np.concatenate([brk - 1, [len(keep) - 1]])]
    mv = memoryview(buf)
    parts: list[Any] = []
    for a, b in zip(starts[first].tolist(), ends_nocr[last].tolist(), strict=True):
        parts.append(mv[a:b])
        parts.append(b"\n")
    return b"".join(parts)


def _read_csv(
    data: bytes,
    name: str,
    codebook: Codebook,
    *,
    encoding: str | None,
    delimiter: str | None,
    header_row: int | None,
    profile: str,
) -> _Raw:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    text, enc, warnings = _decode(data, name, encoding)
    buf = data if text is None or enc == "utf-8" else text.encode("utf-8")
    del text
    if not buf or buf.isspace():
        raise FileRejectedError(f"{name}: the file is empty")
    from ._csvscan import newlines, scan_records

    arr = np.frombuffer(buf, dtype=np.uint8)
    nl = newlines(arr)
    line_starts = np.concatenate([[0], nl + 1])

    def line_of(pos: np.ndarray) -> np.ndarray:
        return np.searchsorted(nl, pos, side="left") + 1

    n_lines = len(line_starts) - (1 if len(buf) and buf.endswith(b"\n") else 0)
    if header_row is not None and header_row > n_lines:
        raise FileRejectedError(
            f"{name}: --header-row {header_row} is beyond the end of the file ({n_lines} line(s))"
        )

    # physical lines for header / delimiter sniffing
    head_lines: list[tuple[int, str]] = []
    for i in range(min(len(line_starts), 400)):
        s = line_starts[i]
        e = nl[i] if i < len(nl) else len(buf)
        ln = buf[s:e].decode("utf-8").rstrip("\r")
        if ln.strip():
            head_lines.append((i + 1, ln))
        if len(head_lines) >= 30:
            break
    if not head_lines:
        raise FileRejectedError(f"{name}: the file is empty (blank lines only)")
    from_line = header_row or head_lines[0][0]
    sniff = [ln for i, ln in head_lines if i >= from_line]
    delim = delimiter
    if delim is None:
        delim = _sniff_delimiter(sniff)
        if delim is None:
            raise FileRejectedError(
                f"{name}: no delimiter found (tried ; , tab |): not a delimited survey export"
            )
    elif len(delim) != 1:
        raise FileRejectedError(f"{name}: the delimiter must be one character, got {delim!r}")
    dcode = ord(delim)

    # header among the first non-blank physical lines
    cands = [(ln, _split_fields(txt, delim)) for ln, txt in head_lines if ln >= from_line][:12]
    hidx, extra = _locate_header(cands, codebook, name, header_row, profile)
    header = [h.strip() for h in cands[hidx][1]]
    header_line = cands[hidx][0]
    n_fields = len(header)
    last_header = cands[extra[-1]][0] if extra else header_line
    for k in extra:
        warnings.append(f"{name}: line {cands[k][0]} skipped as an extra header row")
    skipped_before = sum(1 for ln, _ in head_lines if ln < header_line)
    if skipped_before:
        warnings.append(
            f"{name}: {skipped_before} non-blank line(s) before the header line {header_line} skipped"
        )
    broken: list[tuple[int, int]] = []

    # rebuild records after the header with the header's field count (stray-quote breaking)
    n_total = len(buf)
    data_start = int(line_starts[last_header]) if last_header < len(line_starts) else n_total
    pieces_s, pieces_e, pieces_q, pieces_d = [], [], [], []
    pos = data_start
    while pos < n_total:
        st, en, qc, dc, unclosed = scan_records(arr, pos, dcode, nl)
        cut = len(st) - 1 if unclosed and len(st) else None
        multi = np.flatnonzero(line_of(en) - line_of(st) > 0) if len(st) else np.zeros(0, int)
        for k in multi:
            if cut is not None and k >= cut:
                break
            rec = buf[st[k] : en[k]].decode("utf-8").rstrip("\r")
            if len(_split_fields(rec, delim)) != n_fields:
                cut = int(k)
                break
        if cut is None:
            pieces_s.append(st)
            pieces_e.append(en)
            pieces_q.append(qc)
            pieces_d.append(dc)
            break
        pieces_s.append(st[:cut])
        pieces_e.append(en[:cut])
        pieces_q.append(qc[:cut])
        pieces_d.append(dc[:cut])
        i_nl = np.searchsorted(nl, st[cut])
        ln_end = int(nl[i_nl]) if i_nl < len(nl) else n_total
        broken.append((int(st[cut]), ln_end))
        pos = ln_end + 1
    starts = np.concatenate(pieces_s) if pieces_s else np.zeros(0, np.int64)
    ends = np.concatenate(pieces_e) if pieces_e else np.zeros(0, np.int64)
    qcount = np.concatenate(pieces_q) if pieces_q else np.zeros(0, np.int64)
    dcount = np.concatenate(pieces_d) if pieces_d else np.zeros(0, np.int64)
    # strip the \r of CRLF
    cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13) if len(ends) else np.zeros(0, bool)
    ends_nocr = ends - cr.astype(np.int64)
    lengths = ends_nocr - starts

    # field counts = delimiters outside quotes + 1 (csv module after a broken quote)
    fcount = dcount + 1
    if broken:
        for k in np.flatnonzero(qcount > 0):
            rec = buf[starts[k] : ends_nocr[k]].decode("utf-8")
            fcount[k] = len(_split_fields(rec, delim))
            dcount[k] = fcount[k] - 1

    # blank records: nothing but delimiters / whitespace
    blank = lengths == 0
    short = np.flatnonzero(~blank & (lengths - dcount <= 16))
    for k in short:
        rec = buf[starts[k] : ends_nocr[k]].decode("utf-8")
        if not rec.replace(delim, "").strip():
            blank[k] = True
    good = ~blank & (fcount == n_fields)
    # summary lines ("Total", "Source :") with the right field count
    if len(starts):
        first = arr[np.minimum(starts, max(n_total - 1, 0))]
        second = arr[np.minimum(starts + 1, max(n_total - 1, 0))]
        initial = np.where(first == ord('"'), second, first)  # first letter, quote or not
        for k in np.flatnonzero(good & np.isin(initial, list(b"TtSs"))):
            head = buf[starts[k] : min(int(ends_nocr[k]), int(starts[k]) + 40)]
            if _FOOTER.match(normalise_text(head.decode("utf-8", "replace").lstrip('"'))):
                good[k] = False
    bad = np.flatnonzero(~blank & ~good)
    bad_records = []
    for k in bad:
        raw = buf[starts[k] : ends_nocr[k]].decode("utf-8")
        rule, msg = _structural_reason(raw, int(fcount[k]), n_fields, delim)
        bad_records.append(
            {"line": int(line_of(starts[k : k + 1])[0]), "raw": raw, "rule": rule, "message": msg}
        )
    for s, e in broken:
        raw = buf[s:e].decode("utf-8").rstrip("\r")
        bad_records.append(
            {
                "line": int(line_of(np.array([s]))[0]),
                "raw": raw,
                "rule": "unclosed_quote",
                "message": "a quote opened on this line is never closed (or unbalanced); the line is "
                "kept here and reading resumes on the next line",
            }
        )
    blank_lines = int(blank.sum())

    # parse good records with pyarrow (dictionary-encoded text cells)
    g = np.flatnonzero(good)
    names = [f"c{j}" for j in range(n_fields)]
    dict_type = pa.dictionary(pa.int32(), pa.string())
    multi_line = bool(len(g)) and bool((line_of(ends_nocr[g]) > line_of(starts[g])).any())
    use_quotes = bool(qcount[g].any()) if len(g) else False

    def parse_with_arrow(source) -> Any:
        return pacsv.read_csv(
            source,
            # ~128 blocks: small enough for both threads, few enough to unify dictionaries cheaply
            read_options=pacsv.ReadOptions(
                column_names=names, block_size=int(np.clip(len(buf) // 128, 1 << 20, 1 << 22))
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delim,
                quote_char='"' if use_quotes else False,
                double_quote=True,
                newlines_in_values=multi_line,
                ignore_empty_lines=True,
                invalid_row_handler=lambda row: "skip",
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, dict_type),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
                check_utf8=False,
            ),
        )

    codes: list[np.ndarray] = []
    uniques: list[np.ndarray] = []
    table = None
    keep_rows = None  # rows of the table to keep when it holds more than the good records
    if len(g) and not broken:
        # the whole data region in place: Arrow skips the records with a wrong field count and
        # empty lines; blank-looking and footer records it parsed are dropped afterwards
        parsed = np.flatnonzero((fcount == n_fields) & (lengths > 0))
        try:
            table = parse_with_arrow(pa.BufferReader(pa.py_buffer(buf)[int(starts[0]) :]))
            if table.num_rows != len(parsed):
                table = None
            elif len(parsed) != len(g):
                keep_rows = good[parsed]
        except (pa.ArrowInvalid, pa.ArrowException):
            table = None
    if table is None and len(g):
        try:
            src = pa.BufferReader(pa.py_buffer(_join_runs(buf, starts, ends, ends_nocr, g)))
            table = parse_with_arrow(src)
            if table.num_rows != len(g):
                table = None
        except (pa.ArrowInvalid, pa.ArrowException):
            table = None
        keep_rows = None
    if table is not None:
        table = table.unify_dictionaries()
        for j in range(n_fields):
            col = table.column(j)
            if col.num_chunks:
                idx_arr = np.concatenate(
                    [c.indices.to_numpy(zero_copy_only=False) for c in col.chunks]
                )
                dic = np.asarray(col.chunks[0].dictionary.to_pylist(), dtype=object)
            else:
                idx_arr, dic = np.zeros(0, np.int64), np.array([], dtype=object)
            if keep_rows is not None:
                idx_arr = idx_arr[keep_rows]
            codes.append(idx_arr.astype(np.int32, copy=False))
            uniques.append(dic)
    else:
        rows = [_split_fields(buf[starts[k] : ends_nocr[k]].decode("utf-8"), delim) for k in g]
        codes, uniques = _factorize_rows(rows, n_fields)
    lines = line_of(starts[g]).astype(np.int64)
    g_starts, g_ends = starts[g], ends_nocr[g]

    def raw_text(pos: np.ndarray) -> list[str]:
        return [buf[g_starts[p] : g_ends[p]].decode("utf-8") for p in pos]

    norms: list[tuple[str, str, int, str]] = []
    return _Raw(
        header=header,
        header_line=header_line,
        codes=codes,
        uniques=uniques,
        lines=lines,
        raw_text=raw_text,
        bad_records=bad_records,
        blank_lines=blank_lines,
        meta={
            "format": "csv" if delim != "\t" else "tsv",
            "encoding": enc,
            "delimiter": delim,
            "sheet": None,
            "header_line": header_line,
        },
        warnings=warnings,
        norms=norms,
    )


def _structural_reason(raw: str, n: int, expected: int, delim: str) -> tuple[str, str]:
    if _FOOTER.match(normalise_text(raw.replace(delim, " ").strip('" '))):
        return (
            "footer_line",
            f"summary/footer line ('Total', 'Source :'), not a response ({n} field(s))",
        )
    return "field_count", f"{n} field(s) where the header has {expected} (unquoted delimiter?)"


# --------------------------------------------------------------------------- other formats
def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _raw_from_rows(
    rows: list[tuple[int, list[str]]],
    cell_flags: dict[tuple[int, int], tuple[str, str]],
    codebook: Codebook,
    name: str,
    *,
    header_row: int | None,
    profile: str,
    meta: dict[str, Any],
    warnings: list[str],
) -> _Raw:
    """Build the raw table from already-split rows (XLSX, SPSS, Parquet)."""
    nonblank = [(ln, cells) for ln, cells in rows if any(c.strip() for c in cells)]
    hidx, extra = _locate_header(nonblank[:12], codebook, name, header_row, profile)
    header_line = nonblank[hidx][0]
    header = [c.strip() for c in nonblank[hidx][1]]
    while (
        header
        and header[-1] == ""
        and all(len(c) < len(header) or not c[len(header) - 1].strip() for _, c in rows)
    ):
        header.pop()
    skip_lines = {nonblank[k][0] for k in extra}
    for k in extra:
        warnings.append(f"{name}: row {nonblank[k][0]} skipped as an extra header row")
    n_fields = len(header)
    data_rows, lines, bad_records, blank = [], [], [], 0
    cell_errors = []
    for ln, cells in rows:
        if ln <= header_line or ln in skip_lines:
            continue
        if not any(c.strip() for c in cells):
            blank += 1
            continue
        extra_cells = [c for c in cells[n_fields:] if c.strip()]
        if extra_cells:
            bad_records.append(
                {
                    "line": ln,
                    "raw": ";".join(cells),
                    "rule": "field_count",
                    "message": f"data beyond the {n_fields} named column(s): {extra_cells[:3]!r}",
                }
            )
            continue
        if _FOOTER.match(normalise_text(cells[0] if cells else "")):
            bad_records.append(
                {
                    "line": ln,
                    "raw": ";".join(cells),
                    "rule": "footer_line",
                    "message": "summary/footer line ('Total', 'Source :'), not a response",
                }
            )
            continue
        pos = len(data_rows)
        for j in range(min(n_fields, len(cells))):
            flag = cell_flags.get((ln, j))
            if flag:
                cell_errors.append((pos, j, cells[j], flag[0], flag[1]))
        data_rows.append((cells + [""] * n_fields)[:n_fields])
        lines.append(ln)
    codes, uniques = _factorize_rows(data_rows, n_fields)

    def raw_text(pos: np.ndarray) -> list[str]:
        return [";".join(data_rows[p]) for p in pos]

    meta = {**meta, "header_line": header_line}
    return _Raw(
        header=header,
        header_line=header_line,
        codes=codes,
        uniques=uniques,
        lines=np.asarray(lines, dtype=np.int64),
        raw_text=raw_text,
        bad_records=bad_records,
        cell_errors=cell_errors,
        blank_lines=blank,
        meta=meta,
        warnings=warnings,
    )


def _read_xlsx(path: Path, name: str, codebook: Codebook, *, sheet, header_row, profile) -> _Raw:
    import openpyxl

    try:
        wb_v = openpyxl.load_workbook(path, read_only=True, data_only=True)
        wb_f = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as exc:
        raise FileRejectedError(
            f"{name}: not a readable XLSX workbook ({type(exc).__name__})"
        ) from None
    try:
        sheets = wb_v.sheetnames
        if sheet is not None:
            if sheet not in sheets:
                raise FileRejectedError(
                    f"{name}: no sheet {sheet!r}; sheets are {', '.join(map(repr, sheets))}"
                )
            chosen = sheet
        else:
            required = set(_required(codebook))
            ok = []
            for s in sheets:
                for row in wb_v[s].iter_rows(max_row=12, values_only=True):
                    cells = [_cell_text(v) for v in row]
                    if not (required - _found_required(cells, codebook)):
                        ok.append(s)
                        break
            if len(ok) != 1:
                why = "several sheets have" if ok else "no sheet has"
                raise FileRejectedError(
                    f"{name}: {why} the required columns "
                    f"({', '.join(map(repr, ok or sheets))}); pass --sheet NAME"
                )
            chosen = ok[0]
        rows: list[tuple[int, list[str]]] = []
        flags: dict[tuple[int, int], tuple[str, str]] = {}
        it_f = wb_f[chosen].iter_rows()
        for r, row in enumerate(wb_v[chosen].iter_rows(), start=1):
            frow = next(it_f, ())
            cells = []
            for j, c in enumerate(row):
                v = getattr(c, "value", None)
                if getattr(c, "data_type", None) == "e" or (
                    isinstance(v, str)
                    and v.startswith("#")
                    and v.endswith(("!", "A", "?"))
                    and v in _EXCEL_ERRORS
                ):
                    flags[(r, j)] = ("excel_error", f"Excel error cell {v}")
                    cells.append(str(v))
                    continue
                fv = getattr(frow[j], "value", None) if j < len(frow) else None
                if v is None and isinstance(fv, str) and fv.startswith("="):
                    flags[(r, j)] = (
                        "formula_without_value",
                        f"formula {fv} has no cached value (recalculate and save in Excel)",
                    )
                    cells.append(fv)
                    continue
                cells.append(_cell_text(v))
            rows.append((r, cells))
    finally:
        wb_v.close()
        wb_f.close()
    warnings: list[str] = []
    if sheet is None and len(sheets) > 1:
        warnings.append(
            f"{name}: sheet {chosen!r} chosen among {len(sheets)} (it has the required columns)"
        )
    return _raw_from_rows(
        rows,
        flags,
        codebook,
        name,
        header_row=header_row,
        profile=profile,
        meta={"format": "xlsx", "encoding": None, "delimiter": None, "sheet": chosen},
        warnings=warnings,
    )


_EXCEL_ERRORS = frozenset({"#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!"})


def _read_sav(path: Path, name: str, codebook: Codebook, *, header_row, profile) -> _Raw:
    import pyreadstat

    try:
        df, meta = pyreadstat.read_sav(str(path), user_missing=True, apply_value_formats=False)
    except Exception as exc:
        raise FileRejectedError(
            f"{name}: not a readable SPSS .sav file ({type(exc).__name__})"
        ) from None
    header = list(df.columns)
    # a variable is known by its name, else by its SPSS label
    shown = []
    for col in header:
        label = (meta.column_names_to_labels or {}).get(col) or ""
        if (
            _header_target(col, codebook)[0] == "unknown"
            and label
            and _header_target(label, codebook)[0] != "unknown"
        ):
            shown.append(label)
        else:
            shown.append(col)
    missing_ranges = meta.missing_ranges or {}
    labels = meta.variable_value_labels or {}
    cols_text = []
    n_user_missing = 0
    for col, head in zip(header, shown, strict=True):
        target = _header_target(head, codebook)
        var = codebook[target[1]] if target[0] == "var" else None
        use_labels = var is not None and (var.options or var.type == "multi_select")
        vl = labels.get(col, {})
        ranges = missing_ranges.get(col, [])
        out = []
        for v in df[col].tolist():
            is_missing_value = (
                any(
                    (r["lo"] <= v <= r["hi"]) if not isinstance(v, str) else v == r["lo"]
                    for r in ranges
                )
                if v is not None and not (isinstance(v, float) and math.isnan(v))
                else False
            )
            if is_missing_value:
                n_user_missing += 1
            if is_missing_value or (use_labels and v in vl):
                out.append(str(vl.get(v, _cell_text(v))))
            else:
                out.append(_cell_text(v))
        cols_text.append(out)
    rows = [(1, shown)] + [(i + 2, [c[i] for c in cols_text]) for i in range(len(df))]
    warnings = []
    if n_user_missing:
        warnings.append(
            f"{name}: {n_user_missing} SPSS user-missing value(s) mapped through value labels"
        )
    raw = _raw_from_rows(
        rows,
        {},
        codebook,
        name,
        header_row=None,
        profile=profile,
        meta={"format": "sav", "encoding": meta.file_encoding, "delimiter": None, "sheet": None},
        warnings=warnings,
    )
    return raw


def _read_parquet(path: Path, name: str, codebook: Codebook, *, profile) -> _Raw:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise FileRejectedError(
            f"{name}: not a readable Parquet file ({type(exc).__name__})"
        ) from None
    header = [str(c) for c in df.columns]
    cols_text = [
        [_cell_text(v) if not (v is pd.NA or v is pd.NaT) else "" for v in df[c].tolist()]
        for c in df.columns
    ]
    rows = [(1, header)] + [(i + 2, [c[i] for c in cols_text]) for i in range(len(df))]
    return _raw_from_rows(
        rows,
        {},
        codebook,
        name,
        header_row=None,
        profile=profile,
        meta={"format": "parquet", "encoding": None, "delimiter": None, "sheet": None},
        warnings=[],
    )


# =============================================================================== normalisation
_MISSING, _VALUE, _SPECIAL, _ERROR = 0, 1, 2, 3
_SEPS = frozenset(",;| ")
_SPACES_NUM = re.compile(r"[ \u00a0\u202f\u2007]")


@dataclass
class _Spec:
    var: Variable
    kind: str
    lookup: dict[str, Any]
    code_keys: frozenset[str]
    label_keys: frozenset[str]
    allowed: frozenset[float] | None
    lo: float | None
    hi: float | None
    pattern: re.Pattern | None
    specials: dict[str, str]
    all_specials: dict[str, str]
    missing: frozenset[str]
    options: list[tuple[str, str]]

    @property
    def describe(self) -> str:
        if self.allowed is not None:
            return f"codes {', '.join(str(int(a)) for a in sorted(self.allowed))}"
        if self.lo is not None or self.hi is not None:
            lo = "" if self.lo is None else _fmt(self.lo)
            hi = "" if self.hi is None else _fmt(self.hi)
            return f"range [{lo}, {hi}]"
        return self.var.type


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _build_spec(var: Variable, codebook: Codebook) -> _Spec:
    if var.type in INTEGER_TYPES:
        kind = "int"
    elif var.type in FLOAT_TYPES:
        kind = "float"
    elif var.type in {"categorical", "respondent_type"}:
        kind = "option"
    else:
        kind = {
            "multi_select": "multi",
            "date": "date",
            "identifier": "identifier",
            "territory_code": "territory",
        }.get(var.type, "text")
    lookup = codebook.value_lookup(var.id) if kind in {"int", "option", "multi"} else {}
    scale = codebook.scales.get(var.scale or "")
    allowed = None
    code_keys: set[str] = set()
    label_keys: set[str] = set()
    if kind == "int" and scale is not None and scale.values:
        allowed = frozenset(float(c) for c in scale.values)
        code_keys = {normalise_text(str(c)) for c in scale.values}
        label_keys = {normalise_text(lbl) for lbl in scale.values.values()}
    if var.options:
        code_keys = {normalise_text(k) for k in var.options}
        label_keys = {normalise_text(lbl) for lbl in var.options.values()}
    lo, hi = codebook.value_range(var.id) if kind in {"int", "float"} else (None, None)
    options = []
    if kind == "multi":
        options = sorted(
            {(k, v) for k, v in lookup.items() if k},
            key=lambda kv: (-len(kv[0]), kv[0]),
        )
    return _Spec(
        var=var,
        kind=kind,
        lookup=lookup,
        code_keys=frozenset(code_keys),
        label_keys=frozenset(label_keys),
        allowed=allowed,
        lo=lo,
        hi=hi,
        pattern=re.compile(var.pattern) if var.pattern else None,
        specials={k: v for k, v in codebook.special_lookup.items() if v in var.special_codes},
        all_specials=dict(codebook.special_lookup),
        missing=frozenset(normalise_text(m) for m in codebook.missing_spellings),
        options=options,
    )


def _parse_number(t: str) -> tuple[float, list[str]] | None:
    m = _NUMBER.match(t)
    if not m:
        return None
    sign, whole, sep, frac = m.groups()
    kinds = []
    if _SPACES_NUM.search(whole):
        kinds.append("thousands_separator")
        whole = _SPACES_NUM.sub("", whole)
    if sep == ",":
        kinds.append("decimal_comma")
    value = float(f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}")
    return value, kinds


def _parse_date(t: str) -> tuple[str, Any, str]:
    """Return (status, value|rule, detail or norm kind)."""
    m = _ISO_DATE.match(t)
    if m:
        y, mo, d = (int(x) for x in m.groups())
        try:
            return "value", dt.date(y, mo, d), ""
        except ValueError:
            return "error", "impossible_date", f"{t!r} is not a calendar date"
    m = _FR_DATE.match(t)
    if m:
        d, mo, y = m.groups()
        if len(y) == 2:
            return "error", "ambiguous_date", "two-digit year is ambiguous; write the year in full"
        try:
            return "value", dt.date(int(y), int(mo), int(d)), "day_first_date"
        except ValueError:
            return "error", "impossible_date", f"{t!r} is not a calendar date (read day first)"
    num = _parse_number(t)
    if num is not None and 10000 <= num[0] <= 99999:
        return "value", _EXCEL_EPOCH + dt.timedelta(days=int(num[0])), "excel_serial_date"
    return "error", "not_a_date", "not a date (expected AAAA-MM-JJ, JJ/MM/AAAA or an Excel serial)"


def _parse_one(spec: _Spec, text: str) -> tuple[int, Any, str | None, str | None]:
    """Parse one distinct cell text: (status, value, rule, detail-or-norm-kind)."""
    t = text.strip().strip("\u00a0\u202f")
    trimmed = "trim_whitespace" if t != text else None
    key = normalise_text(t)
    if t == "" or key in spec.missing:
        return _MISSING, None, None, ("missing_spelling" if t else None)
    if key in spec.specials:
        return _SPECIAL, spec.specials[key], None, "special_code"
    kind = spec.kind
    undeclared = spec.all_specials.get(key)
    if kind in {"int", "float"}:
        if key in spec.lookup and kind == "int":
            value = float(spec.lookup[key])
            norm = (
                None
                if key in spec.code_keys
                else ("label_to_code" if key in spec.label_keys else "alias")
            )
            return _VALUE, value, None, norm or trimmed
        num = _parse_number(t)
        if num is None:
            if undeclared:
                return (
                    _ERROR,
                    None,
                    "special_not_allowed",
                    (f"special code '{undeclared}' is not declared for this item"),
                )
            if spec.allowed is not None:
                return _ERROR, None, "unknown_label", f"unknown label; expected {spec.describe}"
            return _ERROR, None, "not_a_number", "not a number"
        value, kinds = num
        if kind == "int":
            if not value.is_integer():
                return _ERROR, None, "not_integer", "not a whole number (never truncated)"
            if "." in t or "," in t:
                kinds.append("integral_float")
        if (spec.allowed is not None and value not in spec.allowed) or (
            spec.allowed is None
            and (
                (spec.lo is not None and value < spec.lo)
                or (spec.hi is not None and value > spec.hi)
            )
        ):
            if undeclared:
                return (
                    _ERROR,
                    None,
                    "special_not_allowed",
                    (f"special code '{undeclared}' is not declared for this item"),
                )
            return _ERROR, None, "out_of_range", f"out of range; expected {spec.describe}"
        return _VALUE, value, None, (kinds[-1] if kinds else trimmed)
    if kind == "option":
        if key in spec.lookup:
            value = spec.lookup[key]
            norm = None if t == value else ("label_to_code" if key in spec.label_keys else "alias")
            if norm is None and key in spec.code_keys and t != value:
                norm = "case"
            return _VALUE, value, None, norm or trimmed
        if undeclared:
            return (
                _ERROR,
                None,
                "special_not_allowed",
                (f"special code '{undeclared}' is not declared for this item"),
            )
        return (
            _ERROR,
            None,
            "unknown_option",
            (f"unknown option; expected one of {', '.join(spec.var.options)}"),
        )
    if kind == "multi":
        return _parse_multi(spec, key, trimmed, undeclared)
    if kind == "date":
        status, val, extra = _parse_date(t)
        if status == "error":
            return _ERROR, None, val, extra
        return _VALUE, val, None, extra or trimmed
    norm = trimmed
    if kind == "identifier" and _SCI.match(t):
        return (
            _ERROR,
            None,
            "scientific_notation",
            ("identifier in scientific notation: digits are lost, re-export ids as text"),
        )
    if kind == "territory":
        t2 = t
        if re.fullmatch(r"\d+\.0+", t2):
            t2, norm = t2.split(".")[0], "drop_float_suffix"
        if t2 != t2.upper():
            t2, norm = t2.upper(), "uppercase"
        if re.fullmatch(r"\d{4}", t2):
            t2, norm = "0" + t2, "zero_pad"
        t = t2
    if spec.pattern is not None and not spec.pattern.search(t):
        return _ERROR, None, "pattern", f"does not match the pattern {spec.pattern.pattern}"
    if kind == "text" and undeclared and spec.var.special_codes:
        return (
            _ERROR,
            None,
            "special_not_allowed",
            (f"special code '{undeclared}' is not declared for this item"),
        )
    return _VALUE, t, None, norm


def _parse_multi(
    spec: _Spec, key: str, trimmed, undeclared
) -> tuple[int, Any, str | None, str | None]:
    chosen: list[str] = []
    pos, n = 0, len(key)
    while pos < n:
        while pos < n and key[pos] in _SEPS:
            pos += 1
        if pos >= n:
            break
        for cand, opt in spec.options:
            end = pos + len(cand)
            if key.startswith(cand, pos) and (end == n or key[end] in _SEPS):
                chosen.append(str(opt))
                pos = end
                break
        else:
            stop = pos
            while stop < n and key[stop] not in ",;|":
                stop += 1
            token = key[pos:stop].strip()
            if undeclared and not chosen:
                return (
                    _ERROR,
                    None,
                    "special_not_allowed",
                    (f"special code '{undeclared}' is not declared for this item"),
                )
            return (
                _ERROR,
                None,
                "unknown_option",
                (f"unknown option {token!r}; declared options are {', '.join(spec.var.options)}"),
            )
    if not chosen:
        return _MISSING, None, None, None
    picked = frozenset(chosen)
    if spec.var.max_choices is not None and len(picked) > spec.var.max_choices:
        return (
            _ERROR,
            None,
            "too_many_choices",
            (f"{len(picked)} options ticked, at most {spec.var.max_choices} allowed"),
        )
    return _VALUE, picked, None, "multi_select_split"


@dataclass
class _Parsed:
    status: np.ndarray  # per unique
    value: np.ndarray  # per unique (float or object)
    rule: np.ndarray
    detail: np.ndarray
    special: np.ndarray  # per unique: special-code key or None


def _parse_uniques(spec: _Spec, uniques: np.ndarray) -> _Parsed:
    nu = len(uniques)
    numeric = spec.kind in {"int", "float"}
    status = np.full(nu, -1, dtype=np.int8)
    value = np.full(nu, np.nan) if numeric else np.full(nu, None, dtype=object)
    rule = np.full(nu, None, dtype=object)
    detail = np.full(nu, None, dtype=object)
    special = np.full(nu, None, dtype=object)
    if nu > _PY_UNIQUE_LIMIT and spec.kind != "multi":
        s = pd.Series(uniques, dtype="str")
        if numeric:
            simple = s.str.fullmatch(r"\d+").to_numpy(dtype=bool, copy=True)
            vals = pd.to_numeric(s.where(simple, "0")).to_numpy(dtype=float)
            if spec.kind == "float":
                comma = s.str.fullmatch(r"-?\d+,\d+").to_numpy(dtype=bool, copy=True)
                cv = pd.to_numeric(s.where(comma, "0").str.replace(",", ".", regex=False)).to_numpy(
                    dtype=float
                )
                vals = np.where(comma, cv, vals)
                detail[comma] = "decimal_comma"
                simple |= comma
            ok = simple.copy()
            if spec.allowed is not None:
                ok &= np.isin(vals, list(spec.allowed))
            if spec.lo is not None:
                ok &= vals >= spec.lo
            if spec.hi is not None:
                ok &= vals <= spec.hi
            value[ok] = vals[ok]
            status[ok] = _VALUE
            detail[~ok] = None
        elif spec.kind == "date":
            simple = s.str.fullmatch(r"\d{4}-\d{2}-\d{2}").to_numpy(dtype=bool, copy=True)
            d = pd.to_datetime(s.where(simple, None), format="%Y-%m-%d", errors="coerce")
            ok = simple & d.notna().to_numpy()
            value[ok] = d[ok].dt.date.to_numpy()
            status[ok] = _VALUE
        else:
            cls = r"[0-9A-Z_\-]+" if spec.kind == "territory" else r"[0-9A-Za-z_\-]+"
            ok = s.str.fullmatch(cls).to_numpy(dtype=bool, copy=True)
            low = s.str.lower()
            ok &= ~low.isin(list(spec.all_specials) + list(spec.missing)).to_numpy(
                dtype=bool, copy=True
            )
            if spec.kind == "territory":
                ok &= ~s.str.fullmatch(r"\d{4}").to_numpy(dtype=bool, copy=True)
            if spec.kind == "identifier":
                ok &= ~s.str.fullmatch(r"\d+[eE]\d+").to_numpy(dtype=bool, copy=True)
            if spec.pattern is not None:
                ok &= s.str.contains(spec.pattern.pattern, regex=True).to_numpy(
                    dtype=bool, copy=True
                )
            value[ok] = uniques[ok]
            status[ok] = _VALUE
    for u in np.flatnonzero(status < 0):
        st, val, rl, dtl = _parse_one(spec, uniques[u])
        status[u] = st
        if st == _SPECIAL:
            special[u] = val
        elif val is not None:
            value[u] = val
        rule[u], detail[u] = rl, dtl
    return _Parsed(status, value, rule, detail, special)


# =============================================================================== processing
class _Errors:
    """Cell/row errors collected as parallel lists (row position in the raw table)."""

    def __init__(self) -> None:
        self.pos: list[np.ndarray] = []
        self.col: list[str] = []
        self.value: list[np.ndarray] = []
        self.rule: list[np.ndarray] = []
        self.detail: list[np.ndarray] = []

    def add(self, pos, col: str, value, rule, detail) -> None:
        pos = np.asarray(pos, dtype=np.int64)
        if not len(pos):
            return
        n = len(pos)

        def arr(x):
            return (
                np.asarray(x, dtype=object)
                if not isinstance(x, str)
                else np.full(n, x, dtype=object)
            )

        self.pos.append(pos)
        self.col.append(col)
        self.value.append(arr(value))
        self.rule.append(arr(rule))
        self.detail.append(arr(detail))

    def frame(self) -> pd.DataFrame:
        if not self.pos:
            return pd.DataFrame({"pos": [], "column": [], "value": [], "rule": [], "detail": []})
        return pd.DataFrame(
            {
                "pos": np.concatenate(self.pos),
                "column": np.concatenate(
                    [
                        np.full(len(p), c, dtype=object)
                        for p, c in zip(self.pos, self.col, strict=True)
                    ]
                ),
                "value": np.concatenate(self.value),
                "rule": np.concatenate(self.rule),
                "detail": np.concatenate(self.detail),
            }
        ).astype(object)


def _norm_add(
    norms: dict[tuple[str, str], list], column: str, kind: str, count: int, example: str
) -> None:
    if count <= 0:
        return
    entry = norms.setdefault((column, kind), [0, example])
    entry[0] += int(count)


def _repair_text(text: str) -> str | None:
    """Undo one round of UTF-8 read as cp1252 (or latin-1); None when that is not what happened."""
    for enc in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(enc).decode("utf-8")
        except UnicodeError:
            continue
        if fixed != text:
            return fixed
    return None


def _repair_mojibake(raw: _Raw, mapping, norms, warnings: list[str], name: str) -> None:
    """Repair double-encoded cells of mapped columns in place, counting each repair."""
    for j, t in enumerate(mapping):
        u = raw.uniques[j]
        if t[0] not in {"var", "opt"} or not len(u):
            continue
        hit = pd.Series(u, dtype="str").str.contains(_GARBLED.pattern, regex=True)
        hit = hit.fillna(False).to_numpy(dtype=bool)
        if not hit.any():
            continue
        fixed = np.array(u, dtype=object, copy=True)
        repaired = np.zeros(len(u), dtype=bool)
        for k in np.flatnonzero(hit):
            new = _repair_text(str(u[k]))
            if new is not None:
                fixed[k], repaired[k] = new, True
        if repaired.any():
            raw.uniques[j] = fixed
            k0 = int(np.flatnonzero(repaired)[0])
            n_rows = int(repaired[raw.codes[j]].sum())
            column = t[1] if t[0] == "var" else f"{t[1]}__{t[2]}"
            _norm_add(norms, column, "mojibake_repaired", n_rows, f"{u[k0]} → {fixed[k0]}")
            warnings.append(
                f"{name}: column {raw.header[j]!r}: double-encoded text repaired on {n_rows} "
                f"row(s) (e.g. {str(u[k0])!r} → {str(fixed[k0])!r}), as asked"
            )


def _process(
    raw: _Raw, codebook: Codebook, name: str, *, repair_mojibake: bool = False
) -> IngestResult:
    n = raw.n_rows
    errors = _Errors()
    norms: dict[tuple[str, str], list] = {}
    warnings = list(raw.warnings)
    report_errors: list[dict[str, Any]] = []
    mapping = _map_header(raw.header, codebook, name, raw.header_line)["targets"]
    if repair_mojibake:
        _repair_mojibake(raw, mapping, norms, warnings, name)

    by_var: dict[str, int] = {}
    opt_cols: dict[str, dict[str, int]] = {}
    unknown, unnamed = [], []
    for j, t in enumerate(mapping):
        if t[0] == "var":
            by_var[t[1]] = j
            if raw.header[j] != t[1]:
                _norm_add(norms, t[1], "header_synonym", 1, raw.header[j])
        elif t[0] == "opt":
            opt_cols.setdefault(t[1], {})[t[2]] = j
        elif t[0] == "unnamed":
            unnamed.append(j)
        else:
            unknown.append(raw.header[j])
    if unknown:
        warnings.append(
            f"{name}: {len(unknown)} column(s) not in the codebook ignored: "
            + ", ".join(repr(u) for u in unknown[:20])
            + (" …" if len(unknown) > 20 else "")
        )
    for j in unnamed:
        u, c = raw.uniques[j], raw.codes[j]
        filled = np.array([bool(str(x).strip()) for x in u], dtype=bool)
        rows = np.flatnonzero(filled[c]) if len(c) else np.zeros(0, np.int64)
        if len(rows):
            errors.add(
                rows,
                f"(column {j + 1}, unnamed)",
                u[c[rows]],
                "data_in_unnamed_column",
                "data in a column without a header name",
            )
        else:
            _norm_add(norms, f"(column {j + 1})", "empty_unnamed_column_dropped", 1, "")

    columns: dict[str, Any] = {}
    text_cols: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    present: list[Variable] = []
    status_of: dict[str, np.ndarray] = {}
    for var in codebook:
        if var.id not in by_var and var.id not in opt_cols:
            continue
        present.append(var)
        spec = _build_spec(var, codebook)
        if var.id in by_var:
            j = by_var[var.id]
            codes, uniques = raw.codes[j], raw.uniques[j]
            text_cols[var.id] = (codes, uniques)
            p = _parse_uniques(spec, uniques)
            st_rows = p.status[codes]
            counts = (
                np.bincount(codes, minlength=len(uniques))
                if len(codes)
                else np.zeros(len(uniques), int)
            )
            for kind in {d for d in p.detail[p.status != _ERROR] if d}:
                sel = np.flatnonzero((p.detail == kind) & (p.status != _ERROR) & (counts > 0))
                if len(sel):
                    _norm_add(norms, var.id, kind, int(counts[sel].sum()), str(uniques[sel[0]]))
            err_rows = np.flatnonzero(st_rows == _ERROR)
            # whole column on the wrong scale → one column-level error
            if spec.kind == "int" and spec.allowed is not None and len(err_rows) >= 10:
                answered = int(((st_rows == _VALUE) | (st_rows == _ERROR)).sum())
                oor = int((p.rule[codes[err_rows]] == "out_of_range").sum())
                if oor > 0.5 * answered:
                    vals = sorted(
                        {
                            float(_parse_number(str(uniques[u]).strip())[0])
                            for u in np.unique(codes[err_rows])
                            if p.rule[u] == "out_of_range"
                            and _parse_number(str(uniques[u]).strip())
                        }
                    )
                    rng = f"{_fmt(vals[0])}–{_fmt(vals[-1])}" if vals else "?"
                    report_errors.append(
                        {
                            "line": None,
                            "column": var.id,
                            "value": f"values {rng}",
                            "rule": "wrong_scale",
                            "message": f"{name}, column {raw.header[j]!r}: {oor} of {answered} answers are "
                            f"outside the scale ({spec.describe}; values seen {rng}): the whole item looks "
                            f"coded on another scale; column left empty, rows kept",
                        }
                    )
                    p = _Parsed(
                        np.where(p.status == _SPECIAL, _SPECIAL, _MISSING).astype(np.int8),
                        np.full(len(uniques), np.nan),
                        p.rule,
                        p.detail,
                        p.special,
                    )
                    st_rows = p.status[codes]
                    err_rows = np.zeros(0, np.int64)
            if len(err_rows):
                cu = codes[err_rows]
                errors.add(err_rows, var.id, uniques[cu], p.rule[cu], p.detail[cu])
            status_of[var.id] = st_rows
            special = p.special
            if spec.kind in {"int", "float"}:
                vals = np.where(p.status == _VALUE, p.value, np.nan).astype(float)
                columns[var.id] = _LazyNum(vals, codes)
            elif spec.kind == "multi":
                for okey in var.options:
                    ov = np.array(
                        [
                            (1.0 if okey in v else 0.0) if s == _VALUE else np.nan
                            for s, v in zip(p.status, p.value, strict=True)
                        ],
                        dtype=float,
                    )
                    columns[f"{var.id}__{okey}"] = _LazyNum(ov, codes)
            elif spec.kind == "date":
                dv = np.array(
                    [
                        np.datetime64(v, "ns") if s == _VALUE else np.datetime64("NaT", "ns")
                        for s, v in zip(p.status, p.value, strict=True)
                    ],
                    dtype="datetime64[ns]",
                )
                columns[var.id] = dv[codes] if len(codes) else np.zeros(0, "datetime64[ns]")
            else:
                vals = np.where(p.status == _VALUE, p.value, None)
                columns[var.id] = _LazyStr(vals, codes)
            if var.special_col:
                columns[var.special_col] = _LazyStr(special, codes)
            if spec.kind == "multi":
                columns[f"__text__{var.id}"] = (p.status, p.value, codes)
        if var.id in opt_cols:
            _option_columns(var, opt_cols[var.id], raw, columns, errors, norms, name)

    # INSEE codes that lost their leading zero are padded (NORM) and said out loud (warning)
    for (col, kind), (count, example) in sorted(norms.items()):
        if kind == "zero_pad":
            warnings.append(
                f"{name}: column {col!r}: {count} territory code(s) of 4 digits zero-padded to 5 "
                f"(e.g. {example!r}): a spreadsheet dropped the leading zero; check the codes "
                "against the source"
            )

    # derived text comparison multi-select ↔ 0/1 columns done; drop helper entries
    for key in [k for k in columns if k.startswith("__text__")]:
        columns.pop(key)

    # required values
    for var in present:
        if var.required and var.id in status_of:
            miss = np.flatnonzero(status_of[var.id] == _MISSING)
            if len(miss):
                codes, uniques = text_cols[var.id]
                errors.add(
                    miss, var.id, uniques[codes[miss]], "required", "required value is missing"
                )

    id_var = codebook.by_role("identifier")
    id_col = id_var.id if id_var is not None and id_var.id in columns else None
    # duplicate respondent ids (exact or conflicting): quarantine every copy
    if id_col is not None and n:
        ids = columns[id_col]
        if isinstance(ids, _LazyStr):
            ids = ids.take(None)
        # the same id in another wave is another response: duplicates are sought per wave
        wave = columns.get("id_vague")
        wave_key = wave.take(None).fillna("") if isinstance(wave, _LazyStr) else None
        keyed = ids if wave_key is None else ids + "\x1f" + wave_key
        dup = ids.notna() & keyed.duplicated(keep=False)
        if dup.any():
            dpos = np.flatnonzero(dup.to_numpy())
            groups = ids.iloc[dpos].groupby(keyed.iloc[dpos], sort=True).indices
            rows_out, details = [], []
            for _key, gi in groups.items():
                members = dpos[gi]
                rid = ids.iloc[int(members[0])]
                in_wave = (
                    f" in wave {wave_key.iloc[int(members[0])]!r}" if wave_key is not None else ""
                )
                diverging = [
                    raw.header[j]
                    for j in range(len(raw.header))
                    if len({raw.uniques[j][raw.codes[j][m]] for m in members}) > 1
                ]
                lines = ", ".join(str(raw.lines[m]) for m in members)
                what = (
                    "exact copies"
                    if not diverging
                    else "conflicting copies, columns differing: " + ", ".join(diverging[:10])
                )
                for m in members:
                    rows_out.append(m)
                    details.append(
                        f"respondent id {rid!r} appears {len(members)} times{in_wave} "
                        f"(lines {lines}): {what}"
                    )
            rows_out_arr = np.asarray(rows_out, dtype=np.int64)
            errors.add(
                rows_out_arr,
                id_col,
                ids.to_numpy()[rows_out_arr],
                "duplicate_id",
                np.asarray(details, dtype=object),
            )

    # cross-column coherence
    for gate, gate_value, deps in COHERENCE_RULES:
        if gate not in columns:
            continue
        gate_rows = np.asarray(columns[gate], dtype=float) == gate_value
        for dep in deps:
            if dep in columns:
                dv = np.asarray(columns[dep], dtype=float)
                bad = gate_rows & (dv > 0)
                shown = dv
            elif (
                dep in codebook
                and codebook[dep].type == "multi_select"
                and any(c in columns for c in codebook[dep].option_cols())
            ):
                ticks = np.zeros(n)
                for c in codebook[dep].option_cols():
                    if c in columns:
                        ticks = ticks + np.nan_to_num(np.asarray(columns[c], dtype=float))
                bad = gate_rows & (ticks > 0)
                shown = ticks
            else:
                continue
            rows = np.flatnonzero(bad)
            if len(rows):
                errors.add(
                    rows,
                    f"{gate}+{dep}",
                    [f"{gate}={_fmt(gate_value)}, {dep}={_fmt(v)}" for v in shown[rows]],
                    "incoherent",
                    f"{gate} = {_fmt(gate_value)} (non) but {dep} is answered positively",
                )

    # raw cell flags (Excel error cells, formulas without cached value)
    flagged: set[tuple[int, str]] = set()
    for pos_, j, val, rl, dtl in raw.cell_errors:
        t = mapping[j]
        col = t[1] if t[0] in {"var", "opt"} else raw.header[j] or f"(column {j + 1})"
        errors.add([pos_], col, [val], rl, dtl)
        flagged.add((int(pos_), col))

    # garbled text warnings
    for j, t in enumerate(mapping):
        u = raw.uniques[j]
        if not len(u) or t[0] == "unnamed":
            continue
        us = pd.Series(u, dtype="str")
        hit = us.str.contains(_GARBLED.pattern, regex=True).to_numpy(dtype=bool, copy=True)
        if hit.any():
            rows = np.flatnonzero(hit[raw.codes[j]])
            lines = ", ".join(str(x) for x in raw.lines[rows[:_MAX_REPORTED_WARN_LINES]])
            warnings.append(
                f"{name}: column {raw.header[j]!r} has text that looks double-encoded "
                f"(e.g. {str(u[np.flatnonzero(hit)[0]])!r}) on {len(rows)} row(s), lines {lines}"
                + (" …" if len(rows) > _MAX_REPORTED_WARN_LINES else "")
                + "; not repaired"
            )

    err = errors.frame()
    if flagged and len(err):
        # an Excel error cell / formula is reported once, not again as an unparsable value
        keep = [
            (int(p_), c) not in flagged or r in {"excel_error", "formula_without_value"}
            for p_, c, r in err[["pos", "column", "rule"]].itertuples(index=False)
        ]
        err = err.loc[keep]

    # the typed frame holds the rows still valid, already in their output order (sort keys,
    # then file and line): strings are built once from their codes, never re-taken afterwards
    ok_mask = np.ones(n, dtype=bool)
    if len(err):
        ok_mask[err["pos"].to_numpy(dtype=np.int64)] = False
    rows = _output_order(np.flatnonzero(ok_mask), columns, raw.lines)
    frame = _typed_frame(columns, codebook, present, raw, name, warnings, rows)
    checked = [c for v in present for c in v.columns()] + ["source_file", "source_line"]
    schema = build_response_schema(codebook, columns=checked)
    # the schema covers the checked columns only (strict=False): no column selection, no copy
    failures = compute_schema_failures(frame, schema)
    if len(failures):
        row_fail = failures[failures["index"].notna()]
        for idx, column, check, value in row_fail[
            ["index", "column", "check", "failure_case"]
        ].itertuples(index=False):
            errors.add(
                [int(rows[int(idx)])],
                str(column),
                [value],
                f"schema:{check}",
                f"fails the schema check {check}",
            )
        for column, check in failures[failures["index"].isna()][["column", "check"]].itertuples(
            index=False
        ):
            report_errors.append(
                {
                    "line": None,
                    "column": str(column),
                    "value": "",
                    "rule": f"schema:{check}",
                    "message": f"{name}, column {column!r}: fails the schema check {check}",
                }
            )
        if len(row_fail):
            err = errors.frame()
            failed = np.zeros(len(rows), dtype=bool)
            failed[row_fail["index"].astype(np.int64).to_numpy()] = True
            frame = frame.loc[~failed].reset_index(drop=True)

    return _assemble(
        raw, frame, err, norms, warnings, report_errors, name, by_var.get(id_col or "")
    )


@dataclass(frozen=True)
class _LazyStr:
    """A text column kept as per-unique values (None = missing) and row codes until it is built.

    Building Arrow strings is the costly part of a text column; keeping the codes lets the typed
    frame take its rows (valid ones, in output order) on the integer codes instead of re-taking
    strings.
    """

    per_unique: np.ndarray
    codes: np.ndarray

    def take(self, rows: np.ndarray | None) -> pd.Series:
        """The column for ``rows`` (positions; None = every row) as a pandas string Series."""
        return _take_str(self.per_unique, self.codes if rows is None else self.codes[rows])

    def sort_rank(self) -> np.ndarray:
        """Per-row rank of the value in code-point order, missing values last."""
        vals = self.per_unique
        present = np.array([v is not None for v in vals], dtype=bool)
        rank = np.full(len(vals), len(vals), dtype=np.int64)
        idx = np.flatnonzero(present)
        if len(idx):
            _, inverse = np.unique(np.asarray(vals[idx], dtype=str), return_inverse=True)
            rank[idx] = inverse
        return rank[self.codes]


@dataclass(frozen=True)
class _LazyNum:
    """A numeric column kept as per-unique values and row codes until the typed frame takes it.

    ``numpy.asarray`` gives the full column (used by the row-level checks that need it); the
    typed frame gathers only its output rows through the codes, never the float column itself.
    """

    per_unique: np.ndarray
    codes: np.ndarray

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.per_unique[self.codes]
        return out if dtype is None else out.astype(dtype, copy=False)

    def take_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Write the values of ``rows`` into ``out`` (float64)."""
        np.take(self.per_unique.astype(np.float64, copy=False), self.codes[rows], out=out)


def _output_order(ok_rows: np.ndarray, columns: Mapping[str, Any], lines: np.ndarray) -> np.ndarray:
    """Positions of the valid rows in output order: territory, respondent id, then line.

    Missing keys sort last; ties keep the physical line order (one file per call).
    """
    keys: list[np.ndarray] = [lines[ok_rows]]
    for col in ("id_repondant", "id_territoire_code"):
        arr = columns.get(col)
        if isinstance(arr, _LazyStr):
            keys.append(arr.sort_rank()[ok_rows])
        elif isinstance(arr, _LazyNum | np.ndarray):
            v = np.asarray(arr)[ok_rows]
            if v.dtype.kind == "f":
                keys.append(np.where(np.isnan(v), np.inf, v))
    return ok_rows[np.lexsort(keys)] if len(keys) > 1 else ok_rows


def _take_str(per_unique: np.ndarray, codes: np.ndarray | None, n: int = 0) -> pd.Series:
    """String column from per-unique values (None = missing) and row codes, via Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if codes is None or not any(v is not None for v in per_unique):
        size = n if codes is None else len(codes)
        return pa.nulls(size, pa.large_string()).to_pandas()
    dic = pa.array(list(per_unique), type=pa.large_string())
    return pc.take(dic, pa.array(codes)).to_pandas()


def _option_columns(var, cols, raw, columns, errors, norms, name) -> None:
    """Multi-select given as 0/1 columns (Kobo ``item/option``, ``item__option``, ``item[option]``)."""
    text = columns.get(f"__text__{var.id}")
    for okey in var.options:
        cname = f"{var.id}__{okey}"
        if okey not in cols:
            if text is None:
                columns[cname] = np.full(raw.n_rows, np.nan)
            continue
        j = cols[okey]
        codes, uniques = raw.codes[j], raw.uniques[j]
        val = np.full(len(uniques), np.nan)
        bad = np.zeros(len(uniques), dtype=bool)
        for u, s in enumerate(uniques):
            key = normalise_text(str(s))
            if key in {"", "."}:
                continue
            num = (
                _parse_number(key)
                if key not in {"true", "false", "vrai", "faux", "oui", "non"}
                else ((1.0, []) if key in {"true", "vrai", "oui"} else (0.0, []))
            )
            if num is None or num[0] not in (0.0, 1.0):
                bad[u] = True
            else:
                val[u] = num[0]
        rows_bad = np.flatnonzero(bad[codes])
        errors.add(
            rows_bad,
            cname,
            uniques[codes[rows_bad]],
            "not_binary",
            "a 0/1 option column must hold 0 or 1",
        )
        vals = val[codes]
        if text is not None:
            status, value, tcodes = text
            from_text = np.asarray(columns[cname], dtype=float)
            both = ~np.isnan(vals) & ~np.isnan(from_text)
            diff = np.flatnonzero(both & (vals != from_text))
            if len(diff):
                tu = [
                    ", ".join(sorted(value[tcodes[d]])) if status[tcodes[d]] == _VALUE else ""
                    for d in diff
                ]
                errors.add(
                    diff,
                    cname,
                    [
                        f"text={t!r}, {raw.header[j]}={_fmt(v)}"
                        for t, v in zip(tu, vals[diff], strict=True)
                    ],
                    "multi_select_mismatch",
                    "the select_multiple text and its 0/1 column disagree",
                )
        else:
            columns[cname] = vals
            _norm_add(norms, cname, "option_column", int((~np.isnan(vals)).sum()), raw.header[j])


def _typed_frame(
    columns, codebook: Codebook, present, raw: _Raw, name: str, warnings: list[str], rows
) -> pd.DataFrame:
    """The typed frame of the raw positions ``rows``, in that order.

    Float columns are written straight into one 2-D block (the layout pandas keeps them in) and
    text columns stay Arrow-backed arrays, so building the frame copies nothing once more.
    """
    n = len(rows)
    names: list[str] = []
    floats: list[tuple[int, Any]] = []  # (position, source array or None for missing)
    dates: list[tuple[int, Any]] = []
    texts: list[tuple[int, Any]] = []
    absent = []
    present_ids = {v.id for v in present}
    for var in codebook:
        if var.id not in present_ids:
            if var.level != "respondent":
                continue
            absent.append(var.id)
        for col in var.columns():
            arr = columns.get(col)
            is_float = col != var.special_col and (
                var.type in INTEGER_TYPES | FLOAT_TYPES or var.type == "multi_select"
            )
            pos = len(names)
            names.append(col)
            if is_float:
                floats.append((pos, arr))
            elif var.type == "date" and col == var.id:
                dates.append((pos, arr))
            else:
                texts.append((pos, arr))
    if absent:
        warnings.append(
            f"{name}: {len(absent)} optional variable(s) absent from the export (left empty): "
            + ", ".join(absent[:15])
            + (" …" if len(absent) > 15 else "")
        )
    float_block = np.empty((len(floats), n), dtype=np.float64)
    for i, (_, arr) in enumerate(floats):
        if arr is None:
            float_block[i] = np.nan
        elif isinstance(arr, _LazyNum):
            arr.take_into(rows, float_block[i])
        else:
            np.take(np.asarray(arr, dtype=np.float64), rows, out=float_block[i])
    date_block = np.empty((len(dates), n), dtype="datetime64[ns]")
    for i, (_, arr) in enumerate(dates):
        date_block[i] = np.datetime64("NaT", "ns") if arr is None else arr[rows]
    text_arrays = []
    for _, arr in texts:
        if arr is None:
            series = _take_str(np.array([None], dtype=object), None, n)
        elif isinstance(arr, _LazyStr):
            series = arr.take(rows)
        else:
            series = pd.Series(np.asarray(arr, dtype=object)[rows], dtype="str")
        text_arrays.append(series.array)
    names += ["source_file", "source_line"]
    text_arrays.append(pd.Series(np.full(n, name, dtype=object), dtype="str").array)
    text_pos = [p for p, _ in texts] + [len(names) - 2]
    blocks: list[tuple[Any, np.ndarray]] = [
        (arr, np.array([p], dtype=np.intp)) for p, arr in zip(text_pos, text_arrays, strict=True)
    ]
    blocks.append((raw.lines[rows].astype(np.int64)[None, :], np.array([len(names) - 1])))
    if floats:
        blocks.append((float_block, np.array([p for p, _ in floats], dtype=np.intp)))
    if dates:
        blocks.append((date_block, np.array([p for p, _ in dates], dtype=np.intp)))
    from pandas.api.internals import create_dataframe_from_blocks

    return create_dataframe_from_blocks(blocks, pd.RangeIndex(n), pd.Index(names))


def _assemble(raw, valid, err, norms, warnings, report_errors, name, id_j) -> IngestResult:
    n = raw.n_rows
    # per-cell error messages
    err_records = []
    q_rows: dict[int, list[str]] = {}
    if len(err):
        err = err.assign(line=raw.lines[err["pos"].to_numpy(dtype=np.int64)])
        err = err.sort_values(["line", "column", "rule"], kind="stable")
        for pos, col, value, rl, dtl, line in err[
            ["pos", "column", "value", "rule", "detail", "line"]
        ].itertuples(index=False):
            v = "" if value is None else str(value)
            msg = f"{name} line {line}, column {col}: {dtl} (value {v!r})"
            err_records.append(
                {"line": int(line), "column": str(col), "value": v, "rule": str(rl), "message": msg}
            )
            q_rows.setdefault(int(pos), []).append(f"{col}: {rl} — {dtl} (value {v!r})")
    for b in raw.bad_records:
        msg = f"{name} line {b['line']}: {b['message']}"
        err_records.append(
            {
                "line": b["line"],
                "column": "",
                "value": b["raw"][:200],
                "rule": b["rule"],
                "message": msg,
            }
        )
    err_records.sort(
        key=lambda e: (e["line"] if e["line"] is not None else -1, e["column"], e["rule"])
    )

    qpos = np.array(sorted(q_rows), dtype=np.int64)
    raw_txt = raw.raw_text(qpos) if len(qpos) else []
    ids_raw = []
    for p in qpos:
        ids_raw.append(
            str(raw.uniques[id_j][raw.codes[id_j][p]]).strip() if id_j is not None else ""
        )
    q = pd.DataFrame(
        {
            "source_file": [name] * len(qpos) + [name] * len(raw.bad_records),
            "source_line": [int(raw.lines[p]) for p in qpos]
            + [int(b["line"]) for b in raw.bad_records],
            "respondent_id": ids_raw + [""] * len(raw.bad_records),
            "n_reasons": [len(q_rows[int(p)]) for p in qpos] + [1] * len(raw.bad_records),
            "reasons": [" | ".join(q_rows[int(p)]) for p in qpos]
            + [f"{b['rule']} — {b['message']}" for b in raw.bad_records],
            "raw": list(raw_txt) + [b["raw"] for b in raw.bad_records],
        }
    )
    q = (
        _quarantine_types(q)
        .sort_values(["source_file", "source_line"], kind="stable")
        .reset_index(drop=True)
    )

    rows_read = n + len(raw.bad_records) + raw.blank_lines
    n_q = len(q)
    if len(valid) + n_q + raw.blank_lines != rows_read:
        raise IngestError(
            f"{name}: internal error, row accounting broken "
            f"({len(valid)} valid + {n_q} quarantined + {raw.blank_lines} blank != {rows_read} read)"
        )
    norm_list = [
        {"column": c, "kind": k, "count": int(v[0]), "example": v[1]}
        for (c, k), v in sorted(norms.items())
    ]
    report = _base_report(name)
    report.update(
        {k: raw.meta.get(k) for k in ("format", "encoding", "delimiter", "sheet", "header_line")}
    )
    report["columns"] = {"read": len(raw.header), "typed": int(valid.shape[1])}
    report.update(
        rows_read=int(rows_read),
        rows_valid=len(valid),
        rows_quarantined=int(n_q),
        blank_lines=int(raw.blank_lines),
        normalisations=norm_list,
        warnings=list(warnings),
        errors=report_errors + err_records,
    )
    report["status"] = "ok" if n_q == 0 and not report_errors else "partial"
    if rows_read == raw.blank_lines:
        return _rejected(name, f"{name}: header without data (no response rows)", report)
    return IngestResult(valid, q, report)


def _quarantine_types(q: pd.DataFrame) -> pd.DataFrame:
    return q.astype(
        {
            "source_file": "str",
            "source_line": "int64",
            "respondent_id": "str",
            "n_reasons": "int64",
            "reasons": "str",
            "raw": "str",
        }
    )


# =============================================================================== public API
def ingest_file(
    path: str | Path,
    codebook: Codebook,
    *,
    profile: str = "auto",
    sheet: str | None = None,
    header_row: int | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    repair_mojibake: bool = False,
) -> IngestResult:
    """Read, normalise and validate one survey export.

    Parameters
    ----------
    path : str or Path
        CSV/TSV/TXT, XLSX, SPSS ``.sav`` or Parquet export.
    codebook : Codebook
        The study codebook (headers, labels, special codes, ranges).
    profile : {"auto", "limesurvey", "sphinx", "kobo", "qualtrics", "google-forms"}
        Export profile; ``qualtrics`` accepts its extra header rows.
    sheet : str, optional
        XLSX sheet (default: the one sheet whose header has the required columns).
    header_row : int, optional
        1-based physical line (row) of the header.
    encoding, delimiter : str, optional
        Force the text encoding / field delimiter (default: detected).
    repair_mojibake : bool, default False
        Repair cells whose text was double-encoded (UTF-8 read as cp1252: ``"Ã©"`` → ``"é"``).
        Off by default: such cells are only reported as warnings. When on, every repair is
        counted in the report's normalisations (kind ``mojibake_repaired``) and announced in a
        warning.

    Returns
    -------
    IngestResult
        Valid typed rows, quarantine and report. A file that cannot be read at all is returned
        with ``status == "rejected"`` (exit code 2) and one message naming the file; nothing is
        raised for user input.

    Raises
    ------
    TypeError
        When ``codebook`` is not a :class:`~evalterritoire.codebook.Codebook` (programmer error).
    """
    if not isinstance(codebook, Codebook):
        raise TypeError(f"codebook must be a Codebook, got {type(codebook).__name__}")
    path = Path(path)
    name = path.name
    meta: dict[str, Any] = {}
    if profile not in PROFILES:
        return _rejected(
            name, f"{name}: unknown profile {profile!r} (expected {', '.join(PROFILES)})"
        )
    if header_row is not None and header_row < 1:
        return _rejected(name, f"{name}: --header-row must be ≥ 1, got {header_row}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _rejected(name, f"{name}: cannot be read ({exc.strerror or type(exc).__name__})")
    fmt = _sniff_format(path, data[:64])
    meta["format"] = fmt
    try:
        if not data or data.isspace():
            raise FileRejectedError(f"{name}: the file is empty")
        if fmt == "html":
            raise FileRejectedError(
                f"{name}: this is an HTML page, not a spreadsheet (some tools save HTML as .xls); "
                "open it and save as .xlsx or CSV"
            )
        if fmt == "xls":
            raise FileRejectedError(
                f"{name}: legacy binary .xls is not supported; save it as .xlsx"
            )
        if fmt == "mismatch":
            raise FileRejectedError(
                f"{name}: the extension says {path.suffix} but the content is not; re-export the file"
            )
        if fmt == "xlsx":
            raw = _read_xlsx(
                path, name, codebook, sheet=sheet, header_row=header_row, profile=profile
            )
        elif fmt == "sav":
            raw = _read_sav(path, name, codebook, header_row=header_row, profile=profile)
        elif fmt == "parquet":
            raw = _read_parquet(path, name, codebook, profile=profile)
        else:
            raw = _read_csv(
                data,
                name,
                codebook,
                encoding=encoding,
                delimiter=delimiter,
                header_row=header_row,
                profile=profile,
            )
        del data
        meta.update(raw.meta)
        if sheet is not None and fmt != "xlsx":
            raw.warnings.append(f"{name}: --sheet {sheet!r} ignored: the file is not a workbook")
        return _process(raw, codebook, name, repair_mojibake=repair_mojibake)
    except FileRejectedError as exc:
        return _rejected(name, str(exc), meta)


def combine_results(results: Sequence[IngestResult]) -> IngestResult:
    """Combine the results of several export files of one wave.

    Respondent ids duplicated *across* files are quarantined (every copy), like duplicates
    within a file. A rejected file makes the combination rejected.

    Parameters
    ----------
    results : sequence of IngestResult
        One result per export file.

    Returns
    -------
    IngestResult
        Concatenated valid rows and quarantine; the report sums the counts and keeps one
        entry per file under ``per_file``.
    """
    if not results:
        raise ValueError("combine_results needs at least one result")
    files = [r.report["file"] for r in results]
    name = " + ".join(files)
    report = _base_report(name)
    report["files"] = files
    report["per_file"] = [r.report for r in results]
    for key in ("format", "encoding", "delimiter", "sheet"):
        vals = {str(r.report.get(key)) for r in results}
        report[key] = results[0].report.get(key) if len(vals) == 1 else "mixed"
    report["warnings"] = [w for r in results for w in r.report["warnings"]]
    report["errors"] = [e for r in results for e in r.report["errors"]]
    for key in ("rows_read", "blank_lines"):
        report[key] = int(sum(r.report[key] for r in results))
    norms: dict[tuple[str, str], list] = {}
    for r in results:
        for nrm in r.report["normalisations"]:
            _norm_add(norms, nrm["column"], nrm["kind"], nrm["count"], nrm["example"])
    report["normalisations"] = [
        {"column": c, "kind": k, "count": v[0], "example": v[1]}
        for (c, k), v in sorted(norms.items())
    ]
    if any(r.status == "rejected" for r in results):
        report["status"] = "rejected"
        return IngestResult(pd.DataFrame(), _empty_quarantine(), report)
    valid = pd.concat([r.valid for r in results], ignore_index=True)
    quarantine = pd.concat([r.quarantine for r in results], ignore_index=True)
    if "id_repondant" in valid and len(valid):
        ids = valid["id_repondant"]
        dup = ids.notna() & ids.duplicated(keep=False)
        if dup.any():
            moved = valid.loc[dup]
            extra_rows = []
            for rid, grp in moved.groupby("id_repondant", sort=True):
                where = ", ".join(
                    f"{f} line {ln}"
                    for f, ln in zip(grp["source_file"], grp["source_line"], strict=True)
                )
                for f, ln in zip(grp["source_file"], grp["source_line"], strict=True):
                    msg = f"{f} line {ln}, column id_repondant: respondent id {rid!r} appears in several files ({where}) (value {rid!r})"
                    report["errors"].append(
                        {
                            "line": int(ln),
                            "column": "id_repondant",
                            "value": str(rid),
                            "rule": "duplicate_id",
                            "message": msg,
                        }
                    )
                    extra_rows.append(
                        {
                            "source_file": f,
                            "source_line": int(ln),
                            "respondent_id": str(rid),
                            "n_reasons": 1,
                            "reasons": f"id_repondant: duplicate_id — {msg}",
                            "raw": "(typed row; see the source file)",
                        }
                    )
            quarantine = pd.concat(
                [quarantine, _quarantine_types(pd.DataFrame(extra_rows))], ignore_index=True
            )
            valid = valid.loc[~dup]
    quarantine = (
        _quarantine_types(quarantine)
        .sort_values(["source_file", "source_line"], kind="stable")
        .reset_index(drop=True)
    )
    sort_cols = [c for c in ("id_territoire_code", "id_repondant") if c in valid] + [
        "source_file",
        "source_line",
    ]
    valid = valid.sort_values(sort_cols, kind="stable", na_position="last").reset_index(drop=True)
    report["rows_valid"] = len(valid)
    report["rows_quarantined"] = len(quarantine)
    if (
        report["rows_valid"] + report["rows_quarantined"] + report["blank_lines"]
        != report["rows_read"]
    ):
        raise IngestError(f"{name}: internal error, row accounting broken when combining files")
    report["status"] = (
        "ok" if not len(quarantine) and all(r.status == "ok" for r in results) else "partial"
    )
    return IngestResult(valid, quarantine, report)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, Path):
        return value.name
    return str(value)


def write_ingest_outputs(result: IngestResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``responses.parquet``, ``quarantine.csv`` and ``ingestion.json`` (deterministic).

    Parameters
    ----------
    result : IngestResult
        The (possibly combined) ingestion result.
    out_dir : str or Path
        Output directory (created if needed).

    Returns
    -------
    dict of str to Path
        ``{"responses": ..., "quarantine": ..., "report": ...}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "responses": out / "responses.parquet",
            "quarantine": out / "quarantine.csv",
            "report": out / "ingestion.json",
        }
        table = pa.Table.from_pandas(result.valid, preserve_index=False)
        table = table.replace_schema_metadata(None)
        pq.write_table(table, paths["responses"], compression="zstd")
        q = result.quarantine if len(result.quarantine.columns) else _empty_quarantine()
        q.to_csv(paths["quarantine"], index=False, encoding="utf-8", lineterminator="\n")
        text = json.dumps(
            result.report, ensure_ascii=False, indent=2, sort_keys=True, default=_json_default
        )
        paths["report"].write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise IngestError(f"cannot write ingestion outputs to {out}: {exc.strerror}") from None
    return paths
