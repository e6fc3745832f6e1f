"""The wave's index page: a searchable, sortable, filterable table of territories and a map.

:func:`render_index` writes ``reports/<wave>/index.html``: the study's title and a link to the
national synthesis; the map of territories coloured by stage when the study declares their
outlines (``[report] geometry``, :mod:`evalterritoire.render.geomap`); and one row per territory
— name (a link to its report), code, region, level, stage, previous stage, change (progression,
stable, recul, nouveau) and whether its figures are indicative.

The table is an itables DataTable in its offline mode: the DataTables bundle shipped in the
itables wheel is embedded in the page (no CDN, nothing loaded from the network), with the global
search box, sorting on every column (the stage columns sort by maturity order through hidden
rank columns), one filter box per column and French labels. Without JavaScript the page shows
itables' static copy of the same table. The table id is fixed so the page is deterministic.
The file is written atomically with the umask's permissions
(:func:`evalterritoire.artefacts.write_text_atomic`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalterritoire.errors import RenderError

if TYPE_CHECKING:
    import pandas as pd

    from evalterritoire.report.context import ReportContext

__all__ = ["build_index_rows", "render_index", "render_index_table"]

#: French labels of the DataTables interface.
_LANGUAGE: Mapping[str, Any] = {
    "search": "Rechercher :",
    "lengthMenu": "Afficher _MENU_ territoires",
    "info": "Territoires _START_ à _END_ sur _TOTAL_",
    "infoEmpty": "Aucun territoire",
    "infoFiltered": "(filtré sur _MAX_)",
    "zeroRecords": "Aucun territoire ne correspond",
    "emptyTable": "Aucun territoire",
    "paginate": {"first": "Premier", "last": "Dernier", "next": "Suivant", "previous": "Précédent"},
    "aria": {"orderable": "trier", "orderableReverse": "trier en sens inverse"},
}
_COLUMNS = (
    "Territoire",
    "Code",
    "Région",
    "Niveau",
    "Stade",
    "Stade précédent",
    "Évolution",
    "Indicatif",
)


def _previous(ctx: ReportContext) -> Mapping[str, Any] | None:
    """The territory's stage in the latest earlier wave of its history, if any."""
    earlier = [h for h in ctx.history if int(h.get("wave", ctx.wave)) < int(ctx.wave)]
    return max(earlier, key=lambda h: int(h["wave"])) if earlier else None


def _change(stage: int | None, previous: int | None, has_previous: bool) -> str:
    if not has_previous:
        return "nouveau"
    if stage is None or previous is None:
        return "—"
    if stage > previous:
        return "progression"
    return "recul" if stage < previous else "stable"


def build_index_rows(
    contexts: Sequence[ReportContext], *, territory_dir: str = "territoires"
) -> list[dict[str, Any]]:
    """One row per territory: what the index table and the map show, sorted by name.

    Parameters
    ----------
    contexts : sequence of ReportContext
        The wave's contexts (the national one is ignored).
    territory_dir : str
        Folder of territory reports, relative to the index.

    Returns
    -------
    list of dict
        ``code``, ``name``, ``href``, ``region``, ``level``, ``stage`` (int or None),
        ``stage_label``, ``previous_stage`` (int or None), ``previous_label``, ``change``,
        ``indicative`` (bool). ``change`` is « nouveau » for a territory absent from the earlier
        waves, « — » for all in the study's first wave.
    """
    from evalterritoire.manifest import safe_filename

    rows = []
    for ctx in contexts:
        if ctx.is_national:
            continue
        prev = _previous(ctx)
        prev_stage = prev.get("stage") if prev else None
        prev_stage = int(prev_stage) if prev_stage is not None else None
        rows.append(
            {
                "code": ctx.territory,
                "name": ctx.territory_name,
                "href": f"{territory_dir}/{safe_filename(ctx.territory)}.html",
                "region": str(ctx.identity.get("region") or ""),
                "level": str(ctx.identity.get("level") or ""),
                "stage": ctx.stage,
                "stage_label": ctx.stage_label if ctx.stage is not None else "non calculé",
                "previous_stage": prev_stage,
                "previous_label": str(prev.get("stage_label") or "") if prev else "",
                "change": _change(ctx.stage, prev_stage, prev is not None),
                "indicative": bool(ctx.is_indicative),
            }
        )
    if not any(r["previous_label"] for r in rows):  # the study's first wave: nothing is new
        for row in rows:
            row["change"] = "—"
    return sorted(rows, key=lambda r: (r["name"], r["code"]))


def _table_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The index table (HTML links in the first column; two hidden rank columns at the end)."""
    import pandas as pd

    e = html.escape
    records = [
        [
            f'<a href="{e(r["href"])}">{e(r["name"])}</a>',
            r["code"],
            r["region"],
            r["level"],
            r["stage_label"],
            r["previous_label"] or "—",
            r["change"],
            "oui" if r["indicative"] else "non",
            -1 if r["stage"] is None else r["stage"],
            -1 if r["previous_stage"] is None else r["previous_stage"],
        ]
        for r in rows
    ]
    return pd.DataFrame(records, columns=[*_COLUMNS, "rang_stade", "rang_precedent"])


def render_index_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The itables DataTable of the index, offline (bundle embedded once, before the table)."""
    from itables import options as itables_options
    from itables.javascript import generate_init_offline_itables_html, to_html_datatable

    frame = _table_frame(rows)
    n = len(_COLUMNS)
    table = to_html_datatable(
        frame,
        connected=False,
        table_id="et-index-table",
        allow_html=True,
        showIndex=False,
        column_filters="footer",
        classes="display compact",
        lengthMenu=[25, 50, 100, -1],
        pageLength=100,
        order=[[0, "asc"]],
        language=dict(_LANGUAGE),
        columnDefs=[
            {"targets": [n, n + 1], "visible": False, "searchable": False},
            {"targets": 4, "orderData": [n, 0]},
            {"targets": 5, "orderData": [n + 1, 0]},
        ],
        display_logo_when_loading=False,
        warn_on_undocumented_option=False,
        warn_on_unexpected_option_type=False,
    )
    init = generate_init_offline_itables_html(itables_options.dt_bundle)
    return f'<section class="et-index-table" aria-label="Liste des territoires">{init}{table}</section>'


def render_index(
    contexts: Sequence[ReportContext],
    out_path: str | Path,
    *,
    territory_dir: str = "territoires",
    study_page: str = "synthese.html",
    geometry: str | Path | None = None,
) -> Path:
    """Write ``reports/<wave>/index.html``: title, map (with geometry) and territory table.

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
    geometry : str or Path, optional
        The study's GeoJSON of territory outlines (``[report] geometry``); no map without it.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    RenderError
        When there is no context, or the geometry file cannot be used.
    """
    from evalterritoire.artefacts import write_text_atomic
    from evalterritoire.render.export import wrap_html
    from evalterritoire.render.geomap import load_geometry, render_stage_map
    from evalterritoire.report.french import fmt_count

    national = next((c for c in contexts if c.is_national), None)
    rows = build_index_rows(contexts, territory_dir=territory_dir)
    if national is None and not rows:
        raise RenderError("no report context to index")
    ref = national or next(c for c in contexts if not c.is_national)
    e = html.escape
    title = ref.study_name + ("" if str(ref.wave) in ref.study_name else f" — vague {ref.wave}")
    parts = [
        f"<h1>{e(title)}</h1>",
        f'<p class="subtitle">{fmt_count(len(rows))} territoires · '
        f'<a href="{e(study_page)}">synthèse nationale</a></p>',
    ]
    if geometry is not None:
        parts += [
            '<h2 id="carte">Carte des stades</h2>',
            render_stage_map(load_geometry(geometry), rows, list(ref.stage_names)),
        ]
    parts += ['<h2 id="territoires">Territoires</h2>', render_index_table(rows)]
    out = Path(out_path)
    write_text_atomic(out, wrap_html("\n".join(parts), title=f"{ref.study_name} — index"))
    return out
