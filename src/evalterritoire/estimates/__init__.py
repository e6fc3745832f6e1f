"""Design-based estimates: the ``estimates`` step of the flow.

Modules: ``engine`` (means, totals, ratios and proportions by domain, R ``survey``'s numbers),
``intervals`` (one interval method per kind of quantity, inside its range), ``publication``
(status of every estimate: publishable, fragile or suppressed, and confidentiality helpers),
``smallarea`` (Fay–Herriot small-area estimates) and ``study`` (the study's estimates table).
"""

from __future__ import annotations

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
from evalterritoire.estimates.smallarea import (
    FayHerriotFit,
    compute_smallarea_estimates,
    fit_fay_herriot,
    smooth_sampling_variances,
)
from evalterritoire.estimates.study import (
    STUDY_ESTIMATE_COLUMNS,
    StudyTables,
    compute_domain_variance_factors,
    compute_study_estimates,
    compute_study_tables,
)

__all__ = [
    "ESTIMATE_COLUMNS",
    "INTERVAL_KINDS",
    "OTHER_GROUP",
    "STATUSES",
    "STUDY_ESTIMATE_COLUMNS",
    "FayHerriotFit",
    "StudyTables",
    "assess_publication",
    "complementary_suppression",
    "compute_domain_variance_factors",
    "compute_intervals",
    "compute_smallarea_estimates",
    "compute_study_estimates",
    "compute_study_tables",
    "estimate_mean",
    "estimate_proportion",
    "estimate_ratio",
    "estimate_total",
    "fit_fay_herriot",
    "interval_kind",
    "korn_graubard",
    "mean",
    "merge_small_groups",
    "proportion",
    "ratio",
    "smooth_sampling_variances",
    "total",
]
