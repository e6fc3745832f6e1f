"""Design-based quantiles (medians, quartiles…) by domain, as R ``svyquantile`` (survey ≥ 4.1).

Rule (R's default ``qrule = "math"``): in a domain, sort the valid values and their weights,
``c_k`` the cumulative weights and ``W`` their sum; the ``p``-quantile is ``x_(k)`` for the
last ``k`` with ``c_k ≤ p W`` when ``c_k = p W`` exactly, and ``x_(k+1)`` otherwise — the
smallest value whose cumulative share reaches ``p`` (the inverse of the weighted distribution
function; no interpolation). ``rule="school"`` averages ``x_(k)`` and ``x_(k+1)`` in the exact
case (R ``qrule = "school"``). Rows with a zero weight are ignored, ties keep their row order
(R sorts stably), and cumulative weights are summed in extended precision as R does, so that
the exact-equality case is decided as in R.

Interval (R's default ``interval.type = "mean"``, Woodruff 1952): the share of the domain at or
below the estimate, ``p̂ = mean(x ≤ q̂)``, gets its design-based standard error (strata, PSUs,
fpc, second stage, calibration residuals, or replicate weights: the estimators' own variance);
its interval ``p̂ ± t(df) se(p̂)`` is carried back through the same rule: ``[Q(p̂_low),
Q(p̂_high)]``. The reported ``se`` is R's: the interval's width divided by ``2 t(df)``. When a
bound of ``p̂``'s interval leaves ``[0, 1]`` R's bound is ``NaN`` and so is ours (the interval
is then open on that side), and so is ``se``. ``df`` is R's ``degf`` of the domain after
dropping the rows where the variable is missing (PSUs with a valid member − strata); the
interval uses ``max(df, 1)`` like the other estimators (R would give ``NaN`` for ``df = 0``).

All domains of a variable come from one sort of the valid rows by (domain, value), one pass of
cumulative sums and one vectorised mean of the indicators: no Python loop over domains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import EstimationError
from evalterritoire.estimates.common import (
    mean_variances,
    numeric,
    prepare,
    quantile_crit,
    tidy_frame,
    valid_df,
)

__all__ = ["QUANTILE_RULES", "estimate_quantile", "quantile"]

QUANTILE_RULES = ("math", "school")


class _Sorted:
    """The valid rows of one variable sorted by (domain, value), with cumulative weights."""

    def __init__(self, y: np.ndarray, w: np.ndarray, codes: np.ndarray, n_dom: int) -> None:
        rows = np.flatnonzero((codes >= 0) & ~np.isnan(y) & (w != 0))
        order = rows[np.lexsort((y[rows], codes[rows]))]
        self.dom = codes[order]
        self.y = y[order]
        cum = np.cumsum(w[order].astype(np.longdouble))
        self.starts = np.searchsorted(self.dom, np.arange(n_dom), side="left")
        self.ends = np.searchsorted(self.dom, np.arange(n_dom), side="right")
        offset = np.where(self.starts > 0, cum[np.maximum(self.starts - 1, 0)], 0)
        self.cumw = np.asarray(cum - offset[self.dom], dtype=float)
        self.present = self.ends > self.starts
        last = np.maximum(self.ends - 1, 0)
        self.total = np.where(self.present, self.cumw[last] if self.cumw.size else 0.0, np.nan)

    def rule(self, p: np.ndarray, rule: str) -> np.ndarray:
        """The ``p[g]``-quantile of every domain (``NaN`` where ``p`` is NaN or no value)."""
        out = np.full(p.shape, np.nan)
        ok = self.present & np.isfinite(p)
        if not ok.any() or self.y.size == 0:
            return out
        thr = p * self.total
        flags = self.cumw <= thr[self.dom]
        idx = np.where(flags, np.arange(self.y.size), -1)
        starts = self.starts[self.present]
        pos = np.full(p.shape, -1, dtype=np.int64)
        pos[self.present] = np.maximum.reduceat(idx, starts)
        pos = np.where(pos < self.starts, self.starts, pos)  # R's last(): 1 when none
        g = np.flatnonzero(ok)
        here = pos[g]
        nxt = np.minimum(here + 1, self.ends[g] - 1)
        exact = (p[g] - self.cumw[here] / self.total[g]) == 0
        if rule == "math":
            out[g] = np.where(exact, self.y[here], self.y[nxt])
        else:
            out[g] = np.where(exact, (self.y[here] + self.y[nxt]) / 2, self.y[nxt])
        return out


def estimate_quantile(
    design: SurveyDesign,
    variables: str | Sequence[str],
    quantiles: float | Sequence[float] = 0.5,
    *,
    by: str | Sequence[str] | None = None,
    ci: str = "t",
    level: float = 0.95,
    rule: str = "math",
) -> pd.DataFrame:
    """Weighted quantiles with Woodruff intervals, by domain (R ``svyquantile``).

    Parameters
    ----------
    design : SurveyDesign
        Taylor (strata, PSUs, fpc, two stages, PPS, calibration) or replicate design.
    variables : str or sequence of str
        Numeric columns (missing values are dropped per variable, R ``na.rm = TRUE``).
    quantiles : float or sequence of float
        Probabilities in [0, 1] (0.5: the median).
    by : str or sequence of str, optional
        Domain columns (every domain in one pass).
    ci : {"t", "normal"}
        Student's t with the domain's degrees of freedom, or the normal quantile.
    level : float
        Confidence level.
    rule : {"math", "school"}
        R's ``qrule``: the inverse of the weighted distribution function (default), or the
        mid-point of the two values when the cumulative share hits ``p`` exactly.

    Returns
    -------
    DataFrame
        ``by`` columns, ``variable``, ``quantile`` (the probability), ``estimate``, ``se``,
        ``ci_low``, ``ci_high``, ``df``, ``n``, ``deff`` (always NaN: no design effect is defined
        for a quantile); sorted by domain, variable and probability. A bound whose share falls
        outside [0, 1] is NaN, as R's.

    Raises
    ------
    EstimationError
        Unknown or non-numeric column, probability outside [0, 1], unknown rule.

    Examples
    --------
    >>> estimate_quantile(design, "n_partners", [0.25, 0.5, 0.75], by="area")  # doctest: +SKIP
    """
    if rule not in QUANTILE_RULES:
        raise EstimationError(f"rule must be one of {', '.join(QUANTILE_RULES)}, got {rule!r}")
    probs = np.atleast_1d(np.asarray(quantiles, dtype=float))
    if probs.size == 0 or np.any((probs < 0) | (probs > 1)) or np.isnan(probs).any():
        raise EstimationError(f"quantiles must be probabilities in [0, 1], got {quantiles!r}")
    cols, codes, labels = prepare(design, variables, by)
    codes = design._domain_codes(codes)
    y = numeric(design, cols)
    n_dom = len(labels)
    df = valid_df(design, codes, ~np.isnan(y), n_dom)
    parts = []
    for j, col in enumerate(cols):
        srt = _Sorted(y[:, j], np.asarray(design.weights, dtype=float), codes, n_dom)
        crit = quantile_crit(level, df[:, j], ci)
        for p in probs:
            res = _one(design, y[:, j], codes, n_dom, srt, p, crit, rule)
            present = srt.present
            g = np.flatnonzero(present)
            parts.append(
                tidy_frame(
                    labels,
                    g,
                    {
                        "variable": col,
                        "quantile": float(p),
                        **{k: v[g] for k, v in res.items()},
                        "df": df[g, j],
                        "n": (srt.ends - srt.starts)[g].astype(np.int64),
                        "deff": np.nan,
                    },
                    ["variable", "quantile"],
                )
            )
    if not parts or all(len(p) == 0 for p in parts):
        raise EstimationError(
            f"no valid value of {', '.join(cols)} in the domain(s) for a quantile"
        )
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values([*labels.columns, "variable", "quantile"], kind="stable").reset_index(
        drop=True
    )


def _one(
    design: SurveyDesign,
    y: np.ndarray,
    codes: np.ndarray,
    n_dom: int,
    srt: _Sorted,
    p: float,
    crit: np.ndarray,
    rule: str,
) -> dict[str, np.ndarray]:
    """Estimate, Woodruff interval and se of the ``p``-quantile in every domain."""
    q = srt.rule(np.full(n_dom, p), rule)
    g_row = np.maximum(codes, 0)
    below = np.where(np.isnan(y), np.nan, (y <= q[g_row]).astype(float))
    below = np.where(codes >= 0, below, np.nan)
    share, var, _ = mean_variances(design, below[:, None], codes, n_dom)
    share, var = share[:, 0], var[:, 0]
    se_share = np.sqrt(var)
    lo_p = share - crit * se_share
    hi_p = share + crit * se_share
    lo = srt.rule(np.where(lo_p < 0, np.nan, lo_p), rule)
    hi = srt.rule(np.where(hi_p > 1, np.nan, hi_p), rule)
    return {"estimate": q, "se": (hi - lo) / (2 * crit), "ci_low": lo, "ci_high": hi}


#: Short public name (``estimates.quantile``), the same function as :func:`estimate_quantile`.
quantile = estimate_quantile
