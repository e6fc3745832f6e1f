"""The codebook builder the questionnaire importers share (:class:`CodebookBuilder`).

Each importer (:mod:`.xlsform`, :mod:`.limesurvey`, :mod:`.spss`, :mod:`.qualtrics`) describes
the tool's questions to a builder, which owns what is common (see :mod:`.importing` for the
whole picture): ids made snake_case ASCII with the tool's header kept as a synonym; choices
turned into a binary / likert scale or options, with don't-know, refusal and not-applicable
choices as special codes (:func:`special_kind`); routing translated once every question is
known and checked by the condition parser; roles guessed from names and labels and reported.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalterritoire.codebook.conditions import parse_condition
from evalterritoire.codebook.importing import ImportResult
from evalterritoire.codebook.model import ROLES
from evalterritoire.codebook.text import normalise_header, normalise_text, role_of_header
from evalterritoire.errors import CodebookError

__all__ = ["ChoiceInfo", "CodebookBuilder", "make_id", "special_kind"]

#: Kinds of special codes recognised in choice labels (normalised), most specific first.
SPECIAL_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "not_applicable",
        ("non concerne", "non concernee", "pas concerne", "sans objet", "not applicable", "n/a"),
    ),
    (
        "refused",
        (
            "refus", "ne souhaite pas repondre", "prefere ne pas repondre", "je prefere ne pas",
            "prefer not to say", "refused", "non reponse",
        ),
    ),
    (
        "dont_know",
        (
            "ne sait pas", "je ne sais pas", "nsp", "ne se prononce pas", "sans opinion",
            "don't know", "dont know", "ne sais pas",
        ),
    ),
)  # fmt: skip
#: Symbolic keys and default codes of the special codes an import creates.
SPECIAL_KEYS = {
    "dont_know": "nsp",
    "refused": "refus",
    "not_applicable": "nc",
    "not_asked": "non_pose",
}
_DEFAULT_CODES = {"dont_know": -1, "refused": -2, "not_applicable": -3, "not_asked": -9}
#: Words that make integer-coded choices a scale (Likert) rather than categories.
SCALE_WORDS = (
    "accord", "satisf", "jamais", "rarement", "souvent", "toujours", "pas du tout",
    "tout a fait", "plutot", "tres", "agree", "satisfied", "never", "always", "often",
    "important", "faible", "fort", "mauvais", "excellent",
)  # fmt: skip
_YES = frozenset({"oui", "yes", "vrai", "true", "o", "y"})
_NO = frozenset({"non", "no", "faux", "false", "n"})


def special_kind(label: str) -> str | None:
    """The special-code kind a choice label announces (« Ne sait pas » → ``dont_know``)."""
    key = normalise_text(label).rstrip(" .")
    for kind, words in SPECIAL_WORDS:
        if any(key == w or key.startswith(w + " ") or key.startswith(w + ",") for w in words):
            return kind
    return None


def make_id(name: str) -> str:
    """A tool's name as a codebook id: snake_case ASCII starting with a letter."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    if not text:
        text = "q"
    return text if text[0].isalpha() else f"q_{text}"


def _as_int(text: Any) -> int | None:
    """An integer code written as an int, a float or text (``"3"``, ``3.0``), else None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text
    if isinstance(text, float) and text.is_integer():
        return int(text)
    if isinstance(text, str) and re.fullmatch(r"\s*-?\d+\s*", text):
        return int(text)
    return None


@dataclass
class ChoiceInfo:
    """What a list of choices became: the variable's type, scale or options, value mapping.

    ``values`` maps each of the tool's codes (text) to the value the codebook stores (an
    integer code or an option key), for translating conditions; ``special`` the special-code
    keys the item accepts.
    """

    type: str
    scale: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    special: list[str] = field(default_factory=list)


class CodebookBuilder:
    """Collects what an importer reads and assembles the codebook (see the module docstring)."""

    def __init__(self, tool: str, source: str, name: str, version: str = "") -> None:
        self.tool = tool
        self.source = source
        self.meta = {"name": name or source, "version": version or "1", "language": "fr"}
        self.variables: list[dict[str, Any]] = []
        self.scales: dict[str, dict[str, Any]] = {}
        self.special: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, str] = {}
        self.ignore: list[str] = []
        self.missing: list[str] = [""]
        self.unmapped: list[str] = []
        self.guessed: list[str] = []
        self.conditions: list[tuple[dict[str, Any], Callable[[], str | None], str]] = []
        self._ids: set[str] = set()
        self.by_name: dict[str, dict[str, Any]] = {}
        self.choice_info: dict[str, ChoiceInfo] = {}

    # ------------------------------------------------------------------ ids and variables
    def unique_id(self, name: str) -> str:
        """A codebook id for a tool's name, unique in the codebook (suffixes ``_2``, ``_3``)."""
        base = make_id(name)
        vid, k = base, 2
        while vid in self._ids:
            vid, k = f"{base}_{k}", k + 1
        self._ids.add(vid)
        return vid

    def add_variable(
        self,
        name: str,
        label: str,
        vtype: str,
        *,
        headers: Iterable[str] = (),
        info: ChoiceInfo | None = None,
        **keys: Any,
    ) -> dict[str, Any]:
        """Add a variable for the tool's question ``name`` (its header(s) kept as synonyms)."""
        vid = self.unique_id(name)
        entry: dict[str, Any] = {"id": vid, "label_fr": _clean_label(label) or name, "type": vtype}
        synonyms = [
            h
            for h in dict.fromkeys([name, *headers])
            if h and normalise_header(h) != normalise_header(vid)
        ]
        if synonyms:
            entry["synonyms"] = synonyms
        if info is not None:
            if info.scale:
                entry["scale"] = info.scale
            if info.options:
                entry["options"] = dict(info.options)
            if info.special:
                entry["special_codes"] = list(info.special)
            self.choice_info[vid] = info
        entry.update({k: v for k, v in keys.items() if v not in (None, "", [], {})})
        self.variables.append(entry)
        self.by_name[name] = entry
        return entry

    def route(self, entry: dict[str, Any], translate: Callable[[], str | None], text: str) -> None:
        """Attach a routing condition, translated once every question is known."""
        self.conditions.append((entry, translate, text))

    # ------------------------------------------------------------------ choices
    def special_code(self, kind: str, label: str, code: int | None, spelling: str) -> str | None:
        """The key of the special code for a choice (created on first use), or None.

        One key per (kind, numeric code): « Ne sait pas » coded 9 and 99 make ``nsp`` and
        ``nsp_99``. None when the numeric code already belongs to another kind.
        """
        if code is None:
            code = next(
                (sc["code"] for sc in self.special.values() if sc["kind"] == kind and sc["_auto"]),
                None,
            )
            if code is None:
                code = _DEFAULT_CODES[kind]
                while any(sc["code"] == code for sc in self.special.values()):
                    code -= 10
            auto = True
        else:
            auto = False
        for key, sc in self.special.items():
            if sc["code"] == code:
                if sc["kind"] != kind:
                    return None
                for s in (spelling, label):
                    if s and normalise_text(s) not in {normalise_text(x) for x in sc["spellings"]}:
                        sc["spellings"].append(s)
                return key
        base = SPECIAL_KEYS[kind]
        key = base if base not in self.special else f"{base}_{abs(code)}"
        spellings = [s for s in dict.fromkeys([spelling, str(code)]) if s]
        self.special[key] = {
            "code": code,
            "label_fr": _clean_label(label),
            "kind": kind,
            "spellings": spellings,
            "_auto": auto,
        }
        return key

    def not_asked_code(self, spellings: Sequence[str] = ()) -> str:
        """The key of the « question non posée » special code (created on first use)."""
        key = self.special_code("not_asked", "Question non posée", None, "")
        assert key is not None
        for s in spellings:
            if s not in self.special[key]["spellings"]:
                self.special[key]["spellings"].append(s)
        return key

    def choices(
        self,
        list_name: str,
        choices: Sequence[tuple[str, str]],
        *,
        multiple: bool = False,
        ordered: bool = False,
    ) -> ChoiceInfo:
        """A list of choices (tool code, label) as the codebook stores it (module docstring).

        ``ordered``: the tool declares the choices ordinal (SPSS measure, LimeSurvey array
        type), so integer codes make a scale whatever their labels.
        """
        special: list[str] = []
        kept: list[tuple[str, str]] = []
        for code, label in choices:
            kind = special_kind(label)
            key = self.special_code(kind, label, _as_int(code), str(code)) if kind else None
            if key is not None and not multiple:
                special.append(key)
            else:
                kept.append((str(code), label))
        if multiple:
            options = {_option_key(c): _clean_label(lbl) for c, lbl in kept}
            values = {c: _option_key(c) for c, _ in kept}
            return ChoiceInfo("multi_select", options=options, values=values)
        labels = [normalise_text(lbl) for _, lbl in kept]
        if len(kept) == 2 and {labels[0], labels[1]} in ({"oui", "non"}, {"yes", "no"}):
            return self._binary(kept, special)
        ints = [_as_int(c) for c, _ in kept]
        if kept and (_reads_as_scale(labels) or (ordered and len(kept) >= 3)):
            return self._likert(list_name, kept, ints, special)
        options = {_option_key(c): _clean_label(lbl) for c, lbl in kept}
        return ChoiceInfo(
            "categorical",
            options=options,
            values={c: _option_key(c) for c, _ in kept},
            special=special,
        )

    def _likert(
        self,
        list_name: str,
        kept: Sequence[tuple[str, str]],
        ints: Sequence[int | None],
        special: list[str],
    ) -> ChoiceInfo:
        """Choices that read as a scale (a likert item).

        Integer codes are kept; other codes (``A1``…) are numbered 1, 2… in their order, the
        tool's codes kept as the scale's aliases.
        """
        numbered = any(i is None for i in ints)
        codes = list(range(1, len(kept) + 1)) if numbered else [int(i or 0) for i in ints]
        values = {c: k for (c, _), k in zip(kept, codes, strict=True)}
        spec: dict[str, Any] = {
            "type": "likert",
            "values": {k: _clean_label(lbl) for k, (_, lbl) in zip(codes, kept, strict=True)},
        }
        if numbered:
            spec["aliases"] = dict(values)
        scale = self._scale(list_name, spec)
        return ChoiceInfo("likert", scale=scale, values=values, special=special)

    def _binary(self, kept: Sequence[tuple[str, str]], special: list[str]) -> ChoiceInfo:
        values: dict[str, int] = {}
        labels: dict[int, str] = {}
        for code, label in kept:
            values[code] = 1 if normalise_text(label) in _YES else 0
            labels[values[code]] = _clean_label(label)
        aliases = {c: v for c, v in values.items() if _as_int(c) != v}
        spec: dict[str, Any] = {"type": "binary", "values": {0: labels[0], 1: labels[1]}}
        if aliases:
            spec["aliases"] = aliases
        scale = self._scale("oui_non", spec)
        return ChoiceInfo("binary", scale=scale, values=values, special=special)

    def _scale(self, name: str, spec: dict[str, Any]) -> str:
        """The id of a scale with this spec: an identical one is reused."""
        for sid, existing in self.scales.items():
            if existing == spec:
                return sid
        sid, k = make_id(name), 2
        while sid in self.scales:
            sid, k = f"{make_id(name)}_{k}", k + 1
        self.scales[sid] = spec
        return sid

    # ------------------------------------------------------------------ roles and result
    def guess_roles(self) -> list[str]:
        """Guess the roles from names and labels; returns the roles no variable plays."""
        taken: set[str] = set()
        for entry in self.variables:
            if entry["type"] == "identifier":
                taken.add("respondent_id")
        for entry in self.variables:
            if entry.get("role") or entry["type"] == "identifier":
                continue
            names = [entry["id"], entry["label_fr"], *entry.get("synonyms", [])]
            role = next((r for r in map(role_of_header, names) if r), None)
            if role is None or role in taken or not _role_fits(role, entry):
                continue
            taken.add(role)
            _apply_role(role, entry)
            self.guessed.append(
                f"{entry['id']} plays the role {role} (from its name or label "
                f"« {entry['label_fr']} »), as type {entry['type']}"
            )
        needs = {
            "territory": "estimates and reports by territory",
            "respondent_type": "estimates by type of actor",
            "weight": "weighted estimates (without one, every respondent weighs 1)",
        }
        return [
            f"{role}: none found — needed for {why}"
            for role, why in needs.items()
            if role not in taken
        ]

    def build(self) -> ImportResult:
        """The codebook data and the report (conditions translated, roles guessed)."""
        for entry, translate, text in self.conditions:
            condition = translate()
            if condition is None:
                self.unmapped.append(f"{entry['id']}: routing {text!r} not translated (no check)")
                continue
            try:
                parse_condition(condition)
            except CodebookError:
                self.unmapped.append(f"{entry['id']}: routing {text!r} not translated (no check)")
                continue
            entry["relevant"] = condition
        if any("relevant" in e for e in self.variables):
            self.not_asked_code()
        needed = self.guess_roles()
        data: dict[str, Any] = {"codebook": {**self.meta, "source": f"{self.tool}: {self.source}"}}
        data["missing_spellings"] = list(dict.fromkeys(self.missing))
        data["special_codes"] = {
            k: {kk: vv for kk, vv in sc.items() if not kk.startswith("_")}
            for k, sc in self.special.items()
        }
        data["scales"] = self.scales
        if self.blocks:
            data["blocks"] = self.blocks
            for entry in self.variables:
                if entry.get("block") not in self.blocks:
                    entry.pop("block", None)
        if self.ignore:
            data["columns"] = {"ignore": list(dict.fromkeys(self.ignore))}
        data["variables"] = self.variables
        return ImportResult(self.tool, self.source, data, self.unmapped, self.guessed, needed)


def _clean_label(text: Any) -> str:
    """A label without markup and extra spaces (tools store HTML: ``<p>Texte</p>``)."""
    if text is None:
        return ""
    text = re.sub(r"<[^>]*>", " ", str(text))
    text = text.replace("&nbsp;", " ").replace("&amp;", "&").replace("&#39;", "'")
    return " ".join(text.split())


def _option_key(code: str) -> str:
    return str(code).strip()


def _reads_as_scale(labels: Sequence[str]) -> bool:
    """Whether choice labels read as the points of a scale (agreement, frequency…)."""
    return len(labels) >= 3 and any(w in lbl for lbl in labels for w in SCALE_WORDS)


def _role_fits(role: str, entry: Mapping[str, Any]) -> bool:
    """Whether a guessed role suits the variable's type (a weight must be a number…)."""
    vtype = entry["type"]
    if role == "weight":
        return vtype in {"decimal", "count"}
    if role == "respondent_type":
        return vtype == "categorical"
    if role == "respondent_id":
        return vtype in {"text", "count"}
    if role in {"territory", "stratum", "psu"}:
        return vtype in {"text", "count", "categorical"}
    return role in ROLES


def _apply_role(role: str, entry: dict[str, Any]) -> None:
    """Give a variable its guessed role: the type that implies it, else ``role:``."""
    implied = {
        "respondent_id": "identifier",
        "territory": "territory_code",
        "respondent_type": "respondent_type",
        "weight": "weight",
        "stratum": "stratum",
        "psu": "psu",
    }
    if role in implied:
        entry["type"] = implied[role]
        if entry["type"] != "respondent_type":
            for key in ("scale", "options", "special_codes"):
                entry.pop(key, None)
    else:
        entry["role"] = role
