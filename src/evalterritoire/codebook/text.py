"""Text normalisation shared by header matching, label matching and special-code spellings.

:func:`normalise_text` is the key of labels, aliases and special-code spellings;
:func:`normalise_header` the key of column headers, which also treats ``_``, ``-`` and spaces
alike (« Nom commune », ``nom_commune`` and ``Nom-Commune`` are one header).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ROLE_WORDS", "normalise_header", "normalise_text", "role_of_header"]

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


#: Words a header uses for a column role (French and English), to suggest a mapping; they name
#: roles, never an item of an instrument.
ROLE_WORDS: dict[str, tuple[str, ...]] = {
    "respondent_id": ("identifiant", "id", "n reponse", "numero de reponse", "response id"),
    "territory": ("code commune", "code insee", "insee", "code territoire", "commune", "epci"),
    "territory_name": (
        "nom commune",
        "nom de la commune",
        "nom du territoire",
        "nom territoire",
        "libelle",
    ),
    "respondent_type": ("type de repondant", "type d acteur", "profil", "categorie d acteur"),
    "weight": ("poids", "ponderation", "weight", "coefficient", "coef", "wgt"),
    "wave": ("vague", "wave", "annee", "year"),
    "stratum": ("strate", "stratum"),
    "psu": ("grappe", "psu", "cluster"),
    "collection_date": ("date de reponse", "date de soumission", "submission date"),
}


def role_of_header(header: str) -> str | None:
    """The column role whose words a header uses (« Pondération » → ``weight``), if any.

    Used to suggest a mapping for an unknown column and to guess roles when importing a
    questionnaire; a word of three letters or fewer must be the whole header.
    """
    key = normalise_header(header)
    for role, words in ROLE_WORDS.items():
        if key in words:
            return role
    for role, words in ROLE_WORDS.items():
        if any(len(w) > 3 and (key.startswith(w + " ") or key.endswith(" " + w)) for w in words):
            return role
    return None
