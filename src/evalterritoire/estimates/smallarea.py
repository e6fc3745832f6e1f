"""Small-area estimates: the area-level Fay–Herriot model, fitted by REML, with Prasad–Rao MSEs.

Model (Fay & Herriot 1979; Rao & Molina 2015, ch. 6): for territory ``d``,
``ŷ_d = x_d'β + u_d + e_d`` with ``u_d ~ N(0, σ²_u)`` (territories' departures from what their
covariates predict) and ``e_d ~ N(0, ψ_d)`` the sampling error of the direct estimate ``ŷ_d``,
``ψ_d`` treated as known. The best predictor of the territory value is the EBLUP
``θ̃_d = γ_d ŷ_d + (1 - γ_d) x_d'β̂`` with ``γ_d = σ̂²_u / (σ̂²_u + ψ_d)``: a territory measured
precisely keeps its own figure, one measured poorly borrows from territories like it.

* **σ²_u by REML**, Fisher scoring projected on ``σ²_u ≥ 0`` (the estimate is 0 when the
  restricted likelihood decreases from 0), started at the median of ``ψ``; a fit that does not
  converge in ``max_iter`` steps is finished by a bounded scalar maximisation. Checked against
  R (``nlme::lme`` with the residual variance fixed to ``ψ_d``, and the formulas) by
  ``r/fay_herriot_reference.R``.
* **MSE** (Prasad & Rao 1990; Datta & Lahiri 2000 for REML):
  ``g1 + g2 + 2 g3`` with ``g1 = γ_d ψ_d``, ``g2 = (1 - γ_d)² x_d'(X'V⁻¹X)⁻¹x_d`` and
  ``g3 = ψ_d² / (σ²_u + ψ_d)³ × 2 / Σ_d (σ²_u + ψ_d)⁻²``.
* **Sampling variances** ``ψ_d``: with one to five design degrees of freedom a territory's own
  variance estimate is itself very noisy (and 0 for a share of 0 %), so the model uses a
  generalised variance function: ``ψ_d = D̄ S̄² / n_d``, with ``S̄²`` the pooled within-territory
  variance of the item, ``n_d`` its respondents and ``D̄ = Σ v_d / Σ (c_d S²_d / n_d)`` the mean
  design effect of the territories' direct variances ``v_d`` (Wolter 2007 ch. 7; Rao & Molina
  2015 §6.4.1 on smoothed sampling variances). ``c_d`` is the expectation of the direct
  variance estimator relative to the variance under independent answers: a territory's
  linearised variance centres its PSU totals on its own mean and, with ``k`` equal PSUs,
  estimates only ``(k - 1) / k`` of the variance (half of it in two PSUs); the ratio
  estimator of ``D̄`` accounts for it (:func:`~evalterritoire.estimates.study.compute_domain_variance_factors`,
  checked on ground truth by ``bench/bench_smallarea.py``).
* **Covariates**: the study's territory context file, standardised; ``"auto"`` chooses at most
  ``max_covariates`` of them by forward selection on the BIC of the ML fit (every candidate of a
  step fitted at once), the final model is then fitted by REML.

:func:`compute_smallarea_estimates` applies the model to every territory statistic of the study
table; its rows have ``estimator = "fay_herriot"`` and its fits go to ``smallarea.parquet``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from evalterritoire.errors import EstimationError

__all__ = [
    "SMALLAREA_FIT_COLUMNS",
    "FayHerriotFit",
    "compute_smallarea_estimates",
    "fit_fay_herriot",
    "select_covariates",
    "smooth_sampling_variances",
]

#: Columns of ``smallarea.parquet`` (one row per fitted statistic).
SMALLAREA_FIT_COLUMNS = (
    "wave",
    "variable",
    "level",
    "statistic",
    "n_areas",
    "covariates",
    "coefficients",
    "sigma2_u",
    "mean_gamma",
    "design_effect",
    "pooled_variance",
    "iterations",
    "converged",
)
#: Fewest territories with a usable direct estimate for a model to be fitted.
MIN_AREAS = 10


@dataclass(frozen=True)
class FayHerriotFit:
    """A fitted Fay–Herriot model (arrays indexed like the areas given).

    Attributes
    ----------
    beta : ndarray (p,)
        Regression coefficients (GLS at ``sigma2_u``).
    sigma2_u : float
        Between-area variance (≥ 0).
    eblup, mse : ndarray (m,)
        EBLUPs and their Prasad–Rao mean squared errors.
    gamma : ndarray (m,)
        Weight of each area's direct estimate in its EBLUP.
    g1, g2, g3 : ndarray (m,)
        The three terms of the MSE, ``mse = g1 + g2 + 2 g3`` (the REML formula; an ML fit, used
        only to select covariates, would need a further bias term).
    loglik : float
        Restricted (REML) or full (ML) log-likelihood at the estimate, constants included.
    iterations : int
        Fisher-scoring steps.
    converged : bool
    method : str
        ``REML`` or ``ML``.
    """

    beta: np.ndarray
    sigma2_u: float
    eblup: np.ndarray
    mse: np.ndarray
    gamma: np.ndarray
    g1: np.ndarray
    g2: np.ndarray
    g3: np.ndarray
    loglik: float
    iterations: int
    converged: bool
    method: str


# ----------------------------------------------------------------------------- the fit
def _gls(y: np.ndarray, psi: np.ndarray, X: np.ndarray, s2: np.ndarray) -> dict[str, np.ndarray]:
    """GLS pieces for a batch of models: ``X`` (K, m, p), ``s2`` (K,)."""
    w = 1.0 / (s2[:, None] + psi[None, :])  # (K, m)
    A = np.einsum("kmp,km,kmq->kpq", X, w, X)
    A_inv = np.linalg.inv(A)
    b = np.einsum("kmp,km,m->kp", X, w, y)
    beta = np.einsum("kpq,kq->kp", A_inv, b)
    r = y[None, :] - np.einsum("kmp,kp->km", X, beta)
    return {"w": w, "A": A, "A_inv": A_inv, "beta": beta, "r": r}


def _score_info(
    y: np.ndarray, psi: np.ndarray, X: np.ndarray, s2: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Score and Fisher information of σ²_u (REML or ML) for a batch of models."""
    g = _gls(y, psi, X, s2)
    w, r = g["w"], g["r"]
    if method == "ML":
        score = -0.5 * w.sum(axis=1) + 0.5 * np.sum(np.square(w * r), axis=1)
        info = 0.5 * np.sum(np.square(w), axis=1)
        return score, info, g
    # REML: P = W - W X A⁻¹ X' W; tr(P), tr(P²), y'P²y (P y = W r)
    B2 = np.einsum("kmp,km,kmq->kpq", X, w**2, X)
    B3 = np.einsum("kmp,km,kmq->kpq", X, w**3, X)
    C = np.einsum("kpq,kqr->kpr", g["A_inv"], B2)
    tr_p = w.sum(axis=1) - np.trace(C, axis1=1, axis2=2)
    tr_pp = (
        np.sum(w**2, axis=1)
        - 2 * np.trace(np.einsum("kpq,kqr->kpr", g["A_inv"], B3), axis1=1, axis2=2)
        + np.einsum("kpq,kqp->k", C, C)
    )
    score = -0.5 * tr_p + 0.5 * np.sum(np.square(w * r), axis=1)
    return score, 0.5 * tr_pp, g


def _loglik(y: np.ndarray, psi: np.ndarray, X: np.ndarray, s2: np.ndarray, method: str):
    """Log-likelihood (ML) or restricted log-likelihood (REML) of a batch of models."""
    g = _gls(y, psi, X, s2)
    m, p = X.shape[1], X.shape[2]
    quad = np.sum(g["w"] * np.square(g["r"]), axis=1)
    logdet_v = -np.sum(np.log(g["w"]), axis=1)
    if method == "ML":
        return -0.5 * (m * np.log(2 * np.pi) + logdet_v + quad)
    logdet_a = np.linalg.slogdet(g["A"])[1]
    return -0.5 * ((m - p) * np.log(2 * np.pi) + logdet_v + logdet_a + quad)


def _fit_batch(
    y: np.ndarray, psi: np.ndarray, X: np.ndarray, method: str, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """σ²_u of a batch of models: (estimates, iterations, converged)."""
    k = X.shape[0]
    s2 = np.full(k, float(np.median(psi)))
    done = np.zeros(k, dtype=bool)
    iters = np.zeros(k, dtype=np.int64)
    for _ in range(max_iter):
        score, info, _ = _score_info(y, psi, X, s2, method)
        new = np.maximum(s2 + score / info, 0.0)
        step = np.abs(new - s2)
        iters += ~done
        s2 = np.where(done, s2, new)
        done |= step <= tol * (1.0 + s2)
        if done.all():
            break
    for i in np.flatnonzero(~done):  # finish by a bounded scalar maximisation
        upper = 10.0 * (float(np.var(y)) + float(psi.max())) + 1e-12
        res = optimize.minimize_scalar(
            lambda v, i=i: -float(_loglik(y, psi, X[i : i + 1], np.array([v]), method)[0]),
            bounds=(0.0, upper),
            method="bounded",
            options={"xatol": 1e-12},
        )
        s2[i] = float(res.x)
    return s2, iters, done


def fit_fay_herriot(
    y: Any,
    psi: Any,
    X: Any,
    *,
    method: str = "REML",
    max_iter: int = 200,
    tol: float = 1e-12,
) -> FayHerriotFit:
    """Fit the Fay–Herriot model and predict every area (EBLUP, Prasad–Rao MSE).

    Parameters
    ----------
    y : array-like (m,)
        Direct estimates.
    psi : array-like (m,)
        Their sampling variances, treated as known (> 0).
    X : array-like (m, p)
        Covariates, the intercept included.
    method : {"REML", "ML"}
        Estimation of σ²_u.
    max_iter, tol : int, float
        Fisher scoring limits (relative change of σ²_u).

    Returns
    -------
    FayHerriotFit
    """
    y = np.asarray(y, dtype=float)
    psi = np.asarray(psi, dtype=float)
    X = np.asarray(X, dtype=float)
    if method not in {"REML", "ML"}:
        raise EstimationError(f"method must be 'REML' or 'ML', got {method!r}")
    if X.ndim != 2 or X.shape[0] != y.size or psi.shape != y.shape:
        raise EstimationError("y, psi and X must describe the same areas")
    if not (np.isfinite(y).all() and np.isfinite(psi).all() and (psi > 0).all()):
        raise EstimationError("direct estimates must be finite and their variances positive")
    if y.size <= X.shape[1] or np.linalg.matrix_rank(X) < X.shape[1]:
        raise EstimationError("too few areas, or collinear covariates, for the model")
    s2, iters, ok = _fit_batch(y, psi, X[None], method, max_iter, tol)
    g = _gls(y, psi, X[None], s2)
    sigma2 = float(s2[0])
    beta = g["beta"][0]
    gamma = sigma2 / (sigma2 + psi)
    synthetic = X @ beta
    eblup = gamma * y + (1 - gamma) * synthetic
    g1 = gamma * psi
    g2 = np.square(1 - gamma) * np.einsum("mp,pq,mq->m", X, g["A_inv"][0], X)
    v_s2 = 2.0 / np.sum((sigma2 + psi) ** -2.0)
    g3 = psi**2 / (sigma2 + psi) ** 3 * v_s2
    return FayHerriotFit(
        beta=beta,
        sigma2_u=sigma2,
        eblup=eblup,
        mse=g1 + g2 + 2 * g3,
        gamma=gamma,
        g1=g1,
        g2=g2,
        g3=g3,
        loglik=float(_loglik(y, psi, X[None], s2, method)[0]),
        iterations=int(iters[0]),
        converged=bool(ok[0]),
        method=method,
    )


def select_covariates(
    y: Any, psi: Any, candidates: Any, *, max_covariates: int = 3, max_iter: int = 200
) -> list[int]:
    """Forward selection of covariates by the BIC of the ML fit (intercept always in).

    Parameters
    ----------
    y, psi : array-like (m,)
        Direct estimates and their sampling variances.
    candidates : array-like (m, c)
        Candidate covariates (standardised), without the intercept.
    max_covariates : int
        At most this many covariates are kept.

    Returns
    -------
    list of int
        Indices of the chosen columns of ``candidates``, in the order they entered.
    """
    y, psi = np.asarray(y, dtype=float), np.asarray(psi, dtype=float)
    C = np.asarray(candidates, dtype=float).reshape(y.size, -1)
    m = y.size
    chosen: list[int] = []
    base = np.ones((m, 1))
    best = _bic(y, psi, base[None], max_iter)[0]
    while len(chosen) < max_covariates:
        free = [j for j in range(C.shape[1]) if j not in chosen]
        if not free or m - len(chosen) - 2 < 3:
            break
        current = np.column_stack([base, C[:, chosen]]) if chosen else base
        X = np.stack([np.column_stack([current, C[:, j]]) for j in free])
        ranks = np.linalg.matrix_rank(X)
        bic = np.where(ranks == X.shape[2], _bic(y, psi, X, max_iter), np.inf)
        j = int(np.argmin(bic))
        if not bic[j] < best:
            break
        best = float(bic[j])
        chosen.append(free[j])
    return chosen


def _bic(y: np.ndarray, psi: np.ndarray, X: np.ndarray, max_iter: int) -> np.ndarray:
    s2, _, _ = _fit_batch(y, psi, X, "ML", max_iter, 1e-8)
    ll = _loglik(y, psi, X, s2, "ML")
    return -2 * ll + (X.shape[2] + 1) * np.log(y.size)


def smooth_sampling_variances(
    var: Any, element_var: Any, n: Any, factor: Any = None
) -> tuple[np.ndarray, float, float]:
    """Generalised variance function ``ψ_d = D̄ S̄² / n_d`` (see the module).

    Parameters
    ----------
    var : array-like (m,)
        Direct design variances ``v_d`` (areas with a non-positive or missing one do not enter
        ``D̄``).
    element_var : array-like (m,)
        Within-area element variances ``S²_d``.
    n : array-like (m,)
        Respondents per area.
    factor : array-like (m,), optional
        ``c_d = E[v̂_d] / Var`` under independent answers (default 1): the direct variance of a
        domain with few PSUs underestimates by this factor, so ``D̄ = Σ v_d / Σ c_d S²_d / n_d``.

    Returns
    -------
    (psi, design_effect, pooled_variance)
    """
    v, s2, n = (np.asarray(a, dtype=float) for a in (var, element_var, n))
    c = np.ones_like(v) if factor is None else np.asarray(factor, dtype=float)
    weight = np.maximum(n - 1, 0)
    if weight.sum() <= 0:
        raise EstimationError("no area has two respondents: no pooled variance")
    pooled = float(np.sum(weight * np.nan_to_num(s2)) / weight.sum())
    use = np.isfinite(v) & (v > 0) & np.isfinite(s2) & (s2 > 0) & (n > 1) & np.isfinite(c)
    deff = float(v[use].sum() / (c[use] * s2[use] / n[use]).sum()) if use.any() else 1.0
    return deff * pooled / n, deff, pooled


# ----------------------------------------------------------------------------- study table
def _covariate_matrix(context: pd.DataFrame | None, codes: Sequence[str]) -> pd.DataFrame:
    """Standardised numeric context columns for the territories ``codes`` (complete columns)."""
    if context is None or context.empty:
        return pd.DataFrame(index=pd.Index(list(codes), dtype="string"))
    frame = context.reindex(pd.Index(list(codes), dtype="string"))
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    keep = [c for c in sorted(numeric.columns) if numeric[c].notna().all() and numeric[c].std() > 0]
    out = numeric[keep]
    return (out - out.mean()) / out.std(ddof=0)


def compute_smallarea_estimates(
    direct: pd.DataFrame,
    element_var: pd.Series,
    context: pd.DataFrame | None,
    *,
    covariates: Sequence[str] | str = "auto",
    max_covariates: int = 3,
    min_cell: int = 5,
    wave: int = 0,
    variance_factor: pd.Series | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fay–Herriot estimates of every territory statistic of the study table.

    Parameters
    ----------
    direct : DataFrame
        The study table's ``territory`` rows (``domain``, ``variable``, ``level``,
        ``statistic``, ``kind``, ``estimate``, ``se``, ``df``, ``n``, ``range_low``,
        ``range_high``).
    element_var : Series
        Within-territory element variance of each row (same index as ``direct``).
    context : DataFrame or None
        Territory context, indexed by territory code (numeric columns are candidates).
    covariates : sequence of str or "auto"
        Context columns of the model, or forward selection among all of them.
    max_covariates : int
        Most covariates ``"auto"`` keeps.
    min_cell : int
        Territories with fewer respondents get no model-based estimate (confidentiality).
    wave : int
        Written in the fits table.
    variance_factor : Series, optional
        ``E[v̂] / Var`` of each direct variance under independent answers (same index as
        ``direct``; default 1), for the design effect of the smoothed variances: the study
        table passes :func:`~evalterritoire.estimates.study.compute_domain_variance_factors`.

    Returns
    -------
    (estimates, fits) : DataFrames
        Model-based rows (the columns of ``direct``, ``estimate`` = EBLUP, ``se`` = √MSE,
        ``df`` = areas − covariates − 1) and one fit per statistic
        (:data:`SMALLAREA_FIT_COLUMNS`).
    """
    keys = ["variable", "level", "statistic"]
    rows, fits = [], []
    factor = pd.Series(1.0, index=direct.index) if variance_factor is None else variance_factor
    matrices: dict[tuple[str, ...], pd.DataFrame] = {}

    def covariates_of(codes: list[str]) -> pd.DataFrame:
        # the statistics of a study mostly share their territories: standardise once per set
        key = tuple(codes)
        if key not in matrices:
            matrices[key] = _covariate_matrix(context, codes)
        return matrices[key]

    for key, group in direct.groupby(keys, sort=True, observed=True):
        fitted = _fit_group(
            group,
            element_var.loc[group.index],
            factor.loc[group.index],
            covariates_of,
            covariates,
            max_covariates,
            min_cell,
        )
        if fitted is None:
            continue
        part, fit = fitted
        rows.append(part)
        fits.append({"wave": int(wave), **dict(zip(keys, key, strict=True)), **fit})
    estimates = pd.concat(rows, ignore_index=True) if rows else direct.iloc[:0].copy()
    return estimates, pd.DataFrame(fits, columns=list(SMALLAREA_FIT_COLUMNS))


def _fit_group(
    group: pd.DataFrame,
    element_var: pd.Series,
    factor: pd.Series,
    covariates_of: Callable[[list[str]], pd.DataFrame],
    covariates: Sequence[str] | str,
    max_covariates: int,
    min_cell: int,
) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """One statistic's model over the territories; None when it cannot be fitted."""
    n = group["n"].to_numpy(dtype=float)
    est = group["estimate"].to_numpy(dtype=float)
    var = np.square(group["se"].to_numpy(dtype=float))
    c = factor.to_numpy(dtype=float)
    s2 = element_var.to_numpy(dtype=float)
    cov = covariates_of(group["domain"].astype("string").tolist())
    usable = (n >= max(min_cell, 2)) & np.isfinite(est) & np.isfinite(s2)
    usable &= cov.notna().all(axis=1).to_numpy() if cov.shape[1] else True
    if usable.sum() < MIN_AREAS or not np.isfinite(var[usable]).any():
        return None
    psi, deff, pooled = smooth_sampling_variances(var[usable], s2[usable], n[usable], c[usable])
    if not (np.isfinite(psi).all() and (psi > 0).all()):
        return None
    C = cov.to_numpy(dtype=float)[usable] if cov.shape[1] else np.zeros((usable.sum(), 0))
    if covariates == "auto":
        chosen = select_covariates(est[usable], psi, C, max_covariates=max_covariates)
        names = [str(cov.columns[j]) for j in chosen]
    else:
        names = [c for c in covariates if c in cov.columns]
        chosen = [list(cov.columns).index(c) for c in names]
    X = np.column_stack([np.ones(usable.sum()), C[:, chosen]])
    try:
        fit = fit_fay_herriot(est[usable], psi, X)
    except EstimationError:
        return None
    out = group.loc[usable].copy()
    out["estimator"] = "fay_herriot"
    out["estimate"] = fit.eblup
    out["se"] = np.sqrt(fit.mse)
    out["df"] = int(usable.sum()) - X.shape[1]
    out["deff"] = np.nan
    info = {
        "n_areas": int(usable.sum()),
        "covariates": ";".join(names),
        "coefficients": ";".join(f"{b:.6g}" for b in fit.beta),
        "sigma2_u": fit.sigma2_u,
        "mean_gamma": float(fit.gamma.mean()),
        "design_effect": deff,
        "pooled_variance": pooled,
        "iterations": fit.iterations,
        "converged": fit.converged,
    }
    return out, info
