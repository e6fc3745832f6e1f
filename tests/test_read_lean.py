"""``read_table_lean``: the provenance reader's low-peak Parquet read gives ``pd.read_parquet``."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalterritoire import provenance
from evalterritoire.provenance import read_table_lean


def _parquet(frame: pd.DataFrame, *, index: bool = False) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=index), buffer)
    return buffer.getvalue()


def _frame(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    out = {}
    for j in range(40):  # more columns than one group
        if j % 3 == 0:
            out[f"s{j}"] = pd.array(rng.choice(["nsp", "refus", None], n), dtype="string")
        elif j % 3 == 1:
            out[f"x{j}"] = np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n))
        else:
            out[f"i{j}"] = rng.integers(0, 9, n)
    out["when"] = pd.date_range("2025-01-01", periods=n, freq="h")
    return pd.DataFrame(out)


@pytest.mark.parametrize("group", [1, 7, 32, 100])
def test_lean_read_equals_read_parquet(monkeypatch, group: int) -> None:
    """Same columns, order, dtypes and values, whatever the size of the column groups."""
    monkeypatch.setattr(provenance, "LEAN_COLUMNS", group)
    data = _parquet(_frame())
    want = pd.read_parquet(io.BytesIO(data))
    got = read_table_lean(data)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_lean_read_keeps_a_stored_index() -> None:
    """A frame written with its index reads back with it, as ``pd.read_parquet``."""
    frame = _frame().set_index("i2")
    data = _parquet(frame, index=True)
    pd.testing.assert_frame_equal(read_table_lean(data), pd.read_parquet(io.BytesIO(data)))


def test_lean_read_categorical_columns_hold_the_same_strings() -> None:
    """Accepted string columns come back as ``category``; as strings they are the same."""
    data = _parquet(_frame())
    want = pd.read_parquet(io.BytesIO(data))
    got = read_table_lean(data, categorical=lambda name: name in {"s0", "s3", "x1"})
    assert isinstance(got["s0"].dtype, pd.CategoricalDtype)
    assert isinstance(got["s3"].dtype, pd.CategoricalDtype)
    assert got["x1"].dtype == np.float64  # not a string column: unchanged
    assert got["s6"].dtype == want["s6"].dtype
    for col in ("s0", "s3"):
        pd.testing.assert_series_equal(
            got[col].astype("string"), want[col].astype("string"), check_exact=True
        )
    rest = [c for c in want.columns if c not in {"s0", "s3"}]
    pd.testing.assert_frame_equal(got[rest], want[rest], check_exact=True)


def _special_column() -> pd.Series:
    rng = np.random.default_rng(6)
    return pd.Series(rng.choice(["nsp", "refus", "filtre", None], 300), dtype="str")


@pytest.mark.parametrize("values", [None, ["refus"], []])
def test_special_codes_read_as_category_are_judged_as_strings(values) -> None:
    """The estimate step and the maturity scorer read a category column as its strings."""
    from evalterritoire.estimates.study import _special_flags
    from evalterritoire.maturity.scoring import _special_text

    column = _special_column()
    if values is not None:  # fewer codes (or none at all) in the column
        column = column.where(column.isin(values))
    as_category = column.astype("category")
    for got, want in zip(_special_flags(as_category), _special_flags(column), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_special_text(as_category), _special_text(column))
    assert list(_special_text(column)[:3]) == list(column.fillna("")[:3])
