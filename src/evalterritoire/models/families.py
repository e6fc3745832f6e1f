"""The model families: each family's fit, and the likelihoods and separation checks under it.

The numerical pieces :mod:`evalterritoire.models.fit` builds its fits and sandwiches on:

* separation of a binary or ordinal outcome (linear programmes of Konis, 2007);
* the weighted GLM (statsmodels ``GLM`` with ``var_weights``; IRLS refits for replicate
  weights) and its score contributions and information;
* the weighted cumulative logit (statsmodels ``OrderedModel`` polished by Newton steps): per
  respondent log-likelihood, analytic score and analytic Hessian;
* each family's fit handed to the common inference code as an ``_Estimation``
  (``_estimate_glm``, ``_estimate_ordinal``, ``_estimate_mixed``: statsmodels ``MixedLM`` and
  the GLS estimating equations of its fixed effects) with its fit statistics (``_fit_stats``).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import expit

from evalterritoire.models.data import _cut_label, _Data, _Estimation, _num, term_label

if TYPE_CHECKING:
    from evalterritoire.config import ModelSpec

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

    family = {"linear": sm.families.Gaussian, "quasipoisson": sm.families.Poisson}.get(
        kind, sm.families.Binomial
    )()
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
        mu, v = _mean_variance(kind, X @ beta)
        step = np.linalg.solve((X * (w * v)[:, None]).T @ X, X.T @ (w * (y - mu)))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12 * max(1.0, np.max(np.abs(beta))):
            break
    return beta


def _mean_variance(kind: str, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance function of a canonical-link GLM (identity, logit, log)."""
    if kind == "linear":
        return eta, np.ones_like(eta)
    if kind == "quasipoisson":
        mu = np.exp(eta)
        return mu, mu
    mu = expit(eta)
    return mu, mu * (1.0 - mu)


def _glm_parts(kind: str, y, X, w, beta):
    """Score contributions U (n, p) and information A (p, p) of a weighted GLM."""
    mu, v = _mean_variance(kind, X @ beta)
    U = X * (w * (y - mu))[:, None]
    A = (X * (w * v)[:, None]).T @ X
    return U, A, mu, v


# --------------------------------------------------------------------------- ordinal
def _ordinal_terms(y: np.ndarray, X: np.ndarray, theta: np.ndarray):
    """Category, ``F`` and ``f = F(1 − F)`` at the upper and lower cut, and ``P = F(u) − F(l)``.

    ``u = cut_k − x'β`` and ``l = cut_{k−1} − x'β`` (``±∞`` at the ends, where ``f`` is 0).
    """
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
    return k, Fu, Fl, fu, fl, prob


def _ordinal_parts(y: np.ndarray, X: np.ndarray, theta: np.ndarray, n_cuts: int):
    """Per-observation log-likelihood and score of the cumulative logit in (β, cuts)."""
    p = X.shape[1]
    k, _, _, fu, fl, prob = _ordinal_terms(y, X, theta)
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
    """Analytic Hessian of the weighted cumulative-logit log-likelihood in (β, cuts).

    For a respondent in category ``k`` the log-likelihood is ``log(F(u) − F(l))`` with
    ``u = cut_k − x'β`` and ``l = cut_{k−1} − x'β`` (``±∞`` at the ends). With ``P = F(u) − F(l)``,
    ``f = F(1 − F)`` and ``f' = f(1 − 2F)``, its second derivatives in ``(u, l)`` are
    ``a = f'(u)/P − f(u)²/P²``, ``d = −f'(l)/P − f(l)²/P²`` and ``b = f(u) f(l)/P²``; the chain
    rule (``∂u/∂β = ∂l/∂β = −x``, ``∂u/∂cut_k = ∂l/∂cut_{k−1} = 1``) gives the blocks below.
    """
    p = X.shape[1]
    k, Fu, Fl, fu, fl, prob = _ordinal_terms(y, X, theta)
    a = fu * (1 - 2 * Fu) / prob - (fu / prob) ** 2
    d = -fl * (1 - 2 * Fl) / prob - (fl / prob) ** 2
    b = fu * fl / prob**2
    H = np.zeros((p + n_cuts, p + n_cuts))
    H[:p, :p] = (X * (w * (a + d + 2 * b))[:, None]).T @ X
    up, lo = k < n_cuts, k > 0
    cu = np.where(up, w * (a + b), 0.0)
    cl = np.where(lo, w * (d + b), 0.0)
    ku, kl = np.where(up, k, 0), np.where(lo, k - 1, 0)
    for j in range(p):
        H[j, p:] = -(
            np.bincount(ku, weights=X[:, j] * cu, minlength=n_cuts)
            + np.bincount(kl, weights=X[:, j] * cl, minlength=n_cuts)
        )
    H[p:, :p] = H[:p, p:].T
    diag = np.bincount(ku, weights=np.where(up, w * a, 0.0), minlength=n_cuts)
    diag += np.bincount(kl, weights=np.where(lo, w * d, 0.0), minlength=n_cuts)
    H[p:, p:] = np.diag(diag)
    both = up & lo
    off = np.bincount(kl[both], weights=(w * b)[both], minlength=n_cuts)  # (k, k−1) pairs
    for j in range(1, n_cuts):
        H[p + j, p + j - 1] = H[p + j - 1, p + j] = off[j - 1]
    return H


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


# --------------------------------------------------------------------------- family fits
def _estimate_glm(spec: ModelSpec, data: _Data, X, terms, w, codebook, stage_names):
    y = data.y
    beta, converged = _glm_fit(spec.kind, y, X, w, maxiter=spec.maxiter)
    U, A, _mu, v = _glm_parts(spec.kind, y, X, w, beta)
    separation = detect_separation(X, y) if spec.kind == "logistic" else None
    r2, r2_kind, loglik = _fit_stats(spec.kind, y, X, w, beta, 0)
    return _Estimation(
        beta=beta,
        names=list(terms),
        labels=[term_label(t, codebook, stage_names) for t in terms],
        U=U,
        A=A,
        L=X * (w * v)[:, None],
        R=X,
        converged=converged,
        separation=separation,
        r2=r2,
        r2_kind=r2_kind,
        loglik=loglik,
        n_params=beta.size,
    )


def _estimate_ordinal(spec: ModelSpec, data: _Data, X, terms, w, codebook, stage_names):
    y = data.y
    n_cuts = int(y.max())
    beta, converged = _ordinal_fit(y, X, w, maxiter=spec.maxiter)
    _, score = _ordinal_parts(y, X, beta, n_cuts)
    lv = data.levels
    r2, r2_kind, loglik = _fit_stats("ordinal", y, X, w, beta, n_cuts)
    return _Estimation(
        beta=beta,
        names=terms + [f"cut_{_num(lv[k])}/{_num(lv[k + 1])}" for k in range(n_cuts)],
        labels=[term_label(t, codebook, stage_names) for t in terms]
        + [_cut_label(lv[k], lv[k + 1], data.outcome, codebook) for k in range(n_cuts)],
        U=score * w[:, None],
        A=-_ordinal_hessian(y, X, w, beta, n_cuts),
        L=None,
        R=None,
        converged=converged,
        separation=detect_ordinal_separation(X, y),
        r2=r2,
        r2_kind=r2_kind,
        loglik=loglik,
        n_params=beta.size,
    )


def _estimate_mixed(spec: ModelSpec, data: _Data, X, terms, codebook, stage_names):
    """MixedLM (REML, unweighted) and the GLS estimating equations of its fixed effects."""
    res, converged = _fit_mixedlm(spec, data, X)
    p = len(terms)
    beta = np.asarray(res.fe_params, dtype=float)
    tau2 = float(np.asarray(res.cov_re)[0, 0])
    sigma2 = float(res.scale)
    U, A, L, R, n_groups = _gls_equations(data.y, X, data.groups, beta, tau2, sigma2)
    model_se = np.sqrt(np.clip(np.diag(np.asarray(res.cov_params(), dtype=float)[:p, :p]), 0, None))
    var_fixed = float(np.var(X @ beta))
    flags = ["unweighted"]
    messages = [
        "modèle mixte ajusté sans pondération (statsmodels MixedLM) ; erreurs-types : sandwich "
        "du plan sur les équations d'estimation des effets fixes, composantes de variance fixées"
    ]
    if tau2 <= 1e-10 * max(sigma2, 1e-300):
        flags.append("boundary")
        messages.append("variance inter-groupes estimée à zéro")
    return _Estimation(
        beta=beta,
        names=list(terms),
        labels=[term_label(t, codebook, stage_names) for t in terms],
        U=U,
        A=A,
        L=L,
        R=R,
        converged=converged,
        r2=var_fixed / (var_fixed + tau2 + sigma2),
        r2_kind="R² marginal",
        loglik=float(res.llf),
        n_params=p + 2,
        extra_rows=[
            {
                "term": "var_groupe",
                "label": "Variance entre groupes (effet aléatoire)",
                "value": tau2,
            },
            {"term": "var_residuelle", "label": "Variance résiduelle", "value": sigma2},
        ],
        flags=flags,
        messages=messages,
        diagnostics={
            "groups": spec.groups,
            "n_groups": n_groups,
            "group_variance": tau2,
            "residual_variance": sigma2,
            "icc": tau2 / (tau2 + sigma2),
            "model_based_se": dict(zip(terms, map(float, model_se), strict=True)),
            "gls_root_step": float(np.max(np.abs(U.sum(axis=0) @ np.linalg.pinv(A)))),
        },
    )


def _fit_mixedlm(spec: ModelSpec, data: _Data, X: np.ndarray):
    """The ``MixedLM`` fit by REML (random intercept per group) and whether it converged."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    fit_kw = {} if spec.maxiter is None else {"maxiter": int(spec.maxiter)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = sm.MixedLM(data.y, X, groups=data.groups)
        res = model.fit(reml=True, method=["bfgs", "lbfgs", "powell"], **fit_kw)
    converged = bool(res.converged) and not any(
        issubclass(c.category, ConvergenceWarning) for c in caught
    )
    return res, converged


def _gls_equations(y, X, groups, beta, tau2: float, sigma2: float):
    """Per-respondent GLS scores ``U``, ``A = L'R`` and the number of groups.

    Given the variance components, ``β̂`` solves ``Σ_g X_g'V_g⁻¹(y_g − X_g β) = 0`` with
    ``V_g = σ² I + τ² 11'``. Since ``V_g⁻¹ = (I − γ_g 11')/σ²`` with
    ``γ_g = τ²/(σ² + n_g τ²)``, the group's contribution splits over its respondents as
    ``U_i = x_i (r_i − û_g)/σ²`` where ``r_i = y_i − x_i'β̂`` and ``û_g = γ_g Σ_{j∈g} r_j`` is
    the BLUP of the group's intercept; ``A = Σ_i x_i (x_i − γ_g S_g)'/σ²`` with
    ``S_g = Σ_{j∈g} x_j`` (``= X'V⁻¹X``).
    """
    _, g = np.unique(groups, return_inverse=True)
    n_g = np.bincount(g).astype(float)
    gamma = tau2 / (sigma2 + n_g * tau2)
    resid = y - X @ beta
    u_hat = gamma * np.bincount(g, weights=resid)
    S = np.zeros((n_g.size, X.shape[1]))
    np.add.at(S, g, X)
    L = X / sigma2
    R = X - gamma[g][:, None] * S[g]
    A = L.T @ R
    A = (A + A.T) / 2
    U = X * ((resid - u_hat[g]) / sigma2)[:, None]
    return U, A, L, R, int(n_g.size)


def _fit_stats(kind, y, X, w, beta, n_cuts):
    if kind == "quasipoisson":  # share of the weighted deviance explained; no likelihood
        mu = np.exp(X @ beta)
        ybar = np.average(y, weights=w)
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = 2 * np.sum(w * (np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu)))
            dev0 = 2 * np.sum(w * (np.where(y > 0, y * np.log(y / ybar), 0.0) - (y - ybar)))
        return float(1.0 - dev / dev0), "part de déviance expliquée (pondérée)", np.nan
    if kind == "linear":
        mu = X @ beta
        ybar = np.average(y, weights=w)
        r2 = 1.0 - np.sum(w * (y - mu) ** 2) / np.sum(w * (y - ybar) ** 2)
        return float(r2), "R² pondéré", np.nan
    if kind == "logistic":
        mu = np.clip(expit(X @ beta), 1e-300, 1 - 1e-16)
        ll = float(np.sum(w * (y * np.log(mu) + (1 - y) * np.log1p(-mu))))
        pbar = np.average(y, weights=w)
        ll0 = float(np.sum(w * (y * np.log(pbar) + (1 - y) * np.log1p(-pbar))))
    else:
        ll = float(w @ _ordinal_parts(y, X, beta, n_cuts)[0])
        shares = np.bincount(y.astype(int), weights=w, minlength=n_cuts + 1) / w.sum()
        ll0 = float(np.sum(w * np.log(shares[y.astype(int)])))
    return float(1.0 - ll / ll0), "pseudo-R² de McFadden pondéré", ll
