"""Design-based estimates: the ``estimates`` step of the flow.

Means, totals, ratios and proportions by domain, and the study's tidy estimates table.
"""

from __future__ import annotations

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

__all__ = [
    "ESTIMATE_COLUMNS",
    "STUDY_ESTIMATE_COLUMNS",
    "compute_study_estimates",
    "estimate_mean",
    "estimate_proportion",
    "estimate_ratio",
    "estimate_total",
    "mean",
    "proportion",
    "ratio",
    "total",
]
