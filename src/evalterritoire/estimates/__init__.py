"""Design-based estimates: the ``estimates`` step of the flow.

Means, totals, ratios and proportions by domain (``engine``, R ``survey``'s numbers); one
interval method per kind of quantity, inside its range (``intervals``); the status of every
estimate — publishable, fragile or suppressed — and the confidentiality helpers
(``publication``); Fay–Herriot small-area estimates (``smallarea``); the study's estimates table
(``study``); quantiles (``quantiles``), contrasts of domain means and each domain against its
whole (``contrasts``), t-tests and Rao–Scott tests (``significance``), Cronbach's alpha
(``reliability``); the study-level tables the reports use (``report_tables``: national
comparisons, dimension reliability, medians). ``common`` holds the domain-mean scores they share.
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
    estimate_mean,
    estimate_proportion,
    estimate_ratio,
    estimate_total,
    mean,
    proportion,
    ratio,
    total,
)
from evalterritoire.estimates.intervals import (
    INTERVAL_KINDS,
    compute_intervals,
    interval_kind,
    korn_graubard,
)
from evalterritoire.estimates.publication import (
    OTHER_GROUP,
    STATUSES,
    assess_publication,
    complementary_suppression,
    merge_small_groups,
)
from evalterritoire.estimates.quantiles import QUANTILE_RULES, estimate_quantile, quantile
from evalterritoire.estimates.reliability import estimate_cronbach_alpha
from evalterritoire.estimates.report_tables import (
    NATIONAL_COMPARISON_COLUMNS,
    compute_dimension_reliability,
    compute_item_medians,
    compute_national_comparisons,
)
from evalterritoire.estimates.significance import TEST_COLUMNS, design_ttest, rao_scott_test
from evalterritoire.estimates.smallarea import (
    FayHerriotFit,
    compute_smallarea_estimates,
    fit_fay_herriot,
    smooth_sampling_variances,
)
from evalterritoire.estimates.study import (
    STUDY_ESTIMATE_COLUMNS,
    CompactColumns,
    StudyTables,
    compute_domain_variance_factors,
    compute_study_estimates,
    compute_study_tables,
)

__all__ = [
    "COMPARISON_COLUMNS",
    "ESTIMATE_COLUMNS",
    "INTERVAL_KINDS",
    "NATIONAL_COMPARISON_COLUMNS",
    "OTHER_GROUP",
    "QUANTILE_RULES",
    "STATUSES",
    "STUDY_ESTIMATE_COLUMNS",
    "TEST_COLUMNS",
    "CompactColumns",
    "FayHerriotFit",
    "StudyTables",
    "assess_publication",
    "compare_with_whole",
    "complementary_suppression",
    "compute_dimension_reliability",
    "compute_domain_variance_factors",
    "compute_intervals",
    "compute_item_medians",
    "compute_national_comparisons",
    "compute_smallarea_estimates",
    "compute_study_estimates",
    "compute_study_tables",
    "design_ttest",
    "estimate_contrast",
    "estimate_cronbach_alpha",
    "estimate_domain_covariance",
    "estimate_mean",
    "estimate_proportion",
    "estimate_quantile",
    "estimate_ratio",
    "estimate_total",
    "fit_fay_herriot",
    "interval_kind",
    "korn_graubard",
    "mean",
    "merge_small_groups",
    "proportion",
    "quantile",
    "rao_scott_test",
    "ratio",
    "smooth_sampling_variances",
    "total",
]
