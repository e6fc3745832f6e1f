"""Output formats of one report, and the engine-to-files step of a task.

Owns the conversions of an executed report: self-contained HTML (:func:`render_html`, through
:func:`evalterritoire.render.export.export_html`, then its table of contents from
:func:`evalterritoire.render.navigation.add_table_of_contents`), PDF (:func:`render_pdf`,
WeasyPrint, from the HTML; tagged PDF/UA-1 titled by the page's ``<title>``) and DOCX
(:func:`render_docx`, pandoc, from the HTML, styled by the study's reference DOCX when the payload
names one, ``docx_reference``), and :func:`_render_formats`, which runs a task's payload through
its engine (warm, papermill or quarto) and returns the bytes of every requested format (``html``,
``pdf``, ``docx``, ``ipynb``). Nothing is written here.

:mod:`evalterritoire.render.reports` calls ``_render_formats`` through its own namespace (tests
replace it there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalterritoire.errors import RenderError
from evalterritoire.render.kernel import _execute_papermill, _execute_warm
from evalterritoire.render.notebook import _short_error
from evalterritoire.render.quarto import _render_quarto

if TYPE_CHECKING:
    from nbformat import NotebookNode


def render_html(nb: NotebookNode, *, title: str) -> str:
    """Self-contained HTML of an executed report (:func:`evalterritoire.render.export.export_html`).

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
    from evalterritoire.render.export import export_html
    from evalterritoire.render.navigation import add_table_of_contents

    return add_table_of_contents(export_html(nb, title=title))


def render_pdf(html_text: str) -> bytes:
    """PDF of a self-contained HTML report (WeasyPrint): tagged PDF/UA-1, titled by ``<title>``.

    The document's ``<title>`` (the territory's name) becomes the PDF title; the structure is
    tagged (``pdf_variant="pdf/ua-1"``) so that assistive technology can read it, and the print
    rules of the stylesheet give the cover, running header and page numbers.

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
    import weasyprint

    options: dict[str, Any] = {}
    if "pdf/ua-1" in getattr(getattr(weasyprint, "pdf", None), "VARIANTS", {}):
        options["pdf_variant"] = "pdf/ua-1"
    elif "pdf_tags" in getattr(weasyprint, "DEFAULT_OPTIONS", {}):
        options["pdf_tags"] = True
    return HTML(string=html_text, base_url=None).write_pdf(**options)


def render_docx(
    html_text: str, *, timeout: float = 120, reference_doc: str | Path | None = None
) -> bytes:
    """DOCX of a self-contained HTML report (pandoc; ``SOURCE_DATE_EPOCH=0`` for stable bytes).

    The document's ``<title>`` (the territory's name) becomes the DOCX title property.

    Parameters
    ----------
    html_text : str
        The HTML document.
    timeout : float
        Seconds allowed to pandoc.
    reference_doc : str or Path, optional
        The observatory's reference DOCX (``[report] docx_reference``): its styles, headers and
        footers shape the output (pandoc ``--reference-doc``).

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
    command = [pandoc, "--from", "html", "--to", "docx"]
    if reference_doc is not None:
        reference = Path(reference_doc).resolve()
        if not reference.is_file():
            raise RenderError(f"reference DOCX not found: {reference}")
        command.append(f"--reference-doc={reference}")
    with tempfile.TemporaryDirectory(prefix="et-pandoc-") as tmp:
        out = Path(tmp) / "report.docx"
        try:
            proc = subprocess.run(
                [*command, "--output", str(out)],
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
        files["docx"] = render_docx(html_text, reference_doc=payload.get("docx_reference"))
    if "ipynb" in formats and nb is not None:
        import nbformat

        files["ipynb"] = nbformat.writes(nb).encode("utf-8") + b"\n"
    return files
