"""Survey-aware models: statsmodels fits with design-based covariance → tidy coefficient tables.

Modules: ``fit`` (the steps of a fit and the published table), ``data`` (model frames and
labels), ``families`` (each family's fit, likelihoods and separation checks), ``variance``
(design covariance, mixed-model clusters, influence) and ``predict`` (predicted marginal means
with design-based SEs, Wald tests of several terms).
"""

from __future__ import annotations

from evalterritoire.models.families import detect_separation
from evalterritoire.models.fit import (
    KINDS,
    MODEL_COLUMNS,
    FittedModel,
    ModelsResult,
    fit_model,
    fit_study_models,
)
from evalterritoire.models.predict import (
    PREDICTED_MEAN_COLUMNS,
    estimate_predicted_means,
    wald_test,
)

__all__ = [
    "KINDS",
    "MODEL_COLUMNS",
    "PREDICTED_MEAN_COLUMNS",
    "FittedModel",
    "ModelsResult",
    "detect_separation",
    "estimate_predicted_means",
    "fit_model",
    "fit_study_models",
    "wald_test",
]
