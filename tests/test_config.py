"""Study file loading: paths relative to the study file, clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalterritoire.config import DEFAULT_STAGE_NAMES, load_study
from evalterritoire.errors import StudyConfigError

BASE = """
[study]
name = "Test"
wave = 2025
exports = ["export.csv"]
random_state = 7
min_n = 20
"""


def _study(tmp_path: Path, text: str, files=("export.csv",)) -> Path:
    wave_dir = tmp_path / "surveys" / "2025"
    wave_dir.mkdir(parents=True, exist_ok=True)
    for name in files:
        (wave_dir / name).write_text("id\n1\n", encoding="utf-8")
    path = wave_dir / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_study_and_relative_paths(tmp_path, monkeypatch):
    path = _study(tmp_path, BASE)
    monkeypatch.chdir(tmp_path.parent)  # the working directory must not matter
    cfg = load_study(path)
    assert cfg.wave == 2025
    assert cfg.name == "Test"
    assert cfg.exports == ((tmp_path / "surveys/2025/export.csv").resolve(),)
    assert cfg.build_dir == (tmp_path / "build" / "2025").resolve()
    assert cfg.reports_dir == (tmp_path / "reports" / "2025").resolve()
    assert cfg.maturity.stage_names == DEFAULT_STAGE_NAMES
    assert cfg.design.lonely_psu == "fail"
    assert cfg.codebook == "default"
    assert cfg.artefact("responses.parquet") == cfg.build_dir / "responses.parquet"


def test_full_study(tmp_path):
    text = (
        BASE
        + """
[design]
weight = "w"
strata = ""
lonely_psu = "adjust"

[calibration]
method = "rake"
margins = "marges.csv"

[maturity]
n_stages = 3
stage_names = ["A", "B", "C"]
method = "gmm"

[[models]]
name = "m1"
formula = "score_global ~ C(id_type_repondant)"
small_sample = true

[[models]]
name = "m2"
kind = "mixed"
groups = "id_territoire_code"
formula = "score_global ~ 1"

[report]
formats = ["html", "pdf"]
templates_dir = "../../notebooks/templates"
"""
    )
    path = _study(tmp_path, text, files=("export.csv",))
    (path.parent / "marges.csv").write_text(
        "variable,level,total\nid_type_repondant,elu,100\nid_type_repondant,asso,50.5\n",
        encoding="utf-8",
    )
    cfg = load_study(path)
    assert cfg.name == "Test"  # not overwritten by a [report] key
    assert cfg.design.weight == "w"
    assert cfg.design.strata is None
    assert cfg.calibration.margins == {"id_type_repondant": {"elu": 100.0, "asso": 50.5}}
    assert cfg.maturity.n_stages == 3
    assert cfg.maturity.method == "gmm"
    assert [m.name for m in cfg.models] == ["m1", "m2"]
    assert cfg.models[1].groups == "id_territoire_code"
    assert (cfg.models[0].small_sample, cfg.models[1].small_sample) == (True, False)
    assert cfg.report.formats == ("html", "pdf")
    assert cfg.report.templates_dir == (tmp_path / "notebooks/templates").resolve()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("\n[design]\nlonely_psu = 'drop'\n", r"\[design.lonely_psu\] must be one of fail, remove"),
        ("\n[maturity]\nn_stages = 4\nstage_names = ['a']\n", r"1 names given for 4 stages"),
        ("\n[calibration]\nmethod = 'rake'\n", r"method 'rake' needs margins"),
        (
            "\n[calibration]\nmethod = 'rake'\nmargins = {x = {a = -1}}\n",
            r"calibration.margins.x.a\] must be a positive number",
        ),
        ("\n[[models]]\nname = 'm'\nformula = 'y x'\n", r"formula of the form"),
        (
            "\n[[models]]\nname = 'm'\nkind = 'mixed'\nformula = 'y ~ x'\n",
            r"needs a grouping column",
        ),
        (
            "\n[[models]]\nname = 'm'\nformula = 'y ~ x'\nsmall_sample = 'yes'\n",
            r"small_sample",
        ),
        ("\n[report]\nformats = ['odt']\n", r"report.formats\] must be one of"),
        ("\n[colour]\nx = 1\n", r"unknown key\(s\) colour"),
    ],
)
def test_invalid_study_names_key(tmp_path, extra, message):
    path = _study(tmp_path, BASE + extra)
    with pytest.raises(StudyConfigError, match=message):
        load_study(path)


def test_missing_things(tmp_path):
    with pytest.raises(StudyConfigError, match="study file not found"):
        load_study(tmp_path / "nope.toml")
    path = _study(tmp_path, BASE.replace('"export.csv"', '"absent.csv"'))
    with pytest.raises(StudyConfigError, match=r"export file not found: .*absent.csv"):
        load_study(path)
    path = _study(tmp_path, BASE.replace("wave = 2025\n", ""))
    with pytest.raises(StudyConfigError, match=r"study.wave\] is required"):
        load_study(path)
    path = _study(tmp_path, "[study\nwave=")
    with pytest.raises(StudyConfigError, match="not valid TOML"):
        load_study(path)
    path = _study(tmp_path, BASE.replace("min_n = 20", 'min_n = "20"'))
    with pytest.raises(StudyConfigError, match=r"study.min_n\] must be an integer"):
        load_study(path)
