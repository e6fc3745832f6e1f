"""Children that die with their parent: render pool workers, warm kernels, their folders.

A rendering run starts processes of its own: the pool's worker processes, and in each of them
warm Jupyter kernels (started in a new session by ``jupyter_client``, so a terminal's Ctrl-C or
a signal to the process group never reaches them). Whatever ends the parent — a normal exit,
Ctrl-C, ``SIGTERM`` (``timeout``, CI, systemd, ``docker stop``) or ``SIGKILL`` — none of them
must outlive it:

* every child runs a *lifeline*, a daemon thread that polls its parent's process id
  (:data:`POLL_SECONDS`); when the parent is gone (the child was re-parented) it cleans up and
  ends the child with ``os._exit``. Polling works whatever thread started the child (unlike
  ``PR_SET_PDEATHSIG``, tied to the creating thread) and on any POSIX system;
* a pool worker's lifeline stops its kernels first (:func:`watch_parent`), then kills any
  child process still running (:func:`kill_children`: a kernel caught in its start-up), and a
  worker told to stop with ``SIGTERM`` does the same (:func:`stop_on_sigterm`);
* a kernel's lifeline (:func:`kernel_lifeline_arguments`, code run at kernel start-up through
  ``IPKernelApp.exec_lines``, importing nothing from this package) removes the kernel's private
  folder (``et-kernel-*``: connection file, IPC sockets) before ending the kernel;
* each kernel folder names its owner process (:data:`OWNER_FILE`), and the first kernel start
  of a process removes the folders whose owner is gone (:func:`sweep_orphan_folders`: what a
  machine-wide kill may have left).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "KERNEL_FOLDER_PREFIX",
    "OWNER_FILE",
    "POLL_SECONDS",
    "kernel_lifeline_arguments",
    "kill_children",
    "stop_on_sigterm",
    "stop_pool_workers",
    "sweep_orphan_folders",
    "watch_parent",
]

#: How often a child checks that its parent is alive (seconds).
POLL_SECONDS = 0.2
#: Prefix of a warm kernel's private folder in the temporary directory.
KERNEL_FOLDER_PREFIX = "et-kernel-"
#: File of a kernel folder holding the process id of the process that owns the kernel.
OWNER_FILE = "owner.pid"

_KERNEL_LIFELINE = """
import os, shutil, threading, time
def _lifeline(parent, folder, every):
    while os.getppid() == parent:
        time.sleep(every)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)
threading.Thread(
    target=_lifeline, args=(PARENT, FOLDER, EVERY), name="evalterritoire-lifeline", daemon=True
).start()
"""


def watch_parent(
    parent: int, on_death: Callable[[], object] | None = None, *, every: float = POLL_SECONDS
) -> threading.Thread:
    """End this process when ``parent`` is no longer its parent (after ``on_death``).

    Parameters
    ----------
    parent : int
        The expected parent process id (given by the parent: if it died before this call, the
        child is already re-parented and ends at once).
    on_death : callable, optional
        Clean-up run first (e.g. stop this worker's kernels); its errors are ignored.
    every : float
        Polling interval in seconds.

    Returns
    -------
    threading.Thread
        The daemon thread watching.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        try:
            if on_death is not None:
                on_death()
        finally:
            os._exit(1)

    thread = threading.Thread(target=watch, name="evalterritoire-lifeline", daemon=True)
    thread.start()
    return thread


def stop_pool_workers(executor: Any) -> None:
    """Send ``SIGTERM`` to the worker processes of a ``ProcessPoolExecutor`` now.

    For a parent interrupted (Ctrl-C, ``SIGTERM``, an error of its own) while its workers are
    busy: it stops them instead of waiting for their tasks in the executor's shutdown.
    """
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.terminate()


def kill_children() -> int:
    """Kill every process descended from this one (``SIGKILL``); the number killed.

    The last step of a worker's clean-up: whatever its kernels' own clean-up missed (a kernel
    whose start-up was under way) does not outlive it.
    """
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    killed = 0
    for child in children:
        try:
            child.kill()
            killed += 1
        except psutil.Error:
            continue
    psutil.wait_procs(children, timeout=5)
    return killed


def stop_on_sigterm(cleanup: Callable[[], object]) -> None:
    """On ``SIGTERM``, run ``cleanup`` and end the process (exit status 143).

    Call it from the main thread of a worker process (signal handlers live there).
    """

    def handler(signum: int, frame: object) -> None:
        try:
            cleanup()
        finally:
            os._exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def kernel_lifeline_arguments(folder: str | None, *, parent: int | None = None) -> list[str]:
    """Kernel command-line arguments that make an IPython kernel die with its parent.

    Parameters
    ----------
    folder : str, optional
        The kernel's private folder, removed by the kernel when its parent is gone.
    parent : int, optional
        The process starting the kernel (default: this process).

    Returns
    -------
    list of str
        ``["--IPKernelApp.exec_lines=…", "--IPKernelApp.parent_handle=0"]``, for
        ``NotebookClient(extra_arguments=…)``. The second turns off ipykernel's own parent
        poller: it ends the kernel with ``os._exit`` within a second of the parent's death,
        and when it came first the lifeline never removed the folder (one kernel death in
        ten or so).
    """
    code = (
        _KERNEL_LIFELINE.replace("PARENT", str(parent if parent is not None else os.getpid()))
        .replace("FOLDER", repr(folder))
        .replace("EVERY", repr(POLL_SECONDS))
    )
    return [f"--IPKernelApp.exec_lines=exec({code!r}, {{}})", "--IPKernelApp.parent_handle=0"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@functools.cache
def sweep_orphan_folders(directory: str | None = None) -> int:
    """Remove the kernel folders whose owner process is gone (once per process).

    Parameters
    ----------
    directory : str, optional
        Where the folders are (default: the temporary directory).

    Returns
    -------
    int
        Number of folders removed.
    """
    root = Path(directory or tempfile.gettempdir())
    removed = 0
    for folder in root.glob(f"{KERNEL_FOLDER_PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue  # not ours, or being created: left alone
        if owner != os.getpid() and not _alive(owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
