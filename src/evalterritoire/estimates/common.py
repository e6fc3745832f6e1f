"""Shared pieces of the estimators beyond means: domains, domain means and their scores.

The quantile, contrast, test and reliability modules all need, for many domains at once, the
weighted mean of some columns, its design variance and its *linearised scores* (the per-row
contributions ``w (y − ȳ_g) / Ŵ_g`` whose totals' covariance is the covariance of the means).
This module builds them once, for Taylor designs (scores as a sparse rows × (domain, column)
matrix, covariances from :mod:`evalterritoire.design.covariance`) and for replicate designs
(the means recomputed with every replicate weight). Domains are coded by
:mod:`evalterritoire.estimates.engine`'s own helpers, so that every table labels its domains
the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import EstimationError
from evalterritoire.estimates.engine import _by_list, _check_columns, _domains, _numeric

__all__: list[str] = []


def prepare(
    design: Any, variables: str | Sequence[str], by: Any
) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """Checked variables, each row's domain code (``-1``: none) and the domain labels."""
    if not isinstance(design, SurveyDesign):
        raise EstimationError(f"design must be a SurveyDesign, got {type(design).__name__}")
    cols = [variables] if isinstance(variables, str) else list(variables)
    if not cols:
        raise EstimationError("no variable to estimate")
    _check_columns(design, cols, "variable")
    codes, labels = _domains(design, _by_list(by))
    return cols, codes, labels


def numeric(design: SurveyDesign, cols: Sequence[str]) -> np.ndarray:
    """The columns as floats (NaN = missing); a non-numeric column is an error."""
    return _numeric(design, cols)


def check_columns(design: SurveyDesign, cols: Sequence[str], what: str) -> None:
    """Every column exists in the design's data."""
    _check_columns(design, cols, what)


def domains(design: SurveyDesign, by: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Each row's domain code and the labels table (``by=[]``: the whole design)."""
    return _domains(design, list(by))


def valid_df(design: SurveyDesign, codes: np.ndarray, valid: np.ndarray, n_dom: int) -> np.ndarray:
    """``(n_dom, p)`` degrees of freedom of each domain restricted to a column's valid rows.

    R's ``svyquantile``, ``svyglm`` (hence ``svyttest``) and ``svychisq`` drop the rows with a
    missing value before taking ``degf`` of the domain: PSUs with a valid member − strata with
    one (replicate designs: rank of those rows' replicate weights − 1).
    """
    out = np.empty((n_dom, valid.shape[1]), dtype=np.int64)
    for j in range(valid.shape[1]):
        out[:, j] = design.domain_df(np.where(valid[:, j], codes, -1), n_dom)
    return out


def quantile_crit(level: float, df: np.ndarray, ci: str) -> np.ndarray:
    """Two-sided critical value: t with ``max(df, 1)`` (as the domain engine) or normal."""
    if not 0 < level < 1:
        raise EstimationError(f"level must be in (0, 1), got {level}")
    if ci == "normal":
        return np.full(np.shape(df), stats.norm.ppf(0.5 + level / 2))
    if ci != "t":
        raise EstimationError(f"ci must be 't' or 'normal', got {ci!r}")
    return stats.t.ppf(0.5 + level / 2, np.maximum(df, 1))


def two_sided_p(stat: np.ndarray, df: np.ndarray, ci: str) -> np.ndarray:
    """Two-sided p-value of a t (or normal) statistic."""
    with np.errstate(invalid="ignore"):
        if ci == "normal":
            return 2 * stats.norm.sf(np.abs(stat))
        return 2 * stats.t.sf(np.abs(stat), np.maximum(df, 1))


# ----------------------------------------------------------------------------- domain means
@dataclass(frozen=True)
class DomainMeans:
    """Means of ``p`` columns in ``G`` domains with what their covariances need.

    ``scores`` (Taylor designs) is the sparse ``(n, G·p)`` matrix of linearised contributions,
    column ``g·p + j``; ``replicates`` (replicate designs) the ``(G·p, R)`` replicate means.
    """

    estimate: np.ndarray  # (G, p)
    n: np.ndarray  # (G, p) respondents with a valid value
    wsum: np.ndarray  # (G, p)
    scores: sparse.csr_matrix | None
    replicates: np.ndarray | None


def domain_means(design: SurveyDesign, y: np.ndarray, codes: np.ndarray, n_dom: int) -> DomainMeans:
    """Weighted means of the columns of ``y`` (NaN = missing) in every domain, in one pass."""
    codes = design._domain_codes(codes)
    n, p = y.shape
    valid = ~np.isnan(y) & (codes >= 0)[:, None]
    w = design.weights
    rows, cols = np.nonzero(valid)
    del valid  # the (rows × columns) temporaries are dropped as soon as used (memory)
    key = codes[rows] * p + cols
    wv = w[rows]
    yv = y[rows, cols]
    del cols
    wsum = np.bincount(key, weights=wv, minlength=n_dom * p)
    ty = np.bincount(key, weights=wv * yv, minlength=n_dom * p)
    cnt = np.bincount(key, minlength=n_dom * p).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        est = ty / wsum
    shape = (n_dom, p)
    if design.is_replicate:
        reps = _replicate_means(design, rows, key, yv, n_dom * p)
        return DomainMeans(est.reshape(shape), cnt.reshape(shape), wsum.reshape(shape), None, reps)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = wv * (yv - est[key]) / wsum[key]
    del wv, yv
    z = np.where(np.isfinite(z), z, 0.0)
    scores = sparse.csr_matrix((z, (rows, key)), shape=(n, n_dom * p))
    return DomainMeans(est.reshape(shape), cnt.reshape(shape), wsum.reshape(shape), scores, None)


def mean_variances(
    design: SurveyDesign, y: np.ndarray, codes: np.ndarray, n_dom: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(estimate, variance, n)`` of domain means, each ``(G, p)``, in one pass.

    Taylor designs use the domain engine's variance (:meth:`SurveyDesign._domain_variances`:
    unit × domain cells, calibration residuals, PPS forms); replicate designs the means
    recomputed with every replicate weight.
    """
    codes = design._domain_codes(codes)
    valid = ~np.isnan(y) & (codes >= 0)[:, None]
    if design.is_replicate:
        m = domain_means(design, y, codes, n_dom)
        var = replicate_covariance(design, m.replicates, m.estimate.ravel())
        return m.estimate, var.reshape(m.estimate.shape), m.n
    w = np.asarray(design.weights, dtype=float)[:, None] * valid
    y0 = np.where(valid, y, 0.0)
    g = np.maximum(codes, 0)
    keep = codes >= 0
    wsum = np.zeros((n_dom, y.shape[1]))
    ty = np.zeros((n_dom, y.shape[1]))
    for j in range(y.shape[1]):
        wsum[:, j] = np.bincount(codes[keep], weights=w[keep, j], minlength=n_dom)
        ty[:, j] = np.bincount(codes[keep], weights=(w * y0)[keep, j], minlength=n_dom)
    n = np.zeros((n_dom, y.shape[1]))
    for j in range(y.shape[1]):
        n[:, j] = np.bincount(codes[keep], weights=valid[keep, j], minlength=n_dom)
    with np.errstate(divide="ignore", invalid="ignore"):
        est = ty / wsum
        z = w * (y0 - est[g]) / wsum[g]
    z = np.where(np.isfinite(z) & valid, z, 0.0)
    return est, design._domain_variances(z, codes, n_dom), n


def _replicate_means(
    design: SurveyDesign, rows: np.ndarray, key: np.ndarray, yv: np.ndarray, k: int
) -> np.ndarray:
    """``(k, R)`` means recomputed with every replicate weight."""
    rep = design.replicate_weights
    n = rep.shape[0]
    ind = sparse.csr_matrix((np.ones(rows.size), (key, rows)), shape=(k, n))
    num = sparse.csr_matrix((yv, (key, rows)), shape=(k, n)) @ rep
    den = ind @ rep
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num) / np.asarray(den)


def replicate_covariance(design: SurveyDesign, theta: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Diagonal ``(k,)`` of the replicate covariance of ``theta`` ``(k, R)`` (R ``svrVar``).

    A replicate whose value is missing (a domain or level with no weight in it) is left out,
    as R's ``svrVar`` discards replicates that gave ``NA`` (keeping the scale).
    """
    rep = design._rep
    ok = np.isfinite(theta)
    t0 = np.where(ok, theta, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = t0.sum(axis=1, keepdims=True) / ok.sum(axis=1, keepdims=True)
    centre = full[:, None] if rep.mse else mean
    d = np.where(ok, t0 - centre, 0.0)
    return rep.scale * (np.square(d) * rep.rscales).sum(axis=1)


def pair_covariance(
    design: SurveyDesign, means: DomainMeans, i: np.ndarray, j: np.ndarray
) -> np.ndarray:
    """Covariances of the flattened means ``(i[k], j[k])`` (Taylor or replicate)."""
    if means.replicates is not None:
        rep = design._rep
        full = means.estimate.ravel()
        theta = means.replicates
        ok = np.isfinite(theta[i]) & np.isfinite(theta[j])  # R drops replicates giving NA
        ti, tj = np.where(ok, theta[i], 0.0), np.where(ok, theta[j], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cnt = ok.sum(axis=1, keepdims=True)
            ci = full[i][:, None] if rep.mse else ti.sum(axis=1, keepdims=True) / cnt
            cj = full[j][:, None] if rep.mse else tj.sum(axis=1, keepdims=True) / cnt
        prod = np.where(ok, (ti - ci) * (tj - cj), 0.0)
        return rep.scale * (prod * rep.rscales).sum(axis=1)
    from evalterritoire.design.covariance import covariance_pairs

    return covariance_pairs(design, means.scores, None, i, j)


def combination_variance(
    design: SurveyDesign, means: DomainMeans, idx: np.ndarray, coef: np.ndarray
) -> np.ndarray:
    """Variance of ``Σ_m coef[k, m] θ[idx[k, m]]`` for every row ``k`` of ``idx`` ``(K, M)``.

    Taylor designs: ``c' C c`` from the pair covariances. Replicate designs: the replicate
    variance of the combination itself (R refits or ``svycontrast`` of replicate statistics),
    a replicate where it is missing being left out as R's ``svrVar`` does.
    """
    idx = np.asarray(idx, dtype=np.int64)
    coef = np.asarray(coef, dtype=float)
    if means.replicates is not None:
        theta = np.einsum("km,kmr->kr", coef, means.replicates[idx])
        full = np.einsum("km,km->k", coef, means.estimate.ravel()[idx])
        return replicate_covariance(design, theta, full)
    k, m = idx.shape
    a = np.repeat(idx, m, axis=1).ravel()
    b = np.tile(idx, (1, m)).ravel()
    cov = pair_covariance(design, means, a, b).reshape(k, m, m)
    return np.einsum("km,kmn,kn->k", coef, cov, coef)


def tidy_frame(
    labels: pd.DataFrame, dom_idx: np.ndarray, columns: dict[str, Any], sort: list[str]
) -> pd.DataFrame:
    """Domain label columns for ``dom_idx`` followed by ``columns``, sorted, index reset."""
    out = labels.iloc[dom_idx].reset_index(drop=True)
    for name, values in columns.items():
        out[name] = values
    for col in ("variable", "level", "contrast", "scale"):
        if col in out:
            out[col] = out[col].astype("string")
    return out.sort_values([*labels.columns, *sort], kind="stable").reset_index(drop=True)
