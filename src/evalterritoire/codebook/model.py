"""Codebook: variables, roles, scales, special codes, rules, dimensions and fragility domains.

The codebook is a YAML file (format in README.md, "Codebook format"; loaded by
:func:`~evalterritoire.codebook.load.load_codebook`). The package ships a default codebook
implementing the reference instrument; a study may point to its own.

Roles
-----
Code never names a column of the instrument: it asks the codebook for the variable playing a
*role* (:data:`ROLES`): "the territory column", "the weight", "the wave". A variable declares its
role with ``role:``; the design and identity types imply theirs (a variable of type
``territory_code`` is the ``territory``, ``weight`` the ``weight``…). Most roles are held by one
variable at most; ``free_text`` may be held by several.

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from evalterritoire.codebook.conditions import Condition
from evalterritoire.codebook.text import normalise_header, normalise_text
from evalterritoire.errors import CodebookError

__all__ = [
    "MISSING_VALUE",
    "NUMERIC_TYPES",
    "ROLES",
    "VARIABLE_TYPES",
    "Codebook",
    "ColumnRules",
    "ReferenceList",
    "RespondentGroup",
    "Rule",
    "Scale",
    "SpecialCode",
    "Variable",
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

#: Column roles the code asks for (role → what it means). ``free_text`` may be held by several
#: variables; every other role by one at most.
ROLES: Mapping[str, str] = {
    "respondent_id": "identifier of a respondent (unique within a wave)",
    "wave": "survey wave of a row (the duplicate key is respondent id × wave)",
    "territory": "code of the territory a respondent answers about (the reporting domain)",
    "territory_name": "name of the territory",
    "territory_level": "administrative level of the territory (commune, EPCI…)",
    "region": "code of the region of the territory",
    "region_name": "name of the region of the territory",
    "respondent_type": "type of actor (the respondent-type domain, routing groups)",
    "respondent_role": "role of the respondent in the initiative (routing groups)",
    "weight": "design weight",
    "stratum": "design stratum",
    "psu": "primary sampling unit",
    "fpc": "finite population correction (population size or sampling fraction)",
    "consent": "consent to quote free text (1 = yes)",
    "declared_stage": "stage the respondents declare (compared with the statistical stage)",
    "collection_date": "date of the answer",
    "population": "population of the territory (context)",
    "free_text": "an open answer that may be quoted anonymously (« paroles d'acteurs »)",
}
MULTI_ROLES = frozenset({"free_text"})
#: Roles implied by a variable's type when it declares none.
TYPE_ROLES: Mapping[str, str] = {
    "identifier": "respondent_id",
    "territory_code": "territory",
    "respondent_type": "respondent_type",
    "weight": "weight",
    "stratum": "stratum",
    "psu": "psu",
    "fpc": "fpc",
}
#: Spelling of "no answer" in a rule's list of values.
MISSING_VALUE = "missing"


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
    role : str or None
        Column role (:data:`ROLES`) declared with ``role:`` or implied by the type.
    label_short : str
        Short French label for charts and narrow tables (``label_fr`` when not declared).
    relevant : Condition or None
        Routing: when the question was asked (:mod:`evalterritoire.codebook.conditions`). Where
        it is false, an empty cell is « not asked » (the codebook's ``not_asked`` special code,
        added to ``special_codes``) and an answer is an error.
    warn_below, warn_above : float or None
        Soft bounds: values beyond them are valid but counted in a warning.
    warn_median_ratio : float or None
        Soft bound relative to the median (extreme weights): values above ``ratio × median``
        or below ``median / ratio`` are counted in a warning.
    reference : str or None
        Name of the codebook's reference list (``references:``) the codes must belong to.
    source : str
        Where a territory-level statistic comes from, with its year (« INSEE, recensement de
        la population 2021 »), shown beside it in the reports; empty when not declared.
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
    role: str | None = None
    label_short: str = ""
    relevant: Condition | None = None
    warn_below: float | None = None
    warn_above: float | None = None
    warn_median_ratio: float | None = None
    reference: str | None = None
    source: str = ""

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
class RespondentGroup:
    """A routing group: the respondents an item is asked to (``asked_to``).

    Attributes
    ----------
    name : str
        Group name used in ``asked_to``.
    conditions : mapping of str to frozenset of str
        Role (``respondent_type``, ``respondent_role``…) → the values that belong to the group.
        A respondent belongs when every condition holds; ``all`` has none.
    """

    name: str
    conditions: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """A cross-column coherence rule: *if* a variable takes some values, *then* others must too.

    Declared in the codebook's ``rules:`` list::

        - id: sans_partenariat
          if: {variable: a_un_partenariat, in: [0]}
          then: {variables: [nb_partenaires, modes_partenariat], in: [0, missing]}

    A row breaking the rule is quarantined with a reason naming both columns and their values.
    Values are codes (numbers), option keys, or ``missing`` (no answer); a multi-select item's
    value is its number of ticked options.

    Attributes
    ----------
    id : str
        Rule name.
    if_variable : str
        Gate variable.
    if_values : tuple
        Gate values (the rule applies to rows whose gate takes one of them).
    then_variables : tuple of str
        Dependent variables.
    then_values : tuple
        Values the dependent variables may take when the rule applies.
    label_fr : str
        Optional French wording of the rule (quarantine reports).
    """

    id: str
    if_variable: str
    if_values: tuple[Any, ...]
    then_variables: tuple[str, ...]
    then_values: tuple[Any, ...]
    label_fr: str = ""


@dataclass(frozen=True)
class ReferenceList:
    """A list of valid codes (e.g. the official list of communes), declared in ``references:``.

    Attributes
    ----------
    name : str
        Name used by the variables' ``reference:``.
    codes : frozenset of str
        The valid codes (as written in the list, trimmed; INSEE-style codes upper-cased).
    version : str
        Version of the list (reported in the ingestion report).
    label : str
        What the list is.
    file : str
        File name of the list.
    sha256 : str
        Hash of the list's file.
    """

    name: str
    codes: frozenset[str]
    version: str = ""
    label: str = ""
    file: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class ColumnRules:
    """What to do with export columns the variables' names do not match (``columns:``).

    Attributes
    ----------
    map : mapping of str to str
        Normalised source header (:func:`~evalterritoire.codebook.text.normalise_header`) →
        variable id, or ``<id>__<option>`` for one 0/1 column of a multi-select.
    ignore : tuple of str
        Header patterns (``fnmatch``: ``_*``, ``meta/*``) of columns dropped on purpose.
    keep : tuple of str
        Header patterns of columns kept as text metadata in the typed data (named by their
        header).
    """

    map: Mapping[str, str] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()

    def target(self, header: str) -> str | None:
        """The variable (or option column) a header is mapped to, if any."""
        return self.map.get(normalise_header(header))

    def ignores(self, header: str) -> bool:
        """Whether a header matches an ``ignore`` pattern."""
        return _matches(self.ignore, header)

    def keeps(self, header: str) -> bool:
        """Whether a header matches a ``keep`` pattern."""
        return _matches(self.keep, header)


def _matches(patterns: tuple[str, ...], header: str) -> bool:
    from fnmatch import fnmatchcase

    key = normalise_text(header)
    return any(fnmatchcase(key, normalise_text(p)) for p in patterns)


@dataclass(frozen=True)
class Codebook:
    """A loaded, validated codebook (immutable).

    Use :func:`~evalterritoire.codebook.load.load_codebook` to build one.
    """

    name: str
    version: str
    variables: tuple[Variable, ...]
    scales: Mapping[str, Scale]
    special_codes: Mapping[str, SpecialCode]
    dimensions: Mapping[str, str]
    fragility_domains: Mapping[str, str]
    blocks: Mapping[str, str]
    respondent_groups: Mapping[str, RespondentGroup]
    missing_spellings: tuple[str, ...] = ("",)
    min_item_share: float = 2 / 3
    sha256: str = ""
    source: str = ""
    rules: tuple[Rule, ...] = ()
    references: Mapping[str, ReferenceList] = field(default_factory=dict)
    columns: ColumnRules = field(default_factory=ColumnRules)

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

    # ------------------------------------------------------------------- roles
    @cached_property
    def _by_role(self) -> dict[str, tuple[Variable, ...]]:
        out: dict[str, list[Variable]] = {}
        for var in self.variables:
            if var.role is not None:
                out.setdefault(var.role, []).append(var)
        return {role: tuple(found) for role, found in out.items()}

    def role(self, name: str) -> Variable | None:
        """The variable playing a role (:data:`ROLES`), or None when the codebook has none.

        Raises
        ------
        CodebookError
            For a name that is not a role.
        """
        if name not in ROLES:
            raise CodebookError(f"unknown column role {name!r} (roles: {', '.join(ROLES)})")
        found = self._by_role.get(name, ())
        return found[0] if found else None

    def column(self, name: str) -> str | None:
        """Id (typed-data column) of the variable playing a role, or None."""
        var = self.role(name)
        return var.id if var is not None else None

    def require(self, name: str, purpose: str) -> str:
        """Id of the variable playing a role, or a clear error saying what needs it.

        Parameters
        ----------
        name : str
            A role of :data:`ROLES`.
        purpose : str
            What needs the role (completes the message: "… needed for ``purpose``").

        Raises
        ------
        CodebookError
            When no variable of the codebook plays the role.
        """
        column = self.column(name)
        if column is None:
            raise CodebookError(
                f"codebook '{self.name}' declares no variable with role '{name}' "
                f"({ROLES[name]}), needed for {purpose}; add 'role: {name}' to that variable"
            )
        return column

    def with_role(self, name: str) -> list[Variable]:
        """Every variable playing a role (several for ``free_text``)."""
        self.role(name)
        return list(self._by_role.get(name, ()))

    @property
    def roles(self) -> dict[str, str]:
        """Role → variable id, for the single-variable roles the codebook declares."""
        return {r: found[0].id for r, found in self._by_role.items() if r not in MULTI_ROLES}

    # ----------------------------------------------------------------- routing
    def group_masks(self, values: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Membership of every routing group, vectorised.

        Parameters
        ----------
        values : mapping of str to array-like
            Role (``respondent_type``, ``respondent_role``…) → one value per respondent
            (missing values as ``None`` or ``""``). A role absent here satisfies no condition.

        Returns
        -------
        dict of str to ndarray of bool
            Group name → membership; ``all`` is always present and true.
        """
        arrays = {k: np.asarray(v, dtype=object) for k, v in values.items()}
        n = len(next(iter(arrays.values()))) if arrays else 0
        out = {"all": np.ones(n, dtype=bool)}
        for name, group in self.respondent_groups.items():
            mask = np.ones(n, dtype=bool)
            for role, allowed in group.conditions.items():
                column = arrays.get(role)
                mask &= np.isin(column, list(allowed)) if column is not None else np.zeros(n, bool)
            out[name] = mask
        return out

    def groups_for(self, values: Mapping[str, Any]) -> set[str]:
        """Routing groups a respondent belongs to (``all`` included).

        Parameters
        ----------
        values : mapping of str to str or None
            Role → the respondent's value (``{"respondent_type": "association", …}``).
        """
        masks = self.group_masks({k: [v] for k, v in values.items()})
        return {name for name, mask in masks.items() if bool(mask[0])}

    def dimension_items(self, dimension: str, *, likert_only: bool = True) -> list[Variable]:
        """Items feeding a maturity dimension (Likert only by default, milestones excluded)."""
        if dimension not in self.dimensions:
            raise CodebookError(f"unknown maturity dimension '{dimension}'")
        return [
            v
            for v in self.variables
            if v.dimension == dimension and (not likert_only or v.type == "likert")
        ]

    @property
    def score_range(self) -> tuple[float, float]:
        """Range of the dimension scores: the span of the maturity items' scales (else 1–5).

        A dimension score is a mean of its Likert items (reverse-coded ones mirrored on their
        scale), so it lives on their scale.
        """
        lows, highs = [], []
        for dim in self.dimensions:
            for var in self.dimension_items(dim):
                lo, hi = self.value_range(var.id)
                if lo is not None and hi is not None:
                    lows.append(float(lo))
                    highs.append(float(hi))
        return (min(lows), max(highs)) if lows else (1.0, 5.0)

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
        """Header name (id, French label or synonym) after :func:`normalise_text` → variable id."""
        out: dict[str, str] = {}
        for var in self.variables:
            for name in (var.id, var.label_fr, *var.synonyms):
                out.setdefault(normalise_text(name), var.id)
        return out

    @cached_property
    def header_index(self) -> dict[str, str]:
        """Header name after :func:`~evalterritoire.codebook.text.normalise_header` → variable id.

        The key headers are matched with: case, accents, spaces, ``_`` and ``-`` folded, so
        « Nom commune » finds ``nom_commune``.
        """
        out: dict[str, str] = {}
        for var in self.variables:
            for name in (var.id, var.label_fr, *var.synonyms):
                out.setdefault(normalise_header(name), var.id)
        return out

    @property
    def not_asked_key(self) -> str | None:
        """Key of the special code of kind ``not_asked`` (« question non posée »), if any."""
        return next((k for k, sc in self.special_codes.items() if sc.kind == "not_asked"), None)

    @cached_property
    def special_lookup(self) -> dict[str, str]:
        """Normalised spelling → special-code key (symbolic key and numeric code included)."""
        out: dict[str, str] = {}
        for sc in self.special_codes.values():
            for s in (sc.key, sc.label_fr, str(sc.code), *sc.spellings):
                out.setdefault(normalise_text(s), sc.key)
        return out

    def special_lookup_of(self, var_id: str) -> dict[str, str]:
        """Normalised spelling → key of the special codes one variable declares.

        Built from the variable's own codes, so that two codes sharing a label (« Ne sait
        pas » coded 9 on one item and 999 on another) each resolve on their item.
        """
        out: dict[str, str] = {}
        for key in self[var_id].special_codes:
            sc = self.special_codes[key]
            for s in (sc.key, sc.label_fr, str(sc.code), *sc.spellings):
                out.setdefault(normalise_text(s), key)
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
