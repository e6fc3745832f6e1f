"""Report contexts, the evaluation grid and French formatting."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _synthetic_reports import EVIL_NAME, make_artefacts, make_config

from evalterritoire.context import (
    ReportContext,
    build_contexts,
    compute_descriptive_estimates,
)
from evalterritoire.errors import RenderError
from evalterritoire.frenchfmt import (
    NBSP,
    NNBSP,
    fmt_interval,
    fmt_n,
    fmt_number,
    fmt_percent,
    fmt_score,
    guillemets,
)
from evalterritoire.grid import (
    STAGE_KEYS,
    WILDER_BANDS,
    band_for,
    get_stage_grid,
    grid_stage_key,
)


@pytest.fixture(scope="module")
def artefacts(codebook):
    return make_artefacts(codebook)


@pytest.fixture(scope="module")
def contexts(codebook, artefacts, tmp_path_factory):
    return build_contexts(make_config(tmp_path_factory.mktemp("study")), codebook, artefacts)


# --------------------------------------------------------------------------- French formatting
def test_french_number_formatting():
    assert fmt_number(12345.678, 1) == f"12{NNBSP}345,7"
    assert fmt_number(-1234.5, 1) == f"−1{NNBSP}234,5"
    assert fmt_number(-0.04, 1) == "0,0"
    assert fmt_number(float("nan")) == "—"
    assert fmt_number(None) == "—"
    assert fmt_percent(0.463) == f"46{NBSP}%"
    assert fmt_percent(0.4635, 1) == f"46,4{NBSP}%"
    assert fmt_score(7.06, 10) == "7,1/10"
    assert fmt_interval(3.21, 3.96) == f"[3,2{NBSP}; 4,0]"
    assert fmt_interval(None, 3.0) == ""
    assert fmt_n(1250) == f"n{NBSP}={NBSP}1{NNBSP}250"
    assert guillemets("oui") == f"«{NBSP}oui{NBSP}»"


# --------------------------------------------------------------------------- grid
def test_grid_verdicts_only_from_consolidation():
    assert not get_stage_grid("emergence").allows_verdicts
    assert not get_stage_grid("structuration").allows_verdicts
    assert get_stage_grid("consolidation").bands == WILDER_BANDS
    assert get_stage_grid("essaimage").allows_verdicts
    assert band_for(4.5, get_stage_grid("emergence")) is None
    consolidation = get_stage_grid("consolidation")
    assert band_for(4.2, consolidation).key == "force"
    assert band_for(3.0, consolidation).key == "a_discuter"
    assert band_for(2.99, consolidation).key == "preoccupation"
    assert band_for(5.0, consolidation).key == "force"


def test_grid_stage_key_by_label_then_rank():
    assert grid_stage_key(0, 4, "Émergence") == "emergence"
    assert grid_stage_key(2, 4, "Consolidation / maturité") == "consolidation"
    # generic names: proportional rank, rounded down (never judged with a later grid)
    assert [grid_stage_key(s, 3, f"Stade {s + 1}") for s in range(3)] == [
        "emergence",
        "structuration",
        "essaimage",
    ]
    assert [grid_stage_key(s, 5, "") for s in range(5)] == [
        "emergence",
        "emergence",
        "structuration",
        "consolidation",
        "essaimage",
    ]


def test_grid_texts_are_french_and_complete():
    for key in STAGE_KEYS:
        grid = get_stage_grid(key)
        assert grid.questions
        assert grid.recommendations
        assert grid.do_not
        assert all(q.endswith(("?", ".")) for q in grid.questions)


# --------------------------------------------------------------------------- contexts
def test_contexts_national_first_then_sorted_codes(contexts):
    assert contexts[0].is_national
    assert contexts[0].territory == ""
    assert [c.territory for c in contexts[1:]] == ["T1", "T2", "T3", "T4"]
    assert [c.grid_key for c in contexts[1:]] == list(STAGE_KEYS)


def test_context_json_round_trip_is_byte_identical(contexts, codebook, artefacts, tmp_path):
    for ctx in contexts:
        text = ctx.to_json()
        again = ReportContext.from_json(text)
        assert again.to_json() == text
        path = tmp_path / "ctx.json"
        path.write_text(text, encoding="utf-8")
        assert ReportContext.from_json(path).to_json() == text
        assert "/tmp" not in text
        assert "NaN" not in text
    rebuilt = build_contexts(make_config(tmp_path), codebook, artefacts)
    assert [c.to_json() for c in rebuilt] == [c.to_json() for c in contexts]


def test_context_stage_justification(contexts):
    t1, t2, t3, t4 = contexts[1:]
    assert t1.territory_name == EVIL_NAME
    assert t1.stage_declared == 1
    assert t1.stage_gap == 1
    assert t3.stage_gap == 0
    assert t2.between_stages
    assert t2.next_stage["key"] == "consolidation"
    assert t3.stage_robustness == pytest.approx(0.7)
    assert not t3.between_stages  # robust enough (≥ 0.6) and probable (0.9)
    assert not t1.between_stages
    assert t1.next_stage == {}
    assert t4.is_indicative
    assert not t3.is_indicative
    assert len(t3.profile) == 9
    first = t3.profile[0]
    assert first["ci_low"] < first["score"] < first["ci_high"]
    assert first["centroid"] == pytest.approx(first["score"])  # one territory per stage
    assert [h["wave"] for h in t3.history] == [2024, 2025]
    assert [h["stage"] for h in t3.history] == [1, 2]
    assert {s["wave"] for s in t3.wave_scores} == {2024, 2025}


def test_context_recommendations_follow_the_stage(contexts):
    for ctx in contexts[1:]:
        assert ctx.recommendations == get_stage_grid(ctx.grid_key).recommendations
    assert contexts[0].recommendations == ()


def test_context_content_sections(contexts):
    t1 = contexts[1]
    assert len(t1.fragilities) == 14
    priorities = [f["estimate"] for f in t1.fragilities]
    assert priorities == sorted(priorities, reverse=True)
    assert all(0 <= p <= 10 for p in priorities)
    emploi = next(f for f in t1.fragilities if f["domain"] == "emploi")
    assert emploi["objective"][0]["variable"] == "ctx_taux_chomage"
    assert emploi["objective"][0]["value"] == pytest.approx(9.1)
    assert 0 <= emploi["alliance_share"] <= 1
    shares = t1.agreement[0]["shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["nsp"] > 0  # emerging: « ne sait pas » kept and shown
    assert sum(r["n"] for r in t1.respondents) == t1.n_respondents == 24
    assert t1.n_types == 6
    assert {m["variable"] for m in t1.milestones} >= {"mat_gouv_instance", "mat_diag_realise"}
    assert all(isinstance(m["done"], bool) for m in t1.milestones)
    assert all(r["kind"] == "share" for r in t1.freins)
    assert t1.stage_indicators
    assert not {r["variable"] for r in t1.stage_indicators} & {m["variable"] for m in t1.milestones}
    spreading = [c for c in contexts[1:] if "essaimage_table" in get_stage_grid(c.grid_key).charts]
    assert spreading
    for ctx in spreading:  # what the stage's own table shows is not repeated
        assert ctx.essaimage
        shown = {r["variable"] for r in ctx.essaimage}
        assert not shown & {r["variable"] for r in ctx.stage_indicators}
    assert contexts[4].small_n  # T4 has 3 respondents
    assert [r["term"] for r in t1.models] == ["C(id_type_repondant)[T.citoyen]", "ctx_densite"]


def test_national_context(contexts):
    nat = contexts[0]
    assert [d["n_territories"] for d in nat.stage_distribution] == [1, 1, 1, 1]
    assert len(nat.territories) == 4
    assert sum(t["n_territories"] for t in nat.transition_matrix) == 4
    assert nat.headline
    assert nat.ingestion["n_quarantined"] == 2
    assert {r["label"] for r in nat.reliability} >= {"Gouvernance"}


def test_context_uses_design_intervals_when_estimates_exist(codebook, artefacts, tmp_path):
    est = compute_descriptive_estimates(artefacts.responses, codebook, min_n=10, wave=2025)
    est = est.assign(
        se=0.1, ci_low=est["estimate"] - 0.2, ci_high=est["estimate"] + 0.2, df=3.0, deff=1.2
    )
    with_est = type(artefacts)(**{**artefacts.__dict__, "estimates": est})
    ctxs = build_contexts(make_config(tmp_path), codebook, with_est)
    frag = ctxs[1].fragilities[0]
    assert frag["ci_low"] == pytest.approx(frag["estimate"] - 0.2)
    assert ctxs[1].methodology["has_intervals"] is True
    # estimates table layout: sorted, typed
    assert list(est.columns[:6]) == [
        "wave",
        "domain_type",
        "domain",
        "variable",
        "level",
        "statistic",
    ]


def test_descriptive_estimates_weighted(codebook, artefacts):
    est = compute_descriptive_estimates(artefacts.responses, codebook, min_n=10, wave=2025)
    row = est[
        (est.domain_type == "territory")
        & (est.domain == "T1")
        & (est.variable == "res_synergie")
        & (est.statistic == "mean")
    ].iloc[0]
    sub = artefacts.responses[artefacts.responses.id_territoire_code == "T1"]
    ok = sub["res_synergie"].notna()
    expected = np.average(
        sub.loc[ok, "res_synergie"].astype(float), weights=sub.loc[ok, "id_poids"].astype(float)
    )
    assert row["estimate"] == pytest.approx(expected)
    assert row["n"] == ok.sum()


def test_from_json_errors_are_typed(tmp_path):
    with pytest.raises(RenderError, match="cannot be read"):
        ReportContext.from_json(tmp_path / "missing.json")
    with pytest.raises(RenderError, match="not valid JSON"):
        ReportContext.from_json("{not json")
    with pytest.raises(RenderError, match="schema version"):
        ReportContext.from_json(json.dumps({"schema_version": 99}))


def test_build_contexts_needs_data(codebook, tmp_path):
    from evalterritoire.context import StudyArtefacts

    with pytest.raises(RenderError, match="run ingest"):
        build_contexts(make_config(tmp_path), codebook, StudyArtefacts())
