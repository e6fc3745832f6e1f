"""No code from a data file, and one clear message for every input that deserves one
(issue 20, findings 6 and 9)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _robust_study import cli, make_study, synthetic_study, write_templates
from _synthetic_reports import make_config

from evalterritoire.config import ModelSpec, load_study
from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import ModelError, StudyConfigError
from evalterritoire.models import fit_model
from evalterritoire.pipeline import run_contexts, run_study

# --------------------------------------------------------------------------- finding 6


@pytest.mark.parametrize(
    "formula",
    [
        "score_global ~ C(stage) + C(id_type_repondant) + ctx_taux_chomage",
        "I(dyn_statut >= 2) ~ x",
        "y ~ x:z + x*z - 1",
        "y ~ 0 + (x + z)**2",
        "y ~ np.log(x) + center(z) + standardize(x) + I(x**2) + I((x > 1) & (z <= 3))",
        "y ~ C(s, Treatment(reference=2)) + C(t, Sum) + C(u, levels=[1, 2, 3])",
        "y ~ Q('x') + I(s == 'a:b')",
    ],
)
def test_documented_formulas_are_accepted(formula):
    from evalterritoire.models.formula import check_formula

    check_formula(formula)


@pytest.mark.parametrize(
    ("formula", "refused"),
    [
        ("y ~ I(__import__('os').system('touch x'))", "__import__"),
        ("y ~ x + os.system('ls')", "os.system"),
        ("y ~ np.load('x.npy')", "np.load"),
        ("y ~ I(x.__class__)", "attribute"),
        ("y ~ I(x[0])", "subscript"),
        ("y ~ C(x, Treatment(reference=__import__('os')))", "literal"),
        ("y ~ I(__builtins__)", "__builtins__"),
        ("y ~ eval('1')", "eval"),
        ("y ~ x ~ z", "one '~'"),
        ("y ~ " + "x + " * 600 + "x", "at most"),
    ],
)
def test_code_in_a_formula_is_refused_before_patsy(formula, refused):
    from evalterritoire.models.formula import check_formula

    with pytest.raises(ModelError, match=re.escape(refused)):
        check_formula(formula)


def test_a_formula_never_runs_python_in_a_fit(tmp_path):
    """Finding 6, quick: patsy evaluated ``I(__import__('os').system('…'))`` while fitting."""
    marker = tmp_path / "PWNED"
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {"psu": np.repeat([f"P{i}" for i in range(10)], 10), "w": 1.0, "x": rng.normal(size=100)}
    )
    frame["y"] = frame["x"] + rng.normal(size=100)
    design = SurveyDesign(frame, weight="w", psu="psu")
    hostile = f"y ~ x + I(__import__('os').system('touch {marker.as_posix()}'))"
    with pytest.raises(ModelError) as error:
        fit_model(ModelSpec("m", hostile, "linear"), frame, design)
    assert not marker.exists()
    assert "refused" in str(error.value)


def test_a_study_formula_never_runs_python(tmp_path):
    """Finding 6: ``I(__import__('os').system('…'))`` in ``study.toml`` ran; ``reproduce`` of a
    manifest someone sends ran it too."""
    marker = tmp_path / "PWNED"
    study = make_study(tmp_path, models=True)
    hostile = f"I(__import__('os').system('touch {marker.as_posix()}'))"
    text = study.read_text(encoding="utf-8").replace("+ ctx_taux_pauvrete", f"+ {hostile}")
    study.write_text(text, encoding="utf-8")
    for command in ("study", "model"):
        run = cli(command, str(study))
        assert run.returncode == 2, run.stderr
        assert "formula" in run.stderr
        assert "refused" in run.stderr
        assert not marker.exists()
    manifest = tmp_path / "sent" / "manifest.json"  # a manifest pointing at that study
    manifest.parent.mkdir()
    relative = Path("..") / study.relative_to(tmp_path)
    manifest.write_text(
        json.dumps({"manifest_version": 1, "study": {"study_file": relative.as_posix()}}),
        encoding="utf-8",
    )
    run = cli("reproduce", str(manifest))
    assert run.returncode == 2, run.stderr
    assert "refused" in run.stderr
    assert not marker.exists()


@pytest.fixture
def contexts_study(tmp_path, codebook):
    """A study whose contexts exist (synthetic artefacts), templates in ``tmp/templates``."""
    config = synthetic_study(tmp_path, codebook)
    run_contexts(config, codebook=codebook)
    return config


@pytest.mark.parametrize("how", ["path", "symlink"])
def test_templates_come_only_from_the_declared_folder(contexts_study, tmp_path, how):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.py"
    source = (contexts_study.report.templates_dir / "annual_study.py").read_text()
    evil.write_text(source + f"\n# %%\nopen({str(marker)!r}, 'w').close()\n")
    study = contexts_study.path
    if how == "path":
        name = "../" * 8 + evil.with_suffix("").as_posix().lstrip("/")
    else:
        (contexts_study.report.templates_dir / "linked.py").symlink_to(evil)
        name = "linked"
    text = study.read_text(encoding="utf-8").replace(
        "[report]\n", f'[report]\nstudy_template = "{name}"\n'
    )
    study.write_text(text, encoding="utf-8")
    run = cli("report", str(study), "--workers", "1")
    assert run.returncode == 2, run.stderr
    assert "template" in run.stderr
    assert not marker.exists()
    assert not (contexts_study.reports_dir / "territoires").exists()  # refused before rendering


# --------------------------------------------------------------------------- finding 9
@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_outside_numpy_range_is_one_clear_message(tmp_path, seed):
    config = make_config(tmp_path)
    text = config.path.read_text(encoding="utf-8").replace(
        "random_state = 7", f"random_state = {seed}"
    )
    config.path.write_text(text, encoding="utf-8")
    with pytest.raises(StudyConfigError, match=r"random_state.*0 to 4294967295"):
        load_study(config.path)
    run = cli("cluster", str(config.path))
    assert run.returncode == 2
    assert "internal error" not in run.stderr
    run = cli("simulate", "--seed", str(seed), "--out", str(tmp_path / "sim"))
    assert run.returncode == 2
    assert "seed must be" in run.stderr
    assert "internal error" not in run.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A study built up to its contexts (models included), shared read-only by the tests."""
    root = tmp_path_factory.mktemp("built")
    study = make_study(root, models=True)
    assert run_study(load_study(study), render=False) == 0
    return study


def _copy(built: Path, tmp_path: Path) -> Path:
    import shutil

    root = built.parents[2]
    shutil.copytree(root, tmp_path / "copy", symlinks=True)
    return tmp_path / "copy" / built.relative_to(root)


def _context_file(study: Path) -> Path:
    return study.parent / "contexte_territoires.csv"


def test_an_empty_context_file_is_one_clear_message(built, tmp_path):
    study = _copy(built, tmp_path)
    _context_file(study).write_text("", encoding="utf-8")
    run = cli("model", str(study))
    assert run.returncode == 2, run.stderr
    assert "context file is empty" in run.stderr
    assert "internal error" not in run.stderr


def test_a_constant_covariate_of_an_ordinal_model_is_one_clear_message(built, tmp_path):
    study = _copy(built, tmp_path)
    context = pd.read_csv(_context_file(study), dtype=str)
    context["ctx_taux_pauvrete"] = "10"
    context.to_csv(_context_file(study), index=False)
    run = cli("model", str(study))
    assert run.returncode == 2, run.stderr
    assert "ctx_taux_pauvrete" in run.stderr
    assert "single value" in run.stderr


def test_a_constant_term_of_an_ordinal_fit_is_a_model_error():
    rng = np.random.default_rng(4)
    n = 300
    frame = pd.DataFrame(
        {
            "strate": np.repeat(["A", "B"], n // 2),
            "psu": np.repeat([f"P{i}" for i in range(10)], n // 10),
            "poids": rng.uniform(1, 3, n),
            "x": rng.normal(size=n),
            "ctx": 4.0,
        }
    )
    frame["o"] = np.digitize(frame["x"] + rng.logistic(size=n), [-1, 0.5, 2])
    design = SurveyDesign(frame, weight="poids", strata="strate", psu="psu")
    with pytest.raises(ModelError, match=r"model 'm': ctx take\(s\) a single value"):
        fit_model(ModelSpec("m", "o ~ x + ctx", "ordinal"), frame, design)


@pytest.mark.parametrize(
    ("artefact", "command", "names"),
    [
        ("responses.parquet", "estimate", "evalterritoire validate"),
        ("responses.parquet", "cluster", "evalterritoire validate"),
        ("responses.parquet", "model", "evalterritoire validate"),
        ("maturity.parquet", "estimate", "evalterritoire cluster"),
    ],
)
def test_an_artefact_truncated_to_zero_bytes_names_the_step_to_rerun(
    built, tmp_path, artefact, command, names
):
    study = _copy(built, tmp_path)
    (study.parents[2] / "build" / "2025" / artefact).write_bytes(b"")
    run = cli(command, str(study))
    assert run.returncode == 2, run.stderr
    assert names in run.stderr
    assert "internal error" not in run.stderr


def test_an_unrecorded_truncated_artefact_is_one_clear_message(built, tmp_path):
    """Without provenance records (an older build) the table itself says it is unreadable."""
    import shutil

    study = _copy(built, tmp_path)
    build = study.parents[2] / "build" / "2025"
    shutil.rmtree(build / ".provenance", ignore_errors=True)
    (build / "maturity.parquet").write_bytes(b"")
    run = cli("estimate", str(study))
    assert run.returncode == 2, run.stderr
    assert "maturity.parquet is not a readable table" in run.stderr
    assert "evalterritoire cluster" in run.stderr


def test_study_names_each_failed_report(built, tmp_path, monkeypatch, capsys):
    """Finding 9, quick: ``study`` exited 1 without saying which reports failed. The rendering
    is replaced by a summary with one failure (the slow test below renders for real)."""
    import evalterritoire.pipeline as pipeline
    from evalterritoire.render.reports import RenderSummary

    def one_failure(config, **kwargs):
        return RenderSummary(
            n_total=2, n_rendered=1, n_skipped=0, n_failed=1,
            failed=(("T9", "cell 3 raised ValueError: broken"),),
            outputs={}, seconds=0.0, status_path=config.reports_dir / "x",
        )  # fmt: skip

    study = _copy(built, tmp_path)
    monkeypatch.setattr(pipeline, "run_reports", one_failure)
    assert run_study(load_study(study)) == 1
    err = capsys.readouterr().err
    assert "2025: report T9 failed: cell 3 raised ValueError: broken" in err
    assert "--only-failed" in err


@pytest.mark.slow
def test_study_lists_the_reports_that_failed(tmp_path):
    """Finding 9: ``study`` exited 1 without saying which reports failed (``report`` said)."""
    study = make_study(tmp_path)
    codes = sorted(pd.read_csv(_context_file(study), dtype=str)["id_territoire_code"])
    write_templates(tmp_path / "templates", fail_for=codes[0])
    run = cli("study", str(study), "--workers", "1")
    assert run.returncode == 1
    assert f"report {codes[0]} failed" in run.stderr
    assert "--only-failed" in run.stderr


def test_lower_case_context_codes_meet_their_territories(tmp_path, codebook, capsys):
    """Finding 9, quick: context codes are normalised as the export's are (a lower-case code
    met no territory, silently), and unmatched rows are reported."""
    from evalterritoire.pipeline import _load_context_table

    territory = codebook.column("territory")
    path = tmp_path / "contexte.csv"
    pd.DataFrame({territory: [" qp056003", "75056", "zz999"], "ctx_x": [1.5, 2.5, 3.5]}).to_csv(
        path, index=False
    )
    table = _load_context_table(path, codebook)
    assert sorted(table[territory]) == ["75056", "QP056003", "ZZ999"]
    responses = pd.DataFrame({territory: ["QP056003", "75056", "13055"]})
    _load_context_table(path, codebook, responses)
    err = capsys.readouterr().err
    assert "1 context row(s) match no territory of the wave (ZZ999)" in err
    assert "1 territory(ies) of the wave have no context row (13055)" in err


@pytest.mark.slow
def test_context_codes_are_normalised_like_the_exports_and_unmatched_rows_reported(built, tmp_path):
    """Finding 9: a context file whose codes are lower-case silently lost its context (the
    export's codes are upper-cased, the context's were not); unmatched rows went unsaid."""
    from _robust_study import read_export, write_export

    study = _copy(built, tmp_path)
    export, header, rows = read_export(study)
    column = header.index("id_territoire_code")
    code = sorted({r[column] for r in rows})[-1]
    for row in rows:  # one territory gets a code with letters, as quartiers have (QP…)
        if row[column] == code:
            row[column] = f"QP{code}"
    write_export(export, header, rows)
    context = pd.read_csv(_context_file(study), dtype=str)
    context.loc[context["id_territoire_code"] == code, "id_territoire_code"] = f"QP{code}"
    context.to_csv(_context_file(study), index=False)
    assert run_study(load_study(study), render=False) == 0
    build = study.parents[2] / "build" / "2025"
    before = json.loads((build / "models_diagnostics.json").read_text(encoding="utf-8"))

    context.loc[context["id_territoire_code"] == f"QP{code}", "id_territoire_code"] = f"qp{code}"
    extra = context.iloc[[0]].assign(id_territoire_code="ZZ999")
    pd.concat([context, extra]).to_csv(_context_file(study), index=False)
    run = cli("model", str(study))
    assert run.returncode == 0, run.stderr
    assert "ZZ999" in run.stderr  # the unmatched row is reported
    after = json.loads((build / "models_diagnostics.json").read_text(encoding="utf-8"))
    assert {k: m["n"] for k, m in after.items()} == {k: m["n"] for k, m in before.items()}
