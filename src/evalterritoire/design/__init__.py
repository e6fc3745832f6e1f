"""Survey designs and their variance: the ``design`` step of the flow.

:class:`SurveyDesign` (weights, strata, PSUs, fpc, calibration, replicate weights) and the
design-based sandwich for models.

Modules: ``survey`` (the public class), ``common`` (shared helpers and constants), ``taylor``
(construction and Taylor variance), ``domains`` (subsets and vectorised domain variances),
``calibration`` (post-stratification, raking, linear calibration), ``replicates`` (replicate
weights) and ``sandwich`` (small-sample correction of the model sandwich).
"""

from __future__ import annotations

from evalterritoire.design.common import (
    CALIBRATION_METHODS,
    LONELY_PSU_RULES,
    REPLICATE_TYPES,
    LinearOperator,
)
from evalterritoire.design.sandwich import SmallSample, WorkingModel, small_sample_correction
from evalterritoire.design.survey import SurveyDesign, build_design, compute_kish_effective_n

__all__ = [
    "CALIBRATION_METHODS",
    "LONELY_PSU_RULES",
    "REPLICATE_TYPES",
    "LinearOperator",
    "SmallSample",
    "SurveyDesign",
    "WorkingModel",
    "build_design",
    "compute_kish_effective_n",
    "small_sample_correction",
]
