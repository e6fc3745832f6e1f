"""Artefact writing: atomic, umask permissions, spreadsheet-safe CSV."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from evalterritoire.artefacts import (
    neutralise_cell,
    write_bytes_atomic,
    write_csv,
    write_text_atomic,
)


def test_atomic_write_replaces_whole_file_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        target = write_text_atomic(tmp_path / "sub" / "a.json", "{}\n")
    finally:
        os.umask(old)
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not the 0600 of a temporary file
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]  # no leftover


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = write_bytes_atomic(tmp_path / "t.parquet", b"good")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(target, b"half")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+2", "'=1+2"),
        ("+33 6 12", "'+33 6 12"),
        ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-1,5", "-1,5"),
        ("+12", "+12"),
        ("-2e3", "-2e3"),
        ("a=b", "a=b"),
        ("", ""),
        (3, 3),
        (None, None),
    ],
)
def test_formula_cells_are_neutralised_numbers_are_not(cell, shown):
    assert neutralise_cell(cell) == shown


def test_write_csv_neutralises_text_columns_only(tmp_path):
    frame = pd.DataFrame({"id": ["=1+2", "R2"], "n": [-1, 2], "raw": ["@x", None]})
    path = write_csv(frame, tmp_path / "q.csv", sep=";", encoding="utf-8-sig")
    text = path.read_bytes().decode("utf-8-sig")
    assert text == "id;n;raw\n'=1+2;-1;'@x\nR2;2;\n"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
