"""Self-contained, offline HTML from an executed report notebook, and the reports index.

:func:`export_html` writes the cell outputs only (rich HTML, images, stdout text; markdown
cells through nbconvert's markdown filter), drops code inputs, prompts and stderr streams,
refuses notebooks holding an error output (no traceback ever reaches a reader), numbers the
cells and wraps the result in a French HTML document with the package stylesheet embedded: no
script, no web font, nothing loaded from the network. The output is deterministic.

nbconvert's ``HTMLExporter`` was used before: its templates add nothing a report needs and its
post-processing parses and re-serialises the whole page (BeautifulSoup), about 0.2 s a report,
the largest cost of the rendering workers after the kernels themselves.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from evalterritoire.artefacts import write_text_atomic
from evalterritoire.errors import RenderError

if TYPE_CHECKING:
    from nbformat import NotebookNode

    from evalterritoire.report.context import ReportContext

__all__ = ["export_html", "load_report_css", "render_index", "wrap_html"]


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


def render_index(
    contexts: Sequence[ReportContext],
    out_path: str | Path,
    *,
    territory_dir: str = "territoires",
    study_page: str = "synthese.html",
) -> Path:
    """Write ``reports/<wave>/index.html``: territories grouped by stage, with links.

    Parameters
    ----------
    contexts : sequence of ReportContext
        The wave's contexts (the national one, if present, gives the title and the stages).
    out_path : str or Path
        The index file to write.
    territory_dir : str
        Folder of territory reports, relative to the index.
    study_page : str
        File name of the national synthesis, relative to the index.

    Returns
    -------
    Path
        The written file.
    """
    national = next((c for c in contexts if c.is_national), None)
    territories = [c for c in contexts if not c.is_national]
    if national is None and not territories:
        raise RenderError("no report context to index")
    ref = national or territories[0]
    parts = [*_index_heading(ref, len(territories), study_page), '<nav class="et-index">']
    groups: dict[int, list[ReportContext]] = {}
    for ctx in territories:
        groups.setdefault(ctx.stage if ctx.stage is not None else -1, []).append(ctx)
    names = list(ref.stage_names)
    for stage in sorted(groups):
        label = names[stage] if 0 <= stage < len(names) else "Stade non calculé"
        parts += _stage_list(label, groups[stage], territory_dir)
    parts.append("</nav>")
    out = Path(out_path)
    write_text_atomic(out, wrap_html("\n".join(parts), title=f"{ref.study_name} — {ref.wave}"))
    return out


def _index_heading(ref: ReportContext, n_territories: int, study_page: str) -> list[str]:
    """The index's title (study and wave) and its line of territory count and synthesis link."""
    from evalterritoire.report.french import fmt_count

    e = html.escape
    return [
        f"<h1>{e(ref.study_name)}"
        + ("" if str(ref.wave) in ref.study_name else f" — vague {ref.wave}")
        + "</h1>",
        f'<p class="subtitle">{fmt_count(n_territories)} territoires · '
        f'<a href="{e(study_page)}">synthèse nationale</a></p>',
    ]


def _stage_list(label: str, members: Sequence[ReportContext], territory_dir: str) -> list[str]:
    """One stage of the index: its heading and its territories by name, each with a link."""
    from evalterritoire.manifest import safe_filename
    from evalterritoire.report.display import n_text
    from evalterritoire.report.french import fmt_count

    e = html.escape
    members = sorted(members, key=lambda c: (c.territory_name, c.territory))
    parts = [f"<h2>{e(label)} <small>({fmt_count(len(members))})</small></h2><ul>"]
    for ctx in members:
        href = f"{territory_dir}/{safe_filename(ctx.territory)}.html"
        flag = ' <span class="flag">indicatif</span>' if ctx.is_indicative else ""
        parts.append(
            f'<li><a href="{e(href)}">{e(ctx.territory_name)}</a>'
            f'<span class="code">{e(ctx.territory)} · '
            f"{n_text(ctx.n_respondents, int((ctx.publication or {}).get('min_cell', 5)))}</span>"
            f"{flag}</li>"
        )
    parts.append("</ul>")
    return parts
