"""XLSForm (KoboToolbox, ODK, SurveyCTO) → codebook: :func:`import_xlsform`.

An XLSForm is a workbook with a ``survey`` sheet (one row per question: ``type``, ``name``,
``label`` or ``label::<language>``, ``required``, ``relevant``, ``constraint``, ``begin group``
/ ``end group`` rows), a ``choices`` sheet (``list_name``, ``name``, ``label``) and an optional
``settings`` sheet (``form_title``, ``version``, ``default_language``). Mapping:

=========================================  =====================================================
``select_one L`` / ``select_multiple L``   choices → scale, options, special codes (importing)
``integer`` / ``decimal`` / ``range``      ``count`` / ``decimal`` / ``rating`` (range's
                                           ``start``/``end`` → min/max)
``text`` / ``date``                        ``text`` / ``date``
``constraint``                             ``. >= a and . <= b`` → min/max; ``regex(., 'p')`` →
                                           pattern; ``count-selected(.) <= n`` → max_choices
``required``                               ``yes`` / ``true`` → required
``relevant`` (question and its groups)     routing (``${q} = 'x'``, ``selected(${q}, 'x')``,
                                           ``${q} != ''``, ``not(…)``, ``and``/``or``)
``begin group``                            the block of its questions
metadata (``start``, ``end``, ``today``…)  ``columns: ignore:`` with Kobo's ``_id``,
and ``calculate``, ``note``, media…        ``_submission_time``… (their export columns)
=========================================  =====================================================

The export's respondent id is Kobo's ``_uuid`` (a variable ``uuid``, type ``identifier``).
Labels are taken in French when the form has a French column (``label::Français (fr)``), else
in the settings' default language, else the plain ``label``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalterritoire.codebook.builder import ChoiceInfo, CodebookBuilder
from evalterritoire.codebook.importing import ImportResult
from evalterritoire.codebook.text import normalise_text
from evalterritoire.codebook.workbook import read_sheet, sheet_names
from evalterritoire.errors import CodebookError

__all__ = ["KOBO_METADATA", "import_xlsform"]

#: Columns KoboToolbox adds to every export (ignored by the imported codebook).
KOBO_METADATA = (
    "_id", "_submission_time", "_validation_status", "_notes", "_status", "_submitted_by",
    "__version__", "_tags", "_index", "_xform_id_string", "_attachments", "_geolocation",
    "_parent_index", "_parent_table_name", "meta/*", "formhub/*",
)  # fmt: skip
#: Question types that hold no answer of their own, or metadata (their columns are ignored).
_META_TYPES = frozenset(
    {
        "start", "end", "today", "deviceid", "subscriberid", "simserial", "phonenumber",
        "username", "email", "audit", "start-geopoint", "calculate", "hidden", "note",
        "acknowledge", "geopoint", "geotrace", "geoshape", "image", "audio", "video", "file",
        "barcode", "background-audio", "xml-external", "csv-external", "time", "datetime",
    }
)  # fmt: skip
_SIMPLE_TYPES = {"integer": "count", "decimal": "decimal", "text": "text", "date": "date"}
_TRUE = frozenset({"yes", "true", "true()", "1", "oui", "vrai"})


def _sheet_rows(path: Path, sheet: str) -> list[dict[str, Any]]:
    """The rows of a sheet as dicts keyed by the header (first row), empty rows skipped."""
    cells = read_sheet(path, sheet, path.name, CodebookError)
    rows = list(cells.rows())
    if not rows:
        return []
    header = [str(h).strip() if h is not None else "" for h in rows[0][1]]
    out = []
    for _, values in rows[1:]:
        if all(v is None or str(v).strip() == "" for v in values):
            continue
        out.append(
            {
                h: (str(v).strip() if v is not None else "")
                for h, v in zip(header, values, strict=True)
                if h
            }
        )
    return out


def _label_column(columns: Sequence[str], default_language: str) -> str | None:
    """The label column to read: French first, then the default language, then ``label``."""
    labels = [c for c in columns if c.lower() == "label" or c.lower().startswith("label::")]
    for column in labels:
        language = normalise_text(column.split("::", 1)[-1])
        if column.lower() != "label" and (
            "(fr)" in language or language.startswith(("fr", "francais", "french"))
        ):
            return column
    for column in labels:
        if default_language and normalise_text(column.split("::", 1)[-1]) == normalise_text(
            default_language
        ):
            return column
    return "label" if "label" in {c.lower() for c in labels} else (labels[0] if labels else None)


def _find_sheet(names: Sequence[str], wanted: str) -> str | None:
    return next((n for n in names if n.strip().lower() == wanted), None)


def import_xlsform(path: str | Path) -> ImportResult:
    """Import an XLSForm workbook (see the module docstring for the mapping).

    Raises
    ------
    CodebookError
        When the workbook has no ``survey`` sheet or its header lacks ``type`` and ``name``.
    """
    path = Path(path)
    names = sheet_names(path, path.name, CodebookError)
    survey_sheet = _find_sheet(names, "survey")
    if survey_sheet is None:
        raise CodebookError(f"{path.name}: no 'survey' sheet: not an XLSForm")
    survey = _sheet_rows(path, survey_sheet)
    choices_sheet = _find_sheet(names, "choices")
    choices = _sheet_rows(path, choices_sheet) if choices_sheet else []
    settings_sheet = _find_sheet(names, "settings")
    settings = (_sheet_rows(path, settings_sheet) or [{}])[0] if settings_sheet else {}
    if not survey or not {"type", "name"} <= set(survey[0]):
        raise CodebookError(f"{path.name}: the 'survey' sheet needs the columns type and name")
    language = settings.get("default_language", "")
    builder = CodebookBuilder(
        "XLSForm", path.name, settings.get("form_title", ""), settings.get("version", "")
    )
    builder.ignore += list(KOBO_METADATA)
    builder.add_variable("_uuid", "Identifiant de la soumission", "identifier", required=True)
    lists = _choice_lists(choices, _label_column(list(choices[0]), language) if choices else None)
    _Survey(builder, lists, _label_column(list(survey[0]), language)).read(survey)
    return builder.build()


def _choice_lists(rows: Sequence[Mapping[str, str]], label: str | None) -> dict[str, list]:
    """Choice list name → [(choice name, label)], in the sheet's order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        list_name = row.get("list_name") or row.get("list name") or ""
        if list_name and row.get("name", "") != "":
            out.setdefault(list_name, []).append(
                (row["name"], row.get(label or "", "") or row["name"])
            )
    return out


class _Survey:
    """Reads the survey sheet row by row (groups as a stack)."""

    def __init__(self, builder: CodebookBuilder, lists: dict[str, list], label: str | None):
        self.builder = builder
        self.lists = lists
        self.label = label or ""
        self.groups: list[tuple[str, str, str]] = []  # (name, relevant, kind)

    def read(self, rows: Sequence[Mapping[str, str]]) -> None:
        """Read every row: groups opened and closed, each question mapped."""
        for row in rows:
            kind = " ".join(row.get("type", "").replace("_", " ").split()).lower()
            name = row.get("name", "")
            if kind in {"begin group", "begin repeat"}:
                self.groups.append((name, row.get("relevant", ""), kind))
                if kind == "begin group" and name:
                    self.builder.blocks[name] = row.get(self.label, "") or name
                continue
            if kind in {"end group", "end repeat"}:
                if self.groups:
                    self.groups.pop()
                continue
            if not name:
                continue
            self.question(row, row.get("type", "").strip(), name)

    def _ignore(self, name: str) -> None:
        """Ignore a question's column, with and without its group prefix (Kobo's export)."""
        self.builder.ignore.append(name)
        path = [g[0] for g in self.groups if g[0]]
        if path:
            self.builder.ignore.append("/".join([*path, name]))

    def question(self, row: Mapping[str, str], qtype: str, name: str) -> None:
        """One question row as a variable (or an ignored column, reported)."""
        b = self.builder
        base = qtype.split()[0].lower() if qtype else ""
        if any(kind == "begin repeat" for _, _, kind in self.groups):
            b.unmapped.append(f"{name}: inside a repeat group (exported to another sheet)")
            self._ignore(name)
            return
        if base in _META_TYPES:
            self._ignore(name)
            if base not in {"start", "end", "today", "deviceid", "note", "calculate"}:
                b.unmapped.append(f"{name}: type {base} not mapped (column ignored)")
            return
        keys: dict[str, Any] = {"required": row.get("required", "").lower() in _TRUE or None}
        info: ChoiceInfo | None = None
        if base in {"select_one", "select_multiple"}:
            list_name = qtype.split()[1] if len(qtype.split()) > 1 else ""
            if list_name not in self.lists:
                b.unmapped.append(f"{name}: choice list {list_name!r} not found")
                self._ignore(name)
                return
            info = b.choices(list_name, self.lists[list_name], multiple=base == "select_multiple")
            vtype = info.type
        elif base == "range":
            vtype = "rating"
            keys.update(_range_bounds(row.get("parameters", "")))
        elif base in _SIMPLE_TYPES:
            vtype = _SIMPLE_TYPES[base]
        else:
            b.unmapped.append(f"{name}: type {qtype!r} not mapped (column ignored)")
            self._ignore(name)
            return
        keys.update(_constraint(row.get("constraint", ""), vtype, name, b.unmapped))
        if self.groups and self.groups[-1][2] == "begin group":
            keys["block"] = self.groups[-1][0]
        entry = b.add_variable(name, row.get(self.label, ""), vtype, info=info, **keys)
        conditions = [g[1] for g in self.groups if g[1]] + (
            [row["relevant"]] if row.get("relevant") else []
        )
        if conditions:
            text = " and ".join(f"({c})" for c in conditions)
            b.route(entry, lambda text=text: _translate(text, b), text)


def _range_bounds(parameters: str) -> dict[str, float]:
    """``start=0 end=10 step=1`` → ``{"min": 0, "max": 10}``."""
    found = dict(re.findall(r"(\w+)\s*=\s*(-?\d+(?:\.\d+)?)", parameters))
    out = {}
    if "start" in found:
        out["min"] = float(found["start"])
    if "end" in found:
        out["max"] = float(found["end"])
    if "min" in out and "max" in out and out["min"] > out["max"]:
        out["min"], out["max"] = out["max"], out["min"]
    return {k: int(v) if v.is_integer() else v for k, v in out.items()}


_BOUND = re.compile(r"\.\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)")
_REGEX = re.compile(r"regex\(\s*\.\s*,\s*(['\"])(.*)\1\s*\)")
_COUNT = re.compile(r"count-selected\(\s*\.\s*\)\s*<=\s*(\d+)")


def _bound(op: str, value: float, vtype: str, name: str, unmapped: list[str]) -> dict:
    """One bound of a constraint as ``min`` or ``max``.

    A strict bound on whole numbers moves by one (``. > 0`` → min 1); on decimals it is kept
    inclusive, and said so in the report.
    """
    if len(op) == 1 and value.is_integer() and vtype in {"count", "rating"}:
        value += 1 if op == ">" else -1
    elif len(op) == 1:
        unmapped.append(f"{name}: strict bound '. {op} {value:g}' kept as inclusive")
    number = int(value) if value.is_integer() else value
    return {"min" if op.startswith(">") else "max": number}


def _constraint(text: str, vtype: str, name: str, unmapped: list[str]) -> dict[str, Any]:
    """A constraint as min / max / pattern / max_choices; the rest is reported."""
    if not text.strip():
        return {}
    out: dict[str, Any] = {}
    rest = text
    for part in re.split(r"\s+and\s+", text.strip()):
        part = part.strip()
        inner = part[1:-1].strip() if part.startswith("(") and part.endswith(")") else part
        for candidate in dict.fromkeys([part, inner]):
            m = _BOUND.fullmatch(candidate)
            r = _REGEX.fullmatch(candidate)
            c = _COUNT.fullmatch(candidate)
            if m and vtype in {"count", "decimal", "rating"}:
                out.update(_bound(m.group(1), float(m.group(2)), vtype, name, unmapped))
            elif r and vtype == "text":
                out["pattern"] = r.group(2)
            elif c and vtype == "multi_select":
                out["max_choices"] = int(c.group(1))
            else:
                continue
            rest = rest.replace(part, "", 1)
            break
    if re.sub(r"[\s()]|\band\b", "", rest):
        unmapped.append(f"{name}: constraint {text!r} not fully translated (kept: {out or 'none'})")
    return out


_VAR = re.compile(r"\$\{([^}]+)\}")


def _translate(text: str, builder: CodebookBuilder) -> str | None:
    """An XLSForm ``relevant`` in our condition language, or None when it cannot be."""
    out = text
    out = re.sub(
        r"count-selected\(\s*\$\{([^}]+)\}\s*\)\s*(?:>\s*0|>=\s*1)",
        lambda m: _answered(m.group(1), builder),
        out,
    )
    out = re.sub(
        r"\$\{([^}]+)\}\s*(!=|=)\s*(''|\"\")",
        lambda m: ("" if m.group(2) == "!=" else "not ") + _answered(m.group(1), builder),
        out,
    )
    out = re.sub(
        r"selected\(\s*\$\{([^}]+)\}\s*,\s*(['\"])([^'\"]*)\2\s*\)",
        lambda m: _selected(m.group(1), m.group(3), builder),
        out,
    )
    out = re.sub(
        r"\$\{([^}]+)\}\s*(!=|<=|>=|=|<|>)\s*('[^']*'|\"[^\"]*\"|-?\d+(?:\.\d+)?)",
        lambda m: _comparison(m.group(1), m.group(2), m.group(3), builder),
        out,
    )
    out = re.sub(r"\bnot\s*\(", "not (", out)
    if "\x00" in out or "${" in out:
        return None
    if re.search(r"\b(?!selected\(|answered\()[A-Za-z_-]+\(", out):
        return None  # another XPath function (string-length, today…): not translated
    return out


def _entry(name: str, builder: CodebookBuilder) -> dict[str, Any] | None:
    return builder.by_name.get(name)


def _answered(name: str, builder: CodebookBuilder) -> str:
    entry = _entry(name, builder)
    return f"answered({entry['id']})" if entry else "\x00"


def _selected(name: str, value: str, builder: CodebookBuilder) -> str:
    entry = _entry(name, builder)
    info = builder.choice_info.get(entry["id"]) if entry else None
    if info is None or value not in info.values:
        return "\x00"
    mapped = info.values[value]
    if info.type == "multi_select":
        return f"selected({entry['id']}, '{mapped}')"
    return f"{entry['id']} = {_literal(mapped)}"


def _comparison(name: str, op: str, raw: str, builder: CodebookBuilder) -> str:
    entry = _entry(name, builder)
    if entry is None:
        return "\x00"
    value = raw[1:-1] if raw[:1] in {"'", '"'} else raw
    info = builder.choice_info.get(entry["id"])
    if info is not None:
        if value not in info.values:
            return "\x00"
        return f"{entry['id']} {op} {_literal(info.values[value])}"
    if entry["type"] in {"count", "decimal", "rating"}:
        try:
            float(value)
        except ValueError:
            return "\x00"
        return f"{entry['id']} {op} {value}"
    return f"{entry['id']} {op} {_literal(value)}"


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "") + "'"
