"""Nothing left running: the render pool, its kernels and their folders die with ``report``,
whatever signal ends it (issue 20, finding 4). Real signals, real child processes.

Before: ``SIGTERM`` or ``SIGKILL`` of ``report`` left 2 pool workers, the resource tracker and
2 kernels alive for good, plus ``/tmp/et-kernel-*`` folders. ``SIGKILL`` with 2 workers runs in
the quick suite; the other signals are ``slow``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from _robust_study import CLI, SLOW, synthetic_study

from evalterritoire.pipeline import run_contexts


@pytest.fixture
def slow_study(tmp_path, codebook) -> Path:
    """A study whose contexts exist and whose territory reports sleep for minutes."""
    config = synthetic_study(tmp_path, codebook, SLOW)
    run_contexts(config, codebook=codebook)
    return config.path


def _kernels(parent: psutil.Process) -> list[psutil.Process]:
    out = []
    for child in parent.children(recursive=True):
        try:
            if any("ipykernel" in part for part in child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue
    return out


def _alive(seen: dict[int, float]) -> list[str]:
    """The processes of ``seen`` (pid → start time) still running."""
    out = []
    for pid, started in seen.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{pid} {' '.join(process.cmdline())[:100]}")
        except psutil.Error:
            continue
    return out


@pytest.mark.parametrize(
    ("sig", "workers"),
    [
        ("SIGKILL", 2),
        pytest.param("SIGTERM", 2, marks=pytest.mark.slow),
        pytest.param("SIGINT", 2, marks=pytest.mark.slow),
        pytest.param("SIGKILL", 1, marks=pytest.mark.slow),
    ],
)
def test_report_stopped_by_a_signal_leaves_no_process_and_no_kernel_folder(
    slow_study, tmp_path, sig, workers
):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    child = subprocess.Popen(
        [CLI, "report", str(slow_study), "--workers", str(workers)],
        env={**os.environ, "TMPDIR": str(tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the test's own terminal signals never reach it
    )
    parent = psutil.Process(child.pid)
    seen: dict[int, float] = {}
    try:
        deadline = time.monotonic() + 180
        while len(_kernels(parent)) < workers:  # every worker has its kernel
            assert child.poll() is None, "report ended before its kernels started"
            assert time.monotonic() < deadline, "kernels never started"
            time.sleep(0.2)
        time.sleep(1.0)  # the kernels are running the sleeping cell
        for process in parent.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                seen[process.pid] = process.create_time()
        assert list(tmp.glob("et-kernel-*"))
        os.kill(child.pid, getattr(signal, sig))
        child.wait(60)
        deadline = time.monotonic() + 20
        while _alive(seen) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(seen) == []
        assert sorted(p.name for p in tmp.iterdir()) == []
    finally:
        for pid in [*seen, child.pid]:  # whatever survived a failing run
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        child.wait(30)


def test_a_kernel_lifeline_ends_the_kernel_and_removes_its_folder_when_the_parent_dies(tmp_path):
    """The code a kernel runs at start-up (no Jupyter needed to check it): a process running it
    ends, its folder removed, once the process that started it is killed."""
    import sys

    folder = tmp_path / "et-kernel-x"
    folder.mkdir()
    (folder / "kernel.json").write_text("{}", encoding="utf-8")
    # the parent starts the "kernel": a Python running the lifeline given to a kernel, then
    # sleeping; the parent prints its process id and sleeps
    launcher = (
        "import subprocess, sys, time\n"
        "from evalterritoire.render.lifeline import kernel_lifeline_arguments\n"
        f"code = kernel_lifeline_arguments({str(folder)!r})[0].split('=', 1)[1]\n"
        "kernel = subprocess.Popen([sys.executable, '-c', 'import time; ' + code + '; time.sleep(120)'])\n"
        "print(kernel.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    kernel = int(parent.stdout.readline())
    try:
        time.sleep(0.5)
        assert psutil.pid_exists(kernel)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while psutil.pid_exists(kernel) and time.monotonic() < deadline:
            with contextlib.suppress(psutil.Error):
                if psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE:
                    break
            time.sleep(0.1)
        assert not folder.exists()
        with contextlib.suppress(psutil.Error):
            assert psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE
    finally:
        with contextlib.suppress(OSError):
            os.kill(kernel, signal.SIGKILL)


def test_a_warm_kernel_has_one_watcher_of_its_parent_the_lifeline():
    """ipykernel's own parent poller is off in a warm kernel: it ended the kernel with
    ``os._exit`` as soon as it saw the parent gone, and when it saw it before the lifeline did
    (about one kernel death in ten) the kernel's folder was left behind."""
    import nbformat

    from evalterritoire.render.kernel import WarmKernel

    code = (
        "import threading\n"
        "print(sorted({type(t).__name__ + ':' + t.name for t in threading.enumerate()"
        " if 'Poller' in type(t).__name__ or t.name == 'evalterritoire-lifeline'}))"
    )
    kernel = WarmKernel(preload=())
    try:
        nb = kernel.execute(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]))
        assert nb.cells[0].outputs[0]["text"].strip() == "['Thread:evalterritoire-lifeline']"
    finally:
        kernel.close()
