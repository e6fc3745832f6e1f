"""The evaluation grid and the report spec as data: loading, validation, any number of stages."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from _synthetic_reports import make_artefacts, make_config

from evalterritoire.errors import GridError, ReportSpecError
from evalterritoire.report import tables
from evalterritoire.report.build import build_contexts
from evalterritoire.report.grid import (
    CHART_IDS,
    default_grid_path,
    load_grid,
)
from evalterritoire.report.spec import default_report_spec_path, load_report_spec

GRID = yaml.safe_load(default_grid_path().read_text(encoding="utf-8"))
SPEC = yaml.safe_load(default_report_spec_path().read_text(encoding="utf-8"))


def _write(tmp_path: Path, data, name: str = "file.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def _grid(**changes) -> dict:
    """The shipped grid with top-level entries replaced."""
    return {**yaml.safe_load(yaml.safe_dump(GRID)), **changes}


def _stage(index: int, **changes) -> dict:
    grid = _grid()
    grid["stages"][index].update(changes)
    return grid


# --------------------------------------------------------------------------- the shipped files
def test_shipped_grid_holds_the_four_stages_and_no_item_id(codebook):
    grid = load_grid()
    assert grid.keys == ("emergence", "structuration", "consolidation", "essaimage")
    assert [s.number for s in grid] == [1, 2, 3, 4]
    assert len(grid.common_sections) == 6
    assert grid.stage("consolidation").band_legend.startswith("Bandes : préoccupation")
    text = default_grid_path().read_text(encoding="utf-8")
    named = [v.id for v in codebook if f" {v.id}" in text or f"-{v.id}" in text]
    assert named == []  # the framework names no questionnaire item


def test_chart_ids_are_the_figures_and_the_stage_tables():
    from evalterritoire.report import figures

    assert set(CHART_IDS) == set(figures.CHARTS) | set(tables.STAGE_TABLES)


def test_shipped_spec_fits_the_shipped_codebook_and_grid(codebook):
    spec = load_report_spec("default", codebook)
    spec.check_grid(load_grid())
    assert set(spec.stages) == set(load_grid().keys)
    assert spec.priority_item("emploi") in codebook
    assert spec.alliance_levels == ("3", "4")
    assert set(spec.by_type) == {"benefit", "burden", "trust"}
    assert set(spec.dimension_labels) == set(codebook.dimensions)


# --------------------------------------------------------------------------- grid errors
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("stages: [a\n", r"grid\.yaml: invalid YAML at line"),
        ("a: &x [1]\nb: *x\n", "aliases are not allowed"),
        ("- a list\n", "top level: expected a mapping, got list"),
    ],
)
def test_grid_file_errors(tmp_path, content, message):
    with pytest.raises(GridError, match=message):
        load_grid(_write(tmp_path, content, "grid.yaml"))


def test_grid_missing_file_is_named(tmp_path):
    with pytest.raises(GridError, match=r"evaluation grid .*absent\.yaml: cannot be read"):
        load_grid(tmp_path / "absent.yaml")


GRID_ERRORS = [
    (lambda: _grid(colours=1), "top level: unknown key.*colours"),
    (lambda: _grid(stages=_grid()["stages"][:1]), "stages: expected a list of at least two"),
    (lambda: _stage(0, posture=""), r"stages\.emergence\.posture: expected a non-empty text"),
    (lambda: _stage(1, key="emergence"), r"stages\[1\]\.key: duplicate stage key 'emergence'"),
    (lambda: _stage(1, key="Stade 2"), r"stages\.Stade 2\.key: a stage key is lower-case"),
    (lambda: _stage(2, number=7), r"stages\.consolidation\.number: expected 3"),
    (lambda: _stage(0, charts=["radar"]), r"stages\.emergence\.charts: unknown chart\(s\) radar"),
    (lambda: _stage(2, bands="likert"), r"stages\.consolidation\.bands: unknown band set 'likert'"),
    (lambda: _stage(3, questions="Une seule ?"), r"essaimage\.questions: expected a non-empty"),
    (lambda: _stage(0, tone_of_voice="x"), r"stages\[0\]: unknown key\(s\) tone_of_voice"),
]


@pytest.mark.parametrize(("make", "message"), GRID_ERRORS)
def test_malformed_grid_names_key_and_problem(tmp_path, make, message):
    with pytest.raises(GridError, match=r"evaluation grid grid\.yaml: .*" + message):
        load_grid(_write(tmp_path, make(), "grid.yaml"))


def test_grid_bands_must_ascend_contiguously(tmp_path):
    grid = _grid()
    grid["band_sets"]["wilder"]["bands"][1]["low"] = 3.5
    with pytest.raises(GridError, match=r"band_sets\.wilder\.bands\[1\]: .*contiguous"):
        load_grid(_write(tmp_path, grid))
    grid = _grid()
    grid["band_sets"]["wilder"]["bands"][0]["high"] = 1.0
    with pytest.raises(GridError, match=r"bands\[0\]: low \(1\) must be below high \(1\)"):
        load_grid(_write(tmp_path, grid))


def test_unknown_stage_of_a_grid_is_a_grid_error():
    with pytest.raises(GridError, match=r"no stage 'maturite' \(stages: emergence, "):
        load_grid().stage("maturite")


# --------------------------------------------------------------------------- spec errors
def _spec(**changes) -> dict:
    return {**yaml.safe_load(yaml.safe_dump(SPEC)), **changes}


SPEC_ERRORS = [
    (
        lambda: _spec(items={**SPEC["items"], "results": ["res_synergie", "res_inconnu"]}),
        r"items\.results\[1\]: unknown item 'res_inconnu' \(not in codebook",
    ),
    (lambda: _spec(status="id_inconnu"), r"status: unknown item 'id_inconnu'"),
    (
        lambda: _spec(milestones=["mat_inter_confiance"]),
        r"milestones\[0\]: item 'mat_inter_confiance' is of type likert, expected binary",
    ),
    (lambda: _spec(items={"annexe": []}), r"items: unknown key\(s\) annexe"),
    (lambda: _spec(by_type={"cost": "res_charge_excessive"}), r"by_type: unknown key\(s\) cost"),
    (
        lambda: _spec(fragilities={**SPEC["fragilities"], "priority": "frag_priorite"}),
        r"fragilities\.priority: the pattern 'frag_priorite' lacks \{domain\}",
    ),
    (
        lambda: _spec(fragilities={**SPEC["fragilities"], "priority": "prio_{domain}"}),
        r"fragilities\.priority \(emploi\): unknown item 'prio_emploi'",
    ),
    (
        lambda: _spec(fragilities={**SPEC["fragilities"], "alliance_levels": [3, 9]}),
        r"fragilities\.alliance_levels: 9 is not a code of the alliances scale",
    ),
    (
        lambda: _spec(benchmarks={"part_existe": {"value": 38, "label": "38 %"}}),
        r"benchmarks\.part_existe\.value: a share is between 0 and 1",
    ),
    (
        lambda: _spec(dimension_labels={"gouvernance": "Gouv.", "climat": "Climat"}),
        r"dimension_labels\.climat: unknown dimension",
    ),
    (
        lambda: _spec(stages={"emergence": {"indicators": ["mat_inconnu"]}}),
        r"stages\.emergence\.indicators\[0\]: unknown item 'mat_inconnu'",
    ),
    (lambda: _spec(layout="a4"), r"top level: unknown key\(s\) layout"),
]


@pytest.mark.parametrize(("make", "message"), SPEC_ERRORS)
def test_malformed_spec_names_key_and_item(tmp_path, codebook, make, message):
    with pytest.raises(ReportSpecError, match=r"report spec spec\.yaml: " + message):
        load_report_spec(_write(tmp_path, make(), "spec.yaml"), codebook)


def test_spec_file_errors(tmp_path, codebook):
    with pytest.raises(ReportSpecError, match="cannot be read"):
        load_report_spec(tmp_path / "absent.yaml", codebook)
    with pytest.raises(ReportSpecError, match="invalid YAML"):
        load_report_spec(_write(tmp_path, "items: [", "spec.yaml"), codebook)


def test_study_whose_spec_names_an_unknown_item_is_refused(tmp_path, codebook):
    """The study's own report spec is read by build_contexts and refused with its item named."""
    spec = _spec(agreement=["dyn_savoir_piloter", "dyn_envie_inconnue"])
    _write(tmp_path, spec, "mon_spec.yaml")
    config = make_config(tmp_path, report='report_spec = "mon_spec.yaml"')
    assert config.report.report_spec == tmp_path / "mon_spec.yaml"
    with pytest.raises(ReportSpecError, match=r"agreement\[1\]: unknown item 'dyn_envie_inconnue'"):
        build_contexts(config, codebook, make_artefacts(codebook))


def test_spec_stage_blocks_must_be_grid_stages(tmp_path, codebook):
    grid = _write(tmp_path, three_stage_grid(), "grille.yaml")
    config = make_config(tmp_path, report='grid = "grille.yaml"')
    with pytest.raises(ReportSpecError, match=r"'emergence', 'structuration'.* not in the eval"):
        build_contexts(config, codebook, make_artefacts(codebook))
    assert grid.is_file()


# --------------------------------------------------------------------------- three stages
def three_stage_grid() -> dict:
    """A grid of three stages (démarrage, organisation, maturité) built from the shipped one."""
    grid = _grid(name="Grille en trois temps")
    first, second, third = (dict(grid["stages"][i]) for i in (0, 1, 3))
    first.update(key="demarrage", number=1, name="Démarrage")
    second.update(key="organisation", number=2, name="Organisation")
    third.update(key="maturite", number=3, name="Maturité", section_title="Bilan du parcours")
    grid["stages"] = [first, second, third]
    return grid


def test_three_stage_grid_maps_any_study_size(tmp_path):
    grid = load_grid(_write(tmp_path, three_stage_grid()))
    assert grid.keys == ("demarrage", "organisation", "maturite")
    assert [grid.stage_key(s, 3, "") for s in range(3)] == list(grid.keys)
    assert [grid.stage_key(s, 4, "") for s in range(4)] == [
        "demarrage",
        "demarrage",
        "organisation",
        "maturite",
    ]
    assert [grid.stage_key(s, 2, "") for s in range(2)] == ["demarrage", "maturite"]
    assert grid.stage_key(0, 3, "Maturité avancée") == "maturite"  # by name first


def test_three_stage_study_follows_a_three_stage_grid(tmp_path, codebook, monkeypatch):
    _write(tmp_path, three_stage_grid(), "grille.yaml")
    spec = _spec(
        stages={
            "demarrage": SPEC["stages"]["emergence"],
            "organisation": SPEC["stages"]["structuration"],
            "maturite": SPEC["stages"]["essaimage"],
        },
        # the shipped answers and targets name the shipped grid's stages: only its sentences
        narrative={"sentences": SPEC["narrative"]["sentences"]},
    )
    _write(tmp_path, spec, "spec.yaml")
    names = ["Premiers pas", "En route", "Maturité"]
    config = make_config(
        tmp_path,
        report='grid = "grille.yaml"\nreport_spec = "spec.yaml"',
        maturity=f"n_stages = 3\nstage_names = {names!r}".replace("'", '"'),
    )
    artefacts = make_artefacts(codebook)
    maturity = artefacts.maturity.assign(stage=artefacts.maturity["stage"].clip(upper=2))
    maturity = maturity.assign(
        stage_label=[names[s] for s in maturity["stage"]],
        stage_declared=maturity["stage_declared"].clip(upper=2),
        stage_probability=0.9,  # nobody between two stages
    )
    contexts = build_contexts(config, codebook, replace(artefacts, maturity=maturity))
    national, *territories = contexts
    assert [d["grid_key"] for d in national.stage_distribution] == [
        "demarrage",
        "organisation",
        "maturite",
    ]
    assert [c.grid_key for c in territories] == [
        "demarrage",
        "organisation",
        "maturite",
        "maturite",
        "maturite",
    ]
    t3 = territories[2]
    assert t3.stage_grid["name"] == "Maturité"
    assert t3.allows_verdicts
    assert {r["variable"] for r in t3.stage_indicators} <= set(
        spec["stages"]["maturite"]["indicators"]
    )
    assert tables.render_stage_heading(t3) == "<h2>4. Maturité : bilan du parcours</h2>"
    assert territories[0].stage_grid["name"] == "Démarrage"
    assert not territories[0].allows_verdicts
