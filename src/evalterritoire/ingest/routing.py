"""Routing at ingestion: « not asked » told apart from « not answered » and « ne sait pas ».

A variable with ``relevant:`` (:mod:`evalterritoire.codebook.conditions`) was asked only to
the respondents for whom its condition holds. For every such variable the export has,
:func:`_apply_routing` evaluates the condition on the typed columns (vectorised) and then:

* where the question was **not asked** and the cell is empty, the row is valid and its
  ``<id>__special`` column holds the codebook's ``not_asked`` key (counted as the normalisation
  ``not_asked``) — distinct from an empty answer where it was asked (« not answered », a
  missing value) and from « ne sait pas » (a special code the respondent chose);
* where it was not asked but holds an answer (a value or a special code), the row is
  quarantined (rule ``answered_not_asked``), the reason naming the condition and the values
  that made it false;
* where it was asked but the cell says « not asked » (the tool's filter code), the row is
  quarantined (rule ``not_asked_but_routed``).

A required variable is only required where it was asked (:attr:`_Routing.asked`). When the
export lacks a variable a condition reads, that variable's routing is not checked, with a
warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalterritoire.codebook import Codebook, Variable
from evalterritoire.codebook.conditions import Condition
from evalterritoire.codebook.model import NUMERIC_TYPES
from evalterritoire.ingest.columns import _Typed
from evalterritoire.ingest.frame import _LazyNum, _LazyStr
from evalterritoire.ingest.parse import _ERROR, _MISSING, _SPECIAL, _VALUE, _fmt
from evalterritoire.ingest.raw import _Raw
from evalterritoire.ingest.report import _Findings, _norm_add


@dataclass
class _Routing:
    """Where each routed variable was asked (variable id → per-row mask)."""

    asked: dict[str, np.ndarray] = field(default_factory=dict)


class _AbsentColumnError(Exception):
    """A condition reads a variable the export does not have."""


def _apply_routing(codebook: Codebook, typed: _Typed, raw: _Raw, found: _Findings) -> _Routing:
    """Evaluate every routed variable's condition; mark « not asked », quarantine mismatches."""
    routing = _Routing()
    not_asked = codebook.not_asked_key
    present = {v.id for v in typed.present}
    for var in typed.present:
        if var.relevant is None or not_asked is None:
            continue
        try:
            asked = _evaluate(var.relevant, codebook, typed, raw.n_rows, present)
        except _AbsentColumnError as exc:
            found.warnings.append(
                f"{found.name}: routing of {var.id!r} ({var.relevant.text}) not checked: the "
                f"export has no column {exc.args[0]!r}"
            )
            continue
        routing.asked[var.id] = asked
        _route_variable(var, asked, codebook, typed, raw, found, not_asked)
    return routing


def _answer_state(var: Variable, typed: _Typed, n: int, not_asked: str) -> tuple[np.ndarray, ...]:
    """Per row: (answered — a value or a chosen special code, marked « not asked », empty)."""
    special = typed.columns.get(var.special_col) if var.special_col else None
    marked = np.zeros(n, dtype=bool)
    if isinstance(special, _LazyStr):
        marked = (special.per_unique == not_asked)[special.codes]
    status = typed.status_of.get(var.id)
    if status is not None:
        answered = ((status == _VALUE) | (status == _SPECIAL) | (status == _ERROR)) & ~marked
        empty = status == _MISSING
    else:  # a multi-select given as 0/1 columns only
        answered = np.zeros(n, dtype=bool)
        for col in var.option_cols():
            if col in typed.columns:
                answered |= ~np.isnan(np.asarray(typed.columns[col], dtype=float))
        empty = ~answered & ~marked
    return answered, marked, empty


def _route_variable(
    var: Variable,
    asked: np.ndarray,
    codebook: Codebook,
    typed: _Typed,
    raw: _Raw,
    found: _Findings,
    not_asked: str,
) -> None:
    """Quarantine the rows where routing and answer disagree; mark the rows not asked."""
    answered, marked, empty = _answer_state(var, typed, raw.n_rows, not_asked)
    wrong = np.flatnonzero(~asked & answered)
    if len(wrong):
        values = _cell_texts(var, typed, wrong)
        why = [_why_false(var.relevant, codebook, typed, int(r)) for r in wrong]
        found.errors.add(
            wrong,
            var.id,
            values,
            "answered_not_asked",
            np.asarray(
                [
                    f"answered although the question was not asked (routing "
                    f"{var.relevant.text!r} is false: {w})"
                    for w in why
                ],
                dtype=object,
            ),
        )
    routed = np.flatnonzero(asked & marked)
    if len(routed):
        found.errors.add(
            routed,
            var.id,
            _cell_texts(var, typed, routed),
            "not_asked_but_routed",
            f"marked « not asked » although the routing {var.relevant.text!r} says it was asked",
        )
    fill = ~asked & empty
    if fill.any() and var.special_col:
        _mark_not_asked(var, typed, fill, not_asked)
        _norm_add(found.norms, var.id, "not_asked", int(fill.sum()), var.relevant.text)


def _mark_not_asked(var: Variable, typed: _Typed, rows: np.ndarray, not_asked: str) -> None:
    """Write the « not asked » key in the special column of ``rows`` (a row mask)."""
    special = typed.columns.get(var.special_col)
    if isinstance(special, _LazyStr):
        per_unique, codes = special.per_unique, special.codes.copy()
    else:
        per_unique, codes = np.array([None], dtype=object), np.zeros(len(rows), dtype=np.int64)
    per_unique = np.append(per_unique, np.array([not_asked], dtype=object))
    codes[rows] = len(per_unique) - 1
    typed.columns[var.special_col] = _LazyStr(per_unique, codes)


def _cell_texts(var: Variable, typed: _Typed, rows: np.ndarray) -> list[str]:
    """The raw texts of ``rows`` of a variable's column (option columns: « 0/1 columns »)."""
    if var.id in typed.text_cols:
        codes, uniques = typed.text_cols[var.id]
        return [str(uniques[codes[r]]) for r in rows]
    return ["(0/1 option columns)"] * len(rows)


# ----------------------------------------------------------------------------- evaluation
def _evaluate(
    cond: Condition, codebook: Codebook, typed: _Typed, n: int, present: set[str]
) -> np.ndarray:
    """The condition on every row (a boolean mask)."""
    if cond.kind == "and":
        out = np.ones(n, dtype=bool)
        for part in cond.parts:
            out &= _evaluate(part, codebook, typed, n, present)
        return out
    if cond.kind == "or":
        out = np.zeros(n, dtype=bool)
        for part in cond.parts:
            out |= _evaluate(part, codebook, typed, n, present)
        return out
    if cond.kind == "not":
        return ~_evaluate(cond.parts[0], codebook, typed, n, present)
    if cond.variable not in present:
        raise _AbsentColumnError(cond.variable)
    var = codebook[cond.variable]
    if cond.kind == "answered":
        not_asked = codebook.not_asked_key or ""
        return _answer_state(var, typed, n, not_asked)[0]
    if cond.kind == "selected" and var.type == "multi_select":
        column = typed.columns.get(f"{var.id}__{cond.value}")
        return np.zeros(n, dtype=bool) if column is None else np.asarray(column, float) == 1
    return _compare(var, "=" if cond.kind == "selected" else cond.op, cond.value, typed, n)


def _compare(var: Variable, op: str, value: Any, typed: _Typed, n: int) -> np.ndarray:
    """``var op value`` on every row: false where unanswered, except for ``!=``."""
    column = typed.columns.get(var.id)
    if var.type in NUMERIC_TYPES:
        values = np.asarray(column, dtype=float)
        with np.errstate(invalid="ignore"):
            result = {
                "=": values == value,
                "!=": ~(values == value),
                "<": values < value,
                "<=": values <= value,
                ">": values > value,
                ">=": values >= value,
            }[op]
        return result
    key = _fmt(value) if isinstance(value, float) else str(value)
    if isinstance(column, _LazyStr):
        equal = np.array([v is not None and str(v) == key for v in column.per_unique], bool)
        equal = equal[column.codes]
    else:
        equal = np.array([v is not None and str(v) == key for v in np.asarray(column)], bool)
    return equal if op == "=" else ~equal


def _why_false(cond: Condition, codebook: Codebook, typed: _Typed, row: int) -> str:
    """The values of the variables a condition reads, on one row (``part_x=0, y=missing``)."""
    shown = []
    for name in dict.fromkeys(cond.variables()):
        var = codebook[name]
        shown.append(f"{name}={_value_of(var, typed, row)}")
    return ", ".join(shown)


def _value_of(var: Variable, typed: _Typed, row: int) -> str:
    if var.type == "multi_select":
        ticked = [
            opt
            for opt in var.options
            if np.asarray(typed.columns.get(f"{var.id}__{opt}", np.zeros(row + 1)))[row] == 1
        ]
        return "{" + ", ".join(ticked) + "}" if ticked else "missing"
    column: Any = typed.columns.get(var.id)
    if isinstance(column, _LazyStr):
        value = column.per_unique[column.codes[row]]
        return "missing" if value is None else str(value)
    if isinstance(column, _LazyNum):
        value = float(column.per_unique[column.codes[row]])
        return "missing" if np.isnan(value) else _fmt(value)
    return "missing" if column is None else str(np.asarray(column)[row])


def _required_mask(routing: _Routing) -> Mapping[str, np.ndarray]:
    """Variable id → rows where it was asked (a required answer is required there only)."""
    return routing.asked
