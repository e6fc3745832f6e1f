"""Report contexts: one frozen :class:`ReportContext` per territory, plus the national one.

A context holds everything a report shows, already computed, as plain JSON-compatible values,
so that a report template only formats and draws (no wrangling in notebook cells). Contexts
are built from the wave's artefact tables (``docs/artefacts.md``) gathered in a
:class:`StudyArtefacts`; each table may be missing when its step has not run, and the
corresponding sections are then empty rather than invented.

Serialisation is deterministic: :meth:`ReportContext.to_json` sorts keys, rounds floats to six
decimals and contains no timestamp or absolute path, so two runs give byte-identical files.

This module is the public entry point; the code lives in private sibling modules, imported in
this order (each imports only the ones above it):

- ``_context_model``: :class:`StudyArtefacts`, :class:`ReportContext` and its JSON round trip,
  shared names (column names, :data:`SCHEMA_VERSION`, :data:`SMALL_CELL`, short labels);
- ``_context_estimates``: the estimates-table index and :func:`compute_descriptive_estimates`;
- ``_context_stages``: stage labels, dimension profiles, neighbouring stage, history;
- ``_context_sections``: item catalogues and the content sections of a report;
- ``_context_build``: :func:`build_contexts` (national and territory assembly).
"""

from __future__ import annotations

# Names imported ``X as X`` are outside ``__all__``: they lived here before the split and stay
# importable from this module.
from evalterritoire._context_build import BETWEEN_THRESHOLD, build_contexts
from evalterritoire._context_estimates import compute_descriptive_estimates
from evalterritoire._context_model import CONSENT_COL as CONSENT_COL
from evalterritoire._context_model import DIMENSION_SHORT as DIMENSION_SHORT
from evalterritoire._context_model import NAME_COL as NAME_COL
from evalterritoire._context_model import RESPONDENT_COL as RESPONDENT_COL
from evalterritoire._context_model import (
    SCHEMA_VERSION,
    SMALL_CELL,
    ReportContext,
    StudyArtefacts,
    short_label,
)
from evalterritoire._context_model import TERRITORY_COL as TERRITORY_COL
from evalterritoire._context_model import TYPE_COL as TYPE_COL
from evalterritoire._context_model import WEIGHT_COL as WEIGHT_COL
from evalterritoire._context_sections import AGREEMENT_ITEMS as AGREEMENT_ITEMS
from evalterritoire._context_sections import BY_TYPE_ITEMS as BY_TYPE_ITEMS
from evalterritoire._context_sections import DYNAMIC_ITEMS as DYNAMIC_ITEMS
from evalterritoire._context_sections import ESSAIMAGE_ITEMS as ESSAIMAGE_ITEMS
from evalterritoire._context_sections import FREE_TEXT_CHARS as FREE_TEXT_CHARS
from evalterritoire._context_sections import FREE_TEXT_MAX as FREE_TEXT_MAX
from evalterritoire._context_sections import MILESTONE_ITEMS as MILESTONE_ITEMS
from evalterritoire._context_sections import NATIONAL_BENCHMARKS as NATIONAL_BENCHMARKS
from evalterritoire._context_sections import PARTNERSHIP_ITEMS as PARTNERSHIP_ITEMS
from evalterritoire._context_sections import RESULT_ITEMS as RESULT_ITEMS

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
