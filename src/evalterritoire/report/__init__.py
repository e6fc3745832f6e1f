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

The public names below are imported on first access (PEP 562): a report kernel that imports
one module of the package does not pay for the others (pandas, scipy).
"""

from __future__ import annotations

from evalterritoire import _lazy_exports

#: Public name → the module that defines it (imported on first access, PEP 562): a
#: template that imports one module of the package does not pay for the others.
_PUBLIC: dict[str, str] = {
    "BETWEEN_THRESHOLD": "evalterritoire.report.build",
    "EvaluationGrid": "evalterritoire.report.grid",
    "Finding": "evalterritoire.report.scan",
    "NarrativeSpec": "evalterritoire.report.phrases",
    "ReportContext": "evalterritoire.report.context",
    "ReportSpec": "evalterritoire.report.spec",
    "SCHEMA_VERSION": "evalterritoire.report.context",
    "SMALL_CELL": "evalterritoire.report.context",
    "StageGrid": "evalterritoire.report.grid",
    "StudyArtefacts": "evalterritoire.report.context",
    "build_contexts": "evalterritoire.report.build",
    "compute_descriptive_estimates": "evalterritoire.report.lookup",
    "load_grid": "evalterritoire.report.grid",
    "load_report_spec": "evalterritoire.report.spec",
    "narrative_fields": "evalterritoire.report.narrative",
    "nearest_neighbours": "evalterritoire.report.neighbours",
    "scan_report": "evalterritoire.report.scan",
    "scan_reports": "evalterritoire.report.scan",
    "short_label": "evalterritoire.report.context",
}

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


__getattr__, __dir__ = _lazy_exports(__name__, _PUBLIC)
