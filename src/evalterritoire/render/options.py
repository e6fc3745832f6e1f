"""Defaults and checks of the robustness options of :func:`evalterritoire.render.reports.render_reports`.

Owns :data:`DEFAULT_RENDER_OPTIONS` (``timeout``, ``retries``, ``max_reports_per_kernel``,
``max_kernel_memory_mb``, and ``docx_reference``: the study's reference DOCX for pandoc),
:func:`render_defaults` (a block's defaults, e.g. a study's
``[report]`` table, held in a context variable) and :func:`_resolve_options` (explicit argument,
else the block's default, else the built-in one; each value checked).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from evalterritoire.errors import RenderError

#: Built-in defaults of the robustness options of :func:`render_reports`.
DEFAULT_RENDER_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "timeout": 600.0,
        "retries": 1,
        "max_reports_per_kernel": 1000,
        "max_kernel_memory_mb": 1024.0,
        "docx_reference": None,
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
        ``max_reports_per_kernel`` and ``max_kernel_memory_mb`` (warm-kernel recycling),
        ``docx_reference`` (reference DOCX of the DOCX output).

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
        "docx_reference": (
            lambda v: v is None or (isinstance(v, str | os.PathLike) and os.path.isfile(v)),
            "an existing reference DOCX file",
        ),
    }
    for name, (check, expected) in checks.items():
        if not check(resolved[name]):
            raise RenderError(f"{name} must be {expected}, got {resolved[name]!r}")
    return resolved
