"""Text normalisation shared by header matching, label matching and special-code spellings."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise_text"]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'"})
_SPACES = re.compile(r"[\s\u00a0\u202f\u2007]+")


def normalise_text(value: str) -> str:
    """Normalise a label or header for exact matching.

    NFC, apostrophe unification, casefold, accent stripping, trimming and whitespace folding.
    No fuzzy matching is ever done on top of this.

    Parameters
    ----------
    value : str
        Raw text.

    Returns
    -------
    str
        The normalised key.
    """
    text = unicodedata.normalize("NFC", value).translate(_APOSTROPHES).casefold()
    text = "".join(
        ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn"
    )
    return _SPACES.sub(" ", text).strip()
