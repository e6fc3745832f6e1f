"""The downloads' spreadsheet files, written directly: the bytes pandas and openpyxl wrote.

A report's downloads (:func:`evalterritoire.render.downloads.write_downloads`) used to go
through pandas: each table a ``DataFrame``, written by ``artefacts.write_csv`` as CSV for Excel
in French and by ``DataFrame.to_excel`` (openpyxl engine) as a workbook re-zipped with fixed
dates. This module writes the same files, byte for byte, from plain columns (lists of Python
values), at a fraction of the cost; ``tests/test_downloads_bytes.py`` keeps the former path as
a reference and compares every file.

* :func:`plain_column` gives a column the values pandas held: pandas infers a column's type
  from its values, so integers beside a missing value or a float become floats (``1.0``),
  booleans alone stay booleans, other mixtures keep their values (NaN read as missing).
* :func:`csv_bytes`: UTF-8 with a byte-order mark, ``;`` between fields, ``"`` around the
  fields that need it, Unix line ends; numbers with a decimal comma, booleans ``oui``/``non``,
  missing and non-finite values empty; text a spreadsheet would evaluate neutralised
  (:func:`evalterritoire.artefacts.neutralise_cell`); integers left beside empty cells (the
  neighbours of a suppressed row) written as pandas writes a float column (``7.0``).
* :func:`xlsx_bytes`: each sheet's XML written as text, cell by cell, the way pandas hands the
  values to openpyxl and openpyxl 3.1 serialises them; the other parts of the package
  (document properties, theme, styles, workbook, relationships, content types) come from an
  empty workbook openpyxl itself saves once per process and list of sheets; the parts zipped
  once, in openpyxl's order, each dated 1980-01-01 (the document 2000-01-01). A missing value
  is an empty text cell, a boolean a boolean cell, a number written with 16 significant
  digits, ``inf``/``-inf`` the texts ``inf``/``-inf``; a text is cut at 32,767 characters
  with a warning, a control character Excel refuses raises openpyxl's
  ``IllegalCharacterError``, a text starting with ``=`` is a formula and one of Excel's error
  codes (``#N/A``…) an error cell; any other value is written as its ``str()``.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import math
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

from evalterritoire.artefacts import neutralise_cell

__all__ = ["csv_bytes", "plain_column", "xlsx_bytes"]

#: Date of every member of the zip (the earliest a zip can record).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
#: Creation and modification dates of the document (its properties).
DOCUMENT_DATE = dt.datetime(2000, 1, 1)
#: Author of the document (its properties).
CREATOR = "evalterritoire"
#: Longest text a cell holds (Excel's limit; pandas warns and openpyxl cuts beyond it).
MAX_TEXT = 32767
#: The empty sheet openpyxl writes: its dimension and its rows are replaced.
_EMPTY_DIMENSION = '<dimension ref="A1:A1" />'
_EMPTY_ROWS = "<sheetData></sheetData>"
_DOCUMENT_DATES = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*")


# --------------------------------------------------------------------------- values
def _fr_number(value: Any) -> Any:
    """A number as French spreadsheets read it (decimal comma); other values unchanged."""
    if isinstance(value, bool) or value is None:
        return "oui" if value is True else ("non" if value is False else None)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6f}".rstrip("0").rstrip(".").replace(".", ",")
    return value


_KINDS: Mapping[type, str] = {
    type(None): "none",
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
}
_NUMPY_KINDS = {"b": "bool", "i": "int", "u": "int", "f": "float", "U": "str"}
_INT64 = (-(2**63), 2**63)
_UINT64 = (0, 2**64)


def _kind(value: Any) -> str:
    """What pandas sees in a cell: ``none``, ``bool``, ``int``, ``float``, ``str`` or ``other``."""
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    for base, name in (bool, "bool"), (int, "int"), (float, "float"), (str, "str"):
        if isinstance(value, base):
            return name
    if type(value).__module__ == "numpy":  # numpy scalars are inferred as Python's
        return _NUMPY_KINDS.get(getattr(getattr(value, "dtype", None), "kind", ""), "other")
    return "other"


def _missing(value: Any) -> bool:
    return value is None or (_kind(value) == "float" and value != value)


def _fit_64_bits(values: Sequence[Any]) -> bool:
    """Whether the integers among ``values`` fit one of pandas' ``int64`` or ``uint64``."""
    ints = [int(v) for v in values if _kind(v) == "int"]
    if not ints:
        return True
    low, high = min(ints), max(ints)
    return (_INT64[0] <= low and high < _INT64[1]) or (_UINT64[0] <= low and high < _UINT64[1])


def _as_floats(values: Sequence[Any], kinds: set[str]) -> bool:
    """Whether pandas stores these values (of ``kinds``) as a ``float64`` column.

    Floats, or integers beside missing values or floats, make one unless an integer fits
    neither ``int64`` nor ``uint64`` (the column then keeps Python objects).
    """
    if not kinds <= {"int", "float", "none"} or kinds == {"none"} or kinds == {"int"}:
        return False
    return _fit_64_bits(values)


def plain_column(values: list[Any]) -> list[Any]:
    """A table column as pandas builds it from records; missing values as ``None``.

    pandas infers a column's type from its values: booleans alone stay booleans, integers
    alone integers, numbers with gaps floats (``1`` becomes ``1.0``); other mixtures keep
    their values as they are (numpy scalars included).
    """
    kinds = {_kind(v) for v in values}
    if kinds == {"bool"}:
        return [bool(v) for v in values]
    if kinds == {"int"} and _fit_64_bits(values):
        return [int(v) for v in values]
    if _as_floats(values, kinds):
        return [None if _missing(v) else float(v) for v in values]
    return [None if _missing(v) else v for v in values]


# --------------------------------------------------------------------------- CSV
def _csv_column(values: list[Any]) -> list[Any]:
    """A column's CSV cells: French numbers, spreadsheet-safe text, ``None`` for empty.

    Numbers left beside empty cells (integers of a suppressed row's neighbours) are written
    as pandas writes a ``float64`` column (``7.0``).
    """
    cells = [None if v is None else _fr_number(v) for v in values]
    kinds = {_kind(v) for v in cells}
    if _as_floats(cells, kinds):
        return [None if v is None else repr(float(v)) for v in cells]
    return [neutralise_cell(v) if isinstance(v, str) else v for v in cells]


def csv_bytes(table: Mapping[str, Sequence[Any]]) -> bytes:
    """A table as CSV for Excel in French: what :func:`~evalterritoire.artefacts.write_csv` wrote.

    UTF-8 with a byte-order mark, ``;`` between fields, ``"`` around fields that need it,
    Unix line ends, decimal comma, ``oui``/``non``, formula cells neutralised.
    """
    columns = list(table)
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=";", lineterminator="\n", quoting=csv.QUOTE_MINIMAL, quotechar='"'
    )
    writer.writerow(columns)
    writer.writerows(zip(*(_csv_column(list(table[c])) for c in columns), strict=True))
    return buffer.getvalue().encode("utf-8-sig")


# --------------------------------------------------------------------------- XLSX
def _column_letters(index: int) -> str:
    """Excel's name of the 1-based column ``index`` (``A``, ``B``… ``Z``, ``AA``…)."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


@functools.cache
def _openpyxl_rules() -> tuple[re.Pattern[str], frozenset[str], type[Exception]]:
    """The characters openpyxl refuses, its error codes and the error it raises for the former."""
    from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
    from openpyxl.utils.exceptions import IllegalCharacterError

    return ILLEGAL_CHARACTERS_RE, frozenset(ERROR_CODES), IllegalCharacterError


def _escape(text: str) -> str:
    """Text content escaped as ``xml.etree`` does (``&``, ``<``, ``>``)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _text_cell(ref: str, text: str) -> str:
    """A text cell as openpyxl writes it (inline string, formula or error code)."""
    if len(text) > MAX_TEXT:
        warnings.warn(
            "Cell contents too long, truncated to 32767 characters", UserWarning, stacklevel=4
        )
        text = text[:MAX_TEXT]
    illegal, errors, error_type = _openpyxl_rules()
    if illegal.search(text):
        raise error_type(f"{text} cannot be used in worksheets.")
    if not text:
        return f'<c r="{ref}" t="inlineStr" />'
    if len(text) > 1 and text[0] == "=":
        return f'<c r="{ref}"><f>{_escape(text[1:])}</f><v /></c>'
    if text in errors:
        return f'<c r="{ref}" t="e"><v>{_escape(text)}</v></c>'
    stripped = text.strip()
    space = ' xml:space="preserve"' if stripped and stripped != text else ""
    return f'<c r="{ref}" t="inlineStr"><is><t{space}>{_escape(text)}</t></is></c>'


def _number(value: float) -> str:
    """A number as openpyxl writes it (16 significant digits)."""
    return "%.16g" % value  # noqa: UP031 - openpyxl's own format, kept to the byte


def _cell(ref: str, value: Any) -> str:
    """One cell's XML, for a value as :func:`xlsx_bytes` takes it."""
    if value is None:
        return f'<c r="{ref}" t="inlineStr" />'
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int):
        return f'<c r="{ref}" t="n"><v>{_number(value)}</v></c>'
    if isinstance(value, float):
        if math.isnan(value):
            return f'<c r="{ref}" t="inlineStr" />'
        if math.isinf(value):
            return _text_cell(ref, "inf" if value > 0 else "-inf")
        return f'<c r="{ref}" t="n"><v>{_number(value)}</v></c>'
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _cell(ref, value.item())  # pandas hands numpy scalars over as Python's
    return _text_cell(ref, str(value))


def _sheet_rows(columns: Sequence[Any], data: Sequence[Sequence[Any]]) -> str:
    """The ``<row>`` elements of a sheet: the header, then one row per record."""
    letters = [_column_letters(i) for i in range(1, len(columns) + 1)]
    parts = ['<row r="1">', *(_cell(f"{c}1", v) for c, v in zip(letters, columns, strict=True))]
    parts.append("</row>")
    for number, record in enumerate(zip(*data, strict=True), start=2):
        parts.append(f'<row r="{number}">')
        parts.extend(_cell(f"{c}{number}", v) for c, v in zip(letters, record, strict=True))
        parts.append("</row>")
    return "".join(parts)


@functools.lru_cache(maxsize=64)
def _skeleton(names: tuple[str, ...]) -> tuple[tuple[str, bytes | tuple[str, str, str]], ...]:
    """The parts of an empty workbook of sheets ``names``, as pandas has openpyxl write it.

    Each sheet is given as the text around its dimension and its rows; every other part as
    its bytes (the document's dates fixed).
    """
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.worksheets[0])  # as pandas' ExcelWriter does
    for name in names:
        book.create_sheet().title = name
    props = book.properties
    props.created = props.modified = DOCUMENT_DATE
    props.creator = CREATOR
    buffer = io.BytesIO()
    book.save(buffer)
    parts: list[tuple[str, bytes | tuple[str, str, str]]] = []
    with zipfile.ZipFile(buffer) as archive:
        for info in archive.infolist():
            content = archive.read(info.filename)
            if info.filename.startswith("xl/worksheets/sheet"):
                text = content.decode("utf-8")
                head, rest = text.split(_EMPTY_DIMENSION)
                middle, tail = rest.split(_EMPTY_ROWS)
                parts.append((info.filename, (head, middle, tail)))
                continue
            if info.filename == "docProps/core.xml":
                content = _DOCUMENT_DATES.sub(rb"\g<1>2000-01-01T00:00:00Z", content)
            parts.append((info.filename, content))
    return tuple(parts)


def _zip(parts: Sequence[tuple[str, bytes]]) -> bytes:
    """The parts zipped (deflated, default level), every member dated :data:`ZIP_DATE`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in parts:
            member = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, content)
    return out.getvalue()


def xlsx_bytes(tables: Mapping[str, Mapping[Any, Sequence[Any]]]) -> bytes:
    """One workbook, one sheet per table (its name cut at 31 characters), fixed dates.

    Parameters
    ----------
    tables : mapping of str to mapping of column to sequence
        Each table as its columns (name → values, all of the same length), in sheet order.
        Values are written as they are (see the module's notes): text the caller wants
        neutralised for spreadsheets must be neutralised before.

    Returns
    -------
    bytes
        The ``.xlsx`` file: the bytes ``DataFrame.to_excel`` (openpyxl engine, no index)
        then a re-zip with fixed dates give for the same tables.

    Raises
    ------
    openpyxl.utils.exceptions.IllegalCharacterError
        When a text holds a control character Excel refuses.
    """
    sheets = []
    for table in tables.values():
        columns = list(table)
        data = [table[c] for c in columns]
        rows = len(data[0]) if data else 0
        dimension = f"A1:{_column_letters(max(len(columns), 1))}{rows + 1}"
        sheets.append((dimension, _sheet_rows(columns, data)))
    parts: list[tuple[str, bytes]] = []
    index = 0
    for name, content in _skeleton(tuple(name[:31] for name in tables)):
        if isinstance(content, tuple):
            head, middle, tail = content
            dimension, rows = sheets[index]
            index += 1
            text = (
                f'{head}<dimension ref="{dimension}" />{middle}<sheetData>{rows}</sheetData>{tail}'
            )
            parts.append((name, text.encode("utf-8")))
        else:
            parts.append((name, content))
    return _zip(parts)
