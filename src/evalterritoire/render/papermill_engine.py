"""papermill engine ``evalterritoire``: execute notebooks in a warm, reused kernel.

Registered under the ``papermill.engine`` entry point, so that::

    papermill template.ipynb out.ipynb -p territory 200054781 --engine evalterritoire

runs the notebook in a kernel kept alive between calls of the same process (namespace reset
between notebooks, see :class:`evalterritoire.render.reports.WarmKernel`). The executed notebook is the
one papermill's default engine would produce (same outputs, same execution counts).

papermill loads every entry point when ``papermill.engines`` is imported, and this module may
be imported first: to avoid the import cycle (and any heavy import), the engine class is built
lazily on first attribute access (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WarmKernelEngine"]  # noqa: F822 (built on first access, see __getattr__)


def _build_engine_class() -> type:
    from papermill.engines import Engine

    class WarmKernelEngine(Engine):
        """papermill engine executing notebooks in a warm kernel reused across calls."""

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: int | None = None,
            **kwargs: Any,
        ) -> Any:
            """Execute ``nb_man.nb`` in the warm kernel of this process for ``kernel_name``."""
            from evalterritoire.render.kernel import execute_managed_notebook_warm

            return execute_managed_notebook_warm(
                nb_man,
                kernel_name,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                start_timeout=start_timeout,
                execution_timeout=execution_timeout,
                **kwargs,
            )

    WarmKernelEngine.__module__ = __name__
    WarmKernelEngine.__qualname__ = "WarmKernelEngine"
    return WarmKernelEngine


def __getattr__(name: str) -> Any:
    if name != "WarmKernelEngine":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cached = globals().get("WarmKernelEngine")
    if cached is None:
        engine = _build_engine_class()
        # Importing papermill.engines may have re-entered this function: keep the first class.
        cached = globals().setdefault("WarmKernelEngine", engine)
    return cached
