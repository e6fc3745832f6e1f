"""Study-level tables for the reports: national comparisons, dimension reliability, medians.

Each function takes the wave's design and the codebook and asks the codebook for roles and item
types (never an instrument's item ids), so it works for any study:

* :func:`compute_national_comparisons` — every territory's mean of every mean-type item (Likert,
  ratings, ordinal, counts, decimals) and of every dimension score present in the data
  (``score_<dimension>``, ``score_global``) against the national mean, by
  :func:`~evalterritoire.estimates.compare_with_whole`: the difference with the overlap (the
  territory's respondents are in the national mean), its SE, df, p-value and whether it is
  significant. This is the only basis on which a report may write « significativement
  différent de la moyenne nationale ». The variables are compared by blocks of eight (each
  variable's comparison uses only its own column), which bounds the memory of the linearised
  scores; the rows are those of one call, bit for bit.
* :func:`compute_dimension_reliability` — the design-based Cronbach's alpha of each maturity
  dimension (its Likert items, milestones excluded, reverse-coded items mirrored on their
  scale, values outside the scale dropped, as the maturity scorer reads them), nationally or by
  domain, for the methodological annex.
* :func:`compute_item_medians` — medians (or other quantiles) of count items (or any item
  types, or named items), nationally and by territory, with Woodruff intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import EstimationError
from evalterritoire.estimates.contrasts import compare_with_whole
from evalterritoire.estimates.quantiles import estimate_quantile
from evalterritoire.estimates.reliability import estimate_cronbach_alpha

__all__ = [
    "NATIONAL_COMPARISON_COLUMNS",
    "compute_dimension_reliability",
    "compute_item_medians",
    "compute_national_comparisons",
]

_MEAN_TYPES = ("likert", "rating", "ordinal", "count", "decimal")

#: Columns of :func:`compute_national_comparisons`.
NATIONAL_COMPARISON_COLUMNS = (
    "domain",
    "variable",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "df",
    "n",
    "p_value",
    "domain_estimate",
    "national_estimate",
    "significant",
    "direction",
)


def _mean_items(design: SurveyDesign, codebook: Any) -> list[str]:
    """Respondent-level items of a mean type present (and numeric) in the data."""
    return [
        var.id
        for var in codebook.variables
        if var.level == "respondent"
        and var.type in _MEAN_TYPES
        and var.id in design.data
        and pd.api.types.is_numeric_dtype(design.data[var.id])
    ]


def _score_columns(design: SurveyDesign, codebook: Any) -> list[str]:
    names = [f"score_{d}" for d in codebook.dimensions] + ["score_global"]
    return [c for c in names if c in design.data]


def compute_national_comparisons(
    design: SurveyDesign,
    codebook: Any,
    *,
    variables: Sequence[str] | None = None,
    alpha: float = 0.05,
    level: float = 0.95,
) -> pd.DataFrame:
    """Every territory against the national mean, for the study's items and dimension scores.

    Parameters
    ----------
    design : SurveyDesign
        The wave's design; its data may carry the respondents' dimension scores
        (``score_<dimension>``, ``score_global``), which are then compared too.
    codebook : Codebook
        Gives the territory column (role ``territory``) and the items' types.
    variables : sequence of str, optional
        Columns to compare (default: every mean-type item, then the score columns present).
    alpha : float
        Significance level of ``significant``.
    level : float
        Confidence level of the interval of the difference.

    Returns
    -------
    DataFrame
        :data:`NATIONAL_COMPARISON_COLUMNS`, one row per territory × variable, sorted:
        ``domain`` is the territory code (text); ``estimate`` the difference territory −
        nation with ``se``, ``ci_low``, ``ci_high``, ``df`` (the territory's PSUs − strata),
        ``p_value``; ``significant`` is ``p_value < alpha`` (False when the difference has no
        variance or the territory no degree of freedom);
        ``direction`` is ``"higher"``, ``"lower"`` (when significant) or ``""``.

    Examples
    --------
    The report step builds the design (with the score columns joined) and calls::

        table = compute_national_comparisons(design, codebook)
        row = table[(table.domain == code) & (table.variable == "score_gouvernance")]
    """
    territory = codebook.require("territory", "the comparisons with the national value")
    cols = (
        list(variables)
        if variables is not None
        else [
            *_mean_items(design, codebook),
            *_score_columns(design, codebook),
        ]
    )
    if not cols:
        raise EstimationError("no item or score to compare with the national value")
    out = _compare_by_blocks(design, cols, territory, level)
    out = out.rename(columns={territory: "domain", "whole_estimate": "national_estimate"})
    out["domain"] = out["domain"].astype("string")
    sig = (out["p_value"] < alpha) & (out["se"] > 0) & (out["df"] >= 1)
    out["significant"] = sig.fillna(False).astype(bool)
    out["direction"] = np.where(
        out["significant"], np.where(out["estimate"] > 0, "higher", "lower"), ""
    )
    out["direction"] = out["direction"].astype("string")
    return out[list(NATIONAL_COMPARISON_COLUMNS)].reset_index(drop=True)


#: Variables compared with the national value at once (memory: the linearised scores of a
#: block of variables are held, two entries a respondent and variable).
_COMPARE_BLOCK = 8


def _compare_by_blocks(
    design: SurveyDesign, cols: list[str], territory: str, level: float
) -> pd.DataFrame:
    """:func:`compare_with_whole` of ``cols`` by blocks of :data:`_COMPARE_BLOCK` variables.

    Each variable's comparisons use only its own column (its means, scores and their
    covariances), so the blocks give the same rows as one call; they are put back in the
    order of one call (territory, then variable).
    """
    if len(cols) <= _COMPARE_BLOCK:
        return compare_with_whole(design, cols, by=territory, level=level)
    parts = [
        compare_with_whole(design, cols[j : j + _COMPARE_BLOCK], by=territory, level=level)
        for j in range(0, len(cols), _COMPARE_BLOCK)
    ]
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values([territory, "variable"], kind="stable").reset_index(drop=True)


def _mirrored_items(design: SurveyDesign, codebook: Any, items: list[str]) -> pd.DataFrame:
    """The items as the maturity scorer reads them: in range, reverse-coded ones mirrored."""
    frame = {}
    for item in items:
        values = pd.to_numeric(design.data[item], errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        lo, hi = codebook.value_range(item)
        if lo is not None and hi is not None:
            values = np.where((values < lo) | (values > hi), np.nan, values)
            if codebook[item].reverse_coded:
                values = lo + hi - values
        frame[f"__alpha__{item}"] = values
    return pd.DataFrame(frame, index=design.data.index)


def compute_dimension_reliability(
    design: SurveyDesign,
    codebook: Any,
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Design-based Cronbach's alpha of every maturity dimension of the codebook.

    Parameters
    ----------
    design : SurveyDesign
        The wave's design.
    codebook : Codebook
        Its dimensions and their Likert items (milestones excluded, reverse coding, scales).
    by : str or sequence of str, optional
        Domain columns (default: the whole sample).
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        ``by`` columns, ``dimension``, ``label`` (the codebook's), ``n_items``, ``estimate``
        (alpha), ``se``, ``ci_low``, ``ci_high``, ``df``, ``n`` (respondents who answered every
        item of the dimension); dimensions with fewer than two items present are left out.

    Examples
    --------
    For the methodological annex::

        alpha = compute_dimension_reliability(design, codebook)
    """
    scales: dict[str, list[str]] = {}
    for dim in codebook.dimensions:
        items = [
            v.id for v in codebook.dimension_items(dim) if not v.milestone and v.id in design.data
        ]
        if len(items) >= 2:
            scales[dim] = items
    if not scales:
        raise EstimationError("no maturity dimension has two items in the responses")
    every = sorted({i for items in scales.values() for i in items})
    extra = _mirrored_items(design, codebook, every)
    augmented = design._copy(_data=pd.concat([design.data, extra], axis=1))
    renamed = {d: [f"__alpha__{i}" for i in items] for d, items in scales.items()}
    out = estimate_cronbach_alpha(augmented, renamed, by=by, level=level)
    out = out.rename(columns={"scale": "dimension"}).drop(columns="deff")
    out.insert(
        out.columns.get_loc("dimension") + 1,
        "label",
        out["dimension"].map(lambda d: codebook.dimensions.get(d, d)).astype("string"),
    )
    return out


def compute_item_medians(
    design: SurveyDesign,
    codebook: Any,
    *,
    items: Sequence[str] | None = None,
    types: Sequence[str] = ("count",),
    quantiles: float | Sequence[float] = 0.5,
    level: float = 0.95,
) -> pd.DataFrame:
    """Medians (or other quantiles) of items, nationally and by territory.

    Parameters
    ----------
    design : SurveyDesign
        The wave's design.
    codebook : Codebook
        Gives the territory column (role ``territory``, optional: without it only the national
        rows) and the item types.
    items : sequence of str, optional
        Items to summarise (e.g. those the report spec's identity card names); default: the
        respondent-level items of ``types`` present in the data.
    types : sequence of str
        Item types used when ``items`` is not given (default: counts).
    quantiles : float or sequence of float
        Probabilities (0.5: median).
    level : float
        Confidence level of the Woodruff intervals.

    Returns
    -------
    DataFrame
        ``domain_type`` (``national`` or ``territory``), ``domain`` (``""`` nationally),
        ``variable``, ``quantile``, ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``, ``n``.

    Examples
    --------
    ::

        medians = compute_item_medians(design, codebook)                 # every count item
        identity = compute_item_medians(design, codebook, items=spec_items)
    """
    if items is None:
        items = [
            v.id
            for v in codebook.variables
            if v.level == "respondent" and v.type in tuple(types) and v.id in design.data
        ]
    items = list(items)
    if not items:
        raise EstimationError("no item to summarise by quantiles")
    national = estimate_quantile(design, items, quantiles, level=level)
    national.insert(0, "domain", "")
    national.insert(0, "domain_type", "national")
    parts = [national]
    territory = codebook.column("territory")
    if territory is not None and territory in design.data:
        by_t = estimate_quantile(design, items, quantiles, by=territory, level=level)
        by_t = by_t.rename(columns={territory: "domain"})
        by_t["domain"] = by_t["domain"].astype("string")
        by_t.insert(0, "domain_type", "territory")
        parts.append(by_t)
    out = pd.concat(parts, ignore_index=True).drop(columns="deff")
    for col in ("domain_type", "domain"):
        out[col] = out[col].astype("string")
    return out
