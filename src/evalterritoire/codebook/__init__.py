"""The codebook: variables, roles, scales, special codes, dimensions (loaded from YAML)."""

from __future__ import annotations

from evalterritoire.codebook.model import (
    NUMERIC_TYPES,
    VARIABLE_TYPES,
    Codebook,
    Scale,
    SpecialCode,
    Variable,
    default_codebook_path,
    load_codebook,
    normalise_text,
)

__all__ = [
    "NUMERIC_TYPES",
    "VARIABLE_TYPES",
    "Codebook",
    "Scale",
    "SpecialCode",
    "Variable",
    "default_codebook_path",
    "load_codebook",
    "normalise_text",
]
