"""Survey-aware models: statsmodels fits with design-based covariance → tidy coefficient tables.

Modules: ``fit`` (the steps of a fit and the published table), ``data`` (model frames and
labels), ``families`` (each family's fit, likelihoods and separation checks) and ``variance``
(design covariance, mixed-model clusters, influence).
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
