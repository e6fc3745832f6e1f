"""French sentence building for the narrative of the reports, from templates declared as data.

The sentences of « L'essentiel », of the answers to the evaluative questions, of the reasons of
the recommendations and of the change since the last wave are filled from templates declared
in the report spec (``narrative.sentences``: key → French text with ``{field}`` slots; the
shipped report spec gives every key, a study's spec may override any of them). The values put
into the slots are formatted here: French number formatting (:mod:`.french`), lists joined
« a, b et c », singular or plural agreement, ordinal adjectives, a lower-case first letter for a
label inside a sentence, and French typography applied to every filled sentence (no-break
space before « : ; ! ? % », inside « », none before a closing parenthesis).

Owns :class:`NarrativeSpec` (answers of each stage's evaluative questions, the dimensions and
milestones each recommendation addresses, the sentence templates, the colophon), its parser
:func:`parse_narrative` (called by :func:`~evalterritoire.report.spec.load_report_spec`, with
the spec's typed reader) and the pure helpers :func:`join_fr`, :func:`plural_fr`,
:func:`ordinal_fr`, :func:`lower_first`, :func:`typography` and :func:`fill`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from evalterritoire.report.french import NBSP, NNBSP

__all__ = [
    "GROUP_SENTENCE_KEYS",
    "SENTENCE_KEYS",
    "Answer",
    "NarrativeSpec",
    "Target",
    "fill",
    "join_fr",
    "lower_first",
    "ordinal_fr",
    "parse_narrative",
    "plural_fr",
    "typography",
]

#: Every sentence template the narrative uses (the shipped report spec gives them all).
SENTENCE_KEYS: tuple[str, ...] = (
    "stage_certain", "stage_probable", "stage_between", "stage_unqualified", "stage_indicative",
    "declared_same", "declared_other",
    "dimension_band", "dimension_relative", "strengths_none", "attention_none", "milestone_done", "milestone_todo", "fragile",
    "first_wave", "stage_same", "stage_up", "stage_down", "moved_up", "moved_down",
    "moved_none", "change_explained", "change_unexplained",
    "neighbours_close", "neighbours_more", "neighbours_less", "neighbours_both",
    "chosen_group_close", "chosen_group_more", "chosen_group_less", "chosen_group_both",
    "answer_share", "answer_level", "answer_mean", "answer_scaled", "answer_ranked",
    "answer_none", "answer_too_few",
    "because", "because_dimension", "because_milestone", "because_stage",
    "model_difference", "model_odds",
)  # fmt: skip
#: The templates a report keeps for a comparison group chosen at render time.
GROUP_SENTENCE_KEYS: tuple[str, ...] = (
    "chosen_group_close", "chosen_group_more", "chosen_group_less", "chosen_group_both", "fragile",
)  # fmt: skip
#: Sections whose records may answer a question (``narrative.answers.<stage>[i].sections``).
ANSWER_SECTIONS = ("composition", "barriers")
_COLOPHON_KEYS = ("producer", "confidentiality", "citation")
_ORDINALS = (
    "premier", "deuxième", "troisième", "quatrième", "cinquième", "sixième", "septième",
    "huitième", "neuvième", "dixième",
)  # fmt: skip


@dataclass(frozen=True)
class Answer:
    """What answers one evaluative question: items (codebook ids) and record sections."""

    items: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """What one of the grid's recommendations (1-based ``rank``) addresses."""

    rank: int
    dimensions: tuple[str, ...] = ()
    milestones: tuple[str, ...] = ()


@dataclass(frozen=True)
class NarrativeSpec:
    """The ``narrative`` entry of a report spec.

    Attributes
    ----------
    answers : mapping of str to tuple of Answer
        Grid stage key → one :class:`Answer` per evaluative question, in order.
    targets : mapping of str to tuple of Target
        Grid stage key → what its recommendations address.
    sentences : mapping of str to str
        Template key (:data:`SENTENCE_KEYS`) → French template.
    colophon : mapping of str to str
        ``producer``, ``confidentiality`` and ``citation`` (a template with ``{producteur}``,
        ``{titre}``, ``{vague}``, ``{version}``).
    """

    answers: Mapping[str, tuple[Answer, ...]] = field(default_factory=dict)
    targets: Mapping[str, tuple[Target, ...]] = field(default_factory=dict)
    sentences: Mapping[str, str] = field(default_factory=dict)
    colophon: Mapping[str, str] = field(default_factory=dict)
    glossary: Mapping[str, str] = field(default_factory=dict)

    def sentence(self, key: str, **values: Any) -> str:
        """The template ``key`` filled with ``values`` (French typography applied)."""
        return fill(self.sentences[key], **values)


# --------------------------------------------------------------------------- French helpers
def join_fr(parts: Sequence[str]) -> str:
    """« a », « a et b », « a, b et c »."""
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " et " + parts[-1]


def plural_fr(n: int, singular: str, plural: str | None = None) -> str:
    """The word agreeing with ``n`` (French: 0 and 1 take the singular)."""
    return singular if abs(n) < 2 else (plural or singular + "s")


def ordinal_fr(rank: int) -> str:
    """« premier », « deuxième »… (masculine; ``rank`` from 1)."""
    return _ORDINALS[rank - 1] if 1 <= rank <= len(_ORDINALS) else f"{rank}e"


#: First words that keep their capital inside a sentence (institutions, places).
PROPER_WORDS = frozenset({"État", "Région", "Département", "Europe", "France", "Union"})


def lower_first(text: str) -> str:
    """A label inside a sentence: first letter lower-cased.

    Kept as it is when it starts an acronym or a proper noun (:data:`PROPER_WORDS`).
    """
    first = text.split(" ", 1)[0].strip(",;:")
    if not text or (len(text) > 1 and text[1].isupper()) or first in PROPER_WORDS:
        return text
    return text[0].lower() + text[1:]


_SPACE_BEFORE = re.compile(r"[ \u00a0\u202f]*([:;!?%»])")
_SPACE_AFTER_OPEN = re.compile(r"«[ \u00a0\u202f]*")
_SPACES = re.compile(r"[ ]{2,}")


def typography(text: str) -> str:
    """French typography of a sentence: no-break spaces before « : ; ! ? % » and inside « ».

    A narrow no-break space goes before « ; ! ? », a no-break space before « : % » and
    inside guillemets; repeated spaces collapse; no space is left before a closing
    parenthesis, a comma or a final full stop.
    """

    def before(match: re.Match[str]) -> str:
        mark = match.group(1)
        return (NNBSP if mark in ";!?" else NBSP) + mark

    out = _SPACES.sub(" ", text.strip())
    out = _SPACE_BEFORE.sub(before, out)
    out = _SPACE_AFTER_OPEN.sub("«" + NBSP, out)
    out = re.sub(r"[ \u00a0\u202f]+([),.])", r"\1", out)
    return out[:1].upper() + out[1:]


def fill(template: str, **values: Any) -> str:
    """Fill a template's ``{field}`` slots and apply French typography.

    Raises
    ------
    KeyError
        When the template names a slot not given (the spec check prevents it at load time).
    """
    return typography(template.format(**values))


def _slots(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


# --------------------------------------------------------------------------- parsing
def _default_sentences() -> dict[str, Any]:
    """The shipped report spec's sentence templates (read without its codebook checks)."""
    path = Path(str(resources.files("evalterritoire") / "data" / "report_spec.yaml"))
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return dict((raw.get("narrative") or {}).get("sentences") or {})


def parse_narrative(read: Any, raw: Any, dimensions: Sequence[str]) -> NarrativeSpec:
    """Parse and check a report spec's ``narrative`` entry.

    Parameters
    ----------
    read : _SpecReader
        The report spec's typed reader (its ``fail``, ``mapping``, ``items``, ``text``).
    raw : Any
        The ``narrative`` value (None: the shipped sentences, no answers, no targets).
    dimensions : sequence of str
        The codebook's maturity dimensions.

    Returns
    -------
    NarrativeSpec
        Sentences missing from the study's spec are the shipped ones.

    Raises
    ------
    ReportSpecError
        On an unknown key, item, dimension, section or template slot (through ``read``).
    """
    entry = read.mapping(raw or {}, "narrative")
    read.unknown(
        entry, ("answers", "recommendations", "sentences", "colophon", "glossary"), "narrative"
    )
    glossary = read.mapping(entry.get("glossary") or {}, "narrative.glossary")
    sentences = {**_default_sentences(), **read.mapping(entry.get("sentences") or {}, "s")}
    for key in SENTENCE_KEYS:
        if not isinstance(sentences.get(key), str) or not sentences[key].strip():
            raise read.fail(f"narrative.sentences.{key}", "missing sentence template")
    colophon = read.mapping(entry.get("colophon") or {}, "narrative.colophon")
    read.unknown(colophon, _COLOPHON_KEYS, "narrative.colophon")
    return NarrativeSpec(
        answers=_parse_answers(read, entry.get("answers")),
        targets=_parse_targets(read, entry.get("recommendations"), dimensions),
        sentences={k: str(v) for k, v in sentences.items()},
        colophon={k: read.text(colophon, k, "narrative.colophon") for k in colophon},
        glossary={str(k): read.text(glossary, k, "narrative.glossary") for k in glossary},
    )


def _parse_answers(read: Any, raw: Any) -> dict[str, tuple[Answer, ...]]:
    out = {}
    for key, entries in read.mapping(raw or {}, "narrative.answers").items():
        where = f"narrative.answers.{key}"
        if not isinstance(entries, list):
            raise read.fail(where, "expected one entry per evaluative question")
        answers = []
        for i, value in enumerate(entries):
            entry = read.mapping(value or {}, f"{where}[{i}]")
            read.unknown(entry, ("items", "sections"), f"{where}[{i}]")
            sections = tuple(entry.get("sections") or ())
            bad = [s for s in sections if s not in ANSWER_SECTIONS]
            if bad:
                raise read.fail(f"{where}[{i}].sections", f"unknown section(s) {bad}")
            answers.append(Answer(read.items(entry.get("items"), f"{where}[{i}].items"), sections))
        out[str(key)] = tuple(answers)
    return out


def _parse_targets(read: Any, raw: Any, dimensions: Sequence[str]) -> dict[str, tuple[Target, ...]]:
    out = {}
    for key, entries in read.mapping(raw or {}, "narrative.recommendations").items():
        where = f"narrative.recommendations.{key}"
        if not isinstance(entries, list):
            raise read.fail(where, "expected a list of {rank, dimensions, milestones}")
        targets = []
        for i, value in enumerate(entries):
            entry = read.mapping(value, f"{where}[{i}]")
            read.unknown(entry, ("rank", "dimensions", "milestones"), f"{where}[{i}]")
            rank = entry.get("rank")
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
                raise read.fail(f"{where}[{i}].rank", f"expected a rank from 1, got {rank!r}")
            dims = tuple(str(d) for d in entry.get("dimensions") or ())
            unknown = [d for d in dims if d not in dimensions]
            if unknown:
                raise read.fail(f"{where}[{i}].dimensions", f"unknown dimension(s) {unknown}")
            milestones = read.items(
                entry.get("milestones"), f"{where}[{i}].milestones", ("binary",)
            )
            targets.append(Target(rank, dims, milestones))
        out[str(key)] = tuple(targets)
    return out


def check_against_grid(narrative: NarrativeSpec, grid: Any, fail: Any) -> None:
    """Refuse answers or targets that do not fit the grid's stages, questions and ranks."""
    for key, answers in narrative.answers.items():
        if key not in grid:
            raise fail(f"narrative.answers.{key}", "not a stage of the evaluation grid")
        n_questions = len(grid.stage(key).questions)
        if len(answers) != n_questions:
            raise fail(
                f"narrative.answers.{key}",
                f"{len(answers)} entries for {n_questions} evaluative questions",
            )
    for key, targets in narrative.targets.items():
        if key not in grid:
            raise fail(f"narrative.recommendations.{key}", "not a stage of the evaluation grid")
        n_recs = len(grid.stage(key).recommendations)
        for t in targets:
            if t.rank > n_recs:
                raise fail(
                    f"narrative.recommendations.{key}",
                    f"rank {t.rank} but the stage has {n_recs} recommendations",
                )


def check_slots(sentences: Mapping[str, str], allowed: Mapping[str, set[str]], fail: Any) -> None:
    """Refuse a template naming a slot its sentence does not fill."""
    for key, slots in allowed.items():
        extra = _slots(sentences[key]) - slots
        if extra:
            raise fail(
                f"narrative.sentences.{key}",
                f"unknown slot(s) {sorted(extra)}; allowed: {sorted(slots)}",
            )


#: The slots each sentence template may use (checked when the report spec is loaded).
SLOTS: Mapping[str, set[str]] = {
    "stage_certain": {"stade", "rang", "n_stades", "probabilite"},
    "stage_probable": {"stade", "rang", "n_stades", "probabilite"},
    "stage_between": {"stade", "autre_stade", "probabilite", "stade_rapport"},
    "stage_unqualified": {"stade", "rang", "n_stades"},
    "stage_indicative": {"repondants"},
    "declared_same": set(),
    "declared_other": {"stade_declare"},
    "dimension_band": {"dimension", "score", "max", "bande"},
    "dimension_relative": {"dimension", "score", "max", "position", "reference"},
    "strengths_none": set(),
    "attention_none": set(),
    "milestone_done": {"jalon", "part"},
    "milestone_todo": {"jalon", "part"},
    "fragile": set(),
    "first_wave": set(),
    "stage_same": {"vague_precedente", "stade"},
    "stage_up": {"vague_precedente", "ancien_stade", "stade"},
    "stage_down": {"vague_precedente", "ancien_stade", "stade"},
    "moved_up": {"dimension_s", "liste", "vague_precedente"},
    "moved_down": {"dimension_s", "liste", "vague_precedente"},
    "moved_none": {"vague_precedente"},
    "change_explained": {"verbe", "liste"},
    "change_unexplained": set(),
    "neighbours_close": {"n_voisins"},
    "neighbours_more": {"n_voisins", "plus"},
    "neighbours_less": {"n_voisins", "moins"},
    "neighbours_both": {"n_voisins", "plus", "moins"},
    "chosen_group_close": {"n_voisins"},
    "chosen_group_more": {"n_voisins", "plus"},
    "chosen_group_less": {"n_voisins", "moins"},
    "chosen_group_both": {"n_voisins", "plus", "moins"},
    "answer_share": {"libelle", "part", "n"},
    "answer_level": {"libelle", "niveau", "score", "max", "n"},
    "answer_mean": {"libelle", "valeur", "n"},
    "answer_scaled": {"libelle", "score", "max", "n"},
    "answer_ranked": {"libelle", "liste"},
    "answer_none": set(),
    "answer_too_few": set(),
    "because": {"raisons"},
    "because_dimension": {"dimension", "score", "max"},
    "because_milestone": {"jalon"},
    "because_stage": {"stade"},
    "model_difference": {"modele", "effet", "ic", "stade", "reference"},
    "model_odds": {"modele", "effet", "ic", "stade", "reference"},
}
