"""Cell-based exports (XLSX, SPSS ``.sav``, Parquet): typed cells → :class:`~evalterritoire.ingest.raw._Raw`.

Owns the conversion of typed cell values to text (:func:`_cell_text`), the construction of the
raw table from already-split rows (header location, blank, footer and overlong rows), and the
three readers: XLSX through openpyxl (sheet choice, Excel error cells, formulas without a cached
value), SPSS through pyreadstat (names or labels as headers, user-missing values mapped through
value labels) and Parquet through pandas.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, normalise_text
from evalterritoire.codebook.workbook import (
    MAX_CELL_CHARS,
    SheetCells,
    read_sheet,
    sheet_names,
)
from evalterritoire.errors import FileRejectedError
from evalterritoire.ingest.raw import (
    _FOOTER,
    _factorize_rows,
    _found_required,
    _header_target,
    _locate_header,
    _Raw,
    _required,
)


def _cell_text(value: Any) -> str:
    if value is None or value is pd.NaT:  # NaT: a missing SPSS date
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
    """Build the raw table from already-split rows (XLSX, SPSS, Parquet).

    ``rows`` are (physical row number, cell texts); ``cell_flags`` maps (row, column) to the
    (rule, detail) of a cell the reader could not read (Excel errors, formulas).
    """
    header, header_line, skip_lines = _sheet_header(
        rows, codebook, name, header_row, profile, warnings
    )
    n_fields = len(header)
    data_rows, lines, bad_records, cell_errors = [], [], [], []
    blank = 0
    for ln, cells in rows:
        if ln <= header_line or ln in skip_lines:
            continue
        if not any(c.strip() for c in cells):
            blank += 1
            continue
        bad = _structural_problem(ln, cells, n_fields)
        if bad is not None:
            bad_records.append(bad)
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
        meta={**meta, "header_line": header_line},
        warnings=warnings,
    )


def _sheet_header(
    rows: list[tuple[int, list[str]]],
    codebook: Codebook,
    name: str,
    header_row: int | None,
    profile: str,
    warnings: list[str],
) -> tuple[list[str], int, set[int]]:
    """The header among the first non-blank rows: (cells, its row, the extra header rows).

    Trailing empty header cells with no data below are dropped.
    """
    nonblank = [(ln, cells) for ln, cells in rows if any(c.strip() for c in cells)]
    hidx, extra = _locate_header(nonblank[:12], codebook, name, header_row, profile)
    header = [c.strip() for c in nonblank[hidx][1]]
    while (
        header
        and header[-1] == ""
        and all(len(c) < len(header) or not c[len(header) - 1].strip() for _, c in rows)
    ):
        header.pop()
    for k in extra:
        warnings.append(f"{name}: row {nonblank[k][0]} skipped as an extra header row")
    return header, nonblank[hidx][0], {nonblank[k][0] for k in extra}


def _structural_problem(ln: int, cells: list[str], n_fields: int) -> dict[str, Any] | None:
    """The bad record of a row with data beyond the named columns or a footer, else None."""
    extra_cells = [c for c in cells[n_fields:] if c.strip()]
    if extra_cells:
        return {
            "line": ln,
            "raw": ";".join(cells),
            "rule": "field_count",
            "message": f"data beyond the {n_fields} named column(s): {extra_cells[:3]!r}",
        }
    if _FOOTER.match(normalise_text(cells[0] if cells else "")):
        return {
            "line": ln,
            "raw": ";".join(cells),
            "rule": "footer_line",
            "message": "summary/footer line ('Total', 'Source :'), not a response",
        }
    return None


def _read_xlsx(path: Path, name: str, codebook: Codebook, *, sheet, header_row, profile) -> _Raw:
    """Read a workbook by its real used range: the sheet, its cells as text, error cells flagged.

    The cells are streamed by :func:`evalterritoire.codebook.workbook.read_sheet` (only the
    cells holding a value, within its limits of columns and cells), then laid out as rows.
    """
    sheets = sheet_names(path, name, FileRejectedError)
    chosen = _choose_sheet(path, sheets, sheet, codebook, name)
    cells = read_sheet(path, chosen, name, FileRejectedError, formulas=True)
    rows, flags = _sheet_cells(cells)
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


def _choose_sheet(
    path: Path, sheets: list[str], sheet: str | None, codebook: Codebook, name: str
) -> str:
    """The sheet asked for, else the one sheet whose first rows hold the required columns."""
    if sheet is not None:
        if sheet not in sheets:
            raise FileRejectedError(
                f"{name}: no sheet {sheet!r}; sheets are {', '.join(map(repr, sheets))}"
            )
        return sheet
    if len(sheets) == 1:
        return sheets[0]
    required = set(_required(codebook))
    ok = []
    for s in sheets:
        head = read_sheet(path, s, name, FileRejectedError, max_row=12)
        for _, row in head.rows():
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
    return ok[0]


def _sheet_cells(cells: SheetCells):
    """Rows of cell texts of a sheet, and the flags of its unreadable cells.

    An Excel error cell, or a formula without a cached value, is flagged (row, column) →
    (rule, detail) and kept as its text; a cell longer than Excel's limit too.
    """
    rows: list[tuple[int, list[str]]] = []
    flags: dict[tuple[int, int], tuple[str, str]] = {}
    for (r, c), formula in cells.formulas.items():
        flags[(r, c - 1)] = (
            "formula_without_value",
            f"formula {formula} has no cached value (recalculate and save in Excel)",
        )
    errors = {
        (r, c): v
        for r, row in cells.cells.items()
        for c, v, t in row
        if t == "e" or (isinstance(v, str) and v in _EXCEL_ERRORS)
    }
    long = {
        (r, c): len(v)
        for r, row in cells.cells.items()
        for c, v, _ in row
        if isinstance(v, str) and len(v) > MAX_CELL_CHARS
    }
    for r, row in cells.rows():
        texts = []
        for j, v in enumerate(row):
            if (r, j + 1) in errors:
                flags[(r, j)] = ("excel_error", f"Excel error cell {v}")
                texts.append(str(v))
            elif (r, j + 1) in long:
                flags[(r, j)] = (
                    "cell_too_long",
                    f"a cell of {long[(r, j + 1)]:,} characters, more than the "
                    f"{MAX_CELL_CHARS:,} allowed (Excel's limit)",
                )
                texts.append(str(v))
            elif (r, j + 1) in cells.formulas:
                texts.append(cells.formulas[(r, j + 1)])
            else:
                texts.append(_cell_text(v))
        rows.append((r, texts))
    return rows, flags


_EXCEL_ERRORS = frozenset({"#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!"})


def _read_sav(path: Path, name: str, codebook: Codebook, *, header_row, profile) -> _Raw:
    """Read an SPSS file with pyreadstat: headers by name or label, user-missing values kept."""
    import pyreadstat

    try:
        _, head = pyreadstat.read_sav(str(path), metadataonly=True)
    except Exception as exc:
        raise FileRejectedError(
            f"{name}: not a readable SPSS .sav file ({type(exc).__name__})"
        ) from None
    _check_cells(name, head.number_rows or 0, head.number_columns or 0)
    try:
        df, meta = pyreadstat.read_sav(str(path), user_missing=True, apply_value_formats=False)
    except Exception as exc:
        raise FileRejectedError(
            f"{name}: not a readable SPSS .sav file ({type(exc).__name__})"
        ) from None
    shown = _sav_headers(list(df.columns), meta, codebook)
    missing_ranges = meta.missing_ranges or {}
    labels = meta.variable_value_labels or {}
    cols_text = []
    n_user_missing = 0
    for col, head in zip(df.columns, shown, strict=True):
        target = _header_target(head, codebook)
        var = codebook[target[1]] if target[0] == "var" else None
        texts, n_missing = _sav_texts(
            df[col].tolist(),
            labels.get(col, {}),
            missing_ranges.get(col, []),
            _label_keys(var, codebook) if var is not None else frozenset(),
        )
        cols_text.append(texts)
        n_user_missing += n_missing
    rows = [(1, shown)] + [(i + 2, [c[i] for c in cols_text]) for i in range(len(df))]
    warnings = []
    if n_user_missing:
        warnings.append(
            f"{name}: {n_user_missing} SPSS user-missing value(s) mapped through value labels"
        )
    return _raw_from_rows(
        rows,
        {},
        codebook,
        name,
        header_row=None,
        profile=profile,
        meta={"format": "sav", "encoding": meta.file_encoding, "delimiter": None, "sheet": None},
        warnings=warnings,
    )


def _sav_headers(columns: list[str], meta, codebook: Codebook) -> list[str]:
    """Each SPSS variable's header: its name, else its label when only the label is known."""
    shown = []
    for col in columns:
        label = (meta.column_names_to_labels or {}).get(col) or ""
        if (
            _header_target(col, codebook)[0] == "unknown"
            and label
            and _header_target(label, codebook)[0] != "unknown"
        ):
            shown.append(label)
        else:
            shown.append(col)
    return shown


def _label_keys(var, codebook: Codebook) -> frozenset[str]:
    """Normalised labels a variable understands: its options, scale labels and special codes."""
    keys = set(codebook.value_lookup(var.id)) if var.type in _CODED else set()
    keys |= set(codebook.special_lookup_of(var.id))
    return frozenset(keys)


#: Types whose cells may be written as a value label (coded answers).
_CODED = frozenset(
    {"likert", "rating", "binary", "ordinal", "categorical", "respondent_type", "multi_select"}
)


def _sav_texts(
    values: list[Any], value_labels: dict, ranges: list[dict], understood: frozenset[str]
) -> tuple[list[str], int]:
    """The cell texts of one SPSS column and its number of user-missing values.

    Every labelled value is written as its label when the variable understands the label
    (an option, a scale label, a special code: ``2 = Non`` becomes « Non », coded 0 on a 0/1
    yes/no item), else as its code; a user-missing value is written as its label, so that a
    declared special code is recognised.
    """
    shown = {
        v: str(label)
        for v, label in value_labels.items()
        if normalise_text(str(label)) in understood
    }
    out = []
    n_missing = 0
    for v in values:
        is_missing_value = (
            any(
                (r["lo"] <= v <= r["hi"]) if not isinstance(v, str) else v == r["lo"]
                for r in ranges
            )
            if v is not None and not (isinstance(v, float) and math.isnan(v))
            else False
        )
        if is_missing_value:
            n_missing += 1
            out.append(str(value_labels.get(v, _cell_text(v))))
        elif v in shown:
            out.append(shown[v])
        else:
            out.append(_cell_text(v))
    return out, n_missing


#: Most cells (rows × columns) of an SPSS or Parquet export (each cell becomes a text first).
MAX_TABLE_CELLS = 50_000_000


def _check_cells(name: str, n_rows: int, n_columns: int) -> None:
    """Refuse an SPSS or Parquet table beyond :data:`MAX_TABLE_CELLS` cells."""
    if n_rows * n_columns > MAX_TABLE_CELLS:
        raise FileRejectedError(
            f"{name}: {n_rows:,} rows × {n_columns:,} columns, more than the "
            f"{MAX_TABLE_CELLS:,} cells allowed in an SPSS or Parquet export; export it as CSV"
        )


def _read_parquet(path: Path, name: str, codebook: Codebook, *, profile) -> _Raw:
    try:
        import pyarrow.parquet as pq

        info = pq.ParquetFile(path).metadata
        _check_cells(name, info.num_rows, info.num_columns)
        df = pd.read_parquet(path)
    except FileRejectedError:
        raise
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
