"""SurveyDesign: construction errors, variance_of_totals contract, calibration, replicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalterritoire.design import SurveyDesign, compute_kish_effective_n
from evalterritoire.errors import DesignError


@pytest.fixture
def strat() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 60
    return pd.DataFrame(
        {
            "h": np.repeat(["a", "b", "c"], 20),
            "psu": [f"p{i // 4}" for i in range(n)],
            "w": rng.uniform(1, 5, n),
            "y": rng.normal(10, 2, n),
            "x": rng.normal(0, 1, n),
            "N": np.repeat([40.0, 50.0, 60.0], 20),
        }
    )


def _by_hand(df: pd.DataFrame, z: np.ndarray, fpc: bool) -> np.ndarray:
    """Textbook stratified cluster variance of a total (independent implementation)."""
    v = np.zeros((z.shape[1], z.shape[1]))
    for h, part in df.assign(_i=np.arange(len(df))).groupby("h"):
        totals = np.array([z[g["_i"].to_numpy()].sum(axis=0) for _, g in part.groupby("psu")])
        n_h = len(totals)
        f = (1 - n_h / part["N"].iloc[0]) if fpc else 1.0
        dev = totals - totals.mean(axis=0)
        v += f * n_h / (n_h - 1) * dev.T @ dev
        del h
    return v


@pytest.mark.parametrize("fpc", [False, True])
def test_variance_of_totals_matches_textbook_formula(strat: pd.DataFrame, fpc: bool) -> None:
    d = SurveyDesign(strat, weight="w", strata="h", psu="psu", fpc="N" if fpc else None)
    z = np.column_stack([strat.w * strat.y, strat.w * strat.x])
    v = d.variance_of_totals(z)
    assert v.shape == (2, 2)
    np.testing.assert_allclose(v, _by_hand(strat, z, fpc), rtol=1e-12)
    assert d.variance_of_totals(z[:, 0]).shape == (1, 1)
    assert d.n_psu == 15
    assert d.n_strata == 3
    assert d.df == 12


def test_fpc_fraction_equals_count(strat: pd.DataFrame) -> None:
    n_h = strat.groupby("h")["psu"].transform("nunique")
    frac = strat.assign(f=n_h / strat["N"])
    z = (strat.w * strat.y).to_numpy()
    a = SurveyDesign(frac, weight="w", strata="h", psu="psu", fpc="N").variance_of_totals(z)
    b = SurveyDesign(frac, weight="w", strata="h", psu="psu", fpc="f").variance_of_totals(z)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_design_is_immutable(strat: pd.DataFrame) -> None:
    d = SurveyDesign(strat, weight="w")
    with pytest.raises(AttributeError):
        d.foo = 1  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="read-only"):
        d.weights[0] = 3.0


def test_subset_zeroes_contributions_outside_domain(strat: pd.DataFrame) -> None:
    d = SurveyDesign(strat, weight="w", strata="h", psu="psu")
    mask = (strat.x > 0).to_numpy()
    z = (strat.w * strat.y).to_numpy()
    np.testing.assert_allclose(
        d.subset(mask).variance_of_totals(z), d.variance_of_totals(z * mask), rtol=1e-12
    )
    sub = d.subset(strat.h == "a")
    assert sub.df == 5 - 1
    with pytest.raises(DesignError, match="no members"):
        d.subset(np.zeros(len(strat), dtype=bool))


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda df: df.assign(w=df.w.where(df.index != 3)), {"weight": "w"}, "missing"),
        (lambda df: df.assign(w=df.w.where(df.index != 3, 0.0)), {"weight": "w"}, "≤ 0"),
        (lambda df: df, {"weight": "poids"}, "unknown design column"),
        (
            lambda df: df.assign(psu=np.where(df.index < 30, "p0", "p1")),
            {"strata": "h", "psu": "psu"},
            "not nested",
        ),
        (
            lambda df: df.assign(psu=np.where(df.h == "a", "solo", df.psu)),
            {"strata": "h", "psu": "psu"},
            "stratum 'a' has only one sampled PSU",
        ),
        (
            lambda df: df.assign(N=2.0),
            {"strata": "h", "psu": "psu", "fpc": "N"},
            "smaller than the number of sampled",
        ),
        (lambda df: df, {"lonely_psu": "average"}, "lonely_psu must be one of"),
    ],
)
def test_bad_input_gives_one_typed_error(strat, change, kwargs, message) -> None:
    with pytest.raises(DesignError, match=message):
        SurveyDesign(change(strat), **kwargs)


def test_lonely_psu_rules(strat: pd.DataFrame) -> None:
    df = strat.assign(psu=np.where(strat.h == "a", "solo", strat.psu))
    z = (df.w * df.y).to_numpy()
    base = SurveyDesign(df[df.h != "a"], weight="w", strata="h", psu="psu")
    v_rest = base.variance_of_totals(z[(df.h != "a").to_numpy()])
    for rule in ("remove", "certainty"):
        v = SurveyDesign(df, weight="w", strata="h", psu="psu", lonely_psu=rule)
        np.testing.assert_allclose(v.variance_of_totals(z), v_rest, rtol=1e-12)
    adj = SurveyDesign(df, weight="w", strata="h", psu="psu", lonely_psu="adjust")
    lonely_total = z[(df.h == "a").to_numpy()].sum()
    np.testing.assert_allclose(adj.variance_of_totals(z), v_rest + lonely_total**2, rtol=1e-12)


def test_kish_effective_n() -> None:
    assert compute_kish_effective_n(np.ones(10)) == pytest.approx(10)
    assert compute_kish_effective_n([1.0, 3.0]) == pytest.approx(16 / 10)
