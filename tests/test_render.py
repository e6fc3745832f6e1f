"""Tests of evalterritoire.render: warm kernels, papermill engine, fan-out, robustness, formats.

Every kernel here pre-imports only what the fixture template needs (``PRELOAD``), so a kernel
start costs about a second; the whole file runs in well under two minutes on two cores.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import nbformat
import pytest
import yaml

from evalterritoire.errors import RenderError
from evalterritoire.render import kernel as kernel_module
from evalterritoire.render import reports as render
from evalterritoire.render import status as status_module
from evalterritoire.render.export import wrap_html
from evalterritoire.render.kernel import WarmKernel
from evalterritoire.render.notebook import build_notebook, parameterize, write_template_notebook
from evalterritoire.render.options import DEFAULT_RENDER_OPTIONS, render_defaults
from evalterritoire.render.outputs import render_docx, render_pdf
from evalterritoire.render.quarto import build_quarto_command
from evalterritoire.render.reports import RenderTask, render_reports

FIXTURE = Path(__file__).parent / "fixtures" / "render" / "report.py"
PRELOAD = ("IPython.display", "matplotlib.figure")


# --------------------------------------------------------------------------- helpers
def _context(directory: Path, code: str, **extra) -> Path:
    """Write (or rewrite) the context file of a territory; values depend on the code."""
    path = directory / "contexts" / f"{code}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    base = sum(map(ord, code)) % 7
    data = {"values": [base + 1, base + 2.5, base + 4], **extra}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _params(code: str, context: Path) -> dict:
    return {"territory": code, "wave": 2025, "context_path": str(context)}


def _task(code: str, context: Path, template: Path = FIXTURE) -> RenderTask:
    return RenderTask(territory=code, template=template, parameters=_params(code, context))


def _render(tasks, out: Path, **options):
    options = {"workers": 1, "progress": False, "preload": PRELOAD, **options}
    return render_reports(tasks, out_dir=out, **options)


def _status(out: Path) -> dict:
    return json.loads((out / status_module.STATUS_FILE).read_text(encoding="utf-8"))["territories"]


def _errors(nb) -> list:
    return [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))


def _normalise(nb):
    """Drop what legitimately differs between two executions: ids, times, paths."""
    nb = copy.deepcopy(nb)
    for key in ("start_time", "end_time", "duration", "input_path", "output_path"):
        nb.metadata.get("papermill", {}).pop(key, None)
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index}"
        for key in ("start_time", "end_time", "duration"):
            cell.metadata.get("papermill", {}).pop(key, None)
        cell.metadata.pop("execution", None)
    return nb


# --------------------------------------------------------------------------- papermill engine
def test_warm_engine_executes_like_papermill_default_engine(tmp_path):
    import papermill

    notebook = write_template_notebook(FIXTURE, tmp_path / "report.ipynb")
    contexts = {code: _context(tmp_path, code) for code in ("A", "B")}
    # this thread's warm kernel, with a light preload; the engine reuses it
    kernel_module._thread_kernel("python3", preload=PRELOAD)
    try:
        for code in ("A", "B"):  # B runs on the kernel A used: the reset must hide A
            papermill.execute_notebook(
                str(notebook),
                str(tmp_path / f"warm-{code}.ipynb"),
                parameters=_params(code, contexts[code]),
                engine_name="evalterritoire",
                kernel_name="python3",
                progress_bar=False,
                cwd=str(tmp_path),
            )
        kernel = kernel_module._thread_kernel("python3")
        assert (kernel.n_starts, kernel.n_reports) == (1, 2)
    finally:
        render.shutdown_kernels()
    papermill.execute_notebook(
        str(notebook),
        str(tmp_path / "default-B.ipynb"),
        parameters=_params("B", contexts["B"]),
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
    )
    warm = nbformat.read(tmp_path / "warm-B.ipynb", as_version=4)
    default = nbformat.read(tmp_path / "default-B.ipynb", as_version=4)
    assert _normalise(warm) == _normalise(default)
    outputs = [o for c in warm.cells for o in c.get("outputs", [])]
    assert {o["output_type"] for o in outputs} == {"stream", "display_data", "execute_result"}
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert [c.execution_count for c in warm.cells if c.cell_type == "code"] == [1, 2, 3, 4, 5]


def test_papermill_engine_kernels_are_quiet_ipc_kernels(tmp_path, capfd, monkeypatch):
    """A batch's ``papermill`` engine starts its kernels over IPC in a private folder: no TCP
    port, no « running over TCP without encryption » warning, no folder left behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    seen = []
    manager_class = kernel_module.ipc_kernel_manager_class()
    original = manager_class.__init__

    def spy(self, **kwargs):
        original(self, **kwargs)
        seen.append((self.transport, self.ip, self.connection_file))

    monkeypatch.setattr(manager_class, "__init__", spy)
    monkeypatch.setattr(kernel_module, "ipc_kernel_manager_class", lambda: manager_class)
    context = _context(tmp_path, "A")
    summary = _render([_task("A", context)], tmp_path / "out", engine="papermill")
    assert summary.exit_code == 0, summary.describe()
    assert (tmp_path / "out" / "A.html").is_file()
    [(transport, ip, connection_file)] = seen
    assert transport == "ipc"
    folder = Path(connection_file).parent
    assert folder.name.startswith("et-kernel-")
    assert Path(ip).parent == folder
    assert not folder.exists()  # removed with the kernel
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out


# --------------------------------------------------------------------------- warm kernel
def test_warm_kernel_resets_namespace_and_recycles(tmp_path):
    template = build_notebook(FIXTURE)
    contexts = {code: _context(tmp_path, code) for code in "ABC"}
    kernel = WarmKernel(max_reports=2, preload=PRELOAD)
    try:
        first = kernel.execute(parameterize(template, _params("A", contexts["A"])), timeout=60)
        assert not _errors(first)
        # the variable is there after the report (positive control of the check below)...
        kernel._run_hidden("assert defined_here == 'A'", timeout=30)
        # ...and gone for the next one: the fixture raises when it sees 'defined_here'
        second = kernel.execute(parameterize(template, _params("B", contexts["B"])), timeout=60)
        assert not _errors(second)
        assert second.cells[-1].outputs[0]["data"]["text/plain"] == str(
            sorted(json.loads(contexts["B"].read_text())["values"])
        )
        assert (kernel.n_starts, kernel.is_alive) == (1, False)  # recycled after 2 reports
        kernel.max_memory_mb = 1.0  # any Python kernel uses more
        third = kernel.execute(parameterize(template, _params("C", contexts["C"])), timeout=60)
        assert not _errors(third)
        assert (kernel.n_starts, kernel.n_reports, kernel.is_alive) == (2, 1, False)
    finally:
        kernel.close()


def test_thread_kernel_follows_new_options():
    try:
        kernel = kernel_module._thread_kernel("python3", preload=PRELOAD, max_reports=5)
        assert kernel_module._thread_kernel("python3") is kernel  # options not given: kept
        assert kernel_module._thread_kernel("python3", max_reports=5) is kernel
        replaced = kernel_module._thread_kernel("python3", max_reports=7)
        assert replaced is not kernel
        assert replaced.max_reports == 7
    finally:
        render.shutdown_kernels()


# --------------------------------------------------------------------------- batches
def test_failure_only_failed_skip_unchanged_and_changed_inputs(tmp_path):
    templates = {"AB": tmp_path / "template_ab.py", "C": tmp_path / "template_c.py"}
    for template in templates.values():
        shutil.copyfile(FIXTURE, template)
    contexts = {code: _context(tmp_path, code) for code in "ABC"}
    _context(tmp_path, "B", fail=True)
    tasks = [_task(code, contexts[code], templates["C" if code == "C" else "AB"]) for code in "ABC"]
    out = tmp_path / "out"

    first = _render(tasks, out)
    assert (first.n_rendered, first.n_failed, first.exit_code) == (2, 1, 1)
    assert first.failed[0][0] == "B"
    assert "contexte invalide" in first.failed[0][1]
    assert "échec B" in first.describe()
    assert sorted(p.name for p in out.glob("*.html")) == ["A.html", "C.html"]
    status = _status(out)
    assert {c: s["status"] for c, s in status.items()} == {"A": "ok", "B": "failed", "C": "ok"}
    page = (out / "A.html").read_text(encoding="utf-8")
    assert "Territoire A, vague 2025" in page
    assert "data:image/png;base64," in page
    assert "message technique" not in page  # stderr never reaches a reader
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.html")}

    # B fixed, A's context and C's template changed: --only-failed renders B alone
    _context(tmp_path, "B")
    _context(tmp_path, "A", values=[9, 9, 9])
    templates["C"].write_text(FIXTURE.read_text() + "\n# %%\nprint('fin du rapport')\n")
    second = _render(tasks, out, only_failed=True)
    assert (set(second.outputs), second.n_skipped, second.exit_code) == ({"B"}, 2, 0)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("[AC].html")} == stamps

    # a plain run renders the changed context (A) and the changed template (C) only
    third = _render(tasks, out)
    assert (set(third.outputs), third.n_skipped, third.exit_code) == ({"A", "C"}, 1, 0)
    assert "Moyenne : 9.000" in (out / "A.html").read_text(encoding="utf-8")
    assert "fin du rapport" in (out / "C.html").read_text(encoding="utf-8")
    assert "fin du rapport" not in (out / "B.html").read_text(encoding="utf-8")

    # nothing changed: nothing rendered
    fourth = _render(tasks, out)
    assert (fourth.n_rendered, fourth.n_skipped, fourth.exit_code) == (0, 3, 0)
    assert _leftovers(out) == []
    assert not (out / ".render_status.jsonl").exists()


def test_two_local_workers_render_what_one_worker_renders(tmp_path):
    """The process pool (2 workers): same files byte for byte, same failures and status."""
    contexts = {code: _context(tmp_path, code) for code in ("A", "B", "C", "D", "E")}
    _context(tmp_path, "C", fail=True)
    tasks = [_task(code, path) for code, path in contexts.items()]
    one, two = tmp_path / "one", tmp_path / "two"
    first = _render(tasks, one, formats=("html", "ipynb"))
    second = _render(tasks, two, formats=("html", "ipynb"), workers=2)
    assert (second.n_rendered, second.n_failed, second.exit_code) == (4, 1, 1)
    assert [code for code, _ in second.failed] == [code for code, _ in first.failed] == ["C"]
    names = sorted(p.name for p in one.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in two.iterdir() if not p.name.startswith("."))
    assert len(names) == 8  # 4 territories × (html, ipynb)
    for name in names:
        if name.endswith(".html"):
            assert (one / name).read_bytes() == (two / name).read_bytes(), name
        else:  # executed notebooks: identical once execution times are dropped
            a, b = (nbformat.read(d / name, as_version=4) for d in (one, two))
            assert _normalise(a) == _normalise(b), name
    assert {c: s["status"] for c, s in _status(two).items()} == {
        c: s["status"] for c, s in _status(one).items()
    }
    assert _leftovers(two) == []


def test_dead_pool_worker_is_replaced_and_its_report_retried_then_failed(tmp_path):
    """A report that kills its worker process breaks the pool: a new pool takes the queue over,
    the report is retried ``retries`` times, then recorded as failed; the others render."""
    template = tmp_path / "kills_worker.py"
    template.write_text(
        FIXTURE.read_text(encoding="utf-8").replace(
            'time.sleep(ctx.get("sleep", 0))\n',
            'time.sleep(ctx.get("sleep", 0))\n'
            'if ctx.get("kill_worker"):\n'
            "    os.kill(os.getppid(), 9)\n"
            "    os._exit(3)\n",
        ),
        encoding="utf-8",
    )
    contexts = {code: _context(tmp_path, code) for code in ("A", "B", "C")}
    # B pauses before killing its worker, so that A and C (lost at most once with the pool
    # B breaks first) are done before B breaks the second pool
    _context(tmp_path, "B", kill_worker=True, sleep=4)
    tasks = [_task(code, path, template) for code, path in contexts.items()]
    out = tmp_path / "out"
    summary = _render(tasks, out, workers=2, retries=1)
    assert (summary.n_rendered, summary.n_failed, summary.exit_code) == (2, 1, 1)
    assert summary.failed == (("B", "worker process died"),)
    status = _status(out)
    assert (status["B"]["status"], status["B"]["attempts"]) == ("failed", 2)
    assert {status[c]["status"] for c in ("A", "C")} == {"ok"}
    assert sorted(p.name for p in out.glob("*.html")) == ["A.html", "C.html"]
    assert _leftovers(out) == []


def test_timeout_and_kernel_death_never_abort_the_batch(tmp_path):
    marker = tmp_path / "died-once"
    contexts = {  # in this order, two kernel starts cover everything
        "dies_once": _context(tmp_path, "dies_once", exit_once=str(marker)),
        "fine": _context(tmp_path, "fine"),
        "late": _context(tmp_path, "late", sleep=120),
    }
    tasks = [_task(code, path) for code, path in contexts.items()]
    out = tmp_path / "out"
    start = time.monotonic()
    summary = _render(tasks, out, timeout=2, retries=1, formats=("html", "pdf"))
    # « late » sleeps 120 s: a batch over before then stopped it (not a speed check; the batch
    # takes ~10 s quiet, over 60 s on a loaded machine)
    assert time.monotonic() - start < 115
    assert summary.exit_code == 1
    assert [code for code, _ in summary.failed] == ["late"]
    assert "time limit of 2 s" in summary.failed[0][1]
    assert set(summary.outputs) == {"dies_once", "fine"}
    assert marker.exists()  # the first attempt killed its kernel
    status = _status(out)
    assert (status["dies_once"]["status"], status["dies_once"]["attempts"]) == ("ok", 2)
    assert (status["late"]["status"], status["late"]["attempts"]) == ("failed", 1)  # no retry
    assert "Territoire dies_once" in (out / "dies_once.html").read_text(encoding="utf-8")
    assert (out / "fine.pdf").read_bytes().startswith(b"%PDF-")
    assert sorted(p.name for p in out.glob("late.*")) == []


def test_kernel_failures_are_retried_then_recorded(monkeypatch):
    calls = []

    def dying(payload):
        calls.append(payload["territory"])
        raise render._KernelFailureError("kernel died: boom")

    monkeypatch.setattr(render, "_render_formats", dying)
    payload = {"territory": "X", "digest": "d", "stem": "X", "retries": 2}
    record = render._render_payload(payload)
    assert (record["status"], record["attempts"], len(calls)) == ("failed", 3, 3)
    assert record["error"] == "kernel failure: kernel died: boom"
    assert (record["outputs"], record["files"]) == ({}, {})
    with pytest.raises(render._KernelFailureError):  # on Dask: raised, so that Dask retries
        render._render_payload(payload, raise_transient=True)
    assert len(calls) == 4


_KILLABLE = textwrap.dedent(
    """
    import json, sys
    from evalterritoire.render.reports import RenderTask, _package_fingerprint, render_reports

    print(_package_fingerprint(), flush=True)
    spec = json.loads(sys.argv[1])
    tasks = [
        RenderTask(territory=code, template=spec["template"], parameters=params)
        for code, params in spec["tasks"]
    ]
    render_reports(
        tasks, out_dir=spec["out"], workers=1, progress=False, preload=spec["preload"]
    )
    """
)


def _ok_in_journal(out: Path) -> set[str]:
    journal = out / ".render_status.jsonl"
    if not journal.is_file():
        return set()
    done = set()
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("status") == "ok":
            done.add(entry["territory"])
    return done


def test_killed_batch_leaves_no_partial_file_and_resumes(tmp_path, monkeypatch):
    import psutil

    codes = ["A", "B", "C", "D"]
    contexts = {code: _context(tmp_path, code, sleep=0 if code == "A" else 4) for code in codes}
    out = tmp_path / "out"
    spec = {
        "template": str(FIXTURE),
        "out": str(out),
        "preload": list(PRELOAD),
        "tasks": [(code, _params(code, contexts[code])) for code in codes],
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # digests must agree across the two processes even if a source file is edited meanwhile
        fingerprint = proc.stdout.readline().decode().strip()
        assert fingerprint, proc.stderr.read().decode()
        monkeypatch.setattr(render, "_package_fingerprint", lambda: fingerprint)
        deadline = time.monotonic() + 120
        while not _ok_in_journal(out):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the first report never landed"
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)  # mid-batch: B is running
        proc.wait(timeout=30)
        for child in children:  # the orphaned kernel
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    done = _ok_in_journal(out)
    assert "A" in done
    assert done != set(codes)
    assert not (out / status_module.STATUS_FILE).exists()  # killed before the final record
    assert _leftovers(out) == []
    pages = sorted(out.glob("*.html"))
    assert {p.stem for p in pages} == done
    for page in pages:  # whole documents only
        assert page.read_text(encoding="utf-8").rstrip().endswith("</html>")
    stamp = (out / "A.html").stat().st_mtime_ns

    for code in codes:  # the pause was only there to kill mid-batch
        if code not in done:
            _context(tmp_path, code)
    resumed = _render([_task(code, contexts[code]) for code in codes], out)
    assert set(resumed.outputs) == set(codes) - done
    assert (resumed.n_skipped, resumed.exit_code) == (len(done), 0)
    assert (out / "A.html").stat().st_mtime_ns == stamp
    assert _leftovers(out) == []
    assert sorted(p.stem for p in out.glob("*.html")) == codes
    assert {s["status"] for s in _status(out).values()} == {"ok"}


def test_dask_local_cluster_retries_and_client_side_writes(tmp_path, monkeypatch):
    from distributed import LocalCluster

    marker = tmp_path / "died-once"
    contexts = {
        "dies_once": _context(tmp_path, "dies_once", exit_once=str(marker)),
        "fine": _context(tmp_path, "fine"),
        "third": _context(tmp_path, "third"),
    }
    tasks = [_task(code, path) for code, path in contexts.items()]
    out = tmp_path / "out"
    monkeypatch.setattr(render, "_DASK_MIN_WINDOW", 1)  # 2 in flight (1 thread): refills run
    shipped: list[dict] = []
    remote_payload = render._remote_payload

    def elsewhere(payload, cache):
        """Ship as if the worker saw none of the client's files."""
        remote = remote_payload(payload, cache)
        shipped.append(remote)
        absent = tmp_path / "not-on-the-worker"
        remote["template"] = str(absent / "report.py")
        remote["sources"] = {
            key: (str(absent / key / Path(name).name), data, sha)
            for key, (name, data, sha) in remote["sources"].items()
        }
        return remote

    monkeypatch.setattr(render, "_remote_payload", elsewhere)
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        summary = _render(
            tasks,
            out,
            dask_scheduler=cluster.scheduler_address,
            retries=1,
            formats=("html", "ipynb"),
        )
    assert (summary.n_rendered, summary.n_failed) == (3, 0), summary.describe()
    assert marker.exists()  # the first attempt died; Dask ran the task again
    assert not (tmp_path / "not-on-the-worker").exists()  # shipped inputs: private, removed
    for payload in shipped:  # what the cluster receives: no output directory, inputs inside
        assert "out_dir" not in payload
        assert set(payload["sources"]) == {"template", "context_path"}
    for code in contexts:
        assert f"Territoire {code}" in (out / f"{code}.html").read_text(encoding="utf-8")
        executed = nbformat.read(out / f"{code}.ipynb", as_version=4)
        assert not _errors(executed)
        # the notebook read the shipped copy of the context, in the worker's private directory
        assert "et-inputs-" in executed.cells[1].source
    assert _leftovers(out) == []
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        f"{c}.{f}" for c in contexts for f in ("html", "ipynb")
    )


def test_dask_retries_run_out_the_report_fails_the_batch_goes_on(tmp_path):
    from distributed import LocalCluster

    contexts = {
        "always_dies": _context(tmp_path, "always_dies", exit_always=True),
        "fine": _context(tmp_path, "fine"),
    }
    tasks = [_task(code, path) for code, path in contexts.items()]
    out = tmp_path / "out"
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        summary = _render(tasks, out, dask_scheduler=cluster.scheduler_address, retries=1)
    assert (summary.n_rendered, summary.n_failed, summary.exit_code) == (1, 1, 1)
    assert summary.failed[0][0] == "always_dies"
    assert "kernel died" in summary.failed[0][1]
    status = _status(out)
    assert (status["always_dies"]["status"], status["always_dies"]["attempts"]) == ("failed", 2)
    assert status["fine"]["status"] == "ok"
    assert "Territoire fine" in (out / "fine.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in out.glob("always_dies*")) == []
    assert _leftovers(out) == []


# --------------------------------------------------------------------------- digest
def test_package_sources_hash_covers_code_and_stylesheet(tmp_path):
    package = tmp_path / "evalterritoire"
    shutil.copytree(
        Path(render.__file__).parents[1], package, ignore=shutil.ignore_patterns("__pycache__")
    )
    base = status_module._hash_package_sources(package)
    for name in ("report/figures.py", "report/tables.py", "render/export.py", "data/report.css"):
        path = package / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n/* edit */\n")
        assert status_module._hash_package_sources(package) != base, name
        path.write_bytes(original)
    assert status_module._hash_package_sources(package) == base
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0")
    assert status_module._hash_package_sources(package) == base
    assert render._package_fingerprint() == render._package_fingerprint()


def test_task_digest_follows_package_sources_context_and_template(tmp_path, monkeypatch):
    context = _context(tmp_path, "A")
    task = _task("A", context)
    digest = render._task_digest(task, "template-sha", "warm")
    assert render._task_digest(task, "template-sha", "warm") == digest
    assert render._task_digest(task, "other-template", "warm") != digest
    monkeypatch.setattr(render, "_package_fingerprint", lambda: "edited figures.py")
    assert render._task_digest(task, "template-sha", "warm") != digest
    monkeypatch.undo()
    _context(tmp_path, "A", values=[1, 2])
    assert render._task_digest(task, "template-sha", "warm") != digest


# --------------------------------------------------------------------------- options
def test_render_defaults_and_option_checks(tmp_path):
    assert render._resolve_options() == dict(DEFAULT_RENDER_OPTIONS)
    with render_defaults(timeout=5, retries=None):
        assert render._resolve_options()["timeout"] == 5
        assert render._resolve_options()["retries"] == 1
        assert render._resolve_options(timeout=7)["timeout"] == 7  # explicit wins
        with render_defaults(retries=3):
            assert render._resolve_options()["retries"] == 3
            assert render._resolve_options()["timeout"] == 5
    assert render._resolve_options()["timeout"] == 600
    with pytest.raises(RenderError, match="unknown render option"), render_defaults(workers=2):
        pass
    task = _task("A", _context(tmp_path, "A"))
    for bad in ({"timeout": 0}, {"retries": -1}, {"max_reports_per_kernel": 0}):
        with pytest.raises(RenderError, match=next(iter(bad))):
            _render([task], tmp_path / "out", **bad)


def test_study_report_table_and_cli_options(tmp_path, monkeypatch):
    from evalterritoire import cli, pipeline
    from evalterritoire.config import load_study
    from evalterritoire.errors import StudyConfigError

    wave = tmp_path / "surveys" / "2025"
    wave.mkdir(parents=True)
    (wave / "export.csv").write_text("id\n1\n", encoding="utf-8")
    base = '[study]\nwave = 2025\nexports = ["export.csv"]\n'
    study = wave / "study.toml"
    study.write_text(
        base + "[report]\ntimeout = 45\nretries = 3\nmax_reports_per_kernel = 20\n",
        encoding="utf-8",
    )
    report = load_study(study).report
    assert (report.timeout, report.retries, report.max_reports_per_kernel) == (45.0, 3, 20)
    assert report.max_kernel_memory_mb is None
    bad = wave / "bad.toml"
    bad.write_text(base + "[report]\ntimeout = 0\n", encoding="utf-8")
    with pytest.raises(StudyConfigError, match=r"report\.timeout"):
        load_study(bad)

    seen = {}

    def fake_run_reports(config, **kwargs):
        seen.update(render._resolve_options())
        return render.RenderSummary(0, 0, 0, 0, (), {}, 0.0, tmp_path / "status.json")

    monkeypatch.setattr(pipeline, "run_reports", fake_run_reports)
    code = cli.main(["report", str(study), "--timeout", "30", "--max-kernel-memory-mb", "512"])
    assert code == 0
    assert seen == {
        "timeout": 30.0,  # command line over the study
        "retries": 3,  # study
        "max_reports_per_kernel": 20,  # study
        "max_kernel_memory_mb": 512.0,
        "docx_reference": None,  # no [report] docx_reference in this study
    }


# --------------------------------------------------------------------------- Quarto
def test_build_quarto_command_exact_argv_and_safe_values():
    params = {
        "territory": "200054781",
        "wave": 2025,
        "context_path": "/data/contextes 2025/200054781.json",
        "label": "yes",
        "name": "Saint-Denis",
        "ratio": 0.5,
        "flag": True,
        "missing": None,
        "attack": "x; rm -rf ~ $(id) `id` 'q' \"dq\"",
    }
    argv = build_quarto_command("/jobs/j1/src/200054781.ipynb", params, "/jobs/j1/out")
    assert argv == [
        "quarto",
        "render",
        "/jobs/j1/src/200054781.ipynb",
        "--execute",
        "-P",
        'attack:"x; rm -rf ~ $(id) `id` \'q\' \\"dq\\""',
        "-P",
        'context_path:"/data/contextes 2025/200054781.json"',
        "-P",
        "flag:true",
        "-P",
        'label:"yes"',
        "-P",
        "missing:null",
        "-P",
        "name:Saint-Denis",
        "-P",
        "ratio:0.5",
        "-P",
        'territory:"200054781"',
        "-P",
        "wave:2025",
        "--output-dir",
        "/jobs/j1/out",
    ]
    # Quarto splits at the first ':' and reads the value as YAML: every value comes back intact
    for flag, item in zip(argv[4:-2:2], argv[5:-2:2], strict=True):
        assert flag == "-P"
        key, _, value = item.partition(":")
        assert yaml.safe_load(value) == params[key], item
    with pytest.raises(RenderError, match="identifiers"):
        build_quarto_command("r.qmd", {"bad key": 1}, "out")
    with pytest.raises(RenderError, match="literal"):
        build_quarto_command("r.qmd", {"when": object()}, "out")


_FAKE_QUARTO = """#!{python}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps({{"argv": args, "cwd": os.getcwd()}}) + "\\n")
out = Path(args[args.index("--output-dir") + 1])
out.mkdir(parents=True, exist_ok=True)
params = [a for a in args if ":" in a and not a.startswith("/")]
(out / (Path(args[1]).stem + ".html")).write_text(
    "<html><body>" + " ".join(params) + "</body></html>", encoding="utf-8"
)
"""


def test_quarto_engine_private_directory_per_job(tmp_path, monkeypatch):
    bin_dir, log = tmp_path / "bin", tmp_path / "quarto.log"
    bin_dir.mkdir()
    fake = bin_dir / "quarto"
    fake.write_text(_FAKE_QUARTO.format(python=sys.executable, log=str(log)), encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    contexts = {code: _context(tmp_path, code) for code in ("A", "B")}
    out = tmp_path / "out"
    summary = _render([_task(c, p) for c, p in contexts.items()], out, engine="quarto")
    assert (summary.n_rendered, summary.n_failed) == (2, 0), summary.describe()
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(calls) == 2
    jobs = {Path(call["cwd"]).parent for call in calls}
    assert len(jobs) == 2  # one private directory per job...
    for call, (code, context) in zip(calls, contexts.items(), strict=True):
        job = Path(call["cwd"]).parent
        assert job.name.startswith("et-quarto-")
        assert not job.exists()
        source = Path(call["argv"][1])
        assert source == Path(call["cwd"]) / f"{code}.ipynb"
        expected = build_quarto_command(source, _params(code, context), job / "out")
        assert call["argv"] == expected[1:]
        assert f"territory:{code}" in (out / f"{code}.html").read_text()


def test_quarto_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    task = _task("A", _context(tmp_path, "A"))
    with pytest.raises(RenderError, match=r"engine 'quarto' needs Quarto on PATH"):
        _render([task], tmp_path / "out", engine="quarto")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- PDF, DOCX
def _png(red: int = 0xC0) -> bytes:
    """A 2×2 RGB PNG, built by hand."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data)
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes([red, 0x20, 0x20]) * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _page() -> str:
    image = base64.b64encode(_png()).decode("ascii")
    body = (
        "<h2>Moyenne : 2,500</h2><p>Territoire 200054781, vague 2025</p>"
        f'<img alt="profil" src="data:image/png;base64,{image}"/>'
    )
    return wrap_html(body, title="200054781")


def test_pdf_through_weasyprint():
    pdf = render_pdf(_page())
    assert pdf.startswith(b"%PDF-")
    assert b"%%EOF" in pdf[-64:]


def test_docx_through_pandoc_or_a_clear_error():
    if shutil.which("pandoc") is None:  # CI without pandoc: the message is the feature
        with pytest.raises(RenderError, match=r"DOCX output needs pandoc on PATH"):
            render_docx(_page())
        return
    docx = render_docx(_page())
    assert docx.startswith(b"PK")
    with zipfile.ZipFile(io.BytesIO(docx)) as zipped:
        document = zipped.read("word/document.xml").decode("utf-8")
        assert "Moyenne : 2,500" in document
        assert "Territoire 200054781" in document
        assert any(name.startswith("word/media/") for name in zipped.namelist())


def test_docx_without_pandoc_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RenderError, match=r"DOCX output needs pandoc on PATH"):
        render_docx(_page())
    task = _task("A", _context(tmp_path, "A"))
    with pytest.raises(RenderError, match=r"DOCX output needs pandoc on PATH"):
        _render([task], tmp_path / "out", formats=("html", "docx"))


# --------------------------------------------------------------------------- atomic writes
def test_atomic_write_is_whole_or_nothing_with_normal_permissions(tmp_path, monkeypatch):
    target = tmp_path / "reports" / "A.html"
    render._atomic_write(target, b"<html>v1</html>")
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0o600

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(render.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render._atomic_write(target, b"<html>v2</html>")
    assert target.read_bytes() == b"<html>v1</html>"
    assert _leftovers(target.parent) == []


# --------------------------------------------------------------------------- bench comparison
def _bench_module():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_render.py"
    spec = importlib.util.spec_from_file_location("bench_render_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _executed(mean: str, png: bytes):
    """An executed report notebook, built without a kernel (outputs written by hand)."""
    v4 = nbformat.v4
    cell = v4.new_code_cell("report()", execution_count=3)
    cell.outputs = [
        v4.new_output("stream", name="stdout", text="Territoire A, vague 2025\n"),
        v4.new_output("stream", name="stderr", text="avertissement technique\n"),
        v4.new_output("display_data", data={"text/html": f"<h2>Moyenne : {mean}</h2>"}),
        v4.new_output(
            "display_data", data={"image/png": base64.b64encode(png).decode(), "text/plain": "F"}
        ),
        v4.new_output("execute_result", data={"text/plain": "[1, 2]"}, execution_count=3),
    ]
    return v4.new_notebook(cells=[cell])


def test_bench_content_compares_what_a_reader_sees():
    from nbconvert import HTMLExporter

    from evalterritoire.render.export import export_html

    bench = _bench_module()
    naive_page = HTMLExporter(exclude_input=True).from_notebook_node(_executed("2,5", _png()))[0]
    ours_page = export_html(_executed("2,5", _png()), title="A")
    assert "Out[3]" in naive_page  # the naive page has prompts and the stderr stream...
    assert "avertissement technique" in naive_page
    texts, images = bench._content(naive_page)
    assert (texts, images) == bench._content(ours_page)  # ...which do not count
    assert texts == ["Territoire A, vague 2025", "Moyenne : 2,5", "[1, 2]"]
    assert len(images) == 1
    # a changed number or a changed figure shows
    assert bench._content(export_html(_executed("2,6", _png()), title="A"))[0] != texts
    assert bench._content(export_html(_executed("2,5", _png(0xC1)), title="A"))[1] != images


def test_a_generated_template_notebook_is_the_same_file_every_time(tmp_path):
    import nbformat

    from evalterritoire.render import notebook as notebook_module

    first = write_template_notebook(FIXTURE, tmp_path / "a.ipynb").read_bytes()
    notebook_module._TEMPLATE_CACHE.clear()  # read the script again, as a new build would
    second = write_template_notebook(FIXTURE, tmp_path / "b.ipynb").read_bytes()
    assert first == second
    nb = nbformat.reads(first.decode("utf-8"), as_version=4)
    nbformat.validate(nb)
    assert [c["id"] for c in nb.cells] == [f"cell-{i}" for i in range(1, len(nb.cells) + 1)]
