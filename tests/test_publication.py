"""Publication rules and interval methods on hand-computed cases (issue « publishable numbers »)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalterritoire.config import PublicationConfig
from evalterritoire.estimates import (
    OTHER_GROUP,
    assess_publication,
    complementary_suppression,
    compute_intervals,
    merge_small_groups,
)
from evalterritoire.report.display import display_decimals, figure_text, interval_words
from evalterritoire.report.sections import _secondary


def _judge(**row):
    base = {"kind": "share", "estimator": "direct", "df": 20.0, "range_low": 0.0,
            "range_high": 1.0}  # fmt: skip
    status, reason = assess_publication(pd.DataFrame([{**base, **row}]))
    return status[0], set(reason[0].split(";")) - {""}


def test_share_at_zero_and_one_is_clopper_pearson_with_n():
    low, high, method = compute_intervals("share", [0.0, 0.0, 1.0], [0, 0, 0], 10, [40, 100, 100])
    # Clopper–Pearson at 0 successes: upper = 1 − 0.025^(1/n); at n successes: lower = 0.025^(1/n)
    assert high[0] == pytest.approx(1 - 0.025 ** (1 / 40))  # 0.0881
    assert high[1] == pytest.approx(1 - 0.025 ** (1 / 100))  # 0.0362
    assert low[2] == pytest.approx(0.025 ** (1 / 100))
    assert (low[0], low[1], high[2]) == (0.0, 0.0, 1.0)
    assert list(method) == ["korn_graubard"] * 3
    # NCHS: 8,8 points wide around 0 % is an infinite relative width → suppressed; 3,6 points
    # (≤ 5) is shown, flagged for review (fragile) as every 0 % or 100 %
    assert _judge(estimate=0.0, se=0.0, ci_low=0.0, ci_high=high[0], n=40) == (
        "suppressed",
        {"relative_width", "boundary"},
    )
    assert _judge(estimate=0.0, se=0.0, ci_low=0.0, ci_high=high[1], n=100) == (
        "fragile",
        {"boundary"},
    )


def test_nchs_share_rules():
    # effective n = p(1 − p)/var = 0.25/0.0144 = 17,4 < 30
    assert "effective_n" in _judge(estimate=0.5, se=0.12, ci_low=0.3, ci_high=0.7, n=60)[1]
    # 60 points wide on n ≥ 30: suppressed (the issue's « intervals 60 points wide »)
    status, reasons = _judge(estimate=0.5, se=0.05, ci_low=0.2, ci_high=0.8, n=100)
    assert (status, reasons) == ("suppressed", {"width"})
    # a sound share with few df is fragile, not suppressed
    assert _judge(estimate=0.5, se=0.05, ci_low=0.4, ci_high=0.6, n=100, df=3.0) == (
        "fragile",
        {"df"},
    )
    assert _judge(estimate=0.5, se=0.05, ci_low=0.4, ci_high=0.6, n=100) == ("publishable", set())
    # confidentiality comes first, whatever the precision
    assert _judge(estimate=0.5, se=0.01, ci_low=0.48, ci_high=0.52, n=4)[0] == "suppressed"


def test_likert_mean_at_the_scale_edge_stays_inside_the_scale():
    low, high, method = compute_intervals(
        "bounded_mean", [5.0, 1.0], [0.0, 0.0], 10, [12, 12], low=1, high=5
    )
    # every answer at 5: the rescaled mean is 1, its Clopper–Pearson lower bound 0.025^(1/12)
    assert low[0] == pytest.approx(1 + 4 * 0.025 ** (1 / 12))  # 3,94
    assert (high[0], low[1]) == (5.0, 1.0)
    assert high[1] == pytest.approx(5 - 4 * 0.025 ** (1 / 12))
    assert list(method) == ["logit_scale", "logit_scale"]


def test_logit_and_log_intervals_never_leave_the_range():
    rng = np.random.default_rng(3)
    est = rng.uniform(1, 5, 500)
    se = rng.uniform(0.01, 3, 500)
    df = rng.integers(1, 30, 500).astype(float)
    low, high, _ = compute_intervals("bounded_mean", est, se, df, 20, low=1, high=5)
    assert np.all((low >= 1) & (low < est) & (est < high) & (high <= 5))
    counts = rng.uniform(0.1, 20, 500)
    low, high, _ = compute_intervals("positive_mean", counts, se * 5, df, 20, low=0)
    assert np.all((low > 0) & (low < counts) & (counts < high))
    # the symmetric t interval would go negative on « 3,4 [−7,5 ; 14,2] »; the log one does not
    (low,), (high,), _ = compute_intervals("positive_mean", [3.4], [4.0], [4.0], [20], low=0)
    assert 0 < low < 3.4 < high


def test_one_psu_domain_and_no_variance_are_said_in_words():
    low, high, method = compute_intervals(
        "bounded_mean", [3.0, 3.0], [0.4, 0.0], [0.0, 10.0], [20, 20], low=1, high=5
    )
    assert np.isnan(low).all()
    assert np.isnan(high).all()
    assert list(method) == ["not_estimable", "not_estimable"]
    status, reasons = _judge(kind="bounded_mean", estimate=3.0, se=0.4, ci_low=np.nan,
                             ci_high=np.nan, n=20, df=0.0, range_low=1.0, range_high=5.0)  # fmt: skip
    assert status == "fragile"
    assert reasons == {"not_estimable", "df"}
    rec = {"status": "fragile", "estimate": 3.0, "ci_low": None, "ci_high": None, "se": 0.0,
           "reason": "not_estimable", "interval": "not_estimable"}  # fmt: skip
    assert interval_words(rec) == "intervalle non estimable : toutes les réponses sont identiques"
    assert "[" not in figure_text(rec, interval=True)  # never drawn as a point


def test_display_precision_rises_where_an_interval_would_round_to_a_point():
    rec = {"ci_low": 3.96, "ci_high": 4.04}
    assert display_decimals(rec, 1) == 2  # « 4,0 [4,0 ; 4,0] » would be a point
    assert display_decimals({"ci_low": 3.5, "ci_high": 4.2}, 1) == 1


def test_a_suppressed_cell_cannot_be_recovered_by_subtraction():
    # shares of a single-choice item: 60 %, s, 30 % would give the hidden 10 % by subtraction
    assert complementary_suppression([False, True, False], [0.6, 0.1, 0.3]) == [
        False,
        True,
        True,  # the smallest shown share goes too
    ]
    assert complementary_suppression([True, True, False], [0.1, 0.1, 0.8]) == [True, True, False]
    assert complementary_suppression([False, True], [0.9, 0.1], closed=False) == [False, True]
    records = [
        {"estimate": 0.6, "status": "publishable", "reason": ""},
        {"estimate": None, "status": "suppressed", "reason": "min_cell"},
        {"estimate": 0.3, "status": "publishable", "reason": ""},
    ]
    out = _secondary(records)
    assert [r["status"] for r in out] == ["publishable", "suppressed", "suppressed"]
    assert out[2]["estimate"] is None
    assert out[2]["reason"] == "secondary"


def test_small_actor_types_are_merged_never_alone():
    # the mayor alone would be « autres acteurs » = one person: the smallest other type joins
    groups = merge_small_groups({"maire": 1, "association": 20, "entreprise": 8}, 5)
    assert groups == {"maire": OTHER_GROUP, "entreprise": OTHER_GROUP, "association": "association"}
    groups = merge_small_groups({"maire": 2, "habitant": 3, "association": 20}, 5)
    assert groups == {"maire": OTHER_GROUP, "habitant": OTHER_GROUP, "association": "association"}
    assert merge_small_groups({"a": 6, "b": 7}, 5) == {"a": "a", "b": "b"}
    every = merge_small_groups({"a": 2, "b": 2}, 5)
    assert set(every.values()) == {OTHER_GROUP}  # no breakdown at all


def test_study_rules_are_read_from_the_config():
    row = {"kind": "bounded_mean", "estimate": 3.0, "se": 0.1, "ci_low": 2.8, "ci_high": 3.2,
           "df": 20.0, "n": 10, "range_low": 1.0, "range_high": 5.0}  # fmt: skip
    table = pd.DataFrame([row])
    assert assess_publication(table)[0][0] == "publishable"
    status, reason = assess_publication(table, PublicationConfig(min_cell=11))
    assert (status[0], reason[0]) == ("suppressed", "min_cell")
