"""The second instrument end to end: examples/tiers_lieux runs every step with its own codebook,
evaluation grid and report spec, and its reports follow them (no shipped instrument or grid)."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from evalterritoire.cli import main
from evalterritoire.codebook import default_codebook_path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiers_lieux"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("example") / "tiers_lieux"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build", "reports"))
    code = main(["study", str(root / "2025" / "study.toml"), "--all-waves", "--workers", "1"])
    assert code == 1  # every step ran; 1 says that rows were quarantined (one per wave, on purpose)
    return root


def test_every_step_writes_its_artefacts_under_the_example(study):
    for wave in (2024, 2025):
        build = study / "build" / str(wave)
        for name in (
            "responses.parquet",
            "estimates.parquet",
            "maturity.parquet",
            "models.parquet",
        ):
            assert (build / name).is_file(), (wave, name)
        reports = study / "reports" / str(wave)
        assert (reports / "index.html").is_file()
        assert (reports / "synthese.html").is_file()
        assert len(list((reports / "territoires").glob("BV*.html"))) == 18


def test_the_example_codebook_drives_ingestion(study):
    responses = pd.read_parquet(study / "build" / "2025" / "responses.parquet")
    assert {"num_reponse", "code_bassin", "profil", "coef", "annee"} <= set(responses.columns)
    assert set(responses["annee"]) == {2025}
    quarantine = pd.read_csv(study / "build" / "2025" / "quarantine.csv")
    assert len(quarantine) == 1
    assert "usager_sans_moyens" in quarantine["reasons"].iloc[0]


def test_three_stages_with_the_example_names(study):
    maturity = pd.read_parquet(study / "build" / "2025" / "maturity.parquet")
    assert set(maturity["stage_label"]) == {"Amorçage", "Développement", "Rayonnement"}
    assert {c for c in maturity.columns if c.startswith("score_")} == {
        "score_cooperation",
        "score_ressources",
        "score_ancrage",
        "score_global",
    }
    models = pd.read_parquet(study / "build" / "2025" / "models.parquet")
    assert set(models["model"]) == {"note_des_cooperations", "comite_partage"}


def _report(study: Path, stage: str) -> str:
    maturity = pd.read_parquet(study / "build" / "2025" / "maturity.parquet")
    code = maturity.loc[maturity["stage_label"] == stage, "territory"].sort_values().iloc[0]
    page = (study / "reports" / "2025" / "territoires" / f"{code}.html").read_text("utf-8")
    return html.unescape(page)


def test_reports_follow_the_example_grid_and_scale(study):
    mature = _report(study, "Rayonnement")
    assert "Rayonnement : bilan d'une coopération installée" in mature
    assert "sur l'échelle de 1 à 4" in mature  # the grid's band legend
    assert "Point fort" in mature  # a verdict: this stage reads with thresholds
    assert "trois dimensions" in mature
    early = _report(study, "Amorçage")
    assert "Amorçage : ce qui s'amorce autour du tiers-lieu" in early
    assert "Point fort" not in early
    assert "Fragilité</td>" not in early
    for page in (mature, early):
        assert "Émergence" not in page
        assert "Wilder" not in page
        assert "neuf dimensions" not in page


def test_no_label_of_the_shipped_instrument_reaches_the_example_reports(study):
    shipped = yaml.safe_load(default_codebook_path().read_text(encoding="utf-8"))
    example = {
        v["id"] for v in yaml.safe_load((EXAMPLE / "codebook.yaml").read_text("utf-8"))["variables"]
    }
    labels = {v["label_fr"] for v in shipped["variables"] if v["id"] not in example}
    pages = [html.unescape(p.read_text("utf-8")) for p in (study / "reports").rglob("*.html")]
    leaked = {label for label in labels if len(label) > 25 and any(label in page for page in pages)}
    assert leaked == set()


def test_an_earlier_wave_report_links_to_the_later_wave_built_with_it(study):
    """``study --all-waves`` builds every wave's data first: the 2024 reports link forward to
    the 2025 report of the same territory, the 2025 ones back to 2024."""
    maturity = pd.read_parquet(study / "build" / "2025" / "maturity.parquet")
    code = sorted(maturity["territory"].astype(str))[0]
    earlier = (study / "reports" / "2024" / "territoires" / f"{code}.html").read_text("utf-8")
    later = (study / "reports" / "2025" / "territoires" / f"{code}.html").read_text("utf-8")
    assert f'href="../../2025/territoires/{code}.html"' in earlier
    assert '<span aria-current="page">2024</span>' in earlier
    assert f'href="../../2024/territoires/{code}.html"' in later
