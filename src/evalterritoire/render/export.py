"""Self-contained, offline HTML from an executed report notebook.

:func:`export_html` writes the cell outputs only (rich HTML, images, stdout text; markdown
cells through nbconvert's markdown filter), drops code inputs, prompts and stderr streams,
refuses notebooks holding an error output (no traceback ever reaches a reader), numbers the
cells and wraps the result in a French HTML document with the package stylesheet embedded: no
script, no web font, nothing loaded from the network. The output is deterministic.

nbconvert's ``HTMLExporter`` was used before: its templates add nothing a report needs and its
post-processing parses and re-serialises the whole page (BeautifulSoup), about 0.2 s a report,
the largest cost of the rendering workers after the kernels themselves. The wave's index lives in
:mod:`evalterritoire.render.index`.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import TYPE_CHECKING

from evalterritoire.errors import RenderError

if TYPE_CHECKING:
    from nbformat import NotebookNode


__all__ = ["export_html", "load_report_css", "wrap_html"]


def load_report_css() -> str:
    """The report stylesheet shipped with the package (``data/report.css``)."""
    return (resources.files("evalterritoire") / "data" / "report.css").read_text(encoding="utf-8")


def wrap_html(body: str, *, title: str, css: str | None = None) -> str:
    """Wrap an HTML fragment into a complete French document with the stylesheet embedded.

    Parameters
    ----------
    body : str
        Safe HTML fragment.
    title : str
        Document title (escaped here).
    css : str, optional
        Stylesheet (default: :func:`load_report_css`).
    """
    css = load_report_css() if css is None else css
    return (
        "<!DOCTYPE html>\n"
        '<html lang="fr">\n<head>\n<meta charset="utf-8"/>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{css}</style>\n</head>\n"
        f'<body>\n<main class="et-report">\n{body}\n</main>\n</body>\n</html>\n'
    )


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _output_html(out) -> str | None:
    """One cell output as HTML (None for what a reader must not see)."""
    kind = out.get("output_type")
    if kind == "stream":
        if out.get("name") == "stderr":
            return None
        return f'<pre class="et-stream">{html.escape(_text(out.get("text", "")))}</pre>'
    if kind not in {"display_data", "execute_result"}:
        return None
    data = out.get("data", {})
    if "text/html" in data:
        return _text(data["text/html"])
    if "image/svg+xml" in data:
        return _text(data["image/svg+xml"])
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            alt = html.escape(_text(data.get("text/plain", "")).strip() or "Figure")
            payload = _text(data[mime]).replace("\n", "")
            return f'<img src="data:{mime};base64,{payload}" alt="{alt}"/>'
    if "text/markdown" in data:
        return _markdown(_text(data["text/markdown"]))
    if "text/plain" in data:
        return f"<pre>{html.escape(_text(data['text/plain']))}</pre>"
    return None


def _markdown(source: str) -> str:
    from nbconvert.filters.markdown import markdown2html

    return markdown2html(source)


def _body(nb: NotebookNode) -> str:
    parts: list[str] = []
    number = 0
    for index, cell in enumerate(nb.cells):
        kind = cell.get("cell_type")
        if kind == "markdown":
            number += 1
            parts.append(
                f'<div class="et-cell" id="cell-{number}">'
                f'<div class="et-output">{_markdown(_text(cell.get("source", "")))}</div></div>'
            )
            continue
        if kind != "code":
            continue
        shown = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise RenderError(
                    f"cell {index + 1} of the report raised {out.get('ename', 'an error')}: "
                    f"{out.get('evalue', '')}"
                )
            piece = _output_html(out)
            if piece is not None:
                shown.append(f'<div class="et-output">{piece}</div>')
        if shown:
            number += 1
            parts.append(f'<div class="et-cell" id="cell-{number}">' + "".join(shown) + "</div>")
    return "\n".join(parts)


def export_html(nb: NotebookNode, *, title: str) -> str:
    """Convert an executed report notebook into one self-contained HTML page.

    Parameters
    ----------
    nb : NotebookNode
        The executed notebook (papermill output).
    title : str
        Page title.

    Returns
    -------
    str
        The HTML document (figures embedded as data URIs, no code, no prompts, no network).

    Raises
    ------
    RenderError
        When a cell holds an error output.
    """
    return wrap_html(_body(nb), title=title)
