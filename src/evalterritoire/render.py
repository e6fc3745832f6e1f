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
* Formats: HTML (:func:`evalterritoire.export.export_html`), PDF (WeasyPrint, from the HTML),
  DOCX (pandoc, from the HTML), the executed ``ipynb``; ``engine="quarto"`` renders the same
  template with ``quarto render --execute -P …`` in a private directory per job.

The same warm kernel backs the papermill engine ``evalterritoire``
(:mod:`evalterritoire.papermill_engine`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import keyword
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from evalterritoire.errors import RenderError

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "DEFAULT_RENDER_OPTIONS",
    "ENGINES",
    "FORMATS",
    "KERNEL_ENV",
    "PRELOAD_MODULES",
    "STATUS_FILE",
    "RenderSummary",
    "RenderTask",
    "WarmKernel",
    "build_notebook",
    "build_quarto_command",
    "execute_managed_notebook_warm",
    "parameterize",
    "render_defaults",
    "render_docx",
    "render_html",
    "render_pdf",
    "render_reports",
    "shutdown_kernels",
    "write_template_notebook",
]

FORMATS: tuple[str, ...] = ("html", "pdf", "docx", "ipynb")
ENGINES: tuple[str, ...] = ("warm", "papermill", "quarto")
#: Status record of an output directory (one entry per territory).
STATUS_FILE = ".render_status.json"
_JOURNAL_FILE = ".render_status.jsonl"
_TMP_PREFIX = ".et-"
#: Environment added to every warm kernel: one BLAS/OpenMP thread per worker.
KERNEL_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
#: Modules imported once when a warm kernel starts (missing ones are ignored).
PRELOAD_MODULES: tuple[str, ...] = (
    "numpy",
    "pandas",
    "matplotlib",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "IPython.display",
    "evalterritoire.context",
    "evalterritoire.grid",
    "evalterritoire.figures",
    "evalterritoire.tables",
)
_LITERALS = (str, int, float, bool, type(None))
_STEM = re.compile(r"[A-Za-z0-9_-]{1,80}")
_YAML_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_YAML_KEYWORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


# --------------------------------------------------------------------------- templates
_TEMPLATE_CACHE: dict[tuple[str, int, int], NotebookNode] = {}


def build_notebook(template: str | Path) -> NotebookNode:
    """Read a report template as a notebook.

    Parameters
    ----------
    template : str or Path
        A jupytext percent script (``.py``, the source of truth) or a notebook (``.ipynb``).

    Returns
    -------
    NotebookNode
        A fresh copy (callers may modify it); reads are cached per path, size and mtime.

    Raises
    ------
    RenderError
        When the file is missing or cannot be read as a notebook.
    """
    import copy

    path = Path(template)
    try:
        stat = path.stat()
    except OSError:
        raise RenderError(f"report template not found: {path}") from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    nb = _TEMPLATE_CACHE.get(key)
    if nb is None:
        try:
            if path.suffix == ".ipynb":
                import nbformat

                nb = nbformat.read(path, as_version=4)
            elif path.suffix in {".py", ".md", ".qmd", ".Rmd"}:
                import jupytext

                nb = jupytext.read(path)
            else:
                raise RenderError(f"unsupported template type {path.suffix!r}: {path}")
        except RenderError:
            raise
        except Exception as exc:  # nbformat/jupytext raise many types for a broken file
            raise RenderError(f"cannot read report template {path}: {exc}") from None
        _TEMPLATE_CACHE[key] = nb
    return copy.deepcopy(nb)


def write_template_notebook(template_py: str | Path, out_ipynb: str | Path) -> Path:
    """Generate the ``.ipynb`` of a jupytext template (atomic write).

    Parameters
    ----------
    template_py : str or Path
        The jupytext percent script.
    out_ipynb : str or Path
        The notebook to write (git-ignored; regenerated by the build).

    Returns
    -------
    Path
        ``out_ipynb``.
    """
    import nbformat

    nb = build_notebook(template_py)
    out = Path(out_ipynb)
    _atomic_write(out, nbformat.writes(nb).encode("utf-8") + b"\n")
    return out


def _check_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key in sorted(parameters):
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
            raise RenderError(f"notebook parameter names must be Python identifiers, got {key!r}")
        checked[key] = _check_literal(key, parameters[key])
    return checked


def _check_literal(key: str, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise RenderError(f"parameter {key!r}: non-finite number {value!r}")
    if isinstance(value, _LITERALS):
        return value
    if isinstance(value, list | tuple):
        return [_check_literal(key, v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _check_literal(key, value[k]) for k in sorted(value)}
    raise RenderError(
        f"parameter {key!r} must be a literal (str, int, float, bool, None, or lists/dicts of "
        f"them), got {type(value).__name__}"
    )


def parameterize(nb: NotebookNode, parameters: Mapping[str, Any]) -> NotebookNode:
    """Inject parameters exactly as papermill does (``injected-parameters`` cell).

    Parameters
    ----------
    nb : NotebookNode
        Template notebook (not modified).
    parameters : mapping
        Literal parameters.

    Returns
    -------
    NotebookNode
        A parameterised copy.
    """
    import copy

    import nbformat
    from papermill import __version__ as papermill_version
    from papermill.parameterize import parameterize_notebook

    nb = nbformat.from_dict(copy.deepcopy(nb))
    # The metadata papermill.iorw.load_notebook_node adds before parameterising.
    nb.metadata.setdefault(
        "papermill",
        {
            "default_parameters": {},
            "parameters": {},
            "environment_variables": {},
            "version": papermill_version,
        },
    )
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
        cell.metadata.setdefault("papermill", {})
    return parameterize_notebook(nb, dict(parameters), report_mode=False)


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


# --------------------------------------------------------------------------- atomic files
@functools.cache
def _file_mode() -> int:
    """Mode of a new file under the process umask (``mkstemp`` alone would give 0o600)."""
    try:  # Linux: read the umask without changing it (os.umask is process-wide, not atomic)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file in the same directory, then rename it.

    A reader (or a killed run) never sees a partial file; the file gets the usual permissions
    of a new file (``0o666`` minus the umask), not the private ones of a temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), _file_mode())
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- warm kernel
_KERNEL_SETUP = r"""
def __et_setup(preload):
    import importlib, sys, types, warnings
    state = types.ModuleType("_evalterritoire_warm")
    state.failed = []
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:
            state.failed.append(name)
    state.filters = list(warnings.filters)
    mpl = sys.modules.get("matplotlib")
    state.rc = (
        {k: v for k, v in mpl.rcParams.items() if k != "backend"} if mpl is not None else None
    )

    def reset(cwd):
        import os
        from IPython import get_ipython
        import gc
        shell = get_ipython()
        # %reset ends with a full gc.collect() (IPython's display-hook flush), the most costly
        # step of a reset with pandas/matplotlib loaded: collect the young generations only and
        # leave full collections to the interpreter's thresholds (the memory cap recycles).
        collect = gc.collect
        gc.collect = lambda *args, **kwargs: 0
        try:
            shell.run_line_magic("reset", "-f")
        finally:
            gc.collect = collect
        collect(1)
        shell.execution_count = 1
        if cwd and os.path.isdir(cwd):  # a remote worker may lack the client's directory
            os.chdir(cwd)
        warnings.filters[:] = state.filters
        getattr(warnings, "_filters_mutated", lambda: None)()
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close("all")
        mpl = sys.modules.get("matplotlib")
        if mpl is not None and state.rc is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mpl.rcParams.update(state.rc)

    state.reset = reset
    sys.modules[state.__name__] = state
    # the preloaded modules live as long as the kernel: keep them out of every later
    # collection (full collections then scan only what the reports allocate)
    import gc
    gc.collect()
    gc.freeze()

__et_setup(PRELOAD)
del __et_setup
"""


class _KernelFailureError(Exception):
    """The kernel died, could not start or stopped answering: worth a retry."""


class _ReportTimeoutError(Exception):
    """The report exceeded its time limit."""


class WarmKernel:
    """A Jupyter kernel kept alive across notebooks, reset between them.

    Parameters
    ----------
    kernel_name : str
        Kernel spec name.
    max_reports : int
        Recycle (restart) the kernel after this many notebooks.
    max_memory_mb : float
        Recycle the kernel when its resident memory exceeds this.
    startup_timeout : float
        Seconds to wait for the kernel to answer after start.
    preload : sequence of str
        Modules imported once at start (failures ignored).
    env : mapping, optional
        Extra environment variables (added to :data:`KERNEL_ENV` and the current environment).

    Notes
    -----
    Not thread-safe: one kernel per thread (see :func:`_thread_kernel`). The kernel is started
    lazily by :meth:`execute`.
    """

    def __init__(
        self,
        kernel_name: str = "python3",
        *,
        max_reports: int = 250,
        max_memory_mb: float = 1024.0,
        startup_timeout: float = 60.0,
        preload: Sequence[str] = PRELOAD_MODULES,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kernel_name = kernel_name
        self.max_reports = max_reports
        self.max_memory_mb = max_memory_mb
        self.startup_timeout = startup_timeout
        self.preload = tuple(preload)
        self.env = dict(env or {})
        self.km: Any = None
        self.kc: Any = None
        self.language_info: dict[str, Any] | None = None
        self.n_reports = 0
        self.n_starts = 0
        self._dir: str | None = None
        self._process: Any = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def is_alive(self) -> bool:
        """Whether the kernel process is running."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the kernel (IPC transport in a private directory) and pre-import modules."""
        import nbformat
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient

        self.close()
        self._dir = tempfile.mkdtemp(prefix="et-kernel-")
        km = AsyncKernelManager(
            kernel_name=self.kernel_name,
            transport="ipc",
            ip=os.path.join(self._dir, "k"),
            connection_file=os.path.join(self._dir, "kernel.json"),
        )
        env = {**os.environ, **KERNEL_ENV, **self.env}
        client = NotebookClient(
            nbformat.v4.new_notebook(),
            km=km,
            kernel_name=self.kernel_name,
            startup_timeout=int(self.startup_timeout),
        )
        try:
            client.start_new_kernel(env=env, cwd=os.getcwd())
            client.start_new_kernel_client()
        except Exception as exc:
            self.km, self._process = km, getattr(km.provisioner, "process", None)
            self.close()
            raise _KernelFailureError(f"kernel failed to start: {exc}") from exc
        self.km, self.kc = km, client.kc
        self._process = km.provisioner.process
        self.n_starts += 1
        self.n_reports = 0
        info = client.wait_for_reply(self.kc.kernel_info())
        self.language_info = info["content"]["language_info"]
        setup = _KERNEL_SETUP.replace("PRELOAD", repr(self.preload))
        self._run_hidden(setup, timeout=max(120, int(self.startup_timeout)))

    def close(self) -> None:
        """Stop the kernel (hard kill; safe from any thread) and remove its private files."""
        kc, process, directory = self.kc, self._process, self._dir
        self.km = self.kc = self._process = self._dir = None
        if kc is not None:
            # closing the sockets of a dead kernel may fail: nothing to keep
            with contextlib.suppress(Exception):
                kc.stop_channels()
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def _run_hidden(self, code: str, *, timeout: int) -> None:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        client = NotebookClient(nb, km=self.km, timeout=timeout, record_timing=False)
        client.kc = self.kc
        try:
            client.execute_cell(nb.cells[0], 0, store_history=False)
        except CellExecutionError as exc:
            raise _KernelFailureError(f"kernel set-up failed: {exc}") from exc
        except (DeadKernelError, CellTimeoutError, RuntimeError, TimeoutError) as exc:
            self.close()
            raise _KernelFailureError(f"kernel stopped answering: {exc}") from exc

    def reset(self, cwd: str | None = None) -> None:
        """Clear the user namespace and restore a fresh kernel's state (before a notebook)."""
        if not self.is_alive:
            self.start()
        self._run_hidden(
            f'__import__("sys").modules["_evalterritoire_warm"].reset({cwd!r})', timeout=60
        )

    def memory_mb(self) -> float:
        """Resident memory of the kernel process (MiB), 0 when not running."""
        if not self.is_alive:
            return 0.0
        import psutil

        try:
            return psutil.Process(self._process.pid).memory_info().rss / 2**20
        except psutil.Error:
            return 0.0

    def after_notebook(self) -> None:
        """Count a notebook and recycle the kernel when due (report count or memory cap)."""
        self.n_reports += 1
        if self.n_reports >= self.max_reports or self.memory_mb() > self.max_memory_mb:
            self.close()

    # ----------------------------------------------------------------- execution
    def execute(
        self, nb: NotebookNode, *, timeout: float | None = None, cwd: str | None = None
    ) -> NotebookNode:
        """Execute a (parameterised) notebook in place, as papermill's default engine would.

        Parameters
        ----------
        nb : NotebookNode
            The notebook; its cells receive their outputs.
        timeout : float, optional
            Time limit for the whole notebook (seconds).
        cwd : str, optional
            Working directory of the notebook (default: the current directory).

        Returns
        -------
        NotebookNode
            ``nb``. Execution stops at the first failing cell, whose error output is kept.

        Raises
        ------
        _KernelFailureError
            The kernel died or could not start (the kernel is closed; retry).
        _ReportTimeoutError
            The time limit was reached (the kernel is closed).
        """
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        self.reset(cwd or os.getcwd())
        client = NotebookClient(nb, km=self.km, kernel_name=self.kernel_name, record_timing=False)
        client.kc = self.kc
        client.reset_execution_trackers()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for index, cell in enumerate(nb.cells):
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise CellTimeoutError(f"cell {index + 1} not started before the limit")
                    client.timeout = max(1, math.ceil(remaining))
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError:
                    break
        except CellTimeoutError as exc:
            self.close()
            raise _ReportTimeoutError(f"time limit of {timeout:g} s reached") from exc
        except (DeadKernelError, RuntimeError, TimeoutError) as exc:
            self.close()
            raise _KernelFailureError(f"kernel died: {exc}") from exc
        nb.metadata["language_info"] = self.language_info
        self.after_notebook()
        return nb


_LOCAL = threading.local()


def _same(value: Any) -> Any:
    return value


#: How :class:`WarmKernel` stores an option (to compare a cached kernel with new options).
_KERNEL_OPTION_TYPES: dict[str, Callable[[Any], Any]] = {
    "preload": tuple,
    "env": lambda value: dict(value or {}),
}
_ALL_KERNELS: list[WarmKernel] = []
_ALL_LOCK = threading.Lock()


def _thread_kernel(kernel_name: str = "python3", **options: Any) -> WarmKernel:
    """The warm kernel of the current thread for ``kernel_name`` (created on first use).

    A cached kernel whose settings differ from the ``options`` given (e.g. another recycling cap
    in a later batch) is closed and replaced; options not given keep the cached kernel's.
    """
    kernels = getattr(_LOCAL, "kernels", None)
    if kernels is None:
        kernels = _LOCAL.kernels = {}
    kernel = kernels.get(kernel_name)
    if kernel is not None and any(
        getattr(kernel, name) != _KERNEL_OPTION_TYPES.get(name, _same)(value)
        for name, value in options.items()
    ):
        kernel.close()
        with _ALL_LOCK:
            _ALL_KERNELS.remove(kernel)
        kernel = None
    if kernel is None:
        kernel = kernels[kernel_name] = WarmKernel(kernel_name, **options)
        with _ALL_LOCK:
            _ALL_KERNELS.append(kernel)
    return kernel


def shutdown_kernels() -> int:
    """Stop every warm kernel of this process (all threads).

    Returns
    -------
    int
        Number of kernels that were running.
    """
    with _ALL_LOCK:
        kernels = list(_ALL_KERNELS)
    n_running = 0
    for kernel in kernels:
        n_running += kernel.is_alive
        kernel.close()
    return n_running


def execute_managed_notebook_warm(
    nb_man: Any,
    kernel_name: str,
    *,
    log_output: bool = False,
    stdout_file: Any = None,
    stderr_file: Any = None,
    start_timeout: int = 60,
    execution_timeout: int | None = None,
    **kwargs: Any,
) -> Any:
    """Body of the papermill engine ``evalterritoire`` (see :mod:`.papermill_engine`).

    Runs papermill's own notebook client against this thread's warm kernel, so cell metadata,
    error markers and saving behave as with papermill's default engine.
    """
    from nbclient.exceptions import DeadKernelError
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.log import logger

    for unused in ("input_path", "output_path", "startup_timeout"):
        kwargs.pop(unused, None)
    timeout = execution_timeout or kwargs.pop("timeout", None)
    kernel = _thread_kernel(kernel_name, startup_timeout=start_timeout)
    for attempt in range(2):
        try:
            kernel.reset(os.getcwd())
            break
        except _KernelFailureError:
            if attempt:
                raise
    client = PapermillNotebookClient(
        nb_man,
        km=kernel.km,
        kernel_name=kernel_name,
        timeout=timeout,
        startup_timeout=start_timeout,
        log=logger,
        log_output=log_output,
        stdout_file=stdout_file,
        stderr_file=stderr_file,
        **kwargs,
    )
    client.kc = kernel.kc
    try:
        nb = client.execute()
    except (DeadKernelError, RuntimeError, TimeoutError):
        kernel.close()
        raise
    kernel.after_notebook()
    return nb


# --------------------------------------------------------------------------- formats
def render_html(nb: NotebookNode, *, title: str) -> str:
    """Self-contained HTML of an executed report (:func:`evalterritoire.export.export_html`).

    Parameters
    ----------
    nb : NotebookNode
        Executed notebook.
    title : str
        Page title.

    Returns
    -------
    str
        The HTML document.
    """
    from evalterritoire.export import export_html

    return export_html(nb, title=title)


def render_pdf(html_text: str) -> bytes:
    """PDF of a self-contained HTML report (WeasyPrint).

    Parameters
    ----------
    html_text : str
        The HTML document.

    Returns
    -------
    bytes
        The PDF file.
    """
    try:
        from weasyprint import HTML
    except ImportError:
        raise RenderError(
            "PDF output needs WeasyPrint: pip install 'evalterritoire[pdf]'"
        ) from None
    return HTML(string=html_text, base_url=None).write_pdf()


def render_docx(html_text: str, *, timeout: float = 120) -> bytes:
    """DOCX of a self-contained HTML report (pandoc; ``SOURCE_DATE_EPOCH=0`` for stable bytes).

    Parameters
    ----------
    html_text : str
        The HTML document.
    timeout : float
        Seconds allowed to pandoc.

    Returns
    -------
    bytes
        The DOCX file.

    Raises
    ------
    RenderError
        When pandoc is not on PATH or fails.
    """
    pandoc = shutil.which("pandoc")
    if pandoc is None:
        raise RenderError(
            "DOCX output needs pandoc on PATH (https://pandoc.org/installing.html); "
            "render HTML or PDF instead"
        )
    with tempfile.TemporaryDirectory(prefix="et-pandoc-") as tmp:
        out = Path(tmp) / "report.docx"
        try:
            proc = subprocess.run(
                [pandoc, "--from", "html", "--to", "docx", "--output", str(out)],
                input=html_text.encode("utf-8"),
                capture_output=True,
                timeout=timeout,
                env={**os.environ, "SOURCE_DATE_EPOCH": "0"},
                cwd=tmp,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RenderError(f"pandoc did not finish within {timeout:g} s") from None
        if proc.returncode != 0 or not out.is_file():
            message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RenderError(f"pandoc failed: {message[-1] if message else proc.returncode}")
        return out.read_bytes()


def _quarto_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if (
        isinstance(value, str)
        and _YAML_PLAIN.fullmatch(value)
        and value.lower() not in _YAML_KEYWORDS
    ):
        return value
    # Anything else as a JSON literal, which YAML reads back unchanged (quoted strings stay
    # strings: "01" is not read as the number 1).
    return json.dumps(value, ensure_ascii=False)


def build_quarto_command(
    template: str | Path, params: Mapping[str, Any], out_dir: str | Path
) -> list[str]:
    """The ``quarto render`` command line of one report.

    Parameters
    ----------
    template : str or Path
        The ``.qmd`` or ``.ipynb`` to render (a private copy: Quarto writes next to it).
    params : mapping
        Literal parameters, passed as ``-P key:value`` in sorted key order; strings that YAML
        would reinterpret (digits, ``true``, spaces…) are JSON-quoted.
    out_dir : str or Path
        Private output directory of the job.

    Returns
    -------
    list of str
        ``["quarto", "render", file, "--execute", "-P", "k:v", …, "--output-dir", out_dir]``.
    """
    command = ["quarto", "render", str(template), "--execute"]
    for key, value in _check_parameters(params).items():
        command += ["-P", f"{key}:{_quarto_value(value)}"]
    return [*command, "--output-dir", str(out_dir)]


# --------------------------------------------------------------------------- one task (worker)
def _short_error(nb: NotebookNode) -> str | None:
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"cell {index + 1} raised {out.get('ename', 'an error')}: {out.get('evalue', '')}"
    return None


def _execute_warm(payload: Mapping[str, Any]) -> NotebookNode:
    nb = parameterize(build_notebook(payload["template"]), payload["parameters"])
    kernel = _thread_kernel(payload["kernel_name"], **payload.get("kernel_options", {}))
    return kernel.execute(nb, timeout=payload["timeout"], cwd=payload["cwd"])


def _execute_papermill(payload: Mapping[str, Any]) -> NotebookNode:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = build_notebook(payload["template"])
    try:
        return papermill.execute_notebook(
            nb,
            None,
            parameters=dict(payload["parameters"]),
            kernel_name=payload["kernel_name"],
            progress_bar=False,
            execution_timeout=payload["timeout"],
            cwd=payload["cwd"],
        )
    except PapermillExecutionError as exc:
        raise RenderError(f"cell {exc.exec_count} raised {exc.ename}: {exc.evalue}") from None
    except Exception as exc:
        from nbclient.exceptions import CellTimeoutError

        if isinstance(exc, CellTimeoutError):
            raise _ReportTimeoutError(f"time limit of {payload['timeout']:g} s reached") from None
        raise _KernelFailureError(f"papermill failed: {exc}") from exc


def _render_quarto(payload: Mapping[str, Any]) -> str:
    quarto = shutil.which("quarto")
    if quarto is None:
        raise RenderError("engine 'quarto' needs Quarto on PATH (https://quarto.org)")
    template = Path(payload["template"])
    stem = payload["stem"]
    with tempfile.TemporaryDirectory(prefix="et-quarto-") as tmp:
        src_dir, out = Path(tmp) / "src", Path(tmp) / "out"
        src_dir.mkdir()
        if template.suffix in {".qmd", ".ipynb"}:
            source = src_dir / f"{stem}{template.suffix}"
            shutil.copyfile(template, source)
        else:
            source = write_template_notebook(template, src_dir / f"{stem}.ipynb")
        command = build_quarto_command(source, payload["parameters"], out)
        command[0] = quarto
        try:
            proc = subprocess.run(
                command,
                cwd=src_dir,
                capture_output=True,
                timeout=payload["timeout"],
                env={**os.environ, **KERNEL_ENV},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise _ReportTimeoutError(f"time limit of {payload['timeout']:g} s reached") from None
        produced = out / f"{stem}.html"
        if proc.returncode != 0 or not produced.is_file():
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RenderError(f"quarto render failed: {lines[-1] if lines else proc.returncode}")
        return produced.read_text(encoding="utf-8")


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


def _render_formats(payload: Mapping[str, Any]) -> dict[str, bytes]:
    formats = payload["formats"]
    engine = payload["engine"]
    files: dict[str, bytes] = {}
    if engine == "quarto":
        html_text = _render_quarto(payload)
        nb = None
    else:
        nb = (_execute_warm if engine == "warm" else _execute_papermill)(payload)
        error = _short_error(nb)
        if error is not None:
            raise RenderError(error)
        html_text = render_html(nb, title=payload["title"])
    if "html" in formats:
        files["html"] = html_text.encode("utf-8")
    if "pdf" in formats:
        files["pdf"] = render_pdf(html_text)
    if "docx" in formats:
        files["docx"] = render_docx(html_text)
    if "ipynb" in formats and nb is not None:
        import nbformat

        files["ipynb"] = nbformat.writes(nb).encode("utf-8") + b"\n"
    return files


def _worker_init() -> None:
    """Process-pool initializer: the worker's kernels are stopped when it exits."""
    from multiprocessing import util

    util.Finalize(None, shutdown_kernels, exitpriority=10)


@contextlib.contextmanager
def _local_inputs(payload: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The payload with inputs readable here: shipped copies replace missing or stale files.

    A remote payload (:func:`_remote_payload`) carries the bytes of the template and of the
    context file. A file that exists on this machine with the same content is used in place;
    otherwise the shipped bytes are written to a private directory, removed afterwards, and the
    payload (template path, ``context_path`` parameter) points there.
    """
    shipped = payload.get("sources")
    if not shipped:
        yield payload
        return
    local = dict(payload)
    parameters = dict(payload["parameters"])
    with tempfile.TemporaryDirectory(prefix="et-inputs-") as tmp:
        for key, (original, data, sha) in sorted(shipped.items()):
            path = Path(original)
            if not (path.is_file() and _sha256_file(path) == sha):
                path = Path(tmp) / key / path.name
                path.parent.mkdir()
                path.write_bytes(data)
            if key == "template":
                local["template"] = str(path)
            else:
                parameters[key] = str(path)
        local["parameters"] = parameters
        yield local


def _render_remote(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Dask task: returns the rendered bytes; kernel failures raise so that Dask retries them."""
    with _local_inputs(payload) as local:
        return _render_payload(local, raise_transient=True)


# --------------------------------------------------------------------------- status record
def _load_status(out_dir: Path) -> dict[str, dict[str, Any]]:
    status: dict[str, dict[str, Any]] = {}
    path = out_dir / STATUS_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            status.update(data.get("territories", {}))
        except (ValueError, AttributeError):
            status = {}  # a corrupt record only costs re-rendering
    journal = out_dir / _JOURNAL_FILE
    if journal.is_file():
        for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                status[entry["territory"]] = _status_entry(entry)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by an interrupted run
    return status


def _status_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "attempts": record.get("attempts"),
        "digest": record.get("digest"),
        "error": record.get("error"),
        "outputs": dict(sorted(record.get("outputs", {}).items())),
        "status": record.get("status"),
    }


def _write_status(out_dir: Path, status: Mapping[str, Mapping[str, Any]]) -> Path:
    path = out_dir / STATUS_FILE
    data = {"format": 1, "territories": {k: status[k] for k in sorted(status)}}
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    _atomic_write(path, text.encode("utf-8"))
    (out_dir / _JOURNAL_FILE).unlink(missing_ok=True)
    return path


#: Files of the package whose content can change a report (code, stylesheet, templates, data).
_SOURCE_SUFFIXES = frozenset({".py", ".css", ".html", ".yaml", ".yml", ".md", ".json", ".toml"})


def _hash_package_sources(root: Path) -> str:
    """SHA-256 over the package's source files (relative path and content, sorted).

    Parameters
    ----------
    root : Path
        The package directory.

    Returns
    -------
    str
        Hex digest; byte-code caches and hidden files are ignored.
    """
    digest = hashlib.sha256()
    files = sorted(
        path
        for path in root.rglob("*")
        if path.suffix in _SOURCE_SUFFIXES
        and path.is_file()
        and not any(
            part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts
        )
    )
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(_sha256_file(path).encode("ascii") + b"\n")
    return digest.hexdigest()


@functools.cache
def _package_fingerprint() -> str:
    """Hash of this package's sources, computed once per process (see :func:`_task_digest`)."""
    import evalterritoire

    return _hash_package_sources(Path(evalterritoire.__file__).resolve().parent)


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


def _is_fresh(
    entry: Mapping[str, Any] | None, digest: str, formats: Sequence[str], out_dir: Path
) -> bool:
    if not entry or entry.get("status") != "ok" or entry.get("digest") != digest:
        return False
    outputs = entry.get("outputs", {})
    return all(fmt in outputs and (out_dir / outputs[fmt]).is_file() for fmt in formats)


# --------------------------------------------------------------------------- fan-out
def _default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _progress(enabled: bool, total: int):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]Rapports"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("reste"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled or total == 0,
    )


def _run_local(
    payloads: list[dict[str, Any]],
    workers: int,
    on_result: Callable[[dict[str, Any]], None],
) -> None:
    if workers <= 1 or len(payloads) <= 1:
        try:
            for payload in payloads:
                on_result(_render_payload(payload))
        finally:
            shutdown_kernels()
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    queue = list(reversed(payloads))
    lost: dict[str, int] = {}
    while queue:
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_worker_init,
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
                        code = payload["territory"]
                        lost[code] = lost.get(code, 0) + 1
                        if lost[code] > payload["retries"]:
                            on_result(
                                {
                                    "territory": code,
                                    "digest": payload["digest"],
                                    "status": "failed",
                                    "outputs": {},
                                    "error": "worker process died",
                                    "attempts": lost[code],
                                    "seconds": 0.0,
                                }
                            )
                        else:
                            queue.append(payload)
                if broken and not running:
                    break
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


def _remote_payload(payload: Mapping[str, Any], templates: dict[str, bytes]) -> dict[str, Any]:
    """A payload that needs no shared filesystem: its inputs travel with it.

    The template and the ``context_path`` file travel as bytes (with their SHA-256), see
    :func:`_local_inputs`; the rendered files come back as bytes and are written by the client.
    ``templates`` caches the bytes of the templates (read once per batch; contexts are read
    when their task is sent).
    """
    remote = dict(payload)
    sources: dict[str, tuple[str, bytes, str]] = {}
    candidates = {
        "template": payload["template"],
        "context_path": payload["parameters"].get("context_path"),
    }
    for key, name in candidates.items():
        if not isinstance(name, str) or not name or not Path(name).is_file():
            continue
        data = templates.get(name) if key == "template" else None
        if data is None:
            data = Path(name).read_bytes()
            if key == "template":
                templates[name] = data
        sources[key] = (name, data, hashlib.sha256(data).hexdigest())
    remote["sources"] = sources
    return remote


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
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise RenderError(
            "--dask-scheduler needs the dask extra: pip install 'evalterritoire[dask]'"
        ) from None
    try:
        client = Client(scheduler, timeout=30, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise RenderError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    try:
        window = max(_DASK_MIN_WINDOW, 2 * sum(client.nthreads().values()))
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
                record = {
                    "territory": payload["territory"],
                    "digest": payload["digest"],
                    "status": "failed",
                    "outputs": {},
                    "error": f"{type(exc).__name__}: {exc}",
                    "attempts": retries + 1,
                    "seconds": 0.0,
                }
            future.release()
            submit_next()
            on_result(record)
        client.run(shutdown_kernels)
    finally:
        client.close()


#: Built-in defaults of the robustness options of :func:`render_reports`.
DEFAULT_RENDER_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "timeout": 600.0,
        "retries": 1,
        "max_reports_per_kernel": 250,
        "max_kernel_memory_mb": 1024.0,
    }
)
_RENDER_DEFAULTS: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "evalterritoire_render_defaults", default=MappingProxyType({})
)


@contextlib.contextmanager
def render_defaults(**options: Any) -> Iterator[None]:
    """Set defaults of :func:`render_reports`' robustness options within a block.

    A way for a caller to pass a study's ``[report]`` settings through code that calls
    :func:`render_reports` without those arguments (the CLI wraps the pipeline with it). An
    explicit argument of :func:`render_reports` still wins; ``None`` values are ignored.

    Parameters
    ----------
    **options
        Any of ``timeout`` (seconds per report), ``retries`` (after a kernel failure),
        ``max_reports_per_kernel`` and ``max_kernel_memory_mb`` (warm-kernel recycling).

    Yields
    ------
    None

    Raises
    ------
    RenderError
        For an unknown option name.
    """
    unknown = sorted(set(options) - set(DEFAULT_RENDER_OPTIONS))
    if unknown:
        raise RenderError(
            f"unknown render option(s) {', '.join(unknown)}; "
            f"choose among {', '.join(DEFAULT_RENDER_OPTIONS)}"
        )
    given = {k: v for k, v in options.items() if v is not None}
    token = _RENDER_DEFAULTS.set(MappingProxyType({**_RENDER_DEFAULTS.get(), **given}))
    try:
        yield
    finally:
        _RENDER_DEFAULTS.reset(token)


def _resolve_options(**given: Any) -> dict[str, Any]:
    """Explicit arguments, else :func:`render_defaults`, else :data:`DEFAULT_RENDER_OPTIONS`."""
    contextual = _RENDER_DEFAULTS.get()
    resolved = {
        name: given[name]
        if given.get(name) is not None
        else contextual.get(name, DEFAULT_RENDER_OPTIONS[name])
        for name in DEFAULT_RENDER_OPTIONS
    }

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    checks = {
        "timeout": (lambda v: number(v) and v > 0, "a positive number of seconds"),
        "retries": (lambda v: number(v) and v >= 0 and v == int(v), "a non-negative integer"),
        "max_reports_per_kernel": (
            lambda v: number(v) and v >= 1 and v == int(v),
            "an integer ≥ 1",
        ),
        "max_kernel_memory_mb": (lambda v: number(v) and v > 0, "a positive number of MiB"),
    }
    for name, (check, expected) in checks.items():
        if not check(resolved[name]):
            raise RenderError(f"{name} must be {expected}, got {resolved[name]!r}")
    return resolved


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
        max_reports_per_kernel``, else 250.
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
    options = _resolve_options(
        timeout=timeout,
        retries=retries,
        max_reports_per_kernel=max_reports_per_kernel,
        max_kernel_memory_mb=max_kernel_memory_mb,
    )
    timeout, retries = float(options["timeout"]), int(options["retries"])
    kernel_options: dict[str, Any] = {
        "max_reports": int(options["max_reports_per_kernel"]),
        "max_memory_mb": float(options["max_kernel_memory_mb"]),
    }
    if preload is not None:
        kernel_options["preload"] = tuple(preload)
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
    codes = [t.territory for t in tasks]
    duplicates = (
        sorted({c for c in codes if codes.count(c) > 1}) if len(set(codes)) < len(codes) else []
    )
    if duplicates:
        raise RenderError(f"duplicate territory code(s): {', '.join(duplicates[:5])}")
    stems = [t.stem for t in tasks]
    if len(set(stems)) < len(stems):
        raise RenderError("two tasks would write the same output file name")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{_TMP_PREFIX}*.tmp"):  # left by an interrupted run
        stale.unlink(missing_ok=True)
    status = _load_status(out)
    template_shas: dict[Path, str] = {}
    payloads: list[dict[str, Any]] = []
    n_skipped = 0
    cwd = os.getcwd()
    for task in tasks:
        template = task.template.resolve()
        if template not in template_shas:
            if not template.is_file():
                raise RenderError(f"report template not found: {template}")
            template_shas[template] = _sha256_file(template)
        digest = _task_digest(task, template_shas[template], engine)
        entry = status.get(task.territory)
        if only_failed and (entry is None or entry.get("status") != "failed"):
            n_skipped += 1
            continue
        if not force and not only_failed and _is_fresh(entry, digest, formats, out):
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
                "formats": formats,
                "engine": engine,
                "timeout": timeout,
                "retries": retries,
                "kernel_name": kernel_name,
                "kernel_options": kernel_options,
                "cwd": cwd,
            }
        )

    outputs: dict[str, dict[str, Path]] = {}
    failed: dict[str, str] = {}
    journal_path = out / _JOURNAL_FILE
    with (
        _progress(progress, len(payloads)) as bar,
        journal_path.open("a", encoding="utf-8") as journal,
    ):
        bar_task = bar.add_task("render", total=len(payloads))

        def on_result(record: dict[str, Any]) -> None:
            code = record["territory"]
            files = record.pop("files", None) or {}
            if record["status"] == "ok":
                try:
                    for fmt in sorted(files):
                        _atomic_write(out / record["outputs"][fmt], files[fmt])
                except OSError as exc:
                    record.update(status="failed", outputs={}, error=f"cannot write: {exc}")
            status[code] = _status_entry(record)
            journal.write(
                json.dumps({"territory": code, **status[code]}, ensure_ascii=False) + "\n"
            )
            journal.flush()
            if record["status"] == "ok":
                outputs[code] = {fmt: out / name for fmt, name in record["outputs"].items()}
            else:
                failed[code] = str(record["error"])
            bar.advance(bar_task)

        try:
            if not payloads:
                pass
            elif dask_scheduler:
                _run_dask(payloads, dask_scheduler, retries, on_result)
            else:
                n_workers = workers or _default_workers()
                _run_local(payloads, max(1, min(n_workers, len(payloads))), on_result)
        finally:
            journal.close()
            status_path = _write_status(out, status)
    return RenderSummary(
        n_total=len(tasks),
        n_rendered=len(outputs),
        n_skipped=n_skipped,
        n_failed=len(failed),
        failed=tuple(sorted(failed.items())),
        outputs=outputs,
        seconds=time.perf_counter() - start,
        status_path=status_path,
    )
