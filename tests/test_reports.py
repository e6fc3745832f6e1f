"""Report templates, figures, tables, offline HTML export, index, file names and manifest."""

from __future__ import annotations

import json
import os
import re
import shutil
from html import unescape
from pathlib import Path

import IPython.display
import jupytext
import nbformat
import pandas as pd
import pytest
from _synthetic_reports import (
    EVIL_COMMENT,
    EVIL_NAME,
    HIDDEN_COMMENT,
    STAGES,
    differing_figures,
    draw_report_figures,
    make_artefacts,
    make_config,
    rename_codes,
    savefig_finish,
)
from nbformat.v4 import new_code_cell, new_notebook, new_output

from evalterritoire.errors import RenderError, ReproduceError
from evalterritoire.manifest import (
    build_manifest,
    compare_artefacts,
    format_comparisons,
    load_manifest,
    safe_filename,
    write_manifest,
)
from evalterritoire.render.export import export_html, wrap_html
from evalterritoire.report import figures as figures
from evalterritoire.report import tables as tables
from evalterritoire.report.build import build_contexts
from evalterritoire.report.grid import load_grid
from evalterritoire.report.scan import scan_report

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "src" / "evalterritoire" / "data" / "templates"
SNAPSHOTS = Path(__file__).parent / "fixtures" / "reports"
PARAMETERS = {
    "territory_report": {
        "territory": "str",
        "wave": "int",
        "context_path": "str",
        "grid_path": "str",
        "observatory_name": "str",
        "observatory_logo": "str",
        "suppression_threshold": "int",
        "band_thresholds": "str",
        "stage_override": "str",
        "equal_type_weight": "bool",
        "comparison_group": "str",
    },
    "annual_study": {"territory": "str", "wave": "int", "context_path": "str"},
}
VERDICTS = ("Préoccupation", "À discuter", 'class="band ', "Force</span>")
#: Territory codes that would escape the reports folder if used as file names.
HOSTILE = {"T1": "../x", "T2": "..\\x", "T3": "a/b"}
GRID = load_grid()
STAGE_KEYS = GRID.keys


@pytest.fixture(scope="module")
def study(codebook, tmp_path_factory):
    """Synthetic study: contexts written as JSON, one per territory + national."""
    root = tmp_path_factory.mktemp("study")
    config = make_config(root)
    contexts = build_contexts(config, codebook, make_artefacts(codebook))
    out = root / "contexts"
    out.mkdir()
    paths = {}
    for ctx in contexts:
        key = "national" if ctx.is_national else safe_filename(ctx.territory)
        paths[key] = out / f"{key}.json"
        paths[key].write_text(ctx.to_json(), encoding="utf-8")
    return {"config": config, "contexts": contexts, "paths": paths, "root": root}


def _ipynb(name: str, directory: Path) -> Path:
    path = directory / f"{name}.ipynb"
    nbformat.write(jupytext.read(TEMPLATES / f"{name}.py"), path)
    return path


def _render_in_process(name: str, ctx, context_path: Path, monkeypatch) -> str:
    """Run a template's cells in this process (display collected), as the kernel would."""
    outputs: list[str] = []

    def collect(*objs, **_):
        for obj in objs:
            outputs.append(obj._repr_html_())

    monkeypatch.setattr(IPython.display, "display", collect)
    namespace: dict = {}
    for cell in jupytext.read(TEMPLATES / f"{name}.py").cells:
        if cell.cell_type != "code":
            continue
        source = cell.source
        if "parameters" in cell.metadata.get("tags", []):
            source = cell.source + (
                f"\nterritory = {ctx.territory!r}\nwave = {ctx.wave!r}\n"
                f"context_path = {str(context_path)!r}\n"
            )
        exec(compile(source, f"<{name}>", "exec"), namespace)
    return wrap_html("\n".join(outputs), title=ctx.title)


# --------------------------------------------------------------------------- templates
@pytest.mark.parametrize("name", ["territory_report", "annual_study"])
def test_template_parameters_are_pinned(name, tmp_path):
    import papermill

    params = papermill.inspect_notebook(str(_ipynb(name, tmp_path)))
    assert list(params) == list(PARAMETERS[name])
    assert {k: v["inferred_type_name"] for k, v in params.items()} == PARAMETERS[name]


@pytest.fixture(scope="module")
def rendered(codebook, tmp_path_factory):
    """The synthetic study through the real pipeline: ``run_contexts`` then ``run_reports``.

    Every report is executed from the real templates by the production engine (warm kernel),
    so the per-stage, escaping and file-name tests below read real output. Territory codes
    T1–T3 are replaced by hostile ones (``../x``, ``..\\x``, ``a/b``).
    """
    from evalterritoire.pipeline import run_contexts, run_reports

    root = tmp_path_factory.mktemp("rendered")
    study_dir = root / "etude"
    study_dir.mkdir()
    artefacts = rename_codes(make_artefacts(codebook), HOSTILE)
    config = make_config(
        study_dir, templates_dir=TEMPLATES, context=artefacts.context, per_wave=True
    )
    build = config.build_dir
    build.mkdir(parents=True)
    for name in ("responses", "maturity", "transitions", "models", "reliability", "profiles"):
        getattr(artefacts, name).to_parquet(build / f"{name}.parquet", index=False)
    (build / "ingestion.json").write_text(json.dumps(dict(artefacts.ingestion)), encoding="utf-8")
    before = {p for p in root.rglob("*") if p.is_file()}
    codes = {HOSTILE.get(c, c): c for c in STAGES}  # rendered code → synthetic territory
    run_contexts(config, codebook=codebook)
    # the territories only: the national synthesis would cost a second kernel start; it is
    # executed in-process below, and for real by the slow test and by test_pipeline
    summary = run_reports(config, territories=sorted(codes), workers=1, codebook=codebook)
    assert summary.exit_code == 0, summary.failed
    assert summary.n_failed == 0
    assert summary.n_rendered == len(codes)
    written = {p for p in root.rglob("*") if p.is_file()} - before
    pages = config.reports_dir / "territoires"
    html = {
        territory: (pages / f"{safe_filename(code)}.html").read_text(encoding="utf-8")
        for code, territory in codes.items()
    }
    return {"config": config, "root": root, "written": written, "html": html, "codes": codes}


def test_study_tasks_take_titles_from_the_contexts_in_hand(rendered, codebook):
    """The report step titles its tasks from the contexts it loaded: the same tasks as
    reading every context file again (a national wave has 1,251 of them)."""
    from evalterritoire.pipeline import _context_stem, _load_contexts
    from evalterritoire.render.study import report_templates, study_tasks

    config = rendered["config"]
    contexts = _load_contexts(config, codebook)
    codes = sorted(c.territory for c in contexts if not c.is_national)
    templates = report_templates(config)
    titles = {_context_stem(c): c.title for c in contexts}
    read = study_tasks(config, codes, templates, {}, with_study=True)
    given = study_tasks(config, codes, templates, {}, with_study=True, titles=titles)
    assert given == read
    tasks = {t.stem: t.title for _folder, batch in given for t in batch}
    expected = {("synthese" if k == "national" else k): v for k, v in titles.items()}
    assert tasks == expected
    assert all(expected.values())


def test_rendered_reports_pass_the_publication_scan(rendered):
    """No interval outside its range or shown as a point, nothing on fewer than min_cell."""
    for territory, page in rendered["html"].items():
        assert scan_report(page, min_cell=5) == [], territory
        assert 'class="quality-box"' in page  # every report counts its figures by status
        assert "Règles de publication des chiffres" in page
    # T5 (3 respondents): everything is « s », and its n is never written
    small = rendered["html"]["T5"]
    assert '<abbr class="mark-s"' in small
    assert "0\u00a0chiffre publiable" in unescape(small)


@pytest.mark.parametrize("territory", sorted(STAGES))
def test_rendered_report_follows_its_stage(territory, rendered):
    """One real report per stage: the stage's block is there, the other stages' are not."""
    html = rendered["html"][territory]
    key = STAGE_KEYS[STAGES[territory]]
    grid = GRID.stage(key)
    _check_executed(html)
    text = unescape(html)  # the export may write ' or &#x27;: compare the text
    assert grid.section_title[1:] in text
    assert grid.questions[0] in text
    assert any(r in text for r in grid.recommendations)  # the ones chosen for the territory
    assert grid.do_not[0] in text
    for other in STAGE_KEYS:
        if other != key:
            other_grid = GRID.stage(other)
            assert other_grid.section_title[1:] not in text
            assert other_grid.questions[0] not in text
            assert other_grid.do_not[0] not in text
    for section in ("Carte d'identité", "Stade attribué", "Fragilités", "Annexe méthodologique"):
        assert section in text
    has_verdict = any(v in html for v in VERDICTS)
    # an emerging or structuring territory never gets a pass/fail verdict; a consolidated or
    # a disseminating one does, unless it is indicative (T5: 3 respondents, scores not classed)
    assert has_verdict is (key in {"consolidation", "essaimage"} and territory != "T5")
    if territory == "T5":
        assert "Lecture indicative" in html
    assert html.count('<figure class="et-figure"') >= 3
    # the number of respondents is given, as « n < 5 » under the study's minimum cell (T5: 3)
    assert ("n\u00a0<\u00a05" if territory == "T5" else "n\u00a0=\u00a0") in unescape(html)


#: What never reaches a reader: file names, seeds, model ids, code-like identifiers.
_CODE_LIKE = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b|\.(?:parquet|json|csv|yaml|toml)\b|graine")


def _visible_text(html: str) -> str:
    """The text a reader sees: no style, no script, no tag, no attribute, no image data."""
    html = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", html, flags=re.S | re.I)
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("territory", sorted(STAGES))
def test_rendered_report_shows_no_code(territory, rendered, codebook):
    """No item id, column name, file name, seed or model id in any rendered page."""
    text = _visible_text(rendered["html"][territory])
    assert _CODE_LIKE.findall(text) == []
    ids = {v.id for v in codebook.variables if "_" in v.id}
    assert not [w for w in re.findall(r"[\w]+", text) if w in ids]
    assert "moteurs_maturite" not in text


@pytest.mark.parametrize("territory", sorted(STAGES))
def test_rendered_report_opens_with_its_summary(territory, rendered):
    """« L'essentiel » (anchor ``essentiel``) comes first, answers follow each question."""
    html = rendered["html"][territory]
    assert html.index('id="essentiel"') < html.index("Carte d'identité du territoire</h2>")
    text = _visible_text(html)
    for part in ("Points d'appui", "Points d'attention", "Depuis la dernière vague", "Colophon"):
        assert part in text
    assert "rapport d'évaluation" in unescape(html[html.index("<title>") : html.index("</title>")])


def test_rendered_report_escapes_free_text_and_names(rendered):
    t1 = rendered["html"]["T1"]
    assert "Paroles d'acteurs" in unescape(t1)
    assert EVIL_COMMENT in unescape(t1)  # shown as text …
    assert "&lt;script&gt;alert(1)&lt;/script&gt; on avance" in t1
    assert "<script" not in t1.lower()  # … never as a tag
    assert "<img src=x" not in t1.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in t1  # the territory name
    assert "T1-001" not in t1  # no respondent id next to a quote
    # fewer respondents than min_n: no quote, and the report says why
    t5 = rendered["html"]["T5"]
    assert HIDDEN_COMMENT not in t5
    assert "Aucune réponse libre n'est citée" in t5


def test_hostile_codes_stay_inside_the_reports_folder(rendered):
    """``../x``, ``..\\x`` and ``a/b`` go through run_contexts and run_reports safely."""
    config = rendered["config"]
    allowed = {
        config.reports_dir.resolve(),
        (config.reports_dir / "territoires").resolve(),
        config.artefact("contexts").resolve(),
        config.artefact("templates").resolve(),  # the generated .ipynb of each template
        config.artefact(".provenance").resolve(),  # what the contexts were built from
    }
    lock = config.artefact(".evalterritoire.lock").resolve()  # the build folder's lock
    data = (config.reports_dir / "donnees").resolve()  # downloads: one safe folder each
    for path in rendered["written"]:
        parent = path.resolve().parent
        assert parent in allowed or path.resolve() == lock or parent.parent == data, path
        assert re.fullmatch(r"\.?[A-Za-z0-9_.-]+", path.name), path
    pages = {p.name for p in (config.reports_dir / "territoires").glob("*.html")}
    assert pages == {f"{safe_filename(code)}.html" for code in rendered["codes"]}
    for code in HOSTILE.values():
        assert safe_filename(code) != code
        assert "x.html" not in {p.name for p in rendered["written"]}
    contexts = {p.name for p in config.artefact("contexts").glob("*.json")}
    assert contexts == {"national.json"} | {
        f"{safe_filename(code)}.json" for code in rendered["codes"]
    }
    # the index links to the sanitised names
    index = (config.reports_dir / "index.html").read_text(encoding="utf-8")
    for code in HOSTILE.values():
        assert f'href="territoires/{safe_filename(code)}.html"' in index
    assert 'href="territoires/../' not in index
    assert "territoires/a/b" not in index


def test_national_synthesis_sections(study, monkeypatch):
    ctx = study["contexts"][0]
    html = _render_in_process("annual_study", ctx, study["paths"]["national"], monkeypatch)
    for title in ("Chiffres clés", "par stade de maturité", "Passages de stade", "Modèles"):
        assert title in html
    assert 'href="territoires/T1.html"' in html
    assert "Alpha de Cronbach" in html
    assert not any(v in html for v in VERDICTS)
    assert "Paroles d" not in html


def test_between_stages_report_uses_the_earlier_grid(codebook, tmp_path, monkeypatch):
    """A consolidated territory whose membership is shared with structuring (grid §6)."""
    artefacts = make_artefacts(codebook)
    maturity = artefacts.maturity.copy()
    row = maturity["territory"] == "T3"
    maturity.loc[row, "stage_probability"] = 0.45
    for col in [c for c in maturity.columns if c.startswith("score_")]:
        maturity.loc[row, col] -= 0.5
    artefacts = type(artefacts)(**{**artefacts.__dict__, "maturity": maturity})
    ctx = build_contexts(make_config(tmp_path), codebook, artefacts)[3]
    assert ctx.territory == "T3"
    assert ctx.between_stages
    path = tmp_path / "T3.json"
    path.write_text(ctx.to_json(), encoding="utf-8")
    html = _render_in_process("territory_report", ctx, path, monkeypatch)
    structuring, consolidation = GRID.stage("structuration"), GRID.stage("consolidation")
    assert "Stade attribué : <strong>Consolidation</strong>" in html
    assert "Entre deux stades" in html
    assert tables.escape(structuring.section_title[1:]) in html
    assert tables.escape(structuring.questions[0]) in html
    assert set(ctx.recommendations) <= set(structuring.recommendations)
    assert all(tables.escape(r) in html for r in ctx.recommendations)
    assert tables.escape(consolidation.section_title[1:]) not in html
    assert tables.escape(consolidation.questions[0]) not in html
    assert not any(v in html for v in VERDICTS)  # the earlier stage allows no verdict
    assert "Vers le stade suivant : Consolidation" in html
    assert tables.escape(consolidation.signals) in html
    assert "Jalons encore à franchir" in html or not ctx.next_stage["missing_milestones"]


def test_report_escapes_data(study, monkeypatch):
    ctx = study["contexts"][1]
    assert ctx.territory_name == EVIL_NAME
    html = _render_in_process("territory_report", ctx, study["paths"]["T1"], monkeypatch)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>«" not in html
    assert f"«\u00a0{tables.escape(EVIL_COMMENT)}\u00a0»" in html  # quoted, as text
    assert "<img src=x" not in html


def test_free_text_block(study):
    t1, t5 = study["contexts"][1], study["contexts"][5]
    block = tables.render_free_text(t1)
    assert block.startswith("<h3>Paroles d'acteurs</h3>")
    assert block.count("<blockquote") == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in block
    assert "<script" not in block
    assert "Aucune réponse libre n'est citée" in tables.render_free_text(t5)
    assert HIDDEN_COMMENT not in tables.render_free_text(t5)
    assert tables.render_free_text(study["contexts"][0]) == ""


# --------------------------------------------------------------------------- tables and figures
@pytest.mark.parametrize(
    ("snapshot", "build"),
    [
        ("profile_table_T3.html", lambda c: tables.render_profile_table(c[3])),
        ("milestones_table_T1.html", lambda c: tables.render_milestones_table(c[1])),
    ],
)
def test_table_snapshots(snapshot, build, study):
    expected = (SNAPSHOTS / snapshot).read_text(encoding="utf-8")
    assert build(study["contexts"]) + "\n" == expected


def test_tables_format_french_and_flag_small_n(study):
    t3, t5 = study["contexts"][3], study["contexts"][5]
    html = tables.render_profile_table(t3)
    assert re.search(r"\d,\d <span class=\"ci\">\[\d,\d\u00a0; \d,\d\]</span>", html)
    assert "Lecture" in html  # consolidation: the reading column exists
    # the band is read on the value as displayed: « 4,0 » is a strength under « ≥ 4 »
    assert re.search(r">4,0 <span class=\"ci\">[^<]*</span></span></td><td class=num>[^<]*"
                     r"</td><td class=num>[^<]*</td><td class=num>[^<]*</td>"  # stage, similar
                     r"<td class=num><span class=\"band band-force",
                     html)  # fmt: skip
    assert "Lecture" not in tables.render_profile_table(study["contexts"][1])
    # T5 (3 respondents): every figure is suppressed, shown as « s », n written « < 5 »
    small = tables.render_items_table(t5.partnership)
    assert 'data-status="suppressed"' in small
    assert '<abbr class="mark-s"' in small
    assert 'data-status="publishable"' not in small
    assert "&lt;\u00a05" in small
    assert 'data-n="3"' not in small
    assert "&lt;script&gt;" in tables.render_title(study["contexts"][1])
    summary = tables.render_stage_summary(t3)
    assert "Le classement dans ce stade est probable (90\u00a0% de chances)" in summary


def test_figures_are_deterministic_png_with_alt_text(study):
    t3 = study["contexts"][3]
    first = figures.build_profile_figure(t3, banded=True)
    again = figures.build_profile_figure(t3, banded=True)
    assert first.png == again.png
    assert first.png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Gouvernance" in first.alt
    assert re.search(r"\d,\d", first.alt)
    assert "préoccupation" in first.caption
    emerging = figures.build_profile_figure(study["contexts"][1], banded=True)
    assert "préoccupation" not in emerging.caption  # bands refused for an emerging territory
    html = figures.build_fragilities_figure(study["contexts"][1]).to_html()
    assert html.startswith('<figure class="et-figure"')
    assert 'alt="Fragilités' in html
    assert "data:image/png;base64," in html


def test_caching_canvas_draws_the_bytes_agg_draws(study, monkeypatch):
    """Shared renderers, cached glyphs and the single drawing change no byte, cold or warm.

    The reference is matplotlib's own Agg canvas and ``savefig`` (the former drawing).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from evalterritoire.report import canvas

    def draw_all() -> dict[str, bytes]:
        return draw_report_figures(study["contexts"])

    canvas.clear_caches()
    cold, warm = draw_all(), draw_all()
    assert all(map(len, (canvas._RENDERERS, canvas._LAYOUTS, canvas._GLYPHS, canvas._HEIGHTS)))
    monkeypatch.setattr(figures, "new_canvas", FigureCanvasAgg)
    monkeypatch.setattr(figures, "_finish", savefig_finish)
    reference = draw_all()
    assert len(reference) > 20
    assert differing_figures(cold, reference) == []
    assert differing_figures(warm, reference) == []
    canvas.clear_caches()


def _capture_figures(monkeypatch) -> list:
    """Keep the matplotlib figures that :mod:`evalterritoire.report.figures` draws."""
    kept: list = []
    original = figures._finish

    def finish(key, fig, alt, caption):
        kept.append(fig)
        return original(key, fig, alt, caption)

    monkeypatch.setattr(figures, "_finish", finish)
    return kept


def test_fragility_labels_sit_right_of_the_interval(study, monkeypatch):
    import dataclasses

    kept = _capture_figures(monkeypatch)
    t1 = study["contexts"][1]
    # design intervals, wide ones included, so that a label could collide with its interval
    rows = [
        {**r, "ci_low": r["estimate"] - 0.4 * (i + 1), "ci_high": min(r["estimate"] + 0.4 * (i + 1), 10)}
        for i, r in enumerate(t1.fragilities)
    ]  # fmt: skip
    figure = figures.build_fragilities_figure(dataclasses.replace(t1, fragilities=tuple(rows)))
    assert figure.png[:8] == b"\x89PNG\r\n\x1a\n"
    fig = kept[-1]
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if "/10" in t.get_text()]
    assert len(labels) == 8
    by_y = {round(float(line.get_ydata()[0]), 6): line for line in ax.lines}
    axes_box = ax.get_window_extent(renderer)
    for label in labels:
        box = label.get_window_extent(renderer)
        y = round(float(label.xy[1]), 6)
        ci_right = ax.transData.transform((max(by_y[y].get_xdata()), y))[0]
        assert box.x0 > ci_right  # starts right of the interval's upper end
        assert box.x1 <= axes_box.x1 + 0.5  # and stays inside its panel
        assert "n\u00a0=" in label.get_text()


def test_waves_figure_shows_n_and_intervals(study, monkeypatch):
    kept = _capture_figures(monkeypatch)
    t3 = study["contexts"][3]
    figure = figures.build_waves_figure(t3)
    assert "intervalle de confiance à 95" in figure.caption
    assert "par vague : 2024 : n\u00a0=\u00a024, 2025 : n\u00a0=\u00a024." in figure.caption
    assert "n\u00a0=\u00a024" in figure.alt
    assert re.search(r"\d,\d \[\d,\d\u00a0; \d,\d\]", figure.alt)  # value [interval]
    fig = kept[-1]
    first = fig.axes[0]
    bottom = fig.axes[6]  # 3 × 3 panels sharing x: the bottom row carries the labels
    ticks = [t.get_text() for t in bottom.get_xticklabels()]
    assert ticks == ["2024\nn\u00a0=\u00a024", "2025\nn\u00a0=\u00a024"]
    vertical = [
        ln for ln in first.lines if len(set(ln.get_xdata())) == 1 and len(ln.get_xdata()) == 2
    ]
    assert len(vertical) == 2  # one interval per wave
    # T5 (3 respondents) is flagged at each wave
    t5_figure = figures.build_waves_figure(study["contexts"][5])
    assert "lecture indicative" in t5_figure.caption


# --------------------------------------------------------------------------- HTML export
def _notebook(*outputs) -> nbformat.NotebookNode:
    cell = new_code_cell("display(x)", outputs=list(outputs), execution_count=1)
    nb = new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    return nb


def test_export_html_is_offline_without_code_or_prompts():
    nb = _notebook(
        new_output("display_data", data={"text/html": "<p>Bonjour</p>", "text/plain": "x"}),
        new_output("stream", name="stderr", text="UserWarning: noisy"),
    )
    html = export_html(nb, title="Essai <1>")
    assert "<p>Bonjour</p>" in html
    assert "display(x)" not in html
    assert "noisy" not in html
    assert "In&nbsp;[" not in html
    assert "In [" not in html
    assert "<title>Essai &lt;1&gt;</title>" in html
    assert not re.search(r"<script[^>]*src=|<link[^>]*href=\s*[\"']?https?:", html, re.I)
    assert "http" not in html
    assert "@media print" in html
    assert html == export_html(nb, title="Essai <1>")
    assert 'id="cell-1"' in html


def test_export_html_refuses_tracebacks():
    nb = _notebook(new_output("error", ename="KeyError", evalue="'x'", traceback=["Traceback"]))
    with pytest.raises(RenderError, match="KeyError"):
        export_html(nb, title="x")


# --------------------------------------------------------------------------- file names
@pytest.mark.parametrize(
    "code", ["../../etc/passwd", "a/b", "a\\b", ".hidden", "national", "CON", "é;rm -rf", "-x"]
)
def test_safe_filename_cannot_escape(code, tmp_path):
    name = safe_filename(code)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", name)
    assert not name.startswith("-")
    assert (tmp_path / f"{name}.html").resolve().parent == tmp_path.resolve()
    assert name != code


def test_safe_filename_keeps_plain_codes_and_stays_injective():
    assert safe_filename("200054781") == "200054781"
    assert safe_filename("2A004") == "2A004"
    assert safe_filename("a/b") != safe_filename("a_b")
    assert safe_filename("a/b") != safe_filename("a\\b")
    with pytest.raises(RenderError):
        safe_filename("  ")


# --------------------------------------------------------------------------- manifest
def _run_outputs(study, reports_dir: Path) -> tuple[list[Path], list[Path]]:
    build = reports_dir.parent / "build"
    build.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        {"domain": ["T1", "T2", "T3"], "variable": ["a", "a", "b"], "estimate": [1.5, 2.25, 3.0]}
    )
    table.to_parquet(build / "estimates.parquet", index=False)
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "index.html").write_text("<p>un</p>\n<p>deux</p>\n", encoding="utf-8")
    return [build / "estimates.parquet"], [reports_dir / "index.html"]


def test_manifest_compare_identical_then_names_first_difference(study, tmp_path):
    config = study["config"].with_overrides(reports_dir=tmp_path / "a" / "reports")
    artefacts, reports = _run_outputs(study, config.reports_dir)
    manifest = build_manifest(
        config, artefacts=artefacts, reports=reports, parameters={"engine": "papermill"}
    )
    assert manifest == build_manifest(
        config, artefacts=artefacts, reports=reports, parameters={"engine": "papermill"}
    )
    paths = [e["path"] for e in manifest["artefacts"] + manifest["reports"]]
    assert paths == ["../build/estimates.parquet", "index.html"]
    assert all(not p.startswith("/") for p in paths)
    assert {e["path"] for e in manifest["inputs"]} >= {"evalterritoire:data/codebook.yaml"}
    assert manifest["parameters"]["random_state"] == 7
    assert manifest["environment"]["packages"]["pandas"] == pd.__version__
    written = write_manifest(manifest, config.reports_dir / "manifest.json")
    assert load_manifest(written) == manifest

    # an identical second run
    other = tmp_path / "b" / "reports"
    shutil.copytree(config.reports_dir.parent, other.parent)
    shutil.copy(config.path, other.parent.parent / config.path.name)  # unchanged study file
    results = compare_artefacts(written, other, kinds=("artefact", "report"))
    assert [r.status for r in results] == ["identical", "identical"]
    assert format_comparisons(results).endswith("2/2 identical")

    # one cell changes in the second run
    changed = pd.read_parquet(other.parent / "build" / "estimates.parquet")
    changed.loc[1, "estimate"] = 2.5
    changed.to_parquet(other.parent / "build" / "estimates.parquet", index=False)
    (other / "index.html").write_text("<p>un</p>\n<p>trois</p>\n", encoding="utf-8")
    results = {r.path: r for r in compare_artefacts(written, other, kinds=("artefact", "report"))}
    table = results["../build/estimates.parquet"]
    assert table.status == "different"
    assert "row 1" in table.detail
    assert "'estimate'" in table.detail
    assert "2.25" in table.detail
    assert "2.5" in table.detail
    assert "domain=T2" in table.detail
    assert results["index.html"].detail == "first difference at line 2"
    (other / "index.html").unlink()
    assert compare_artefacts(written, other, kinds=("report",))[0].status == "missing"


def _wave_study(root: Path, wave: int, previous: str = "") -> Path:
    """A study file calibrated on a margins CSV (``marges_<wave>.csv``)."""
    folder = root / "surveys" / str(wave)
    folder.mkdir(parents=True)
    (folder / "export.csv").write_text("id_repondant\n1\n", encoding="utf-8")
    (folder / f"marges_{wave}.csv").write_text(
        "variable,level,total\nid_type_repondant,elu_maire,120\nid_type_repondant,association,380\n",
        encoding="utf-8",
    )
    study = folder / "study.toml"
    study.write_text(
        f'[study]\nname = "Étude calée"\nwave = {wave}\nexports = ["export.csv"]\n'
        + (f'previous_waves = ["{previous}"]\n' if previous else "")
        + 'random_state = 7\nmin_n = 10\nbuild_dir = "../../build/{wave}"\n'
        'reports_dir = "../../reports/{wave}"\n\n'
        '[calibration]\nmethod = "poststratify"\nmargins = "marges_{wave}.csv"\n',
        encoding="utf-8",
    )
    return study


def test_manifest_records_margins_templates_and_earlier_waves(tmp_path):
    from evalterritoire.config import load_study

    earlier = load_study(_wave_study(tmp_path, 2024))
    config = load_study(_wave_study(tmp_path, 2025, previous="../2024/study.toml"))
    templates = [TEMPLATES / "territory_report.py", TEMPLATES / "annual_study.py"]
    rendering = {"engine": "warm", "formats": ("html",), "territory_template": "territory_report",
                 "study_template": "annual_study", "workers": 2, "dask_scheduler": None}  # fmt: skip
    manifest = build_manifest(config, previous=[earlier], templates=templates, rendering=rendering)
    roles = {e["path"]: e["role"] for e in manifest["inputs"]}
    assert roles["../../surveys/2025/marges_2025.csv"] == "margins"
    assert roles["../../surveys/2024/marges_2024.csv"] == "previous_margins"
    assert roles["../../surveys/2024/study.toml"] == "previous_study"
    assert roles["../../surveys/2024/export.csv"] == "previous_export"
    assert roles["../../surveys/2025/study.toml"] == "study"
    assert roles["evalterritoire:data/codebook.yaml"] == "codebook"  # recorded once
    assert sorted(p for p, r in roles.items() if r == "template") == sorted(
        os.path.relpath(t, config.reports_dir).replace(os.sep, "/") for t in templates
    )
    params = manifest["parameters"]
    assert params["previous_waves"] == [2024]
    assert params["calibration"]["method"] == "poststratify"
    # what names the outputs is recorded; the worker count is not (it changes no result)
    assert params["rendering"] == {"engine": "warm", "formats": ["html"],
                                   "study_template": "annual_study",
                                   "territory_template": "territory_report"}  # fmt: skip
    again = build_manifest(
        config, previous=[earlier], templates=templates, rendering={**rendering, "workers": 8}
    )
    assert again == manifest

    # one margin changes: the comparison names the margins file, and only it
    written = write_manifest(manifest, config.reports_dir / "manifest.json")
    results = compare_artefacts(written, config.reports_dir, kinds=("input",))
    assert all(r.is_identical for r in results)
    margins = tmp_path / "surveys" / "2025" / "marges_2025.csv"
    margins.write_text(margins.read_text(encoding="utf-8").replace("380", "381"), encoding="utf-8")
    changed = [r for r in compare_artefacts(written, config.reports_dir, kinds=("input",))
               if not r.is_identical]  # fmt: skip
    assert [(r.path, r.status) for r in changed] == [
        ("../../surveys/2025/marges_2025.csv", "different")
    ]
    assert "different  ../../surveys/2025/marges_2025.csv" in format_comparisons(changed)
    # so does a change of an earlier wave's margins, used for its stages and the transitions
    old = tmp_path / "surveys" / "2024" / "marges_2024.csv"
    old.write_text(old.read_text(encoding="utf-8").replace("120", "121"), encoding="utf-8")
    changed = {r.path for r in compare_artefacts(written, config.reports_dir, kinds=("input",))
               if not r.is_identical}  # fmt: skip
    assert changed == {"../../surveys/2025/marges_2025.csv", "../../surveys/2024/marges_2024.csv"}


def test_manifest_errors_are_typed(study, tmp_path):
    with pytest.raises(ReproduceError, match="not found"):
        build_manifest(study["config"], artefacts=[tmp_path / "nope.parquet"])
    bad = tmp_path / "manifest.json"
    bad.write_text("[]", encoding="utf-8")
    with pytest.raises(ReproduceError, match="not an evalterritoire manifest"):
        load_manifest(bad)


# --------------------------------------------------------------------------- executed notebooks
def _execute(name: str, ctx, context_path: Path, workdir: Path) -> str:
    import papermill

    nb = papermill.execute_notebook(
        str(_ipynb(name, workdir)),
        None,
        parameters={
            "territory": ctx.territory,
            "wave": ctx.wave,
            "context_path": str(context_path),
        },
        kernel_name="python3",
        progress_bar=False,
        cwd=str(workdir),
    )
    return export_html(nb, title=ctx.title)


def _check_executed(html: str) -> None:
    assert "Traceback" not in html
    assert "ReportContext.from_json" not in html  # no code input
    assert "display(HTML" not in html
    assert not re.search(r"<script[^>]*src\s*=\s*[\"']?https?:", html, re.I)
    assert "<script" not in html.lower()
    assert "http" not in html


@pytest.mark.slow
def test_executed_territory_report_is_offline_and_escaped(study, tmp_path, monkeypatch):
    """papermill itself on the template (the fast tests execute it through the warm engine)."""
    ctx = study["contexts"][1]
    html = _execute("territory_report", ctx, study["paths"]["T1"], tmp_path)
    _check_executed(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    in_process = _render_in_process("territory_report", ctx, study["paths"]["T1"], monkeypatch)
    # same content as the in-process rendering used by the fast stage tests
    for fragment in re.findall(r"<h2>[^<]+</h2>", in_process):
        assert fragment in html


@pytest.mark.slow
def test_executed_reports_every_stage_byte_identical_reruns(study, tmp_path):
    for ctx in study["contexts"]:
        key = "national" if ctx.is_national else ctx.territory
        name = "annual_study" if ctx.is_national else "territory_report"
        first = _execute(name, ctx, study["paths"][key], tmp_path)
        _check_executed(first)
        if not ctx.is_national:
            assert GRID.stage(ctx.grid_key).section_title[1:] in first
        assert _execute(name, ctx, study["paths"][key], tmp_path) == first


def test_models_table_shows_odds_ratios_with_exponentiated_intervals() -> None:
    from types import SimpleNamespace

    from evalterritoire.report.tables import render_models_table

    unweighted = "modèle mixte non pondéré : erreurs-types du modèle, pas du plan"
    rows = [
        {"model": "m_logit", "kind": "logistic", "term": "x", "label": "Présence d'un QPV",
         "estimate": 0.5, "ci_low": 0.1, "ci_high": 0.9, "p_value": 0.01, "odds_ratio": 1.6487,
         "n": 1200, "n_psu": 80, "flags": "territoire influent : T7",
         "variance": "taylor_small_sample"},
        {"model": "m_logit", "kind": "logistic", "term": "cut_0/1", "label": "Seuil",
         "estimate": -3.5, "ci_low": -4.0, "ci_high": -3.0, "p_value": 0.0, "odds_ratio": None,
         "n": 1200, "n_psu": 80, "flags": ""},
        {"model": "m_mixed", "kind": "mixed", "term": "x", "label": "<script>x</script>",
         "estimate": 1.25, "ci_low": 1.0, "ci_high": 1.5, "p_value": 0.0001, "odds_ratio": None,
         "n": 900, "n_psu": 60, "flags": unweighted, "variance": "gls_taylor"},
        {"model": "m_mixed", "kind": "mixed", "term": "var_groupe", "label": "Variance",
         "estimate": 0.25, "ci_low": None, "ci_high": None, "p_value": None, "odds_ratio": None,
         "n": 900, "n_psu": 60, "flags": unweighted + "; composante de variance (sans erreur-type)"},
        {"model": "m_mixed", "kind": "mixed", "term": "var_residuelle", "label": "Variance",
         "estimate": 0.75, "ci_low": None, "ci_high": None, "p_value": None, "odds_ratio": None,
         "n": 900, "n_psu": 60, "flags": unweighted + "; composante de variance (sans erreur-type)"},
    ]  # fmt: skip
    html_text = render_models_table(SimpleNamespace(models=rows))
    assert html_text.count("<table") == 2
    assert "Rapport de cotes" in html_text
    assert "1,65" in html_text
    assert "[1,11\u00a0; 2,46]" in html_text  # exp(0.1), exp(0.9)
    assert "territoire influent : T7" in html_text
    assert "Seuil" not in html_text  # cut-points stay in models.parquet
    assert "[1,00\u00a0; 1,50]" in html_text
    assert "erreurs-types du modèle" in html_text
    assert html_text.count("corrigés pour le petit nombre") == 1  # the logistic caption
    assert html_text.count("grappes regroupant les territoires") == 1  # the mixed caption
    assert "part entre territoires 25" in html_text  # 0.25 / (0.25 + 0.75)
    assert html_text.count("modèle mixte non pondéré") == 1  # said once, under the caption
    assert "<script>" not in html_text
    assert "&lt;script&gt;" in html_text
