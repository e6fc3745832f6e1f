"""Render many territory reports fast, resumably, and in several formats.

The hot path of a study is rendering one report per territory. A naive loop of
``papermill.execute_notebook`` + nbconvert pays, for every report, a kernel start, the imports of
pandas/matplotlib/the package, the figures and a kernel shutdown. Here:

* :class:`WarmKernel` keeps one Jupyter kernel alive per worker (IPC transport in a private
  directory, so two kernels never race for a TCP port), pre-imports the heavy modules once, and
  resets the namespace between reports (``%reset -f``, execution counter back to 1, working
  directory, warning registry and matplotlib rcParams restored; imported modules stay cached in
  ``sys.modules`` so a template's ``import`` lines are free). It is recycled after
  ``max_reports`` reports or when its memory passes ``max_memory_mb``.
* :func:`render_reports` fans tasks out over a local process pool (one warm kernel per
  process) or over an existing Dask cluster (``dask_scheduler="tcp://…"``; inputs travel with
  each task and the rendered bytes come back, so no shared filesystem is needed), keeps a status
  record per territory in ``out_dir/.render_status.json`` (plus an append-only journal so a
  killed run loses nothing), skips territories whose inputs, template and package sources are
  unchanged, retries kernel failures, limits each report's time, never lets one territory abort
  the batch, writes every file atomically (from the calling process only) and shows a progress
  bar with an ETA. :func:`render_defaults` sets the defaults of its robustness options (the
  study's ``[report]`` table).
* Formats: HTML (:func:`evalterritoire.render.export.export_html`), PDF (WeasyPrint, from the HTML),
  DOCX (pandoc, from the HTML), the executed ``ipynb``; ``engine="quarto"`` renders the same
  template with ``quarto render --execute -P …`` in a private directory per job.

The same warm kernel backs the papermill engine ``evalterritoire``
(:mod:`evalterritoire.render.papermill_engine`).

Layout: this module is the batch driver (:class:`RenderTask`, :class:`RenderSummary`,
:func:`render_reports`, the per-task retry loop, the digest that decides staleness, the local
process-pool and Dask fan-out); the mechanisms live in the sibling modules ``kernel`` (warm
kernels and notebook execution), ``notebook`` (templates and parameters), ``outputs`` (HTML,
PDF, DOCX and the engine-to-files step), ``quarto`` (the Quarto engine), ``status`` (atomic
writes, status record and journal, package fingerprint), ``inputs`` (inputs that travel with a
Dask task) and ``options`` (:func:`render_defaults`). The helpers that the batch driver calls
through this module's namespace (``_render_formats``, ``_package_fingerprint``,
``_remote_payload``, ``_DASK_MIN_WINDOW``) are looked up here at call time, so replacing them
on this module (as the tests do) still takes effect.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalterritoire.errors import RenderError
from evalterritoire.progress import step_progress
from evalterritoire.render.inputs import _local_inputs, _remote_payload

# not used here, re-exported: callers and tests reach it as ``render._thread_kernel``
from evalterritoire.render.kernel import (
    _KernelFailureError,
    _ReportTimeoutError,
    shutdown_kernels,
)
from evalterritoire.render.lifeline import (
    kill_children,
    stop_on_sigterm,
    stop_pool_workers,
    watch_parent,
)
from evalterritoire.render.notebook import (
    _check_parameters,
)
from evalterritoire.render.options import (
    _resolve_options,
)
from evalterritoire.render.outputs import _render_formats

# not used here, re-exported: tests reach it as ``render._hash_package_sources``
from evalterritoire.render.status import (
    _JOURNAL_FILE,
    _TMP_PREFIX,
    _atomic_write,
    _is_fresh,
    _load_status,
    _package_fingerprint,
    _sha256_file,
    _status_entry,
    _write_status,
)

__all__ = ["ENGINES", "FORMATS", "RenderSummary", "RenderTask", "render_reports"]

FORMATS: tuple[str, ...] = ("html", "pdf", "docx", "ipynb")
ENGINES: tuple[str, ...] = ("warm", "papermill", "quarto")
_STEM = re.compile(r"[A-Za-z0-9_-]{1,80}")


# --------------------------------------------------------------------------- tasks and results
@dataclass(frozen=True)
class RenderTask:
    """One report to render.

    Parameters
    ----------
    territory : str
        Territory code (the key of the status record).
    template : Path
        Template (jupytext ``.py`` or ``.ipynb``; ``.qmd`` for Quarto).
    parameters : dict
        Notebook parameters, literals only (checked); ``context_path`` (if any) names the
        context file whose content decides whether the report is stale.
    output_stem : str, optional
        File name without extension; default ``manifest.safe_filename(territory)``. Must match
        ``[A-Za-z0-9_-]+`` (no separator, no traversal).
    title : str, optional
        HTML page title (default: the territory code).
    """

    territory: str
    template: Path
    parameters: Mapping[str, Any] = field(default_factory=dict)
    output_stem: str | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.territory, str) or not self.territory.strip():
            raise RenderError(f"territory code must be a non-empty string, got {self.territory!r}")
        object.__setattr__(self, "template", Path(self.template))
        object.__setattr__(self, "parameters", _check_parameters(self.parameters))
        stem = self.output_stem
        if stem is None:
            from evalterritoire.manifest import safe_filename

            stem = safe_filename(self.territory)
        elif not _STEM.fullmatch(stem) or stem.startswith("-"):
            raise RenderError(f"unsafe output name {stem!r}: use letters, digits, '_' and '-' only")
        object.__setattr__(self, "output_stem", stem)

    @property
    def stem(self) -> str:
        """The output file stem (always set after construction)."""
        return str(self.output_stem)


@dataclass(frozen=True)
class RenderSummary:
    """Outcome of :func:`render_reports`.

    Attributes
    ----------
    n_total, n_rendered, n_skipped, n_failed : int
        Tasks asked, rendered now, skipped (unchanged, or not failed with ``only_failed``),
        failed now.
    failed : tuple of (territory, message)
        Failed territories, sorted, with a one-line reason.
    outputs : dict
        territory → {format: path} for the territories rendered now.
    seconds : float
        Wall-clock time of the batch.
    status_path : Path
        The status record.
    """

    n_total: int
    n_rendered: int
    n_skipped: int
    n_failed: int
    failed: tuple[tuple[str, str], ...]
    outputs: Mapping[str, Mapping[str, Path]]
    seconds: float
    status_path: Path

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise."""
        return 1 if self.n_failed else 0

    def describe(self) -> str:
        """A short French summary for the command line."""
        lines = [
            f"{self.n_total} rapport(s) : {self.n_rendered} produit(s), "
            f"{self.n_skipped} inchangé(s), {self.n_failed} en échec "
            f"({self.seconds:.1f} s)."
        ]
        lines += [f"  échec {code} : {message}" for code, message in self.failed]
        return "\n".join(lines)


# --------------------------------------------------------------------------- one task (worker)
def _render_payload(payload: Mapping[str, Any], *, raise_transient: bool = False) -> dict[str, Any]:
    """Render one task in this process; never raises except transient failures on request.

    Nothing is written here: the record carries the rendered files (``files``: format → bytes)
    and the caller writes them atomically (so a remote worker needs no shared filesystem).
    """
    start = time.perf_counter()
    stem = payload["stem"]
    record: dict[str, Any] = {
        "territory": payload["territory"],
        "digest": payload["digest"],
        "status": "failed",
        "outputs": {},
        "files": {},
        "error": None,
        "attempts": 0,
    }
    attempts = 1 if raise_transient else 1 + max(0, int(payload["retries"]))
    for attempt in range(1, attempts + 1):
        record["attempts"] = attempt
        try:
            files = _render_formats(payload)
        except _KernelFailureError as exc:
            record["error"] = f"kernel failure: {exc}"
            if raise_transient:
                raise
            continue
        except _ReportTimeoutError as exc:
            record["error"] = str(exc)
            break
        except RenderError as exc:
            record["error"] = str(exc)
            break
        except Exception as exc:  # a failing territory must never abort the batch
            record["error"] = f"{type(exc).__name__}: {exc}"
            break
        record.update(
            status="ok",
            error=None,
            files=files,
            outputs={fmt: f"{stem}.{fmt}" for fmt in sorted(files)},
        )
        break
    record["seconds"] = time.perf_counter() - start
    return record


def _worker_init(parent: int | None = None) -> None:
    """Process-pool initializer: the worker's kernels are stopped when it exits.

    With ``parent`` (the process id of the pool's owner) the worker also ends, its kernels
    first, when that process is gone however it ended (:func:`watch_parent`), and on
    ``SIGTERM`` (:func:`stop_on_sigterm`).
    """
    from multiprocessing import util

    util.Finalize(None, shutdown_kernels, exitpriority=10)
    if parent is not None:
        stop_on_sigterm(_stop_everything)
        watch_parent(parent, _stop_everything)


def _stop_everything() -> None:
    """A worker's last clean-up: its kernels, then any child process still running."""
    try:
        shutdown_kernels()
    finally:
        kill_children()


def _render_remote(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Dask task: returns the rendered bytes; kernel failures raise so that Dask retries them."""
    with _local_inputs(payload) as local:
        return _render_payload(local, raise_transient=True)


# --------------------------------------------------------------------------- staleness
def _task_digest(task: RenderTask, template_sha: str, engine: str) -> str:
    """What decides whether a rendered report is stale.

    The template and context contents, the parameters, title and engine, and the package's own
    sources (figures, tables, export, stylesheet…: :func:`_package_fingerprint`), so that an
    edit of the code that draws a report re-renders it even without a version bump.
    """
    from evalterritoire import __version__

    context = task.parameters.get("context_path")
    context_sha = None
    if isinstance(context, str) and context:
        path = Path(context)
        context_sha = _sha256_file(path) if path.is_file() else f"missing:{context}"
    blob = json.dumps(
        {
            "context": context_sha,
            "engine": engine,
            "parameters": task.parameters,
            "sources": _package_fingerprint(),
            "template": template_sha,
            "title": task.title,
            "version": __version__,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- fan-out
def default_workers() -> int:
    """The default number of render (and download) processes: the cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _failure_record(payload: Mapping[str, Any], error: str, attempts: int) -> dict[str, Any]:
    """The record of a task that never came back (its worker died, its retries ran out)."""
    return {
        "territory": payload["territory"],
        "digest": payload["digest"],
        "status": "failed",
        "outputs": {},
        "error": error,
        "attempts": attempts,
        "seconds": 0.0,
    }


def _run_local(
    payloads: list[dict[str, Any]],
    workers: int,
    on_result: Callable[[dict[str, Any]], None],
) -> None:
    """Render in this process (one worker or one task), else in a pool of spawned processes.

    A pool whose worker died (``BrokenProcessPool``) is replaced by a new one; the tasks it was
    running go back in the queue until they have been lost more than ``retries`` times.
    """
    if workers <= 1 or len(payloads) <= 1:
        try:
            for payload in payloads:
                on_result(_render_payload(payload))
        finally:  # this thread's kernels: another thread may be rendering another batch
            shutdown_kernels(this_thread=True)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = list(reversed(payloads))
    lost: dict[str, int] = {}
    while queue:
        _run_pool(queue, lost, workers, context, on_result)


def _run_pool(
    queue: list[dict[str, Any]],
    lost: dict[str, int],
    workers: int,
    context: Any,
    on_result: Callable[[dict[str, Any]], None],
) -> None:
    """One process pool: take tasks from ``queue`` until it is empty or the pool breaks.

    At most ``2 * workers`` tasks are submitted at a time; once the pool is broken nothing new
    is submitted and the running tasks are collected (each one lost is requeued or failed).
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
    running: dict[Any, dict[str, Any]] = {}
    broken = False
    try:
        while queue or running:
            while queue and len(running) < 2 * workers and not broken:
                payload = queue.pop()
                running[executor.submit(_render_payload, payload)] = payload
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                payload = running.pop(future)
                try:
                    on_result(future.result())
                except BrokenProcessPool:
                    broken = True
                    _worker_died(payload, lost, queue, on_result)
            if broken and not running:
                break
    except BaseException:  # Ctrl-C, SIGTERM: stop the workers now, not after their reports
        stop_pool_workers(executor)  # each stops its kernels, then exits
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _worker_died(
    payload: dict[str, Any],
    lost: dict[str, int],
    queue: list[dict[str, Any]],
    on_result: Callable[[dict[str, Any]], None],
) -> None:
    """A task lost with its worker: back in the queue, or failed once its retries are spent."""
    code = payload["territory"]
    lost[code] = lost.get(code, 0) + 1
    if lost[code] > payload["retries"]:
        on_result(_failure_record(payload, "worker process died", lost[code]))
    else:
        queue.append(payload)


#: Fewest Dask tasks kept in flight (see :func:`_run_dask`).
_DASK_MIN_WINDOW = 8


def _run_dask(
    payloads: list[dict[str, Any]],
    scheduler: str,
    retries: int,
    on_result: Callable[[dict[str, Any]], None],
) -> None:
    """Send the tasks to a Dask cluster; a bounded window of them is in flight at any time.

    Each task carries its inputs and returns its files as bytes (:func:`_remote_payload`), so
    the window (twice the cluster's threads, at least 8) bounds the memory held by the client
    and the scheduler whatever the number of territories.
    """
    client = _dask_client(scheduler)
    try:
        window = max(_DASK_MIN_WINDOW, 2 * sum(client.nthreads().values()))
        _stream_dask(client, payloads, window, retries, on_result)
        client.run(shutdown_kernels)
    finally:
        client.close()


def _dask_client(scheduler: str) -> Any:
    """A client of an existing Dask scheduler, or a clear error (extra missing, unreachable)."""
    try:
        from distributed import Client
    except ImportError:
        raise RenderError(
            "--dask-scheduler needs the dask extra: pip install 'evalterritoire[dask]'"
        ) from None
    try:
        return Client(scheduler, timeout=30, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise RenderError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None


def _stream_dask(
    client: Any,
    payloads: list[dict[str, Any]],
    window: int,
    retries: int,
    on_result: Callable[[dict[str, Any]], None],
) -> None:
    """Keep ``window`` tasks in flight: each completed task is released, then replaced."""
    from distributed import as_completed

    templates: dict[str, bytes] = {}
    queue = iter(enumerate(payloads))
    futures: dict[Any, dict[str, Any]] = {}
    completed = as_completed(loop=client.loop)

    def submit_next() -> None:
        item = next(queue, None)
        if item is not None:
            index, payload = item
            future = client.submit(
                _render_remote,
                _remote_payload(payload, templates),
                retries=retries,
                pure=False,
                key=f"render-{index}-{payload['digest'][:12]}",
            )
            futures[future] = payload
            completed.add(future)

    for _ in range(window):
        submit_next()
    for future in completed:
        payload = futures.pop(future)
        try:
            record = future.result()
        except Exception as exc:  # retries exhausted on the cluster
            record = _failure_record(payload, f"{type(exc).__name__}: {exc}", retries + 1)
        future.release()
        submit_next()
        on_result(record)


# --------------------------------------------------------------------------- batch
def render_reports(
    tasks: Iterable[RenderTask],
    *,
    out_dir: str | Path,
    engine: str = "warm",
    workers: int | None = None,
    formats: Sequence[str] = ("html",),
    dask_scheduler: str | None = None,
    only_failed: bool = False,
    force: bool = False,
    timeout: float | None = None,
    retries: int | None = None,
    progress: bool = True,
    kernel_name: str = "python3",
    max_reports_per_kernel: int | None = None,
    max_kernel_memory_mb: float | None = None,
    preload: Sequence[str] | None = None,
) -> RenderSummary:
    """Render one report per task into ``out_dir``; resumable, parallel, never aborted by one.

    Parameters
    ----------
    tasks : iterable of RenderTask
        Reports to render (territory codes must be unique).
    out_dir : str or Path
        Output directory: ``<stem>.<format>`` files and ``.render_status.json``.
    engine : {"warm", "papermill", "quarto"}
        ``warm``: reused kernels (fast); ``papermill``: papermill's default engine (a fresh
        kernel per report); ``quarto``: ``quarto render`` (needs Quarto on PATH).
    workers : int, optional
        Parallel workers (default: number of usable cores). Ignored with ``dask_scheduler``.
    formats : sequence of {"html", "pdf", "docx", "ipynb"}
        Output formats.
    dask_scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``). Each task is sent with
        ``retries`` retries (a kernel failure raises on the worker and Dask resubmits it,
        possibly elsewhere); the template and the ``context_path`` file travel with the task
        and the rendered files come back as bytes, written here: no shared filesystem needed.
    only_failed : bool
        Render only the territories whose last status is ``failed``.
    force : bool
        Render even the territories whose inputs are unchanged.
    timeout : float, optional
        Time limit of one report in seconds (kernel start excluded); a report over the limit is
        recorded as failed (its kernel is restarted) and the batch goes on. Default: the
        study's ``[report] timeout`` when set through :func:`render_defaults`, else 600.
    retries : int, optional
        Retries of a report after a kernel failure (death, start or port failure); a report
        that raises an error is not retried. Default: ``[report] retries``, else 1.
    progress : bool
        Show a progress bar with an ETA (stderr).
    kernel_name : str
        Jupyter kernel spec.
    max_reports_per_kernel : int, optional
        Recycle a warm kernel after this many reports. Default: ``[report]
        max_reports_per_kernel``, else 1000.
    max_kernel_memory_mb : float, optional
        Recycle a warm kernel when its resident memory exceeds this after a report (MiB).
        Default: ``[report] max_kernel_memory_mb``, else 1024.
    preload : sequence of str, optional
        Modules each warm kernel imports once at start (default :data:`PRELOAD_MODULES`).

    Returns
    -------
    RenderSummary
        Counts, failed territories, outputs; ``exit_code`` is 1 if any report failed.

    Raises
    ------
    RenderError
        For invalid arguments (unknown engine or format, duplicate territories, missing
        template, Quarto or pandoc missing) — never for a failing territory.

    Notes
    -----
    Every file is written by this process, atomically (temporary file then rename), and the
    status of each report is appended to a journal as soon as it is known: a killed batch
    leaves no half-written report, and the next run renders only what is missing or stale.
    """
    start = time.perf_counter()
    tasks = list(tasks)
    settings = _shared_settings(
        engine,
        formats,
        kernel_name,
        timeout=timeout,
        retries=retries,
        max_reports_per_kernel=max_reports_per_kernel,
        max_kernel_memory_mb=max_kernel_memory_mb,
        preload=preload,
    )
    _check_unique_outputs(tasks)
    out = _prepare_out_dir(out_dir)
    status = _load_status(out)
    payloads, n_skipped = _plan(tasks, status, out, settings, only_failed=only_failed, force=force)
    dispatch = _dispatcher(payloads, dask_scheduler, workers, settings["retries"])
    recorder, status_path = _run_batch(payloads, out, status, dispatch, progress=progress)
    return recorder.summary(len(tasks), n_skipped, start, status_path)


# --------------------------------------------------------------------------- batch steps
def _shared_settings(
    engine: str,
    formats: Sequence[str],
    kernel_name: str,
    *,
    timeout: float | None,
    retries: int | None,
    max_reports_per_kernel: int | None,
    max_kernel_memory_mb: float | None,
    preload: Sequence[str] | None,
) -> dict[str, Any]:
    """What every payload of the batch shares, checked.

    Time limit, retries and warm-kernel options come from the arguments, else from
    :func:`render_defaults`; the engine and formats are checked (and formats deduplicated).
    """
    options = _resolve_options(
        timeout=timeout,
        retries=retries,
        max_reports_per_kernel=max_reports_per_kernel,
        max_kernel_memory_mb=max_kernel_memory_mb,
    )
    kernel_options: dict[str, Any] = {
        "max_reports": int(options["max_reports_per_kernel"]),
        "max_memory_mb": float(options["max_kernel_memory_mb"]),
    }
    if preload is not None:
        kernel_options["preload"] = tuple(preload)
    return {
        "formats": _check_engine_and_formats(engine, formats),
        "engine": engine,
        "timeout": float(options["timeout"]),
        "retries": int(options["retries"]),
        "kernel_name": kernel_name,
        "kernel_options": kernel_options,
        "cwd": os.getcwd(),
        "docx_reference": str(options["docx_reference"]) if options["docx_reference"] else None,
    }


def _check_engine_and_formats(engine: str, formats: Sequence[str]) -> tuple[str, ...]:
    """The formats, deduplicated; an error for an unknown engine or format, a missing tool."""
    if engine not in ENGINES:
        raise RenderError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise RenderError(
            f"unknown format(s) {', '.join(map(repr, unknown)) or '(none)'}; "
            f"choose among {', '.join(FORMATS)}"
        )
    if engine == "quarto":
        if shutil.which("quarto") is None:
            raise RenderError(
                "engine 'quarto' needs Quarto on PATH (https://quarto.org/docs/get-started/); "
                "use engine 'warm' or 'papermill'"
            )
        if "ipynb" in formats:
            raise RenderError("format 'ipynb' is not available with engine 'quarto'")
    if "docx" in formats and shutil.which("pandoc") is None:
        raise RenderError("DOCX output needs pandoc on PATH (https://pandoc.org/installing.html)")
    return formats


def _check_unique_outputs(tasks: Sequence[RenderTask]) -> None:
    """Refuse two tasks with the same territory code or the same output file name."""
    codes = [t.territory for t in tasks]
    duplicates = (
        sorted({c for c in codes if codes.count(c) > 1}) if len(set(codes)) < len(codes) else []
    )
    if duplicates:
        raise RenderError(f"duplicate territory code(s): {', '.join(duplicates[:5])}")
    stems = [t.stem for t in tasks]
    if len(set(stems)) < len(stems):
        raise RenderError("two tasks would write the same output file name")


def _prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output directory and remove the temporary files of an interrupted run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{_TMP_PREFIX}*.tmp"):
        stale.unlink(missing_ok=True)
    return out


def _plan(
    tasks: Sequence[RenderTask],
    status: Mapping[str, Mapping[str, Any]],
    out: Path,
    settings: Mapping[str, Any],
    *,
    only_failed: bool,
    force: bool,
) -> tuple[list[dict[str, Any]], int]:
    """The payloads of the tasks to render now, and the number of tasks skipped.

    A task is skipped when ``only_failed`` is set and it did not fail last time, or (without
    ``force``) when its digest and outputs are those of its last successful rendering.
    """
    template_shas: dict[Path, str] = {}
    payloads: list[dict[str, Any]] = []
    n_skipped = 0
    for task in tasks:
        template = task.template.resolve()
        if template not in template_shas:
            if not template.is_file():
                raise RenderError(f"report template not found: {template}")
            template_shas[template] = _sha256_file(template)
        digest = _task_digest(task, template_shas[template], settings["engine"])
        entry = status.get(task.territory)
        if only_failed and (entry is None or entry.get("status") != "failed"):
            n_skipped += 1
            continue
        if not force and not only_failed and _is_fresh(entry, digest, settings["formats"], out):
            n_skipped += 1
            continue
        payloads.append(
            {
                "territory": task.territory,
                "template": str(template),
                "parameters": dict(task.parameters),
                "stem": task.stem,
                "title": task.title or task.territory,
                "digest": digest,
                **settings,
            }
        )
    return payloads, n_skipped


def _dispatcher(
    payloads: list[dict[str, Any]],
    dask_scheduler: str | None,
    workers: int | None,
    retries: int,
) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    """How the payloads are sent: to the Dask cluster, else to local processes."""

    def dispatch(on_result: Callable[[dict[str, Any]], None]) -> None:
        if dask_scheduler:
            _run_dask(payloads, dask_scheduler, retries, on_result)
        else:
            n_workers = workers or default_workers()
            _run_local(payloads, max(1, min(n_workers, len(payloads))), on_result)

    return dispatch


class _Recorder:
    """Where each finished report goes, as soon as it is known (in the calling process).

    Its files are written atomically, its status entry is appended to the journal (flushed, so
    a killed run loses nothing) and the progress bar advances.
    """

    def __init__(
        self,
        out: Path,
        status: dict[str, dict[str, Any]],
        journal: Any,
        advance: Callable[[], None],
    ) -> None:
        self.out, self.status, self.journal, self.advance = out, status, journal, advance
        self.outputs: dict[str, dict[str, Path]] = {}
        self.failed: dict[str, str] = {}

    def __call__(self, record: dict[str, Any]) -> None:
        code = record["territory"]
        files = record.pop("files", None) or {}
        if record["status"] == "ok":
            try:
                for fmt in sorted(files):
                    _atomic_write(self.out / record["outputs"][fmt], files[fmt])
            except OSError as exc:
                record.update(status="failed", outputs={}, error=f"cannot write: {exc}")
        self.status[code] = _status_entry(record)
        self.journal.write(
            json.dumps({"territory": code, **self.status[code]}, ensure_ascii=False) + "\n"
        )
        self.journal.flush()
        if record["status"] == "ok":
            self.outputs[code] = {fmt: self.out / name for fmt, name in record["outputs"].items()}
        else:
            self.failed[code] = str(record["error"])
        self.advance()

    def summary(
        self, n_total: int, n_skipped: int, started: float, status_path: Path
    ) -> RenderSummary:
        """The batch's :class:`RenderSummary` (``started``: its ``time.perf_counter()``)."""
        return RenderSummary(
            n_total=n_total,
            n_rendered=len(self.outputs),
            n_skipped=n_skipped,
            n_failed=len(self.failed),
            failed=tuple(sorted(self.failed.items())),
            outputs=self.outputs,
            seconds=time.perf_counter() - started,
            status_path=status_path,
        )


def _run_batch(
    payloads: list[dict[str, Any]],
    out: Path,
    status: dict[str, dict[str, Any]],
    dispatch: Callable[[Callable[[dict[str, Any]], None]], None],
    *,
    progress: bool,
) -> tuple[_Recorder, Path]:
    """Run ``dispatch`` with a recorder, then write the status record (even when interrupted)."""
    journal_path = out / _JOURNAL_FILE
    with (
        step_progress("Rapports", len(payloads), enabled=progress) as advance,
        journal_path.open("a", encoding="utf-8") as journal,
    ):
        recorder = _Recorder(out, status, journal, advance)
        try:
            if payloads:
                dispatch(recorder)
        finally:
            journal.close()
            status_path = _write_status(out, status)
    return recorder, status_path
