"""End to end: simulate a small study, run every step, reproduce it, detect a changed input."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import pandas as pd
import pytest

from evalterritoire.cli import main
from evalterritoire.config import load_study
from evalterritoire.pipeline import run_reproduce, run_study
from evalterritoire.report.scan import scan_reports
from evalterritoire.simulate.waves import simulate_waves

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "src" / "evalterritoire" / "data" / "templates"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A one-wave synthetic study (8 territories), fully built once for the module."""
    root = tmp_path_factory.mktemp("study")
    simulate_waves(root / "surveys", n_territories=8, n_respondents=320, waves=[2025], seed=11)
    study_file = root / "surveys" / "2025" / "study.toml"
    text = study_file.read_text(encoding="utf-8")
    text = re.sub(r"(?ms)^\[report\]\n.*?(?=^\[|\Z)", "", text)
    text += f'\n[report]\nformats = ["html"]\ntemplates_dir = "{TEMPLATES.as_posix()}"\n'
    study_file.write_text(text, encoding="utf-8")
    # the simulated export is clean (no quarantined row) and every report must render: any
    # failure makes run_study return 1, so the exact status is asserted
    assert run_study(load_study(study_file), all_waves=True, workers=1) == 0
    return study_file


def test_study_builds_every_artefact_and_report(study):
    config = load_study(study)
    for name in (
        "responses.parquet",
        "ingestion.json",
        "maturity.parquet",
        "transitions.parquet",
        "estimates.parquet",
        "models.parquet",
        "contexts/national.json",
    ):
        assert config.artefact(name).is_file(), name
    maturity = pd.read_parquet(config.artefact("maturity.parquet"))
    reports = config.reports_dir
    ingestion = json.loads(config.artefact("ingestion.json").read_text(encoding="utf-8"))
    assert ingestion["rows_quarantined"] == 0
    for folder in (reports, reports / "territoires"):
        status = json.loads((folder / ".render_status.json").read_text(encoding="utf-8"))
        assert {
            t: r["status"] for t, r in status["territories"].items() if r["status"] != "ok"
        } == {}
    for code in maturity["territory"]:
        html = (reports / "territoires" / f"{code}.html").read_text(encoding="utf-8")
        assert "Traceback" not in html
        assert "<script src=" not in html
    index = (reports / "index.html").read_text(encoding="utf-8")
    assert index.count("territoires/") >= len(maturity)
    assert "synthese.html" in index
    assert (reports / "synthese.html").is_file()
    manifest = json.loads((reports / "manifest.json").read_text(encoding="utf-8"))
    text = json.dumps(manifest)
    assert str(study.parent.parent.parent) not in text  # no absolute path inside the manifest
    assert any(p.endswith("synthese.html") for p in json.dumps(manifest).split('"'))
    roles = {e["role"]: e["path"] for e in manifest["inputs"]}
    assert roles["margins"].endswith("surveys/2025/marges_2025.csv")
    assert roles["context"].endswith("surveys/2025/contexte_territoires.csv")
    templates = sorted(e["path"] for e in manifest["inputs"] if e["role"] == "template")
    assert [Path(t).name for t in templates] == ["annual_study.py", "territory_report.py"]
    assert manifest["parameters"]["rendering"]["formats"] == ["html"]
    assert "workers" not in manifest["parameters"]["rendering"]


def test_synthesis_annex_gives_the_design_based_alpha_of_each_dimension(study):
    """Issue 19: the estimate step's design-based alpha (R svycralpha) reaches the synthesis."""
    import pandas as pd

    from evalterritoire.report.context import ReportContext

    config = load_study(study)
    alpha = pd.read_parquet(config.artefact("dimension_alpha.parquet"))
    national = ReportContext.from_json(config.artefact("contexts/national.json"))
    shown = {r["dimension"]: r for r in national.reliability if r.get("design_alpha") is not None}
    assert set(shown) == set(alpha["dimension"])
    for row in alpha.to_dict(orient="records"):
        got = shown[row["dimension"]]
        assert got["design_alpha"] == pytest.approx(row["estimate"])
        assert got["design_ci_low"] <= got["design_alpha"] <= got["design_ci_high"]
    page = (config.reports_dir / "synthese.html").read_text(encoding="utf-8")
    assert "Alpha pondéré (plan de sondage) [IC\u00a095\u00a0%]" in page


def test_identity_card_medians_are_design_based_and_hidden_below_the_minimum_cell(study):
    """Issue 19: the identity card's medians are the estimate step's svyquantile medians."""
    import pandas as pd

    from evalterritoire.codebook import load_codebook
    from evalterritoire.report.context import ReportContext
    from evalterritoire.report.spec import load_report_spec

    config = load_study(study)
    spec = load_report_spec(None, load_codebook(None))
    item = spec.identity["n_organisations"]
    medians = pd.read_parquet(config.artefact("item_medians.parquet"))
    rows = medians[(medians["domain_type"] == "territory") & (medians["variable"] == item)]
    assert not rows.empty
    for row in rows.to_dict(orient="records"):
        ctx = ReportContext.from_json(config.artefact(f"contexts/{row['domain']}.json"))
        shown = ctx.identity.get("n_organisations")
        if row["n"] >= config.publication.min_cell:
            assert shown == pytest.approx(row["estimate"])
        else:
            assert shown is None


def test_reports_pass_the_publication_scan(study):
    """Every page of the simulated study: no interval outside its range, negative or shown as a
    point, no figure or count on fewer than min_cell respondents, every figure with a status."""
    config = load_study(study)
    found = scan_reports(config.reports_dir, min_cell=config.publication.min_cell)
    assert len(found) >= 9  # index, synthesis and the eight territories
    assert {page: f for page, f in found.items() if f} == {}


def test_reproduce_identical_then_names_a_changed_input(study, capsys):
    config = load_study(study)
    manifest = config.reports_dir / "manifest.json"
    assert run_reproduce(manifest, workers=1) == 0
    out = capsys.readouterr().out
    assert "different" not in out.lower().replace("identical", "")
    # one cell of the context file and one margin change: both inputs are named, and the
    # result tables built from them differ (one re-run checks both, to save time)
    context = config.context
    margins = study.parent / "marges_2025.csv"
    raw, raw_margins = context.read_bytes(), margins.read_bytes()
    table = pd.read_csv(context, dtype=str)
    table.loc[0, "ctx_taux_chomage"] = "29.9"
    table.to_csv(context, index=False)
    lines = raw_margins.decode("utf-8").splitlines(keepends=True)
    rows = [line.rstrip("\r\n").split(",") for line in lines[1:3]]
    assert rows[0][0] == rows[1][0]  # two levels of one variable: the population size is kept
    for i, (variable, level, total) in enumerate(rows, start=1):
        lines[i] = f"{variable},{level},{int(total) + (50 if i == 1 else -50)}\n"
    margins.write_text("".join(lines), encoding="utf-8")
    try:
        assert run_reproduce(manifest, workers=1) == 1
        out = capsys.readouterr().out
        assert re.search(r"different\s+\S*contexte_territoires\.csv", out), out
        assert re.search(r"different\s+\S*marges_2025\.csv", out), out
        assert re.search(r"identical\s+\S*territory_report\.py", out), out
        assert re.search(r"different\s+\S*models\.parquet\s+\(.*first difference", out), out
        assert re.search(r"identical\s+\S*responses\.parquet", out), out
    finally:
        context.write_bytes(raw)
        margins.write_bytes(raw_margins)


def test_cli_report_renders_one_territory_with_a_parameter(study, capsys):
    config = load_study(study)
    code = pd.read_parquet(config.artefact("maturity.parquet"))["territory"].iloc[0]
    status = main(["report", str(study), "-t", code, "--workers", "1", "--force"])
    assert status == 0, capsys.readouterr().err
    assert (config.reports_dir / "territoires" / f"{code}.html").is_file()
    assert main(["report", str(study), "-t", "nope"]) == 2
    assert "unknown territory" in capsys.readouterr().err


def test_papermill_and_nbconvert_on_the_generated_template(study, tmp_path):
    import subprocess
    import sys

    config = load_study(study)
    notebook = config.artefact("templates") / "territory_report.ipynb"
    assert notebook.is_file()  # generated by the build from territory_report.py
    code = pd.read_parquet(config.artefact("maturity.parquet"))["territory"].iloc[0]
    context = config.artefact("contexts") / f"{code}.json"
    out = tmp_path / "out.ipynb"
    bin_dir = Path(sys.executable).parent
    run = subprocess.run(
        [str(bin_dir / "papermill"), str(notebook), str(out), "-p", "territory", code,
         "-p", "wave", "2025", "-p", "context_path", str(context), "--no-progress-bar"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    html = tmp_path / "out.html"
    run = subprocess.run(
        [str(bin_dir / "jupyter"), "nbconvert", "--to", "evalterritoire", str(out),
         "--output", str(html)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    text = html.read_text(encoding="utf-8")
    from evalterritoire.report.context import ReportContext

    published = ReportContext.from_json(context)
    assert published.territory_name in published.title  # titled by the territory, as published
    assert f"<title>{escape(published.title)}</title>" in text
    assert "Traceback" not in text
    # the same styled offline page as `evalterritoire report`: stylesheet, no script, no CDN, TOC
    from evalterritoire.render.export import load_report_css

    assert load_report_css() in text
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert 'class="et-toc"' in text
    published = (config.reports_dir / "territoires" / f"{code}.html").read_text(encoding="utf-8")
    assert text == published
