"""The publication around the reports: index, map, navigation, downloads, parameters, print."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import os
import re
import stat
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from _synthetic_reports import STAGES, make_artefacts, make_config

from evalterritoire.cli import main
from evalterritoire.config import load_study
from evalterritoire.errors import RenderError, StudyConfigError
from evalterritoire.manifest import safe_filename, write_manifest
from evalterritoire.render.downloads import build_download_tables, download_links, write_downloads
from evalterritoire.render.geomap import load_geometry, render_stage_map, stage_colours
from evalterritoire.render.index import build_index_rows, render_index
from evalterritoire.render.navigation import (
    TOC_PLACEHOLDER,
    add_table_of_contents,
    render_navigation,
)
from evalterritoire.render.params import (
    apply_parameters,
    check_parameters,
    declared_parameters,
    render_observatory,
    render_parameter_notes,
)
from evalterritoire.report.build import build_contexts

TEMPLATES = Path(__file__).resolve().parents[1] / "src" / "evalterritoire" / "data" / "templates"
TERRITORY_TEMPLATE = TEMPLATES / "territory_report.py"


@pytest.fixture(scope="module")
def contexts(codebook, tmp_path_factory):
    root = tmp_path_factory.mktemp("publication")
    return build_contexts(make_config(root), codebook, make_artefacts(codebook))


def _territory(contexts, code="T4"):
    return next(c for c in contexts if c.territory == code and not c.is_national)


def _square(code, x, y):
    ring = [[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]
    return {"type": "Feature", "id": code, "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip


def _geojson(tmp_path, features):
    path = tmp_path / "t.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), "utf-8")
    return path


# --------------------------------------------------------------------------- map
def test_map_links_each_territory_coloured_by_stage_with_a_legend(contexts, tmp_path):
    codes = [*sorted(STAGES), "OUT"]
    path = _geojson(tmp_path, [_square(c, i, 45) for i, c in enumerate(codes)])
    rows = build_index_rows(contexts)
    names = list(contexts[0].stage_names)
    svg = render_stage_map(load_geometry(path), rows, names)
    colours = stage_colours(len(names))
    for row in rows:
        link = re.search(rf'<a href="{re.escape(row["href"])}"><path d="[^"]+" fill="(#\w+)">', svg)
        assert link, row["code"]
        assert link.group(1) == colours[row["stage"]]
    assert svg.count("<a href=") == len(rows)  # the territory outside the wave has no link
    assert 'fill="#d9d9d9" class="et-map-nodata"' in svg
    assert 'role="img"' in svg
    assert "<title id=" in svg
    assert "<desc id=" in svg
    for name in names:
        assert name in svg  # legend, in words (not colour alone)
    assert len(set(colours)) == len(colours)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "Feature"}, "FeatureCollection"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}}]},
         "no territory code"),
        ({"type": "FeatureCollection", "features": [_square("A", 0, 0), _square("A", 1, 0)]},
         "appears twice"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "id": "A",
          "geometry": {"type": "Point", "coordinates": [0, 0]}}]}, "Polygon or MultiPolygon"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "id": "A",
          "geometry": {"type": "Polygon", "coordinates": [[["x", 1]]]}}]}, "invalid coordinates"),
    ],
)  # fmt: skip
def test_unusable_geometry_is_one_clear_error(tmp_path, payload, message):
    path = tmp_path / "g.geojson"
    path.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(RenderError, match=message):
        load_geometry(path)


def test_simulated_study_declares_its_geometry_and_it_covers_every_territory():
    root = Path(__file__).resolve().parents[1] / "surveys" / "2025"
    config = load_study(root / "study.toml")
    assert config.report.geometry == (root / "territoires.geojson").resolve()
    shapes = {s.code for s in load_geometry(config.report.geometry)}
    context = pd.read_csv(root / "contexte_territoires.csv", dtype=str)
    assert shapes == set(context.iloc[:, 0])


def test_missing_geometry_or_reference_docx_is_refused(tmp_path):
    with pytest.raises(StudyConfigError, match=r"report.geometry.*file not found"):
        make_config(tmp_path, report='geometry = "nope.geojson"')
    with pytest.raises(StudyConfigError, match=r"report.docx_reference.*file not found"):
        make_config(tmp_path, report='docx_reference = "nope.docx"')


# --------------------------------------------------------------------------- index
def test_index_is_offline_searchable_sortable_filterable(contexts, tmp_path):
    geometry = _geojson(tmp_path, [_square(c, i, 45) for i, c in enumerate(sorted(STAGES))])
    old = os.umask(0o022)
    try:
        path = render_index(contexts, tmp_path / "index.html", geometry=geometry)
    finally:
        os.umask(old)
    page = path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    # offline: the DataTables bundle is embedded, nothing is fetched
    assert "injectModule" in page
    assert "dt_src_b64" not in page
    assert not re.search(r"""(src|href)=["']?https?://""", page.replace("href=https://itables", ""))
    assert not re.search(r"""import\s*\(?\s*["']https?://""", page)
    # the table: fixed id, French interface, every requested column, one filter box each
    assert 'id="et-index-table"' in page
    assert "Rechercher :" in page
    for column in ("Territoire", "Région", "Niveau", "Stade", "Stade précédent", "Évolution",
                   "Indicatif"):  # fmt: skip
        assert re.search(rf">{column}</th>", page), column  # the static copy (no JavaScript)
    assert '"column_filters": "footer"' in page
    assert '"orderData"' in page  # stages sort by maturity order, not alphabetically
    # the map and the synthesis link
    assert '<figure class="et-map">' in page
    assert 'href="synthese.html"' in page
    assert page == render_index(contexts, tmp_path / "again.html", geometry=geometry).read_text(
        encoding="utf-8"
    )


def test_index_rows_give_previous_stage_and_change(contexts):
    ctx = _territory(contexts, "T3")
    history = (
        {"wave": ctx.wave - 1, "stage": ctx.stage + 1, "stage_label": "Avant"},
        {"wave": ctx.wave, "stage": ctx.stage, "stage_label": ctx.stage_label},
    )
    rows = build_index_rows([replace(ctx, history=history)])
    assert rows[0]["previous_label"] == "Avant"
    assert rows[0]["change"] == "recul"
    other = replace(_territory(contexts, "T4"), history=())
    both = {
        r["code"]: r["change"] for r in build_index_rows([replace(ctx, history=history), other])
    }
    assert both["T4"] == "nouveau"
    assert build_index_rows([replace(ctx, history=())])[0]["change"] == "—"  # first wave
    assert rows[0]["region"] == str(ctx.identity.get("region") or "")


# --------------------------------------------------------------------------- navigation
def test_navigation_links_back_to_the_index_other_waves_and_data(contexts):
    ctx = _territory(contexts)
    history = tuple({"wave": w, "stage": 0, "stage_label": "x"} for w in (2023, 2024, 2025))
    nav = render_navigation(replace(ctx, history=history))
    assert 'href="../index.html"' in nav
    stem = safe_filename(ctx.territory)
    assert f'href="../../2023/territoires/{stem}.html"' in nav
    assert f'href="../../2024/territoires/{stem}.html"' in nav
    assert '<span aria-current="page">2025</span>' in nav
    assert 'href="#donnees"' in nav
    assert nav.endswith(TOC_PLACEHOLDER)


def test_table_of_contents_lists_every_section_with_anchors():
    page = (
        f"<h1>T</h1>{TOC_PLACEHOLDER}<h2>1. Carte d'identité</h2><p>x</p>"
        '<h2 id="donnees">8. Données</h2><h2>1. Carte d&#x27;identité</h2>'
    )
    out = add_table_of_contents(page)
    assert TOC_PLACEHOLDER not in out
    ids = re.findall(r'<h2 id="([^"]+)"', out)
    assert ids == ["1-carte-d-identite", "donnees", "1-carte-d-identite-2"]
    assert [f"#{i}" for i in ids] == re.findall(r'<li><a href="([^"]+)"', out)
    assert add_table_of_contents("<h2>x</h2>") == "<h2>x</h2>"


# --------------------------------------------------------------------------- downloads
def _read_csv(path):
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM for Excel
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))


def test_downloads_csv_xlsx_and_datapackage(contexts, tmp_path, codebook):
    ctx = _territory(contexts)
    profile = [dict(p) for p in ctx.profile]
    profile[0]["label"] = '=HYPERLINK("http://x")'
    ctx = replace(ctx, profile=tuple(profile))
    special = [{"key": c.key, "code": c.code, "label": c.label_fr}
               for c in codebook.special_codes.values()]  # fmt: skip
    old = os.umask(0o022)
    try:
        files = write_downloads(ctx, tmp_path, stem="T4", special_codes=special)
    finally:
        os.umask(old)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files)
    rows = _read_csv(tmp_path / "T4" / "profil.csv")
    header, first = rows[0], rows[1]
    assert first[header.index("label")].startswith("'=")  # formula neutralised
    score = first[header.index("score")]
    assert re.fullmatch(r"-?\d+(,\d+)?", score)
    assert "," in score
    package = json.loads((tmp_path / "T4" / "datapackage.json").read_text(encoding="utf-8"))
    resources = {r["name"]: r for r in package["resources"]}
    assert set(resources) == {p.stem for p in (tmp_path / "T4").glob("*.csv")}
    for name, resource in resources.items():
        fields = [f["name"] for f in resource["schema"]["fields"]]
        assert fields == _read_csv(tmp_path / "T4" / resource["path"])[0], name
        assert resource["dialect"]["delimiter"] == ";"
    number = next(f for f in resources["profil"]["schema"]["fields"] if f["name"] == "score")
    assert number["type"] == "number"
    assert number["decimalChar"] == ","
    assert {c["key"] for c in package["specialCodes"]} == set(codebook.special_codes)
    items = next(r for r in resources.values() if any(f["name"] == "variable" and
                 "categories" in f for f in r["schema"]["fields"]))  # fmt: skip
    assert items["schema"]["fields"]
    import openpyxl

    book = openpyxl.load_workbook(tmp_path / "T4" / "T4.xlsx")
    assert set(book.sheetnames) == set(resources)
    sheet = book["profil"]
    assert str(sheet.cell(2, header.index("label") + 1).value).startswith("'=")
    again = write_downloads(ctx, tmp_path / "b", stem="T4", special_codes=special)
    assert [p.read_bytes() for p in files] == [p.read_bytes() for p in again]
    assert "models" not in json.dumps(list(resources))  # national tables stay national
    assert 'href="../donnees/T4/T4.xlsx"' in download_links(ctx, stem="T4")


def test_download_links_list_exactly_the_tables_built(contexts):
    """The « Données » block names each table the downloads hold, in their order, and no other."""
    import re

    checked = 0
    for ctx in contexts:
        links = download_links(ctx, stem="x")
        names = re.findall(r'href="\.\./donnees/x/([^"/]+)\.csv"', links)
        assert names == list(build_download_tables(ctx))
        checked += bool(names)
    empty = replace(_territory(contexts), profile=(), fragilities=())
    assert "profil.csv" not in download_links(empty, stem="x")
    assert checked >= 2


def test_suppressed_rows_stay_suppressed_in_downloads(contexts, tmp_path):
    ctx = _territory(contexts)
    rows = [dict(r) for r in ctx.partnership]
    assert rows
    rows[0]["status"] = "suppressed"
    rows[0]["estimate"] = 0.123456
    ctx = replace(ctx, partnership=tuple(rows))
    table = build_download_tables(ctx)["partenariats"]
    first = table.iloc[0]
    assert first["status"] == "suppressed"
    assert first["label"] == rows[0]["label"]
    for column in ("estimate", "ci_low", "ci_high", "se", "n"):
        if column in table.columns:
            assert pd.isna(first[column]), column
    write_downloads(ctx, tmp_path, stem="T4")
    text = (tmp_path / "T4" / "partenariats.csv").read_text(encoding="utf-8-sig")
    assert "0,123456" not in text
    import openpyxl

    sheet = openpyxl.load_workbook(tmp_path / "T4" / "T4.xlsx")["partenariats"]
    assert 0.123456 not in [c.value for row in sheet.iter_rows() for c in row]


# --------------------------------------------------------------------------- parameters
def test_navigation_links_forward_to_the_later_waves_built_with_it(contexts):
    ctx = _territory(contexts)
    history = tuple({"wave": w, "stage": 0, "stage_label": "x"} for w in (2024, 2025))
    nav = render_navigation(replace(ctx, history=history, wave=2024, later_waves=(2025, 2026)))
    stem = safe_filename(ctx.territory)
    assert '<span aria-current="page">2024</span>' in nav
    assert f'href="../../2025/territoires/{stem}.html"' in nav
    assert f'href="../../2026/territoires/{stem}.html"' in nav


def _written_contexts(contexts, folder):
    for c in contexts:
        name = "national" if c.is_national else safe_filename(c.territory)
        (folder / f"{name}.json").write_text(c.to_json(), encoding="utf-8")
    return folder


def test_comparison_group_replaces_the_similar_territories(contexts, tmp_path):
    from evalterritoire.report.prose import render_essentiel, render_neighbours
    from evalterritoire.report.tables import render_profile_table

    folder = _written_contexts(contexts, tmp_path)
    ctx = _territory(contexts, "T1")
    assert ctx.neighbours
    assert not render_parameter_notes(ctx)
    out = apply_parameters(ctx, comparison_group="T3; T2", context_path=str(folder / "T1.json"))
    group = [_territory(contexts, "T2"), _territory(contexts, "T3")]
    for p in out.profile:
        scores = [
            q["score"] for g in group for q in g.profile
            if q["dimension"] == p["dimension"] and q.get("score") is not None
            and q.get("status") != "suppressed"
        ]  # fmt: skip
        expected = sum(scores) / len(scores) if scores else None
        assert p["neighbours"] == pytest.approx(expected), p["dimension"]
    assert [n["territory"] for n in out.neighbours] == ["T2", "T3"]
    annex = html.unescape(render_neighbours(out))
    assert "Groupe de comparaison" in annex
    assert "Distance" not in annex
    assert all(g.territory_name in annex for g in group)
    assert "Groupe de comparaison" in html.unescape(render_profile_table(out))
    box = html.unescape(render_essentiel(out))
    assert "Face au groupe de comparaison" in box
    assert "territoires similaires" not in box
    sentence = " ".join(out.essentiel["comparison"])
    assert "groupe de comparaison retenu par l'évaluateur" in sentence
    assert "deux territoires" in sentence
    assert "choisi par l'évaluateur (2 territoires" in html.unescape(render_parameter_notes(out))
    with pytest.raises(RenderError, match="no territory 'T99'"):
        apply_parameters(ctx, comparison_group="T2;T99", context_path=str(folder / "T1.json"))
    with pytest.raises(RenderError, match="territory of the report itself"):
        apply_parameters(ctx, comparison_group="T1", context_path=str(folder / "T1.json"))


def test_template_declares_the_evaluator_parameters():
    declared = declared_parameters(TERRITORY_TEMPLATE)
    assert {k: v["type"] for k, v in declared.items() if k not in
            {"territory", "wave", "context_path", "grid_path"}} == {
        "observatory_name": "str", "observatory_logo": "str", "suppression_threshold": "int",
        "band_thresholds": "str", "stage_override": "str", "equal_type_weight": "bool",
        "comparison_group": "str",
    }  # fmt: skip


def test_parameters_are_checked_and_converted():
    checked = check_parameters(
        TERRITORY_TEMPLATE,
        {"suppression_threshold": "12", "equal_type_weight": "oui", "observatory_name": "Obs"},
    )
    assert checked == {"suppression_threshold": 12, "equal_type_weight": True,
                       "observatory_name": "Obs"}  # fmt: skip
    with pytest.raises(StudyConfigError, match=r"unknown report parameter 'nonsense'.*accepted"):
        check_parameters(TERRITORY_TEMPLATE, {"nonsense": "42"})
    with pytest.raises(StudyConfigError, match="suppression_threshold: expects int"):
        check_parameters(TERRITORY_TEMPLATE, {"suppression_threshold": "beaucoup"})
    with pytest.raises(StudyConfigError, match="set by evalterritoire"):
        check_parameters(TERRITORY_TEMPLATE, {"context_path": "/etc/passwd"})


def test_cli_rejects_unknown_or_mistyped_parameters_and_publishing_out(tmp_path, capsys):
    config = make_config(tmp_path)
    code = main(["report", str(config.path), "-p", "nonsense=42"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown report parameter 'nonsense'" in err
    assert "Traceback" not in err
    assert main(["report", str(config.path), "-p", "equal_type_weight=peut-être"]) == 2
    assert "expects bool" in capsys.readouterr().err
    inside = config.reports_dir / "variante"
    assert main(["report", str(config.path), "--out", str(inside)]) == 2
    assert "outside the published reports" in capsys.readouterr().err


def test_applied_parameters_change_the_report_and_say_so(contexts):
    ctx = _territory(contexts, "T1")
    same = apply_parameters(ctx)
    assert same is ctx
    assert render_parameter_notes(ctx) == ""
    target = [n for n in ctx.stage_names if n != ctx.stage_label][-1]
    out = apply_parameters(ctx, stage_override=target, suppression_threshold=10**6,
                           equal_type_weight=True)  # fmt: skip
    assert out.stage_label == target
    assert out.stage_grid != ctx.stage_grid
    notes = html.unescape(render_parameter_notes(out))
    assert "Stade retenu par l'évaluateur" in notes
    assert ctx.stage_label in notes
    assert all(r.get("estimate") is None for r in out.partnership)
    assert all(r.get("status") == "suppressed" for r in out.partnership)
    # masked everywhere — scores, « ne sait pas » shares, nested records and what mirrors
    # them, earlier waves — and the quality box counts the variant's figures
    from evalterritoire.report.quality import _records

    shown = [
        (f.name, r) for f in dataclasses.fields(out) if f.name not in {"quality", "identity"}
        for r in _records([getattr(out, f.name)]) if r["status"] != "suppressed"
    ]  # fmt: skip
    assert shown == []
    assert all(p.get("score") is None for p in out.profile)
    assert out.quality["n_figures"] == ctx.quality["n_figures"]
    assert out.quality["suppressed"] == out.quality["n_figures"] > ctx.quality["suppressed"]
    assert out.publication["min_cell"] == 10**6  # the legends and the annex state its rule
    # « regards croisés » on a territory whose actor types are shown (not merged away)
    types = (
        {"label": "Collectivités", "type": "collectivite", "n": 10, "x": 3.0, "n_x": 10},
        {"label": "Associations", "type": "association", "n": 12, "x": 4.0, "n_x": 12},
    )
    typed = dataclasses.replace(ctx, by_type=types, by_type_items={"trust": "x"})
    crossed = apply_parameters(typed, equal_type_weight=True)
    assert crossed.by_type[-1]["label"].startswith("Moyenne à poids égal")
    assert crossed.by_type[-1]["x"] == pytest.approx(3.5)  # each type weighs the same
    assert crossed.by_type[:2] == types
    with pytest.raises(RenderError, match="choose among"):
        apply_parameters(ctx, stage_override="Nulle part")


def test_written_parts_follow_the_evaluator_parameters(contexts):
    """The narrative was written at build time for the computed stage and the study's rule:
    under a stricter threshold it quotes no figure, under an override it answers the retained
    stage's questions and proposes that stage's recommendations."""
    ctx = _territory(contexts, "T1")
    assert ctx.essentiel.get("strengths") or ctx.essentiel.get("attention")
    strict = apply_parameters(ctx, suppression_threshold=10**6)
    assert set(strict.essentiel) <= {"stage"}
    assert [a["question"] for a in strict.answers] == list(ctx.stage_grid["questions"])
    assert all("seuil de masquage" in a["sentences"][0] for a in strict.answers)
    assert strict.recommendation_reasons == ()
    assert strict.stage_change == {}
    target = [n for n in ctx.stage_names if n != ctx.stage_label][-1]
    moved = apply_parameters(ctx, stage_override=target)
    assert [a["question"] for a in moved.answers] == list(moved.stage_grid["questions"])
    assert moved.recommendations == tuple(moved.stage_grid["recommendations"])
    assert moved.model_sentences == ()
    assert ctx.stage_label in moved.answers[0]["sentences"][0]


def test_band_thresholds_only_where_the_stage_has_bands(contexts):
    banded = next(c for c in contexts if not c.is_national and c.stage_grid.get("bands"))
    bands = banded.stage_grid["bands"]
    lo, hi = bands[0]["low"], bands[-1]["high"]
    cuts = [lo + (hi - lo) * (i + 1) / len(bands) for i in range(len(bands) - 1)]
    text = ";".join(f"{c:.2f}" for c in cuts)
    out = apply_parameters(banded, band_thresholds=text)
    assert [round(b["high"], 2) for b in out.stage_grid["bands"][:-1]] == [
        round(c, 2) for c in cuts
    ]
    with pytest.raises(RenderError, match="increasing cut point"):
        apply_parameters(banded, band_thresholds=f"{hi};{lo}")
    unbanded = next(c for c in contexts if not c.is_national and not c.stage_grid.get("bands"))
    assert apply_parameters(unbanded, band_thresholds=text) is unbanded


def test_observatory_logo_is_embedded_and_checked(tmp_path):
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>', encoding="utf-8")
    out = render_observatory("Observatoire <Sud>", str(logo))
    assert 'src="data:image/svg+xml;base64,' in out
    assert "Observatoire &lt;Sud&gt;" in out
    with pytest.raises(RenderError, match="PNG, JPEG or SVG"):
        render_observatory("x", str(tmp_path / "logo.gif"))
    assert render_observatory() == ""


# --------------------------------------------------------------------------- permissions, print
def test_manifest_is_written_with_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_manifest({"a": 1}, tmp_path / "manifest.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_print_rules_keep_words_whole_and_number_pages():
    from evalterritoire.render.export import load_report_css

    css = load_report_css()
    assert "hyphens: auto" not in css
    assert "overflow-wrap: anywhere" not in css
    assert "hyphens: manual" in css
    assert 'counter(page) " / " counter(pages)' in css
    assert "string(et-title)" in css
    assert "@page :first" in css
    assert "break-after: avoid" in css


def test_pdf_is_tagged_and_titled_by_the_territory():
    from evalterritoire.render.export import wrap_html
    from evalterritoire.render.outputs import render_pdf

    pdf = render_pdf(wrap_html("<h1>Val d'Oise</h1><h2>1. Partie</h2><p>Texte.</p>",
                               title="Communauté Val d'Oise"))  # fmt: skip
    streams = [
        zlib.decompress(m) for m in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S)
    ]
    body = pdf + b"".join(streams)
    assert b"/StructTreeRoot" in body
    assert b"/MarkInfo" in body
    title = re.search(rb"/Title\s*(\((?:[^)\\]|\\.)*\)|<[0-9A-Fa-f]+>)", body)
    assert title
    raw = title.group(1)
    text = (bytes.fromhex(raw[1:-1].decode()).decode("utf-16") if raw.startswith(b"<")
            else raw[1:-1].decode("latin-1"))  # fmt: skip
    assert "Val d" in text


def test_docx_uses_the_reference_document(tmp_path):
    from evalterritoire.render.export import wrap_html
    from evalterritoire.render.outputs import render_docx

    page = wrap_html("<h1>Territoire A</h1><p>Texte.</p>", title="Territoire A")
    with pytest.raises(RenderError, match="reference DOCX not found"):
        render_docx(page, reference_doc=tmp_path / "nope.docx")
    reference = tmp_path / "ref.docx"
    import subprocess

    data = subprocess.run(["pandoc", "--print-default-data-file", "reference.docx"],
                          capture_output=True, check=True).stdout  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(reference, "w") as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == "word/styles.xml":
                content = content.replace(b"4F81BD", b"C0FFEE")
            dst.writestr(info, content)
    docx = render_docx(page, reference_doc=reference)
    with zipfile.ZipFile(io.BytesIO(docx)) as z:
        assert b"C0FFEE" in z.read("word/styles.xml")
        assert b"Territoire A" in z.read("docProps/core.xml")
