"""Bounded reading of XLSX workbooks: cells by their real used range, within documented limits.

Shared by the XLSForm importer (:mod:`evalterritoire.codebook.xlsform`) and the ingest reader of
XLSX exports. openpyxl's read-only mode pads every row to the sheet's declared dimension: one
stray cell (or one note) in ``XFD1048576`` makes it build a billion empty cells. Here the sheet's
XML is streamed and only the cells that hold a value are kept; the *used range* is the rectangle
of those cells, and it must fit the limits below before any dense row is built.

Limits (documented in ``docs/ingestion.md``, « Limits »):

* :data:`MAX_COLUMNS` columns and :data:`MAX_CELLS` cells (rows × columns) in a sheet's used
  range — beyond, the workbook is refused with one message naming the sheet and its used range;
* :data:`MAX_PART_BYTES` uncompressed bytes for each XML part of the workbook (a zip bomb is
  refused before anything is decompressed);
* :data:`MAX_CELL_CHARS` characters in a cell (Excel's own limit; readers quarantine longer cells).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openpyxl.utils import get_column_letter

from evalterritoire.errors import EvalTerritoireError

__all__ = [
    "MAX_CELLS",
    "MAX_CELL_CHARS",
    "MAX_COLUMNS",
    "MAX_PART_BYTES",
    "SheetCells",
    "read_sheet",
    "sheet_names",
]

#: Most columns of a sheet's used range (an XLSX sheet may have 16,384).
MAX_COLUMNS = 5_000
#: Most cells (rows × columns) of a sheet's used range (larger exports: use CSV).
MAX_CELLS = 10_000_000
#: Most characters in one cell (Excel's limit); longer cells are quarantined by the ingester.
MAX_CELL_CHARS = 32_767
#: Most uncompressed bytes of one part (sheet, shared strings) of a workbook.
MAX_PART_BYTES = 512 * 2**20


@dataclass
class SheetCells:
    """The cells holding a value in one sheet, by position, and the sheet's used range.

    Attributes
    ----------
    name : str
        Sheet name.
    cells : dict
        Row number → ``[(column, value, data_type), …]`` (1-based), only for cells holding a
        value; ``data_type`` is openpyxl's (``n``, ``s``, ``b``, ``d``, ``e``…).
    formulas : dict
        ``(row, column) → formula text`` of the formula cells without a cached value (read
        with ``formulas=True`` only).
    n_rows, n_columns : int
        The used range: ``A1`` to the last row and column holding a value.
    """

    name: str
    cells: dict[int, list[tuple[int, Any, str]]] = field(default_factory=dict)
    formulas: dict[tuple[int, int], str] = field(default_factory=dict)
    n_rows: int = 0
    n_columns: int = 0

    @property
    def used_range(self) -> str:
        """The used range in Excel's notation (``A1:P7``; ``A1:A1`` for an empty sheet)."""
        return f"A1:{get_column_letter(max(self.n_columns, 1))}{max(self.n_rows, 1)}"

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        """Every row of the used range, ``(row number, values)``; missing cells are None."""
        for r in range(1, self.n_rows + 1):
            row: list[Any] = [None] * self.n_columns
            for c, value, _ in self.cells.get(r, ()):
                row[c - 1] = value
            yield r, row

    def data_type(self, row: int, column: int) -> str | None:
        """The data type (openpyxl's) of a cell holding a value (None for an empty cell)."""
        return next((t for c, _, t in self.cells.get(row, ()) if c == column), None)


def _open(path: Path, what: str, error: type[EvalTerritoireError]):
    """The workbook in read-only mode, after checking the uncompressed size of its parts."""
    import openpyxl

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.file_size > MAX_PART_BYTES:
                    raise error(
                        f"{what}: part {info.filename!r} of the workbook is "
                        f"{info.file_size:,} bytes once decompressed, more than the "
                        f"{MAX_PART_BYTES:,} allowed"
                    )
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except EvalTerritoireError:
        raise
    except Exception as exc:
        raise error(f"{what}: not a readable XLSX workbook ({type(exc).__name__})") from None


def sheet_names(path: str | Path, what: str, error: type[EvalTerritoireError]) -> list[str]:
    """The sheet names of a workbook (one clear ``error`` when it cannot be opened)."""
    workbook = _open(Path(path), what, error)
    try:
        return list(workbook.sheetnames)
    finally:
        workbook.close()


def _stream(workbook, worksheet, *, data_only: bool) -> Iterator[dict[str, Any]]:
    """The cells present in a sheet's XML, as openpyxl's parser gives them (row by row)."""
    from openpyxl.worksheet._reader import WorkSheetParser

    with worksheet._get_source() as source:
        parser = WorkSheetParser(
            source,
            worksheet._shared_strings,
            data_only=data_only,
            epoch=workbook.epoch,
            date_formats=workbook._date_formats,
            timedelta_formats=workbook._timedelta_formats,
        )
        for _, row in parser.parse():
            yield from row


def read_sheet(
    path: str | Path,
    sheet: str,
    what: str,
    error: type[EvalTerritoireError],
    *,
    max_row: int | None = None,
    formulas: bool = False,
) -> SheetCells:
    """The cells holding a value in one sheet, within the limits of this module.

    Parameters
    ----------
    path : str or Path
        The workbook.
    sheet : str
        Sheet name (it must exist: see :func:`sheet_names`).
    what : str
        What the file is, to start messages (its name).
    error : type of EvalTerritoireError
        Class of the error raised.
    max_row : int, optional
        Read the first rows only (header detection).
    formulas : bool, default False
        Also read the formulas, to flag formula cells without a cached value.

    Returns
    -------
    SheetCells
        Sparse cells and used range.

    Raises
    ------
    EvalTerritoireError
        Of class ``error``: unreadable workbook, an oversized part, or a used range beyond
        :data:`MAX_COLUMNS` columns or :data:`MAX_CELLS` cells (the message names the sheet,
        its used range and the limit).
    """
    path = Path(path)
    workbook = _open(path, what, error)
    try:
        out = SheetCells(sheet)
        worksheet = workbook[sheet]
        n_cells = 0
        for cell in _stream(workbook, worksheet, data_only=True):
            r, value = cell["row"], cell["value"]
            if max_row is not None and r > max_row:
                break
            if value is None or value == "":
                continue
            c = cell["column"]
            out.cells.setdefault(r, []).append((c, value, cell["data_type"]))
            out.n_rows, out.n_columns = max(out.n_rows, r), max(out.n_columns, c)
            n_cells += 1
            if out.n_columns > MAX_COLUMNS or n_cells > MAX_CELLS:
                _check_range(out, what, error)
        _check_range(out, what, error)
        if formulas:
            _read_formulas(workbook, worksheet, out, max_row)
            _check_range(out, what, error)
    except EvalTerritoireError:
        raise
    except Exception as exc:
        raise error(f"{what}: sheet {sheet!r} cannot be read ({type(exc).__name__})") from None
    finally:
        workbook.close()
    return out


def _read_formulas(workbook, worksheet, out: SheetCells, max_row: int | None) -> None:
    """Add the formula cells that have no cached value (and extend the used range to them)."""
    for cell in _stream(workbook, worksheet, data_only=False):
        r, c = cell["row"], cell["column"]
        if max_row is not None and r > max_row:
            break
        if cell["data_type"] == "f" and out.data_type(r, c) is None:
            out.formulas[(r, c)] = str(cell["value"])
            out.n_rows, out.n_columns = max(out.n_rows, r), max(out.n_columns, c)
            if len(out.formulas) > MAX_CELLS:
                break


def _check_range(cells: SheetCells, what: str, error: type[EvalTerritoireError]) -> None:
    if cells.n_columns > MAX_COLUMNS or cells.n_rows * cells.n_columns > MAX_CELLS:
        raise error(
            f"{what}: sheet {cells.name!r} uses the range {cells.used_range} "
            f"({cells.n_rows:,} rows × {cells.n_columns:,} columns), beyond the limits of "
            f"{MAX_COLUMNS:,} columns and {MAX_CELLS:,} cells; delete the stray cells far from "
            "the data (or export the sheet as CSV) and try again"
        )
