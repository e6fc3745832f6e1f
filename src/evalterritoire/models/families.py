"""Likelihoods of the model families: separation, weighted GLM and cumulative logit.

The numerical pieces :mod:`evalterritoire.models.fit` builds its fits and sandwiches on:

* separation of a binary or ordinal outcome (linear programmes of Konis, 2007);
* the weighted GLM (statsmodels ``GLM`` with ``var_weights``; IRLS refits for replicate
  weights) and its score contributions and information;
* the weighted cumulative logit (statsmodels ``OrderedModel`` polished by Newton steps): per
  respondent log-likelihood and analytic score, Hessian by central differences of the score.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import expit

__all__ = ["detect_ordinal_separation", "detect_separation"]


# --------------------------------------------------------------------------- separation
def detect_separation(X: Any, y: Any, *, tol: float = 1e-7) -> np.ndarray | None:
    """Detect complete or quasi-complete separation of a binary outcome (Konis, 2007).

    Solves ``max Σ s_i x_i'b`` subject to ``s_i x_i'b ≥ 0`` and ``−1 ≤ b ≤ 1`` with
    ``s_i = 2y_i − 1``: a positive optimum means a direction that classifies every observation
    without error, so the maximum-likelihood estimate does not exist.

    Parameters
    ----------
    X : array-like, shape (n, p)
        Model matrix.
    y : array-like of {0, 1}, shape (n,)
        Outcome.
    tol : float
        Threshold on the optimum, relative to the scale of ``X``.

    Returns
    -------
    ndarray or None
        The separating direction ``b`` (non-zero entries name the terms involved) or ``None``.
    """
    from scipy.optimize import linprog

    X = np.asarray(X, dtype=float)
    s = 2.0 * np.asarray(y, dtype=float) - 1.0
    A = -(X * s[:, None])
    c = A.sum(axis=0)  # minimise −Σ s_i x_i'b
    res = linprog(c, A_ub=A, b_ub=np.zeros(len(s)), bounds=[(-1.0, 1.0)] * X.shape[1])
    if res.status != 0:
        return None
    scale = max(1.0, float(np.abs(X).max()))
    if -res.fun > tol * scale * len(s) ** 0.5:
        b = np.asarray(res.x, dtype=float)
        b[np.abs(b) < 1e-9] = 0.0
        return b
    return None


def detect_ordinal_separation(X: Any, y: Any, *, tol: float = 1e-7) -> np.ndarray | None:
    """Detect (quasi-)separation in a cumulative-logit model (the ordinal version of Konis).

    With ``P(Y ≤ k) = F(c_k − x'β)``, a direction ``(b, d)`` (``d`` non-decreasing, one entry
    per cut-point) along which, for every observation in category ``k``,
    ``d_k − x'b ≥ 0`` (upper bound, ``k`` below the top) and ``d_{k−1} − x'b ≤ 0`` (lower bound,
    ``k`` above the bottom) raises every probability; if one inequality is strict the
    likelihood increases without bound and the maximum-likelihood estimate does not exist.
    The linear programme maximises the sum of these slacks within ``−1 ≤ b, d ≤ 1``.

    Parameters
    ----------
    X : array-like, shape (n, p)
        Model matrix without intercept (the cut-points play it).
    y : array-like of int, shape (n,)
        Category codes ``0 … K−1``, every code present.
    tol : float
        Threshold on the optimum, relative to the scale of ``X``.

    Returns
    -------
    ndarray or None
        The direction ``(b, d)`` (``p + K − 1`` entries, non-zero ones name the terms and
        cut-points involved) or ``None``.
    """
    from scipy.optimize import linprog

    X = np.asarray(X, dtype=float)
    k = np.asarray(y).astype(int)
    n, p = X.shape
    n_cuts = int(k.max())
    if n_cuts < 1:
        return None
    blocks = []
    up = k < n_cuts  # −(d_k − x'b) ≤ 0
    a_up = np.zeros((int(up.sum()), p + n_cuts))
    a_up[:, :p] = X[up]
    a_up[np.arange(a_up.shape[0]), p + k[up]] = -1.0
    blocks.append(a_up)
    lo = k > 0  # d_{k−1} − x'b ≤ 0
    a_lo = np.zeros((int(lo.sum()), p + n_cuts))
    a_lo[:, :p] = -X[lo]
    a_lo[np.arange(a_lo.shape[0]), p + k[lo] - 1] = 1.0
    blocks.append(a_lo)
    A = np.vstack(blocks)
    c = A.sum(axis=0)  # minimise −Σ slacks
    mono = np.zeros((n_cuts - 1, p + n_cuts))  # d_j − d_{j+1} ≤ 0
    for j in range(n_cuts - 1):
        mono[j, p + j], mono[j, p + j + 1] = 1.0, -1.0
    A_ub = np.vstack([A, mono])
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(A_ub.shape[0]), bounds=[(-1.0, 1.0)] * (p + n_cuts))
    if res.status != 0:
        return None
    scale = max(1.0, float(np.abs(X).max()) if X.size else 1.0)
    if -res.fun > tol * scale * n**0.5:
        b = np.asarray(res.x, dtype=float)
        b[np.abs(b) < 1e-9] = 0.0
        return b
    return None


# --------------------------------------------------------------------------- GLM
def _glm_fit(kind: str, y, X, w, start=None, maxiter: int | None = None):
    """Weighted GLM by statsmodels; ``maxiter`` caps the logistic IRLS (linear: exact WLS)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    family = sm.families.Gaussian() if kind == "linear" else sm.families.Binomial()
    n_iter = 100 if kind == "linear" or maxiter is None else int(maxiter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sm.GLM(y, X, family=family, var_weights=w).fit(
            start_params=start, maxiter=n_iter, tol=1e-12
        )
    converged = bool(getattr(res, "converged", True)) and not any(
        issubclass(c.category, ConvergenceWarning) for c in caught
    )
    return np.asarray(res.params, dtype=float), converged


def _irls(kind: str, y, X, w, start, *, max_iter: int = 50):
    """Weighted least squares / logistic IRLS from ``start`` (replicate refits)."""
    beta = np.array(start, dtype=float)
    if kind == "linear":
        sw = np.sqrt(w)
        return np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    for _ in range(max_iter):
        mu = expit(X @ beta)
        v = mu * (1.0 - mu)
        step = np.linalg.solve((X * (w * v)[:, None]).T @ X, X.T @ (w * (y - mu)))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12 * max(1.0, np.max(np.abs(beta))):
            break
    return beta


def _glm_parts(kind: str, y, X, w, beta):
    """Score contributions U (n, p) and information A (p, p) of a weighted GLM."""
    eta = X @ beta
    if kind == "linear":
        mu, v = eta, np.ones_like(eta)
    else:
        mu = expit(eta)
        v = mu * (1.0 - mu)
    U = X * (w * (y - mu))[:, None]
    A = (X * (w * v)[:, None]).T @ X
    return U, A, mu, v


# --------------------------------------------------------------------------- ordinal
def _ordinal_parts(y: np.ndarray, X: np.ndarray, theta: np.ndarray, n_cuts: int):
    """Per-observation log-likelihood and score of the cumulative logit in (β, cuts)."""
    p = X.shape[1]
    beta, cuts = theta[:p], theta[p:]
    k = y.astype(int)
    eta = X @ beta
    upper = np.append(cuts, np.inf)[k] - eta
    lower = np.insert(cuts, 0, -np.inf)[k] - eta
    Fu, Fl = expit(upper), expit(lower)
    fu = np.where(np.isfinite(upper), Fu * (1 - Fu), 0.0)
    fl = np.where(np.isfinite(lower), Fl * (1 - Fl), 0.0)
    prob = np.clip(Fu - Fl, 1e-300, None)
    ll = np.log(prob)
    score = np.empty((len(y), p + n_cuts))
    score[:, :p] = -X * ((fu - fl) / prob)[:, None]
    score[:, p:] = 0.0
    rows = np.arange(len(y))
    up = k < n_cuts
    score[rows[up], p + k[up]] += fu[up] / prob[up]
    lo = k > 0
    score[rows[lo], p + k[lo] - 1] -= fl[lo] / prob[lo]
    return ll, score


def _ordinal_hessian(y, X, w, theta, n_cuts):
    """Hessian of the weighted log-likelihood (central differences of the analytic score)."""
    d = theta.size
    H = np.empty((d, d))
    for j in range(d):
        h = 1e-5 * max(1.0, abs(theta[j]))
        e = np.zeros(d)
        e[j] = h
        gp = w @ _ordinal_parts(y, X, theta + e, n_cuts)[1]
        gm = w @ _ordinal_parts(y, X, theta - e, n_cuts)[1]
        H[:, j] = (gp - gm) / (2 * h)
    return (H + H.T) / 2


def _ordinal_newton(y, X, w, theta, n_cuts, *, max_iter: int = 100):
    """Newton iterations with step halving on the weighted cumulative-logit likelihood."""
    theta = np.array(theta, dtype=float)
    ll = w @ _ordinal_parts(y, X, theta, n_cuts)[0]
    converged = False
    for _ in range(max_iter):
        g = w @ _ordinal_parts(y, X, theta, n_cuts)[1]
        H = _ordinal_hessian(y, X, w, theta, n_cuts)
        try:
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-8:
            cand = theta + t * step
            cuts = cand[X.shape[1] :]
            if np.all(np.diff(cuts) > 0):
                ll_new = w @ _ordinal_parts(y, X, cand, n_cuts)[0]
                if ll_new >= ll - 1e-12 * abs(ll):
                    break
            t /= 2
        theta, ll = theta + t * step, ll_new
        if np.max(np.abs(t * step)) < 1e-11 * max(1.0, np.max(np.abs(theta))):
            converged = True
            break
    return theta, converged


def _ordinal_fit(y, X, w, start=None, maxiter: int | None = None):
    """Weighted cumulative logit: statsmodels ``OrderedModel`` then Newton polishing.

    ``maxiter`` caps both the BFGS iterations and the Newton steps (defaults 2000 and 100).
    """
    n_cuts = int(y.max())
    if start is None:
        from statsmodels.miscmodels.ordinal_model import OrderedModel

        p = X.shape[1]

        class _WeightedOrderedModel(OrderedModel):
            def loglike(self, params):
                return float(np.sum(w * self.loglikeobs(params)))

            def score(self, params):
                # analytic score (statsmodels differentiates numerically): chain rule from
                # (β, cuts) to its parameters (β, cut_0, log(cut_k − cut_{k−1}))
                params = np.asarray(params, dtype=float)
                raw = params[p:]
                steps = np.exp(raw[1:])
                cuts = raw[0] + np.concatenate([[0.0], np.cumsum(steps)])
                g = w @ _ordinal_parts(y, X, np.concatenate([params[:p], cuts]), n_cuts)[1]
                tail = np.cumsum(g[p:][::-1])[::-1]  # Σ_{k ≥ j} ∂ℓ/∂cut_k
                return np.concatenate([g[:p], [tail[0]], steps * tail[1:]])

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = _WeightedOrderedModel(y.astype(int), X, distr="logit")
            res = model.fit(method="bfgs", maxiter=maxiter or 2000, disp=False)
        params = np.asarray(res.params, dtype=float)
        cuts = model.transform_threshold_params(params)[1:-1]
        start = np.concatenate([params[: X.shape[1]], cuts])
    return _ordinal_newton(y, X, w, start, n_cuts, max_iter=maxiter or 100)
