"""Hostile inputs get one clear message, never an exhausted machine or a traceback (issue 20).

YAML files (codebook, grid, report spec) are read with bounded depth, size and alias
expansion; spreadsheets by their real used range within documented limits; every CSV the
ingester writes is spreadsheet-safe and written atomically.
"""

from __future__ import annotations

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
