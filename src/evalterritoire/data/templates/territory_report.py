# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
territory: str = ""
wave: int = 0
context_path: str = ""
grid_path: str = ""  # set by evalterritoire: the study evaluation grid, empty for the shipped one
observatory_name: str = ""  # name of the publishing observatory (cover)
observatory_logo: str = ""  # its logo: a PNG, JPEG or SVG file, embedded (cover)
suppression_threshold: int = 0  # hide values resting on fewer answers (stricter than the study)
band_thresholds: str = ""  # cut points of the reading bands such as 3;4, where the stage has bands
stage_override: str = ""  # stage retained by the evaluator (name), shown as such
equal_type_weight: bool = False  # regards croisés: the same weight for every actor type
comparison_group: str = ""  # territory codes separated by ; compared instead of the similar ones

# %%
# Rapport d'évaluation d'un territoire
#
# Template (source of truth: this jupytext file). Every cell calls `evalterritoire.report.figures`
# or `evalterritoire.report.tables` on a precomputed `ReportContext`: no data wrangling here. The
# context carries the evaluation grid's entry of the territory's stage (`ctx.stage_grid`), which
# selects the stage block (questions, charts, tone); a territory between two stages gets the
# earlier stage's block. The written parts (« L'essentiel », the answers to the evaluative
# questions, the recommendations and their reasons, the similar territories, the colophon) are
# sentences computed into the context by `evalterritoire.report.narrative`, displayed by
# `evalterritoire.report.prose`.
from IPython.display import HTML, display

from evalterritoire.manifest import safe_filename
from evalterritoire.render import downloads, navigation
from evalterritoire.render import params as report_params
from evalterritoire.report import annex as annex
from evalterritoire.report import figures as figures
from evalterritoire.report import prose as prose
from evalterritoire.report import tables as tables
from evalterritoire.report.context import ReportContext

ctx = report_params.apply_parameters(
    ReportContext.from_json(context_path),
    grid_path=grid_path,
    suppression_threshold=suppression_threshold,
    band_thresholds=band_thresholds,
    stage_override=stage_override,
    equal_type_weight=equal_type_weight,
    comparison_group=comparison_group,
    context_path=context_path,
)
cover = [
    report_params.render_observatory(observatory_name, observatory_logo),
    tables.render_title(ctx),
    report_params.render_parameter_notes(ctx),
    navigation.render_navigation(ctx),
]
display(HTML("".join(cover)))

# %%
display(HTML(prose.render_essentiel(ctx)))
display(HTML(annex.render_quality_box(ctx)))

# %%
display(HTML("<h2>1. Carte d'identité du territoire</h2>"))
display(HTML(tables.render_identity_table(ctx)))

# %%
display(HTML("<h2>2. Stade attribué et sa justification</h2>"))
display(HTML(tables.render_stage_summary(ctx)))
display(figures.build_profile_figure(ctx, banded=ctx.allows_verdicts))
display(HTML(tables.render_profile_table(ctx)))
display(HTML(tables.render_declared_table(ctx)))
display(HTML(tables.render_free_text(ctx)))
display(HTML(tables.render_history_table(ctx)))
display(HTML(prose.render_stage_change(ctx)))
display(HTML(prose.render_model_sentences(ctx)))

# %%
display(HTML("<h2>3. Fragilités du territoire</h2>"))
display(figures.build_fragilities_figure(ctx))
display(HTML(tables.render_fragilities_table(ctx, top=8)))

# %%
if ctx.stage_grid:
    display(HTML(tables.render_stage_heading(ctx)))
    display(HTML(tables.render_posture(ctx)))
    display(HTML("<h3>Questions évaluatives</h3>" + prose.render_answers(ctx)))
    for chart in ctx.stage_grid["charts"]:
        if chart in figures.CHARTS:
            display(figures.CHARTS[chart](ctx))
        else:
            display(HTML(tables.render_stage_table(ctx, chart)))
    display(HTML(tables.render_items_table(ctx.stage_indicators, caption="Indicateurs du stade")))

# %%
display(HTML("<h2>5. Pratiques partenariales, dynamique et pilotage</h2>"))
display(HTML(tables.render_items_table(ctx.partnership, caption="Pratiques partenariales")))
display(HTML(tables.render_items_table(ctx.dynamic, caption="Dynamique et pilotage")))
display(HTML(tables.render_items_table(ctx.freins, caption="Principaux freins cités")))

# %%
display(HTML("<h2>6. Recommandations : prochaines étapes</h2>"))
display(HTML(prose.render_recommendations(ctx)))
display(HTML(tables.render_next_stage(ctx)))
if ctx.stage_grid:
    display(HTML(tables.render_do_not(ctx)))

# %%
display(HTML("<h2>7. Annexe méthodologique</h2>"))
display(HTML(annex.render_publication_annex(ctx)))
display(HTML(annex.render_smallarea_annex(ctx)))
display(HTML(tables.render_respondents_table(ctx)))
display(HTML(tables.render_nsp_table(ctx)))
display(HTML(tables.render_methodology(ctx)))
display(HTML(prose.render_neighbours(ctx)))

# %%
display(HTML('<h2 id="donnees">8. Données à télécharger</h2>'))
display(HTML(downloads.download_links(ctx, stem=safe_filename(ctx.territory))))
display(HTML(prose.render_glossary(ctx)))
display(HTML(prose.render_colophon(ctx)))
