"""Hostile inputs get one clear message, never an exhausted machine or a traceback (issue 20).

YAML files (codebook, grid, report spec) are read with bounded depth, size and alias
expansion; spreadsheets by their real used range within documented limits; every CSV the
ingester writes is spreadsheet-safe and written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evalterritoire.cli import main
from evalterritoire.codebook import default_codebook_path, load_codebook
from evalterritoire.errors import CodebookError, GridError, ReportSpecError

FIX = Path(__file__).resolve().parent / "fixtures" / "ingest"


def _default_text() -> str:
    return default_codebook_path().read_text(encoding="utf-8")


def _alias_bomb(levels: int, width: int = 10) -> str:
    """A flow list of anchors that multiply themselves: ``width ** levels`` strings."""
    items = ['&b0 "lol"']
    for k in range(1, levels + 1):
        items.append(f"&b{k} [" + ", ".join([f"*b{k - 1}"] * width) + "]")
    return "[" + ", ".join(items) + "]"


def test_alias_bomb_in_a_codebook_is_refused_with_a_short_message(tmp_path):
    # before: the label's expanded value was echoed in the message (a million strings here)
    raw = yaml.safe_load(_default_text())
    raw["variables"][0]["label_fr"] = "LABEL"
    body = yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    body = body.replace("label_fr: LABEL", "label_fr: " + _alias_bomb(6), 1)
    path = tmp_path / "bomb.yaml"
    path.write_text(body, encoding="utf-8")
    assert path.stat().st_size < 80_000
    with pytest.raises(CodebookError) as info:
        load_codebook(path)
    message = str(info.value)
    assert len(message) < 400
    assert "once its aliases are expanded" in message
    assert "bomb.yaml" in message


def test_a_few_aliases_still_load(tmp_path):
    raw = yaml.safe_load(_default_text())
    shared = ["all"]
    likert = [v for v in raw["variables"] if v["type"] == "likert"][:5]
    for var in likert:
        var["asked_to"] = shared  # one list object: the dumper writes an anchor and aliases
    text = yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    assert "&id001" in text
    assert "*id001" in text
    path = tmp_path / "cb.yaml"
    path.write_text(text, encoding="utf-8")
    codebook = load_codebook(path)
    assert [codebook[v["id"]].asked_to for v in likert] == [("all",)] * 5


def test_long_values_are_never_echoed_whole(tmp_path):
    raw = yaml.safe_load(_default_text())
    raw["variables"][0]["type"] = "x" * 100_000
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(CodebookError, match="must be one of") as info:
        load_codebook(path)
    assert len(str(info.value)) < 1500


def _deep(levels: int) -> str:
    return "codebook: " + "[" * levels + "]" * levels + "\n"


def test_deeply_nested_codebook_is_one_message_exit_2(tmp_path, capsys):
    # before: RecursionError → « internal error … this is a bug », exit 3
    path = tmp_path / "deep.yaml"
    path.write_text(_deep(20_000), encoding="utf-8")
    code = main(["ingest", str(FIX / "valid.csv"), "--codebook", str(path), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: codebook ")
    assert "nested more than 64 levels deep" in err
    assert "internal error" not in err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_deeply_nested_grid_and_spec_are_refused(tmp_path):
    from evalterritoire.report.grid import load_grid
    from evalterritoire.report.spec import load_report_spec

    path = tmp_path / "deep.yaml"
    path.write_text(_deep(20_000), encoding="utf-8")
    with pytest.raises(GridError, match="nested more than 64 levels deep"):
        load_grid(path)
    with pytest.raises(ReportSpecError, match="nested more than 64 levels deep"):
        load_report_spec(path, load_codebook())


def test_aliases_in_a_grid_are_refused(tmp_path):
    from evalterritoire.report.grid import load_grid

    path = tmp_path / "grid.yaml"
    path.write_text("stages: " + _alias_bomb(3) + "\n", encoding="utf-8")
    with pytest.raises(
        GridError, match=r"grid.yaml: invalid YAML at line 1 \(aliases are not allowed\)"
    ):
        load_grid(path)


# ------------------------------------------------------------------ ingest outputs (finding 7)
def _export_with_formulas(tmp_path: Path) -> Path:
    lines = (FIX / "valid.csv").read_text(encoding="utf-8").splitlines()
    first = lines[1].split(";")
    first[0] = "=1+2"  # a respondent id a spreadsheet would evaluate
    first[14] = "9"  # out of the 1–5 scale: the row is quarantined
    second = lines[2].split(";")
    second[0] = "@SUM(A1)"
    second[14] = '=HYPERLINK("http://x")'
    path = tmp_path / "formulas.csv"
    path.write_text("\n".join([lines[0], ";".join(first), ";".join(second), *lines[3:]]) + "\n")
    return path


def test_quarantine_csv_is_spreadsheet_safe(tmp_path, codebook):
    import csv

    from evalterritoire.ingest import ingest_file, write_ingest_outputs

    result = ingest_file(_export_with_formulas(tmp_path), codebook)
    assert result.report["rows_quarantined"] == 2
    paths = write_ingest_outputs(result, tmp_path / "out")
    with paths["quarantine"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["respondent_id"] for r in rows] == ["'=1+2", "'@SUM(A1)"]
    assert rows[0]["raw"].startswith("'=1+2;2025-1;")
    assert rows[1]["raw"].startswith("'@SUM(A1);")
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), value


def test_ingest_outputs_are_written_atomically(tmp_path, codebook, monkeypatch):
    import pyarrow.parquet as pq

    from evalterritoire.errors import IngestError
    from evalterritoire.ingest import ingest_file, write_ingest_outputs

    result = ingest_file(FIX / "valid.csv", codebook)
    out = tmp_path / "build"
    paths = write_ingest_outputs(result, out)
    before = {k: p.read_bytes() for k, p in paths.items()}

    real = pq.write_table

    def killed_midway(table, where, **kwargs):
        real(table.slice(0, 1), where, **kwargs)  # part of the bytes reach the sink…
        raise OSError(28, "No space left on device")  # …then the write dies

    monkeypatch.setattr(pq, "write_table", killed_midway)
    with pytest.raises(IngestError, match="No space left on device"):
        write_ingest_outputs(result, out)
    assert {k: p.read_bytes() for k, p in paths.items()} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())


# ------------------------------------------------------------------ spreadsheets and sizes (finding 5)
def _workbook(path: Path, where: str | None = None, kind: str | None = None) -> Path:
    """The valid export as a one-sheet workbook, with a stray note or value at ``where``."""
    import openpyxl
    from openpyxl.comments import Comment

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Export"
    for line in (FIX / "valid.csv").read_text(encoding="utf-8").splitlines():
        sheet.append(line.split(";"))
    if kind == "note":
        sheet[where].comment = Comment("une note", "observatoire")
    elif kind == "value":
        sheet[where] = "x"
    workbook.save(path)
    return path


def test_a_note_in_the_last_cell_of_a_sheet_reads_only_the_used_range(tmp_path):
    # before: openpyxl padded every row to column XFD, ~2.9 GB for a note in XFD20000,
    # MemoryError for one in XFD1048576; here the child process may use 700 MB of data at most
    import resource
    import subprocess
    import sys

    path = _workbook(tmp_path / "note.xlsx", "XFD1048576", "note")
    assert path.stat().st_size < 10_000

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (700 * 2**20, 700 * 2**20))

    code = "from evalterritoire.cli import console; console()"
    args = [sys.executable, "-c", code, "ingest", str(path), "--out", str(tmp_path), "--json"]
    proc = subprocess.run(
        args, capture_output=True, text=True, preexec_fn=limit_memory, check=False, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["rows_read"], report["rows_valid"], report["status"]) == (6, 6, "ok")


@pytest.mark.parametrize(
    ("where", "used", "size"),
    [
        ("XFD20", "A1:XFD20", "20 rows × 16,384 columns"),
        ("P1048576", "A1:P1048576", "1,048,576 rows × 16 columns"),
    ],
)
def test_a_stray_value_beyond_the_limits_is_one_message(tmp_path, codebook, where, used, size):
    from evalterritoire.ingest import ingest_file

    result = ingest_file(_workbook(tmp_path / "stray.xlsx", where, "value"), codebook)
    assert result.status == "rejected"
    (error,) = result.report["errors"]
    assert error["message"] == (
        f"stray.xlsx: sheet 'Export' uses the range {used} ({size}), beyond the limits of "
        "5,000 columns and 10,000,000 cells; delete the stray cells far from the data (or "
        "export the sheet as CSV) and try again"
    )


def test_a_cell_longer_than_excel_allows_is_quarantined(tmp_path, codebook):
    from evalterritoire.ingest import ingest_file

    lines = (FIX / "valid.csv").read_text(encoding="utf-8").splitlines()
    cells = lines[2].split(";")
    cells[5] = "Lyon " * 8_000  # the territory name: 40,000 characters
    path = tmp_path / "long.csv"
    path.write_text("\n".join([lines[0], lines[1], ";".join(cells), *lines[3:]]) + "\n")
    result = ingest_file(path, codebook)
    assert (result.report["rows_valid"], result.report["rows_quarantined"]) == (5, 1)
    (error,) = result.report["errors"]
    assert error["rule"] == "cell_too_long"
    assert error["line"] == 3
    assert "a cell of 40,000 characters, more than the 32,767 allowed" in error["message"]
    assert len(error["message"]) < 400
    assert result.quarantine["raw"].iloc[0] == ";".join(cells)


def test_too_many_columns_or_too_large_a_file_is_one_message(tmp_path, codebook, monkeypatch):
    import evalterritoire.ingest.files as files
    from evalterritoire.ingest import ingest_file

    lines = (FIX / "valid.csv").read_text(encoding="utf-8").splitlines()
    extra = [f"c{k}" for k in range(6_000)]
    path = tmp_path / "wide.csv"
    path.write_text(
        "\n".join(
            ";".join([ln, *([""] * len(extra) if i else extra)]) for i, ln in enumerate(lines)
        )
    )
    result = ingest_file(path, codebook)
    assert result.report["errors"][0]["message"] == (
        "wide.csv: the header on line 1 has 6,016 columns, more than the 5,000 allowed"
    )
    monkeypatch.setattr(files, "MAX_EXPORT_BYTES", 100)
    result = ingest_file(FIX / "valid.csv", codebook)
    assert result.status == "rejected"
    assert "bytes, more than the 100 an export may have" in result.report["errors"][0]["message"]
