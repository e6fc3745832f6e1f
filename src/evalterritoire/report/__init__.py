"""Report contents: the ``report`` step of the flow.

One frozen :class:`ReportContext` per territory (and the nation), the evaluation grid and the
report spec (both loaded from data), figures, tables and French formatting.

Modules: ``grid`` (the evaluation grid: stages, questions, readings, charts — no item id),
``spec`` (the report spec: which codebook items feed which section and stage block),
``context`` (the context object, its JSON and the columns read by role), ``lookup`` (the
estimates index and descriptive estimates), ``stages`` (stage labels, profiles, history),
``sections`` (content sections), ``wave`` (what a wave's contexts share), ``build`` (assembly,
the territory contexts), ``national`` (the national context), ``breakdowns`` (design-based
alliance, agreement and actor-group breakdowns, small types merged), ``display`` (how a judged
figure is written: « s », « * », « estimation modélisée », intervals in words), ``quality``
(figures counted by status), ``annex`` (quality box, publication rules, small-area models,
stage probability in words), ``scan`` (a reader's check of rendered pages for unpublishable
figures), ``figures``, ``tables`` and ``french`` (number and text formatting); the written
parts: ``narrative`` (« L'essentiel », answers to the evaluative questions, recommendations and
their reasons, change of stage, model sentences), ``phrases`` (sentence templates of the report
spec, French agreement and typography), ``neighbours`` (the five statistically similar
territories), ``colophon`` (colophon and glossary), ``trends`` (the synthesis over the waves)
and ``prose`` (their HTML).
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
from evalterritoire.report.grid import EvaluationGrid, StageGrid, load_grid
from evalterritoire.report.lookup import compute_descriptive_estimates
from evalterritoire.report.narrative import narrative_fields
from evalterritoire.report.neighbours import nearest_neighbours
from evalterritoire.report.phrases import NarrativeSpec
from evalterritoire.report.scan import Finding, scan_report, scan_reports
from evalterritoire.report.spec import ReportSpec, load_report_spec

__all__ = [
    "BETWEEN_THRESHOLD",
    "SCHEMA_VERSION",
    "SMALL_CELL",
    "EvaluationGrid",
    "Finding",
    "NarrativeSpec",
    "ReportContext",
    "ReportSpec",
    "StageGrid",
    "StudyArtefacts",
    "build_contexts",
    "compute_descriptive_estimates",
    "load_grid",
    "load_report_spec",
    "narrative_fields",
    "nearest_neighbours",
    "scan_report",
    "scan_reports",
    "short_label",
]
