"""Navigation inside and between reports: table of contents, back link, other waves, data.

:func:`render_navigation` is the bar a territory report shows under its title: a link back to
the wave's index, links to the same territory's report in its other waves (the earlier ones
from the context's stage history, the later ones built in the same ``study --all-waves`` run
from its ``later_waves``; the study's report folders are siblings named by wave, ``reports/<wave>/``, as
``reports_dir = "../../reports/{wave}"`` lays them out) and a link to its downloadable data. It
holds a placeholder that :func:`add_table_of_contents` replaces, once the page is assembled, by a
« Sommaire » listing every ``<h2>`` of the page (each heading gets an ``id`` anchor when it has
none), so the contents follow whatever sections the template and the narrative produce.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evalterritoire.report.context import ReportContext

__all__ = ["TOC_PLACEHOLDER", "add_table_of_contents", "render_navigation"]

#: Where :func:`add_table_of_contents` puts the table of contents.
TOC_PLACEHOLDER = "<!--et-toc-->"
_H2 = re.compile(r"<h2(?P<attrs>[^>]*)>(?P<inner>.*?)</h2>", re.S)
_ID = re.compile(r'\sid="([^"]+)"')
_TAG = re.compile(r"<[^>]+>")


def render_navigation(
    ctx: ReportContext,
    *,
    index_href: str = "../index.html",
    data_href: str | None = None,
) -> str:
    """The navigation bar of a territory report (safe HTML).

    Parameters
    ----------
    ctx : ReportContext
        The territory's context.
    index_href : str
        The wave's index, relative to the report.
    data_href : str, optional
        Where the report's downloads are (the anchor of its « Données » section, by default).

    Returns
    -------
    str
        A ``<nav>`` with the back link, the other waves and the data link, then the table of
        contents placeholder.
    """
    from evalterritoire.manifest import safe_filename

    e = html.escape
    stem = safe_filename(ctx.territory)
    waves = sorted(
        {int(h["wave"]) for h in ctx.history if h.get("wave") is not None}
        | {int(ctx.wave), *(int(w) for w in ctx.later_waves)}
    )
    links = []
    for wave in waves:
        if wave == int(ctx.wave):
            links.append(f'<span aria-current="page">{wave}</span>')
        else:
            links.append(f'<a href="../../{wave}/territoires/{e(stem)}.html">{wave}</a>')
    parts = [f'<a href="{e(index_href)}">← Index des territoires</a>']
    if len(waves) > 1:
        parts.append("Vagues : " + " · ".join(links))
    parts.append(f'<a href="{e(data_href or "#donnees")}">Données à télécharger</a>')
    items = "".join(f"<li>{p}</li>" for p in parts)
    return f'<nav class="et-nav" aria-label="Navigation"><ul>{items}</ul></nav>{TOC_PLACEHOLDER}'


def _slug(text: str, used: set[str]) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-") or "section"
    base = base[:48].rstrip("-")
    slug, k = base, 2
    while slug in used:
        slug, k = f"{base}-{k}", k + 1
    used.add(slug)
    return slug


def add_table_of_contents(document: str) -> str:
    """Replace the placeholder by a « Sommaire » of the page's ``<h2>`` headings.

    Parameters
    ----------
    document : str
        The assembled HTML page.

    Returns
    -------
    str
        The page with an ``id`` on every ``<h2>`` and the table of contents in place of
        :data:`TOC_PLACEHOLDER` (unchanged when the page has no placeholder).
    """
    if TOC_PLACEHOLDER not in document:
        return document
    used = set(_ID.findall(document))
    entries: list[tuple[str, str]] = []

    def anchor(match: re.Match[str]) -> str:
        attrs, inner = match.group("attrs"), match.group("inner")
        found = _ID.search(attrs)
        ident = found.group(1) if found else _slug(html.unescape(_TAG.sub("", inner)), used)
        entries.append((ident, _TAG.sub("", inner).strip()))
        if found:
            return match.group(0)
        return f'<h2 id="{ident}"{attrs}>{inner}</h2>'

    document = _H2.sub(anchor, document)
    if not entries:
        return document.replace(TOC_PLACEHOLDER, "")
    items = "".join(f'<li><a href="#{html.escape(i)}">{t}</a></li>' for i, t in entries)
    toc = (
        '<nav class="et-toc" aria-labelledby="et-toc-title">'
        f'<p id="et-toc-title" class="et-toc-title">Sommaire</p><ul>{items}</ul></nav>'
    )
    return document.replace(TOC_PLACEHOLDER, toc, 1)
