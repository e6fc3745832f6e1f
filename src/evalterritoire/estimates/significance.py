"""Design-based tests by domain: t-tests (R ``svyttest``) and Rao–Scott tests (R ``svychisq``).

The Rao–Scott test is of the independence of two categorical variables.

**t-test.** ``design_ttest(design, y, group)`` compares the means of the two levels of
``group`` (sorted; the second minus the first, R's ``svyglm(y ~ group)`` coefficient) in every
domain at once: the difference of two cell means with their covariance (cells = domain ×
level, same scores as :mod:`evalterritoire.estimates.contrasts`), which is exactly the
linearisation of R's regression coefficient. Without ``group`` it tests ``mean = mu`` (R
``svyttest(y ~ 0)`` for ``mu = 0``). Degrees of freedom as R: the domain's ``degf`` after
dropping the rows with a missing value, minus 1 (R's ``df.residual`` of the two-coefficient
model; on replicate designs R's ``svyglm`` takes ``degf`` before dropping them); one-sample:
the domain's ``degf`` with every row, minus 1 (R's ``degf(design) − 1``). A domain where a level is absent has no test
(NaN row; R stops with an error there).

**Rao–Scott.** ``rao_scott_test(design, row, column)`` is R's default ``statistic = "F"``: the
Pearson statistic of the weighted table divided by the mean generalised design effect,
``F = X² / tr(Δ)``, referred to ``F(d, d ν)`` with ``d = tr(Δ)² / tr(Δ²)`` and ``ν`` the
domain's design degrees of freedom; ``Δ = (C'D⁻¹C / N)⁻¹ C'D⁻¹ V D⁻¹ C`` with ``V`` the design
covariance of the cell proportions, ``D`` their diagonal and ``C`` the interaction contrasts
(orthogonalised on the main effects), as R's ``svychisq.survey.design``; ``ν`` counts every
row of the domain, also those missing a variable (R). Per domain the levels
are those observed among its respondents who answered both variables. Where R's answer is not
defined or differs: a level present in a domain only with the other variable missing gives R a
zero margin and ``NaN`` (here the level is left out); R's subsets of *calibrated* designs keep
every row, so R uses every level of the sample (``NaN`` when one is absent from the domain) and
the whole design's ``ν``, where the domain's ``ν`` is used here (R's other subsets use the
domain's).

All domains share one covariance computation; the small per-domain matrix algebra is batched by
table shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import EstimationError
from evalterritoire.estimates.common import (
    check_columns,
    combination_variance,
    domain_means,
    numeric,
    pair_covariance,
    prepare,
    quantile_crit,
    tidy_frame,
    two_sided_p,
    valid_df,
)

__all__ = ["TEST_COLUMNS", "design_ttest", "rao_scott_test"]

#: Columns of :func:`rao_scott_test` after the domain columns.
TEST_COLUMNS = ("row_variable", "column_variable", "statistic", "ndf", "ddf", "p_value", "n")


def _levels(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes (``-1`` missing) and sorted levels (numbers sorted numerically, shown as text)."""
    codes, uniq = pd.factorize(series, sort=True)
    return codes.astype(np.int64), [
        str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v) for v in uniq
    ]


def design_ttest(
    design: SurveyDesign,
    variables: str | Sequence[str],
    group: str | None = None,
    *,
    by: str | Sequence[str] | None = None,
    mu: float = 0.0,
    ci: str = "t",
    level: float = 0.95,
) -> pd.DataFrame:
    """Design-based t-test of a difference of means (or of one mean), by domain.

    Parameters
    ----------
    design : SurveyDesign
        Taylor or replicate design.
    variables : str or sequence of str
        Numeric columns.
    group : str, optional
        Column with exactly two levels (sorted; the test is of ``mean(second) − mean(first)``).
        Without it: one-sample test of ``mean = mu``.
    by : str or sequence of str, optional
        Domain columns (one test per domain).
    mu : float
        Null value of the one-sample test.
    ci, level
        As in :func:`~evalterritoire.estimates.estimate_mean`.

    Returns
    -------
    DataFrame
        ``by`` columns, ``variable``, (``group``, ``level_1``, ``level_2``,) ``estimate`` (the
        difference, or ``mean − mu``), ``se``, ``ci_low``, ``ci_high``, ``df``, ``n``,
        ``statistic`` (t) and ``p_value``.

    Examples
    --------
    >>> design_ttest(design, "y", "sex", by="area")  # doctest: +SKIP
    """
    cols, codes, labels = prepare(design, variables, by)
    codes = design._domain_codes(codes)
    y = numeric(design, cols)
    n_dom, p = len(labels), len(cols)
    if group is None:
        return _one_sample(design, y, cols, codes, labels, mu, ci, level)
    check_columns(design, [group], "group")
    gcode, glevels = _levels(design.data[group])
    if len(glevels) != 2:
        raise EstimationError(f"group '{group}' must have two levels, found {glevels[:5]}")
    cell = np.where((codes >= 0) & (gcode >= 0), codes * 2 + gcode, -1)
    means = domain_means(design, y, cell, 2 * n_dom)
    g_idx = np.repeat(np.arange(n_dom), p)
    j_idx = np.tile(np.arange(p), n_dom)
    a, b = (2 * g_idx) * p + j_idx, (2 * g_idx + 1) * p + j_idx
    est = means.estimate.ravel()
    var = combination_variance(
        design, means, np.column_stack([b, a]), np.tile([1.0, -1.0], (a.size, 1))
    )
    valid = ~np.isnan(y) & (cell >= 0)[:, None]
    if design.is_replicate:  # R's svyglm.svyrep.design takes degf before dropping missing rows
        df = np.repeat(design.domain_df(codes, n_dom)[:, None] - 1, p, axis=1)
    else:
        df = valid_df(design, np.where(cell >= 0, codes, -1), valid, n_dom) - 1
    n_a, n_b = means.n.ravel()[a], means.n.ravel()[b]
    keep = (n_a + n_b) > 0
    both = (n_a > 0) & (n_b > 0)
    diff = np.where(both, est[b] - est[a], np.nan)
    se = np.where(both, np.sqrt(np.maximum(var, 0.0)), np.nan)
    cols_out = {
        "variable": np.asarray(cols, dtype=object)[j_idx],
        "group": group,
        "level_1": glevels[0],
        "level_2": glevels[1],
    }
    return _t_table(labels, g_idx, keep, cols_out, diff, se, df[g_idx, j_idx], n_a + n_b, ci, level)


def _one_sample(design, y, cols, codes, labels, mu, ci, level) -> pd.DataFrame:
    n_dom, p = len(labels), len(cols)
    means = domain_means(design, y, codes, n_dom)
    k = np.arange(n_dom * p)
    var = pair_covariance(design, means, k, k)
    # R's one-sample test: degf of the whole domain (rows with a missing value included) − 1
    df = np.repeat(design.domain_df(codes, n_dom)[:, None] - 1, p, axis=1)
    g_idx, j_idx = np.repeat(np.arange(n_dom), p), np.tile(np.arange(p), n_dom)
    n = means.n.ravel()
    keep = n > 0
    cols_out = {"variable": np.asarray(cols, dtype=object)[j_idx]}
    est = means.estimate.ravel() - float(mu)
    se = np.sqrt(np.maximum(var, 0.0))
    return _t_table(labels, g_idx, keep, cols_out, est, se, df[g_idx, j_idx], n, ci, level)


def _t_table(labels, g_idx, keep, cols_out, est, se, df, n, ci, level) -> pd.DataFrame:
    crit = quantile_crit(level, df, ci)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    columns = {
        **{k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in cols_out.items()},
        "estimate": est[keep],
        "se": se[keep],
        "ci_low": (est - crit * se)[keep],
        "ci_high": (est + crit * se)[keep],
        "df": df[keep].astype(np.int64),
        "n": np.asarray(n)[keep].astype(np.int64),
        "statistic": stat[keep],
        "p_value": two_sided_p(stat, df, ci)[keep],
    }
    return tidy_frame(labels, g_idx[keep], columns, ["variable"])


# ----------------------------------------------------------------------------- Rao-Scott
def rao_scott_test(
    design: SurveyDesign, row: str, column: str, *, by: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Rao–Scott F test of independence of two categorical variables, by domain (R ``svychisq``).

    Parameters
    ----------
    design : SurveyDesign
        Taylor or replicate design.
    row, column : str
        Categorical (or coded) columns; rows missing either are left out.
    by : str or sequence of str, optional
        Domain columns (one test per domain).

    Returns
    -------
    DataFrame
        ``by`` columns then :data:`TEST_COLUMNS`: ``statistic`` (``F = X²/tr(Δ)``), ``ndf``
        (``d``), ``ddf`` (``d ν``), ``p_value`` and ``n`` (respondents with both answers). A
        domain with fewer than two levels of either variable has NaN statistic and p-value.

    Examples
    --------
    >>> rao_scott_test(design, "actor_type", "has_facilitator")  # doctest: +SKIP
    """
    check_columns(design, [row, column], "variable")
    _, codes, labels = prepare(design, [row], by)
    codes = design._domain_codes(codes)
    rcode, rlev = _levels(design.data[row])
    ccode, clev = _levels(design.data[column])
    nr, nc = len(rlev), len(clev)
    ok = (codes >= 0) & (rcode >= 0) & (ccode >= 0)
    k = nr * nc
    cellcode = np.where(ok, rcode + nr * ccode, 0)  # column-major, as R's interaction()
    ind = np.full((len(codes), k), np.nan)
    ind[ok] = 0.0
    ind[np.flatnonzero(ok), cellcode[ok]] = 1.0
    dom = np.where(ok, codes, -1)
    n_dom = len(labels)
    means = domain_means(design, ind, dom, n_dom)
    g = np.repeat(np.arange(n_dom), k * k)
    a = np.tile(np.repeat(np.arange(k), k), n_dom)
    b = np.tile(np.tile(np.arange(k), k), n_dom)
    cov = pair_covariance(design, means, g * k + a, g * k + b).reshape(n_dom, k, k)
    nu = design.domain_df(codes, n_dom).astype(float)  # R: every row of the domain
    prop = means.estimate.reshape(n_dom, k)
    res = _rao_scott(prop, cov, nr, nc, nu)
    n = means.n[:, 0]
    keep = n > 0
    gi = np.flatnonzero(keep)
    out = tidy_frame(
        labels,
        gi,
        {
            "row_variable": row,
            "column_variable": column,
            **{key: val[gi] for key, val in res.items()},
            "n": n[gi].astype(np.int64),
        },
        [],
    )
    for col in ("row_variable", "column_variable"):
        out[col] = out[col].astype("string")
    return out


def _rao_scott(
    prop: np.ndarray, cov: np.ndarray, nr: int, nc: int, nu: np.ndarray
) -> dict[str, np.ndarray]:
    """F, d, dν and p for every domain; cells in R's order (row level fastest)."""
    n_dom = prop.shape[0]
    out = {key: np.full(n_dom, np.nan) for key in ("statistic", "ndf", "ddf", "p_value")}
    tab = prop.reshape(n_dom, nc, nr).transpose(0, 2, 1)  # (G, nr, nc)
    rows_present = tab.sum(axis=2) > 0
    cols_present = tab.sum(axis=1) > 0
    patterns: dict[tuple, list[int]] = {}
    for gi in range(n_dom):
        if not np.isfinite(prop[gi]).all():
            continue
        key = (tuple(np.flatnonzero(rows_present[gi])), tuple(np.flatnonzero(cols_present[gi])))
        if len(key[0]) >= 2 and len(key[1]) >= 2:
            patterns.setdefault(key, []).append(gi)
    for (rs, cs), members in patterns.items():
        gs = np.asarray(members)
        cells = np.array([r + nr * c for c in cs for r in rs])
        p = prop[gs][:, cells]
        v = cov[np.ix_(gs, cells, cells)]
        stat, d0 = _rao_scott_batch(p, v, len(rs), len(cs))
        out["statistic"][gs] = stat
        out["ndf"][gs] = d0
        out["ddf"][gs] = d0 * nu[gs]
        with np.errstate(invalid="ignore"):
            out["p_value"][gs] = stats.f.sf(stat, d0, d0 * nu[gs])
    return out


def _rao_scott_batch(
    p: np.ndarray, v: np.ndarray, nr: int, nc: int
) -> tuple[np.ndarray, np.ndarray]:
    """R ``svychisq(statistic = "F")`` on a batch of tables of the same shape (``N = 1``)."""
    rows = np.tile(np.arange(nr), nc)
    cols = np.repeat(np.arange(nc), nr)
    x1 = np.column_stack(
        [np.ones(nr * nc)]
        + [(rows == r).astype(float) for r in range(1, nr)]
        + [(cols == c).astype(float) for c in range(1, nc)]
    )
    x12 = np.column_stack(
        [((rows == r) & (cols == c)).astype(float) for c in range(1, nc) for r in range(1, nr)]
    )
    q, _ = np.linalg.qr(x1)
    cmat = x12 - q @ (q.T @ x12)
    with np.errstate(divide="ignore"):
        idiag = np.where(p == 0, 0.0, 1.0 / p)  # (B, K)
    ci = cmat[None, :, :] * idiag[:, :, None]  # D⁻¹C
    denom = np.einsum("kc,bkd->bcd", cmat, ci)  # C'D⁻¹C
    numr = np.einsum("bkc,bkl,bld->bcd", ci, v, ci)  # C'D⁻¹VD⁻¹C
    delta = np.linalg.solve(denom, numr)
    tr = np.trace(delta, axis1=1, axis2=2)
    tr2 = np.einsum("bij,bji->b", delta, delta)
    d0 = tr * tr / tr2
    tab = p.reshape(-1, nc, nr).transpose(0, 2, 1)
    expected = tab.sum(axis=2)[:, :, None] * tab.sum(axis=1)[:, None, :]
    x2 = np.sum((tab - expected) ** 2 / expected, axis=(1, 2))
    return x2 / tr, d0
