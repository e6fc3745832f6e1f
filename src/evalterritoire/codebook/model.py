"""Codebook: variables, scales, special codes, maturity dimensions and fragility domains.

The codebook is a YAML file (format in README.md, "Codebook format"). The package ships a
default codebook implementing the reference instrument; a study may point to its own.

Conventions for typed data (``responses.parquet``)
--------------------------------------------------
* A value column per variable, named by its id, holds valid values only.
* Items declaring special codes get a companion column ``<id>__special`` holding the symbolic
  key of the special code given (``"nsp"``, ``"refus"``, ``"nc"``, ``"filtre"``) or missing.
  "Ne sait pas" is therefore kept (counted and reported) without ever entering a mean.
* A multi-select item becomes one 0/1 column per option, ``<id>__<option>``, plus
  ``<id>__special``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from evalterritoire.errors import CodebookError

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

VARIABLE_TYPES = frozenset(
    {
        "identifier",
        "territory_code",
        "respondent_type",
        "likert",
        "rating",
        "binary",
        "ordinal",
        "categorical",
        "multi_select",
        "count",
        "decimal",
        "date",
        "weight",
        "stratum",
        "psu",
        "fpc",
        "text",
    }
)
#: Types stored as integers (nullable ``Int64``).
INTEGER_TYPES = frozenset({"likert", "rating", "binary", "ordinal", "count"})
#: Types stored as floats.
FLOAT_TYPES = frozenset({"decimal", "weight", "fpc"})
NUMERIC_TYPES = INTEGER_TYPES | FLOAT_TYPES
#: Types whose values are option keys (strings).
OPTION_TYPES = frozenset({"categorical", "respondent_type"})
STRING_TYPES = frozenset({"identifier", "territory_code", "stratum", "psu", "text"})
SPECIAL_KINDS = frozenset({"dont_know", "refused", "not_applicable", "not_asked"})

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


@dataclass(frozen=True)
class SpecialCode:
    """A special answer code ("ne sait pas", "refus", ...).

    Attributes
    ----------
    key : str
        Symbolic key (``nsp``, ``refus``, ``nc``, ``filtre``).
    code : int
        Negative numeric code used by survey tools.
    label_fr : str
        French label.
    kind : str
        ``dont_know``, ``refused``, ``not_applicable`` or ``not_asked``.
    spellings : tuple of str
        Accepted spellings in exports (matched after :func:`normalise_text`).
    """

    key: str
    code: int
    label_fr: str
    kind: str
    spellings: tuple[str, ...]


@dataclass(frozen=True)
class Scale:
    """A response scale.

    Attributes
    ----------
    id : str
        Scale id (e.g. ``accord5``).
    type : str
        Variable type the scale implies.
    values : mapping of int to str
        Code → French label (empty for open numeric scales).
    min, max : float or None
        Allowed range for numeric scales.
    aliases : mapping of str to int
        Extra accepted spellings → code.
    anchors : mapping of int to str
        Labels of the end points of rating scales.
    """

    id: str
    type: str
    values: Mapping[int, str] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None
    aliases: Mapping[str, int] = field(default_factory=dict)
    anchors: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Variable:
    """One codebook variable.

    Attributes
    ----------
    id : str
        Stable item id (also the column name in typed data).
    label_fr, label_en : str
        Question wording (French) and a gloss (English).
    type : str
        One of :data:`VARIABLE_TYPES`.
    scale : str or None
        Scale id.
    block : str
        Questionnaire block.
    feeds : str
        What the item feeds (``maturity:<dim>``, ``fragility:<domain>``, ...).
    required : bool
        Whether the column must exist and be non-missing.
    dimension, fragility : str or None
        Maturity dimension or fragility domain fed.
    options : mapping of str to str
        Option key → French label (categorical, multi-select, respondent type).
    special_codes : tuple of str
        Allowed special codes (symbolic keys).
    asked_to : tuple of str
        Respondent groups asked (routing).
    reverse_coded, milestone : bool
        Reverse-coded Likert item; milestone item (not averaged into a dimension).
    min, max : float or None
        Allowed range (overrides the scale's).
    pattern : str or None
        Regular expression a text value must match.
    aliases : mapping of str to str or int
        Label aliases → option key or code.
    synonyms : tuple of str
        Accepted header synonyms.
    max_choices : int or None
        Maximum number of options ticked (multi-select).
    level : str
        ``respondent`` or ``territory`` (context joined from public statistics).
    key_indicator_for_stages : tuple of str
        Stages for which the item is a key indicator.
    """

    id: str
    label_fr: str
    type: str
    label_en: str = ""
    scale: str | None = None
    block: str = ""
    feeds: str = ""
    required: bool = False
    dimension: str | None = None
    fragility: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    special_codes: tuple[str, ...] = ()
    asked_to: tuple[str, ...] = ()
    reverse_coded: bool = False
    milestone: bool = False
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    aliases: Mapping[str, Any] = field(default_factory=dict)
    synonyms: tuple[str, ...] = ()
    max_choices: int | None = None
    level: str = "respondent"
    key_indicator_for_stages: tuple[str, ...] = ()

    @property
    def special_col(self) -> str | None:
        """Name of the companion special-code column, or None when none is declared."""
        return f"{self.id}__special" if self.special_codes else None

    def option_cols(self) -> list[str]:
        """Columns of a multi-select item, one per option (``<id>__<option>``)."""
        if self.type != "multi_select":
            return []
        return [f"{self.id}__{key}" for key in self.options]

    def columns(self) -> list[str]:
        """All typed-data columns this variable produces, in order."""
        cols = self.option_cols() if self.type == "multi_select" else [self.id]
        if self.special_col:
            cols.append(self.special_col)
        return cols


@dataclass(frozen=True)
class Codebook:
    """A loaded, validated codebook (immutable).

    Use :func:`load_codebook` to build one.
    """

    name: str
    version: str
    variables: tuple[Variable, ...]
    scales: Mapping[str, Scale]
    special_codes: Mapping[str, SpecialCode]
    dimensions: Mapping[str, str]
    fragility_domains: Mapping[str, str]
    blocks: Mapping[str, str]
    respondent_groups: Mapping[str, tuple[str, ...]]
    missing_spellings: tuple[str, ...] = ("",)
    min_item_share: float = 2 / 3
    sha256: str = ""
    source: str = ""

    # ------------------------------------------------------------------ lookup
    @cached_property
    def _by_id(self) -> dict[str, Variable]:
        return {v.id: v for v in self.variables}

    def __getitem__(self, var_id: str) -> Variable:
        try:
            return self._by_id[var_id]
        except KeyError:
            raise CodebookError(f"unknown variable '{var_id}' in codebook '{self.name}'") from None

    def __contains__(self, var_id: object) -> bool:
        return var_id in self._by_id

    def __iter__(self):
        return iter(self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    @property
    def ids(self) -> list[str]:
        """Variable ids in codebook order."""
        return [v.id for v in self.variables]

    def of_type(self, *types: str, level: str | None = "respondent") -> list[Variable]:
        """Variables of the given types (all types when none given), optionally of one level."""
        return [
            v
            for v in self.variables
            if (not types or v.type in types) and (level is None or v.level == level)
        ]

    def by_role(self, type_: str) -> Variable | None:
        """The single variable of a design/identity type (``weight``, ``territory_code``...)."""
        found = [v for v in self.variables if v.type == type_]
        return found[0] if found else None

    def dimension_items(self, dimension: str, *, likert_only: bool = True) -> list[Variable]:
        """Items feeding a maturity dimension (Likert only by default, milestones excluded)."""
        if dimension not in self.dimensions:
            raise CodebookError(f"unknown maturity dimension '{dimension}'")
        return [
            v
            for v in self.variables
            if v.dimension == dimension and (not likert_only or v.type == "likert")
        ]

    def fragility_items(self, domain: str | None = None) -> list[Variable]:
        """Items feeding one fragility domain (or all domains)."""
        return [
            v
            for v in self.variables
            if v.fragility is not None and (domain is None or v.fragility == domain)
        ]

    def label(self, var_id: str) -> str:
        """French label of a variable (or of a derived ``<id>__<option>`` column)."""
        if var_id in self._by_id:
            return self._by_id[var_id].label_fr
        base, _, opt = var_id.partition("__")
        if base in self._by_id and opt in self._by_id[base].options:
            return f"{self._by_id[base].label_fr} — {self._by_id[base].options[opt]}"
        return var_id

    def value_labels(self, var_id: str) -> dict[Any, str]:
        """Code (or option key) → French label for a variable."""
        var = self[var_id]
        if var.options:
            return dict(var.options)
        if var.scale and var.scale in self.scales:
            return dict(self.scales[var.scale].values)
        return {}

    def value_range(self, var_id: str) -> tuple[float | None, float | None]:
        """Allowed (min, max) for a numeric variable: the variable's own, else its scale's."""
        var = self[var_id]
        scale = self.scales.get(var.scale or "")
        lo = var.min if var.min is not None else (scale.min if scale else None)
        hi = var.max if var.max is not None else (scale.max if scale else None)
        if scale and scale.values and var.type in {"likert", "ordinal", "binary"}:
            lo = min(scale.values) if lo is None else lo
            hi = max(scale.values) if hi is None else hi
        return lo, hi

    @cached_property
    def header_lookup(self) -> dict[str, str]:
        """Normalised header (id, French label or declared synonym) → variable id."""
        out: dict[str, str] = {}
        for var in self.variables:
            for name in (var.id, var.label_fr, *var.synonyms):
                out.setdefault(normalise_text(name), var.id)
        return out

    @cached_property
    def special_lookup(self) -> dict[str, str]:
        """Normalised spelling → special-code key (symbolic key and numeric code included)."""
        out: dict[str, str] = {}
        for sc in self.special_codes.values():
            for s in (sc.key, sc.label_fr, str(sc.code), *sc.spellings):
                out.setdefault(normalise_text(s), sc.key)
        return out

    def value_lookup(self, var_id: str) -> dict[str, Any]:
        """Normalised label/alias/code text → stored value for a coded variable."""
        var = self[var_id]
        out: dict[str, Any] = {}
        if var.options:
            for key, label in var.options.items():
                out[normalise_text(key)] = key
                out[normalise_text(label)] = key
        elif var.scale and var.scale in self.scales:
            scale = self.scales[var.scale]
            for code, label in scale.values.items():
                out[normalise_text(label)] = code
                out[normalise_text(str(code))] = code
            for alias, code in scale.aliases.items():
                out[normalise_text(alias)] = code
        for alias, value in var.aliases.items():
            out[normalise_text(str(alias))] = value
        return out

    def groups_for(self, respondent_type: str | None, role: str | None) -> set[str]:
        """Routing groups a respondent belongs to (``all``, ``organisations``, ``insiders``...)."""
        groups = {"all"}
        if respondent_type in self.respondent_groups.get("organisations", ()):
            groups.add("organisations")
        if respondent_type in self.respondent_groups.get("steering_roles", ()):
            groups.add("steering_roles")
        if role in self.respondent_groups.get("insider_roles", ()):
            groups.add("insiders")
            if role == "pilote" and respondent_type in self.respondent_groups.get(
                "porteur_types", ()
            ):
                groups.add("porteurs")
        return groups


# ---------------------------------------------------------------------- loading


def default_codebook_path() -> Path:
    """Path of the codebook shipped with the package."""
    return Path(str(resources.files("evalterritoire") / "data" / "codebook.yaml"))


def _fail(where: str, problem: str) -> CodebookError:
    return CodebookError(f"codebook {where}: {problem}")


def _as_mapping(value: Any, where: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _describe(value: Any) -> str:
    """Type and value of a malformed entry, for messages (``list ['a', 'b']``)."""
    return f"{type(value).__name__} {value!r}"


def _as_str(value: Any, where: str, *, default: str | None = None) -> str | None:
    """A string entry (``None`` gives ``default``); anything else names the key and problem."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise _fail(where, f"expected a string, got {_describe(value)}")
    return value


def _as_label(value: Any, where: str, *, default: str = "") -> str:
    """A label: a string or a plain number written unquoted in YAML (``1: 1``)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(where, f"expected a text label, got {_describe(value)}")
    return str(value)


def _as_code(value: Any, where: str) -> int:
    """An integer code given as an integer or as integer text (``"3"``, ``"-1"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _fail(where, f"code {value!r} is not an integer")


def _as_str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | Mapping) or not isinstance(value, Iterable):
        raise _fail(where, f"expected a list of strings, got {_describe(value)}")
    out = tuple(value)
    for item in out:
        if not isinstance(item, str):
            raise _fail(where, f"expected a list of strings, found {item!r}")
    return out


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"expected a number, got {value!r}")
    return value


_VAR_KEYS = {
    "id", "label_fr", "label_en", "type", "scale", "block", "feeds", "required", "dimension",
    "fragility", "options", "special_codes", "asked_to", "reverse_coded", "milestone", "min",
    "max", "pattern", "aliases", "synonyms", "max_choices", "level", "key_indicator_for_stages",
    "note",
}  # fmt: skip


def _check_special_spellings(special: Mapping[str, SpecialCode]) -> None:
    """Refuse a spelling (key, label, numeric code or listed spelling) shared by two codes.

    Raises
    ------
    CodebookError
        Naming the second code's key, the spelling and the code that already uses it.
    """
    owner: dict[str, str] = {}
    for sc in special.values():
        fields = [("", sc.key), (".label_fr", sc.label_fr), (".code", str(sc.code))]
        fields += [(".spellings", s) for s in sc.spellings]
        for suffix, spelling in fields:
            norm = normalise_text(spelling)
            other = owner.setdefault(norm, sc.key)
            if other != sc.key:
                raise _fail(
                    f"key 'special_codes.{sc.key}'{suffix}",
                    f"spelling {spelling!r} is already used by special code {other!r} "
                    "(a cell would be ambiguous)",
                )


def _check_header_names(variables: Iterable[Variable]) -> None:
    """Refuse a header name (id, French label or synonym) claimed by two variables.

    Names are compared after :func:`normalise_text`, as headers are matched.

    Raises
    ------
    CodebookError
        Naming the variable, the name and the variable that already claims it.
    """
    owner: dict[str, tuple[str, str]] = {}
    indexed = list(enumerate(variables))
    # ids and labels first, so that a synonym equal to a later variable's label is the one named
    names = [(i, var, "id", var.id) for i, var in indexed]
    names += [(i, var, "label_fr", var.label_fr) for i, var in indexed]
    names += [(i, var, "synonyms", s) for i, var in indexed for s in var.synonyms]
    for i, var, what, name in names:
        other_id, other_what = owner.setdefault(normalise_text(name), (var.id, what))
        if other_id != var.id:
            raise _fail(
                f"key 'variables[{i}]' (id '{var.id}').{what}",
                f"header name {name!r} is already claimed by variable '{other_id}' "
                f"(its {other_what.replace('synonyms', 'synonym')}); a column with this "
                "header would be ambiguous",
            )


def _parse(raw: Any, source: str, digest: str) -> Codebook:
    raw = _as_mapping(raw, "(top level)")
    meta = _as_mapping(raw.get("codebook"), "key 'codebook'")
    if "variables" not in raw:
        raise _fail("(top level)", "missing required key 'variables'")

    special: dict[str, SpecialCode] = {}
    for key, sc in _as_mapping(raw.get("special_codes"), "key 'special_codes'").items():
        where = f"key 'special_codes.{key}'"
        sc = _as_mapping(sc, where)
        code = sc.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise _fail(where, f"'code' must be an integer, got {code!r}")
        kind = _as_str(sc.get("kind"), f"{where}.kind", default="dont_know")
        if kind not in SPECIAL_KINDS:
            raise _fail(where, f"'kind' must be one of {sorted(SPECIAL_KINDS)}, got {kind!r}")
        special[str(key)] = SpecialCode(
            key=str(key),
            code=code,
            label_fr=_as_label(sc.get("label_fr"), f"{where}.label_fr", default=str(key)),
            kind=kind,
            spellings=_as_str_tuple(sc.get("spellings"), f"{where}.spellings"),
        )
    _check_special_spellings(special)

    scales: dict[str, Scale] = {}
    for sid, sc in _as_mapping(raw.get("scales"), "key 'scales'").items():
        where = f"key 'scales.{sid}'"
        sc = _as_mapping(sc, where)
        stype = _as_str(sc.get("type"), f"{where}.type")
        if stype not in VARIABLE_TYPES:
            raise _fail(where, f"'type' must be one of {sorted(VARIABLE_TYPES)}, got {stype!r}")
        values: dict[int, str] = {}
        for k, v in _as_mapping(sc.get("values"), f"{where}.values").items():
            values[_as_code(k, f"{where}.values")] = _as_label(v, f"{where}.values.{k}")
        aliases: dict[str, int] = {}
        for k, v in _as_mapping(sc.get("aliases"), f"{where}.aliases").items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise _fail(
                    f"{where}.aliases",
                    f"alias {k!r} must map to an integer code, got {_describe(v)}",
                )
            if v not in values and values:
                raise _fail(f"{where}.aliases", f"alias {k!r} maps to unknown code {v!r}")
            aliases[str(k)] = v
        lo, hi = _number(sc.get("min"), f"{where}.min"), _number(sc.get("max"), f"{where}.max")
        if lo is not None and hi is not None and lo > hi:
            raise _fail(where, f"min {lo} is greater than max {hi}")
        scales[str(sid)] = Scale(
            id=str(sid),
            type=stype,
            values=values,
            min=lo,
            max=hi,
            aliases=aliases,
            anchors={
                _as_code(k, f"{where}.anchors"): _as_label(v, f"{where}.anchors.{k}")
                for k, v in _as_mapping(sc.get("anchors"), f"{where}.anchors").items()
            },
        )

    def _labels(key: str) -> dict[str, str]:
        entries = _as_mapping(raw.get(key), f"key '{key}'")
        return {str(k): _as_label(v, f"key '{key}.{k}'") for k, v in entries.items()}

    dims, frags, blocks = (
        _labels("maturity_dimensions"),
        _labels("fragility_domains"),
        _labels("blocks"),
    )
    groups = {
        str(k): _as_str_tuple(v, f"key 'respondent_groups.{k}'")
        for k, v in _as_mapping(raw.get("respondent_groups"), "key 'respondent_groups'").items()
    }
    known_groups = {"all", "insiders", "porteurs", *groups}

    raw_vars = raw["variables"]
    if not isinstance(raw_vars, list) or not raw_vars:
        raise _fail("key 'variables'", "expected a non-empty list of variables")
    variables: list[Variable] = []
    seen: set[str] = set()
    for i, rv in enumerate(raw_vars):
        where = f"key 'variables[{i}]'"
        rv = _as_mapping(rv, where)
        vid = rv.get("id")
        if not isinstance(vid, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", vid):
            raise _fail(f"{where}.id", f"must be a snake_case ASCII identifier, got {vid!r}")
        where = f"key 'variables[{i}]' (id '{vid}')"
        if vid in seen:
            raise _fail(where, "duplicate variable id")
        seen.add(vid)
        unknown = set(rv) - _VAR_KEYS
        if unknown:
            raise _fail(where, f"unknown key(s) {sorted(unknown)}")
        if rv.get("label_fr") is None or rv.get("label_fr") == "":
            raise _fail(where, "missing required key 'label_fr'")
        label_fr = _as_label(rv["label_fr"], f"{where}.label_fr")
        vtype = _as_str(rv.get("type"), f"{where}.type")
        if vtype not in VARIABLE_TYPES:
            raise _fail(f"{where}.type", f"must be one of {sorted(VARIABLE_TYPES)}, got {vtype!r}")
        scale = _as_str(rv.get("scale"), f"{where}.scale")
        if scale is not None and scale not in scales:
            raise _fail(f"{where}.scale", f"unknown scale {scale!r}")
        if vtype in {"likert", "ordinal"} and (scale is None or not scales[scale].values):
            raise _fail(f"{where}.scale", f"a {vtype} variable needs a scale with coded values")
        options = {
            str(k): _as_label(v, f"{where}.options.{k}")
            for k, v in _as_mapping(rv.get("options"), f"{where}.options").items()
        }
        if vtype in {"categorical", "multi_select", "respondent_type"} and not options:
            raise _fail(
                f"{where}.options", f"a {vtype} variable needs a non-empty 'options' mapping"
            )
        specials = _as_str_tuple(rv.get("special_codes"), f"{where}.special_codes")
        for s in specials:
            if s not in special:
                raise _fail(f"{where}.special_codes", f"unknown special code {s!r}")
        asked = _as_str_tuple(rv.get("asked_to"), f"{where}.asked_to")
        for g in asked:
            if g not in known_groups:
                raise _fail(f"{where}.asked_to", f"unknown respondent group {g!r}")
        dim = _as_str(rv.get("dimension"), f"{where}.dimension")
        if dim is not None and dim not in dims:
            raise _fail(f"{where}.dimension", f"unknown maturity dimension {dim!r}")
        frag = _as_str(rv.get("fragility"), f"{where}.fragility")
        if frag is not None and frag not in frags:
            raise _fail(f"{where}.fragility", f"unknown fragility domain {frag!r}")
        block = _as_str(rv.get("block"), f"{where}.block", default="")
        if block and blocks and block not in blocks:
            raise _fail(
                f"{where}.block", f"unknown block {block!r} (declared: {', '.join(blocks)})"
            )
        pattern = _as_str(rv.get("pattern"), f"{where}.pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise _fail(f"{where}.pattern", f"invalid regular expression: {exc}") from None
        lo, hi = _number(rv.get("min"), f"{where}.min"), _number(rv.get("max"), f"{where}.max")
        if lo is not None and hi is not None and lo > hi:
            raise _fail(where, f"min {lo} is greater than max {hi}")
        aliases = dict(_as_mapping(rv.get("aliases"), f"{where}.aliases"))
        for k, v in aliases.items():
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise _fail(
                    f"{where}.aliases",
                    f"alias {k!r} must map to an option key or a code, got {_describe(v)}",
                )
            if options and v not in options:
                raise _fail(f"{where}.aliases", f"alias {k!r} maps to unknown option {v!r}")
            codes = scales[scale].values if not options and scale is not None else {}
            if codes and v not in codes:
                raise _fail(
                    f"{where}.aliases", f"alias {k!r} maps to unknown code {v!r} of scale {scale!r}"
                )
        level = _as_str(rv.get("level"), f"{where}.level", default="respondent")
        if level not in {"respondent", "territory"}:
            raise _fail(f"{where}.level", f"must be 'respondent' or 'territory', got {level!r}")
        max_choices = rv.get("max_choices")
        if max_choices is not None and (
            isinstance(max_choices, bool) or not isinstance(max_choices, int) or max_choices < 1
        ):
            raise _fail(f"{where}.max_choices", f"must be a positive integer, got {max_choices!r}")
        for flag in ("required", "reverse_coded", "milestone"):
            if not isinstance(rv.get(flag, False), bool):
                raise _fail(f"{where}.{flag}", f"must be true or false, got {rv.get(flag)!r}")
        variables.append(
            Variable(
                id=vid,
                label_fr=label_fr,
                label_en=_as_label(rv.get("label_en"), f"{where}.label_en"),
                type=vtype,
                scale=scale,
                block=block,
                feeds=_as_str(rv.get("feeds"), f"{where}.feeds", default=""),
                required=bool(rv.get("required", False)),
                dimension=dim,
                fragility=frag,
                options=options,
                special_codes=specials,
                asked_to=asked,
                reverse_coded=bool(rv.get("reverse_coded", False)),
                milestone=bool(rv.get("milestone", False)),
                min=lo,
                max=hi,
                pattern=pattern,
                aliases=aliases,
                synonyms=_as_str_tuple(rv.get("synonyms"), f"{where}.synonyms"),
                max_choices=max_choices,
                level=level,
                key_indicator_for_stages=_as_str_tuple(
                    rv.get("key_indicator_for_stages"), f"{where}.key_indicator_for_stages"
                ),
            )
        )
    for role in (
        "identifier",
        "territory_code",
        "weight",
        "stratum",
        "psu",
        "fpc",
        "respondent_type",
    ):
        found = [v.id for v in variables if v.type == role]
        if len(found) > 1:
            raise _fail("key 'variables'", f"more than one variable of type '{role}': {found}")
    if not any(v.type == "identifier" for v in variables):
        raise _fail(
            "key 'variables'",
            "no variable of type 'identifier' (the respondent id every row needs)",
        )
    _check_header_names(variables)

    scoring = _as_mapping(raw.get("scoring"), "key 'scoring'")
    share = scoring.get("min_item_share", 2 / 3)
    if not isinstance(share, int | float) or not 0 < share <= 1:
        raise _fail("key 'scoring.min_item_share'", f"must be in (0, 1], got {share!r}")
    return Codebook(
        name=str(meta.get("name", source)),
        version=str(meta.get("version", "")),
        variables=tuple(variables),
        scales=scales,
        special_codes=special,
        dimensions=dims,
        fragility_domains=frags,
        blocks=blocks,
        respondent_groups=groups,
        missing_spellings=_as_str_tuple(
            raw.get("missing_spellings", [""]), "key 'missing_spellings'"
        ),
        min_item_share=float(share),
        sha256=digest,
        source=source,
    )


def load_codebook(path: str | Path | None = None) -> Codebook:
    """Load and validate a codebook.

    Parameters
    ----------
    path : str or Path, optional
        YAML file. ``None`` or ``"default"`` loads the codebook shipped with the package.

    Returns
    -------
    Codebook
        The validated codebook.

    Raises
    ------
    CodebookError
        When the file is missing, is not YAML, or a key is malformed (the message names the
        key and the problem).
    """
    if path is None or str(path) == "default":
        path = default_codebook_path()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CodebookError(f"codebook {path}: cannot be read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise CodebookError(f"codebook {path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CodebookError(f"codebook {path}: invalid YAML{where}") from None
    try:
        return _parse(raw, path.name, hashlib.sha256(data).hexdigest())
    except CodebookError as exc:
        raise CodebookError(f"{path.name}: {exc}") from None
