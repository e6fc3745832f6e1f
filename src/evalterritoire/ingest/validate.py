"""Normalisation and validation of one raw table: typed columns, row checks, quarantine reasons.

Owns :func:`_process`, the step between a reader and the report: it maps the header to the
codebook, parses every mapped column (:mod:`evalterritoire.ingest.parse`), counts each normalisation, and
collects the cell and row errors that send a record to quarantine — unparsable values, data in
unnamed columns, whole items on the wrong scale (one column-level error), 0/1 option columns
(:func:`_option_columns`), the row checks of :mod:`evalterritoire.ingest.checks` (missing
required values, duplicate respondent ids, the codebook's cross-column rules), reader cell flags, and the pandera checks of the typed
frame — then hands the valid rows and the errors to :func:`evalterritoire.ingest.report._assemble`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, Variable, normalise_text
from evalterritoire.ingest.checks import _check_duplicates, _check_required, _check_rules
from evalterritoire.ingest.frame import _LazyNum, _LazyStr, _output_order, _typed_frame
from evalterritoire.ingest.parse import (
    _ERROR,
    _GARBLED,
    _MISSING,
    _SPECIAL,
    _VALUE,
    _build_spec,
    _fmt,
    _parse_number,
    _parse_uniques,
    _Parsed,
    _repair_mojibake,
)
from evalterritoire.ingest.raw import _map_header, _Raw
from evalterritoire.ingest.report import IngestResult, _assemble, _Errors, _norm_add
from evalterritoire.ingest.schemas import build_response_schema, compute_schema_failures

_MAX_REPORTED_WARN_LINES = 10


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

    _check_required(present, status_of, text_cols, errors)
    _check_duplicates(raw, codebook, columns, errors)
    _check_rules(codebook, columns, n, errors)

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
    sort_by = [codebook.column("territory"), codebook.column("respondent_id")]
    rows = _output_order(np.flatnonzero(ok_mask), columns, raw.lines, sort_by)
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

    id_col = codebook.column("respondent_id")
    return _assemble(
        raw, frame, err, norms, warnings, report_errors, name, by_var.get(id_col or ""), codebook
    )


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
