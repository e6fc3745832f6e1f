"""The colophon and the glossary of a report: who made it, from what, and how to cite it.

The colophon gives the producer (report spec ``narrative.colophon.producer``), the study and
its wave, the date of the data (the latest answer date when the codebook declares a date item,
else the wave), the version of evalterritoire, the commit of the study's folder when it is a
git checkout (« modifications locales » when it has uncommitted changes), how to cite the
report (``narrative.colophon.citation``) and the confidentiality note
(``narrative.colophon.confidentiality``). The glossary lists the acronyms of the report spec's
``narrative.glossary`` that occur in a report's text, with their expansion.

Owns :func:`colophon`, :func:`glossary` and :func:`glossary_in_text` (the same search in the
context's written JSON text, so that it is not written twice).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.config import StudyConfig
from evalterritoire.manifest import _git
from evalterritoire.report.phrases import NarrativeSpec, fill, typography

__all__ = ["colophon", "glossary", "glossary_in_text"]

_MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
    "octobre", "novembre", "décembre",
)  # fmt: skip


def _version() -> str:
    try:
        return metadata.version("evalterritoire")
    except metadata.PackageNotFoundError:
        return ""


def _data_date(responses: pd.DataFrame | None, codebook: Codebook, wave: int) -> str:
    """« mars 2025 »: the month of the latest answer (the wave when no date is known)."""
    if responses is not None:
        dates = [v.id for v in codebook.of_type("date") if v.id in responses.columns]
        if dates:
            latest = pd.to_datetime(responses[dates[0]], errors="coerce").max()
            if pd.notna(latest):
                return f"{_MONTHS[latest.month - 1]} {latest.year}"
    return f"vague {wave}"


def colophon(
    config: StudyConfig,
    codebook: Codebook,
    spec: NarrativeSpec,
    responses: pd.DataFrame | None,
) -> dict[str, Any]:
    """The colophon fields shared by every report of a wave.

    Returns
    -------
    dict
        ``producer``, ``study``, ``wave``, ``data_date``, ``version``, ``commit`` (short hash,
        empty outside git), ``citation`` and ``confidentiality`` (French text).
    """
    version = _version()
    git = _git(Path(config.path).parent)
    commit = ""
    if git:
        commit = str(git["commit"])[:12] + (" (modifications locales)" if git["dirty"] else "")
    producer = spec.colophon.get("producer", "")
    citation = spec.colophon.get("citation", "")
    wave = str(config.wave)
    title = config.name if wave in config.name else f"{config.name}, vague {wave}"
    return {
        "producer": producer,
        "study": title,
        "wave": config.wave,
        "data_date": _data_date(responses, codebook, config.wave),
        "version": version,
        "commit": commit,
        "citation": fill(
            citation, producteur=producer, titre=title, vague=config.wave, version=version
        )
        if citation
        else "",
        "confidentiality": typography(spec.colophon.get("confidentiality", "")),
        "min_n": config.min_n,
    }


def glossary(
    context: str | Mapping[str, Any], terms: Mapping[str, str]
) -> tuple[dict[str, str], ...]:
    """The acronyms of ``terms`` that occur in a report's text.

    ``context`` is the context as JSON text, or as its JSON-ready values
    (:meth:`~evalterritoire.report.context.ReportContext.to_data`): either is searched as its
    compact JSON text with sorted keys.
    """
    data = json.loads(context) if isinstance(context, str) else context
    flat = json.dumps(data, ensure_ascii=False, sort_keys=not isinstance(context, str))
    return _found(flat, terms)


#: The characters JSON writers put between values (separators, brackets, indentation).
_STRUCTURAL = frozenset(" \n\r\t,:[]{}")


def glossary_in_text(
    text: str, data: Mapping[str, Any], terms: Mapping[str, str]
) -> tuple[dict[str, str], ...]:
    """``glossary(data, terms)``, searched in ``text``: ``data`` written as indented JSON.

    ``text`` is ``data`` as :func:`~evalterritoire.report.context.dumps_indented` writes it
    (sorted keys): the same strings, numbers and literals in the same order as the compact
    text :func:`glossary` searches, with other whitespace between them. A term without a
    separator, bracket or whitespace character can only occur inside one of those values,
    next to the same characters or to a separator (never a word character): it occurs as a
    word in one text exactly when it does in the other. Otherwise (a term with such a
    character, or none) the compact text is searched.
    """
    if all(term and _STRUCTURAL.isdisjoint(term) for term in terms):
        return _found(text, terms)
    return glossary(data, terms)


def _found(flat: str, terms: Mapping[str, str]) -> tuple[dict[str, str], ...]:
    """The terms that occur as a word in ``flat``, sorted, with their definition."""
    return tuple(
        {"term": term, "definition": terms[term]}
        for term in sorted(terms)
        if _occurs_as_word(term, flat)
    )


def _is_word_char(ch: str) -> bool:
    r"""``re``'s ``[\w-]`` on one character of a ``str`` (``\w``: alphanumeric or ``_``)."""
    return ch.isalnum() or ch in "_-"


def _occurs_as_word(term: str, text: str) -> bool:
    r"""Whether ``term`` occurs in ``text`` neither preceded nor followed by ``[\w-]``.

    The same answer as ``re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", text)``, found
    by scanning the literal occurrences of ``term`` (a lookbehind at the start of a pattern
    defeats the regex engine's literal search: that search was most of the contexts step).
    """
    if not term:
        return bool(re.search(r"(?<![\w-])(?![\w-])", text))
    at = text.find(term)
    while at >= 0:
        end = at + len(term)
        if (at == 0 or not _is_word_char(text[at - 1])) and (
            end == len(text) or not _is_word_char(text[end])
        ):
            return True
        at = text.find(term, at + 1)
    return False
