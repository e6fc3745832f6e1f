"""The written parts of the reports: French, deterministic, stage-aware, status-aware."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import yaml
from _synthetic_reports import make_artefacts, make_config

from evalterritoire.errors import ReportSpecError
from evalterritoire.report.build import build_contexts
from evalterritoire.report.french import NBSP, NNBSP
from evalterritoire.report.grid import load_grid
from evalterritoire.report.narrative import narrative_fields
from evalterritoire.report.neighbours import nearest_neighbours
from evalterritoire.report.phrases import fill, join_fr, ordinal_fr, plural_fr
from evalterritoire.report.spec import default_report_spec_path, load_report_spec

GRID = load_grid()
BAND_WORDS = {b.label.lower() for bands in GRID.band_sets.values() for b in bands}


@pytest.fixture(scope="module")
def contexts(codebook, tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("narrative"))
    return build_contexts(config, codebook, make_artefacts(codebook))


@pytest.fixture(scope="module")
def spec(codebook):
    return load_report_spec(None, codebook)


def _text(ctx) -> str:
    parts = [s for v in ctx.essentiel.values() for s in v]
    parts += [s for a in ctx.answers for s in a["sentences"]]
    parts += list(ctx.recommendation_reasons) + list(ctx.stage_change.get("sentences", []))
    return "\n".join(parts)


def test_french_helpers_agree_and_space():
    assert join_fr(["a"]) == "a"
    assert join_fr(["a", "b", "c"]) == "a, b et c"
    assert plural_fr(1, "dimension") == "dimension"
    assert plural_fr(2, "dimension") == "dimensions"
    assert ordinal_fr(1) == "premier"
    assert ordinal_fr(4) == "quatrième"
    out = fill("le stade « {s} » : {p} ; fin ( x )", s="Émergence", p="12 %")
    assert out == f"Le stade «{NBSP}Émergence{NBSP}»{NBSP}: 12{NBSP}%{NNBSP}; fin ( x)"


def test_every_sentence_is_typeset(contexts):
    for ctx in contexts[1:]:
        for sentence in _text(ctx).splitlines():
            assert not re.search(r" [:;%»]", sentence), sentence
            assert not re.search(r"« ", sentence), sentence
            assert "{" not in sentence
            assert "}" not in sentence
            assert sentence[0].isupper() or sentence[0] == "«", sentence
            assert not re.search(r"\d\.\d", sentence), sentence  # decimal comma


def test_summary_opens_with_the_stage_and_its_certainty(contexts):
    t1, t2 = contexts[1], contexts[2]
    assert t1.essentiel["stage"][0].startswith("Le territoire est au stade «\u00a0Émergence")
    assert "le premier des quatre stades" in t1.essentiel["stage"][0]
    assert t2.between_stages
    assert "entre les stades" in t2.essentiel["stage"][0]
    t5 = contexts[5]
    assert any("restent indicatifs" in s for s in t5.essentiel["stage"])
    for ctx in contexts[1:]:
        assert 1 <= len(ctx.essentiel["strengths"]) <= 3
        assert 1 <= len(ctx.essentiel["attention"]) <= 3


def test_no_verdict_where_the_stage_forbids_it(contexts):
    """Band words only where the grid allows threshold readings (and not when indicative)."""
    for ctx in contexts[1:]:
        text = _text(ctx).lower()
        said = {w for w in BAND_WORDS if f"«{NBSP}{w}{NBSP}»" in text}
        if not ctx.allows_verdicts or ctx.is_indicative:
            assert said == set(), (ctx.territory, said)
    assert any(f"«{NBSP}force{NBSP}»" in _text(c) for c in contexts[1:] if c.allows_verdicts)


def test_narrative_is_deterministic(codebook, tmp_path, contexts):
    again = build_contexts(make_config(tmp_path), codebook, make_artefacts(codebook))
    for a, b in zip(contexts, again, strict=True):
        assert (a.essentiel, a.answers, a.recommendations, a.neighbours) == (
            b.essentiel,
            b.answers,
            b.recommendations,
            b.neighbours,
        )


def test_summaries_differ_once_figures_are_removed(contexts):
    shapes = {re.sub(r"[\d,+−%]+", "#", repr(c.essentiel)) for c in contexts[1:]}
    assert len(shapes) == len(contexts) - 1


def test_questions_are_answered_or_declared_unanswerable(contexts, spec):
    for ctx in contexts[1:]:
        assert [a["question"] for a in ctx.answers] == list(ctx.stage_grid["questions"])
        declared = spec.narrative.answers[ctx.grid_key]
        for answer, entry in zip(ctx.answers, declared, strict=True):
            assert 1 <= len(answer["sentences"]) <= 3
            if not entry.items and not entry.sections:
                assert answer["sentences"][0].startswith("L'enquête ne mesure pas ce point")


def test_status_decides_what_is_said(contexts, codebook, spec):
    """Suppressed figures are never stated, fragile ones carry the caution words."""
    t3 = contexts[3]
    profile = [
        {**p, "status": "suppressed" if i == 0 else "fragile"} for i, p in enumerate(t3.profile)
    ]
    hidden = profile[0]["label"]
    ctx = replace(t3, profile=tuple(profile))

    def records(items):
        return [
            {
                "variable": i,
                "label": i,
                "estimate": 0.5,
                "n": 9,
                "kind": "share",
                "status": "suppressed",
            }
            for i in items
        ]

    fields = narrative_fields(ctx, spec.narrative, codebook, records, {})
    text = "\n".join(s for v in fields["essentiel"].values() for s in v)
    assert hidden not in text.split("Depuis")[0]
    assert "chiffre fragile" in text
    answered = [a["sentences"] for a in fields["answers"]]
    assert all(
        s[0].startswith(("Les réponses recueillies", "L'enquête ne mesure")) for s in answered
    )


def test_stage_change_is_explained_by_the_dimensions_that_moved(contexts):
    changed = [c for c in contexts[1:] if c.stage_change]
    assert changed
    for ctx in changed:
        first, because = ctx.stage_change["sentences"]
        assert ctx.stage_label in first
        assert because.startswith(("Ce changement de stade tient", "Aucune dimension"))


def test_recommendations_follow_the_weakest_dimensions(contexts, spec):
    for ctx in contexts[1:]:
        assert len(ctx.recommendations) == 3
        for reason in ctx.recommendation_reasons:
            assert reason.startswith("Proposée au vu de")


def test_neighbours_are_the_nearest_others(contexts):
    groups = nearest_neighbours(contexts)
    for code, group in groups.items():
        names = [n["territory"] for n in group["neighbours"]]
        assert code not in names
        assert len(names) == len(contexts) - 2
        dists = [n["distance"] for n in group["neighbours"]]
        assert dists == sorted(dists)
    a, b = "T1", groups["T1"]["neighbours"][0]["territory"]
    back = {n["territory"]: n["distance"] for n in groups[b]["neighbours"]}
    assert back[a] == pytest.approx(groups["T1"]["neighbours"][0]["distance"])


def _spec_file(tmp_path, change):
    raw = yaml.safe_load(default_report_spec_path().read_text(encoding="utf-8"))
    change(raw["narrative"])
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda n: n["answers"]["emergence"].pop(), r"5 entries for 6 evaluative questions"),
        (
            lambda n: n["sentences"].update(first_wave="{inconnu}"),
            r"sentences\.first_wave: unknown slot",
        ),
        (
            lambda n: n["recommendations"]["emergence"].append({"rank": 9}),
            r"rank 9 but the stage has 7",
        ),
        (
            lambda n: n["answers"]["emergence"][0].update(items=["res_inconnu"]),
            r"unknown item 'res_inconnu'",
        ),
    ],
)
def test_malformed_narrative_is_refused(tmp_path, codebook, change, message):
    path = _spec_file(tmp_path, change)
    with pytest.raises(ReportSpecError, match=message):
        load_report_spec(path, codebook).check_grid(GRID)


def _reasons_for(writer, dims):
    from types import SimpleNamespace

    target = SimpleNamespace(rank=1, dimensions=tuple(dims), milestones=())
    return writer.need(target, dims, {})


def test_a_recommendation_never_gives_a_strength_as_its_reason(contexts, spec, codebook):
    from evalterritoire.report.narrative import _Writer

    ctx = next(c for c in contexts[1:] if c.stage_grid.get("bands") and not c.is_indicative)
    writer = _Writer(ctx, spec.narrative, codebook, {}, {})
    top_low = writer.bands[-1]["low"]

    def dim(label, value, gap):
        return {"label": label, "value": value, "gap": gap, "dimension": label}

    dims = {
        "forte": dim("Forte", top_low + 0.3, 1.0),
        # prints as the top band's lower bound: read as a strength, never cited
        "arrondie": dim("Arrondie", top_low - 0.04, 0.5),
        "faible": dim("Faible", writer.bands[0]["low"] + 0.1, -1.0),
    }
    weight, reasons = _reasons_for(writer, dims)
    assert weight > 0
    assert len(reasons) == 1
    assert reasons[0].startswith("Faible (")
    # only strengths: no dimension reason (the stage's general reason is used instead)
    strong_only = {k: dims[k] for k in ("forte", "arrondie")}
    assert _reasons_for(writer, strong_only)[1] == []

    # without reading bands: the gap to the stage's mean decides
    writer.bands = []
    tol = writer.span / 16
    dims = {"haut": dim("Haut", 3.0, 2 * tol), "bas": dim("Bas", 2.0, -2 * tol)}
    assert [r.split(" (")[0] for r in _reasons_for(writer, dims)[1]] == ["Bas"]
