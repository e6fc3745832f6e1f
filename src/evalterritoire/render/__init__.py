"""Rendering: warm kernels, notebook execution and HTML/PDF/DOCX export of the reports.

Modules: ``reports`` (the batch), ``kernel`` (warm kernels), ``notebook`` (building and
executing notebooks), ``inputs``, ``options``, ``status`` (resume), ``outputs`` (formats),
``export`` (self-contained HTML), ``quarto``, ``papermill_engine`` and ``nbconvert_exporter``
(the papermill route's exporter); the publication around the reports: ``index`` (the wave's
searchable index), ``geomap`` (its stage map), ``navigation`` (back link, other waves, table of
contents), ``downloads`` (CSV, XLSX, Data Package) and ``params`` (evaluator parameters).

The public names below are imported on first access (PEP 562): a report kernel that imports
one module of the package does not pay for the others (pandas, scipy).
"""

from __future__ import annotations

from evalterritoire import _lazy_exports

#: Public name → the module that defines it (imported on first access, PEP 562): a
#: template that imports one module of the package does not pay for the others.
_PUBLIC: dict[str, str] = {
    "DEFAULT_RENDER_OPTIONS": "evalterritoire.render.options",
    "ENGINES": "evalterritoire.render.reports",
    "FORMATS": "evalterritoire.render.reports",
    "KERNEL_ENV": "evalterritoire.render.kernel",
    "PRELOAD_MODULES": "evalterritoire.render.kernel",
    "RenderSummary": "evalterritoire.render.reports",
    "RenderTask": "evalterritoire.render.reports",
    "STATUS_FILE": "evalterritoire.render.status",
    "WarmKernel": "evalterritoire.render.kernel",
    "add_table_of_contents": "evalterritoire.render.navigation",
    "apply_parameters": "evalterritoire.render.params",
    "build_download_tables": "evalterritoire.render.downloads",
    "build_notebook": "evalterritoire.render.notebook",
    "build_quarto_command": "evalterritoire.render.quarto",
    "check_parameters": "evalterritoire.render.params",
    "declared_parameters": "evalterritoire.render.params",
    "execute_managed_notebook_warm": "evalterritoire.render.kernel",
    "export_html": "evalterritoire.render.export",
    "load_geometry": "evalterritoire.render.geomap",
    "load_report_css": "evalterritoire.render.export",
    "parameterize": "evalterritoire.render.notebook",
    "render_defaults": "evalterritoire.render.options",
    "render_docx": "evalterritoire.render.outputs",
    "render_html": "evalterritoire.render.outputs",
    "render_index": "evalterritoire.render.index",
    "render_navigation": "evalterritoire.render.navigation",
    "render_pdf": "evalterritoire.render.outputs",
    "render_reports": "evalterritoire.render.reports",
    "render_stage_map": "evalterritoire.render.geomap",
    "shutdown_kernels": "evalterritoire.render.kernel",
    "wrap_html": "evalterritoire.render.export",
    "write_all_downloads": "evalterritoire.render.downloads",
    "write_downloads": "evalterritoire.render.downloads",
    "write_template_notebook": "evalterritoire.render.notebook",
}

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
    "write_all_downloads",
    "write_downloads",
    "write_template_notebook",
]


__getattr__, __dir__ = _lazy_exports(__name__, _PUBLIC)
