"""Maturity: dimension scores → territory profiles → ordered stages → transitions.

Modules: ``scoring`` (dimension scores), ``profiles`` (design-weighted territory profiles),
``clustering`` (ordered stages, scikit-learn estimator), ``agreement`` (statistical vs declared
stage), ``transitions`` (between waves) and ``compute`` (the study step).
"""

from __future__ import annotations

from evalterritoire.maturity.agreement import compute_stage_agreement, compute_weighted_kappa
from evalterritoire.maturity.clustering import (
    CLUSTER_METHODS,
    MaturityClustering,
    MaturityInputError,
    match_stages,
)
from evalterritoire.maturity.common import MaturityWarning
from evalterritoire.maturity.compute import MaturityResult, compute_maturity
from evalterritoire.maturity.profiles import compute_profiles
from evalterritoire.maturity.scoring import MaturityScorer
from evalterritoire.maturity.transitions import compute_transition_matrix, compute_transitions

__all__ = [
    "CLUSTER_METHODS",
    "MaturityClustering",
    "MaturityInputError",
    "MaturityResult",
    "MaturityScorer",
    "MaturityWarning",
    "compute_maturity",
    "compute_profiles",
    "compute_stage_agreement",
    "compute_transition_matrix",
    "compute_transitions",
    "compute_weighted_kappa",
    "match_stages",
]
