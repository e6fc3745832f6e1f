"""The codebook: variables, roles, scales, special codes, rules, dimensions (loaded from YAML).

Modules: ``model`` (the immutable :class:`Codebook` and its parts, the column roles),
``load`` (reading and validating the YAML file), ``text`` (the normalisation used to match
headers, labels and special codes), ``importing`` with ``xlsform`` / ``limesurvey`` / ``spss`` /
``qualtrics`` (a codebook from a survey tool's questionnaire: :func:`import_codebook`) and
``diff`` (what changed between two codebook versions: :func:`diff_codebooks`).
"""

from __future__ import annotations

from evalterritoire.codebook.diff import CodebookDiff, ItemChange, diff_codebooks
from evalterritoire.codebook.importing import ImportResult, import_codebook
from evalterritoire.codebook.load import default_codebook_path, load_codebook
from evalterritoire.codebook.model import (
    NUMERIC_TYPES,
    ROLES,
    VARIABLE_TYPES,
    Codebook,
    RespondentGroup,
    Rule,
    Scale,
    SpecialCode,
    Variable,
)
from evalterritoire.codebook.text import normalise_text

__all__ = [
    "NUMERIC_TYPES",
    "ROLES",
    "VARIABLE_TYPES",
    "Codebook",
    "CodebookDiff",
    "ImportResult",
    "ItemChange",
    "RespondentGroup",
    "Rule",
    "Scale",
    "SpecialCode",
    "Variable",
    "default_codebook_path",
    "diff_codebooks",
    "import_codebook",
    "load_codebook",
    "normalise_text",
]
