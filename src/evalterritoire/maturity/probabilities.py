"""Stage membership probabilities from the design uncertainty of each territory's profile.

A territory's estimated profile ``x̂_t`` (its dimension scores) is its true profile plus a
sampling error of covariance ``V_t``; true profiles of a stage ``s`` spread around the stage's
mean ``μ_s`` with a covariance ``Σ_w``. The probability that the territory belongs to stage
``s`` is then the posterior of a Gaussian mixture that uses each profile's own covariance::

    P(s | x̂_t) ∝ π_s N(x̂_t ; μ_s, Σ_w + V_t)

* ``μ_s`` are the stage centroids (the clustering's, in score units) and ``π_s`` the shares of
  the stages in the reference wave.
* ``V_t`` is the territory's **sampling covariance**, smoothed like the small-area model's
  variances (:mod:`evalterritoire.estimates.smallarea`): ``V_t = D̄ R ⊙ (s sᵀ) / √(n_t n_tᵀ)``,
  with ``s²_j`` the pooled within-territory variance of dimension ``j``, ``R`` the pooled
  within-territory correlation of the dimensions, ``n_tj`` the territory's scored respondents
  and ``D̄ = Σ v_tj / Σ c_tj s²_tj / n_tj`` the mean design effect of the territories'
  design-based variances ``v_tj``, where ``c_tj`` is the bias of a domain variance with few
  PSUs (:func:`evalterritoire.estimates.compute_domain_variance_factors`). A territory's own
  covariance matrix, estimated from two to six PSUs, would have rank one to five for nine
  dimensions; the smoothed one has the territory's own sample sizes and the study's design.
  A dimension the territory has no score on (imputed) gets an uninformative variance.
* ``Σ_w`` is estimated on the reference wave: the pooled covariance of the profiles around
  their stage centroid, minus the mean sampling covariance, its eigenvalues floored at a
  small share of the observed spread (a covariance matrix stays positive definite).

The clustering's nearest-centroid stage is kept as the assigned stage; its probability is
``stage_probability`` and every stage's is ``p_stage_<s>`` in ``maturity.parquet``.
``bench/bench_stage_probability.py`` checks the calibration on the simulator's ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.errors import MaturityError

__all__ = [
    "SamplingModel",
    "StageMixture",
    "build_sampling_model",
    "compute_stage_probabilities",
    "fit_sampling_model",
    "fit_stage_mixture",
]

#: Variance given to a dimension a territory has no score on (in squared score units).
UNINFORMATIVE = 1e4
#: Floor of ``Σ_w``'s eigenvalues, as a share of the observed spread of the profiles.
EIGEN_FLOOR = 0.02


@dataclass(frozen=True)
class SamplingModel:
    """Smoothed sampling covariance of territory profiles (see the module)."""

    design_effect: float
    pooled_var: np.ndarray
    correlation: np.ndarray

    def covariance(self, n: np.ndarray, imputed: np.ndarray | None = None) -> np.ndarray:
        """``V_t`` for territories with ``n`` (m, p) scored respondents per dimension."""
        n = np.maximum(np.asarray(n, dtype=float), 1.0)
        s = np.sqrt(self.pooled_var)
        scale = s[None, :] / np.sqrt(n)  # (m, p)
        cov = self.design_effect * self.correlation[None] * scale[:, :, None] * scale[:, None, :]
        if imputed is not None:
            idx = np.nonzero(np.asarray(imputed, dtype=bool))
            cov[idx[0], idx[1], idx[1]] += UNINFORMATIVE
        return cov


def fit_sampling_model(
    scores: Any,
    weights: Any,
    codes: Any,
    se: Any,
    n: Any,
    factors: Any,
) -> SamplingModel:
    """Fit :class:`SamplingModel` from respondent scores and the territories' direct variances.

    Parameters
    ----------
    scores : array-like (n_resp, p)
        Respondent dimension scores (NaN where not scored).
    weights : array-like (n_resp,)
        Design weights.
    codes : array-like (n_resp,)
        Territory index of each respondent (0 … m - 1).
    se, n : array-like (m, p)
        Design-based standard errors of the territories' scores and their scored respondents.
    factors : array-like (m, p)
        ``E[v̂] / Var`` of each territory score under independent answers (1 = unbiased).

    Returns
    -------
    SamplingModel
    """
    y = np.asarray(scores, dtype=float)
    w = np.asarray(weights, dtype=float)
    idx = np.asarray(codes, dtype=np.int64)
    se, n, factors = (np.asarray(a, dtype=float) for a in (se, n, factors))
    m, p = se.shape
    valid = ~np.isnan(y)
    wv = np.where(valid, w[:, None], 0.0)
    wsum = np.zeros((m, p))
    tot = np.zeros((m, p))
    np.add.at(wsum, idx, wv)
    np.add.at(tot, idx, wv * np.nan_to_num(y))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot / wsum
    resid = np.where(valid, y - mean[idx], 0.0)  # deviation from the territory's mean
    sq = np.zeros((m, p))
    np.add.at(sq, idx, wv * resid**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2_t = sq / wsum * n / (n - 1)
    dof = np.maximum(n - 1, 0)
    pooled = np.nansum(np.where(n > 1, s2_t, 0.0) * dof, axis=0) / np.maximum(dof.sum(axis=0), 1)
    if not (np.isfinite(pooled).all() and (pooled > 0).all()):
        raise MaturityError("a maturity dimension has no within-territory variance")
    cross = (resid * np.sqrt(w)[:, None]).T @ (resid * np.sqrt(w)[:, None])
    norm = np.sqrt(np.outer(np.diag(cross), np.diag(cross)))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(norm > 0, cross / norm, 0.0)
    np.fill_diagonal(corr, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.square(se)
        expected = factors * s2_t / n  # E[v̂] / D under independent answers
    use = np.isfinite(v) & np.isfinite(expected) & (expected > 0) & (v > 0)
    deff = float(v[use].sum() / expected[use].sum()) if use.any() else 1.0
    return SamplingModel(design_effect=deff, pooled_var=pooled, correlation=_nearest_pd(corr))


def _nearest_pd(a: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """Symmetric matrix with eigenvalues floored at ``floor`` (a valid covariance)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.maximum(vals, floor)) @ vecs.T


@dataclass(frozen=True)
class StageMixture:
    """Gaussian stage mixture: means (k, p), within-stage covariance (p, p), priors (k,)."""

    means: np.ndarray
    within: np.ndarray
    priors: np.ndarray


def fit_stage_mixture(X: Any, labels: Any, V: Any, means: Any, n_stages: int) -> StageMixture:
    """Estimate ``Σ_w`` and ``π`` on the reference wave (see the module).

    Parameters
    ----------
    X : array-like (m, p)
        Profiles of the reference wave's scored territories.
    labels : array-like (m,)
        Their stages (0 … k - 1).
    V : array-like (m, p, p)
        Their sampling covariances.
    means : array-like (k, p)
        Stage centroids in score units.
    n_stages : int
        Number of stages.

    Returns
    -------
    StageMixture
    """
    X, V, mu = (np.asarray(a, dtype=float) for a in (X, V, means))
    lab = np.asarray(labels, dtype=np.int64)
    m, p = X.shape
    resid = X - mu[lab]
    spread = resid.T @ resid / max(m - n_stages, 1)
    # dimensions a territory has no score on do not inform the spread of true profiles
    v_mean = np.where(V > UNINFORMATIVE / 2, 0.0, V).mean(axis=0)
    within = spread - v_mean
    floor = EIGEN_FLOOR * float(np.trace(spread)) / p
    within = _nearest_pd(within, max(floor, 1e-8))
    counts = np.bincount(lab, minlength=n_stages).astype(float)
    priors = (counts + 0.5) / (counts.sum() + 0.5 * n_stages)  # never exactly 0
    return StageMixture(means=mu, within=within, priors=priors)


def compute_stage_probabilities(mixture: StageMixture, X: Any, V: Any) -> np.ndarray:
    """``P(stage | profile)`` of each territory, columns least mature first.

    Parameters
    ----------
    mixture : StageMixture
    X : array-like (m, p)
        Profiles (imputed dimensions included, with a large variance in ``V``).
    V : array-like (m, p, p)
        Their sampling covariances.

    Returns
    -------
    ndarray (m, k)
        Rows sum to 1.
    """
    X, V = np.asarray(X, dtype=float), np.asarray(V, dtype=float)
    cov = mixture.within[None] + V  # (m, p, p)
    chol = np.linalg.cholesky(cov)
    logdet = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    k = mixture.means.shape[0]
    logp = np.empty((X.shape[0], k))
    for s in range(k):
        diff = X - mixture.means[s]
        z = np.linalg.solve(chol, diff[:, :, None])[:, :, 0]
        logp[:, s] = np.log(mixture.priors[s]) - 0.5 * (np.sum(z**2, axis=1) + logdet)
    logp -= logp.max(axis=1, keepdims=True)
    prob = np.exp(logp)
    return prob / prob.sum(axis=1, keepdims=True)


def build_sampling_model(
    responses: Any, design: Any, scorer: Any, territory: str, profiles: Any
) -> tuple[SamplingModel, np.ndarray]:
    """The wave's :class:`SamplingModel` and each territory's design degrees of freedom.

    Parameters
    ----------
    responses : DataFrame
        The wave's typed responses, in the design's row order.
    design : SurveyDesign or None
        Their design (None: equal weights, every respondent its own PSU).
    scorer : MaturityScorer
        Fitted scorer (dimension order of the profiles).
    territory : str
        The territory column.
    profiles : DataFrame
        The wave's territory profiles (``territory``, ``se_<dim>``, ``n_<dim>``).

    Returns
    -------
    (SamplingModel, ndarray)
        The model, and the df of each profile row (PSUs − strata with members; NaN without a
        design).
    """
    from evalterritoire.estimates import compute_domain_variance_factors

    dims = list(scorer.items_)
    details = scorer.score_details(responses)
    y = details[[f"score_{d}" for d in dims]].to_numpy(dtype=float)
    order = profiles["territory"].astype("string").tolist()
    codes = pd.Categorical(responses[territory].astype("string"), categories=order).codes
    codes = np.asarray(codes, dtype=np.int64)
    m = len(order)
    if design is not None and hasattr(design, "domain_df"):
        weights = np.asarray(design.weights, dtype=float)
        factors = compute_domain_variance_factors(design, y, codes, m)
        df = design.domain_df(codes, m).astype(float)
    else:
        weights = np.ones(len(responses))
        factors = np.ones((m, len(dims)))
        df = np.full(m, np.nan)
    keep = codes >= 0
    model = fit_sampling_model(
        y[keep],
        weights[keep],
        codes[keep],
        profiles[[f"se_{d}" for d in dims]].to_numpy(dtype=float),
        profiles[[f"n_{d}" for d in dims]].to_numpy(dtype=float),
        factors,
    )
    return model, df


def refine_stage_mixture(
    mixture: StageMixture, X: Any, V: Any, *, max_iter: int = 200, tol: float = 1e-8
) -> StageMixture:
    """EM for a Gaussian mixture with known per-territory errors ("extreme deconvolution").

    Starts from ``mixture`` (the centroids, the moment estimate of ``Σ_w``) and maximises the
    likelihood of ``x̂_t ~ Σ_s π_s N(μ_s, Σ_w + V_t)`` (Bovy, Hogg & Roweis 2011, with one
    ``Σ_w`` shared by the stages): the stage means are those of the true profiles, not of the
    noisy estimated ones, which matters when territories have few respondents.
    """
    X, V = np.asarray(X, dtype=float), np.asarray(V, dtype=float)
    mu, within, priors = mixture.means.copy(), mixture.within.copy(), mixture.priors.copy()
    m, p = X.shape
    k = mu.shape[0]
    floor = EIGEN_FLOOR * float(np.trace(within)) / p
    last = -np.inf
    for _ in range(max_iter):
        current = StageMixture(mu, within, priors)
        resp, loglik = _responsibilities(current, X, V)
        T_inv = np.linalg.inv(within[None] + V)  # (m, p, p)
        new_mu = np.empty_like(mu)
        scatter = np.zeros((p, p))
        for s in range(k):
            diff = X - mu[s]
            b = mu[s] + np.einsum("ij,mjk,mk->mi", within, T_inv, diff)
            B = within[None] - np.einsum("ij,mjk,kl->mil", within, T_inv, within)
            r = resp[:, s]
            new_mu[s] = (r[:, None] * b).sum(axis=0) / max(r.sum(), 1e-12)
            d = b - new_mu[s]
            scatter += np.einsum("m,mi,mj->ij", r, d, d) + np.einsum("m,mij->ij", r, B)
        mu = new_mu
        within = _nearest_pd(scatter / m, max(floor, 1e-8))
        priors = (resp.sum(axis=0) + 0.5) / (m + 0.5 * k)
        if loglik - last < tol * (1 + abs(loglik)):
            break
        last = loglik
    return StageMixture(mu, within, priors)


def _responsibilities(mixture: StageMixture, X: np.ndarray, V: np.ndarray):
    """Posterior stage probabilities and the log-likelihood of the profiles."""
    cov = mixture.within[None] + V
    chol = np.linalg.cholesky(cov)
    logdet = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    k, p = mixture.means.shape
    logp = np.empty((X.shape[0], k))
    for s in range(k):
        z = np.linalg.solve(chol, (X - mixture.means[s])[:, :, None])[:, :, 0]
        logp[:, s] = np.log(mixture.priors[s]) - 0.5 * (
            np.sum(z**2, axis=1) + logdet + p * np.log(2 * np.pi)
        )
    top = logp.max(axis=1, keepdims=True)
    total = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
    return np.exp(logp - total[:, None]), float(total.sum())
