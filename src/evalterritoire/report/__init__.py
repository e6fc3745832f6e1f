"""Report contents: the ``report`` step of the flow.

One frozen :class:`ReportContext` per territory (and the nation), the evaluation grid, figures,
tables and French formatting.

Modules: ``context`` (the context object and its JSON), ``lookup`` (the estimates index and
descriptive estimates), ``stages`` (stage labels, profiles, history), ``sections`` (content
sections), ``build`` (assembly of every context), ``grid`` (the evaluation grid), ``figures``,
``tables`` and ``french`` (number and text formatting).
"""

from __future__ import annotations

from evalterritoire.report.build import BETWEEN_THRESHOLD, build_contexts
from evalterritoire.report.context import (
    SCHEMA_VERSION,
    SMALL_CELL,
    ReportContext,
    StudyArtefacts,
    short_label,
)
from evalterritoire.report.lookup import compute_descriptive_estimates

__all__ = [
    "BETWEEN_THRESHOLD",
    "SCHEMA_VERSION",
    "SMALL_CELL",
    "ReportContext",
    "StudyArtefacts",
    "build_contexts",
    "compute_descriptive_estimates",
    "short_label",
]
