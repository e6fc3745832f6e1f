"""Rendering: warm kernels, notebook execution and HTML/PDF/DOCX export of the reports.

Modules: ``reports`` (the batch), ``kernel`` (warm kernels), ``notebook`` (building and
executing notebooks), ``inputs``, ``options``, ``status`` (resume), ``outputs`` (formats),
``export`` (self-contained HTML), ``quarto``, ``papermill_engine`` and ``nbconvert_exporter``
(the papermill route's exporter); the publication around the reports: ``index`` (the wave's
searchable index), ``geomap`` (its stage map), ``navigation`` (back link, other waves, table of
contents), ``downloads`` (CSV, XLSX, Data Package) and ``params`` (evaluator parameters).
"""

from __future__ import annotations

from evalterritoire.render.downloads import build_download_tables, write_downloads
from evalterritoire.render.export import export_html, load_report_css, wrap_html
from evalterritoire.render.geomap import load_geometry, render_stage_map
from evalterritoire.render.index import render_index
from evalterritoire.render.kernel import (
    KERNEL_ENV,
    PRELOAD_MODULES,
    WarmKernel,
    execute_managed_notebook_warm,
    shutdown_kernels,
)
from evalterritoire.render.navigation import add_table_of_contents, render_navigation
from evalterritoire.render.notebook import build_notebook, parameterize, write_template_notebook
from evalterritoire.render.options import DEFAULT_RENDER_OPTIONS, render_defaults
from evalterritoire.render.outputs import render_docx, render_html, render_pdf
from evalterritoire.render.params import apply_parameters, check_parameters, declared_parameters
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
    "add_table_of_contents",
    "apply_parameters",
    "build_download_tables",
    "build_notebook",
    "build_quarto_command",
    "check_parameters",
    "declared_parameters",
    "execute_managed_notebook_warm",
    "export_html",
    "load_geometry",
    "load_report_css",
    "parameterize",
    "render_defaults",
    "render_docx",
    "render_html",
    "render_index",
    "render_navigation",
    "render_pdf",
    "render_reports",
    "render_stage_map",
    "shutdown_kernels",
    "wrap_html",
    "write_downloads",
    "write_template_notebook",
]
