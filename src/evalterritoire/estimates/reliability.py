"""Design-based Cronbach's alpha of a scale, by domain, with a standard error (R ``svycralpha``).

For a scale of ``K`` items answered in full (rows missing an item are left out, R's
``na.rm = TRUE`` on both variance estimates), with ``s_j²`` the design-weighted variance of
item ``j`` and ``s_T²`` that of the items' sum,

    ``α = K / (K − 1) × (1 − Σ_j s_j² / s_T²)``

which is R ``svycralpha`` (R's ``n/(n − 1)`` factor multiplies every variance and cancels).
R gives the point estimate only. The standard error here is the linearisation (delta method)
of ``α`` in the variances, whose own linearised scores are ``w (u − s²)/Ŵ`` with
``u = (y − ȳ)²`` — the scores of R ``svyvar``, which treats the means as known (their
derivative is zero) — so it equals ``√(g'Vg)`` with ``V`` R's ``vcov(svyvar(...))`` of the
items and their sum and ``g`` the gradient of ``α``, which the tests compute in R. On replicate
designs ``V`` is the replicate covariance of the variances (R ``svyvar.svyrep.design``) and
the same delta method applies. Intervals are ``α ± t(df) se`` (``df``: the domain's, rows with
the whole scale answered).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import EstimationError
from evalterritoire.estimates.common import (
    check_columns,
    domains,
    numeric,
    quantile_crit,
    replicate_covariance,
    tidy_frame,
    valid_df,
)

__all__ = ["estimate_cronbach_alpha"]


def estimate_cronbach_alpha(
    design: SurveyDesign,
    scales: Sequence[str] | Mapping[str, Sequence[str]],
    *,
    by: str | Sequence[str] | None = None,
    ci: str = "t",
    level: float = 0.95,
) -> pd.DataFrame:
    """Cronbach's alpha of one or several scales with design-based SEs, by domain.

    Parameters
    ----------
    design : SurveyDesign
        Taylor or replicate design.
    scales : sequence of str or mapping
        The items of one scale, or ``{scale name: items}`` (at least two items each; items
        reverse-coded beforehand by the caller).
    by : str or sequence of str, optional
        Domain columns.
    ci, level
        As in :func:`~evalterritoire.estimates.estimate_mean`.

    Returns
    -------
    DataFrame
        ``by`` columns, ``scale``, ``n_items``, ``estimate``, ``se``, ``ci_low``, ``ci_high``,
        ``df``, ``n`` (respondents who answered every item), ``deff`` (NaN). A domain whose
        sum has no variance has NaN alpha.

    Examples
    --------
    >>> estimate_cronbach_alpha(design, {"governance": ["g1", "g2", "g3"]})  # doctest: +SKIP
    """
    if not isinstance(design, SurveyDesign):
        raise EstimationError(f"design must be a SurveyDesign, got {type(design).__name__}")
    named = dict(scales) if isinstance(scales, Mapping) else {"scale": list(scales)}
    by_cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    codes, labels = domains(design, by_cols)
    codes = design._domain_codes(codes)
    n_dom = len(labels)
    parts = []
    for name, items in named.items():
        items = list(items)
        if len(items) < 2:
            raise EstimationError(f"scale '{name}' needs at least two items")
        check_columns(design, items, "item")
        y = numeric(design, items)
        res = _alpha(design, y, codes, n_dom)
        complete = (~np.isnan(y).any(axis=1))[:, None]
        df = valid_df(design, codes, complete, n_dom)[:, 0]
        crit = quantile_crit(level, df, ci)
        g = np.flatnonzero(res["n"] > 0)
        parts.append(
            tidy_frame(
                labels,
                g,
                {
                    "scale": name,
                    "n_items": len(items),
                    "estimate": res["alpha"][g],
                    "se": res["se"][g],
                    "ci_low": (res["alpha"] - crit * res["se"])[g],
                    "ci_high": (res["alpha"] + crit * res["se"])[g],
                    "df": df[g],
                    "n": res["n"][g].astype(np.int64),
                    "deff": np.nan,
                },
                ["scale"],
            )
        )
    return pd.concat(parts, ignore_index=True).sort_values(
        [*labels.columns, "scale"], kind="stable", ignore_index=True
    )


def _variances(y: np.ndarray, w: np.ndarray, codes: np.ndarray, n_dom: int):
    """Per-domain weighted variances of the items and of their sum (complete rows only)."""
    keep = (codes >= 0) & ~np.isnan(y).any(axis=1)
    g = np.where(keep, codes, 0)
    x = np.column_stack([np.where(keep[:, None], y, 0.0), np.where(keep, y.sum(axis=1), 0.0)])
    wk = np.where(keep, w, 0.0)
    wsum = np.bincount(g, weights=wk, minlength=n_dom)
    mean = np.column_stack(
        [np.bincount(g, weights=wk * x[:, j], minlength=n_dom) for j in range(x.shape[1])]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = mean / wsum[:, None]
        u = np.where(keep[:, None], (x - mean[g]) ** 2, 0.0)
    var = np.column_stack(
        [np.bincount(g, weights=wk * u[:, j], minlength=n_dom) for j in range(x.shape[1])]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        var = var / wsum[:, None]
    return keep, g, u, wsum, var


def _alpha(design: SurveyDesign, y: np.ndarray, codes: np.ndarray, n_dom: int) -> dict:
    """Alpha, its delta-method SE and the complete respondents of every domain."""
    w = np.asarray(design.weights, dtype=float)
    k = y.shape[1]
    keep, g, u, wsum, var = _variances(y, w, codes, n_dom)
    s_items, s_total = var[:, :k].sum(axis=1), var[:, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = k / (k - 1.0) * (1.0 - s_items / s_total)
        grad_items = -k / (k - 1.0) / s_total  # d alpha / d s_j² (every item)
        grad_total = k / (k - 1.0) * s_items / s_total**2
    n = np.bincount(g, weights=keep.astype(float), minlength=n_dom)
    if design.is_replicate:
        var_alpha = _replicate_delta(design, y, codes, n_dom, grad_items, grad_total, var)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            z_items = (w[:, None] * (u[:, :k] - var[g, :k])).sum(axis=1) / wsum[g]
            z_total = w * (u[:, k] - var[g, k]) / wsum[g]
            z = grad_items[g] * z_items + grad_total[g] * z_total
        z = np.where(keep & np.isfinite(z), z, 0.0)
        var_alpha = design._domain_variances(z[:, None], np.where(keep, codes, -1), n_dom)[:, 0]
    bad = ~np.isfinite(alpha) | (s_total <= 0)
    alpha = np.where(bad, np.nan, alpha)
    se = np.where(bad, np.nan, np.sqrt(np.maximum(var_alpha, 0.0)))
    return {"alpha": alpha, "se": se, "n": n}


def _replicate_delta(
    design: SurveyDesign,
    y: np.ndarray,
    codes: np.ndarray,
    n_dom: int,
    grad_items: np.ndarray,
    grad_total: np.ndarray,
    full: np.ndarray,
) -> np.ndarray:
    """``g' V g`` with ``V`` the replicate covariance of the variances (R ``svyvar``)."""
    rep = design.replicate_weights
    k = y.shape[1]
    combos = np.empty((n_dom, rep.shape[1]))
    for r in range(rep.shape[1]):
        _, _, _, _, var_r = _variances(y, rep[:, r], codes, n_dom)
        combos[:, r] = grad_items * var_r[:, :k].sum(axis=1) + grad_total * var_r[:, k]
    centre = grad_items * full[:, :k].sum(axis=1) + grad_total * full[:, k]
    return replicate_covariance(design, combos, centre)
