r"""An nbconvert exporter giving the same styled, offline HTML as ``evalterritoire report``.

The papermill route (run a template with ``papermill`` from the command line, then convert the
executed notebook) used nbconvert's HTML exporter, whose page loses the report stylesheet and
loads scripts from a CDN. :class:`ReportExporter` is registered as the nbconvert exporter
``evalterritoire`` (entry point ``nbconvert.exporters``)::

    papermill build/2025/templates/territory_report.ipynb out.ipynb \
        -p territory 200015276 -p wave 2025 -p context_path build/2025/contexts/200015276.json
    jupyter nbconvert --to evalterritoire out.ipynb      # → out.html

It runs :func:`evalterritoire.render.export.export_html` (outputs only, stylesheet embedded, no
script, nothing from the network) and adds the table of contents, exactly as the batch renderer
does; the page title is the report's first ``<h1>`` (the territory's name).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from nbconvert.exporters import Exporter

__all__ = ["ReportExporter", "export_notebook_html"]

_H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.S)
_TAG = re.compile(r"<[^>]+>")


def export_notebook_html(nb: Any) -> str:
    """The report page of an executed template notebook (title: its context's, as published; else its first ``<h1>``).

    Parameters
    ----------
    nb : NotebookNode
        The executed notebook.

    Returns
    -------
    str
        The self-contained HTML page.
    """
    from evalterritoire.render.outputs import render_html

    page = render_html(nb, title="")
    title = _context_title(nb)
    if title is None:
        found = _H1.search(page)
        title = html.unescape(_TAG.sub("", found.group(1))).strip() if found else "Rapport"
    return page.replace("<title></title>", f"<title>{html.escape(title)}</title>", 1)


def _context_title(nb: Any) -> str | None:
    """The title the published page has: its context's (papermill keeps the parameters)."""
    from evalterritoire.render.study import context_title

    parameters = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
    path = parameters.get("context_path")
    return context_title(Path(path)) if path else None


class ReportExporter(Exporter):
    """nbconvert exporter ``evalterritoire``: the styled offline report page."""

    export_from_notebook = "evalterritoire report"
    output_mimetype = "text/html"

    def _file_extension_default(self) -> str:
        return ".html"

    def from_notebook_node(
        self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[str, dict[str, Any]]:
        """Convert an executed notebook (see :func:`export_notebook_html`)."""
        nb_copy, resources = super().from_notebook_node(nb, resources, **kw)
        resources["output_extension"] = ".html"
        return export_notebook_html(nb_copy), resources
