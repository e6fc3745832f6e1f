"""Fay–Herriot small-area estimates: REML against R (formulas and metafor), hand cases, study rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalterritoire.errors import EstimationError
from evalterritoire.estimates.smallarea import (
    compute_smallarea_estimates,
    fit_fay_herriot,
    select_covariates,
    smooth_sampling_variances,
)

FIXTURES = Path(__file__).parent / "fixtures" / "r" / "smallarea"
CASES = ("interior", "few_areas", "boundary", "shares")


def _case(name: str):
    data = pd.read_csv(FIXTURES / f"input_{name}.csv")
    xs = [c for c in data.columns if c.startswith("x")]
    X = np.column_stack([np.ones(len(data)), data[xs].to_numpy(dtype=float)])
    params = pd.read_csv(FIXTURES / "parameters.csv")
    params = params[params["case"] == name].set_index("parameter")["value"].astype(float)
    areas = pd.read_csv(FIXTURES / "areas.csv")
    return (
        data["y"].to_numpy(float),
        data["psi"].to_numpy(float),
        X,
        params,
        areas[areas["case"] == name],
    )


@pytest.mark.parametrize("name", CASES)
def test_reml_fit_agrees_with_r_to_1e6(name):
    y, psi, X, params, areas = _case(name)
    fit = fit_fay_herriot(y, psi, X)
    assert fit.converged
    assert fit.sigma2_u == pytest.approx(params["sigma2_u"], rel=1e-6, abs=1e-10)
    # the formulas and metafor::rma agree in R; both are the reference
    assert params["sigma2_u_metafor"] == pytest.approx(params["sigma2_u"], rel=1e-8, abs=1e-12)
    betas = [params[f"beta_{c}"] for c in ["intercept"] + [f"x{i}" for i in range(1, X.shape[1])]]
    np.testing.assert_allclose(fit.beta, betas, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(fit.eblup, areas["eblup"], rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(fit.eblup, areas["eblup_metafor"], rtol=1e-6, atol=1e-10)
    for term in ("gamma", "g1", "g2", "g3", "mse"):
        np.testing.assert_allclose(getattr(fit, term), areas[term], rtol=1e-6, atol=1e-12)
    assert fit.loglik == pytest.approx(params["loglik_reml"], rel=1e-9)


@pytest.mark.parametrize("name", CASES)
def test_ml_fit_agrees_with_r(name):
    y, psi, X, params, _ = _case(name)
    fit = fit_fay_herriot(y, psi, X, method="ML")
    assert fit.sigma2_u == pytest.approx(params["sigma2_u_ml"], rel=1e-6, abs=1e-10)
    assert params["sigma2_u_ml_metafor"] == pytest.approx(
        params["sigma2_u_ml"], rel=1e-8, abs=1e-12
    )
    assert fit.loglik == pytest.approx(params["loglik_ml"], rel=1e-9)


def test_boundary_case_has_no_between_area_variance():
    y, psi, X, _, _ = _case("boundary")
    fit = fit_fay_herriot(y, psi, X)
    assert fit.sigma2_u == 0.0
    np.testing.assert_allclose(fit.gamma, 0.0)
    np.testing.assert_allclose(fit.eblup, X @ fit.beta)  # purely synthetic
    np.testing.assert_allclose(fit.g1, 0.0)


def test_equal_sampling_variances_have_the_closed_form():
    """With ψ_d = ψ for every area, σ²_REML = RSS / (m - p) - ψ and σ²_ML = RSS / m - ψ."""
    rng = np.random.default_rng(3)
    m, psi = 30, 0.2
    X = np.column_stack([np.ones(m), rng.normal(size=m)])
    y = X @ [1.0, 0.5] + rng.normal(0, 0.7, m)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    rss = float(np.sum((y - X @ beta) ** 2))
    reml = fit_fay_herriot(y, np.full(m, psi), X)
    ml = fit_fay_herriot(y, np.full(m, psi), X, method="ML")
    assert reml.sigma2_u == pytest.approx(rss / (m - 2) - psi, rel=1e-9)
    assert ml.sigma2_u == pytest.approx(rss / m - psi, rel=1e-9)
    np.testing.assert_allclose(reml.beta, beta, rtol=1e-9)  # equal weights: GLS is OLS
    # and the EBLUP shrinks every area by the same factor σ² / (σ² + ψ)
    gamma = reml.sigma2_u / (reml.sigma2_u + psi)
    np.testing.assert_allclose(reml.eblup, gamma * y + (1 - gamma) * (X @ beta), rtol=1e-9)


def test_eblup_mse_beats_the_direct_variance_when_areas_are_alike():
    y, psi, X, _, _ = _case("shares")
    fit = fit_fay_herriot(y, psi, X)
    assert (fit.mse < psi).mean() > 0.9


def test_invalid_inputs_are_refused():
    X = np.ones((5, 1))
    with pytest.raises(EstimationError):
        fit_fay_herriot(np.ones(5), np.zeros(5), X)
    with pytest.raises(EstimationError):
        fit_fay_herriot(np.ones(5), np.ones(4), X)
    with pytest.raises(EstimationError):
        fit_fay_herriot(np.ones(3), np.ones(3), np.ones((3, 3)))
    with pytest.raises(EstimationError):
        fit_fay_herriot(np.ones(5), np.ones(5), X, method="EB")


def test_forward_selection_finds_the_true_covariate():
    rng = np.random.default_rng(11)
    m = 60
    C = rng.normal(size=(m, 8))
    psi = rng.uniform(0.02, 0.08, m)
    y = 5 + 0.8 * C[:, 5] + rng.normal(0, 0.2, m) + rng.normal(0, np.sqrt(psi))
    assert select_covariates(y, psi, C, max_covariates=3)[0] == 5
    assert select_covariates(y, psi, C, max_covariates=0) == []
    # pure noise: no covariate lowers the BIC enough to enter
    noise = 5 + rng.normal(0, 0.3, m)
    assert len(select_covariates(noise, psi, C[:, :3], max_covariates=3)) <= 1


def test_smoothed_variances_pool_the_element_variance():
    var = np.array([0.02, 0.08, 0.0, np.nan])
    s2 = np.array([1.0, 2.0, 1.5, 1.0])
    n = np.array([50.0, 25.0, 10.0, 30.0])
    psi, deff, pooled = smooth_sampling_variances(var, s2, n)
    assert pooled == pytest.approx((49 * 1 + 24 * 2 + 9 * 1.5 + 29 * 1) / (49 + 24 + 9 + 29))
    assert deff == pytest.approx((0.02 + 0.08) / (1 / 50 + 2 / 25))  # positive variances only
    np.testing.assert_allclose(psi, deff * pooled / n)
    assert (psi > 0).all()  # a territory with a zero direct variance still gets one


def _territories(m: int = 24, seed: int = 5):
    rng = np.random.default_rng(seed)
    codes = [f"T{i:02d}" for i in range(m)]
    x = rng.normal(size=m)
    n = rng.integers(3, 60, m)
    theta = 3 + 0.4 * x + rng.normal(0, 0.15, m)
    se = np.sqrt(0.8 / n)
    direct = pd.DataFrame(
        {
            "domain": codes,
            "variable": "item",
            "level": "",
            "statistic": "mean",
            "kind": "bounded_mean",
            "estimate": theta + rng.normal(0, se),
            "se": se,
            "df": 2,
            "n": n,
            "deff": 1.0,
            "range_low": 1.0,
            "range_high": 5.0,
        }
    )
    context = pd.DataFrame(
        {"ctx_x": x, "ctx_noise": rng.normal(size=m), "ctx_const": 1.0},
        index=pd.Index(codes, dtype="string"),
    )
    return direct, pd.Series(0.8, index=direct.index), context


def test_study_rows_leave_out_small_territories_and_name_the_covariates():
    direct, s2, context = _territories()
    rows, fits = compute_smallarea_estimates(direct, s2, context, min_cell=5, wave=2025)
    assert (rows["estimator"] == "fay_herriot").all()
    assert (rows["n"] >= 5).all()  # confidentiality: no model value below min_cell
    assert set(rows["domain"]) == set(direct.loc[direct["n"] >= 5, "domain"])
    fit = fits.iloc[0]
    assert fit["covariates"].split(";")[0] == "ctx_x"
    assert "ctx_const" not in fit["covariates"]  # constant columns are not candidates
    assert fit["n_areas"] == len(rows)
    assert (rows["se"] > 0).all()
    # fixed covariates are used as given
    rows2, fits2 = compute_smallarea_estimates(direct, s2, context, covariates=["ctx_noise"])
    assert fits2.iloc[0]["covariates"] == "ctx_noise"
    assert len(rows2) == len(rows)


def test_too_few_territories_give_no_model():
    direct, s2, context = _territories(m=8)
    rows, fits = compute_smallarea_estimates(direct, s2, context)
    assert rows.empty
    assert fits.empty
