"""Beyond one machine: the reports rendered on a Dask cluster are byte-identical to the local
ones (issue « national scale »).

A ``LocalCluster`` of two worker *processes* stands for a remote cluster: each task carries its
inputs (template and context bytes) and returns its files as bytes, which the client writes.
The same study rendered by the local warm pool and by the cluster must publish the same bytes —
pages, downloads, index — apart from the run's own bookkeeping (``manifest.json`` and the
render status, which record timings).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _synthetic_reports import STAGES, make_artefacts, make_config

from evalterritoire.pipeline import run_contexts, run_reports

TEMPLATES = Path(__file__).resolve().parents[1] / "src" / "evalterritoire" / "data" / "templates"
BOOKKEEPING = {"manifest.json", ".render_status.json"}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in BOOKKEEPING
    }


@pytest.fixture
def study(codebook, tmp_path):
    study_dir = tmp_path / "etude"
    study_dir.mkdir()
    artefacts = make_artefacts(codebook)
    config = make_config(study_dir, templates_dir=TEMPLATES, context=artefacts.context)
    build = config.build_dir
    build.mkdir(parents=True)
    for name in ("responses", "maturity", "transitions", "models", "reliability", "profiles"):
        getattr(artefacts, name).to_parquet(build / f"{name}.parquet", index=False)
    (build / "ingestion.json").write_text(json.dumps(dict(artefacts.ingestion)), encoding="utf-8")
    run_contexts(config, codebook=codebook)
    return config


def test_reports_rendered_on_a_dask_cluster_are_byte_identical_to_local_ones(study, codebook):
    from distributed import LocalCluster

    territories = sorted(STAGES)[:3]
    local = run_reports(study, territories=territories, workers=1, codebook=codebook)
    assert (local.n_rendered, local.n_failed) == (len(territories), 0)
    published = study.reports_dir
    first = _files(published)
    assert any(name.endswith(".html") for name in first)
    saved = published.parent / "local"
    shutil.copytree(published, saved)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        remote = run_reports(
            study,
            territories=territories,
            dask_scheduler=cluster.scheduler_address,
            force=True,
            codebook=codebook,
        )
    assert (remote.n_rendered, remote.n_failed) == (len(territories), 0)
    second = _files(published)
    assert sorted(second) == sorted(first)
    different = [name for name in first if first[name] != second[name]]
    assert different == []
