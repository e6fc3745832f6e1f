"""Comparisons of domain means that account for their covariance: contrasts and part vs whole.

Two domain means of the same survey are not independent: they share strata (and PSUs when the
domains cross the PSUs), the calibration ties them together, and a territory *is part of* the
nation it is compared with. Their covariance comes from the linearised scores of every domain
mean, ``w (y − ȳ_g) / Ŵ_g`` on the domain's rows, whose totals' design covariance
(:mod:`evalterritoire.design.covariance`: strata, PSUs, fpc, second stage, PPS, calibration
residuals) is the covariance of the means; on replicate designs the means are recomputed with
every replicate weight and the covariance is R's ``svrVar`` of their differences.

* :func:`estimate_domain_covariance` — the ``G × G`` covariance of a variable's domain means
  (what R ``vcov(svyby(..., covmat = TRUE))`` gives for replicate designs; for Taylor designs
  R 4.1's ``svyby`` returns a block-diagonal matrix, zero between domains, which ignores that
  domains share strata and PSUs: the values here are R's ``svyratio``/``svytotal`` on the whole
  design, which the tests compare with).
* :func:`estimate_contrast` — any linear combination ``Σ_g c_g ȳ_g`` (R ``svycontrast``).
* :func:`compare_with_whole` — each domain against the whole it belongs to (a territory against
  its nation, or against its region with ``within=``): ``ȳ_g − ȳ``, whose variance
  ``V(ȳ_g) + V(ȳ) − 2 Cov(ȳ_g, ȳ)`` keeps the overlap (the territory's respondents are in the
  national mean). Treating the two as independent would overstate the variance when the domain
  weighs much in the whole, and ignore the shared strata.

Degrees of freedom (R has no rule: ``svycontrast`` intervals are normal): a contrast uses the
PSUs with a valid member in any domain it involves minus the strata with such PSUs (R ``degf``
of the union); a comparison with the whole uses the *domain's* (its PSUs with a valid member
minus their strata): the variance of ``ȳ_g − ȳ`` rests mostly on the domain's own PSUs (the
whole's scores are ``Ŵ_g/Ŵ`` times smaller), so the whole's many degrees of freedom would
overstate the precision of a territory drawn in a few PSUs. ``p_value`` tests a zero contrast
(t with ``max(df, 1)``, or normal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import EstimationError
from evalterritoire.estimates.common import (
    DomainMeans,
    combination_variance,
    domain_means,
    domains,
    numeric,
    pair_covariance,
    prepare,
    quantile_crit,
    tidy_frame,
    two_sided_p,
    valid_df,
)

__all__ = [
    "COMPARISON_COLUMNS",
    "compare_with_whole",
    "estimate_contrast",
    "estimate_domain_covariance",
]

#: Columns of :func:`compare_with_whole` after the domain columns.
COMPARISON_COLUMNS = (
    "variable",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "df",
    "n",
    "deff",
    "p_value",
    "domain_estimate",
    "whole_estimate",
)


def _label_keys(labels: pd.DataFrame) -> list[Any]:
    """Each domain's key: its value (one ``by`` column) or the tuple of values, as strings."""
    if labels.shape[1] == 1:
        return [str(v) for v in labels.iloc[:, 0]]
    return [tuple(str(v) for v in row) for row in labels.itertuples(index=False)]


def estimate_domain_covariance(
    design: SurveyDesign, variable: str, by: str | Sequence[str]
) -> pd.DataFrame:
    """Design covariance matrix of a variable's domain means (all pairs of domains).

    Parameters
    ----------
    design : SurveyDesign
        Taylor or replicate design.
    variable : str
        Numeric column (missing values dropped).
    by : str or sequence of str
        Domain columns.

    Returns
    -------
    DataFrame
        ``G × G``, rows and columns labelled by the domain (its value, or a tuple of values as
        strings); the diagonal is the squared ``se`` of :func:`estimate_mean`.
    """
    cols, codes, labels = prepare(design, variable, by)
    if len(cols) != 1:
        raise EstimationError("estimate_domain_covariance takes one variable")
    y = numeric(design, cols)
    n_dom = len(labels)
    means = domain_means(design, y, codes, n_dom)
    present = np.flatnonzero(means.n[:, 0] > 0)
    i, j = np.meshgrid(present, present, indexing="ij")
    cov = pair_covariance(design, means, i.ravel(), j.ravel()).reshape(i.shape)
    keys = [_label_keys(labels)[g] for g in present]
    return pd.DataFrame(cov, index=keys, columns=keys)


def estimate_contrast(
    design: SurveyDesign,
    variables: str | Sequence[str],
    contrasts: Mapping[str, Mapping[Any, float]],
    *,
    by: str | Sequence[str],
    ci: str = "t",
    level: float = 0.95,
) -> pd.DataFrame:
    """Linear contrasts of domain means with their design covariance (R ``svycontrast``).

    Parameters
    ----------
    design : SurveyDesign
        Taylor or replicate design.
    variables : str or sequence of str
        Numeric columns; each contrast is computed for each variable.
    contrasts : mapping
        ``{name: {domain: coefficient}}``; a domain is its value as a string (one ``by``
        column) or the tuple of its values as strings. Domains not named get 0.
    by : str or sequence of str
        Domain columns.
    ci, level
        As in :func:`~evalterritoire.estimates.estimate_mean`.

    Returns
    -------
    DataFrame
        ``contrast``, ``variable``, ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``, ``n``
        (respondents of the domains involved with a valid value), ``deff`` (NaN) and
        ``p_value`` (test of a zero contrast).

    Examples
    --------
    >>> estimate_contrast(design, "y", {"A - B": {"A": 1, "B": -1}}, by="area")  # doctest: +SKIP
    """
    if not contrasts:
        raise EstimationError("no contrast given")
    cols, codes, labels = prepare(design, variables, by)
    codes = design._domain_codes(codes)
    y = numeric(design, cols)
    n_dom, p = len(labels), len(cols)
    keys = {k: g for g, k in enumerate(_label_keys(labels))}
    means = domain_means(design, y, codes, n_dom)
    rows = []
    for name, coefs in contrasts.items():
        unknown = [k for k in coefs if _key(k) not in keys]
        if unknown:
            raise EstimationError(f"contrast '{name}': unknown domain(s) {unknown[:5]}")
        gs = np.array([keys[_key(k)] for k in coefs], dtype=np.int64)
        c = np.array([float(v) for v in coefs.values()])
        involved = np.isin(codes, gs)
        valid = ~np.isnan(y) & involved[:, None]
        df = valid_df(design, np.where(involved, 0, -1), valid, 1)[0]
        for j, col in enumerate(cols):
            idx = gs * p + j
            est = float(c @ means.estimate.ravel()[idx])
            var = float(combination_variance(design, means, idx[None, :], c[None, :])[0])
            rows.append((name, col, est, float(np.sqrt(max(var, 0.0))), int(df[j]),
                         int(means.n.ravel()[idx].sum())))  # fmt: skip
    out = pd.DataFrame(rows, columns=["contrast", "variable", "estimate", "se", "df", "n"])
    return _finish(out, ci, level)


def _key(k: Any) -> Any:
    return tuple(str(v) for v in k) if isinstance(k, tuple) else str(k)


def _finish(out: pd.DataFrame, ci: str, level: float) -> pd.DataFrame:
    """Intervals, design effect column and p-value of a table of estimates with se and df."""
    crit = quantile_crit(level, out["df"].to_numpy(), ci)
    est, se = out["estimate"].to_numpy(), out["se"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    out.insert(out.columns.get_loc("se") + 1, "ci_low", est - crit * se)
    out.insert(out.columns.get_loc("ci_low") + 1, "ci_high", est + crit * se)
    out["deff"] = np.nan
    out["p_value"] = np.where(se > 0, two_sided_p(stat, out["df"].to_numpy(), ci), np.nan)
    for col in ("contrast", "variable"):
        if col in out:
            out[col] = out[col].astype("string")
    return out


def compare_with_whole(
    design: SurveyDesign,
    variables: str | Sequence[str],
    *,
    by: str | Sequence[str],
    within: str | None = None,
    ci: str = "t",
    level: float = 0.95,
) -> pd.DataFrame:
    """Each domain's mean minus the mean of the whole it belongs to, with the overlap.

    Parameters
    ----------
    design : SurveyDesign
        Taylor or replicate design (a subset design restricts both the domains and the whole).
    variables : str or sequence of str
        Numeric columns.
    by : str or sequence of str
        Domain columns (e.g. the territory).
    within : str, optional
        Column giving the whole of each domain (e.g. the region); every domain must lie in
        one value. Default: the whole design (the nation), including respondents whose
        ``by`` value is missing.
    ci, level
        As in :func:`~evalterritoire.estimates.estimate_mean`.

    Returns
    -------
    DataFrame
        ``by`` columns, (``within``,) then :data:`COMPARISON_COLUMNS`: the difference
        ``estimate = domain_estimate − whole_estimate`` with its ``se`` from
        ``V(ȳ_g) + V(ȳ_W) − 2 Cov(ȳ_g, ȳ_W)``, interval, the domain's ``df`` and ``n``,
        ``p_value`` of no difference.

    Examples
    --------
    >>> compare_with_whole(design, ["y"], by="area")  # doctest: +SKIP
    """
    cols, codes, labels = prepare(design, variables, by)
    codes = design._domain_codes(codes)
    whole, wlabels = domains(design, [] if within is None else [within])
    whole = design._domain_codes(whole)
    y = numeric(design, cols)
    n_dom, n_whole, p = len(labels), len(wlabels), len(cols)
    parent = _parent_of(codes, whole, n_dom, within)
    whole_codes = np.where(whole >= 0, whole + n_dom, -1)
    means = _stacked_means(design, y, codes, whole_codes, n_dom + n_whole)
    g_idx = np.repeat(np.arange(n_dom), p)
    j_idx = np.tile(np.arange(p), n_dom)
    a = g_idx * p + j_idx
    b = (parent[g_idx] + n_dom) * p + j_idx
    est_a, est_b = means.estimate.ravel()[a], means.estimate.ravel()[b]
    var = combination_variance(
        design, means, np.column_stack([a, b]), np.tile([1.0, -1.0], (a.size, 1))
    )
    df_dom = valid_df(design, codes, ~np.isnan(y) & (codes >= 0)[:, None], n_dom)
    n = means.n.ravel()[a]
    keep = n > 0
    out = tidy_frame(
        labels,
        g_idx[keep],
        {
            **({within: wlabels[within].to_numpy()[parent[g_idx[keep]]]} if within else {}),
            "variable": np.asarray(cols, dtype=object)[j_idx[keep]],
            "estimate": (est_a - est_b)[keep],
            "se": np.sqrt(np.maximum(var, 0.0))[keep],
            "df": df_dom[g_idx, j_idx][keep],
            "n": n[keep].astype(np.int64),
            "domain_estimate": est_a[keep],
            "whole_estimate": est_b[keep],
        },
        ["variable"],
    )
    out = _finish(out, ci, level)
    tail = [c for c in COMPARISON_COLUMNS if c in out.columns]
    head = [c for c in out.columns if c not in tail]
    return out[head + tail]


def _parent_of(codes: np.ndarray, whole: np.ndarray, n_dom: int, within: str | None) -> np.ndarray:
    """The whole each domain lies in (an error when a domain spans several)."""
    keep = (codes >= 0) & (whole >= 0)
    parent = np.full(n_dom, -1, dtype=np.int64)
    pairs = np.unique(np.column_stack([codes[keep], whole[keep]]), axis=0)
    if pairs.size and np.bincount(pairs[:, 0], minlength=n_dom).max() > 1:
        bad = int(pairs[np.bincount(pairs[:, 0], minlength=n_dom)[pairs[:, 0]] > 1][0, 0])
        raise EstimationError(f"domain #{bad} lies in several values of '{within}'")
    parent[pairs[:, 0]] = pairs[:, 1]
    if (parent < 0).any():
        raise EstimationError(f"a domain has no value of '{within}' (its whole is unknown)")
    return parent


def _stacked_means(
    design: SurveyDesign, y: np.ndarray, codes: np.ndarray, whole_codes: np.ndarray, k: int
) -> DomainMeans:
    """Means of the domains (``codes`` ``0…G−1``) and of the wholes (``whole_codes`` ``G…``).

    Row ``i`` of the design feeds its domain and its whole (the same values of ``y``, read
    twice rather than stacked); both score matrices have the design's rows and disjoint
    columns, so their sum carries both and one covariance covers them (the overlap included).
    Taylor designs build that sum directly by blocks of rows (:func:`_stacked_scores`).
    """
    if not design.is_replicate:
        return _stacked_scores(design, y, codes, whole_codes, k)
    first = domain_means(design, y, codes, k)
    second = domain_means(design, y, whole_codes, k)
    use = first.n > 0
    reps = np.where(use.ravel()[:, None], first.replicates, second.replicates)
    return DomainMeans(
        np.where(use, first.estimate, second.estimate),
        np.where(use, first.n, second.n),
        np.where(use, first.wsum, second.wsum),
        None,
        reps,
    )


#: valid (row, column) entries handled at once by :func:`_stacked_scores`
_CHUNK_ENTRIES = 1 << 22


def _entries(
    design: SurveyDesign, y: np.ndarray, codes: np.ndarray, r0: int, r1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Valid entries of rows ``r0:r1`` in row-major order: rows, ``g·p + j``, weights, values."""
    p = y.shape[1]
    valid = ~np.isnan(y[r0:r1]) & (codes[r0:r1] >= 0)[:, None]
    rows, cols = np.nonzero(valid)
    rows += r0
    return rows, codes[rows] * p + cols, design.weights[rows], y[rows, cols]


def _stacked_scores(
    design: SurveyDesign, y: np.ndarray, codes: np.ndarray, whole_codes: np.ndarray, k: int
) -> DomainMeans:
    """:func:`_stacked_means` of a Taylor design without its two score matrices.

    ``domain_means`` of each set of codes and the sum of their sparse scores, equal bit for
    bit, built by blocks of rows: the weighted sums are accumulated in the rows' order (as
    ``bincount``), then the scores of both sets are written straight into the sum's CSR arrays
    (a row's domain entries, then its whole's; exact zeros left out as the sparse sum does).
    Only the sum and one block's temporaries are held.
    """
    n, p = y.shape
    size = k * p
    parts = [design._domain_codes(codes), design._domain_codes(whole_codes)]
    step = max(1, _CHUNK_ENTRIES // max(p, 1))
    wsum, ty = np.zeros((2, size)), np.zeros((2, size))
    cnt = np.zeros((2, size), dtype=np.int64)
    for r0 in range(0, n, step):
        for s, part in enumerate(parts):
            _, key, wv, yv = _entries(design, y, part, r0, min(n, r0 + step))
            np.add.at(wsum[s], key, wv)
            np.add.at(ty[s], key, wv * yv)
            cnt[s] += np.bincount(key, minlength=size)
    with np.errstate(divide="ignore", invalid="ignore"):
        est = ty / wsum
    total = int(cnt.sum())
    idx_dtype = np.int32 if max(total, size) < np.iinfo(np.int32).max else np.int64
    data, indices = np.empty(total), np.empty(total, dtype=idx_dtype)
    indptr = np.zeros(n + 1, dtype=idx_dtype)
    filled = 0
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        filled = _fill_scores(
            design, y, parts, est, wsum, (r0, r1), (data, indices, indptr), filled
        )
    scores = sparse.csr_matrix((data[:filled], indices[:filled], indptr), shape=(n, size))
    use = cnt[0] > 0
    shape = (k, p)
    return DomainMeans(
        np.where(use, est[0], est[1]).reshape(shape),
        np.where(use, cnt[0], cnt[1]).astype(float).reshape(shape),
        np.where(use, wsum[0], wsum[1]).reshape(shape),
        scores,
        None,
    )


def _fill_scores(
    design: SurveyDesign,
    y: np.ndarray,
    parts: list[np.ndarray],
    est: np.ndarray,
    wsum: np.ndarray,
    span: tuple[int, int],
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
    filled: int,
) -> int:
    """Write the nonzero scores of rows ``span`` into the CSR arrays ``out``; new fill count."""
    r0, r1 = span
    data, indices, indptr = out
    got = []
    for s, part in enumerate(parts):
        rows, key, wv, yv = _entries(design, y, part, r0, r1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = wv * (yv - est[s][key]) / wsum[s][key]
        z = np.where(np.isfinite(z), z, 0.0)
        nz = z != 0
        local = rows[nz] - r0
        count = np.bincount(local, minlength=r1 - r0)
        start = np.cumsum(count) - count  # first entry of each row within this part
        got.append((local, key[nz], z[nz], count, start))
    per_row = got[0][3] + got[1][3]
    row_start = filled + np.cumsum(per_row) - per_row
    before = np.zeros(r1 - r0, dtype=np.int64)  # a row's domain entries come first
    for local, key, z, count, start in got:
        pos = row_start[local] + before[local] + (np.arange(local.size) - start[local])
        data[pos] = z
        indices[pos] = key
        before = before + count
    indptr[r0 + 1 : r1 + 1] = filled + np.cumsum(per_row)
    return filled + int(per_row.sum())
