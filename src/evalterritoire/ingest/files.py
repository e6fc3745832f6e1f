"""Ingestion: any survey export → typed valid rows + quarantine + ingestion report.

Flow (one export file)::

    bytes ─ format by magic bytes ─ decode (BOM, UTF-8, cp1252; mixed → reject)
          ─ records with physical start lines (RFC 4180 quotes, vectorised with numpy)
          ─ header (synonyms, Qualtrics/multi-row detection, required columns)
          ─ cells as text (pyarrow, dictionary-encoded: every distinct text parsed once)
          ─ normalise with the codebook (labels, aliases, special codes, decimal comma, dates)
          ─ row checks (duplicates, coherence) ─ pandera lazy validation of the typed data
          ─ IngestResult(valid, quarantine, report)

Nothing is lost: every record is valid, quarantined (raw text, physical line, every reason) or
counted as a blank line, and ``rows_valid + rows_quarantined + blank_lines == rows_read`` is
asserted for every file. Every normalisation is counted in the report. The situations of
``messy_exports.md`` and their handling are listed in :data:`SITUATIONS`.

Layout: this module holds the orchestration of one file (:func:`ingest_file`), the combination
of several (:func:`combine_results`) and the written outputs (:func:`write_ingest_outputs`);
the steps live in the sibling modules listed in :mod:`evalterritoire.ingest`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.artefacts import write_bytes_atomic
from evalterritoire.codebook import Codebook
from evalterritoire.errors import FileRejectedError, IngestError
from evalterritoire.ingest.csv import _read_csv
from evalterritoire.ingest.raw import _Raw, _sniff_format
from evalterritoire.ingest.report import (
    IngestResult,
    _base_report,
    _empty_quarantine,
    _norm_add,
    _quarantine_types,
    _rejected,
)
from evalterritoire.ingest.sheets import _read_parquet, _read_sav, _read_xlsx
from evalterritoire.ingest.validate import _process

__all__ = ["PROFILES", "SITUATIONS", "combine_results", "ingest_file", "write_ingest_outputs"]

PROFILES = ("auto", "limesurvey", "sphinx", "kobo", "qualtrics", "google-forms")

SITUATIONS: dict[str, str] = {
    "utf-8 BOM / utf-16 BOM": "AUTO: BOM detected, decoded, encoding reported",
    "cp1252 file": "AUTO: decoded as cp1252 when every non-ASCII line fails UTF-8; reported",
    "utf-8 and cp1252 lines mixed": "REJECT naming the lines and bytes",
    "garbled text (Ã©, â€™)": "warning naming lines and columns; repaired only with "
    "repair_mojibake=True (--repair-mojibake), each repair counted",
    "delimiter , ; tab |": "AUTO sniffed on the first lines, constant field count confirmed",
    "decimal comma, (narrow) NBSP / space thousands": "NORM on numeric columns, counted",
    "too many / too few fields": "QUAR with the raw line (rule field_count)",
    "multi-line quoted fields; unclosed quote": "RFC 4180; unclosed quote → QUAR its first line",
    "labels instead of codes": "NORM via codebook labels/aliases after normalise_text; unknown → QUAR",
    "special codes": "declared spellings → <id>__special; undeclared → QUAR",
    "SPSS user-missing values": "read with user_missing=True, mapped through value labels",
    "category variants, O/N/1/0": "NORM via declared aliases, counted",
    "header variants and synonyms": "NORM (counted); missing required columns → REJECT with suggestions",
    "duplicated header names": "REJECT (pandas-style 'q3.1' suffixes of a known column too)",
    "multi-row / Qualtrics headers": "REJECT with a hint unless --profile qualtrics or --header-row",
    "trailing delimiter → empty unnamed column": "dropped when empty (NORM); data there → QUAR",
    "duplicate respondent ids": "QUAR every copy within a wave, diverging columns named; the "
    "same id in another wave is fine",
    "dates: serial, dd/mm/yyyy, impossible, 2-digit years": "serial/day-first NORM; others QUAR",
    "ids in scientific notation": "QUAR (irrecoverable, re-export as text)",
    "INSEE codes without leading zero, 2a004, 75056.0": "NORM (pad 4 digits, upper, drop .0) + warning",
    "blank / separator-only lines; Total / Source lines": "blank counted; footer lines QUAR",
    "free numbers (trois, 5+, 2.0, 1,0, -2)": "integral floats NORM; others QUAR",
    "likert as floats": "4.0 NORM, 2.5 QUAR (never truncated)",
    "whole item on the wrong scale": "one column-level error, column emptied, rows kept",
    "multi-select in one cell": "split on declared options, longest first → 0/1 columns",
    "Kobo select_multiple text vs 0/1 columns": "QUAR with both values",
    "workbook data not on the first sheet": "sheet with the required columns; ambiguous → REJECT",
    "Excel error cells, formulas without cached value": "QUAR (read with openpyxl)",
    ".xls that is HTML, empty file, header without data": "REJECT",
    "cross-column incoherence": "QUAR naming the columns involved",
}


# =============================================================================== public API
def ingest_file(
    path: str | Path,
    codebook: Codebook,
    *,
    profile: str = "auto",
    sheet: str | None = None,
    header_row: int | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    repair_mojibake: bool = False,
) -> IngestResult:
    """Read, normalise and validate one survey export.

    Parameters
    ----------
    path : str or Path
        CSV/TSV/TXT, XLSX, SPSS ``.sav`` or Parquet export.
    codebook : Codebook
        The study codebook (headers, labels, special codes, ranges).
    profile : {"auto", "limesurvey", "sphinx", "kobo", "qualtrics", "google-forms"}
        Export profile; ``qualtrics`` accepts its extra header rows.
    sheet : str, optional
        XLSX sheet (default: the one sheet whose header has the required columns).
    header_row : int, optional
        1-based physical line (row) of the header.
    encoding, delimiter : str, optional
        Force the text encoding / field delimiter (default: detected).
    repair_mojibake : bool, default False
        Repair cells whose text was double-encoded (UTF-8 read as cp1252: ``"Ã©"`` → ``"é"``).
        Off by default: such cells are only reported as warnings. When on, every repair is
        counted in the report's normalisations (kind ``mojibake_repaired``) and announced in a
        warning.

    Returns
    -------
    IngestResult
        Valid typed rows, quarantine and report. A file that cannot be read at all is returned
        with ``status == "rejected"`` (exit code 2) and one message naming the file; nothing is
        raised for user input.

    Raises
    ------
    TypeError
        When ``codebook`` is not a :class:`~evalterritoire.codebook.Codebook` (programmer error).
    """
    if not isinstance(codebook, Codebook):
        raise TypeError(f"codebook must be a Codebook, got {type(codebook).__name__}")
    path = Path(path)
    name = path.name
    if profile not in PROFILES:
        return _rejected(
            name, f"{name}: unknown profile {profile!r} (expected {', '.join(PROFILES)})"
        )
    if header_row is not None and header_row < 1:
        return _rejected(name, f"{name}: --header-row must be ≥ 1, got {header_row}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _rejected(name, f"{name}: cannot be read ({exc.strerror or type(exc).__name__})")
    fmt = _sniff_format(path, data[:64])
    meta: dict[str, Any] = {"format": fmt}
    try:
        _refuse_unreadable(data, fmt, path)
        raw = _read_raw(
            data,
            fmt,
            path,
            codebook,
            sheet=sheet,
            header_row=header_row,
            encoding=encoding,
            delimiter=delimiter,
            profile=profile,
        )
        del data  # the raw table holds what is needed; free the bytes before typing
        meta.update(raw.meta)
        if sheet is not None and fmt != "xlsx":
            raw.warnings.append(f"{name}: --sheet {sheet!r} ignored: the file is not a workbook")
        return _process(raw, codebook, name, repair_mojibake=repair_mojibake)
    except FileRejectedError as exc:
        return _rejected(name, str(exc), meta)


def _refuse_unreadable(data: bytes, fmt: str, path: Path) -> None:
    """Reject what no reader can read: an empty file, HTML, legacy .xls, a lying extension."""
    name = path.name
    if not data or data.isspace():
        raise FileRejectedError(f"{name}: the file is empty")
    if fmt == "html":
        raise FileRejectedError(
            f"{name}: this is an HTML page, not a spreadsheet (some tools save HTML as .xls); "
            "open it and save as .xlsx or CSV"
        )
    if fmt == "xls":
        raise FileRejectedError(f"{name}: legacy binary .xls is not supported; save it as .xlsx")
    if fmt == "mismatch":
        raise FileRejectedError(
            f"{name}: the extension says {path.suffix} but the content is not; re-export the file"
        )


def _read_raw(
    data: bytes,
    fmt: str,
    path: Path,
    codebook: Codebook,
    *,
    sheet: str | None,
    header_row: int | None,
    encoding: str | None,
    delimiter: str | None,
    profile: str,
) -> _Raw:
    """The raw table of the export, read by the reader of its format."""
    name = path.name
    if fmt == "xlsx":
        return _read_xlsx(path, name, codebook, sheet=sheet, header_row=header_row, profile=profile)
    if fmt == "sav":
        return _read_sav(path, name, codebook, header_row=header_row, profile=profile)
    if fmt == "parquet":
        return _read_parquet(path, name, codebook, profile=profile)
    return _read_csv(
        data,
        name,
        codebook,
        encoding=encoding,
        delimiter=delimiter,
        header_row=header_row,
        profile=profile,
    )


def combine_results(results: Sequence[IngestResult]) -> IngestResult:
    """Combine the results of several export files of one wave.

    Respondent ids duplicated *across* files are quarantined (every copy), like duplicates
    within a file. A rejected file makes the combination rejected.

    Parameters
    ----------
    results : sequence of IngestResult
        One result per export file.

    Returns
    -------
    IngestResult
        Concatenated valid rows and quarantine; the report sums the counts and keeps one
        entry per file under ``per_file``.
    """
    if not results:
        raise ValueError("combine_results needs at least one result")
    report = _combined_report(results)
    if any(r.status == "rejected" for r in results):
        report["status"] = "rejected"
        return IngestResult(pd.DataFrame(), _empty_quarantine(), report)
    codebook = next((r.codebook for r in results if r.codebook is not None), None)
    if codebook is None:
        raise ValueError("combine_results needs results of ingest_file (they carry the codebook)")
    valid = pd.concat([r.valid for r in results], ignore_index=True)
    quarantine = pd.concat([r.quarantine for r in results], ignore_index=True)
    id_col = codebook.column("respondent_id")
    if id_col is not None and id_col in valid and len(valid):
        valid, quarantine = _across_files_duplicates(valid, quarantine, id_col, report["errors"])
    quarantine = (
        _quarantine_types(quarantine)
        .sort_values(["source_file", "source_line"], kind="stable")
        .reset_index(drop=True)
    )
    roles = (codebook.column("territory"), codebook.column("respondent_id"))
    sort_cols = [c for c in roles if c is not None and c in valid]
    valid = valid.sort_values(
        [*sort_cols, "source_file", "source_line"], kind="stable", na_position="last"
    ).reset_index(drop=True)
    report["rows_valid"] = len(valid)
    report["rows_quarantined"] = len(quarantine)
    if (
        report["rows_valid"] + report["rows_quarantined"] + report["blank_lines"]
        != report["rows_read"]
    ):
        raise IngestError(
            f"{report['file']}: internal error, row accounting broken when combining files"
        )
    report["status"] = (
        "ok" if not len(quarantine) and all(r.status == "ok" for r in results) else "partial"
    )
    return IngestResult(valid, quarantine, report, codebook)


def _combined_report(results: Sequence[IngestResult]) -> dict[str, Any]:
    """The report of several files: one entry per file, counts, warnings and errors summed."""
    files = [r.report["file"] for r in results]
    report = _base_report(" + ".join(files))
    report["files"] = files
    report["per_file"] = [r.report for r in results]
    for key in ("format", "encoding", "delimiter", "sheet"):
        vals = {str(r.report.get(key)) for r in results}
        report[key] = results[0].report.get(key) if len(vals) == 1 else "mixed"
    report["warnings"] = [w for r in results for w in r.report["warnings"]]
    report["errors"] = [e for r in results for e in r.report["errors"]]
    for key in ("rows_read", "blank_lines"):
        report[key] = int(sum(r.report[key] for r in results))
    norms: dict[tuple[str, str], list] = {}
    for r in results:
        for nrm in r.report["normalisations"]:
            _norm_add(norms, nrm["column"], nrm["kind"], nrm["count"], nrm["example"])
    report["normalisations"] = [
        {"column": c, "kind": k, "count": v[0], "example": v[1]}
        for (c, k), v in sorted(norms.items())
    ]
    return report


def _across_files_duplicates(
    valid: pd.DataFrame, quarantine: pd.DataFrame, id_col: str, errors: list[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move every valid row whose respondent id is valid in several files to the quarantine.

    Each copy gets an error record (appended to ``errors``) naming all the copies.
    """
    ids = valid[id_col]
    dup = ids.notna() & ids.duplicated(keep=False)
    if not dup.any():
        return valid, quarantine
    moved = []
    for rid, grp in valid.loc[dup].groupby(id_col, sort=True):
        copies = list(zip(grp["source_file"], grp["source_line"], strict=True))
        where = ", ".join(f"{f} line {ln}" for f, ln in copies)
        for f, ln in copies:
            msg = (
                f"{f} line {ln}, column {id_col}: respondent id {rid!r} appears in several "
                f"files ({where}) (value {rid!r})"
            )
            errors.append(
                {
                    "line": int(ln),
                    "column": id_col,
                    "value": str(rid),
                    "rule": "duplicate_id",
                    "message": msg,
                }
            )
            moved.append(
                {
                    "source_file": f,
                    "source_line": int(ln),
                    "respondent_id": str(rid),
                    "n_reasons": 1,
                    "reasons": f"{id_col}: duplicate_id — {msg}",
                    "raw": "(typed row; see the source file)",
                }
            )
    quarantine = pd.concat([quarantine, _quarantine_types(pd.DataFrame(moved))], ignore_index=True)
    return valid.loc[~dup], quarantine


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, Path):
        return value.name
    return str(value)


def write_ingest_outputs(result: IngestResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``responses.parquet``, ``quarantine.csv`` and ``ingestion.json`` (deterministic).

    Parameters
    ----------
    result : IngestResult
        The (possibly combined) ingestion result.
    out_dir : str or Path
        Output directory (created if needed).

    Returns
    -------
    dict of str to Path
        ``{"responses": ..., "quarantine": ..., "report": ...}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "responses": out / "responses.parquet",
            "quarantine": out / "quarantine.csv",
            "report": out / "ingestion.json",
        }
        table = pa.Table.from_pandas(result.valid, preserve_index=False)
        table = table.replace_schema_metadata(None)
        buffer = pa.BufferOutputStream()  # written whole, then renamed: never half a file
        pq.write_table(table, buffer, compression="zstd")
        write_bytes_atomic(paths["responses"], buffer.getvalue().to_pybytes())
        q = result.quarantine if len(result.quarantine.columns) else _empty_quarantine()
        text = q.to_csv(index=False, lineterminator="\n")
        write_bytes_atomic(paths["quarantine"], text.encode("utf-8"))
        text = json.dumps(
            result.report, ensure_ascii=False, indent=2, sort_keys=True, default=_json_default
        )
        write_bytes_atomic(paths["report"], (text + "\n").encode("utf-8"))
    except OSError as exc:
        raise IngestError(f"cannot write ingestion outputs to {out}: {exc.strerror}") from None
    return paths
