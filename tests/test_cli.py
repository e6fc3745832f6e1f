"""The command line turns every typed error into one message and a non-zero exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from evalterritoire.cli import main


def test_missing_study_file_is_one_clear_message(tmp_path, capsys):
    code = main(["validate", str(tmp_path / "absent.toml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: study file not found:")
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_invalid_study_file(tmp_path, capsys):
    path = tmp_path / "study.toml"
    path.write_text("[study]\nwave = 2025\nexports = []\n", encoding="utf-8")
    assert main(["cluster", str(path)]) == 2
    assert "[study.exports] is required" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err
    assert main(["report", "x.toml", "-p", "not an assignment"]) == 2


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in (
        "simulate",
        "ingest",
        "validate",
        "estimate",
        "cluster",
        "model",
        "report",
        "study",
        "reproduce",
    ):
        assert command in out


def test_console_script_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "evalterritoire.cli", "estimate", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "study file not found" in proc.stderr


def test_console_ends_like_a_python_exit_but_without_native_teardown(tmp_path):
    """Threads joined, ``atexit`` handlers run, streams flushed, then the command's status."""
    code = f"""
import atexit, pathlib, sys, threading, time
from evalterritoire.cli import console
out = pathlib.Path({str(tmp_path)!r})
def late():
    time.sleep(0.3)
    (out / "thread").write_text("joined")
threading.Thread(target=late).start()
atexit.register(lambda: (out / "atexit").write_text("ran"))
sys.stdout.write("buffered, no newline")
console(["estimate", str(out / "nope.toml")])
raise AssertionError("console returned")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert proc.stderr.startswith("error: study file not found:")
    assert (tmp_path / "thread").read_text() == "joined"
    assert (tmp_path / "atexit").read_text() == "ran"


def test_the_installed_script_is_the_console_entry():
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="evalterritoire")
    assert script.value == "evalterritoire.cli:console"


# --------------------------------------------------------------------------- ingest
FIX = Path(__file__).resolve().parent / "fixtures" / "ingest"
REPORT_KEYS = {
    "file",
    "status",
    "format",
    "encoding",
    "delimiter",
    "sheet",
    "rows_read",
    "rows_valid",
    "rows_quarantined",
    "blank_lines",
    "normalisations",
    "warnings",
    "errors",
}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; no output may carry a traceback or an internal error."""
    code = main(list(args))
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "Traceback" not in text
        assert "internal error" not in text
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("export", "options", "code", "message"),
    [
        ("valid.csv", [], 0, "valid.csv"),
        ("utf16.txt", [], 0, "utf16.txt"),
        ("numbers.csv", [], 1, "numbers.csv line 5, column part_nb_actifs: not a number"),
        ("workbook.xlsx", [], 1, "workbook.xlsx"),
        ("empty.csv", [], 2, "empty.csv: the file is empty"),
        ("fake.xls", [], 2, "this is an HTML page, not a spreadsheet"),
        ("workbook_ambiguous.xlsx", [], 2, "pass --sheet NAME"),
        ("workbook.xlsx", ["--sheet", "Feuil9"], 2, "no sheet 'Feuil9'; sheets are"),
        ("workbook_ambiguous.xlsx", ["--sheet", "Vague B"], 0, "workbook_ambiguous.xlsx"),
        ("valid.csv", ["--profile", "spss"], 2, "unknown profile 'spss'"),
        ("qualtrics.csv", ["--profile", "qualtrics"], 0, "qualtrics.csv"),
        ("valid.csv", ["--header-row", "0"], 2, "--header-row must be ≥ 1, got 0"),
        ("valid.csv", ["--header-row", "99"], 2, "valid.csv"),
        ("valid.csv", ["--encoding", "klingon"], 2, "unknown encoding 'klingon'"),
        ("absent.csv", [], 2, "absent.csv: cannot be read"),
    ],
)
def test_ingest_exit_codes(tmp_path, capsys, export, options, code, message):
    got, out, err = _run(
        capsys, "ingest", str(FIX / export), "--out", str(tmp_path / "out"), *options
    )
    assert got == code
    assert message in out + err
    assert (tmp_path / "out" / "ingestion.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest"], "Missing argument 'export'"),
        (["ingest", "x.csv", "--header-row", "deux"], "Invalid value for '--header-row'"),
        (["ingest", "x.csv", "--sheet"], "requires an argument"),
        (["ingest", "x.csv", "--no-such-option"], "No such option"),
    ],
)
def test_ingest_usage_errors_exit_2(tmp_path, capsys, args, message):
    code, _, err = _run(capsys, *args)
    assert code == 2
    assert message in err


def test_ingest_bad_codebook_is_one_message(tmp_path, capsys):
    bad = tmp_path / "cb.yaml"
    bad.write_text("variables:\n- id: id_repondant\n  label_fr: Id\n  type: [identifier]\n")
    code, out, err = _run(
        capsys, "ingest", str(FIX / "valid.csv"), "--codebook", str(bad), "--out", str(tmp_path)
    )
    assert code == 2
    assert out == ""
    assert err == (
        "error: cb.yaml: codebook key 'variables[0]' (id 'id_repondant').type: "
        "expected a string, got list ['identifier']\n"
    )
    code, _, err = _run(
        capsys, "ingest", str(FIX / "valid.csv"), "--codebook", str(tmp_path / "nope.yaml")
    )
    assert code == 2
    assert "cannot be read" in err


@pytest.mark.parametrize(
    ("export", "code", "counts"),
    [
        ("valid.csv", 0, ("ok", 6, 6, 0, 0)),
        ("numbers.csv", 1, ("partial", 6, 3, 3, 0)),
        ("blank_footer.csv", 1, ("partial", 9, 3, 2, 4)),
        ("header_only.csv", 2, ("rejected", None, None, None, None)),
    ],
)
def test_ingest_json_report(tmp_path, capsys, export, code, counts):
    got, out, _ = _run(
        capsys, "ingest", str(FIX / export), "--json", "--out", str(tmp_path / "out")
    )
    assert got == code
    report = json.loads(out)  # stdout is the JSON document and nothing else
    assert set(report) >= REPORT_KEYS
    assert report["file"] == export
    status, read, valid, quarantined, blank = counts
    assert report["status"] == status
    if status != "rejected":
        assert (report["rows_read"], report["rows_valid"]) == (read, valid)
        assert (report["rows_quarantined"], report["blank_lines"]) == (quarantined, blank)
        assert valid + quarantined + blank == read  # no row lost
    else:
        assert report["errors"]
    written = json.loads((tmp_path / "out" / "ingestion.json").read_text(encoding="utf-8"))
    assert written["status"] == status


def test_ingest_out_dir_outputs(tmp_path, capsys):
    out_dir = tmp_path / "new" / "dir"
    code, out, _ = _run(capsys, "ingest", str(FIX / "numbers.csv"), "--out", str(out_dir))
    assert code == 1
    assert f"outputs: {out_dir}" in out
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "ingestion.json",
        "quarantine.csv",
        "responses.parquet",
    ]
    report = json.loads((out_dir / "ingestion.json").read_text(encoding="utf-8"))
    assert set(report) >= REPORT_KEYS
    valid = pd.read_parquet(out_dir / "responses.parquet")
    assert len(valid) == report["rows_valid"] == 3
    assert "source_line" in valid.columns
    quarantine = pd.read_csv(out_dir / "quarantine.csv", dtype=str, keep_default_na=False)
    assert len(quarantine) == report["rows_quarantined"] == 3
    assert list(quarantine["source_line"]) == ["4", "5", "6"]


def test_ingest_unwritable_out_is_one_message(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = _run(capsys, "ingest", str(FIX / "valid.csv"), "--out", str(blocker / "sub"))
    assert code == 2
    assert err.startswith("error: cannot write ingestion outputs to ")
    assert err.count("\n") == 1
