"""Nothing lost, nothing stale: atomic artefacts, provenance checks, departed territories,
a lock per build folder, the umask's permissions (issue 20, findings 1, 2, 3 and 10).

Each finding has a quick test (synthetic artefacts, an interruption injected in-process) and a
``slow`` one that runs the command line end to end (real signals, real child processes). Names
that did not exist before this work are imported inside the tests, so that the module runs on
older code and each test shows what that code did."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _robust_study import (
    CLI,
    cli,
    drop_territory,
    make_study,
    read_export,
    synthetic_study,
    write_export,
)

from evalterritoire import artefacts
from evalterritoire.config import load_study
from evalterritoire.errors import EvalTerritoireError
from evalterritoire.pipeline import run_contexts, run_ingest, run_reports, run_reproduce, run_study
from evalterritoire.render.index import render_index
from evalterritoire.report.context import ReportContext


def _names(folder: Path, pattern: str) -> set[str]:
    return {p.name for p in folder.glob(pattern)}


@pytest.mark.slow
def test_a_territory_that_left_the_data_leaves_contexts_reports_index_and_manifest(tmp_path):
    """Finding 1: its old context and report stayed, the index and manifest listed it, and
    ``reproduce`` then failed on a correct study."""
    study = make_study(tmp_path)
    assert run_study(load_study(study), workers=1) == 0
    config = load_study(study)
    pages = config.reports_dir / "territoires"
    gone = drop_territory(study)
    assert f"{gone}.json" in _names(config.artefact("contexts"), "*.json")
    assert f"{gone}.html" in _names(pages, "*.html")

    assert run_study(load_study(study), workers=1) == 0
    assert f"{gone}.json" not in _names(config.artefact("contexts"), "*.json")
    assert f"{gone}.html" not in _names(pages, "*")
    assert gone not in (config.reports_dir / "index.html").read_text(encoding="utf-8")
    assert gone not in (config.reports_dir / "manifest.json").read_text(encoding="utf-8")
    status = json.loads((pages / ".render_status.json").read_text(encoding="utf-8"))
    assert gone not in status["territories"]
    assert run_reproduce(config.reports_dir / "manifest.json", workers=1) == 0


def _without(config, codebook, code: str) -> None:
    """Remove a territory from every table of a build folder (it left the data)."""
    import pandas as pd

    columns = {"territory", codebook.column("territory")}
    for path in config.build_dir.glob("*.parquet"):
        table = pd.read_parquet(path)
        for column in columns & set(table.columns):
            table = table.loc[table[column].astype(str) != code]
        table.to_parquet(path, index=False)


def test_a_departed_territory_leaves_its_context_report_and_the_index(tmp_path, codebook):
    """Finding 1, quick: its context stayed in ``contexts/`` (so the index and the manifest
    listed it), and its report stayed beside the others."""
    config = synthetic_study(tmp_path, codebook)
    run_contexts(config, codebook=codebook)
    assert (config.artefact("contexts") / "T3.json").is_file()
    pages = config.reports_dir / "territoires"
    pages.mkdir(parents=True)
    for code in ("T1", "T2", "T3", "T4", "T5"):
        for suffix in ("html", "pdf"):
            (pages / f"{code}.{suffix}").write_text(code, encoding="utf-8")

    _without(config, codebook, "T3")
    run_contexts(config, codebook=codebook)
    contexts = [ReportContext.from_json(p) for p in config.artefact("contexts").glob("*.json")]
    assert sorted(p.name for p in config.artefact("contexts").glob("*.json")) == [
        "T1.json", "T2.json", "T4.json", "T5.json", "national.json"
    ]  # fmt: skip
    from evalterritoire.render.status import prune_reports

    removed = prune_reports(pages, [c.territory for c in contexts if not c.is_national])
    assert [p.name for p in removed] == ["T3.html", "T3.pdf"]
    assert sorted(p.stem for p in pages.iterdir()) == [
        "T1",
        "T1",
        "T2",
        "T2",
        "T4",
        "T4",
        "T5",
        "T5",
    ]
    index = render_index(contexts, config.reports_dir / "index.html").read_text(encoding="utf-8")
    assert "T3.html" not in index
    assert "T4.html" in index


def test_an_interrupted_write_keeps_the_previous_table_whole(tmp_path, monkeypatch):
    """Finding 2, quick: ``validate`` interrupted while ``responses.parquet`` was written left
    it truncated (the previous good file destroyed). The interruption is injected in the
    middle of the Parquet writer: half of the file written, then ``KeyboardInterrupt``."""
    import pyarrow.parquet as pq

    study = make_study(tmp_path)
    config = load_study(study)
    run_ingest(config)
    target = config.artefact("responses.parquet")
    good = target.read_bytes()
    export, header, rows = read_export(study)
    write_export(export, header, rows[:-20])  # the next run writes another table

    real = pq.write_table

    def killed_halfway(table, where, *args, **kwargs):
        real(table, where, *args, **kwargs)
        if isinstance(where, str | Path):  # written in place: the file is half there
            data = Path(where).read_bytes()
            Path(where).write_bytes(data[: len(data) // 2])
        raise KeyboardInterrupt  # (into a buffer: nothing reached the target yet)

    monkeypatch.setattr(pq, "write_table", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        run_ingest(config)
    monkeypatch.undo()
    assert target.read_bytes() == good
    assert pq.read_table(target).num_rows == len(rows)
    assert not [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_report_refuses_contexts_built_from_an_older_run(tmp_path):
    """Finding 3, quick: after a ``study`` that stopped after ingestion, ``report`` published
    the old contexts (built from other responses) without a word."""
    study = make_study(tmp_path)
    assert run_study(load_study(study), render=False) == 0
    config = load_study(study)
    drop_territory(study)
    run_ingest(config)  # new responses; the run stops here (a failure in a later step)
    with pytest.raises(EvalTerritoireError, match=r"evalterritoire cluster .*study\.toml") as error:
        run_reports(load_study(study), workers=1)
    assert type(error.value).__name__ == "StaleArtefactError"
    assert error.value.step == "maturity"
    assert "responses.parquet changed after it was read" in str(error.value)
    assert not (config.reports_dir / "territoires").exists()
    assert not (config.reports_dir / "manifest.json").exists()


def test_artefacts_index_and_manifest_get_the_umask_permissions(tmp_path, codebook):
    """Finding 10, quick: contexts, ``index.html`` and the manifest were 0600 (private
    temporary files renamed), whatever the umask."""
    from evalterritoire.manifest import write_manifest

    config = synthetic_study(tmp_path, codebook)
    previous = os.umask(0o027)
    artefacts.file_mode.cache_clear()
    try:
        paths = run_contexts(config, codebook=codebook)
        contexts = [ReportContext.from_json(p) for p in paths]
        paths.append(render_index(contexts, config.reports_dir / "index.html"))
        paths.append(write_manifest({"manifest_version": 1}, config.reports_dir / "manifest.json"))
    finally:
        os.umask(previous)
        artefacts.file_mode.cache_clear()
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in paths}
    assert set(modes.values()) == {"0o640"}, modes


def _slow_export(study: Path, copies: int = 30) -> None:
    """Make the export ``copies`` times longer (new respondent ids): a slow table to write."""
    export, header, rows = read_export(study)
    key = 0
    out = []
    for i in range(copies):
        for row in rows:
            row = list(row)
            row[key] = f"{row[key]}{i:03d}"
            out.append(row)
    write_export(export, header, out)


@pytest.mark.slow
def test_a_run_killed_while_writing_never_leaves_a_truncated_table(tmp_path):
    """Finding 2: ``validate`` killed while ``responses.parquet`` was written left it at 0 bytes
    (the previous good file destroyed), and the next steps ended in « internal error »."""
    study = make_study(tmp_path)
    _slow_export(study)
    assert cli("validate", str(study)).returncode in (0, 1)
    config = load_study(study)
    target = config.artefact("responses.parquet")
    old_rows = pq.read_metadata(target).num_rows
    export, header, rows = read_export(study)
    write_export(export, header, rows[:-50])  # the next run writes another table

    before = os.stat(target)
    child = subprocess.Popen([CLI, "validate", str(study)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    caught = None
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        now = os.stat(target)
        temporary = any(p.name.startswith(".responses.parquet.") for p in target.parent.iterdir())
        if temporary or (now.st_ino, now.st_size, now.st_mtime_ns) != (
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
        ):
            os.kill(child.pid, signal.SIGKILL)  # a reader or a kill at this very moment
            caught = "temporary file" if temporary else "target changed"
            break
    child.wait(30)
    assert caught is not None, "the write was never seen"
    # the previous good table or the new complete one: never a truncated file
    rows_now = pq.read_table(target).num_rows
    # the next step reads it, or names the step to re-run: never an internal error
    run = cli("estimate", str(study))
    assert run.returncode in (0, 2), run.stderr
    assert "internal error" not in run.stderr
    if run.returncode == 2:
        assert "evalterritoire validate" in run.stderr
    assert cli("validate", str(study)).returncode in (0, 1)
    assert rows_now in (old_rows, pq.read_metadata(target).num_rows), caught


@pytest.mark.slow
def test_a_failed_study_leaves_no_mixed_build_for_report_to_publish(tmp_path):
    """Finding 3: a failed ``study`` left new responses beside old estimates and contexts;
    a later ``report`` published the old contexts without a word and rewrote the manifest."""
    study = make_study(tmp_path, models=True)
    assert run_study(load_study(study), render=False) == 0
    config = load_study(study)
    manifest = config.reports_dir / "manifest.json"
    drop_territory(study)  # new data …
    text = study.read_text(encoding="utf-8")
    study.write_text(text.replace("+ ctx_taux_pauvrete", "+ nope"), encoding="utf-8")
    with pytest.raises(Exception, match="nope"):  # … and a study that fails at its models
        run_study(load_study(study), render=False)
    study.write_text(text, encoding="utf-8")

    with pytest.raises(EvalTerritoireError, match=r"evalterritoire model .*study\.toml") as error:
        run_reports(load_study(study), workers=1)
    assert type(error.value).__name__ == "StaleArtefactError"
    assert error.value.step == "models"
    assert not manifest.exists()  # nothing published
    assert not (config.reports_dir / "territoires").exists()
    run = cli("report", str(study))
    assert run.returncode == 2
    assert "stale" in run.stderr
    assert "evalterritoire model" in run.stderr

    # the step named, then report: the contexts are rebuilt from the fresh tables
    assert cli("model", str(study)).returncode == 0
    summary = run_reports(load_study(study), workers=1)
    assert summary.exit_code == 0
    assert manifest.is_file()


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_published_files_have_the_umask_permissions(tmp_path):
    """Finding 10: ``index.html``, ``manifest.json`` and most of ``build/`` were 0600."""
    study = make_study(tmp_path)
    run = cli("study", str(study), "--workers", "1", preexec_fn=lambda: os.umask(0o027))
    assert run.returncode == 0, run.stderr[-2000:]
    config = load_study(study)
    modes = {**_modes(config.build_dir), **_modes(config.reports_dir)}
    assert "index.html" in modes
    assert "manifest.json" in modes
    assert "estimates.parquet" in modes
    assert "contexts/national.json" in modes
    wrong = {name: oct(mode) for name, mode in modes.items() if mode != 0o640}
    assert wrong == {}


def test_a_second_study_on_the_same_build_folder_is_refused_while_the_first_runs(tmp_path):
    """Concurrent runs: the second ``study`` is refused with a message naming the first."""
    from _robust_study import SLOW

    study = make_study(tmp_path, body=SLOW)
    first = subprocess.Popen([CLI, "study", str(study), "--workers", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    config = load_study(study)
    try:
        deadline = time.monotonic() + 120
        while not config.artefact("responses.parquet").exists():  # the first run is writing
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        second = cli("study", str(study), "--workers", "1", timeout=90)
        assert second.returncode == 2, second.stderr
        assert "being written by another evalterritoire run" in second.stderr
        assert f"process {first.pid}" in second.stderr
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)
