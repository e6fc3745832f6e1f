"""Presentation tables and text blocks from a :class:`~evalterritoire.report.context.ReportContext`.

Every function returns an HTML fragment (a ``str``) in which every string coming from data —
territory names, labels, free text — is escaped, and every number is formatted the French way
(:mod:`evalterritoire.report.french`). Every estimate is shown with its n and obeys its status
(:mod:`evalterritoire.report.display`: « s » when suppressed, « * » when fragile, « estimation
modélisée » when model-based, an interval in words when it cannot be estimated); a number of
respondents below ``min_cell`` is written « n < 5 ». Threshold verdicts (force / à discuter /
préoccupation) are only produced when the territory's stage allows them, for publishable
scores, on the score as displayed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from evalterritoire.report.display import display_decimals, n_text, render_estimate
from evalterritoire.report.french import (
    MISSING,
    NBSP,
    fmt_count,
    fmt_interval,
    fmt_number,
    fmt_percent,
    fmt_words,
    guillemets,
    is_missing,
)
from evalterritoire.report.grid import Band, band_for
from evalterritoire.report.neighbours import is_chosen_group

if TYPE_CHECKING:
    from evalterritoire.report.context import ReportContext

__all__ = [
    "STAGE_TABLES",
    "escape",
    "render_by_type_table",
    "render_declared_table",
    "render_do_not",
    "render_fragilities_table",
    "render_free_text",
    "render_history_table",
    "render_identity_table",
    "render_ingestion",
    "render_items_table",
    "render_methodology",
    "render_milestones_table",
    "render_models_table",
    "render_next_stage",
    "render_nsp_table",
    "render_posture",
    "render_profile_table",
    "render_questions",
    "render_recommendations",
    "render_reliability_table",
    "render_respondents_table",
    "render_section_list",
    "render_stage_distribution_table",
    "render_stage_heading",
    "render_stage_summary",
    "render_stage_table",
    "render_territories_table",
    "render_title",
    "render_transitions_table",
]


_CALIBRATION = {
    "none": "aucun",
    "poststratify": "post-stratification",
    "rake": "calage sur marges (raking)",
    "linear": "calage linéaire",
}
_LONELY = {
    "fail": "refusée (arrêt)",
    "remove": "retirée du calcul de variance",
    "adjust": "centrée sur la moyenne générale",
    "certainty": "traitée comme certaine",
}
_CLUSTER = {"kmeans": "k-moyennes", "gmm": "mélange gaussien", "ward": "hiérarchique (Ward)"}
#: Grid §6: a report on fewer respondents is indicative (the evaluation grid's threshold).
SMALL = 5


def _p_value(p: Any) -> str:
    if p is None:
        return MISSING
    return f"<{NBSP}0,001" if float(p) < 0.001 else fmt_number(p, 3)


def escape(value: Any) -> str:
    """HTML-escape any value (quotes included); None prints as an em dash."""
    if value is None:
        return MISSING
    return html.escape(str(value), quote=True)


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    caption: str = "",
    css: str = "",
    numeric: Sequence[int] = (),
) -> str:
    """Build a table; header and caption are escaped here, cells must already be safe HTML."""
    head = "".join(
        f'<th scope="col"{" class=num" if i in numeric else ""}>{escape(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = "".join(
            f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        span = len(headers)
        body.append(f'<tr><td colspan="{span}" class="empty">Non disponible</td></tr>')
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    cls = f' class="et-table {css}"' if css else ' class="et-table"'
    return f"<table{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _flag(small: bool) -> str:
    return ' <span class="flag">indicatif</span>' if small else ""


def _min_cell(ctx: ReportContext | None) -> int:
    return int((ctx.publication if ctx is not None else {}).get("min_cell", 5))


def _value(rec: Mapping[str, Any] | None) -> str:
    """A judged estimate with its interval (share or mean), see :mod:`.display`."""
    if not rec:
        return MISSING
    share = rec.get("kind") == "share"
    return render_estimate(
        rec, percent=share, base=0 if share else 1, scale_max=rec.get("scale_max")
    )


def _n(rec: Mapping[str, Any] | None, min_cell: int) -> str:
    """The respondents behind a figure (« < 5 » below the confidentiality threshold)."""
    if not rec or is_missing(rec.get("n")):
        return MISSING
    n = int(rec["n"])
    return escape(f"<{NBSP}{fmt_count(min_cell)}" if n < min_cell else fmt_count(n))


# --------------------------------------------------------------------------- text blocks
def render_title(ctx: ReportContext) -> str:
    """Report title and subtitle."""
    if ctx.is_national:
        sub = (
            f"Synthèse nationale · vague {ctx.wave} · "
            f"{fmt_count(ctx.identity.get('n_territories', 0))} territoires · "
            f"{n_text(ctx.n_respondents, _min_cell(ctx))} répondants"
        )
        return f'<h1>{escape(ctx.study_name)}</h1><p class="subtitle">{escape(sub)}</p>'
    wave = "" if str(ctx.wave) in ctx.study_name else f" · vague {ctx.wave}"
    sub = f"Rapport d'évaluation · {ctx.study_name}{wave} · code {ctx.territory}"
    return f'<h1>{escape(ctx.territory_name)}</h1><p class="subtitle">{escape(sub)}</p>'


def render_ingestion(ctx: ReportContext) -> str:
    """Rows read, kept and quarantined at ingestion (national annex)."""
    ing = ctx.ingestion
    if not ing:
        return ""
    parts = []
    for key, label in (
        ("n_rows", "lignes lues"),
        ("n_valid", "lignes valides"),
        ("n_quarantined", "lignes mises en quarantaine (avec leur motif)"),
    ):
        if key in ing:
            parts.append(f"{escape(fmt_count(ing[key]))} {label}")
    return f"<p>Ingestion : {' ; '.join(parts)}.</p>" if parts else ""


def render_stage_table(ctx: ReportContext, chart: str) -> str:
    """The table-shaped charts of the grid (:data:`STAGE_TABLES`), else ''."""
    render = STAGE_TABLES.get(chart)
    return render(ctx) if render is not None else ""


def render_stage_summary(ctx: ReportContext) -> str:
    """The assigned stage, its membership probability in words, the declared stage and the gap."""
    from evalterritoire.report.annex import render_stage_probability

    if ctx.stage is None:
        return '<p class="notice">Le stade n\'a pas encore été calculé pour ce territoire.</p>'
    parts = [
        f'<p class="stage-badge stage-{escape(ctx.assigned_grid_key)}">Stade attribué : '
        f"<strong>{escape(ctx.stage_label)}</strong> "
        f"({ctx.stage + 1}{NBSP}sur{NBSP}{ctx.n_stages or '?'})</p>"
    ]
    parts.append(render_stage_probability(ctx))
    if ctx.between_stages and ctx.other_stage is not None:
        earlier, later = sorted((ctx.stage, ctx.other_stage))
        labels = {ctx.stage: ctx.stage_label, ctx.other_stage: ctx.other_stage_label}
        parts.append(
            '<p class="notice between-stages">Entre deux stades : le classement hésite entre '
            f"{guillemets(escape(labels[earlier]))} et {guillemets(escape(labels[later]))}. "
            "Conformément à la grille d'évaluation, ce rapport suit la grille du stade le plus "
            f"précoce, {guillemets(escape(labels[earlier]))} (questions, lectures et "
            f"recommandations) ; la section « Vers le stade suivant » présente "
            f"{guillemets(escape(labels[later]))} et les jalons encore à franchir.</p>"
        )
    if ctx.stage_declared is not None:
        text = (
            f"<p>Regards croisés : les répondants situent le plus souvent la démarche au stade "
            f"{guillemets(escape(ctx.stage_declared_label))}"
        )
        gap = ctx.stage_gap or 0
        if gap > 0:
            text += (
                f", soit {gap} stade{'s' if gap > 1 else ''} de plus que le profil mesuré. Il est "
                "utile d'interroger les « ne sait pas » et la composition des répondants.</p>"
            )
        elif gap < 0:
            text += (
                f", soit {-gap} stade{'s' if gap < -1 else ''} de moins que le profil mesuré : "
                "les acquis objectifs méritent d'être valorisés.</p>"
            )
        else:
            text += " : perception et profil mesuré concordent.</p>"
        parts.append(text)
    if ctx.is_indicative:
        parts.append(
            f'<p class="notice">Lecture indicative : {escape(n_text(ctx.n_respondents, _min_cell(ctx)))} '
            f"répondants, {ctx.n_types} type{'s' if ctx.n_types > 1 else ''} d'acteurs. Les "
            "scores ne sont pas classés.</p>"
        )
    return "".join(parts)


def render_stage_heading(ctx: ReportContext, number: int = 4) -> str:
    """Heading of the stage-specific block, e.g. « 4. Émergence : ce que la démarche… »."""
    grid = ctx.stage_grid
    if not grid:
        return ""
    title = grid["section_title"][:1].lower() + grid["section_title"][1:]
    return f"<h2>{number}. {escape(grid['name'])} : {escape(title)}</h2>"


def render_posture(ctx: ReportContext) -> str:
    """Posture, signals, tone and reading rule of the stage the report follows."""
    grid = ctx.stage_grid
    if not grid:
        return ""
    return (
        f'<div class="posture"><p><strong>Posture d\'évaluation.</strong> {escape(grid["posture"])}</p>'
        f"<p><strong>Signaux du stade.</strong> {escape(grid['signals'])}</p>"
        f"<p><strong>Lecture des scores.</strong> {escape(grid['reading_intro'])}</p></div>"
    )


def render_questions(ctx: ReportContext) -> str:
    """The evaluation questions of the stage the report follows."""
    items = "".join(f"<li>{escape(q)}</li>" for q in ctx.stage_grid.get("questions", ()))
    return f'<ol class="questions">{items}</ol>'


def render_do_not(ctx: ReportContext) -> str:
    """What the report deliberately does not do at this stage."""
    items = "".join(f"<li>{escape(q)}</li>" for q in ctx.stage_grid.get("do_not", ()))
    return (
        "<div class=\"do-not\"><p>Ce que ce rapport s'interdit à ce stade (grille d'évaluation) :"
        f"</p><ul>{items}</ul></div>"
    )


def render_recommendations(ctx: ReportContext) -> str:
    """Stage recommendations, phrased as next steps."""
    items = "".join(f"<li>{escape(r)}</li>" for r in ctx.recommendations)
    return f'<ul class="recommendations">{items}</ul>'


def render_next_stage(ctx: ReportContext) -> str:
    """« Vers le stade suivant » block for territories between two stages (empty otherwise).

    The report of a territory between two stages follows the earlier stage's grid; this block
    names the later one (which may be the stage the clustering assigned), its signals and the
    milestones still to reach (grid §6).
    """
    nxt = ctx.next_stage
    if not nxt:
        return ""
    missing = "".join(f"<li>{escape(m)}</li>" for m in nxt.get("missing_milestones", []))
    assigned = (
        "<p>C'est le stade que le classement statistique attribue au territoire ; ce rapport "
        "s'en tient néanmoins à la grille du stade précédent, pour ne pas juger la démarche "
        "trop tôt.</p>"
        if nxt.get("is_assigned")
        else ""
    )
    return (
        f'<div class="next-stage"><h3>Vers le stade suivant : {escape(nxt.get("name"))}</h3>'
        + assigned
        + f"<p>Signaux de ce stade : {escape(nxt.get('signals'))}</p>"
        + (f"<p>Jalons encore à franchir :</p><ul>{missing}</ul>" if missing else "")
        + "</div>"
    )


def render_free_text(ctx: ReportContext) -> str:
    """« Paroles d'acteurs » : a few anonymous free-text excerpts, escaped.

    The confidentiality rule of the figures applies to quotes: an excerpt is drawn only from
    at least ``min_cell`` respondents of the territory who answered the question (the context
    holds none otherwise, and a note says why); no respondent id or type is printed next to a
    quote.
    """
    if ctx.is_national:
        return ""
    if not ctx.free_text:
        return (
            "<h3>Paroles d'acteurs</h3><p class=\"notice\">Aucune réponse libre n'est citée : "
            f"moins de {escape(fmt_count(_min_cell(ctx)))} répondants du territoire ont répondu "
            "aux questions ouvertes, et un extrait pourrait alors permettre de reconnaître son "
            "auteur (même règle de confidentialité que pour les chiffres).</p>"
        )
    questions = sorted({q["question"] for q in ctx.free_text})
    quotes = "".join(
        f'<blockquote class="verbatim"><p>{guillemets(escape(q["text"]))}</p></blockquote>'
        for q in ctx.free_text
    )
    return (
        "<h3>Paroles d'acteurs</h3>"
        f"<p>Extraits anonymes de réponses libres ({escape(' ; '.join(questions))}), "
        "retenus dans l'ordre des questionnaires et abrégés : des illustrations, pas une "
        "mesure.</p>" + quotes
    )


def _dimensions(ctx: ReportContext) -> str:
    """« neuf dimensions », « trois dimensions »: the study's number of maturity dimensions."""
    n = ctx.n_dimensions or len(ctx.profile)
    return f"{fmt_words(n, feminine=True)} dimension{'s' if n > 1 else ''}"


def render_methodology(ctx: ReportContext) -> str:
    """Methodological annex: design, intervals, indicative reports, « ne sait pas », stages."""
    m = ctx.methodology
    design = ", ".join(
        label
        for key, label in (
            ("weight", "pondération"),
            ("strata", "stratification"),
            ("psu", "tirage par unités primaires"),
        )
        if m.get(key)
    )
    intervals = (
        "Les intervalles de confiance à 95 % tiennent compte du plan de sondage (linéarisation "
        "de Taylor, loi de Student au nombre de degrés de liberté du plan) et restent dans "
        "les bornes de chaque grandeur : méthode de Korn et Graubard pour une part, échelle "
        "logit pour une moyenne bornée (score de 1 à 5, note de 0 à 10), échelle logarithmique "
        "pour un nombre ; la même méthode vaut pour les items et les scores de dimension."
        if m.get("has_intervals")
        else "Les estimations publiées ici sont des moyennes pondérées sans intervalle "
        "(tableau d'estimations non disponible) : aucune n'est mieux que fragile."
    )
    return (
        '<div class="methodology">'
        f"<p>Plan de sondage : {design or 'non déclaré'} ; calage : "
        f"{escape(_CALIBRATION.get(m.get('calibration', 'none'), m.get('calibration')))} ; "
        "unité primaire seule dans sa strate : "
        f"{escape(_LONELY.get(m.get('lonely_psu', ''), m.get('lonely_psu')))}.</p><p>{intervals}</p>"
        f"<p>Un territoire de moins de {escape(m.get('small_cell', 5))} répondants ou de moins "
        "de 2 types d'acteurs reçoit un rapport indicatif. Les « ne sait pas » sont comptés et "
        "publiés, jamais intégrés aux moyennes.</p>"
        "<p>Stades : classification "
        f"{escape(_CLUSTER.get(m.get('cluster_method', ''), m.get('cluster_method')))} des profils de "
        f"territoires sur {_dimensions(ctx)} ; la probabilité d'appartenance à chaque stade "
        "tient compte de la précision du profil de chaque territoire.</p>"
        f"{_trend_breaks(m)}"
        "</div>"
    )


def _trend_breaks(m: Mapping[str, Any]) -> str:
    """Questionnaire changes across which no trend is drawn (empty when there are none)."""
    breaks = m.get("trend_breaks") or ()
    if not breaks:
        return ""
    items = "".join(f"<li>{escape(text)}</li>" for text in breaks)
    return f"<p>Changements du questionnaire entre les vagues :</p><ul>{items}</ul>"


# --------------------------------------------------------------------------- tables
def render_identity_table(ctx: ReportContext) -> str:
    """Identity card: level, region, population, start year, organisations, context data."""
    ident = ctx.identity
    declared = [
        ("level", "Niveau", lambda v: escape(v or MISSING)),
        ("region", "Région", lambda v: escape(v or MISSING)),
        ("population", "Population", lambda v: escape(fmt_count(v))),
        (
            "start_year",
            "Année de démarrage (médiane des réponses)",
            lambda v: escape(fmt_number(v, 0).replace("\u202f", "")),
        ),
        (
            "n_organisations",
            "Organisations impliquées (médiane)",
            lambda v: escape(fmt_number(v, 0)),
        ),
    ]
    sources = {i["variable"]: i.get("source") or "" for i in ctx.context_indicators}

    def sourced(label: str, variable: str) -> str:
        source = sources.get(variable, "")
        return escape(label) + (
            f'<br><span class="ci">Source : {escape(source)}</span>' if source else ""
        )

    rows = [("Code du territoire", escape(ctx.territory))]
    rows += [
        (
            sourced(label, ctx.population_variable) if key == "population" else escape(label),
            show(ident.get(key)),
        )
        for key, label, show in declared
        if key in ident
    ]
    rows.append(
        ("Répondants", escape(n_text(ctx.n_respondents, _min_cell(ctx))) + _flag(ctx.is_indicative))
    )
    for ind in ctx.context_indicators:
        if ind["variable"] == ctx.population_variable:  # the « Population » row above
            continue
        kind = ind.get("type", "decimal")
        if kind == "binary":
            value, median = ("oui" if ind["value"] else "non"), ""
        else:
            decimals = 0 if kind == "count" else 1
            value = fmt_number(ind["value"], decimals)
            median = f"(médiane des territoires : {fmt_number(ind.get('median'), decimals)})"
        rows.append(
            (
                sourced(ind["label"], ind["variable"]),
                f'{escape(value)} <span class="ci">{escape(median)}</span>',
            )
        )
    return _table(("Carte d'identité", ""), rows, css="identity")


def band_reading(ctx: ReportContext, rec: Mapping[str, Any]) -> Band | None:
    """The reading band of a dimension score, on the score as displayed, when publishable.

    None when the stage allows no verdict, the report is indicative, or the score is not
    publishable (fragile, suppressed or without estimate): a verdict is never read off a
    figure the report itself qualifies.
    """
    if not ctx.allows_verdicts or ctx.is_indicative or rec.get("status") != "publishable":
        return None
    if is_missing(rec.get("estimate")):
        return None
    decimals = display_decimals(rec, 1)
    shown_value = round(float(rec["estimate"]), decimals)
    lo, hi = ctx.score_range
    bands = tuple(Band(**b) for b in ctx.stage_grid.get("bands", ()))
    return band_for(1 + 4 * (shown_value - lo) / (hi - lo), bands)


def render_profile_table(ctx: ReportContext) -> str:
    """Dimension scores with intervals vs the stage centroid (and, when allowed, reading bands).

    A reading band is given only for a publishable score, read on the score as displayed
    (:func:`band_reading`); the others say why in the cell.
    """
    verdicts = ctx.allows_verdicts and not ctx.is_indicative
    headers = ["Dimension", "Score [IC\u00a095\u00a0%]", f"Profil moyen du stade {ctx.stage_label}"]
    similar = any(p.get("neighbours") is not None for p in ctx.profile)
    if similar:
        headers.append(
            "Groupe de comparaison" if is_chosen_group(ctx) else "Territoires similaires"
        )
    if verdicts:
        headers += ["Moyenne des territoires", "Lecture"]
    nsp = {r["dimension"]: r for r in ctx.nsp}
    headers.append("Ne sait pas")
    rows = []
    for p in ctx.profile:
        cells = [escape(p["label"]), _value(p), escape(fmt_number(p.get("centroid"), 1))]
        if similar:
            cells.append(escape(fmt_number(p.get("neighbours"), 1)))
        if verdicts:
            band = band_reading(ctx, p)
            cells += [
                escape(fmt_number(p.get("national"), 1)),
                f'<span class="band band-{band.key}">{escape(band.label)}</span>'
                if band
                else '<span class="no-band">pas de lecture (estimation non publiable telle '
                "quelle)</span>"
                if p.get("status") in ("fragile", "suppressed")
                else MISSING,
            ]
        cells.append(_value(nsp.get(p["dimension"])))
        rows.append(cells)
    return _table(
        headers,
        rows,
        caption=f"Profil du territoire sur les {_dimensions(ctx)} ({n_text(ctx.n_respondents, _min_cell(ctx))})",
        numeric=tuple(range(1, len(headers))),
    )


def render_fragilities_table(ctx: ReportContext, *, top: int | None = None) -> str:
    """Perceived priorities (/10) vs objective indicators, and where alliances can act."""
    rows = []
    records = list(ctx.fragilities)[: top or None]
    alliances = any(r.get("alliance_n") for r in records)
    min_cell = _min_cell(ctx)
    for r in records:
        objective = "; ".join(
            f"{escape(o['label'])} : {escape(fmt_number(o['value'], 1))}"
            + (
                f" (médiane {escape(fmt_number(o['median'], 1))})"
                if o.get("median") is not None
                else ""
            )
            for o in r.get("objective", [])
        )
        rows.append(
            [
                escape(r.get("full_label") or r["label"]),
                render_estimate(r, base=1, scale_max=10) if r.get("status") else MISSING,
                _n(r, min_cell),
                *([_value(r.get("alliance"))] if alliances else []),
                objective or MISSING,
            ]
        )
    headers = ("Fragilité", "Priorité perçue", "n")
    headers += ("Alliances : impact fort",) if alliances else ()
    return _table(
        (*headers, "Indicateur objectif"),
        rows,
        caption="Fragilités perçues (moyenne sur 10) confrontées aux indicateurs publics",
        numeric=(1, 2, 3) if alliances else (1, 2),
    )


def render_items_table(
    records: Sequence[Mapping[str, Any]], *, caption: str = "", min_cell: int = 5
) -> str:
    """Generic indicator table: value [interval], n, « ne sait pas » share, national benchmark.

    Returns an empty string when there is no record (no empty table with a caption).
    """
    if not records:
        return ""
    rows = []
    for r in records:
        bench = ""
        if r.get("benchmark") is not None:
            bench = escape(fmt_percent(r["benchmark"])) + (
                f' <span class="ci">{escape(r.get("benchmark_label", ""))}</span>'
            )
        rows.append(
            [
                escape(r["label"]),
                _value(r),
                _n(r, min_cell),
                _value(r.get("nsp")),
                bench or MISSING,
            ]
        )
    return _table(
        ("Indicateur", "Valeur [IC\u00a095\u00a0%]", "n", "Ne sait pas", "Repère"),
        rows,
        caption=caption,
        numeric=(1, 2, 3),
    )


def render_milestones_table(ctx: ReportContext) -> str:
    """Milestone checklist « fait / à faire » (majority of respondents answering yes)."""
    rows = []
    min_cell = _min_cell(ctx)
    for m in ctx.milestones:
        done = m.get("done")
        status = (
            f'<span class="done">✓{NBSP}fait</span>'
            if done
            else f'<span class="todo">○{NBSP}à{NBSP}faire</span>'
        )
        if done is None:
            status = MISSING
        rows.append(
            [
                escape(m["label"]),
                status,
                _value({**m, "kind": "share"}),
                _n(m, min_cell),
                _value(m.get("nsp")),
            ]
        )
    return _table(
        ("Jalon", "Statut", "Réponses « oui »", "n", "Ne sait pas"),
        rows,
        caption="Jalons de la démarche (« fait » : la majorité des répondants répond oui)",
        css="milestones",
        numeric=(2, 3, 4),
    )


def render_respondents_table(ctx: ReportContext) -> str:
    """Respondents by type (n and share), the smaller types merged (« autres acteurs »)."""
    rows = [
        [escape(r["label"]), escape(fmt_count(r["n"])), escape(fmt_percent(r.get("share")))]
        for r in ctx.respondents
        if r.get("status", "publishable") != "suppressed"
    ]
    hidden = [r for r in ctx.respondents if r.get("status") == "suppressed"]
    if hidden:  # every type together below min_cell: one line, no count
        rows.append(["Ensemble des répondants", escape(f"<{NBSP}{_min_cell(ctx)}"), MISSING])
    return _table(
        ("Type de répondant", "n", "Part"),
        rows,
        caption=f"Répondants par type ({n_text(ctx.n_respondents, _min_cell(ctx))})",
        numeric=(1, 2),
    )


def render_nsp_table(ctx: ReportContext) -> str:
    """Share of « ne sait pas » per dimension (each a judged figure)."""
    min_cell = _min_cell(ctx)
    rows = [[escape(r["label"]), _value(r), _n(r, min_cell)] for r in ctx.nsp]
    return _table(
        ("Dimension", "Ne sait pas [IC\u00a095\u00a0%]", "n"),
        rows,
        caption="Taux de « ne sait pas » par dimension",
        numeric=(1, 2),
    )


def _scale_span(ctx: ReportContext) -> str:
    """« 1 à 5 »: the by-type items' scale (the score scale when unknown)."""
    scale = ctx.by_type_scale
    lo, hi = (scale["low"], scale["high"]) if scale else ctx.score_range
    return f"{fmt_number(lo, 0)} à {fmt_number(hi, 0)}"


def render_by_type_table(ctx: ReportContext) -> str:
    """Benefits, burden and trust by actor group, side by side (the spec's ``by_type`` items).

    The types with fewer than ``min_cell`` respondents are merged into « autres acteurs »;
    each mean is a judged figure.
    """
    items = ctx.by_type_items
    min_cell = _min_cell(ctx)
    rows = [
        [
            escape(r["label"]),
            *(
                render_estimate(r.get(f"{items.get(k)}__record"), base=1)
                if r.get(f"{items.get(k)}__record")
                else MISSING
                for k in ("benefit", "burden", "trust")
            ),
            _n(r, min_cell),
        ]
        for r in ctx.by_type
    ]
    return _table(
        ("Type d'acteur", "Bénéfices", "Charge excessive", "Confiance", "n"),
        rows,
        caption=f"Accord moyen ({_scale_span(ctx)}) par type d'acteur",
        numeric=(1, 2, 3, 4),
    )


def render_declared_table(ctx: ReportContext) -> str:
    """How respondents themselves place the initiative (stade perçu)."""
    min_cell = _min_cell(ctx)
    rows = [
        [escape(r["label"]), _value({**r, "kind": "share"}), _n(r, min_cell)]
        for r in ctx.declared_distribution
    ]
    return _table(
        ("Stade perçu par les répondants", "Part [IC\u00a095\u00a0%]", "n"),
        rows,
        caption="Stade perçu (« regards croisés »)",
        numeric=(1, 2),
    )


#: Caption text of the models' ``variance`` column (how the SEs were computed).
_VARIANCE_TEXT = {
    "taylor": "intervalles tenant compte du plan de sondage",
    "taylor_small_sample": (
        "intervalles tenant compte du plan de sondage, corrigés pour le petit nombre d'UPE "
        "(degrés de liberté de Satterthwaite)"
    ),
    "replicate": "intervalles par poids répliqués",
    "gls_taylor": "erreurs-types selon le plan de sondage, grappes regroupant les territoires",
    "gls_taylor_small_sample": (
        "erreurs-types selon le plan de sondage, grappes regroupant les territoires, corrigées "
        "pour leur petit nombre (degrés de liberté de Satterthwaite)"
    ),
}
_MODEL_KINDS = {
    "linear": ("régression linéaire pondérée", "Coefficient"),
    "logistic": ("régression logistique pondérée", "Rapport de cotes"),
    "ordinal": ("logit cumulatif pondéré", "Rapport de cotes"),
    "mixed": (
        "modèle mixte (effet aléatoire par territoire, estimation non pondérée)",
        "Coefficient",
    ),
}


def _split_flags(terms: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Alerts shared by every term of a model (said once) and the rest (per term)."""
    per = [[f for f in str(m.get("flags") or "").split("; ") if f] for m in terms]
    common = [f for f in per[0] if all(f in p for p in per)] if per else []
    return common, [[f for f in p if f not in common] for p in per]


def render_models_table(ctx: ReportContext, *, max_rows: int = 40) -> str:
    """One table per model: effect (coefficient or odds ratio) with its interval, p and alerts.

    Odds ratios (logistic and ordinal slopes) are shown with the exponentiated interval. The
    ordinal cut-points (nuisance parameters) are left to ``models.parquet``; a mixed model's
    variance components go to the caption. Alerts shared by every term are said once, under
    the caption.
    """
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for m in list(ctx.models):
        by_model.setdefault(str(m.get("model")), []).append(m)
    parts = []
    for name, all_terms in by_model.items():
        kind = str(all_terms[0].get("kind") or "")
        kind_label, effect = _MODEL_KINDS.get(kind, (kind, "Coefficient"))
        terms = [
            m
            for m in all_terms
            if not str(m.get("term", "")).startswith("cut_")
            and m.get("term") not in ("var_groupe", "var_residuelle")
        ]
        common, _ = _split_flags(all_terms)
        rows = [_model_row(m, common) for m in terms[:max_rows]]
        note = ""
        if common:
            note = (
                '<p class="model-alert">Alertes du modèle : ' + escape("; ".join(common)) + "</p>"
            )
        parts.append(
            _table(
                ("Terme", effect, "IC\u00a095\u00a0%", "p", "Alertes"),
                rows,
                caption=_model_caption(name, kind, kind_label, all_terms),
                numeric=(1, 2, 3),
            )
            + note
        )
    return "\n".join(parts)


def _model_row(m: Mapping[str, Any], common: Sequence[str]) -> list[str]:
    """One term: its effect (odds ratio with exponentiated interval when given), p, alerts."""
    flags = [f for f in str(m.get("flags") or "").split("; ") if f and f not in common]
    odds = m.get("odds_ratio")
    if odds is not None and not is_missing(odds):
        est = odds
        low, high = (
            None if is_missing(m.get(k)) else math.exp(float(m[k])) for k in ("ci_low", "ci_high")
        )
    else:
        est, low, high = m.get("estimate"), m.get("ci_low"), m.get("ci_high")
    return [
        escape(m.get("label") or m.get("term")),
        escape(fmt_number(est, 2)),
        escape(fmt_interval(low, high, 2)),
        escape(_p_value(m.get("p_value"))),
        escape("; ".join(flags)),
    ]


def _model_caption(
    name: str, kind: str, kind_label: str, all_terms: Sequence[Mapping[str, Any]]
) -> str:
    """Model name and kind, n and PSUs, how the intervals were computed, variance components."""
    n, n_psu = all_terms[0].get("n"), all_terms[0].get("n_psu")
    method = str(all_terms[0].get("variance") or "")
    caption = (
        f"{all_terms[0].get('title') or name} — {kind_label} ; n{NBSP}={NBSP}{fmt_count(n)}, "
        f"{fmt_count(n_psu)}{NBSP}UPE ; "
        + _VARIANCE_TEXT.get(method, "intervalles tenant compte du plan de sondage")
    )
    variance = {m.get("term"): m.get("estimate") for m in all_terms}
    if kind == "mixed" and not is_missing(variance.get("var_groupe")):
        between, within = float(variance["var_groupe"]), float(variance["var_residuelle"])
        caption += (
            f" ; variance entre territoires {fmt_number(between, 2)}, résiduelle "
            f"{fmt_number(within, 2)} (part entre territoires "
            f"{fmt_percent(between / (between + within), 0)})"
        )
    if kind == "ordinal":
        caption += " ; seuils du logit cumulatif dans les fichiers de données de l'étude"
    return caption


def render_history_table(ctx: ReportContext) -> str:
    """Stages of the territory at previous waves."""
    rows = [[escape(h["wave"]), escape(h["stage_label"])] for h in ctx.history]
    return _table(("Vague", "Stade"), rows, caption="Stades aux vagues successives", numeric=(0,))


def render_reliability_table(ctx: ReportContext) -> str:
    """Reliability (Cronbach's alpha) of each dimension: respondents' and design-based.

    The design-based alpha (survey weights, with its 95 % interval from the design) is shown
    beside the plain one when the estimate step computed it.
    """
    weighted = any(r.get("design_alpha") is not None for r in ctx.reliability)
    rows = []
    for r in ctx.reliability:
        alpha = r.get("alpha", r.get("cronbach_alpha"))
        row = [escape(r.get("label") or r.get("dimension")), escape(fmt_number(alpha, 2))]
        if weighted:
            row.append(
                f'{escape(fmt_number(r.get("design_alpha"), 2))} <span class="ci">'
                f"{escape(fmt_interval(r.get('design_ci_low'), r.get('design_ci_high'), 2))}</span>"
            )
        row.append(escape(fmt_count(r.get("n_items"))))
        rows.append(row)
    headers = ("Dimension", "Alpha de Cronbach")
    if weighted:
        headers += ("Alpha pondéré (plan de sondage) [IC\u00a095\u00a0%]",)
    return _table(
        (*headers, "Items"),
        rows,
        caption="Fiabilité des dimensions",
        numeric=tuple(range(1, len(headers) + 1)),
    )


def render_stage_distribution_table(ctx: ReportContext) -> str:
    """Territories per stage (national)."""
    rows = [
        [escape(r["label"]), escape(fmt_count(r["n_territories"])), escape(fmt_percent(r["share"]))]
        for r in ctx.stage_distribution
    ]
    return _table(("Stade", "Territoires", "Part"), rows, numeric=(1, 2))


def render_transitions_table(ctx: ReportContext) -> str:
    """Stage changes between waves (national)."""
    rows = [
        [
            f"{escape(t['from_wave'])} → {escape(t['to_wave'])}",
            escape(t["from_label"]),
            escape(t["to_label"]),
            escape(fmt_count(t["n_territories"])),
        ]
        for t in ctx.transition_matrix
    ]
    return _table(
        ("Vagues", "Stade de départ", "Stade d'arrivée", "Territoires"),
        rows,
        caption="Passages de stade entre vagues",
        numeric=(3,),
    )


def render_territories_table(ctx: ReportContext, *, links: Mapping[str, str] | None = None) -> str:
    """Territories with their stage (national); ``links`` maps a code to a relative URL."""
    from evalterritoire.report.annex import probability_words

    rows = []
    for t in sorted(
        ctx.territories,
        key=lambda t: (t["stage"] if t["stage"] is not None else -1, t["territory"]),
    ):
        name = escape(t["territory_name"])
        if links and t["territory"] in links:
            name = f'<a href="{escape(links[t["territory"]])}">{name}</a>'
        rows.append(
            [
                escape(t["territory"]),
                name,
                escape(t["stage_label"]),
                escape(probability_words(t.get("stage_probability"))),
                escape(fmt_count(t["n"])) + _flag(t["is_indicative"]),
            ]
        )
    return _table(
        ("Code", "Territoire", "Stade", "Classement", "n"),
        rows,
        caption="Territoires enquêtés",
        numeric=(4,),
    )


def render_section_list(sections: Sequence[str]) -> str:
    """The common skeleton of every report (an evaluation grid's ``common_sections``)."""
    return "<ol>" + "".join(f"<li>{escape(s)}</li>" for s in sections) + "</ol>"


#: Table-shaped charts a grid stage may list, by chart id.
STAGE_TABLES: dict[str, Callable[[ReportContext], str]] = {
    "milestones": render_milestones_table,
    "fragility_table": render_fragilities_table,
    "essaimage_table": lambda ctx: render_items_table(
        ctx.essaimage, caption="Transmission et essaimage"
    ),
}
