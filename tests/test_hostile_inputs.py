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
