"""Design-based estimates: the ``estimates`` step of the flow.

Means, totals, ratios and proportions by domain, and the study's tidy estimates table
(``engine``); quantiles (``quantiles``), contrasts of domain means and each domain against its
whole (``contrasts``), t-tests and Rao–Scott tests (``significance``), Cronbach's alpha
(``reliability``); the study-level tables the reports use (``study``: national comparisons,
dimension reliability, medians). ``common`` holds the domain-mean scores they share.
"""

from __future__ import annotations

from evalterritoire.estimates.contrasts import (
    COMPARISON_COLUMNS,
    compare_with_whole,
    estimate_contrast,
    estimate_domain_covariance,
)
from evalterritoire.estimates.engine import (
    ESTIMATE_COLUMNS,
    STUDY_ESTIMATE_COLUMNS,
    compute_study_estimates,
    estimate_mean,
    estimate_proportion,
    estimate_ratio,
    estimate_total,
    mean,
    proportion,
    ratio,
    total,
)
from evalterritoire.estimates.quantiles import QUANTILE_RULES, estimate_quantile, quantile
from evalterritoire.estimates.reliability import estimate_cronbach_alpha
from evalterritoire.estimates.significance import TEST_COLUMNS, design_ttest, rao_scott_test
from evalterritoire.estimates.study import (
    NATIONAL_COMPARISON_COLUMNS,
    compute_dimension_reliability,
    compute_item_medians,
    compute_national_comparisons,
)

__all__ = [
    "COMPARISON_COLUMNS",
    "ESTIMATE_COLUMNS",
    "NATIONAL_COMPARISON_COLUMNS",
    "QUANTILE_RULES",
    "STUDY_ESTIMATE_COLUMNS",
    "TEST_COLUMNS",
    "compare_with_whole",
    "compute_dimension_reliability",
    "compute_item_medians",
    "compute_national_comparisons",
    "compute_study_estimates",
    "design_ttest",
    "estimate_contrast",
    "estimate_cronbach_alpha",
    "estimate_domain_covariance",
    "estimate_mean",
    "estimate_proportion",
    "estimate_quantile",
    "estimate_ratio",
    "estimate_total",
    "mean",
    "proportion",
    "quantile",
    "rao_scott_test",
    "ratio",
    "total",
]
