"""Row checks across the typed columns of one export: required values, duplicates, codebook rules.

Owns the checks that look at a whole row rather than one cell, each adding its quarantine
reasons to the file's :class:`~evalterritoire.ingest.report._Errors`:

* :func:`_check_required` — a required variable left without an answer;
* :func:`_check_duplicates` — the same respondent id (codebook role ``respondent_id``) more
  than once within a wave (role ``wave``, whatever its type; the whole file when the codebook
  or the export has no wave), every copy quarantined, the diverging columns named;
* :func:`_check_soft_bounds` — values beyond a variable's ``warn_below`` / ``warn_above`` or
  far from the median (``warn_median_ratio``, extreme weights): valid, counted in a warning;
* :func:`_check_rules` — the codebook's cross-column rules (:class:`~evalterritoire.codebook.Rule`):
  on the rows where the gate variable takes one of the rule's values, every dependent variable
  must take one of the allowed values.

Columns are named through the codebook (roles, rules), never written here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, Rule, Variable
from evalterritoire.codebook.model import MISSING_VALUE, NUMERIC_TYPES
from evalterritoire.errors import CodebookError
from evalterritoire.ingest.frame import _LazyNum, _LazyStr
from evalterritoire.ingest.parse import _MISSING, _fmt
from evalterritoire.ingest.raw import _Raw
from evalterritoire.ingest.report import _Errors


# ---------------------------------------------------------------------------- required values
def _check_required(
    present: Sequence[Variable],
    status_of: Mapping[str, np.ndarray],
    text_cols: Mapping[str, tuple[np.ndarray, np.ndarray]],
    errors: _Errors,
    asked: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Quarantine the rows where a required variable has no answer (where it was asked)."""
    asked = asked or {}
    for var in present:
        if var.required and var.id in status_of:
            missing = status_of[var.id] == _MISSING
            if var.id in asked:
                missing &= asked[var.id]
            miss = np.flatnonzero(missing)
            if len(miss):
                codes, uniques = text_cols[var.id]
                errors.add(
                    miss, var.id, uniques[codes[miss]], "required", "required value is missing"
                )


# ------------------------------------------------------------------------- duplicate ids
def _wave_keys(column: Any) -> pd.Series | None:
    """The wave of every row as text (``""`` when missing), whatever the column's type."""
    if column is None:
        return None
    if isinstance(column, _LazyStr):
        return column.take(None).fillna("")
    if isinstance(column, _LazyNum):
        shown = np.array(
            ["" if np.isnan(v) else _fmt(v) for v in column.per_unique.astype(float)], dtype=object
        )
        return pd.Series(shown[column.codes], dtype="str")
    values = np.asarray(column)
    if values.dtype.kind == "M":
        shown = np.where(np.isnat(values), "", np.datetime_as_string(values, unit="D"))
        return pd.Series(shown, dtype="str")
    return pd.Series(["" if v is None else str(v) for v in values], dtype="str")


def _check_duplicates(
    raw: _Raw, codebook: Codebook, columns: Mapping[str, Any], errors: _Errors
) -> None:
    """Quarantine every copy of a respondent id seen more than once within a wave.

    The same id in another wave is another response. Copies are told apart as exact copies or
    conflicting ones (the columns whose raw text differs are named).
    """
    id_col = codebook.column("respondent_id")
    if id_col is None or id_col not in columns or not raw.n_rows:
        return
    ids = columns[id_col]
    if isinstance(ids, _LazyStr):
        ids = ids.take(None)
    wave_col = codebook.column("wave")
    wave_key = _wave_keys(columns.get(wave_col) if wave_col is not None else None)
    keyed = ids if wave_key is None else ids + "\x1f" + wave_key
    dup = ids.notna() & keyed.duplicated(keep=False)
    if not dup.any():
        return
    dpos = np.flatnonzero(dup.to_numpy())
    groups = ids.iloc[dpos].groupby(keyed.iloc[dpos], sort=True).indices
    rows_out, details = [], []
    for _key, gi in groups.items():
        members = dpos[gi]
        first = int(members[0])
        in_wave = f" in wave {wave_key.iloc[first]!r}" if wave_key is not None else ""
        detail = (
            f"respondent id {ids.iloc[first]!r} appears {len(members)} times{in_wave} "
            f"(lines {', '.join(str(raw.lines[m]) for m in members)}): {_copies(raw, members)}"
        )
        rows_out.extend(members)
        details.extend([detail] * len(members))
    rows_arr = np.asarray(rows_out, dtype=np.int64)
    errors.add(
        rows_arr,
        id_col,
        ids.to_numpy()[rows_arr],
        "duplicate_id",
        np.asarray(details, dtype=object),
    )


def _copies(raw: _Raw, members: np.ndarray) -> str:
    """How the copies of one id differ: exact copies, or the columns whose raw text differs."""
    diverging = [
        raw.header[j]
        for j in range(len(raw.header))
        if len({raw.uniques[j][raw.codes[j][m]] for m in members}) > 1
    ]
    if not diverging:
        return "exact copies"
    return "conflicting copies, columns differing: " + ", ".join(diverging[:10])


# --------------------------------------------------------------------------- codebook rules
class _RuleValues:
    """The per-row values of one variable, as a rule compares them.

    Numeric variables compare as numbers, option and text variables as their keys; a
    multi-select item's value is its number of ticked options. A missing value (no answer, or
    a special code, which carries no value) is NaN for numbers and None otherwise. Text values
    stay per distinct value (``values``) with row ``codes``, so a rule tests each text once.
    """

    def __init__(
        self, var: Variable, values: np.ndarray, numeric: bool, codes: np.ndarray | None = None
    ) -> None:
        self.var = var
        self.values = values
        self.numeric = numeric
        self.codes = codes

    @classmethod
    def of(cls, var: Variable, columns: Mapping[str, Any], n: int) -> _RuleValues | None:
        """The values of ``var`` in the export, or None when the export does not have it."""
        if var.type == "multi_select":
            present = [c for c in var.option_cols() if c in columns]
            if not present:
                return None
            ticks, answered = np.zeros(n), np.zeros(n, dtype=bool)
            for col in present:
                ticked = np.asarray(columns[col], dtype=float)
                ticks = ticks + np.nan_to_num(ticked)
                answered |= ~np.isnan(ticked)
            return cls(var, np.where(answered, ticks, np.nan), True)
        column = columns.get(var.id)
        if column is None:
            return None
        if var.type in NUMERIC_TYPES:
            return cls(var, np.asarray(column, dtype=float), True)
        if isinstance(column, _LazyStr):
            return cls(var, column.per_unique, False, column.codes)
        values = np.asarray(column)
        if values.dtype.kind == "M":
            text = np.datetime_as_string(values, unit="D").astype(object)
            return cls(var, np.where(np.isnat(values), None, text), False)
        return cls(var, values.astype(object), False)

    def matches(self, wanted: Sequence[Any], rule: Rule) -> np.ndarray:
        """Rows whose value is one of ``wanted`` (codes, option keys or ``missing``)."""
        keys = [w for w in wanted if w != MISSING_VALUE]
        if self.numeric:
            missing = np.isnan(self.values)
            out = np.isin(self.values, [_as_number(w, self.var, rule) for w in keys])
        else:
            missing = np.array([v is None for v in self.values], dtype=bool)
            wanted_keys = {str(w) for w in keys}
            out = np.array([v is not None and v in wanted_keys for v in self.values], dtype=bool)
        out = out | missing if MISSING_VALUE in wanted else out
        return out if self.codes is None else out[self.codes]

    def value(self, row: int) -> Any:
        """The value of one row (NaN or None when missing)."""
        return self.values[row if self.codes is None else self.codes[row]]

    def shown(self, row: int) -> str:
        """The value of a row as written in a quarantine reason."""
        v = self.value(row)
        if self.numeric:
            return MISSING_VALUE if np.isnan(v) else _fmt(v)
        return MISSING_VALUE if v is None else str(v)


def _as_number(value: Any, var: Variable, rule: Rule) -> float:
    try:
        return float(value)
    except ValueError:
        raise CodebookError(
            f"rule '{rule.id}': value {value!r} of the numeric variable '{var.id}' is not a number"
        ) from None


def _check_rules(codebook: Codebook, columns: Mapping[str, Any], n: int, errors: _Errors) -> None:
    """Quarantine the rows breaking a cross-column rule of the codebook.

    A rule applies to the rows whose gate variable takes one of its ``if`` values; there, each
    dependent variable must take one of its ``then`` values. A variable the export does not
    have is not checked.
    """
    for rule in codebook.rules:
        gate = _RuleValues.of(codebook[rule.if_variable], columns, n)
        if gate is None:
            continue
        applies = gate.matches(rule.if_values, rule)
        for dep_id in rule.then_variables:
            dep = _RuleValues.of(codebook[dep_id], columns, n)
            if dep is None:
                continue
            rows = np.flatnonzero(applies & ~dep.matches(rule.then_values, rule))
            if len(rows):
                _add_incoherent(codebook, rule, gate, dep, rows, errors)


def _add_incoherent(
    codebook: Codebook,
    rule: Rule,
    gate: _RuleValues,
    dep: _RuleValues,
    rows: np.ndarray,
    errors: _Errors,
) -> None:
    """One quarantine reason per row breaking ``rule``, naming both columns and their values."""
    g, d = gate.var.id, dep.var.id
    labels = {str(k): str(v).lower() for k, v in codebook.value_labels(g).items()}
    zero_or_missing = dep.numeric and _only_zero_or_missing(rule)
    values, details = [], []
    for row in rows:
        gv, dv = gate.shown(row), dep.shown(row)
        label = f" ({labels[gv]})" if gv in labels else ""
        values.append(f"{g}={gv}, {d}={dv}")
        if zero_or_missing and dep.value(row) > 0:
            details.append(f"{g} = {gv}{label} but {d} is answered positively")
        else:
            details.append(
                f"{g} = {gv}{label}, so {d} must be {_allowed(rule.then_values)}, "
                f"but it is {dv} (rule '{rule.id}')"
            )
    errors.add(rows, f"{g}+{d}", values, "incoherent", np.asarray(details, dtype=object))


def _only_zero_or_missing(rule: Rule) -> bool:
    """Whether the rule allows exactly 0 and no answer (the "answered positively" wording)."""
    allowed = {
        v if v == MISSING_VALUE else (float(v) if isinstance(v, int | float) else v)
        for v in rule.then_values
    }
    return allowed == {0.0, MISSING_VALUE}


def _allowed(values: Sequence[Any]) -> str:
    """The allowed values in words: ``0``, ``one of 1, 2 or no answer``."""
    shown = [
        "no answer" if v == MISSING_VALUE else (_fmt(v) if isinstance(v, int | float) else str(v))
        for v in values
    ]
    if len(shown) == 1:
        return shown[0]
    return "one of " + ", ".join(shown[:-1]) + " or " + shown[-1]


# ------------------------------------------------------------------------------ soft bounds
#: Lines named in a soft-bound warning (the count says how many there are).
_MAX_WARN_LINES = 10


def _check_soft_bounds(
    present: Sequence[Variable], columns: Mapping[str, Any], lines: np.ndarray, found: Any
) -> None:
    """Warn about values beyond the soft bounds of their variable; nothing is quarantined.

    ``found`` is the file's :class:`~evalterritoire.ingest.report._Findings` (its ``name`` and
    ``warnings`` are used).
    """
    for var in present:
        bounds = (var.warn_below, var.warn_above, var.warn_median_ratio)
        if all(b is None for b in bounds) or var.id not in columns:
            continue
        values = np.asarray(columns[var.id], dtype=float)
        checks = []
        if var.warn_below is not None:
            checks.append((values < var.warn_below, f"below {_fmt(var.warn_below)} (warn_below)"))
        if var.warn_above is not None:
            checks.append((values > var.warn_above, f"above {_fmt(var.warn_above)} (warn_above)"))
        if var.warn_median_ratio is not None and np.isfinite(values).any():
            median = float(np.nanmedian(values))
            ratio = var.warn_median_ratio
            far = (values > ratio * median) | (values < median / ratio)
            checks.append(
                (far, f"more than {_fmt(ratio)} times the median {_fmt(round(median, 6))} away")
            )
        for mask, what in checks:
            rows = np.flatnonzero(mask)
            if len(rows):
                shown = ", ".join(str(x) for x in lines[rows[:_MAX_WARN_LINES]])
                more = " …" if len(rows) > _MAX_WARN_LINES else ""
                found.warnings.append(
                    f"{found.name}: column {var.id!r}: {len(rows)} value(s) {what}, lines "
                    f"{shown}{more}: kept as valid, check them"
                )
