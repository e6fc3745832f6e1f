"""What a report says about the quality of its own figures: quality box, rules, models, stages.

Owns the blocks that explain the publication statuses in plain French: the quality box
(:func:`render_quality_box`: how many figures are publishable, fragile, suppressed or
model-based, with the legend of the marks), the annex of the publication rules with the
sentence on the fragile figures (:func:`render_publication_annex`), the fit of the
Fay–Herriot models behind the « estimations modélisées » (:func:`render_smallarea_annex`) and
the stage membership probability in words (:func:`render_stage_probability`,
:func:`probability_words`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from evalterritoire.report.display import FRAGILE_MARK, MODEL_LABEL, SUPPRESSED_MARK, legend
from evalterritoire.report.french import NBSP, fmt_count, fmt_number, fmt_percent, guillemets

if TYPE_CHECKING:
    from evalterritoire.report.context import ReportContext

__all__ = [
    "REASON_TEXT",
    "probability_words",
    "render_publication_annex",
    "render_quality_box",
    "render_smallarea_annex",
    "render_stage_probability",
]

#: Each reason of a status, in plain French (annex).
REASON_TEXT: dict[str, str] = {
    "min_cell": "moins de {min_cell} répondants (secret statistique)",
    "no_estimate": "aucune estimation",
    "effective_n": "moins de {share_min_effective_n:g} répondants « effectifs » (une fois "
    "compté l'effet du plan de sondage)",
    "width": "intervalle de confiance trop large (au moins {share_max_width_pct} points)",
    "relative_width": "intervalle de confiance trop large par rapport à la valeur",
    "min_n": "moins de {mean_min_n} répondants pour une moyenne",
    "scale_width": "intervalle couvrant au moins {mean_max_scale_width_pct} % de l'échelle",
    "out_of_range": "estimation modélisée hors des bornes de l'échelle",
    "secondary": "masquée pour qu'une autre valeur masquée ne puisse pas être retrouvée par "
    "soustraction",
    "df": "moins de {min_df} degrés de liberté : trop peu d'unités de tirage pour juger de la "
    "précision",
    "complement": "part complémentaire imprécise",
    "boundary": "part de 0 % ou de 100 %",
    "cv": "coefficient de variation d'au moins {count_max_cv_pct} %",
    "not_estimable": "intervalle non estimable",
}


def _rules(ctx: ReportContext) -> dict[str, Any]:
    r = dict(ctx.publication or {})
    r.setdefault("min_cell", 5)
    r.setdefault("min_df", 8)
    r.setdefault("share_min_effective_n", 30.0)
    r.setdefault("share_max_width", 0.30)
    r.setdefault("share_max_relative_width", 1.30)
    r.setdefault("share_small_width", 0.05)
    r.setdefault("mean_min_n", 10)
    r.setdefault("mean_max_scale_width", 0.30)
    r.setdefault("count_max_relative_width", 1.60)
    r.setdefault("count_max_cv", 0.30)
    r["share_max_width_pct"] = fmt_number(r["share_max_width"] * 100, 0)
    r["mean_max_scale_width_pct"] = fmt_number(r["mean_max_scale_width"] * 100, 0)
    r["count_max_cv_pct"] = fmt_number(r["count_max_cv"] * 100, 0)
    return r


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{fmt_count(n)}{NBSP}{word if n <= 1 else (plural or word + 's')}"


def render_quality_box(ctx: ReportContext) -> str:
    """The report's figures by status, and the legend of the marks."""
    q = ctx.quality or {}
    total = int(q.get("n_figures", 0))
    if not total:
        return ""
    rules = _rules(ctx)
    items = [
        f"<li><strong>{_plural(int(q.get('publishable', 0)), 'chiffre publiable', 'chiffres publiables')}</strong>"
        " : précision suffisante selon les règles de publication de l'étude ;</li>",
        f"<li><strong>{_plural(int(q.get('fragile', 0)), 'chiffre fragile', 'chiffres fragiles')}</strong>"
        f' (marqués <span class="mark-f">{FRAGILE_MARK}</span>) : publiés mais à lire avec '
        "prudence ;</li>",
        f"<li><strong>{_plural(int(q.get('suppressed', 0)), 'chiffre masqué', 'chiffres masqués')}</strong>"
        f' (marqués <abbr class="mark-s">{SUPPRESSED_MARK}</abbr>) : trop peu de répondants '
        f"(moins de {fmt_count(rules['min_cell'])}) ou précision insuffisante ;</li>",
    ]
    modelled = int(q.get("modelled", 0))
    if modelled:
        items.append(
            f"<li>dont <strong>{_plural(modelled, MODEL_LABEL, 'estimations modélisées')}"
            "</strong> : là où la mesure directe du territoire n'était pas publiable, une "
            "valeur tirée d'un modèle qui s'appuie aussi sur les territoires comparables "
            "(voir l'annexe).</li>"
        )
    return (
        '<aside class="quality-box"><h2>Qualité des chiffres de ce rapport</h2>'
        f"<p>Ce rapport présente {_plural(total, 'chiffre', 'chiffres')} tirés de l'enquête :"
        f"</p><ul>{''.join(items)}</ul>{legend(int(rules['min_cell']))}</aside>"
    )


def render_publication_annex(ctx: ReportContext) -> str:
    """The publication rules in plain French, and the sentence on this report's fragile figures."""
    r = _rules(ctx)
    q = ctx.quality or {}
    reasons = dict(q.get("reasons") or {})
    lines = [
        "<h3>Règles de publication des chiffres</h3>",
        "<p>Chaque chiffre de ce rapport est jugé avant d'être publié, selon des règles "
        "déclarées pour toute l'étude :</p><ul>",
        f"<li><strong>Confidentialité.</strong> Aucun chiffre reposant sur moins de "
        f"{fmt_count(r['min_cell'])} répondants n'apparaît, ni dans un tableau, ni dans un "
        "graphique, ni dans sa description ; les types d'acteurs trop peu nombreux sont "
        "regroupés en « autres acteurs » ; une valeur masquée ne peut pas être retrouvée par "
        "différence (une seconde valeur est masquée si besoin) ; une réponse libre n'est citée "
        f"que si au moins {fmt_count(r['min_cell'])} répondants du territoire ont répondu à la "
        "question.</li>",
        "<li><strong>Parts (pourcentages).</strong> Règles du centre national de statistiques "
        "de santé des États-Unis (NCHS, 2017) : une part est masquée si elle repose sur moins "
        f"de {fmt_number(r['share_min_effective_n'], 0)} répondants « effectifs », si son "
        f"intervalle de confiance fait au moins {r['share_max_width_pct']} points, ou s'il est "
        "très large par rapport à la part elle-même ; elle est fragile si le plan de sondage "
        f"offre moins de {fmt_count(r['min_df'])} degrés de liberté, ou si elle vaut 0 % ou "
        "100 %.</li>",
        "<li><strong>Moyennes sur une échelle</strong> (accord de 1 à 5, note de 0 à 10). "
        f"Masquées sous {fmt_count(r['mean_min_n'])} répondants ou quand l'intervalle couvre "
        f"au moins {r['mean_max_scale_width_pct']} % de l'échelle ; fragiles sous "
        f"{fmt_count(r['min_df'])} degrés de liberté.</li>",
        "<li><strong>Nombres</strong> (effectifs, comptages). Masqués sous "
        f"{fmt_count(r['mean_min_n'])} répondants ou quand l'intervalle dépasse "
        f"{fmt_number(r['count_max_relative_width'], 1)} fois la valeur ; fragiles quand "
        f"l'erreur type atteint {r['count_max_cv_pct']} % de la valeur.</li>",
        "<li><strong>Intervalle non estimable.</strong> Quand toutes les réponses sont "
        "identiques ou qu'une seule unité de tirage a été interrogée, la précision ne peut "
        "pas être calculée : le rapport le dit en toutes lettres et le chiffre est "
        "fragile.</li></ul>",
    ]
    fragile = int(q.get("fragile", 0))
    if fragile:
        causes = [
            REASON_TEXT[k].format(**r)
            for k in ("df", "not_estimable", "complement", "boundary", "cv")
            if reasons.get(k)
        ]
        lines.append(
            f'<p class="fragile-sentence">Dans ce rapport, {_plural(fragile, "chiffre est marqué", "chiffres sont marqués")} '
            f'<span class="mark-f">{FRAGILE_MARK}</span> : '
            + (" ; ".join(causes) if causes else "précision à interpréter avec prudence")
            + ". Un tel chiffre donne un ordre de grandeur ; un écart de quelques points avec "
            "un autre territoire ou une autre vague ne doit pas être interprété.</p>"
        )
    suppressed = int(q.get("suppressed", 0))
    if suppressed:
        causes = [
            REASON_TEXT[k].format(**r)
            for k in ("min_cell", "effective_n", "width", "relative_width", "min_n",
                      "scale_width", "secondary", "out_of_range")
            if reasons.get(k)
        ]  # fmt: skip
        lines.append(
            f"<p>{_plural(suppressed, 'chiffre est masqué', 'chiffres sont masqués')} "
            f'(<abbr class="mark-s">{SUPPRESSED_MARK}</abbr>) : ' + " ; ".join(causes) + ".</p>"
        )
    return "".join(lines)


def render_smallarea_annex(ctx: ReportContext, *, max_rows: int = 12) -> str:
    """The Fay–Herriot models behind this report's « estimations modélisées »."""
    fits = list(ctx.smallarea_fits)
    if not fits:
        return ""
    rows = []
    for f in fits[:max_rows]:
        covariates = ", ".join(f.get("covariates") or []) or "aucune (moyenne des territoires)"
        rows.append(
            "<tr>"
            f"<td>{html.escape(str(f['label']))}</td>"
            f"<td>{html.escape(covariates)}</td>"
            f'<td class="num">{html.escape(fmt_percent(f.get("mean_gamma")))}</td>'
            f'<td class="num">{html.escape(fmt_count(f.get("n_areas")))}</td>'
            "</tr>"
        )
    more = (
        f"<p>… et {fmt_count(len(fits) - max_rows)} autres indicateurs modélisés de la même "
        "façon.</p>"
        if len(fits) > max_rows
        else ""
    )
    return (
        "<h3>Estimations modélisées : le modèle</h3>"
        "<p>Un territoire n'est interrogé que dans quelques unités de tirage : sa mesure "
        "directe est souvent trop imprécise pour être publiée. Une "
        f"{guillemets(MODEL_LABEL)} la complète par ce que l'on sait des autres territoires : "
        "le modèle de Fay et Herriot prédit la valeur du territoire à partir de "
        "caractéristiques publiques (fichier de contexte de l'étude), puis la combine avec sa "
        "mesure directe, d'autant plus que celle-ci est précise. Son intervalle de confiance "
        "tient compte de l'erreur du modèle (erreur quadratique moyenne de Prasad et Rao). "
        "Ce n'est pas une mesure directe : le rapport l'indique à chaque fois.</p>"
        '<table class="et-table smallarea"><caption>Modèles utilisés dans ce rapport</caption>'
        '<thead><tr><th scope="col">Indicateur</th><th scope="col">Caractéristiques '
        'publiques retenues</th><th scope="col" class=num>Poids moyen de la mesure '
        'directe</th><th scope="col" class=num>Territoires du modèle</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{more}"
    )


def probability_words(p: Any) -> str:
    """A membership probability in words (never a bare « 100 % »)."""
    if p is None:
        return "—"
    p = float(p)
    if p >= 0.99:
        return f"quasi certain (plus de 99{NBSP}%)"
    if p >= 0.9:
        return f"très probable ({fmt_percent(p)})"
    if p >= 0.8:
        return f"probable ({fmt_percent(p)})"
    if p >= 0.5:
        return f"incertain ({fmt_percent(p)})"
    return f"peu probable ({fmt_percent(p)})"


def render_stage_probability(ctx: ReportContext) -> str:
    """The membership probability of the assigned stage, said in words, and the runner-up."""
    p = ctx.stage_probability
    if p is None:
        return ""
    probs: list[Mapping[str, Any]] = sorted(
        (s for s in ctx.stage_probabilities if s.get("stage") != ctx.stage),
        key=lambda s: -float(s.get("probability") or 0),
    )
    runner = probs[0] if probs else None
    if p >= 0.99:
        text = (
            "Le classement dans ce stade est quasi certain : compte tenu de la précision du "
            f"profil du territoire, la probabilité qu'il relève d'un autre stade est inférieure à "
            f"1{NBSP}%."
        )
    elif p >= 0.8:
        text = (
            f"Le classement dans ce stade est probable ({fmt_percent(p)} de chances) ; "
            f"{guillemets(html.escape(str(runner['label'])))} reste possible "
            f"({fmt_percent(runner['probability'])})."
            if runner
            else f"Le classement dans ce stade est probable ({fmt_percent(p)} de chances)."
        )
    else:
        text = (
            f"Le classement est incertain : {fmt_percent(p)} de chances pour ce stade"
            + (
                f", {fmt_percent(runner['probability'])} pour "
                f"{guillemets(html.escape(str(runner['label'])))}"
                if runner
                else ""
            )
            + ". Ces probabilités tiennent compte de la précision du profil du territoire."
        )
    return f'<p class="stage-probability">{text}</p>'
