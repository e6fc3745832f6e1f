"""Warm Jupyter kernels, and the execution of one report's notebook.

Owns :class:`WarmKernel` (one kernel kept alive across notebooks: IPC transport in a private
directory, heavy modules pre-imported once (:data:`PRELOAD_MODULES`), namespace reset between
notebooks, recycling after ``max_reports`` notebooks or past ``max_memory_mb``; every kernel,
warm or papermill's, carries the lifeline of :mod:`evalterritoire.render.lifeline`: it dies,
and its private folder goes, when the process that started it is gone), the per-thread
kernels of a process (:func:`_thread_kernel`, :func:`shutdown_kernels`), the body of the
papermill engine ``evalterritoire`` (:func:`execute_managed_notebook_warm`), the IPC kernel
manager given to papermill by a batch's ``papermill`` engine (:func:`ipc_kernel_manager_class`:
no TCP port, so ipykernel prints no « running over TCP without encryption » warning), the two
failures a batch treats specially (:class:`_KernelFailureError`, retried; :class:`_ReportTimeoutError`,
not retried) and the notebook engines of a batch (:func:`_execute_warm`,
:func:`_execute_papermill`).

A warm kernel preloads only what the shipped templates import (no pandas, no scipy: the
``report`` and ``render`` packages resolve their public names lazily), and the warm engine's
notebook client (:func:`_client_class`) builds each output as nbformat does but without its
JSON-schema validation (:func:`_output_from_msg`). Before each display, the kernel flushes
stdout and stderr only when they hold unsent text (ipykernel waits twice on its IO thread
per display otherwise); outputs keep their order.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from evalterritoire.errors import RenderError
from evalterritoire.render.lifeline import (
    KERNEL_FOLDER_PREFIX,
    OWNER_FILE,
    kernel_lifeline_arguments,
    sweep_orphan_folders,
)
from evalterritoire.render.notebook import build_notebook, parameterize

if TYPE_CHECKING:
    from nbformat import NotebookNode

#: Environment added to every warm kernel: one BLAS/OpenMP thread per worker.
KERNEL_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
#: Modules imported once when a warm kernel starts (missing ones are ignored): what the shipped
#: templates import, no more. pandas and scipy are not among them (about 2 s of CPU per kernel
#: start): no report module imports them (only the context builders do).
PRELOAD_MODULES: tuple[str, ...] = (
    "numpy",
    "matplotlib",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "IPython.display",
    "evalterritoire.manifest",
    "evalterritoire.report.context",
    "evalterritoire.report.grid",
    "evalterritoire.report.figures",
    "evalterritoire.report.tables",
    "evalterritoire.report.prose",
    "evalterritoire.report.annex",
    "evalterritoire.render.downloads",
    "evalterritoire.render.navigation",
    "evalterritoire.render.params",
)


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
    # Before each display, ipykernel flushes stdout and stderr: two waits on its IO thread per
    # figure or table, even when nothing was written. Flush only a stream holding unsent text
    # (its flush is pending); a flush already under way on the IO thread precedes the display
    # message there, so the order of the outputs is unchanged.
    from IPython import get_ipython
    publisher = getattr(get_ipython(), "display_pub", None)
    if publisher is not None and hasattr(publisher, "_flush_streams"):
        def flush_streams():
            for stream in (sys.stdout, sys.stderr):
                if getattr(stream, "_flush_pending", True) or getattr(
                    stream, "_subprocess_flush_pending", True
                ):
                    stream.flush()
        publisher._flush_streams = flush_streams
    # the preloaded modules live as long as the kernel: keep them out of every later
    # collection (full collections then scan only what the reports allocate)
    import gc
    gc.collect()
    gc.freeze()

__et_setup(PRELOAD)
del __et_setup
"""


#: The fields of each output message kind, in the order nbformat gives them to an output.
_OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "execute_result": ("metadata", "data", "execution_count"),
    "stream": ("name", "text"),
    "display_data": ("metadata", "data"),
    "error": ("ename", "evalue", "traceback"),
}


def _output_from_msg(msg: Mapping[str, Any]) -> NotebookNode:
    """The notebook output of a kernel's IOPub message, as ``nbformat.v4.output_from_msg``.

    The same node (same keys in the same order, mappings turned into nodes), without the
    JSON-schema validation nbformat runs on every output: about a twentieth of a second a report
    in the process that drives the kernel, for messages our own kernel has just formatted.

    Raises
    ------
    ValueError
        If the message is not an output message.
    """
    from nbformat import NotebookNode

    kind = msg["header"]["msg_type"]
    names = _OUTPUT_FIELDS.get(kind)
    if names is None:
        raise ValueError(f"Unrecognized output msg type: {kind!r}")
    content = msg["content"]
    out = NotebookNode(output_type=kind)
    for name in names:
        out[name] = content[name]  # a mapping becomes a NotebookNode, as with nbformat
    return out


_CLIENT_CLASS: list[type] = []


def _client_class() -> type:
    """The ``NotebookClient`` of nbclient, its outputs made by :func:`_output_from_msg`.

    Its ``output`` handler is nbclient's (output hooks, delayed clear, display ids), except for
    the schema validation of each output.
    """
    if _CLIENT_CLASS:
        return _CLIENT_CLASS[0]
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        def output(
            self,
            outs: list[NotebookNode],
            msg: dict[str, Any],
            display_id: str | None,
            cell_index: int,
        ) -> NotebookNode | None:
            hooks = self.output_hook_stack[msg["parent_header"].get("msg_id")]
            if hooks:  # a hook overrides the default behaviour (e.g. an output widget)
                hooks[-1].output(outs, msg, display_id, cell_index)
                return None
            try:
                out = _output_from_msg(msg)
            except ValueError:
                self.log.error(f"unhandled iopub msg: {msg['msg_type']}")
                return None
            if self.clear_before_next_output:
                outs[:] = []
                self.clear_display_id_mapping(cell_index)
                self.clear_before_next_output = False
            if display_id:
                cell_map = self._display_id_map.setdefault(display_id, {})
                cell_map.setdefault(cell_index, []).append(len(outs))
            outs.append(out)
            return out

    _CLIENT_CLASS.append(_Client)
    return _Client


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
        max_reports: int = 1000,
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
        self._dir = _private_kernel_folder()
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
            extra_arguments=kernel_lifeline_arguments(self._dir),
        )
        try:
            client.start_new_kernel(env=env, cwd=os.getcwd())
            # known at once, so that a stop during the start-up kills it too
            self._process = getattr(km.provisioner, "process", None)
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
        # the process first: killing is safe from any thread, closing sockets another thread
        # polls may block or abort
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        if kc is not None:
            # closing the sockets of a dead kernel may fail: nothing to keep
            with contextlib.suppress(Exception):
                kc.stop_channels()
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
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        self.reset(cwd or os.getcwd())
        client = _client_class()(nb, km=self.km, kernel_name=self.kernel_name, record_timing=False)
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


def shutdown_kernels(*, this_thread: bool = False) -> int:
    """Stop every warm kernel of this process (all threads), or of the calling thread only.

    Parameters
    ----------
    this_thread : bool, default False
        Stop only the kernels the calling thread started (a batch rendering in this process
        while another thread renders another batch leaves that one's kernels running).

    Returns
    -------
    int
        Number of kernels that were running.
    """
    with _ALL_LOCK:
        kernels = list(_ALL_KERNELS)
    if this_thread:
        own = {id(k) for k in getattr(_LOCAL, "kernels", {}).values()}
        kernels = [k for k in kernels if id(k) in own]
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


def _execute_warm(payload: Mapping[str, Any]) -> NotebookNode:
    nb = parameterize(build_notebook(payload["template"]), payload["parameters"])
    kernel = _thread_kernel(payload["kernel_name"], **payload.get("kernel_options", {}))
    return kernel.execute(nb, timeout=payload["timeout"], cwd=payload["cwd"])


def _private_kernel_folder() -> str:
    """A new private folder for one kernel's connection file and IPC sockets, owner noted."""
    sweep_orphan_folders()
    folder = tempfile.mkdtemp(prefix=KERNEL_FOLDER_PREFIX)
    with open(os.path.join(folder, OWNER_FILE), "w", encoding="ascii") as owner:
        owner.write(str(os.getpid()))
    return folder


def ipc_kernel_manager_class() -> type:
    """A ``jupyter_client`` kernel manager whose kernels talk over IPC sockets.

    Each kernel gets a private folder (:func:`_private_kernel_folder`: connection file and
    sockets, removed when the kernel is shut down), so that it opens no TCP port and ipykernel
    has no « Kernel is running over TCP without encryption » warning to print. Given to
    papermill (``kernel_manager_class``) by the ``papermill`` engine of a batch.
    """
    from jupyter_client.manager import AsyncKernelManager

    class IpcKernelManager(AsyncKernelManager):
        """Kernel over IPC sockets in a private folder, removed at shutdown."""

        def __init__(self, **kwargs: Any) -> None:
            folder = _private_kernel_folder()
            kwargs.update(
                transport="ipc",
                ip=os.path.join(folder, "k"),
                connection_file=os.path.join(folder, "kernel.json"),
            )
            super().__init__(**kwargs)
            self.et_folder = folder

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(self.et_folder, ignore_errors=True)

    return IpcKernelManager


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
            extra_arguments=kernel_lifeline_arguments(None),
            kernel_manager_class=ipc_kernel_manager_class(),
        )
    except PapermillExecutionError as exc:
        raise RenderError(f"cell {exc.exec_count} raised {exc.ename}: {exc.evalue}") from None
    except Exception as exc:
        from nbclient.exceptions import CellTimeoutError

        if isinstance(exc, CellTimeoutError):
            raise _ReportTimeoutError(f"time limit of {payload['timeout']:g} s reached") from None
        raise _KernelFailureError(f"papermill failed: {exc}") from exc
