"""Survey-aware models: statsmodels fits with design-based covariance → tidy coefficient tables.

Modules: ``fit`` (fitting and publishing), ``data`` (model frames and labels), ``families``
(likelihoods and separation checks) and ``variance`` (design covariance, mixed-model clusters,
influence).
"""

from __future__ import annotations

from evalterritoire.models.families import detect_separation
from evalterritoire.models.fit import (
    MODEL_COLUMNS,
    FittedModel,
    ModelsResult,
    fit_model,
    fit_study_models,
)

__all__ = [
    "MODEL_COLUMNS",
    "FittedModel",
    "ModelsResult",
    "detect_separation",
    "fit_model",
    "fit_study_models",
]
