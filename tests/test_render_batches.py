"""The report step renders the annual study alongside the territories' pool.

``pipeline._render_batches`` starts the one-report batches (the annual study) in a thread
while the territories render on a pool of processes; ``shutdown_kernels(this_thread=True)``
lets that thread stop its own kernel without stopping another thread's.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from evalterritoire.errors import RenderError
from evalterritoire.pipeline import _render_batches
from evalterritoire.render import kernel as kernel_module
from evalterritoire.render.options import _RENDER_DEFAULTS, render_defaults


class _Recorder:
    """A stand-in for ``render_reports``: records where, when and with what it ran."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[dict] = []
        self.fail = fail
        self.first_started = threading.Event()
        self.study_done = threading.Event()

    def __call__(self, tasks, *, out_dir, **options):
        folder = Path(out_dir).name
        call = {
            "folder": folder,
            "tasks": list(tasks),
            "thread": threading.current_thread().name,
            "progress": options.get("progress", True),
            "timeout": _RENDER_DEFAULTS.get().get("timeout"),
        }
        self.calls.append(call)
        if folder == "territoires":
            self.first_started.set()
            # the study's batch runs while this one is still running
            assert self.study_done.wait(10) or self.fail
        else:
            assert self.first_started.wait(10)
            if self.fail == folder:
                self.study_done.set()
                raise RenderError("the study's template is broken")
            self.study_done.set()
        return f"summary:{folder}"


@pytest.fixture
def recorder(monkeypatch):
    from evalterritoire.render import reports

    rec = _Recorder()
    monkeypatch.setattr(reports, "render_reports", rec)
    return rec


def _batches(tmp_path: Path) -> list[tuple[Path, list[str]]]:
    return [(tmp_path / "territoires", ["A", "B", "C"]), (tmp_path / "2025", ["national"])]


def test_study_renders_alongside_the_territories(recorder, tmp_path):
    with render_defaults(timeout=42.0):
        summaries = _render_batches(_batches(tmp_path), {"workers": 2, "engine": "warm"})
    assert summaries == ["summary:territoires", "summary:2025"]
    by_folder = {c["folder"]: c for c in recorder.calls}
    assert by_folder["territoires"]["thread"] == threading.current_thread().name
    assert by_folder["2025"]["thread"] == "evalterritoire-study"
    # one progress bar at a time; the caller's render defaults reach the thread
    assert by_folder["territoires"]["progress"] is True
    assert by_folder["2025"]["progress"] is False
    assert by_folder["2025"]["timeout"] == 42.0


def test_one_worker_or_dask_renders_the_batches_one_after_the_other(monkeypatch, tmp_path):
    from evalterritoire.render import reports

    for options in ({"workers": 1}, {"workers": 2, "dask_scheduler": "tcp://x:8786"}):
        order: list[tuple[str, str]] = []

        def sequential(tasks, *, out_dir, order=order, **_options):
            order.append((Path(out_dir).name, threading.current_thread().name))
            return Path(out_dir).name

        monkeypatch.setattr(reports, "render_reports", sequential)
        assert _render_batches(_batches(tmp_path), options) == ["territoires", "2025"]
        me = threading.current_thread().name
        assert order == [("territoires", me), ("2025", me)]


def test_a_failure_of_the_study_batch_is_raised_in_the_caller(monkeypatch, tmp_path):
    from evalterritoire.render import reports

    rec = _Recorder(fail="2025")
    monkeypatch.setattr(reports, "render_reports", rec)
    with pytest.raises(RenderError, match="broken"):
        _render_batches(_batches(tmp_path), {"workers": 2})


def test_shutdown_of_this_thread_leaves_another_threads_kernel(monkeypatch):
    closed: list[object] = []

    class Fake(kernel_module.WarmKernel):
        def close(self) -> None:
            closed.append(self)

    monkeypatch.setattr(kernel_module, "WarmKernel", Fake)
    # the process's real kernels (other tests') stay out of reach: fresh registries
    monkeypatch.setattr(kernel_module, "_ALL_KERNELS", [])
    monkeypatch.setattr(kernel_module, "_LOCAL", threading.local())
    name = "fake-kernel-for-this-test"
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(kernel_module._thread_kernel(name)))
    thread.start()
    thread.join()
    own = kernel_module._thread_kernel(name)
    kernel_module.shutdown_kernels(this_thread=True)
    assert [id(k) for k in closed] == [id(own)]
    kernel_module.shutdown_kernels()
    assert {id(k) for k in closed} == {id(own), id(other[0])}
