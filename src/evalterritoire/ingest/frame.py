"""Typed columns of one export and the typed frame of its valid rows.

Owns the lazy column representations (:class:`_LazyStr`, :class:`_LazyNum`: per-distinct-text
values plus row codes, so that strings are built once, only for the rows kept), the output row
order (the codebook's territory and respondent id columns, then the physical line) and
:func:`_typed_frame`, which builds the pandas frame of the codebook columns straight from 2-D
blocks and Arrow-backed text arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.codebook.model import FLOAT_TYPES, INTEGER_TYPES
from evalterritoire.ingest.raw import _Raw


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


def _output_order(
    ok_rows: np.ndarray,
    columns: Mapping[str, Any],
    lines: np.ndarray,
    sort_by: Sequence[str | None],
) -> np.ndarray:
    """Positions of the valid rows in output order: the ``sort_by`` columns, then the line.

    ``sort_by`` lists the key columns, most significant first (the codebook's territory and
    respondent id; None or a column the export lacks is skipped). Missing keys sort last; ties
    keep the physical line order (one file per call).
    """
    keys: list[np.ndarray] = [lines[ok_rows]]
    for col in reversed(sort_by):
        arr = columns.get(col) if col is not None else None
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


@dataclass
class _Layout:
    """The typed frame's columns in order, grouped by the block each one goes to.

    Each group holds (position among ``names``, source array or None when the export lacks it).
    """

    names: list[str]
    floats: list[tuple[int, Any]]
    dates: list[tuple[int, Any]]
    texts: list[tuple[int, Any]]


def _typed_frame(
    columns,
    codebook: Codebook,
    present,
    raw: _Raw,
    name: str,
    warnings: list[str],
    rows,
    meta: Sequence[str] = (),
) -> pd.DataFrame:
    """The typed frame of the raw positions ``rows``, in that order.

    Float columns are written straight into one 2-D block (the layout pandas keeps them in) and
    text columns stay Arrow-backed arrays, so building the frame copies nothing once more.
    Columns kept as metadata (``meta``) follow the codebook's, as text.
    """
    layout = _layout(columns, codebook, present, name, warnings)
    for column in meta:
        layout.texts.append((len(layout.names), columns[column]))
        layout.names.append(column)
    n = len(rows)
    names = [*layout.names, "source_file", "source_line"]
    text_arrays = _text_arrays(layout.texts, rows)
    text_arrays.append(pd.Series(np.full(n, name, dtype=object), dtype="str").array)
    text_pos = [p for p, _ in layout.texts] + [len(names) - 2]
    blocks: list[tuple[Any, np.ndarray]] = [
        (arr, np.array([p], dtype=np.intp)) for p, arr in zip(text_pos, text_arrays, strict=True)
    ]
    blocks.append((raw.lines[rows].astype(np.int64)[None, :], np.array([len(names) - 1])))
    if layout.floats:
        positions = np.array([p for p, _ in layout.floats], dtype=np.intp)
        blocks.append((_float_block(layout.floats, rows), positions))
    if layout.dates:
        positions = np.array([p for p, _ in layout.dates], dtype=np.intp)
        blocks.append((_date_block(layout.dates, rows), positions))
    from pandas.api.internals import create_dataframe_from_blocks

    return create_dataframe_from_blocks(blocks, pd.RangeIndex(n), pd.Index(names))


def _layout(columns, codebook: Codebook, present, name: str, warnings: list[str]) -> _Layout:
    """Every typed-data column of the codebook's respondent-level variables, in codebook order.

    A variable the export lacks gets empty columns, and a warning names them.
    """
    layout = _Layout([], [], [], [])
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
            pos = len(layout.names)
            layout.names.append(col)
            if is_float:
                layout.floats.append((pos, arr))
            elif var.type == "date" and col == var.id:
                layout.dates.append((pos, arr))
            else:
                layout.texts.append((pos, arr))
    if absent:
        warnings.append(
            f"{name}: {len(absent)} optional variable(s) absent from the export (left empty): "
            + ", ".join(absent[:15])
            + (" …" if len(absent) > 15 else "")
        )
    return layout


def _float_block(floats: list[tuple[int, Any]], rows: np.ndarray) -> np.ndarray:
    """The float columns' values at ``rows``, one row of a 2-D block per column."""
    block = np.empty((len(floats), len(rows)), dtype=np.float64)
    for i, (_, arr) in enumerate(floats):
        if arr is None:
            block[i] = np.nan
        elif isinstance(arr, _LazyNum):
            arr.take_into(rows, block[i])
        else:
            np.take(np.asarray(arr, dtype=np.float64), rows, out=block[i])
    return block


def _date_block(dates: list[tuple[int, Any]], rows: np.ndarray) -> np.ndarray:
    """The date columns' values at ``rows`` (NaT for a column the export lacks)."""
    block = np.empty((len(dates), len(rows)), dtype="datetime64[ns]")
    for i, (_, arr) in enumerate(dates):
        block[i] = np.datetime64("NaT", "ns") if arr is None else arr[rows]
    return block


def _text_arrays(texts: list[tuple[int, Any]], rows: np.ndarray) -> list[Any]:
    """The text columns' values at ``rows``, as pandas string arrays."""
    out = []
    for _, arr in texts:
        if arr is None:
            series = _take_str(np.array([None], dtype=object), None, len(rows))
        elif isinstance(arr, _LazyStr):
            series = arr.take(rows)
        else:
            series = pd.Series(np.asarray(arr, dtype=object)[rows], dtype="str")
        out.append(series.array)
    return out
