"""``reproduce`` sees drift and tampering (issue 20, finding 8): another environment, a
published report deleted or altered are named, and the verdict is no longer « identical ».

The quick test checks the comparison functions on a manifest; the ``slow`` one runs
``evalterritoire reproduce`` on a rendered study."""

from __future__ import annotations

import json

import pytest
from _robust_study import cli, make_study
from _synthetic_reports import make_config

from evalterritoire.config import load_study
from evalterritoire.manifest import build_manifest, compare_artefacts
from evalterritoire.pipeline import run_study


def test_the_recorded_environment_and_published_files_are_compared(tmp_path):
    """Another Python, package version and commit are each named; a deleted or edited
    published report is found in place (before the re-run)."""
    from evalterritoire.manifest import compare_environment

    config = make_config(tmp_path)
    pages = config.reports_dir / "territoires"
    pages.mkdir(parents=True)
    for code in ("T1", "T2"):
        (pages / f"{code}.html").write_text(f"<p>{code}</p>\n", encoding="utf-8")
    manifest = build_manifest(config, reports=sorted(pages.glob("*.html")))
    assert compare_environment(manifest, config.study_dir) == []

    manifest["environment"]["packages"]["numpy"] = "1.0.0"
    manifest["environment"]["packages"]["python"] = "3.9.1"
    manifest["environment"]["git"] = {"commit": "0" * 40, "dirty": True}
    lines = compare_environment(manifest, config.study_dir)
    assert any(line.startswith("numpy: 1.0.0 recorded, ") for line in lines)
    assert any(line.startswith("python: 3.9.1 recorded, ") for line in lines)
    assert any(line.startswith("commit: 000000000000 recorded, ") for line in lines)

    (pages / "T1.html").unlink()
    (pages / "T2.html").write_text("<p>edited</p>\n", encoding="utf-8")
    found = compare_artefacts(manifest, config.reports_dir, kinds=("report",))
    assert {c.path: c.status for c in found} == {
        "territoires/T1.html": "missing",
        "territoires/T2.html": "different",
    }


@pytest.mark.slow
def test_reproduce_names_another_environment_and_changed_published_files(tmp_path):
    """A manifest with other package versions and another commit, a deleted and an altered
    published report gave « identical », exit 0."""
    study = make_study(tmp_path)
    assert run_study(load_study(study), workers=1) == 0
    config = load_study(study)
    manifest_path = config.reports_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["environment"]["packages"]["numpy"] = "1.0.0"
    manifest["environment"]["packages"]["python"] = "3.9.1"
    manifest["environment"]["git"] = {"commit": "0" * 40, "dirty": True}
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    pages = sorted((config.reports_dir / "territoires").glob("*.html"))
    pages[0].unlink()  # a published report deleted …
    with pages[1].open("a", encoding="utf-8") as handle:  # … another one altered
        handle.write("<!-- edited -->\n")

    run = cli("reproduce", str(manifest_path))
    out = run.stdout
    assert run.returncode == 1, out
    assert "environment: differs" in out
    assert "numpy: 1.0.0 recorded" in out
    assert "python: 3.9.1 recorded" in out
    assert "commit: 000000000000 recorded" in out
    assert f"missing    territoires/{pages[0].name}" in out
    assert f"different  territoires/{pages[1].name}" in out
    assert "not reproduced identically" in out
