"""Typed columns of one raw table: the header mapped to the codebook, every mapped column parsed.

Owns the two first steps of validating an export:

* :func:`_map_columns` — the header cells mapped to codebook variables, multi-select option
  columns, unknown columns (ignored, with a warning) and unnamed ones (dropped when empty,
  data there quarantined), optionally after repairing double-encoded text;
* :func:`_parse_columns` — every mapped variable parsed with the codebook
  (:mod:`evalterritoire.ingest.parse`, each distinct text once), its normalisations counted, its
  unparsable cells sent to quarantine, a whole item coded on another scale turned into one
  column-level error (:func:`_wrong_scale`), and the typed values kept lazily
  (:class:`~evalterritoire.ingest.frame._LazyNum`, :class:`~evalterritoire.ingest.frame._LazyStr`);
  a multi-select given as 0/1 columns is read (and compared with its text) by
  :func:`_option_columns`.

What the steps find goes to the file's :class:`~evalterritoire.ingest.report._Findings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalterritoire.codebook import Codebook, Variable, normalise_text
from evalterritoire.errors import FileRejectedError
from evalterritoire.ingest.frame import _LazyNum, _LazyStr
from evalterritoire.ingest.parse import (
    _ERROR,
    _MISSING,
    _SPECIAL,
    _VALUE,
    _build_spec,
    _fmt,
    _parse_number,
    _parse_uniques,
    _Parsed,
    _repair_mojibake,
    _Spec,
)
from evalterritoire.ingest.raw import _map_header, _Raw, _suggest_variable
from evalterritoire.ingest.references import _check_reference
from evalterritoire.ingest.report import _Findings, _norm_add

#: Cell texts read as 0 / 1 in a 0/1 option column, besides numbers.
_TRUE = frozenset({"true", "vrai", "oui", "y", "yes"})
_FALSE = frozenset({"false", "faux", "non", "n", "no"})


# ------------------------------------------------------------------------------- header
@dataclass
class _Header:
    """The header of one export mapped to the codebook.

    ``mapping`` holds one target per raw column (:func:`~evalterritoire.ingest.raw._map_header`);
    ``by_var`` the raw column of each variable, ``opt_cols`` the raw 0/1 column of each option
    of a multi-select (variable → option → column), ``kept`` the raw column of each column kept
    as metadata (header → column).
    """

    mapping: list[tuple]
    by_var: dict[str, int] = field(default_factory=dict)
    opt_cols: dict[str, dict[str, int]] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)


def _map_columns(
    raw: _Raw, codebook: Codebook, found: _Findings, *, repair_mojibake: bool
) -> _Header:
    """Map the header to the codebook; check the unnamed, kept, ignored and unknown columns.

    A column that matches no variable and holds answers rejects the file, unless the codebook
    maps, ignores or keeps it (:func:`_refuse_unknown`); an empty one is dropped with a warning.
    """
    name = found.name
    header = _Header(_map_header(raw.header, codebook, name, raw.header_line)["targets"])
    if repair_mojibake:
        _repair_mojibake(raw, header.mapping, found.norms, found.warnings, name)
    unknown, unnamed, ignored = [], [], []
    for j, t in enumerate(header.mapping):
        if t[0] == "var":
            header.by_var[t[1]] = j
            if raw.header[j] != t[1]:
                _norm_add(found.norms, t[1], "header_synonym", 1, raw.header[j])
        elif t[0] == "opt":
            header.opt_cols.setdefault(t[1], {})[t[2]] = j
        elif t[0] == "unnamed":
            unnamed.append(j)
        elif t[0] == "keep":
            header.kept[t[1]] = j
        elif t[0] == "ignored":
            ignored.append(t[1])
        else:
            unknown.append(j)
    _refuse_unknown(raw, codebook, header, unknown, found)
    found.columns_ignored.extend(ignored)
    for j in unnamed:
        _unnamed_column(raw, j, found)
    return header


def _filled_rows(raw: _Raw, j: int) -> np.ndarray:
    """Positions of the rows whose cell in column ``j`` is not blank."""
    u, c = raw.uniques[j], raw.codes[j]
    filled = np.array([bool(str(x).strip()) for x in u], dtype=bool)
    return np.flatnonzero(filled[c]) if len(c) else np.zeros(0, np.int64)


def _refuse_unknown(
    raw: _Raw, codebook: Codebook, header: _Header, unknown: list[int], found: _Findings
) -> None:
    """Reject the file when a column matching no variable holds answers; warn about empty ones.

    The message lists every such column with its number of answers and, when one is likely,
    the variable it could be (a role word such as « Pondération », or a close name).
    """
    holding = [(j, len(_filled_rows(raw, j))) for j in unknown]
    empty = [raw.header[j] for j, n in holding if n == 0]
    if empty:
        found.warnings.append(
            f"{found.name}: {len(empty)} empty column(s) not in the codebook dropped: "
            + ", ".join(repr(u) for u in empty)
        )
    with_data = [(j, n) for j, n in holding if n]
    if not with_data:
        return
    present = set(header.by_var) | set(header.opt_cols)
    desc = ", ".join(
        f"{raw.header[j]!r} (column {j + 1}, {n} answer(s)"
        f"{_suggest_variable(raw.header[j], codebook, present)})"
        for j, n in with_data
    )
    raise FileRejectedError(
        f"{found.name}: {len(with_data)} column(s) of the header on line {raw.header_line} are "
        f"not in the codebook and hold answers: {desc}. Map each one to a variable (the "
        "codebook's columns: map:, or a column-mapping file: --column-map / [ingest] "
        "column_map), or declare it in the codebook's columns: ignore: or columns: keep:"
    )


def _unnamed_column(raw: _Raw, j: int, found: _Findings) -> None:
    """A column without a header name: dropped when empty, its data quarantined otherwise."""
    u, c = raw.uniques[j], raw.codes[j]
    rows = _filled_rows(raw, j)
    if len(rows):
        found.errors.add(
            rows,
            f"(column {j + 1}, unnamed)",
            u[c[rows]],
            "data_in_unnamed_column",
            "data in a column without a header name",
        )
    else:
        _norm_add(found.norms, f"(column {j + 1})", "empty_unnamed_column_dropped", 1, "")


# ------------------------------------------------------------------------------ columns
@dataclass
class _Typed:
    """The typed columns of one export (row positions of the raw table).

    Attributes
    ----------
    columns : dict
        Typed-data column → values: :class:`_LazyNum`, :class:`_LazyStr`, or an array
        (dates, 0/1 option columns).
    present : list of Variable
        The codebook variables the export has, in codebook order.
    text_cols : dict
        Variable id → (row codes, distinct raw texts) of its raw column.
    status_of : dict
        Variable id → per-row parse status (missing, value, special, error).
    multi_text : dict
        Multi-select id → (status, value, codes) of its text column, to compare with 0/1 columns.
    meta : list of str
        Columns kept as text metadata (``columns: keep:``), named by their header.
    """

    columns: dict[str, Any] = field(default_factory=dict)
    present: list[Variable] = field(default_factory=list)
    text_cols: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    status_of: dict[str, np.ndarray] = field(default_factory=dict)
    multi_text: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    meta: list[str] = field(default_factory=list)


def _parse_columns(raw: _Raw, codebook: Codebook, header: _Header, found: _Findings) -> _Typed:
    """Parse every column the export has for a codebook variable, in codebook order."""
    typed = _Typed()
    for var in codebook:
        if var.id not in header.by_var and var.id not in header.opt_cols:
            continue
        typed.present.append(var)
        if var.id in header.by_var:
            _parse_column(raw, codebook, var, header.by_var[var.id], typed, found)
        if var.id in header.opt_cols:
            _option_columns(var, header.opt_cols[var.id], raw, typed, found)
    for name, j in header.kept.items():
        texts = np.array([str(u).strip() or None for u in raw.uniques[j]], dtype=object)
        typed.columns[name] = _LazyStr(texts, raw.codes[j])
        typed.meta.append(name)
        found.columns_kept.append(name)
    _warn_zero_pad(found)
    return typed


def _parse_column(
    raw: _Raw, codebook: Codebook, var: Variable, j: int, typed: _Typed, found: _Findings
) -> None:
    """Parse the raw column ``j`` of ``var``: count normalisations, quarantine errors, type."""
    spec = _build_spec(var, codebook)
    codes, uniques = raw.codes[j], raw.uniques[j]
    typed.text_cols[var.id] = (codes, uniques)
    parsed = _parse_uniques(spec, uniques)
    if var.reference is not None:
        found.not_in_reference[var.id] = _check_reference(var, codebook, parsed)
    _count_normalisations(var.id, parsed, codes, uniques, found.norms)
    status = parsed.status[codes]
    err_rows = np.flatnonzero(status == _ERROR)
    ambiguous = _wrong_scale(spec, parsed, status, err_rows, codes, uniques, raw.header[j], found)
    if ambiguous is not None:
        parsed = _emptied(parsed, ambiguous)
        status = parsed.status[codes]
        err_rows = np.zeros(0, np.int64)
    if len(err_rows):
        cu = codes[err_rows]
        found.errors.add(err_rows, var.id, uniques[cu], parsed.rule[cu], parsed.detail[cu])
    typed.status_of[var.id] = status
    typed.columns.update(_typed_values(var, spec, parsed, codes))
    if spec.kind == "multi":
        typed.multi_text[var.id] = (parsed.status, parsed.value, codes)


def _count_normalisations(
    var_id: str, parsed: _Parsed, codes: np.ndarray, uniques: np.ndarray, norms: dict
) -> None:
    """Count every normalisation applied to the column's rows, with a first example each."""
    counts = (
        np.bincount(codes, minlength=len(uniques)) if len(codes) else np.zeros(len(uniques), int)
    )
    kept = parsed.status != _ERROR
    for kind in {d for d in parsed.detail[kept] if d}:
        sel = np.flatnonzero((parsed.detail == kind) & kept & (counts > 0))
        if len(sel):
            _norm_add(norms, var_id, kind, int(counts[sel].sum()), str(uniques[sel[0]]))


def _wrong_scale(
    spec: _Spec,
    parsed: _Parsed,
    status: np.ndarray,
    err_rows: np.ndarray,
    codes: np.ndarray,
    uniques: np.ndarray,
    column: str,
    found: _Findings,
) -> np.ndarray | None:
    """Whether a numeric item looks coded on another scale: most answers out of its range.

    The share is of the answered cells (values and errors, special codes aside), whatever the
    file's size: 4 out-of-range answers of 5 make a column-level error as 400 of 500 do. Such
    an item gets one column-level error instead of one quarantine per row; the caller empties
    the column and keeps the rows. A numeric special code inside the other scale's values
    (« 9 » declared « ne sait pas », in a column coded 0–10) is ambiguous there: it is emptied
    too, and said so.

    Returns
    -------
    ndarray of bool or None
        None when the column is on its scale; else, per distinct text, the special codes to
        empty with the column.
    """
    if spec.kind != "int" or not len(err_rows):
        return None
    answered = int(((status == _VALUE) | (status == _ERROR)).sum())
    oor = int((parsed.rule[codes[err_rows]] == "out_of_range").sum())
    if oor <= 0.5 * answered:
        return None
    numbers = np.array([_number_or_nan(u) for u in uniques], dtype=float)
    present = np.zeros(len(uniques), dtype=bool)
    present[np.unique(codes)] = True
    seen = numbers[present & ((parsed.status == _VALUE) | (parsed.rule == "out_of_range"))]
    seen = seen[~np.isnan(seen)]
    lo, hi = (float(seen.min()), float(seen.max())) if len(seen) else (np.nan, np.nan)
    ambiguous = present & (parsed.status == _SPECIAL) & (numbers >= lo) & (numbers <= hi)
    oor_values = numbers[present & (parsed.rule == "out_of_range")]
    oor_values = oor_values[~np.isnan(oor_values)]
    rng = f"{_fmt(oor_values.min())}–{_fmt(oor_values.max())}" if len(oor_values) else "?"
    note = ""
    if ambiguous.any():
        n_amb = int(ambiguous[codes].sum())
        texts = ", ".join(sorted({str(uniques[u]).strip() for u in np.flatnonzero(ambiguous)}))
        note = (
            f"; {n_amb} cell(s) {texts} read as a special code are values of the other "
            "scale too: emptied as well"
        )
    found.column_errors.append(
        {
            "line": None,
            "column": spec.var.id,
            "value": f"values {rng}",
            "rule": "wrong_scale",
            "message": f"{found.name}, column {column!r}: {oor} of {answered} answers are "
            f"outside the scale ({spec.scale}; values seen {rng}): the whole item looks "
            f"coded on another scale; column left empty, rows kept{note}",
        }
    )
    return ambiguous


def _number_or_nan(text: object) -> float:
    parsed = _parse_number(str(text).strip())
    return parsed[0] if parsed is not None else np.nan


def _emptied(parsed: _Parsed, ambiguous: np.ndarray) -> _Parsed:
    """The parse of a column left empty: special codes kept (but the ``ambiguous`` ones)."""
    keep = (parsed.status == _SPECIAL) & ~ambiguous
    return _Parsed(
        np.where(keep, _SPECIAL, _MISSING).astype(np.int8),
        np.full(len(parsed.status), np.nan),
        parsed.rule,
        parsed.detail,
        np.where(keep, parsed.special, None),
    )


def _typed_values(var: Variable, spec: _Spec, parsed: _Parsed, codes: np.ndarray) -> dict:
    """The typed-data columns of one parsed variable (value columns, then its special codes)."""
    status, value = parsed.status, parsed.value
    out: dict[str, Any] = {}
    if spec.kind in {"int", "float"}:
        out[var.id] = _LazyNum(np.where(status == _VALUE, value, np.nan).astype(float), codes)
    elif spec.kind == "multi":
        for okey in var.options:
            ticked = np.array(
                [
                    (1.0 if okey in v else 0.0) if s == _VALUE else np.nan
                    for s, v in zip(status, value, strict=True)
                ],
                dtype=float,
            )
            out[f"{var.id}__{okey}"] = _LazyNum(ticked, codes)
    elif spec.kind == "date":
        dates = np.array(
            [
                np.datetime64(v, "ns") if s == _VALUE else np.datetime64("NaT", "ns")
                for s, v in zip(status, value, strict=True)
            ],
            dtype="datetime64[ns]",
        )
        out[var.id] = dates[codes] if len(codes) else np.zeros(0, "datetime64[ns]")
    else:
        out[var.id] = _LazyStr(np.where(status == _VALUE, value, None), codes)
    if var.special_col:
        out[var.special_col] = _LazyStr(parsed.special, codes)
    return out


def _warn_zero_pad(found: _Findings) -> None:
    """Say out loud that territory codes which lost their leading zero were padded."""
    for (col, kind), (count, example) in sorted(found.norms.items()):
        if kind == "zero_pad":
            found.warnings.append(
                f"{found.name}: column {col!r}: {count} territory code(s) of 4 digits zero-padded "
                f"to 5 (e.g. {example!r}): a spreadsheet dropped the leading zero; check the "
                "codes against the source"
            )


# ------------------------------------------------------------------- 0/1 option columns
def _option_columns(
    var: Variable, cols: Mapping[str, int], raw: _Raw, typed: _Typed, found: _Findings
) -> None:
    """Multi-select given as 0/1 columns (Kobo ``item/option``, ``item__option``, ``item[option]``).

    Without a text column, the 0/1 columns are the item's values; with one, they must agree
    with it (disagreements are quarantined, the text's values kept).
    """
    text = typed.multi_text.get(var.id)
    read: dict[str, np.ndarray] = {}
    for okey in var.options:
        cname = f"{var.id}__{okey}"
        if okey not in cols:
            if text is None:
                typed.columns[cname] = np.full(raw.n_rows, np.nan)
            continue
        j = cols[okey]
        codes, uniques = raw.codes[j], raw.uniques[j]
        per_unique, bad = _binary_values(uniques)
        rows_bad = np.flatnonzero(bad[codes])
        found.errors.add(
            rows_bad,
            cname,
            uniques[codes[rows_bad]],
            "not_binary",
            "a 0/1 option column must hold 0 or 1",
        )
        vals = per_unique[codes]
        if text is not None:
            from_text = np.asarray(typed.columns[cname], dtype=float)
            _compare_with_text(cname, raw.header[j], vals, from_text, text, found)
        else:
            read[cname] = vals
            n_read = int((~np.isnan(vals)).sum())
            _norm_add(found.norms, cname, "option_column", n_read, raw.header[j])
    if read:
        _unticked_as_zero(read, found)
        typed.columns.update(read)


def _unticked_as_zero(read: dict[str, np.ndarray], found: _Findings) -> None:
    """An empty option cell of a row that ticked another option is 0 (« Y » / empty exports).

    LimeSurvey and Qualtrics write a ticked option and leave the others empty; a row with no
    option ticked stays unanswered.
    """
    ticked = np.zeros(len(next(iter(read.values()))), dtype=bool)
    for vals in read.values():
        ticked |= vals == 1
    for cname, vals in read.items():
        fill = np.isnan(vals) & ticked
        if fill.any():
            vals[fill] = 0.0
            _norm_add(found.norms, cname, "unticked_as_zero", int(fill.sum()), "")


def _binary_values(uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct text of a 0/1 column: its value (NaN when empty) and whether it is not 0/1."""
    val = np.full(len(uniques), np.nan)
    bad = np.zeros(len(uniques), dtype=bool)
    for u, s in enumerate(uniques):
        key = normalise_text(str(s))
        if key in {"", "."}:
            continue
        if key in _TRUE or key in _FALSE:
            num: tuple[float, list] | None = (1.0 if key in _TRUE else 0.0, [])
        else:
            num = _parse_number(key)
        if num is None or num[0] not in (0.0, 1.0):
            bad[u] = True
        else:
            val[u] = num[0]
    return val, bad


def _compare_with_text(
    cname: str,
    column: str,
    vals: np.ndarray,
    from_text: np.ndarray,
    text: tuple[np.ndarray, np.ndarray, np.ndarray],
    found: _Findings,
) -> None:
    """Quarantine the rows where a 0/1 option column and the multi-select text disagree."""
    status, value, tcodes = text
    both = ~np.isnan(vals) & ~np.isnan(from_text)
    diff = np.flatnonzero(both & (vals != from_text))
    if not len(diff):
        return
    ticked = [
        ", ".join(sorted(value[tcodes[d]])) if status[tcodes[d]] == _VALUE else "" for d in diff
    ]
    found.errors.add(
        diff,
        cname,
        [f"text={t!r}, {column}={_fmt(v)}" for t, v in zip(ticked, vals[diff], strict=True)],
        "multi_select_mismatch",
        "the select_multiple text and its 0/1 column disagree",
    )
