"""The command line turns every typed error into one message and a non-zero exit status."""

from __future__ import annotations

import subprocess
import sys

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
