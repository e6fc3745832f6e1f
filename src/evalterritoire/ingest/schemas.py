"""Pandera schemas: one per table, the survey-response one generated from the codebook.

The ingester parses raw text itself (see :mod:`evalterritoire.ingest.files`) and only then lets pandera
check the *typed* data lazily: pandera never coerces anything here (its coercion can truncate 2.5
to 2 or fail a whole column on one junk cell). Failure cases become a user-facing table with the
file, physical line, respondent id, column, rule and value of each failing cell.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from evalterritoire.codebook import Codebook, Variable
from evalterritoire.codebook.model import FLOAT_TYPES, INTEGER_TYPES

__all__ = [
    "FAILURE_COLUMNS",
    "IngestErrorModel",
    "QuarantineModel",
    "build_failure_table",
    "build_response_schema",
    "compute_schema_failures",
]

#: Columns of the user-facing failure table.
FAILURE_COLUMNS = ["file", "line", "respondent_id", "column", "rule", "value"]


class QuarantineModel(pa.DataFrameModel):
    """``quarantine.csv``: one row per quarantined record, raw text kept verbatim."""

    source_file: Series[str]
    source_line: Series[int] = pa.Field(ge=1)
    respondent_id: Series[str] = pa.Field(nullable=True)
    n_reasons: Series[int] = pa.Field(ge=1)
    reasons: Series[str]
    raw: Series[str]

    class Config:
        """Exact columns, in order."""

        strict = True
        ordered = True


class IngestErrorModel(pa.DataFrameModel):
    """One error of the ingestion report (a cell, a row or a whole column)."""

    file: Series[str]
    line: Series[float] = pa.Field(nullable=True)
    column: Series[str]
    value: Series[str]
    rule: Series[str]
    message: Series[str]

    class Config:
        """Exact columns."""

        strict = True


def _integral(series: pd.Series) -> pd.Series:
    return series.isna() | (np.floor(series) == series)


# Value checks below accept missing cells themselves (``ignore_na=False``): pandera would
# otherwise copy every column without its missing values before each check. They carry the
# names and messages of pandera's built-in checks.
def _isin_numbers(series: pd.Series, allowed: list[float]) -> pd.Series:
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isnan(values)
    for v in allowed:
        ok |= values == v
    return pd.Series(ok, index=series.index)


def _isin(values: list) -> pa.Check:
    allowed = list(values)
    if allowed and all(isinstance(v, float) for v in allowed) and len(allowed) <= 16:
        # a few codes: one comparison per code beats a hash lookup per cell
        return pa.Check(
            lambda s: _isin_numbers(s, allowed),
            name="isin",
            error=f"isin({allowed})",
            ignore_na=False,
        )
    return pa.Check(
        lambda s: s.isna() | s.isin(allowed),
        name="isin",
        error=f"isin({allowed})",
        ignore_na=False,
    )


def _ge(lo: float) -> pa.Check:
    return pa.Check(
        lambda s: s.isna() | (s >= lo),
        name="greater_than_or_equal_to",
        error=f"greater_than_or_equal_to({lo})",
        ignore_na=False,
    )


def _le(hi: float) -> pa.Check:
    return pa.Check(
        lambda s: s.isna() | (s <= hi),
        name="less_than_or_equal_to",
        error=f"less_than_or_equal_to({hi})",
        ignore_na=False,
    )


def _gt(lo: float) -> pa.Check:
    return pa.Check(
        lambda s: s.isna() | (s > lo),
        name="greater_than",
        error=f"greater_than({lo})",
        ignore_na=False,
    )


def _matches(pattern: str) -> pa.Check:
    return pa.Check(
        lambda s: s.isna() | s.str.match(pattern).fillna(False).astype(bool),
        name="str_matches",
        error=f"str_matches('{pattern}')",
        ignore_na=False,
    )


def _variable_columns(var: Variable, codebook: Codebook) -> dict[str, pa.Column]:
    cols: dict[str, pa.Column] = {}
    lo, hi = (
        codebook.value_range(var.id) if var.type in INTEGER_TYPES | FLOAT_TYPES else (None, None)
    )
    if var.type == "multi_select":
        for col in var.option_cols():
            cols[col] = pa.Column(float, _isin([0.0, 1.0]), nullable=True, required=False)
    elif var.type in INTEGER_TYPES or var.type in FLOAT_TYPES:
        checks = []
        if var.type in INTEGER_TYPES:
            checks.append(
                pa.Check(
                    _integral, name="integer", error="value is not an integer", ignore_na=False
                )
            )
        scale = codebook.scales.get(var.scale or "")
        if var.type in {"likert", "ordinal", "binary"} and scale is not None and scale.values:
            checks.append(_isin([float(v) for v in scale.values]))
        else:
            if lo is not None:
                checks.append(_ge(lo))
            if hi is not None:
                checks.append(_le(hi))
        if var.type in {"weight", "fpc"}:
            checks.append(_gt(0))
        cols[var.id] = pa.Column(float, checks, nullable=True, required=False)
    elif var.type == "date":
        cols[var.id] = pa.Column("datetime64[ns]", nullable=True, required=False)
    else:
        checks = []
        if var.options:
            checks.append(_isin(sorted(var.options)))
        if var.pattern:
            checks.append(_matches(var.pattern))
        cols[var.id] = pa.Column(str, checks, nullable=True, required=False)
    if var.special_col:
        cols[var.special_col] = pa.Column(
            str, _isin(sorted(var.special_codes)), nullable=True, required=False
        )
    return cols


def build_response_schema(
    codebook: Codebook, columns: Iterable[str] | None = None
) -> pa.DataFrameSchema:
    """Build the pandera schema of typed survey responses from a codebook.

    Parameters
    ----------
    codebook : Codebook
        The study codebook.
    columns : iterable of str, optional
        Restrict the schema to these typed columns (e.g. those present in one export).

    Returns
    -------
    pandera.DataFrameSchema
        Columns ``<id>``, ``<id>__special``, ``<id>__<option>`` with dtype and value checks,
        plus ``source_file`` and ``source_line``. Nothing is coerced.
    """
    cols: dict[str, pa.Column] = {
        "source_file": pa.Column(str, nullable=False),
        "source_line": pa.Column(int, _ge(1), nullable=False),
    }
    for var in codebook:
        cols.update(_variable_columns(var, codebook))
    if columns is not None:
        keep = set(columns) | {"source_file", "source_line"}
        cols = {k: v for k, v in cols.items() if k in keep}
    return pa.DataFrameSchema(cols, coerce=False, strict=False, name="responses")


def compute_schema_failures(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    """Validate lazily and return pandera's failure cases (empty frame when valid).

    Returns
    -------
    DataFrame
        Columns ``index`` (row label, may be missing for column-level failures), ``column``,
        ``check``, ``failure_case``.
    """
    try:
        # inplace: pandera would otherwise copy the whole frame first (nothing is coerced)
        schema.validate(frame, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        out = pd.DataFrame(
            {
                "index": fc["index"].to_numpy(dtype=object),
                "column": fc["column"].astype(object).where(fc["column"].notna(), "").to_numpy(),
                "check": fc["check"].astype(str).to_numpy(dtype=object),
                "failure_case": fc["failure_case"].astype(str).to_numpy(dtype=object),
            }
        )
        return out
    return pd.DataFrame(columns=["index", "column", "check", "failure_case"])


def build_failure_table(
    failures: pd.DataFrame, frame: pd.DataFrame, *, id_col: str | None
) -> pd.DataFrame:
    """Turn pandera failure cases into the user-facing table.

    Parameters
    ----------
    failures : DataFrame
        Output of :func:`compute_schema_failures`.
    frame : DataFrame
        The validated frame (must hold ``source_file`` and ``source_line``).
    id_col : str or None
        Respondent id column.

    Returns
    -------
    DataFrame
        :data:`FAILURE_COLUMNS`, one row per failing cell, sorted by file, line, column.
    """
    rows = []
    for idx, column, check, value in failures[
        ["index", "column", "check", "failure_case"]
    ].itertuples(index=False):
        if idx is None or (isinstance(idx, float) and np.isnan(idx)):
            rows.append(("", np.nan, "", column, check, value))
            continue
        rec = frame.loc[idx]
        rid = "" if id_col is None or id_col not in frame else str(rec[id_col])
        rows.append((rec["source_file"], float(rec["source_line"]), rid, column, check, value))
    out = pd.DataFrame(rows, columns=FAILURE_COLUMNS)
    return out.sort_values(["file", "line", "column"], kind="stable").reset_index(drop=True)
