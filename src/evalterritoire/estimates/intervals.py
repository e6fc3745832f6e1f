"""Intervals that stay inside the parameter space: one documented method per kind of quantity.

Every published interval (items and dimension scores alike) is computed here:

========================  ==========================================================  ==========
kind                      interval                                                    method
========================  ==========================================================  ==========
``share``                 Korn–Graubard: Clopper–Pearson with the effective sample    ``korn_graubard``
                          size ``p (1 - p) / var`` corrected by ``(t(n_R - 1) /
                          t(df))²`` (R ``svyciprop(method = "beta")``)
``bounded_mean``          logit of the rescaled mean ``u = (x - lo) / (hi - lo)``     ``logit_scale``
                          (Likert 1–5, ratings 0–10, ordinal codes, years):
                          ``expit(logit(u) ± t(df) se / ((hi - lo) u (1 - u)))``,
                          back on the scale
``positive_mean``         log of ``x - lo`` (counts, non-negative decimals, totals):   ``log_scale``
                          ``lo + (x - lo) exp(± t(df) se / (x - lo))``
``mean``                  symmetric ``x ± t(df) se`` (no known bound)                 ``t``
========================  ==========================================================  ==========

Edge cases, the same for every kind:

* **At a bound** (a share of 0 % or 100 %, a bounded mean on the scale's end, which is then also
  without variance): the Korn–Graubard interval has a proper width there; a bounded mean at
  an end gets the Clopper–Pearson bound of the rescaled mean with ``n`` respondents (a variable
  in ``[0, 1]`` is never more variable than a 0/1 variable of the same mean, so the bound is
  conservative).
* **Not estimable** (``not_estimable``, the bounds are NaN and a report says so in words): a
  domain whose respondents are all in one PSU (``df < 1``), a zero variance away from a bound
  (every respondent gave the same inner answer), a non-finite variance (one respondent), a
  positive mean at its lower bound (every count is 0).

``model_*`` methods are the same shapes with the normal quantile and a mean squared error in
place of the variance (model-based small-area estimates, :mod:`.smallarea`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "INTERVAL_KINDS",
    "INTERVAL_METHODS",
    "compute_intervals",
    "interval_kind",
    "korn_graubard",
]

INTERVAL_KINDS = ("share", "bounded_mean", "positive_mean", "mean")
#: Interval method written in the ``interval`` column of the estimates table.
INTERVAL_METHODS = {
    "share": "korn_graubard",
    "bounded_mean": "logit_scale",
    "positive_mean": "log_scale",
    "mean": "t",
}


def interval_kind(statistic: str, low: float | None, high: float | None) -> str:
    """The kind of a quantity from its statistic and its range.

    Parameters
    ----------
    statistic : str
        ``proportion`` / ``nsp_share`` (shares) or ``mean`` / ``total``.
    low, high : float or None
        The range of the variable (codebook ``value_range``); None where unbounded.

    Returns
    -------
    str
        One of :data:`INTERVAL_KINDS`.
    """
    if statistic in {"proportion", "nsp_share", "share"}:
        return "share"
    finite = [v is not None and np.isfinite(v) for v in (low, high)]
    if all(finite) and float(high) > float(low):  # type: ignore[arg-type]
        return "bounded_mean"
    if finite[0]:
        return "positive_mean"
    return "mean"


def _quantile(level: float, df: np.ndarray | float | None) -> np.ndarray:
    """``t(1 - α/2, df)``, or the normal quantile where ``df`` is None/inf."""
    alpha = 1.0 - level
    if df is None:
        return np.asarray(stats.norm.ppf(1 - alpha / 2))
    d = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        q = stats.t.ppf(1 - alpha / 2, np.where(d >= 1, d, 1.0))
    return np.where(np.isinf(d), stats.norm.ppf(1 - alpha / 2), q)


def korn_graubard(
    p: np.ndarray,
    var: np.ndarray,
    df: np.ndarray | None,
    n: np.ndarray,
    n_rows: np.ndarray | None = None,
    *,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Korn–Graubard interval of proportions (R ``svyciprop(method = "beta")``).

    Parameters
    ----------
    p, var : ndarray
        Proportions and their design variances (broadcastable shapes).
    df : ndarray or None
        Design degrees of freedom; None drops Korn and Graubard's df adjustment (normal).
    n : ndarray
        Respondents with a valid answer (the Clopper–Pearson ``n`` at 0 %, 100 % or a zero
        variance).
    n_rows : ndarray, optional
        R's ``nrow()`` of the domain's subset for the df adjustment (default ``n``).
    level : float
        Confidence level.

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper bounds, inside [0, 1].
    """
    p, var, n = (np.asarray(a, dtype=float) for a in (p, var, n))
    rows = n if n_rows is None else np.asarray(n_rows, dtype=float)
    alpha = 1 - level
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = p * (1 - p) / var
        if df is not None:
            t_n = stats.t.ppf(alpha / 2, np.maximum(rows - 1, 1))
            t_d = stats.t.ppf(alpha / 2, np.maximum(np.asarray(df, dtype=float), 1))
            n_eff = n_eff * np.square(t_n / t_d)
    n_eff = np.where(np.isfinite(n_eff) & (n_eff > 0), n_eff, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = stats.beta.ppf(alpha / 2, n_eff * p, n_eff * (1 - p) + 1)
        hi = stats.beta.ppf(1 - alpha / 2, n_eff * p + 1, n_eff * (1 - p))
    return np.where(p <= 0, 0.0, lo), np.where(p >= 1, 1.0, hi)


def _clopper_pearson_edge(u: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, ...]:
    """Clopper–Pearson bounds of a rescaled mean at 0 or 1 with ``n`` respondents."""
    alpha = 1 - level
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    with np.errstate(invalid="ignore"):
        upper_at_0 = stats.beta.ppf(1 - alpha / 2, 1.0, n)
        lower_at_1 = stats.beta.ppf(alpha / 2, n, 1.0)
    lo = np.where(u >= 1, lower_at_1, 0.0)
    hi = np.where(u <= 0, upper_at_0, 1.0)
    return lo, hi


def compute_intervals(
    kind: Any,
    estimate: Any,
    se: Any,
    df: Any,
    n: Any,
    *,
    low: Any = None,
    high: Any = None,
    n_rows: Any = None,
    level: float = 0.95,
    model: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intervals inside each quantity's range, vectorised over rows of mixed kinds.

    Parameters
    ----------
    kind : str or array of str
        :data:`INTERVAL_KINDS` (one per row, or one for all).
    estimate, se : array-like
        Estimates and their standard errors (root mean squared errors when ``model``).
    df : array-like or None
        Design degrees of freedom (``df < 1``: not estimable; NaN or None: unknown, the normal
        quantile); ignored when ``model``.
    n : array-like
        Respondents with a valid answer.
    low, high : array-like, optional
        Range of each quantity (NaN where unbounded); shares are always [0, 1].
    n_rows : array-like, optional
        R's ``nrow()`` of each domain (Korn–Graubard df adjustment), default ``n``.
    level : float
        Confidence level.
    model : bool
        Model-based estimates: normal quantile, and shares use the logit scale (there is no
        effective sample size of a model-based estimate).

    Returns
    -------
    (low, high, method) : ndarrays
        Bounds (NaN when not estimable) and the method of each row (see the module).
    """
    est = np.atleast_1d(np.asarray(estimate, dtype=float))
    size = est.shape
    kinds = np.broadcast_to(np.asarray(kind, dtype=object), size)
    se = np.broadcast_to(np.asarray(se, dtype=float), size)
    n = np.broadcast_to(np.asarray(n, dtype=float), size)
    d = (
        np.full(size, np.inf)
        if model or df is None
        else np.broadcast_to(np.asarray(df, float), size)
    )
    d = np.where(np.isnan(d), np.inf, d)  # unknown df: the normal quantile
    lo_r = np.broadcast_to(np.asarray(np.nan if low is None else low, dtype=float), size).copy()
    hi_r = np.broadcast_to(np.asarray(np.nan if high is None else high, dtype=float), size).copy()
    share = kinds == "share"
    lo_r[share], hi_r[share] = 0.0, 1.0
    bounded = (kinds == "bounded_mean") | (share & model)
    positive = kinds == "positive_mean"
    out_lo, out_hi = np.full(size, np.nan), np.full(size, np.nan)
    method = np.full(size, "", dtype=object)
    q = _quantile(level, None if model else d)
    q = np.broadcast_to(q, size)
    var = np.square(se)
    ok = np.isfinite(est) & np.isfinite(var) & (d >= 1)

    if not model and share.any():
        m = share & ok
        rows = None if n_rows is None else np.broadcast_to(np.asarray(n_rows, float), size)[m]
        out_lo[m], out_hi[m] = korn_graubard(est[m], var[m], d[m], n[m], rows, level=level)
        method[share] = "korn_graubard"
    _bounded(bounded, ok, est, se, q, lo_r, hi_r, n, level, out_lo, out_hi, method)
    _positive(positive, ok, est, se, q, lo_r, out_lo, out_hi, method)
    plain = kinds == "mean"
    m = plain & ok & (var > 0)
    out_lo[m], out_hi[m] = est[m] - q[m] * se[m], est[m] + q[m] * se[m]
    method[plain] = "t"
    if model:
        method = np.where(method == "", method, np.char.add("model_", method.astype(str)))
        method = method.astype(object)
    bad = ~np.isfinite(out_lo) | ~np.isfinite(out_hi)
    method[bad] = "not_estimable"
    out_lo[bad], out_hi[bad] = np.nan, np.nan
    return out_lo, out_hi, method


def _bounded(mask, ok, est, se, q, lo_r, hi_r, n, level, out_lo, out_hi, method) -> None:
    """Logit of the rescaled mean; Clopper–Pearson at an end of the scale."""
    if not mask.any():
        return
    width = hi_r - lo_r
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = (est - lo_r) / width
        su = se / width
        at_edge = mask & ok & ((u <= 0) | (u >= 1))
        inner = mask & ok & (u > 0) & (u < 1) & (su > 0)
        eta = np.log(u / (1 - u))
        half = q * su / (u * (1 - u))
        ul = 1 / (1 + np.exp(-(eta - half)))
        uh = 1 / (1 + np.exp(-(eta + half)))
    out_lo[inner] = lo_r[inner] + width[inner] * ul[inner]
    out_hi[inner] = lo_r[inner] + width[inner] * uh[inner]
    if at_edge.any():
        el, eh = _clopper_pearson_edge(np.clip(u[at_edge], 0, 1), n[at_edge], level)
        out_lo[at_edge] = lo_r[at_edge] + width[at_edge] * el
        out_hi[at_edge] = lo_r[at_edge] + width[at_edge] * eh
    method[mask] = "logit_scale"


def _positive(mask, ok, est, se, q, lo_r, out_lo, out_hi, method) -> None:
    """Log of the distance to the lower bound (counts, non-negative means and totals)."""
    if not mask.any():
        return
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = est - lo_r
        inner = mask & ok & (x > 0) & (se > 0)
        half = q * se / x
    out_lo[inner] = lo_r[inner] + x[inner] * np.exp(-half[inner])
    out_hi[inner] = lo_r[inner] + x[inner] * np.exp(half[inner])
    method[mask] = "log_scale"
