"""Report contexts, the evaluation grid and French formatting."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from _synthetic_reports import (
    EVIL_COMMENT,
    EVIL_NAME,
    HIDDEN_COMMENT,
    make_artefacts,
    make_config,
)

from evalterritoire.errors import RenderError
from evalterritoire.report.build import BETWEEN_THRESHOLD, build_contexts
from evalterritoire.report.context import ReportContext
from evalterritoire.report.french import (
    NBSP,
    NNBSP,
    fmt_interval,
    fmt_n,
    fmt_number,
    fmt_percent,
    fmt_score,
    guillemets,
)
from evalterritoire.report.grid import band_for, load_grid
from evalterritoire.report.lookup import compute_descriptive_estimates
from evalterritoire.report.sections import _excerpt
from evalterritoire.report.spec import load_report_spec

GRID = load_grid()
STAGE_KEYS = GRID.keys


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
    assert STAGE_KEYS == ("emergence", "structuration", "consolidation", "essaimage")
    assert not GRID.stage("emergence").allows_verdicts
    assert not GRID.stage("structuration").allows_verdicts
    assert GRID.stage("consolidation").bands == GRID.band_sets["wilder"]
    assert GRID.stage("essaimage").allows_verdicts
    assert band_for(4.5, GRID.stage("emergence").bands) is None
    bands = GRID.stage("consolidation").bands
    assert band_for(4.2, bands).key == "force"
    assert band_for(3.0, bands).key == "a_discuter"
    assert band_for(2.99, bands).key == "preoccupation"
    assert band_for(5.0, bands).key == "force"


def test_grid_stage_key_by_label_then_rank():
    assert GRID.stage_key(0, 4, "Émergence") == "emergence"
    assert GRID.stage_key(2, 4, "Consolidation / maturité") == "consolidation"
    # generic names: proportional rank, rounded down (never judged with a later grid)
    assert [GRID.stage_key(s, 3, f"Stade {s + 1}") for s in range(3)] == [
        "emergence",
        "structuration",
        "essaimage",
    ]
    assert [GRID.stage_key(s, 5, "") for s in range(5)] == [
        "emergence",
        "emergence",
        "structuration",
        "consolidation",
        "essaimage",
    ]


def test_grid_texts_are_french_and_complete():
    for grid in GRID:
        assert grid.questions
        assert grid.recommendations
        assert grid.do_not
        assert all(q.endswith(("?", ".")) for q in grid.questions)


# --------------------------------------------------------------------------- contexts
def test_contexts_national_first_then_sorted_codes(contexts):
    assert contexts[0].is_national
    assert contexts[0].territory == ""
    assert [c.territory for c in contexts[1:]] == ["T1", "T2", "T3", "T4", "T5"]
    assert [c.grid_key for c in contexts[1:]] == [*STAGE_KEYS, "essaimage"]


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


_JSON_CASES = [
    {},
    [],
    {"b": [1, 2.5, -0.0, True, False, None], "a": {}, "c": [], "é": '« x »\u00a0\n\t"\\\u0001'},
    [[[]], [{}], {"z": [{"y": [1e-07, 1e22, 123456789012345678901234567890]}]}],
    "texte\u2028",
    3,
    None,
]


@pytest.mark.parametrize("data", _JSON_CASES)
def test_indented_writer_equals_json_dumps(data):
    from evalterritoire.report.context import dumps_indented

    want = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True, allow_nan=False) + "\n"
    assert dumps_indented(data) == want


def test_indented_writer_leaves_other_values_to_json_dumps():
    from evalterritoire.report.context import dumps_indented

    deep: list = []
    for _ in range(80):
        deep = [deep, {"k": 1}]
    assert dumps_indented(deep) == json.dumps(deep, ensure_ascii=False, indent=1) + "\n"
    tuples = {"t": (1, 2), "n": {1: "x"}}
    want = json.dumps(tuples, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    assert dumps_indented(tuples) == want
    with pytest.raises(ValueError, match="JSON compliant"):
        dumps_indented({"x": [float("nan")]})
    with pytest.raises(TypeError):
        dumps_indented({"x": object()})


def test_context_stage_justification(contexts):
    t1, t2, t3, t4, t5 = contexts[1:]
    assert t1.territory_name == EVIL_NAME
    assert t1.stage_declared == 1
    assert t1.stage_gap == 1
    assert t3.stage_gap == 0
    # T2 (probability 0.55) lies between its stage and the next one, which its profile is
    # nearer to: the report keeps the earlier (its own) stage and points to the next
    assert t2.between_stages
    assert (t2.stage, t2.other_stage, t2.report_stage) == (1, 2, 1)
    assert t2.grid_key == "structuration"
    assert t2.next_stage["key"] == "consolidation"
    assert t2.next_stage["name"] == "Consolidation"
    assert t2.next_stage["is_assigned"] is False
    assert t3.stage_robustness == pytest.approx(0.7)
    assert not t3.between_stages  # robust enough (≥ 0.6) and probable (0.9)
    assert t3.report_stage == 2
    assert t3.other_stage is None
    assert not t1.between_stages
    assert t1.next_stage == {}
    assert t5.is_indicative
    assert not t4.is_indicative  # a disseminating territory whose verdicts are shown
    assert not t3.is_indicative
    assert len(t3.profile) == 9
    first = t3.profile[0]
    assert first["ci_low"] < first["score"] < first["ci_high"]
    assert first["centroid"] == pytest.approx(first["score"])  # one territory per stage
    assert [h["wave"] for h in t3.history] == [2024, 2025]
    assert [h["stage"] for h in t3.history] == [1, 2]
    assert {s["wave"] for s in t3.wave_scores} == {2024, 2025}
    lo, hi = t3.score_range
    for point in t3.wave_scores:  # every point of the wave chart has its n and interval
        assert point["n"] == 24
        assert point["status"] in {"publishable", "fragile"}
        # the interval of a bounded mean: inside the scale, on the logit of the rescaled score
        assert point["interval"] == "logit_scale"
        assert lo < point["ci_low"] < point["score"] < point["ci_high"] < hi


def _crafted(artefacts, code: str, *, probability=None, robustness=None, shift=0.0):
    """The artefacts with one territory's stage membership made uncertain."""
    maturity = artefacts.maturity.copy()
    row = maturity["territory"] == code
    if probability is not None:
        maturity.loc[row, "stage_probability"] = probability
    if robustness is not None:
        maturity.loc[row, "stage_robustness"] = robustness
    for col in [c for c in maturity.columns if c.startswith("score_")]:
        maturity.loc[row, col] = maturity.loc[row, col] + shift
    return replace(artefacts, maturity=maturity)


def test_between_stages_follows_the_earlier_stage(codebook, artefacts, tmp_path):
    """Grid §6: between two stages, the report of the earlier stage + « vers le stade suivant »."""
    # T3 is classed Consolidation with a shared membership (probability 0.5) and a profile
    # leaning towards the structuring territory
    crafted = _crafted(artefacts, "T3", probability=0.5, shift=-0.5)
    t3 = build_contexts(make_config(tmp_path), codebook, crafted)[3]
    assert t3.territory == "T3"
    assert (t3.stage, t3.stage_label) == (2, "Consolidation")  # the classification is kept
    assert t3.between_stages
    assert (t3.other_stage, t3.other_stage_label) == (1, "Structuration")
    assert (t3.report_stage, t3.report_stage_label) == (1, "Structuration")
    # questions, verdicts and recommendations of the EARLIER stage
    assert t3.grid_key == "structuration"
    structuring = GRID.stage("structuration")
    assert set(t3.recommendations) <= set(structuring.recommendations)
    assert len(t3.recommendations) == 3
    assert t3.stage_grid == structuring.to_record()
    assert not t3.allows_verdicts
    assert t3.assigned_grid_key == "consolidation"
    shown = {r["variable"] for r in t3.stage_indicators}
    assert shown <= set(load_report_spec("default", codebook).indicators("structuration"))
    # and the mention of the other (later) stage, here the one the clustering assigned
    assert t3.next_stage["name"] == "Consolidation"
    assert t3.next_stage["key"] == "consolidation"
    assert t3.next_stage["is_assigned"] is True
    assert t3.next_stage["signals"] == GRID.stage("consolidation").signals
    assert all(isinstance(m, str) for m in t3.next_stage["missing_milestones"])


def test_between_stages_by_probability_at_the_last_stage(codebook, artefacts, tmp_path):
    # T4's membership of its (last) stage is uncertain (0.4) while its robustness is high
    # (0.95): the probability decides, and the last stage can only lean backwards
    crafted = _crafted(artefacts, "T4", probability=0.4, robustness=0.95)
    t4 = build_contexts(make_config(tmp_path), codebook, crafted)[4]
    assert t4.territory == "T4"
    assert t4.between_stages
    assert (t4.stage, t4.other_stage, t4.report_stage) == (3, 2, 2)
    assert t4.grid_key == "consolidation"
    assert t4.next_stage["name"] == "Essaimage"
    assert t4.next_stage["is_assigned"] is True
    # exactly at the threshold the membership is not shared
    exact = _crafted(artefacts, "T4", probability=BETWEEN_THRESHOLD, robustness=0.1)
    t4 = build_contexts(make_config(tmp_path), codebook, exact)[4]
    assert not t4.between_stages
    assert t4.grid_key == "essaimage"


def test_free_text_excerpts_are_few_anonymous_and_deterministic(contexts):
    t1, t2, t5 = contexts[1], contexts[2], contexts[5]
    # respondent-id order, whitespace collapsed, duplicates once, at most three
    assert [q["text"] for q in t1.free_text] == [
        "Les élus sont là.",
        EVIL_COMMENT,  # raw here, escaped when rendered
        "On commence à peine à se connaître.",
    ]
    assert all(set(q) == {"variable", "question", "text"} for q in t1.free_text)
    assert t1.free_text[0]["question"] == "Qu'est-ce qui vous fait dire cela ?"
    assert "T1-001" not in json.dumps(t1.free_text)  # no respondent id next to a quote
    # T2 has one answer only (cut at 240 characters if it were quoted): fewer than min_cell
    # respondents answered, so any quote would be theirs, and nothing is quoted
    assert t2.free_text == ()
    long = _excerpt("x" * 400, set())
    assert len(long) == 240
    assert long.endswith("…")
    # fewer respondents than min_n: nothing is quoted
    assert t5.n_respondents < t5.min_n
    assert t5.free_text == ()
    assert HIDDEN_COMMENT not in t5.to_json()
    assert contexts[0].free_text == ()  # the national synthesis quotes nobody


def test_context_recommendations_follow_the_stage(contexts):
    """Three of the stage's recommendations, each with its reason, are proposed."""
    for ctx in contexts[1:]:
        assert set(ctx.recommendations) <= set(GRID.stage(ctx.grid_key).recommendations)
        assert len(ctx.recommendations) == len(ctx.recommendation_reasons) == 3
        assert ctx.stage_grid == GRID.stage(ctx.grid_key).to_record()
    assert contexts[0].recommendations == ()
    assert contexts[0].stage_grid == {}


def test_context_content_sections(contexts):
    t1 = contexts[1]
    assert len(t1.fragilities) == 14
    priorities = [f["estimate"] for f in t1.fragilities]
    assert priorities == sorted(priorities, reverse=True)
    assert all(0 <= p <= 10 for p in priorities)
    emploi = next(f for f in t1.fragilities if f["domain"] == "emploi")
    assert emploi["objective"][0]["variable"] == "ctx_taux_chomage"
    assert emploi["objective"][0]["value"] == pytest.approx(9.1)
    alliance = emploi["alliance"]  # a judged share: its value only when not suppressed
    assert alliance["status"] in {"publishable", "fragile", "suppressed"}
    if alliance["status"] == "suppressed":
        assert emploi["alliance_share"] is None
        assert alliance["ci_low"] is None
    else:
        assert 0 <= alliance["ci_low"] <= emploi["alliance_share"] <= alliance["ci_high"] <= 1
    # a bar with a hidden share is hidden whole (otherwise recoverable from 100 %)
    for bar in t1.agreement:
        shown = [v for v in bar["shares"].values() if v is not None]
        assert shown == [] if bar["status"] == "suppressed" else len(shown) == len(bar["shares"])
        if shown:
            assert sum(shown) == pytest.approx(1.0)
    assert "nsp" in t1.agreement[0]["shares"]  # emerging: « ne sait pas » kept as a group
    assert sum(r["n"] for r in t1.respondents) == t1.n_respondents == 24
    # six types of four respondents: no type reaches min_cell, one line gathers them all,
    # and there is no by-type breakdown (it would be the whole territory)
    assert [r["n"] for r in t1.respondents] == [24]
    assert t1.by_type == ()
    assert t1.n_types == 6
    assert {m["variable"] for m in t1.milestones} >= {"mat_gouv_instance", "mat_diag_realise"}
    for m in t1.milestones:  # no « fait / à faire » verdict on a suppressed share
        assert m["done"] is None if m["estimate"] is None else isinstance(m["done"], bool)
    assert all(r["kind"] == "share" for r in t1.freins)
    assert t1.stage_indicators
    assert not {r["variable"] for r in t1.stage_indicators} & {m["variable"] for m in t1.milestones}
    spreading = [c for c in contexts[1:] if "essaimage_table" in c.stage_grid["charts"]]
    assert spreading
    for ctx in spreading:  # what the stage's own table shows is not repeated
        assert ctx.essaimage
        shown = {r["variable"] for r in ctx.essaimage}
        assert not shown & {r["variable"] for r in ctx.stage_indicators}
    # T5 has 3 respondents: every figure resting on them is suppressed, and counted
    t5 = contexts[5]
    assert t5.quality["suppressed"] > 0
    assert t5.quality["publishable"] == 0
    assert all(r["estimate"] is None for r in t5.partnership if r["status"] == "suppressed")
    assert [r["term"] for r in t1.models] == ["C(id_type_repondant)[T.citoyen]", "ctx_densite"]


def test_national_context(contexts):
    nat = contexts[0]
    assert [d["n_territories"] for d in nat.stage_distribution] == [1, 1, 1, 2]
    assert len(nat.territories) == 5
    assert sum(t["n_territories"] for t in nat.transition_matrix) == 5
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
    from evalterritoire.report.context import StudyArtefacts

    with pytest.raises(RenderError, match="run ingest"):
        build_contexts(make_config(tmp_path), codebook, StudyArtefacts())


def test_context_texts_are_the_contexts_json_written_once(contexts, codebook, artefacts, tmp_path):
    """``iter_context_texts`` gives build_contexts' contexts and their ``to_json`` text, also for
    a territory of the maturity table without responses."""
    from evalterritoire.report.build import iter_context_texts

    config = make_config(tmp_path)
    pairs = list(iter_context_texts(config, codebook, artefacts))
    assert [ctx for ctx, _ in pairs] == contexts
    assert [text for _, text in pairs] == [c.to_json() for c in contexts]
    assert any(c.glossary for c in contexts)  # the spliced glossary is exercised
    territory = codebook.column("territory")
    responses = artefacts.responses
    without = replace(
        artefacts, responses=responses[responses[territory].astype(str) != "T5"].copy()
    )
    rebuilt = build_contexts(config, codebook, without)
    pairs = list(iter_context_texts(config, codebook, without))
    assert [text for _, text in pairs] == [c.to_json() for c in rebuilt]
    t5 = rebuilt[5]
    assert t5.territory == "T5"
    assert t5.free_text == ()
    assert t5.respondents == ()
    assert t5.n_respondents == contexts[5].n_respondents  # from the maturity table
