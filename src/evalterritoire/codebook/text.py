"""Text normalisation shared by header matching, label matching and special-code spellings.

:func:`normalise_text` is the key of labels, aliases and special-code spellings;
:func:`normalise_header` the key of column headers, which also treats ``_``, ``-`` and spaces
alike (« Nom commune », ``nom_commune`` and ``Nom-Commune`` are one header).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise_header", "normalise_text"]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'"})
_SPACES = re.compile(r"[\s\u00a0\u202f\u2007]+")
_HEADER_SEPARATORS = re.compile(r"[\s_\-\u2010\u2011\u2013]+")


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


def normalise_header(value: str) -> str:
    """Normalise a column header for exact matching.

    :func:`normalise_text`, then space, ``_`` and ``-`` (and hyphen-like dashes) treated alike
    and trimmed: ``"Nom_commune "``, ``"nom commune"`` and ``"NOM-COMMUNE"`` give the same key.

    Parameters
    ----------
    value : str
        Raw header text.

    Returns
    -------
    str
        The normalised key.

    Examples
    --------
    >>> normalise_header("Nom_Commune ") == normalise_header("nom-commune")
    True
    """
    return _HEADER_SEPARATORS.sub(" ", normalise_text(value)).strip()
