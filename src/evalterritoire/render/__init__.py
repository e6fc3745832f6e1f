"""Rendering: warm kernels, notebook execution and HTML/PDF/DOCX export of the reports.

Modules: ``reports`` (the batch), ``kernel`` (warm kernels), ``notebook`` (building and
executing notebooks), ``inputs``, ``options``, ``status`` (resume), ``outputs`` (formats),
``export`` (self-contained HTML), ``quarto`` and ``papermill_engine``.
"""

from __future__ import annotations

from evalterritoire.render.export import export_html, load_report_css, render_index, wrap_html
from evalterritoire.render.kernel import (
    KERNEL_ENV,
    PRELOAD_MODULES,
    WarmKernel,
    execute_managed_notebook_warm,
    shutdown_kernels,
)
from evalterritoire.render.notebook import build_notebook, parameterize, write_template_notebook
from evalterritoire.render.options import DEFAULT_RENDER_OPTIONS, render_defaults
from evalterritoire.render.outputs import render_docx, render_html, render_pdf
from evalterritoire.render.quarto import build_quarto_command
from evalterritoire.render.reports import (
    ENGINES,
    FORMATS,
    RenderSummary,
    RenderTask,
    render_reports,
)
from evalterritoire.render.status import STATUS_FILE

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
    "export_html",
    "load_report_css",
    "parameterize",
    "render_defaults",
    "render_docx",
    "render_html",
    "render_index",
    "render_pdf",
    "render_reports",
    "shutdown_kernels",
    "wrap_html",
    "write_template_notebook",
]
