"""The package reads as the data flow: one subpackage per step, a documented public API."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "evalterritoire"
STEPS = ("codebook", "ingest", "design", "estimates", "maturity", "models", "report", "render")
TOP_MODULES = {
    "__init__.py",
    "artefacts.py",
    "cli.py",
    "config.py",
    "errors.py",
    "manifest.py",
    "pipeline.py",
    "progress.py",
    "provenance.py",
}


def test_top_level_holds_only_the_cross_cutting_modules():
    assert {p.name for p in PKG.glob("*.py")} == TOP_MODULES
    packages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert packages == {*STEPS, "simulate"}


def test_modules_inside_subpackages_have_plain_names():
    private = [p.relative_to(PKG) for p in PKG.rglob("_*.py") if p.name != "__init__.py"]
    assert private == []


@pytest.mark.parametrize("package", [*STEPS, "simulate"])
def test_every_public_name_is_documented_once_in_api_md(package):
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    module = importlib.import_module(f"evalterritoire.{package}")
    assert module.__doc__, package
    missing = [name for name in module.__all__ if f"| `{name}`" not in api]
    assert missing == []
    for name in module.__all__:
        getattr(module, name)


def test_top_level_api_is_lazy_and_complete():
    import evalterritoire

    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for name in evalterritoire.__all__:
        if name != "__version__":
            assert f"| `{name}` ★" in api, name
            assert getattr(evalterritoire, name) is not None


def test_documented_import_paths_keep_working():
    from evalterritoire.codebook import load_codebook
    from evalterritoire.config import ModelSpec, load_study
    from evalterritoire.design import SurveyDesign
    from evalterritoire.estimates import (
        estimate_mean,
        estimate_proportion,
        estimate_ratio,
        estimate_total,
    )
    from evalterritoire.ingest import ingest_file
    from evalterritoire.models import fit_model

    for obj in (load_codebook, ModelSpec, load_study, SurveyDesign, ingest_file, fit_model):
        assert callable(obj)
    assert {estimate_mean, estimate_total, estimate_ratio, estimate_proportion}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_imports_go_down_the_flow():
    """A step never imports a later step (simulate and the top-level modules stand apart)."""
    order = {name: i for i, name in enumerate(STEPS)}
    wrong = []
    for package in STEPS:
        for path in (PKG / package).glob("*.py"):
            for module in _imports(path):
                parts = module.split(".")
                if parts[0] != "evalterritoire" or len(parts) < 2:
                    continue
                target = parts[1]
                if target in order and order[target] > order[package]:
                    wrong.append(f"{path.relative_to(PKG)} imports {module}")
                if target in {"pipeline", "cli", "simulate"}:
                    wrong.append(f"{path.relative_to(PKG)} imports {module}")
    assert wrong == []


def test_no_item_of_the_shipped_codebook_is_named_in_src():
    """The instrument is data: no id of the shipped codebook in any string of src/ (docstrings
    and f-strings included), outside data/ and simulate/ (which writes our demo instrument)."""
    import re

    import yaml

    codebook = yaml.safe_load((PKG / "data" / "codebook.yaml").read_text(encoding="utf-8"))
    ids = sorted((v["id"] for v in codebook["variables"]), key=len, reverse=True)
    pattern = re.compile(
        r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, ids)) + r")(?![A-Za-z0-9])"
    )
    found = []
    for path in sorted(PKG.rglob("*.py")):
        relative = path.relative_to(PKG)
        if relative.parts[0] in {"data", "simulate"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [f"{relative}:{node.lineno} {m}" for m in pattern.findall(node.value)]
    assert found == []


def test_no_function_is_a_wall_of_code():
    """Every function of src/ fits in 100 lines (docstring included; most are under 60)."""
    long = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > 100:
                    long.append(f"{path.relative_to(PKG)}:{node.lineno} {node.name} ({size})")
    assert long == []


def test_step_progress_counts_and_stays_off_the_standard_output(capsys):
    from evalterritoire.progress import step_progress

    with step_progress("Estimations", 3, enabled=True) as advance:
        for _ in range(3):
            advance()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Estimations" in captured.err
    assert "3/3" in captured.err
    with step_progress("Estimations", 3) as advance:  # not a terminal: nothing drawn
        advance(3)
    assert capsys.readouterr().err == ""
