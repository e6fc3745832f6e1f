"""Publication status of every estimate: publishable, fragile or suppressed, with its reasons.

The rules are the study's ``[publication]`` table (:class:`~evalterritoire.config.PublicationConfig`,
whose docstring gives the defaults and their sources). :func:`assess_publication` judges a
table of estimates, row by row and vectorised; the first rule below is confidentiality, the
others reliability:

=================  =================================================================  ==========
reason             rule                                                               status
=================  =================================================================  ==========
``min_cell``       fewer than ``min_cell`` respondents (confidentiality)              suppressed
``no_estimate``    no finite estimate                                                 suppressed
``effective_n``    share: ``min(n, p(1-p)/var)`` below ``share_min_effective_n``       suppressed
``width``          share: Korn–Graubard width ≥ ``share_max_width``                    suppressed
``relative_width`` share: width > ``share_small_width`` and width / p above           suppressed
                   ``share_max_relative_width``; count: width / estimate above
                   ``count_max_relative_width``
``min_n``          mean or count on fewer than ``mean_min_n`` respondents             suppressed
``scale_width``    bounded mean: interval ≥ ``mean_max_scale_width`` of the scale     suppressed
``out_of_range``   model-based estimate outside the quantity's range                  suppressed
``df``             design degrees of freedom below ``min_df`` (direct estimates)       fragile
``complement``     share: the complementary share's relative width above the limit    fragile
``boundary``       share of exactly 0 % or 100 %                                       fragile
``cv``             count: coefficient of variation ≥ ``count_max_cv``                  fragile
``not_estimable``  no interval can be estimated (one PSU, no variance)                 fragile
``secondary``      suppressed so that another suppressed value cannot be recovered    suppressed
=================  =================================================================  ==========

A row's status is the most severe of its reasons; ``reason`` lists them, ``;``-separated. The
helpers :func:`merge_small_groups` (actor-type breakdowns: the small types become one « autres »
group of at least ``min_cell`` respondents) and :func:`complementary_suppression` (a
distribution whose shares add up to 100 % never has exactly one suppressed cell) keep a
suppressed value from being recovered by subtraction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.config import PublicationConfig

__all__ = [
    "OTHER_GROUP",
    "REASONS",
    "STATUSES",
    "assess_publication",
    "complementary_suppression",
    "merge_small_groups",
    "worst_status",
]

#: Statuses, least severe first.
STATUSES = ("publishable", "fragile", "suppressed")
#: Reason code → status it implies.
REASONS: dict[str, str] = {
    "min_cell": "suppressed",
    "no_estimate": "suppressed",
    "effective_n": "suppressed",
    "width": "suppressed",
    "relative_width": "suppressed",
    "min_n": "suppressed",
    "scale_width": "suppressed",
    "out_of_range": "suppressed",
    "secondary": "suppressed",
    "df": "fragile",
    "complement": "fragile",
    "boundary": "fragile",
    "cv": "fragile",
    "not_estimable": "fragile",
}
#: Key of the merged group of small actor types (:func:`merge_small_groups`).
OTHER_GROUP = "__autres__"
_REQUIRED = ("kind", "estimate", "se", "ci_low", "ci_high", "df", "n")


def worst_status(statuses: Sequence[str]) -> str:
    """The most severe of some statuses (``publishable`` for none)."""
    rank = max((STATUSES.index(s) for s in statuses), default=0)
    return STATUSES[rank]


def assess_publication(
    table: pd.DataFrame, rules: PublicationConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Status and reasons of every row of an estimates table.

    Parameters
    ----------
    table : DataFrame
        Columns ``kind`` (``share``, ``bounded_mean``, ``positive_mean``, ``mean``),
        ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``, ``n``; optional ``estimator``
        (``direct`` by default, ``fay_herriot`` for model-based rows: no df or effective-n
        rule), ``range_low`` and ``range_high`` (the quantity's range).
    rules : PublicationConfig, optional
        The study's rules (default: the documented defaults).

    Returns
    -------
    (status, reason) : ndarrays of str
        One status (:data:`STATUSES`) and one ``;``-joined list of reason codes per row.
    """
    rules = rules if rules is not None else PublicationConfig()
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"estimates table lacks column(s) {', '.join(missing)}")
    m = len(table)
    col = _columns(table, m)
    flags: dict[str, np.ndarray] = {}
    model = col["estimator"] != "direct"
    flags["min_cell"] = col["n"] < rules.min_cell
    flags["no_estimate"] = ~np.isfinite(col["estimate"])
    flags["not_estimable"] = ~(np.isfinite(col["ci_low"]) & np.isfinite(col["ci_high"]))
    flags["df"] = ~model & (col["df"] < rules.min_df)
    _share_rules(flags, col, col["kind"] == "share", model, rules)
    _mean_rules(flags, col, model, rules)
    reasons = np.full(m, "", dtype=object)
    rank = np.zeros(m, dtype=np.int64)
    for code in REASONS:
        hit = flags.get(code)
        if hit is None:
            continue
        hit = np.asarray(hit, dtype=bool)
        reasons[hit] = np.where(reasons[hit] == "", code, reasons[hit] + ";" + code)
        rank[hit] = np.maximum(rank[hit], STATUSES.index(REASONS[code]))
    status = np.asarray(STATUSES, dtype=object)[rank]
    return status, reasons


def _columns(table: pd.DataFrame, m: int) -> dict[str, np.ndarray]:
    def num(name: str, default: float = np.nan) -> np.ndarray:
        if name not in table.columns:
            return np.full(m, default)
        return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    estimator = (
        table["estimator"].astype("string").fillna("direct").to_numpy(dtype=object)
        if "estimator" in table.columns
        else np.full(m, "direct", dtype=object)
    )
    return {
        "kind": table["kind"].astype("string").fillna("").to_numpy(dtype=object),
        "estimator": estimator,
        **{k: num(k) for k in ("estimate", "se", "ci_low", "ci_high", "df", "n")},
        "range_low": num("range_low"),
        "range_high": num("range_high"),
    }


def _share_rules(flags, col, share, model, rules: PublicationConfig) -> None:
    """NCHS 2017 on the Korn–Graubard interval (model rows: the width rules only)."""
    p, var, n = col["estimate"], np.square(col["se"]), col["n"]
    width = col["ci_high"] - col["ci_low"]
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(var > 0, np.minimum(n, p * (1 - p) / var), n)
        rel = np.where(p > 0, width / p, np.inf)
        rel_c = np.where(p < 1, width / (1 - p), np.inf)
    known = np.isfinite(width)
    wide_enough = known & (width > rules.share_small_width)
    flags["effective_n"] = share & ~model & (n_eff < rules.share_min_effective_n)
    flags["width"] = share & known & (width >= rules.share_max_width)
    flags["relative_width"] = share & wide_enough & (rel > rules.share_max_relative_width)
    flags["complement"] = share & wide_enough & (rel_c > rules.share_max_relative_width)
    flags["boundary"] = share & ((p <= 0) | (p >= 1))


def _mean_rules(flags, col, model, rules: PublicationConfig) -> None:
    """Means: n, width relative to the scale (bounded), relative width and CV (counts)."""
    kind, est, n = col["kind"], col["estimate"], col["n"]
    width = col["ci_high"] - col["ci_low"]
    is_mean = kind != "share"
    bounded, positive = kind == "bounded_mean", kind == "positive_mean"
    flags["min_n"] = is_mean & ~model & (n < rules.mean_min_n)
    with np.errstate(divide="ignore", invalid="ignore"):
        span = col["range_high"] - col["range_low"]
        scale_width = width / span
        x = est - np.where(np.isfinite(col["range_low"]), col["range_low"], 0.0)
        rel = np.where(x > 0, width / x, np.inf)
        cv = np.where(x > 0, col["se"] / x, np.inf)
    known = np.isfinite(width)
    flags["scale_width"] = bounded & known & (scale_width >= rules.mean_max_scale_width)
    prev = flags.get("relative_width", np.zeros(len(est), dtype=bool))
    flags["relative_width"] = prev | (positive & known & (rel > rules.count_max_relative_width))
    flags["cv"] = positive & np.isfinite(col["se"]) & (cv >= rules.count_max_cv)
    low, high = col["range_low"], col["range_high"]
    outside = (np.isfinite(low) & (est < low)) | (np.isfinite(high) & (est > high))
    flags["out_of_range"] = model & np.isfinite(est) & outside


def merge_small_groups(counts: Mapping[str, int], min_cell: int) -> dict[str, str]:
    """Which group each actor type is shown in: itself, or the merged :data:`OTHER_GROUP`.

    Types with fewer than ``min_cell`` respondents are merged. The merged group must itself
    reach ``min_cell`` and hold at least two types (otherwise the one merged type could be
    recovered by subtracting the others from the total): the smallest remaining types join it
    until it does. When every type ends up merged, the caller shows no breakdown.

    Parameters
    ----------
    counts : mapping of str to int
        Respondents per type (types with 0 respondents are ignored).
    min_cell : int
        Confidentiality threshold.

    Returns
    -------
    dict of str to str
        Type → displayed group (the type itself or :data:`OTHER_GROUP`).
    """
    present = {k: int(v) for k, v in counts.items() if int(v) > 0}
    order = sorted(present, key=lambda k: (present[k], k))
    merged = [k for k in order if present[k] < min_cell]
    rest = [k for k in order if present[k] >= min_cell]
    if merged:
        while rest and (sum(present[k] for k in merged) < min_cell or len(merged) < 2):
            merged.append(rest.pop(0))
    return {k: (OTHER_GROUP if k in merged else k) for k in present}


def complementary_suppression(
    suppressed: Sequence[bool], values: Sequence[Any], *, closed: bool = True
) -> list[bool]:
    """Secondary suppression of a distribution: never exactly one hidden cell.

    When the cells of a distribution add up to a known total (100 % of a single-choice item,
    ``closed=True``) and exactly one cell is suppressed, it could be recovered by subtraction:
    the smallest shown cell is suppressed too.

    Parameters
    ----------
    suppressed : sequence of bool
        Primary suppression of each cell.
    values : sequence
        The cells' values (the smallest shown one is chosen; None counts as 0).
    closed : bool
        Whether the cells add up to a known total (otherwise nothing is added).

    Returns
    -------
    list of bool
        Primary or secondary suppression of each cell.
    """
    out = [bool(s) for s in suppressed]
    if not closed or sum(out) != 1 or len(out) < 2:
        return out
    shown = [i for i, s in enumerate(out) if not s]
    smallest = min(shown, key=lambda i: (float(values[i] or 0.0), i))
    out[smallest] = True
    return out
