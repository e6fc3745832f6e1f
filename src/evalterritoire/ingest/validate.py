"""Validation of one raw table: from the text cells a reader produced to the file's result.

Owns :func:`_process`, the step between a reader and the report. It reads as its steps:

1. map the header to the codebook and parse every mapped column
   (:mod:`evalterritoire.ingest.columns`: normalisations counted, unparsable cells, whole items
   on the wrong scale, 0/1 option columns);
2. routing (:mod:`evalterritoire.ingest.routing`: « not asked » marked, answers where the
   question was not asked quarantined), then the row checks of
   :mod:`evalterritoire.ingest.checks` (required values where asked, soft bounds, duplicate
   respondent ids per wave, the codebook's cross-column rules);
3. the reader's cell flags (Excel error cells, formulas without a cached value) and the
   warnings about double-encoded text (:func:`_add_cell_flags`, :func:`_warn_garbled`);
4. the typed frame of the rows still valid, in output order, and the pandera checks of the
   schema generated from the codebook (:func:`_schema_checks`);
5. the valid rows and the findings handed to :func:`evalterritoire.ingest.report._assemble`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.ingest.checks import (
    _check_duplicates,
    _check_required,
    _check_rules,
    _check_soft_bounds,
)
from evalterritoire.ingest.columns import _map_columns, _parse_columns, _Typed
from evalterritoire.ingest.frame import _output_order, _typed_frame
from evalterritoire.ingest.parse import _GARBLED
from evalterritoire.ingest.raw import _Raw
from evalterritoire.ingest.references import _reference_report
from evalterritoire.ingest.report import IngestResult, _assemble, _Errors, _Findings
from evalterritoire.ingest.routing import _apply_routing
from evalterritoire.ingest.schemas import build_response_schema, compute_schema_failures

_MAX_REPORTED_WARN_LINES = 10
#: Rules of the reader's cell flags: such a cell is reported once, not again as unparsable.
_FLAG_RULES = frozenset({"excel_error", "formula_without_value", "cell_too_long"})


def _process(
    raw: _Raw, codebook: Codebook, name: str, *, repair_mojibake: bool = False
) -> IngestResult:
    """Normalise and validate the raw table of one export into its :class:`IngestResult`."""
    found = _Findings(name, list(raw.warnings))
    header = _map_columns(raw, codebook, found, repair_mojibake=repair_mojibake)
    typed = _parse_columns(raw, codebook, header, found)
    routing = _apply_routing(codebook, typed, raw, found)
    _check_required(typed.present, typed.status_of, typed.text_cols, found.errors, routing.asked)
    _check_soft_bounds(typed.present, typed.columns, raw.lines, found)
    _check_duplicates(raw, codebook, typed.columns, found.errors)
    _check_rules(codebook, typed.columns, raw.n_rows, found.errors)
    flagged = _add_cell_flags(raw, header.mapping, found.errors)
    _warn_garbled(raw, header.mapping, found)
    err = _once_per_flagged_cell(found.errors, flagged)
    frame, rows = _valid_frame(raw, codebook, typed, err, found)
    frame, err = _schema_checks(codebook, typed, frame, rows, err, flagged, found)
    found.reference_lists = _reference_report(codebook, typed.present, found.not_in_reference)
    id_col = codebook.column("respondent_id")
    return _assemble(raw, frame, err, found, header.by_var.get(id_col or ""), codebook)


def _add_cell_flags(raw: _Raw, mapping: list[tuple], errors: _Errors) -> set[tuple[int, str]]:
    """Quarantine the cells the reader flagged; return them as (row position, column)."""
    flagged: set[tuple[int, str]] = set()
    for pos, j, val, rule, detail in raw.cell_errors:
        t = mapping[j]
        col = t[1] if t[0] in {"var", "opt"} else raw.header[j] or f"(column {j + 1})"
        errors.add([pos], col, [val], rule, detail)
        flagged.add((int(pos), col))
    return flagged


def _warn_garbled(raw: _Raw, mapping: list[tuple], found: _Findings) -> None:
    """Warn about the columns holding text that looks double-encoded (not repaired here)."""
    for j, t in enumerate(mapping):
        u = raw.uniques[j]
        if not len(u) or t[0] == "unnamed":
            continue
        us = pd.Series(u, dtype="str")
        hit = us.str.contains(_GARBLED.pattern, regex=True).to_numpy(dtype=bool, copy=True)
        if hit.any():
            rows = np.flatnonzero(hit[raw.codes[j]])
            lines = ", ".join(str(x) for x in raw.lines[rows[:_MAX_REPORTED_WARN_LINES]])
            found.warnings.append(
                f"{found.name}: column {raw.header[j]!r} has text that looks double-encoded "
                f"(e.g. {str(u[np.flatnonzero(hit)[0]])!r}) on {len(rows)} row(s), lines {lines}"
                + (" …" if len(rows) > _MAX_REPORTED_WARN_LINES else "")
                + "; not repaired"
            )


def _once_per_flagged_cell(errors: _Errors, flagged: set[tuple[int, str]]) -> pd.DataFrame:
    """The errors collected, without a second error on a cell the reader flagged."""
    err = errors.frame()
    if flagged and len(err):
        keep = [
            (int(p), c) not in flagged or r in _FLAG_RULES
            for p, c, r in err[["pos", "column", "rule"]].itertuples(index=False)
        ]
        err = err.loc[keep]
    return err


def _valid_frame(
    raw: _Raw, codebook: Codebook, typed: _Typed, err: pd.DataFrame, found: _Findings
) -> tuple[pd.DataFrame, np.ndarray]:
    """The typed frame of the rows without error, in output order, and their raw positions.

    The order is the codebook's territory and respondent id, then the line; strings are built
    once from their codes, only for these rows.
    """
    ok_mask = np.ones(raw.n_rows, dtype=bool)
    if len(err):
        ok_mask[err["pos"].to_numpy(dtype=np.int64)] = False
    sort_by = [codebook.column("territory"), codebook.column("respondent_id")]
    rows = _output_order(np.flatnonzero(ok_mask), typed.columns, raw.lines, sort_by)
    frame = _typed_frame(
        typed.columns, codebook, typed.present, raw, found.name, found.warnings, rows, typed.meta
    )
    return frame, rows


def _schema_checks(
    codebook: Codebook,
    typed: _Typed,
    frame: pd.DataFrame,
    rows: np.ndarray,
    err: pd.DataFrame,
    flagged: set[tuple[int, str]],
    found: _Findings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the pandera schema of the codebook on the typed frame.

    A row failing a check is quarantined (and leaves the frame); a whole column failing one is
    a column-level error. Returns the frame and the errors, updated.
    """
    checked = [c for v in typed.present for c in v.columns()] + ["source_file", "source_line"]
    schema = build_response_schema(codebook, columns=checked)
    # the schema covers the checked columns only (strict=False): no column selection, no copy
    failures = compute_schema_failures(frame, schema)
    if not len(failures):
        return frame, err
    row_fail = failures[failures["index"].notna()]
    for idx, column, check, value in row_fail[
        ["index", "column", "check", "failure_case"]
    ].itertuples(index=False):
        pos = int(rows[int(idx)])
        found.errors.add(
            [pos],
            str(column),
            [_raw_cell(typed, str(column), pos, value)],
            f"schema:{check}",
            _check_in_words(str(check)),
        )
    for column, check in failures[failures["index"].isna()][["column", "check"]].itertuples(
        index=False
    ):
        found.column_errors.append(
            {
                "line": None,
                "column": str(column),
                "value": "",
                "rule": f"schema:{check}",
                "message": f"{found.name}, column {column!r}: {_check_in_words(str(check))}",
            }
        )
    if not len(row_fail):
        return frame, err
    failed = np.zeros(len(rows), dtype=bool)
    failed[row_fail["index"].astype(np.int64).to_numpy()] = True
    frame = frame.loc[~failed].reset_index(drop=True)
    return frame, _once_per_flagged_cell(found.errors, flagged)


_CHECK_WORDS = (
    (re.compile(r"greater_than\((.*)\)"), "must be greater than {}"),
    (re.compile(r"greater_than_or_equal_to\((.*)\)"), "must be at least {}"),
    (re.compile(r"less_than_or_equal_to\((.*)\)"), "must be at most {}"),
    (re.compile(r"isin\(\[(.*)\]\)"), "must be one of {}"),
    (re.compile(r"str_matches\('(.*)'\)"), "does not match the pattern {}"),
    (re.compile(r"integer"), "is not a whole number"),
)


def _check_in_words(check: str) -> str:
    """A pandera check as a rule in the user's words (``greater_than(0)`` → must be > 0)."""
    for pattern, words in _CHECK_WORDS:
        m = pattern.fullmatch(check)
        if m:
            found = m.groups()
            return words.format(*(_plain_number(g) for g in found))
    return f"fails the check {check}"


def _plain_number(text: str) -> str:
    """``0.0`` → ``0``, other texts unchanged (numbers as the user wrote them)."""
    try:
        value = float(text)
    except ValueError:
        return text.replace("'", "")
    return str(int(value)) if value.is_integer() else text


def _raw_cell(typed: _Typed, column: str, pos: int, fallback: object) -> str:
    """The raw text of a row's cell behind a typed column (``<id>``, ``<id>__<x>``)."""
    base = column.split("__", 1)[0]
    if base in typed.text_cols:
        codes, uniques = typed.text_cols[base]
        return str(uniques[codes[pos]])
    return str(fallback)
