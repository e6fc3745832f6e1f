"""Issue 18: a study whose waves use codebooks that differ on an item draws no trend of it
(nor of the dimension it feeds) across the change until ``study.toml`` acknowledges it."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from evalterritoire.codebook import load_codebook
from evalterritoire.config import _parse_study  # the [study] table as the loader reads it
from evalterritoire.report.comparability import (
    describe_breaks,
    find_trend_breaks,
    without_broken_trends,
)


@pytest.fixture(scope="module")
def codebooks():
    new = load_codebook(None)
    item = next(v for v in new if v.dimension and v.type == "likert")
    changed = dataclasses.replace(item, label_fr="Ancienne formulation : " + item.label_fr)
    old = dataclasses.replace(new, variables=tuple(changed if v.id == item.id else v for v in new))
    return old, new, item


def test_a_changed_item_breaks_its_dimension_trend_until_acknowledged(codebooks):
    old, new, item = codebooks
    breaks = find_trend_breaks({2024: old, 2025: new})
    assert [b["item"] for b in breaks] == [item.id]
    assert breaks[0]["dimension"] == item.dimension
    assert (breaks[0]["from_wave"], breaks[0]["to_wave"]) == (2024, 2025)
    assert find_trend_breaks({2024: old, 2025: new}, acknowledged=[item.id]) == []
    assert find_trend_breaks({2024: new, 2025: new}) == []


def test_scores_before_the_change_are_blanked_and_the_annex_says_why(codebooks):
    old, new, item = codebooks
    dim = item.dimension
    profiles = pd.DataFrame(
        {
            "wave": [2023, 2024, 2025],
            "territory": ["T1"] * 3,
            f"score_{dim}": [2.0, 2.5, 3.0],
            "score_autre": [1.0, 1.5, 2.0],
        }
    )
    breaks = find_trend_breaks({2023: old, 2024: old, 2025: new})
    out = without_broken_trends(profiles, breaks)
    assert out[f"score_{dim}"].isna().tolist() == [True, True, False]
    assert out["score_autre"].tolist() == [1.0, 1.5, 2.0]  # other dimensions keep their trend
    assert profiles[f"score_{dim}"].notna().all()  # the input is not modified
    text = describe_breaks(breaks, {dim: "Ma dimension"})[0]
    assert "entre 2024 et 2025" in text
    assert "« Ma dimension »" in text
    assert item.id not in text  # the reader sees the question, not its id


def test_acknowledged_changes_is_a_study_key(tmp_path):
    export = tmp_path / "export.csv"
    export.write_text("x\n", encoding="utf-8")
    raw = {"study": {"wave": 2025, "exports": ["export.csv"], "acknowledged_changes": ["q1"]}}
    assert _parse_study(raw, tmp_path / "study.toml")["acknowledged_changes"] == ("q1",)
