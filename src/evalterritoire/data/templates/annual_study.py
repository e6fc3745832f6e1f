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

# %%
# Étude annuelle : synthèse nationale
#
# Template (source of truth: this jupytext file). Cells format the national `ReportContext`:
# headline figures with their intervals, stage distribution, transitions, models and the
# methodological annex. `territory` is empty for the national synthesis.
from IPython.display import HTML, display

from evalterritoire.manifest import safe_filename
from evalterritoire.render import downloads
from evalterritoire.report import annex as annex
from evalterritoire.report import figures as figures
from evalterritoire.report import prose as prose
from evalterritoire.report import tables as tables
from evalterritoire.report.context import ReportContext

ctx = ReportContext.from_json(context_path)
display(HTML(tables.render_title(ctx)))
display(
    HTML(
        '<nav class="et-nav" aria-label="Navigation"><ul>'
        '<li><a href="index.html">← Index des territoires</a></li>'
        '<li><a href="#donnees">Données à télécharger</a></li></ul></nav>'
    )
)

# %%
display(HTML(annex.render_quality_box(ctx)))

# %%
display(HTML("<h2>1. Chiffres clés</h2>"))
display(figures.build_headline_figure(ctx))
display(HTML(tables.render_items_table(ctx.headline, caption="Chiffres clés (ensemble)")))

# %%
display(HTML("<h2>2. Les territoires par stade de maturité</h2>"))
display(figures.build_stage_distribution_figure(ctx))
display(HTML(tables.render_stage_distribution_table(ctx)))
display(figures.build_stage_profiles_figure(ctx))

# %%
display(HTML("<h2>3. Passages de stade entre vagues</h2>"))
display(HTML(tables.render_transitions_table(ctx)))
display(HTML(prose.render_trends(ctx)))

# %%
display(HTML("<h2>4. Fragilités perçues</h2>"))
display(figures.build_fragilities_figure(ctx))
display(HTML(tables.render_fragilities_table(ctx)))

# %%
display(HTML("<h2>5. Pratiques partenariales, dynamique et résultats</h2>"))
display(HTML(tables.render_items_table(ctx.partnership, caption="Pratiques partenariales")))
display(HTML(tables.render_items_table(ctx.dynamic, caption="Dynamique et pilotage")))
display(HTML(tables.render_items_table(ctx.results, caption="Résultats perçus")))
display(HTML(tables.render_declared_table(ctx)))

# %%
display(HTML("<h2>6. Modèles</h2>"))
display(HTML(tables.render_models_table(ctx)))

# %%
display(HTML("<h2>7. Territoires</h2>"))
links = {
    t["territory"]: f"territoires/{safe_filename(t['territory'])}.html" for t in ctx.territories
}
display(HTML(tables.render_territories_table(ctx, links=links)))

# %%
display(HTML("<h2>8. Annexe méthodologique</h2>"))
display(HTML(tables.render_methodology(ctx)))
display(HTML(annex.render_publication_annex(ctx)))
display(HTML(tables.render_ingestion(ctx)))
display(HTML(tables.render_respondents_table(ctx)))
display(HTML(tables.render_nsp_table(ctx)))
display(HTML(tables.render_reliability_table(ctx)))

# %%
display(HTML('<h2 id="donnees">9. Données à télécharger</h2>'))
display(HTML(downloads.download_links(ctx, stem="national", data_dir="donnees")))

# %%
display(HTML(prose.render_glossary(ctx)))
display(HTML(prose.render_colophon(ctx)))
