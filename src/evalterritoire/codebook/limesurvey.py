"""LimeSurvey structure file (``.lss``) → codebook: :func:`import_lss`.

A ``.lss`` is the XML export of a survey's structure (LimeSurvey 4 to 6: tables ``questions``,
``subquestions``, ``question_l10ns``, ``answers``, ``answer_l10ns``, ``groups``,
``group_l10ns``, ``question_attributes``, ``surveys_languagesettings``; LimeSurvey 3 keeps the
texts in ``questions`` / ``answers`` themselves: both are read). Mapping:

==========================================  ====================================================
``L`` list, ``!`` dropdown, ``O`` list      answer options → binary / likert / categorical,
with comment, ``G`` gender                  don't-know options → special codes
``Y`` yes/no                                binary (``Y`` / ``N`` as aliases)
``5`` five-point choice, ``A`` / ``B``      rating 1–5 / 1–10 (per subquestion for arrays)
five/ten-point arrays
``F`` / ``H`` / ``E`` / ``C`` arrays        one variable per subquestion, its header
                                            ``Q1[SQ001]`` kept as a synonym, the answer options
                                            as its scale (``C``: yes / uncertain / no)
``M`` / ``P`` multiple choice               multi-select, one option per subquestion
                                            (export columns ``Q1[SQ001]`` with ``Y``)
``N`` numerical                             decimal or count (``num_value_int_only``), min/max
                                            from ``min_num_value_n`` / ``max_num_value_n``
``S`` / ``T`` / ``U`` / ``Q`` texts, ``D``  text (``preg`` → pattern) / date
mandatory ``Y`` (or soft ``S``)             required (soft: reported)
relevance equation                          routing (``Q1 == "Y"``, ``Q1.NAOK == "A2"``,
                                            ``!is_empty(Q1)``, ``Q1_SQ001 == "Y"``, ``and``/
                                            ``&&``, ``or``/``||``, ``!``)
group                                       the block of its questions
==========================================  ====================================================

The export's response id is LimeSurvey's ``id`` (a variable ``id``, type ``identifier``); its
metadata columns (``submitdate``, ``lastpage``, ``startlanguage``, ``seed``, ``token``…) are
ignored. Other types (ranking, file upload, equation, multiple numeric…) are reported and
their columns ignored.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalterritoire.codebook.builder import ChoiceInfo, CodebookBuilder
from evalterritoire.codebook.importing import ImportResult
from evalterritoire.errors import CodebookError

__all__ = ["LIMESURVEY_METADATA", "import_lss"]

#: Columns LimeSurvey adds to every response export (ignored by the imported codebook).
LIMESURVEY_METADATA = (
    "submitdate", "lastpage", "startlanguage", "seed", "token", "startdate", "datestamp",
    "ipaddr", "refurl", "interviewtime", "groupTime*", "*Time",
)  # fmt: skip
#: Largest structure file read (a survey's structure is a few megabytes).
MAX_LSS_BYTES = 50 * 1024 * 1024
_LIST_TYPES = frozenset({"L", "!", "O", "G"})
_ARRAY_TYPES = frozenset({"F", "H", "E", "C", "A", "B", "1", ":", ";"})
_TEXT_TYPES = frozenset({"S", "T", "U", "Q"})
_FIXED_CHOICES = {
    "G": [("F", "Femme"), ("M", "Homme")],
    "Y": [("Y", "Oui"), ("N", "Non")],
    "C": [("Y", "Oui"), ("U", "Incertain"), ("N", "Non")],
    "E": [("I", "Augmente"), ("S", "Identique"), ("D", "Diminue")],
}


def _parse_xml(path: Path) -> ET.Element:
    """The file's XML root; DTDs and entities refused (no expansion, no external fetch)."""
    size = path.stat().st_size
    if size > MAX_LSS_BYTES:
        raise CodebookError(f"{path.name}: {size:,} bytes, more than a structure file holds")
    data = path.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise CodebookError(f"{path.name}: a DTD or entity declaration: not a LimeSurvey file")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise CodebookError(f"{path.name}: not readable XML ({exc})") from None
    if root.tag != "document" or root.findtext("LimeSurveyDocType", "").strip() != "Survey":
        raise CodebookError(f"{path.name}: not a LimeSurvey survey structure (.lss) file")
    return root


def _table(root: ET.Element, name: str) -> list[dict[str, str]]:
    """The rows of one table of the document (``<name><rows><row>…``) as dicts."""
    node = root.find(name)
    if node is None:
        return []
    return [
        {child.tag: (child.text or "").strip() for child in row}
        for row in node.findall("./rows/row")
    ]


class _Survey:
    """The tables of a structure file, indexed, texts in the survey's first language."""

    def __init__(self, root: ET.Element):
        languages = [e.text or "" for e in root.findall("./languages/language")]
        self.language = next((lang for lang in languages if lang.startswith("fr")), "")
        self.language = self.language or (languages[0] if languages else "")
        self.questions = [q for q in _table(root, "questions") if self._ours(q)]
        self.subquestions = [q for q in _table(root, "subquestions") if self._ours(q)]
        self.texts = {
            r["qid"]: r.get("question", "") for r in _table(root, "question_l10ns") if self._ours(r)
        }
        for q in self.questions + self.subquestions:
            self.texts.setdefault(q["qid"], q.get("question", ""))
        answer_texts = {
            r["aid"]: r.get("answer", "") for r in _table(root, "answer_l10ns") if self._ours(r)
        }
        self.answers: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        for a in _table(root, "answers"):
            if not self._ours(a):
                continue
            text = answer_texts.get(a.get("aid", ""), a.get("answer", ""))
            key = (a["qid"], a.get("scale_id", "0") or "0")
            self.answers.setdefault(key, []).append((a["code"], text, int(a.get("sortorder") or 0)))
        self.attributes: dict[str, dict[str, str]] = {}
        for r in _table(root, "question_attributes"):
            if r.get("language") in (None, "", self.language):
                self.attributes.setdefault(r["qid"], {})[r["attribute"]] = r.get("value", "")
        self.group_order = {
            g["gid"]: int(g.get("group_order") or 0) for g in _table(root, "groups")
        }
        self.groups = {
            g["gid"]: g.get("group_name", "")
            for g in _table(root, "groups") + _table(root, "group_l10ns")
            if self._ours(g) and g.get("group_name")
        }
        settings = [
            s
            for s in _table(root, "surveys_languagesettings")
            if self._ours(s, "surveyls_language")
        ]
        self.title = settings[0].get("surveyls_title", "") if settings else ""

    def _ours(self, row: Mapping[str, str], field: str = "language") -> bool:
        return row.get(field, "") in ("", self.language)

    def choices(self, qid: str, scale: str = "0") -> list[tuple[str, str]]:
        """The answer options of a question, (code, text) in their order."""
        rows = sorted(self.answers.get((qid, scale), []), key=lambda r: r[2])
        return [(code, text) for code, text, _ in rows]


def import_lss(path: str | Path) -> ImportResult:
    """Import a LimeSurvey structure file (see the module docstring for the mapping).

    Raises
    ------
    CodebookError
        When the file is not a LimeSurvey survey structure.
    """
    path = Path(path)
    survey = _Survey(_parse_xml(path))
    builder = CodebookBuilder("LimeSurvey", path.name, survey.title)
    builder.ignore += list(LIMESURVEY_METADATA)
    builder.add_variable("id", "Identifiant de la réponse", "identifier", required=True)
    builder.blocks.update({f"g{gid}": name for gid, name in survey.groups.items()})
    reader = _Reader(builder, survey)
    order = survey.group_order
    for q in sorted(
        survey.questions,
        key=lambda q: (order.get(q.get("gid", ""), 0), int(q.get("question_order") or 0)),
    ):
        if q.get("parent_qid", "0") in ("", "0"):
            reader.question(q)
    return builder.build()


class _Reader:
    """One LimeSurvey question → variable(s), its relevance translated later."""

    def __init__(self, builder: CodebookBuilder, survey: _Survey):
        self.b = builder
        self.s = survey

    def question(self, q: Mapping[str, str]) -> None:
        """One question (and its subquestions) as variables, its relevance attached."""
        qtype, code, qid = q.get("type", ""), q.get("title", ""), q["qid"]
        label = self.s.texts.get(qid, "")
        keys: dict[str, Any] = {"block": f"g{q.get('gid', '')}"}
        if q.get("mandatory") == "Y":
            keys["required"] = True
        elif q.get("mandatory") == "S":
            self.b.guessed.append(f"{code}: soft mandatory (« S ») not imported as required")
        subs = sorted(
            (s for s in self.s.subquestions if s.get("parent_qid") == qid),
            key=lambda s: int(s.get("question_order") or 0),
        )
        entries = self._variables(q, qtype, code, label, subs, keys)
        relevance = (q.get("relevance") or "").strip()
        if entries and relevance not in ("", "1"):
            for entry in entries:
                self.b.route(entry, lambda text=relevance: _translate(text, self.b), relevance)

    def _variables(self, q, qtype, code, label, subs, keys) -> list[dict[str, Any]]:
        b, attrs = self.b, self.s.attributes.get(q["qid"], {})
        if qtype in _LIST_TYPES or qtype == "Y":
            choices = _FIXED_CHOICES.get(qtype) or self.s.choices(q["qid"])
            info = b.choices(code, choices)
            return [b.add_variable(code, label, info.type, info=info, **keys)]
        if qtype == "5":
            return [b.add_variable(code, label, "rating", min=1, max=5, **keys)]
        if qtype in {"M", "P"}:
            info = b.choices(
                code, [(s["title"], self.s.texts.get(s["qid"], "")) for s in subs], multiple=True
            )
            return [b.add_variable(code, label, "multi_select", info=info, **keys)]
        if qtype in _ARRAY_TYPES:
            return self._array(q, qtype, code, label, subs, keys)
        if qtype == "N":
            vtype = "count" if attrs.get("num_value_int_only") == "1" else "decimal"
            bounds = {k: _number(attrs.get(f"{k}_num_value_n")) for k in ("min", "max")}
            return [b.add_variable(code, label, vtype, **keys, **bounds)]
        if qtype in _TEXT_TYPES:
            pattern = _pattern(q.get("preg") or "", code, b)
            return [b.add_variable(code, label, "text", pattern=pattern, **keys)]
        if qtype == "D":
            return [b.add_variable(code, label, "date", **keys)]
        if not code:
            b.unmapped.append(f"question {q['qid']}: no question code (not mapped)")
            return []
        b.unmapped.append(f"{code}: question type {qtype!r} not mapped (its columns ignored)")
        b.ignore += [code, f"{code}[*", f"{code}_*"]
        return []

    def _array(self, q, qtype, code, label, subs, keys) -> list[dict[str, Any]]:
        b = self.b
        if qtype in {"1", ":", ";"}:
            b.unmapped.append(f"{code}: dual-scale or multi-input array not mapped (ignored)")
            b.ignore += [f"{code}[*", f"{code}_*"]
            return []
        info: ChoiceInfo | None = None
        extra: dict[str, Any] = {}
        if qtype == "A":
            vtype, extra = "rating", {"min": 1, "max": 5}
        elif qtype == "B":
            vtype, extra = "rating", {"min": 1, "max": 10}
        else:
            choices = _FIXED_CHOICES.get(qtype) or self.s.choices(q["qid"])
            info = b.choices(code, choices, ordered=qtype in {"F", "H"})
            vtype = info.type
        out = []
        for sub in subs:
            header = f"{code}[{sub['title']}]"
            text = f"{label} — {self.s.texts.get(sub['qid'], sub['title'])}"
            entry = b.add_variable(header, text, vtype, info=info, **keys, **extra)
            b.by_name.setdefault(f"{code}_{sub['title']}", entry)
            out.append(entry)
        return out


def _pattern(preg: str, code: str, builder: CodebookBuilder) -> str | None:
    """A PCRE validation (``/^[0-9]{5}$/``) as a pattern without delimiters, or None."""
    preg = preg.strip()
    if not preg:
        return None
    m = re.fullmatch(r"/(.*)/([a-zA-Z]*)", preg, flags=re.S)
    body = m.group(1) if m else preg
    try:
        re.compile(body)
    except re.error:
        builder.unmapped.append(f"{code}: validation {preg!r} not translated (not a regex)")
        return None
    if m and m.group(2):
        builder.unmapped.append(f"{code}: validation flags {m.group(2)!r} dropped")
    return body


def _number(text: str | None) -> int | float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


_NAME = r"([A-Za-z][A-Za-z0-9_]*)(?:\.(?:NAOK|value|code))?"
_LITERAL = r"(\"[^\"]*\"|'[^']*'|-?\d+(?:\.\d+)?)"


def _translate(text: str, builder: CodebookBuilder) -> str | None:
    """A relevance equation in our condition language, or None when it cannot be."""
    out = text.strip()
    out = re.sub(
        rf"(!)?\s*is_empty\(\s*{_NAME}\s*\)",
        lambda m: ("" if m.group(1) else "not ") + _answered(m.group(2), builder),
        out,
    )
    out = re.sub(
        rf"\b{_NAME}\s*(==|!=|<=|>=|<|>|eq|ne|lt|le|gt|ge)\s*{_LITERAL}",
        lambda m: _comparison(m.group(1), m.group(2), m.group(3), builder),
        out,
    )
    out = re.sub(r"&&|\band\b", " and ", out)
    out = re.sub(r"\|\||\bor\b", " or ", out)
    out = re.sub(r"!\s*\(", "not (", out)
    out = " ".join(out.split())
    probe = out.replace("!=", " ").replace("not (", " ")
    if "\x00" in out or re.search(r"[{}!&|]|\b(?!selected\(|answered\()[A-Za-z_]+\s*\(", probe):
        return None
    return out


_OPS = {"==": "=", "eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _answered(name: str, builder: CodebookBuilder) -> str:
    entry = builder.by_name.get(name)
    return f"answered({entry['id']})" if entry else "\x00"


def _comparison(name: str, op: str, raw: str, builder: CodebookBuilder) -> str:
    op = _OPS.get(op, op)
    value = raw[1:-1] if raw[:1] in {"'", '"'} else raw
    entry = builder.by_name.get(name)
    if entry is None:  # a multiple-choice option: Q1_SQ001 == "Y"
        base, _, option = name.rpartition("_")
        parent = builder.by_name.get(base)
        info = builder.choice_info.get(parent["id"]) if parent else None
        if info is None or info.type != "multi_select" or option not in info.values:
            return "\x00"
        selected = f"selected({parent['id']}, '{info.values[option]}')"
        ticked = value.upper() == "Y"
        if (op == "=") == ticked and op in {"=", "!="}:
            return selected
        return f"not {selected}" if op in {"=", "!="} else "\x00"
    info = builder.choice_info.get(entry["id"])
    if info is not None and info.values:
        if value not in info.values:
            return "\x00"
        mapped = info.values[value]
        literal = str(mapped) if isinstance(mapped, int) else f"'{mapped}'"
        return f"{entry['id']} {op} {literal}"
    if re.fullmatch(r"-?\d+(?:\.\d+)?", value):
        return f"{entry['id']} {op} {value}"
    return f"{entry['id']} {op} '{value}'"
