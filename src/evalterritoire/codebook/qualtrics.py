"""Qualtrics survey file (``.qsf``) → codebook: :func:`import_qsf`.

A ``.qsf`` is a JSON document: ``SurveyEntry`` (name, language) and ``SurveyElements``, among
them ``BL`` (blocks and their questions, in order) and one ``SQ`` per question (``Payload``:
``DataExportTag``, ``QuestionType``, ``Selector``, ``QuestionText`` / ``QuestionDescription``,
``Choices``, ``ChoiceOrder``, ``RecodeValues``, ``Answers`` of a matrix, ``Validation``,
``DisplayLogic``). Mapping:

=========================================  =====================================================
``MC`` single answer (``SAVR``, ``SAHR``,  choices (recode values as codes) → binary / likert /
``DL``, ``SACOL``)                         categorical; don't-know choices → special codes
``MC`` multiple answer (``MAVR``…)         multi-select (the export's comma-separated values)
``Matrix`` ``Likert``                      one item per statement (export header ``Q3_1``), the
                                           answers as its scale
``TE`` with ``ValidNumber``                count / decimal with min / max; other ``TE`` → text
                                           (``ValidDate`` → date)
``Slider``                                 rating with the slider's bounds
``Validation.ForceResponse = ON``          required
``DisplayLogic``                           routing (``Selected`` / ``NotSelected`` /
                                           ``EqualTo``… on a question's choice or text entry,
                                           joined by ``And`` / ``Or``)
block                                      the block of its questions
=========================================  =====================================================

The export's response id is ``ResponseId`` (a variable ``responseid``, type ``identifier``);
Qualtrics' metadata columns (``StartDate``, ``Progress``, ``Duration (in seconds)``…) are
ignored. Its CSV carries three header rows (export tags, question texts, ``ImportId``): ingest
it with ``--profile qualtrics``. Descriptive text, timing and other types are reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalterritoire.codebook.builder import ChoiceInfo, CodebookBuilder
from evalterritoire.codebook.importing import ImportResult
from evalterritoire.errors import CodebookError

__all__ = ["QUALTRICS_METADATA", "import_qsf"]

#: Columns Qualtrics adds to every response export (ignored by the imported codebook).
QUALTRICS_METADATA = (
    "StartDate", "EndDate", "Status", "IPAddress", "Progress", "Duration (in seconds)",
    "Finished", "RecordedDate", "RecipientLastName", "RecipientFirstName", "RecipientEmail",
    "ExternalReference", "LocationLatitude", "LocationLongitude", "DistributionChannel",
    "UserLanguage", "Q_RecaptchaScore", "Q_RelevantID*", "Q_Ballot*", "*_DO",
)  # fmt: skip
#: Largest survey file read.
MAX_QSF_BYTES = 50 * 1024 * 1024
_SINGLE = frozenset({"SAVR", "SAHR", "DL", "SACOL", "SB"})
_MULTIPLE = frozenset({"MAVR", "MAHR", "MACOL", "MSB"})
_SKIPPED = frozenset({"DB", "Timing", "Meta", "Captcha"})


def _load(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    if size > MAX_QSF_BYTES:
        raise CodebookError(f"{path.name}: {size:,} bytes, more than a survey file holds")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CodebookError(f"{path.name}: not readable JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("SurveyElements"), list):
        raise CodebookError(f"{path.name}: no SurveyElements: not a Qualtrics survey file")
    return data


def _values(payload: Any) -> list[Any]:
    """A Qualtrics collection (a dict keyed "1", "2"… or a list) as a list."""
    if isinstance(payload, dict):
        return list(payload.values())
    return list(payload) if isinstance(payload, list) else []


def import_qsf(path: str | Path) -> ImportResult:
    """Import a Qualtrics survey file (see the module docstring for the mapping).

    Raises
    ------
    CodebookError
        When the file is not a Qualtrics survey file.
    """
    path = Path(path)
    data = _load(path)
    entry = data.get("SurveyEntry") or {}
    elements = [e for e in data["SurveyElements"] if isinstance(e, dict)]
    questions = {
        e.get("PrimaryAttribute"): e.get("Payload") or {}
        for e in elements
        if e.get("Element") == "SQ"
    }
    builder = CodebookBuilder("Qualtrics", path.name, str(entry.get("SurveyName") or ""))
    builder.ignore += list(QUALTRICS_METADATA)
    builder.add_variable("ResponseId", "Identifiant de la réponse", "identifier", required=True)
    reader = _Reader(builder, questions)
    seen: set[str] = set()
    for block in (b for e in elements if e.get("Element") == "BL" for b in _values(e["Payload"])):
        if not isinstance(block, Mapping) or block.get("Type") == "Trash":
            continue
        block_id = str(block.get("ID") or "")
        if block_id:
            builder.blocks[block_id] = str(block.get("Description") or block_id)
        for item in block.get("BlockElements") or []:
            qid = item.get("QuestionID") if isinstance(item, Mapping) else None
            if qid in questions and qid not in seen:
                seen.add(qid)
                reader.question(qid, questions[qid], block_id)
    return builder.build()


class _Reader:
    """One Qualtrics question → variable(s); display logic translated later."""

    def __init__(self, builder: CodebookBuilder, questions: Mapping[str, Mapping]):
        self.b = builder
        self.questions = questions
        self.by_qid: dict[str, list[dict[str, Any]]] = {}

    def question(self, qid: str, q: Mapping[str, Any], block: str) -> None:
        """One question as variables (a matrix: one per statement), display logic attached."""
        b = self.b
        qtype, selector = q.get("QuestionType", ""), q.get("Selector", "")
        tag = str(q.get("DataExportTag") or qid)
        label = str(q.get("QuestionDescription") or q.get("QuestionText") or tag)
        if qtype in _SKIPPED:
            return
        keys: dict[str, Any] = {"block": block}
        validation = (q.get("Validation") or {}).get("Settings") or {}
        if validation.get("ForceResponse") == "ON":
            keys["required"] = True
        if qtype == "MC" and selector in _SINGLE | _MULTIPLE:
            info = b.choices(tag, _choices(q), multiple=selector in _MULTIPLE)
            entries = [b.add_variable(tag, label, info.type, info=info, **keys)]
        elif (
            qtype == "Matrix" and selector == "Likert" and q.get("SubSelector") != "MultipleAnswer"
        ):
            entries = self._matrix(q, tag, label, keys)
        elif qtype == "TE":
            entries = [self._text(q, tag, label, validation, keys)]
        elif qtype == "Slider":
            config = q.get("Configuration") or {}
            keys.update(min=config.get("CSSliderMin"), max=config.get("CSSliderMax"))
            entries = [b.add_variable(tag, label, "rating", **keys)]
        else:
            b.unmapped.append(f"{tag}: question type {qtype}/{selector} not mapped (ignored)")
            b.ignore += [tag, f"{tag}_*"]
            return
        self.by_qid[qid] = entries
        logic = q.get("DisplayLogic")
        if isinstance(logic, Mapping):
            text = _describe(logic)
            for entry in entries:
                b.route(entry, lambda logic=logic: self._translate(logic), text)

    def _matrix(self, q, tag, label, keys) -> list[dict[str, Any]]:
        answers = _choices(q, "Answers", "AnswerOrder")
        info = self.b.choices(tag, answers, ordered=True)
        export_tags = q.get("ChoiceDataExportTags") or {}
        out = []
        for cid, statement in _ordered(q, "Choices", "ChoiceOrder"):
            header = str(export_tags.get(cid) or f"{tag}_{cid}") if export_tags else f"{tag}_{cid}"
            text = f"{label} — {_display(statement)}"
            out.append(self.b.add_variable(header, text, info.type, info=info, **keys))
        return out

    def _text(self, q, tag, label, validation, keys) -> dict[str, Any]:
        content = validation.get("ContentType", "")
        if content == "ValidNumber":
            number = validation.get("ValidNumber") or {}
            decimals = str(number.get("NumDecimals", "0") or "0")
            vtype = "count" if decimals in {"", "0"} else "decimal"
            keys.update(min=_number(number.get("Min")), max=_number(number.get("Max")))
        elif content in {"ValidDate", "ValidUSDate"}:
            vtype = "date"
        else:
            vtype = "text"
            if content and content not in {"None", "ValidTextOnly"}:
                self.b.unmapped.append(f"{tag}: content validation {content} not translated")
        return self.b.add_variable(tag, label, vtype, **keys)

    # ------------------------------------------------------------------ display logic
    def _translate(self, logic: Mapping[str, Any]) -> str | None:
        """Display logic in our condition language, or None when a part cannot be."""
        groups = []
        for key in sorted((k for k in logic if str(k).isdigit()), key=int):
            group = logic[key]
            if not isinstance(group, Mapping):
                return None
            parts = []
            for sub in sorted((k for k in group if str(k).isdigit()), key=int):
                cond = self._expression(group[sub])
                if cond is None:
                    return None
                joiner = str(group[sub].get("Conjuction") or group[sub].get("Conjunction") or "")
                if parts:
                    parts.append("or" if joiner.lower() == "or" else "and")
                parts.append(cond)
            if not parts:
                return None
            joiner = str(group.get("Conjuction") or group.get("Conjunction") or "And")
            groups.append((joiner, "(" + " ".join(parts) + ")"))
        if not groups:
            return None
        text = groups[0][1]
        for joiner, part in groups[1:]:
            text += f" {'or' if joiner.lower() == 'or' else 'and'} {part}"
        return text

    def _expression(self, expr: Any) -> str | None:
        if not isinstance(expr, Mapping) or expr.get("LogicType") != "Question":
            return None
        operand = str(expr.get("LeftOperand") or expr.get("ChoiceLocator") or "")
        m = re.fullmatch(
            r"q://(QID\d+)/(SelectableChoice|ChoiceTextEntryValue)(?:/(\d+))?", operand
        )
        entries = self.by_qid.get(m.group(1)) if m else None
        if not m or not entries or len(entries) != 1:
            return None
        entry, op = entries[0], str(expr.get("Operator") or "")
        info = self.b.choice_info.get(entry["id"])
        if m.group(2) == "SelectableChoice" and info is not None:
            return _choice_condition(entry["id"], info, m.group(3), op, self.questions[m.group(1)])
        if m.group(2) == "ChoiceTextEntryValue":
            return _value_condition(entry, op, expr.get("RightOperand"))
        return None


_OPERATORS = {
    "EqualTo": "=", "NotEqualTo": "!=", "GreaterThan": ">", "LessThan": "<",
    "GreaterThanOrEqual": ">=", "LessThanOrEqual": "<=",
}  # fmt: skip


def _choice_condition(
    vid: str, info: ChoiceInfo, cid: str | None, op: str, q: Mapping
) -> str | None:
    """``Selected`` / ``NotSelected`` of one choice of a multiple-choice question."""
    recode = (q.get("RecodeValues") or {}).get(cid, cid)
    if cid is None or str(recode) not in info.values or op not in {"Selected", "NotSelected"}:
        return None
    value = info.values[str(recode)]
    if info.type == "multi_select":
        cond = f"selected({vid}, '{value}')"
    else:
        cond = f"{vid} = {value if isinstance(value, int) else repr(str(value))}"
    return cond if op == "Selected" else f"not {cond}"


def _value_condition(entry: Mapping[str, Any], op: str, right: Any) -> str | None:
    if op == "Empty":
        return f"not answered({entry['id']})"
    if op == "NotEmpty":
        return f"answered({entry['id']})"
    number = _number(right)
    if op not in _OPERATORS or number is None:
        return None
    return f"{entry['id']} {_OPERATORS[op]} {number}"


def _describe(logic: Mapping[str, Any]) -> str:
    """The display logic as Qualtrics describes it (for the import report)."""
    found = []
    for group in logic.values():
        if isinstance(group, Mapping):
            found += [
                re.sub(r"<[^>]*>", "", str(e.get("Description") or ""))
                for e in group.values()
                if isinstance(e, Mapping) and e.get("Description")
            ]
    return " ; ".join(found) or "display logic"


def _display(choice: Any) -> str:
    return str(choice.get("Display", "")) if isinstance(choice, Mapping) else str(choice)


def _ordered(q: Mapping[str, Any], key: str, order_key: str) -> list[tuple[str, Any]]:
    items = q.get(key) or {}
    if not isinstance(items, Mapping):
        return []
    order = [str(o) for o in (q.get(order_key) or []) if str(o) in items]
    order += [k for k in items if k not in order]
    return [(k, items[k]) for k in order]


def _choices(q: Mapping[str, Any], key: str = "Choices", order_key: str = "ChoiceOrder"):
    """(code, label) in display order; the code is the recode value when there is one.

    ``RecodeValues`` recodes the choices of a multiple-choice question and the answers (scale
    points) of a matrix.
    """
    recode = q.get("RecodeValues") or {}
    return [(str(recode.get(cid, cid)), _display(c)) for cid, c in _ordered(q, key, order_key)]


def _number(value: Any) -> int | float | None:
    try:
        number = float(str(value).replace(",", "."))
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else number
