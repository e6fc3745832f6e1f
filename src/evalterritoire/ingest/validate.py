"""Normalisation and validation of one raw table: typed columns, row checks, quarantine reasons.

Owns :func:`_process`, the step between a reader and the report: it maps the header to the
codebook, parses every mapped column (:mod:`evalterritoire.ingest.parse`), counts each normalisation, and
collects the cell and row errors that send a record to quarantine — unparsable values, data in
unnamed columns, whole items on the wrong scale (one column-level error), 0/1 option columns
(:func:`_option_columns`), missing required values, duplicate respondent ids, cross-column
incoherence (:data:`COHERENCE_RULES`), reader cell flags, and the pandera checks of the typed
frame — then hands the valid rows and the errors to :func:`evalterritoire.ingest.report._assemble`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, Variable, normalise_text
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
from evalterritoire.ingest.report import IngestResult, _assemble, _norm_add
from evalterritoire.ingest.schemas import build_response_schema, compute_schema_failures

_MAX_REPORTED_WARN_LINES = 10

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

    id_var = codebook.role("respondent_id")
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
