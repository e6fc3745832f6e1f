"""HTML of the written parts of a report: « L'essentiel », answers, recommendations, annexes.

Display only: every sentence is computed into the context by :mod:`.narrative`, the comparison
group by :mod:`.neighbours`, the colophon and glossary by :mod:`.colophon`; these functions
escape and lay them out. Each returns ``""`` when its part is empty.

Owns :func:`render_essentiel` (the box at the top of a territory report, anchor
``essentiel``), :func:`render_stage_change`, :func:`render_answers` (each evaluative question
followed by its answer), :func:`render_recommendations` (with why each is proposed),
:func:`render_neighbours` (annex: the similar territories and the distance), :func:`render_glossary`
and :func:`render_colophon`.
"""

from __future__ import annotations

from html import escape

from evalterritoire.report.context import ReportContext
from evalterritoire.report.french import fmt_number
from evalterritoire.report.neighbours import is_chosen_group

__all__ = [
    "render_answers",
    "render_colophon",
    "render_essentiel",
    "render_glossary",
    "render_model_sentences",
    "render_neighbours",
    "render_recommendations",
    "render_stage_change",
    "render_trends",
]

_PARTS = (
    ("stage", "Stade"),
    ("strengths", "Points d'appui"),
    ("attention", "Points d'attention"),
    ("change", "Depuis la dernière vague"),
    ("comparison", "Parmi les territoires similaires"),
)


def _paragraphs(sentences) -> str:
    return "".join(f"<p>{escape(s)}</p>" for s in sentences)


def _items(sentences) -> str:
    return "<ul>" + "".join(f"<li>{escape(s)}</li>" for s in sentences) + "</ul>"


def render_essentiel(ctx: ReportContext) -> str:
    """The « L'essentiel » box (section anchor ``essentiel``)."""
    if not ctx.essentiel:
        return ""
    parts = []
    for key, title in _PARTS:
        if key == "comparison" and is_chosen_group(ctx):
            title = "Face au groupe de comparaison"
        sentences = ctx.essentiel.get(key) or []
        if not sentences:
            continue
        body = _items(sentences) if key in ("strengths", "attention") else _paragraphs(sentences)
        parts.append(f'<div class="essentiel-{key}"><h3>{escape(title)}</h3>{body}</div>')
    return (
        '<section id="essentiel" class="essentiel" aria-labelledby="essentiel-titre">'
        '<h2 id="essentiel-titre">L\'essentiel</h2>' + "".join(parts) + "</section>"
    )


def render_stage_change(ctx: ReportContext) -> str:
    """Why the stage changed since the previous wave (empty when it did not)."""
    sentences = ctx.stage_change.get("sentences") if ctx.stage_change else None
    if not sentences:
        return ""
    return (
        '<div class="stage-change"><h3>Changement de stade</h3>' + _paragraphs(sentences) + "</div>"
    )


def render_model_sentences(ctx: ReportContext) -> str:
    """What the national models say of the territory's stage (empty when nothing)."""
    if not ctx.model_sentences:
        return ""
    return (
        '<div class="model-sentences"><h3>Ce que disent les modèles nationaux</h3>'
        + _paragraphs(ctx.model_sentences)
        + "</div>"
    )


def render_answers(ctx: ReportContext) -> str:
    """Each evaluative question of the stage, followed by what the survey says of it."""
    if not ctx.answers:
        return ""
    items = "".join(
        f'<li><p class="question">{escape(a["question"])}</p>'
        f'<div class="answer">{_paragraphs(a["sentences"])}</div></li>'
        for a in ctx.answers
    )
    return f'<ol class="questions answered">{items}</ol>'


def render_recommendations(ctx: ReportContext) -> str:
    """The recommendations proposed to the territory, each with why it is proposed."""
    if not ctx.recommendations:
        return ""
    reasons = list(ctx.recommendation_reasons) + [""] * len(ctx.recommendations)
    items = "".join(
        f"<li><p>{escape(text)}</p>"
        + (f'<p class="reason">{escape(reason)}</p>' if reason else "")
        + "</li>"
        for text, reason in zip(ctx.recommendations, reasons, strict=False)
    )
    return f'<ol class="recommendations">{items}</ol>'


def render_neighbours(ctx: ReportContext) -> str:
    """Annex: the statistically similar territories, their stage and distance, and the method."""
    if not ctx.neighbours:
        return ""
    if is_chosen_group(ctx):  # chosen by the evaluator: no distance
        rows = "".join(
            f"<tr><td>{escape(str(n['name']))}</td><td>{escape(str(n['stage_label']))}</td></tr>"
            for n in ctx.neighbours
        )
        return (
            '<div class="neighbours"><h3>Groupe de comparaison</h3>'
            f"<p>{escape(ctx.neighbour_method)}</p>"
            '<table class="et-table"><caption>Territoires du groupe de comparaison retenu par '
            "l'évaluateur</caption><thead><tr><th>Territoire</th><th>Stade</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
    rows = "".join(
        f"<tr><td>{escape(str(n['name']))}</td><td>{escape(str(n['stage_label']))}</td>"
        f'<td class="num">{escape(fmt_number(n["distance"], 2))}</td></tr>'
        for n in ctx.neighbours
    )
    return (
        '<div class="neighbours"><h3>Territoires similaires</h3>'
        f"<p>{escape(ctx.neighbour_method)}</p>"
        '<table class="et-table"><caption>Territoires les plus proches par le contexte et le profil</caption>'
        '<thead><tr><th>Territoire</th><th>Stade</th><th class="num">Distance</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def render_glossary(ctx: ReportContext) -> str:
    """The acronyms the report uses, with their expansion."""
    if not ctx.glossary:
        return ""
    rows = "".join(
        f"<dt>{escape(g['term'])}</dt><dd>{escape(g['definition'])}</dd>" for g in ctx.glossary
    )
    return f'<div class="glossary"><h3>Sigles</h3><dl>{rows}</dl></div>'


def render_colophon(ctx: ReportContext) -> str:
    """Producer, data, version, commit, how to cite, confidentiality."""
    c = ctx.colophon
    if not c:
        return ""
    lines = [
        ("Producteur", c.get("producer")),
        ("Étude", c.get("study")),
        ("Données", c.get("data_date")),
        ("Logiciel", f"evalterritoire {c.get('version', '')}".strip()),
        ("Version du code", c.get("commit")),
        ("Pour citer ce rapport", c.get("citation")),
        ("Confidentialité", c.get("confidentiality")),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in lines if v)
    return f'<footer class="colophon"><h3>Colophon</h3><dl>{rows}</dl></footer>'


def _table(caption: str, head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    cells = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(c)}</td>' if i >= numeric_from else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    heads = "".join(
        f'<th class="num">{escape(h)}</th>' if i >= numeric_from else f"<th>{escape(h)}</th>"
        for i, h in enumerate(head)
    )
    return (
        f'<table class="et-table"><caption>{escape(caption)}</caption><thead><tr>{heads}</tr></thead>'
        f"<tbody>{cells}</tbody></table>"
    )


def render_trends(ctx: ReportContext) -> str:
    """Synthesis: mean scores and stages wave by wave, and the territories that changed stage."""
    parts = []
    if ctx.score_trend:
        waves = sorted({r["wave"] for r in ctx.score_trend})
        by = {(r["label"], r["wave"]): r["mean"] for r in ctx.score_trend}
        labels = list(dict.fromkeys(r["label"] for r in ctx.score_trend))
        rows = [[lab, *(fmt_number(by.get((lab, w)), 1) for w in waves)] for lab in labels]
        parts.append(
            _table(
                "Score moyen des territoires par dimension, vague par vague",
                ["Dimension", *map(str, waves)],
                rows,
            )
        )
    if ctx.stage_by_wave:
        waves = sorted({r["wave"] for r in ctx.stage_by_wave})
        by = {(r["label"], r["wave"]): r["n_territories"] for r in ctx.stage_by_wave}
        labels = list(dict.fromkeys(r["label"] for r in ctx.stage_by_wave))
        rows = [[lab, *(fmt_number(by.get((lab, w), 0), 0) for w in waves)] for lab in labels]
        parts.append(
            _table("Territoires par stade, vague par vague", ["Stade", *map(str, waves)], rows)
        )
    if ctx.stage_changes:
        rows = [
            [
                c["name"],
                c["from_label"],
                c["to_label"],
                "progression" if c["direction"] == "up" else "retour en arrière",
            ]
            for c in ctx.stage_changes
        ]
        first = ctx.stage_changes[0]["from_wave"]
        parts.append(
            _table(
                f"Territoires qui ont changé de stade depuis {first}",
                ["Territoire", f"Stade en {first}", f"Stade en {ctx.wave}", "Sens"],
                rows,
                numeric_from=99,
            )
        )
    return "".join(parts)
