"""Loading and validating a codebook YAML file into a :class:`~evalterritoire.codebook.model.Codebook`.

Every malformed entry is refused with one message naming the key and the problem; the parsing
reads as the sections of the file: special codes, scales, labelled sets (dimensions, fragility
domains, blocks), respondent groups, variables (with their roles), rules, scoring.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from evalterritoire.codebook.model import (
    MISSING_VALUE,
    MULTI_ROLES,
    ROLES,
    SPECIAL_KINDS,
    TYPE_ROLES,
    VARIABLE_TYPES,
    Codebook,
    RespondentGroup,
    Rule,
    Scale,
    SpecialCode,
    Variable,
)
from evalterritoire.codebook.parsing import (
    _as_code,
    _as_label,
    _as_mapping,
    _as_str,
    _as_str_tuple,
    _describe,
    _fail,
    _number,
)
from evalterritoire.codebook.safeyaml import load_yaml_file
from evalterritoire.codebook.safeyaml import short_repr as _show
from evalterritoire.codebook.sections import (
    check_routing,
    check_special_spellings,
    parse_column_rules,
    parse_references,
    variable_rules,
)
from evalterritoire.codebook.text import normalise_header
from evalterritoire.errors import CodebookError

__all__ = ["default_codebook_path", "load_codebook"]


def default_codebook_path() -> Path:
    """Path of the codebook shipped with the package."""
    return Path(str(resources.files("evalterritoire") / "data" / "codebook.yaml"))


_VAR_KEYS = {
    "id", "label_fr", "label_en", "label_short", "type", "scale", "block", "feeds", "required",
    "dimension", "fragility", "options", "special_codes", "asked_to", "reverse_coded",
    "milestone", "min", "max", "pattern", "aliases", "synonyms", "max_choices", "level",
    "key_indicator_for_stages", "note", "role", "relevant", "warn_below", "warn_above",
    "warn_median_ratio", "reference", "source",
}  # fmt: skip
_TOP_KEYS = {
    "codebook", "missing_spellings", "special_codes", "scales", "maturity_dimensions",
    "fragility_domains", "blocks", "respondent_groups", "scoring", "variables", "rules",
    "references", "columns",
}  # fmt: skip
#: Roles a routing condition may name.
_GROUP_ROLES = ("respondent_type", "respondent_role")


def _check_header_names(variables: Iterable[Variable]) -> None:
    """Refuse a header name (id, French label or synonym) claimed by two variables.

    Names are compared after :func:`normalise_header`, as headers are matched.

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
        other_id, other_what = owner.setdefault(normalise_header(name), (var.id, what))
        if other_id != var.id:
            raise _fail(
                f"key 'variables[{i}]' (id '{var.id}').{what}",
                f"header name {_show(name)} is already claimed by variable '{other_id}' "
                f"(its {other_what.replace('synonyms', 'synonym')}); a column with this "
                "header would be ambiguous",
            )


def _parse_special_codes(raw: Mapping) -> dict[str, SpecialCode]:
    special: dict[str, SpecialCode] = {}
    for key, sc in _as_mapping(raw.get("special_codes"), "key 'special_codes'").items():
        where = f"key 'special_codes.{key}'"
        sc = _as_mapping(sc, where)
        code = sc.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise _fail(where, f"'code' must be an integer, got {_show(code)}")
        kind = _as_str(sc.get("kind"), f"{where}.kind", default="dont_know")
        if kind not in SPECIAL_KINDS:
            raise _fail(where, f"'kind' must be one of {sorted(SPECIAL_KINDS)}, got {_show(kind)}")
        special[str(key)] = SpecialCode(
            key=str(key),
            code=code,
            label_fr=_as_label(sc.get("label_fr"), f"{where}.label_fr", default=str(key)),
            kind=kind,
            spellings=_as_str_tuple(sc.get("spellings"), f"{where}.spellings"),
        )
    return special


def _parse_scale(sid: str, sc: Any) -> Scale:
    where = f"key 'scales.{sid}'"
    sc = _as_mapping(sc, where)
    stype = _as_str(sc.get("type"), f"{where}.type")
    if stype not in VARIABLE_TYPES:
        raise _fail(where, f"'type' must be one of {sorted(VARIABLE_TYPES)}, got {_show(stype)}")
    values: dict[int, str] = {}
    for k, v in _as_mapping(sc.get("values"), f"{where}.values").items():
        values[_as_code(k, f"{where}.values")] = _as_label(v, f"{where}.values.{k}")
    aliases: dict[str, int] = {}
    for k, v in _as_mapping(sc.get("aliases"), f"{where}.aliases").items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(
                f"{where}.aliases",
                f"alias {_show(k)} must map to an integer code, got {_describe(v)}",
            )
        if v not in values and values:
            raise _fail(f"{where}.aliases", f"alias {_show(k)} maps to unknown code {_show(v)}")
        aliases[str(k)] = v
    lo, hi = _number(sc.get("min"), f"{where}.min"), _number(sc.get("max"), f"{where}.max")
    if lo is not None and hi is not None and lo > hi:
        raise _fail(where, f"min {lo} is greater than max {hi}")
    anchors = {
        _as_code(k, f"{where}.anchors"): _as_label(v, f"{where}.anchors.{k}")
        for k, v in _as_mapping(sc.get("anchors"), f"{where}.anchors").items()
    }
    return Scale(
        id=str(sid), type=stype, values=values, min=lo, max=hi, aliases=aliases, anchors=anchors
    )


def _parse_labels(raw: Mapping, key: str) -> dict[str, str]:
    entries = _as_mapping(raw.get(key), f"key '{key}'")
    return {str(k): _as_label(v, f"key '{key}.{k}'") for k, v in entries.items()}


def _parse_groups(raw: Mapping) -> dict[str, RespondentGroup]:
    """Routing groups: a list of respondent types, or a mapping role → values."""
    groups: dict[str, RespondentGroup] = {}
    entries = _as_mapping(raw.get("respondent_groups"), "key 'respondent_groups'")
    for name, value in entries.items():
        where = f"key 'respondent_groups.{name}'"
        if isinstance(value, Mapping):
            conditions = {}
            for role, allowed in value.items():
                if role not in _GROUP_ROLES:
                    raise _fail(
                        where,
                        f"condition on {_show(role)}: a group names {' or '.join(_GROUP_ROLES)}",
                    )
                conditions[str(role)] = frozenset(_as_str_tuple(allowed, f"{where}.{role}"))
        else:
            conditions = {"respondent_type": frozenset(_as_str_tuple(value, where))}
        groups[str(name)] = RespondentGroup(name=str(name), conditions=conditions)
    if "all" in groups:
        raise _fail("key 'respondent_groups.all'", "'all' is implicit (every respondent)")
    return groups


class _Context:
    """What a variable entry is checked against (the sections parsed before the variables)."""

    def __init__(self, raw: Mapping, base: Path | None) -> None:
        self.special = _parse_special_codes(raw)
        self.references = parse_references(raw, base)
        self.scales = {
            str(sid): _parse_scale(str(sid), sc)
            for sid, sc in _as_mapping(raw.get("scales"), "key 'scales'").items()
        }
        self.dims = _parse_labels(raw, "maturity_dimensions")
        self.frags = _parse_labels(raw, "fragility_domains")
        self.blocks = _parse_labels(raw, "blocks")
        self.groups = _parse_groups(raw)


def _check_variable_keys(rv: Mapping, i: int, seen: set[str]) -> tuple[str, str]:
    """The id of a variable entry and the ``where`` of its messages."""
    where = f"key 'variables[{i}]'"
    vid = rv.get("id")
    if not isinstance(vid, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", vid):
        raise _fail(f"{where}.id", f"must be a snake_case ASCII identifier, got {_show(vid)}")
    where = f"key 'variables[{i}]' (id '{vid}')"
    if vid in seen:
        raise _fail(where, "duplicate variable id")
    seen.add(vid)
    unknown = set(rv) - _VAR_KEYS
    if unknown:
        raise _fail(where, f"unknown key(s) {sorted(unknown)}")
    if rv.get("label_fr") is None or rv.get("label_fr") == "":
        raise _fail(where, "missing required key 'label_fr'")
    return vid, where


def _variable_type_and_scale(rv: Mapping, where: str, ctx: _Context) -> tuple[str, str | None]:
    vtype = _as_str(rv.get("type"), f"{where}.type")
    if vtype not in VARIABLE_TYPES:
        raise _fail(f"{where}.type", f"must be one of {sorted(VARIABLE_TYPES)}, got {_show(vtype)}")
    scale = _as_str(rv.get("scale"), f"{where}.scale")
    if scale is not None and scale not in ctx.scales:
        raise _fail(f"{where}.scale", f"unknown scale {_show(scale)}")
    if vtype in {"likert", "ordinal"} and (scale is None or not ctx.scales[scale].values):
        raise _fail(f"{where}.scale", f"a {vtype} variable needs a scale with coded values")
    return vtype, scale


def _member(value: str | None, known: Iterable[str], where: str, what: str) -> str | None:
    if value is not None and value not in known:
        raise _fail(where, f"unknown {what} {_show(value)}")
    return value


def _variable_references(rv: Mapping, where: str, ctx: _Context) -> dict[str, Any]:
    """The entries that name other sections: special codes, groups, dimension, domain, block."""
    specials = _as_str_tuple(rv.get("special_codes"), f"{where}.special_codes")
    for s in specials:
        _member(s, ctx.special, f"{where}.special_codes", "special code")
    asked = _as_str_tuple(rv.get("asked_to"), f"{where}.asked_to")
    for g in asked:
        _member(g, {"all", *ctx.groups}, f"{where}.asked_to", "respondent group")
    block = _as_str(rv.get("block"), f"{where}.block", default="")
    if block and ctx.blocks and block not in ctx.blocks:
        raise _fail(
            f"{where}.block", f"unknown block {_show(block)} (declared: {', '.join(ctx.blocks)})"
        )
    dim = _as_str(rv.get("dimension"), f"{where}.dimension")
    frag = _as_str(rv.get("fragility"), f"{where}.fragility")
    return {
        "special_codes": specials,
        "asked_to": asked,
        "block": block,
        "dimension": _member(dim, ctx.dims, f"{where}.dimension", "maturity dimension"),
        "fragility": _member(frag, ctx.frags, f"{where}.fragility", "fragility domain"),
    }


def _variable_values(
    rv: Mapping, where: str, scale: str | None, ctx: _Context, vtype: str
) -> dict[str, Any]:
    """Options, aliases, range and pattern of a variable."""
    options = {
        str(k): _as_label(v, f"{where}.options.{k}")
        for k, v in _as_mapping(rv.get("options"), f"{where}.options").items()
    }
    if vtype in {"categorical", "multi_select", "respondent_type"} and not options:
        raise _fail(f"{where}.options", f"a {vtype} variable needs a non-empty 'options' mapping")
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
    codes = ctx.scales[scale].values if not options and scale is not None else {}
    for k, v in aliases.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise _fail(
                f"{where}.aliases",
                f"alias {_show(k)} must map to an option key or a code, got {_describe(v)}",
            )
        if options and v not in options:
            raise _fail(f"{where}.aliases", f"alias {_show(k)} maps to unknown option {_show(v)}")
        if codes and v not in codes:
            raise _fail(
                f"{where}.aliases",
                f"alias {_show(k)} maps to unknown code {_show(v)} of scale {_show(scale)}",
            )
    return {"options": options, "pattern": pattern, "min": lo, "max": hi, "aliases": aliases}


def _variable_flags(rv: Mapping, where: str, vtype: str) -> dict[str, Any]:
    """Level, choice limit, booleans and role of a variable."""
    level = _as_str(rv.get("level"), f"{where}.level", default="respondent")
    if level not in {"respondent", "territory"}:
        raise _fail(f"{where}.level", f"must be 'respondent' or 'territory', got {_show(level)}")
    max_choices = rv.get("max_choices")
    if max_choices is not None and (
        isinstance(max_choices, bool) or not isinstance(max_choices, int) or max_choices < 1
    ):
        raise _fail(f"{where}.max_choices", f"must be a positive integer, got {_show(max_choices)}")
    for flag in ("required", "reverse_coded", "milestone"):
        if not isinstance(rv.get(flag, False), bool):
            raise _fail(f"{where}.{flag}", f"must be true or false, got {_show(rv.get(flag))}")
    role = _as_str(rv.get("role"), f"{where}.role")
    if role is not None and role not in ROLES:
        raise _fail(f"{where}.role", f"unknown role {_show(role)} (roles: {', '.join(ROLES)})")
    implied = TYPE_ROLES.get(vtype)
    if role is not None and implied is not None and role != implied:
        raise _fail(
            f"{where}.role",
            f"a {vtype} variable plays the role {_show(implied)}, not {_show(role)}",
        )
    return {
        "level": level,
        "max_choices": max_choices,
        "required": bool(rv.get("required", False)),
        "reverse_coded": bool(rv.get("reverse_coded", False)),
        "milestone": bool(rv.get("milestone", False)),
        "role": role or implied,
    }


def _parse_variable(rv: Any, i: int, ctx: _Context, seen: set[str]) -> Variable:
    rv = _as_mapping(rv, f"key 'variables[{i}]'")
    vid, where = _check_variable_keys(rv, i, seen)
    vtype, scale = _variable_type_and_scale(rv, where, ctx)
    return Variable(
        id=vid,
        label_fr=_as_label(rv["label_fr"], f"{where}.label_fr"),
        label_en=_as_label(rv.get("label_en"), f"{where}.label_en"),
        label_short=_as_label(rv.get("label_short"), f"{where}.label_short"),
        source=_as_label(rv.get("source"), f"{where}.source"),
        type=vtype,
        scale=scale,
        feeds=_as_str(rv.get("feeds"), f"{where}.feeds", default=""),
        synonyms=_as_str_tuple(rv.get("synonyms"), f"{where}.synonyms"),
        key_indicator_for_stages=_as_str_tuple(
            rv.get("key_indicator_for_stages"), f"{where}.key_indicator_for_stages"
        ),
        **_variable_references(rv, where, ctx),
        **_variable_values(rv, where, scale, ctx, vtype),
        **_variable_flags(rv, where, vtype),
        **variable_rules(rv, where, vtype, ctx.references),
    )


def _check_roles(variables: Iterable[Variable]) -> None:
    """One variable per single role; a respondent id is required."""
    holders: dict[str, list[str]] = {}
    for var in variables:
        if var.role is not None:
            holders.setdefault(var.role, []).append(var.id)
    for role, ids in holders.items():
        if len(ids) > 1 and role not in MULTI_ROLES:
            raise _fail("key 'variables'", f"more than one variable with role '{role}': {ids}")
    if "respondent_id" not in holders:
        raise _fail(
            "key 'variables'",
            "no variable of type 'identifier' (the respondent id every row needs)",
        )


def _rule_values(value: Any, where: str) -> tuple[Any, ...]:
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise _fail(
                where, f"values must be codes, option keys or '{MISSING_VALUE}', got {_show(v)}"
            )
        out.append(v)
    if not out:
        raise _fail(where, "needs at least one value")
    return tuple(out)


def _parse_rule(entry: Any, i: int, known: Mapping[str, Variable]) -> Rule:
    where = f"key 'rules[{i}]'"
    entry = _as_mapping(entry, where)
    unknown = set(entry) - {"id", "if", "then", "label_fr"}
    if unknown or "if" not in entry or "then" not in entry:
        raise _fail(where, "a rule has 'id', 'if: {variable, in}', 'then: {variables, in}'")
    gate = _as_mapping(entry["if"], f"{where}.if")
    then = _as_mapping(entry["then"], f"{where}.then")
    gate_var = _as_str(gate.get("variable"), f"{where}.if.variable")
    deps = _as_str_tuple(then.get("variables"), f"{where}.then.variables")
    for name, key in [(gate_var, "if.variable"), *((d, "then.variables") for d in deps)]:
        if name not in known:
            raise _fail(f"{where}.{key}", f"unknown variable {_show(name)}")
    if not deps:
        raise _fail(f"{where}.then.variables", "names no variable")
    return Rule(
        id=_as_str(entry.get("id"), f"{where}.id", default=f"rule_{i + 1}"),
        if_variable=gate_var,
        if_values=_rule_values(gate.get("in"), f"{where}.if.in"),
        then_variables=deps,
        then_values=_rule_values(then.get("in"), f"{where}.then.in"),
        label_fr=_as_label(entry.get("label_fr"), f"{where}.label_fr"),
    )


def _parse_scoring(raw: Mapping) -> float:
    scoring = _as_mapping(raw.get("scoring"), "key 'scoring'")
    share = scoring.get("min_item_share", 2 / 3)
    if not isinstance(share, int | float) or not 0 < share <= 1:
        raise _fail("key 'scoring.min_item_share'", f"must be in (0, 1], got {_show(share)}")
    return float(share)


def _parse(raw: Any, source: str, digest: str, base: Path | None = None) -> Codebook:
    raw = _as_mapping(raw, "(top level)")
    unknown = sorted(set(raw) - _TOP_KEYS, key=str)
    if unknown:
        raise _fail("(top level)", f"unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    meta = _as_mapping(raw.get("codebook"), "key 'codebook'")
    if "variables" not in raw:
        raise _fail("(top level)", "missing required key 'variables'")
    ctx = _Context(raw, base)
    raw_vars = raw["variables"]
    if not isinstance(raw_vars, list) or not raw_vars:
        raise _fail("key 'variables'", "expected a non-empty list of variables")
    seen: set[str] = set()
    variables = [_parse_variable(rv, i, ctx, seen) for i, rv in enumerate(raw_vars)]
    variables = check_routing(variables, ctx.special)
    check_special_spellings(ctx.special, variables)
    _check_roles(variables)
    _check_header_names(variables)
    by_id = {v.id: v for v in variables}
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        raise _fail("key 'rules'", "expected a list of rules")
    return Codebook(
        name=str(meta.get("name", source)),
        version=str(meta.get("version", "")),
        variables=tuple(variables),
        scales=ctx.scales,
        special_codes=ctx.special,
        dimensions=ctx.dims,
        fragility_domains=ctx.frags,
        blocks=ctx.blocks,
        respondent_groups=ctx.groups,
        missing_spellings=_as_str_tuple(
            raw.get("missing_spellings", [""]), "key 'missing_spellings'"
        ),
        min_item_share=_parse_scoring(raw),
        sha256=digest,
        source=source,
        rules=tuple(_parse_rule(r, i, by_id) for i, r in enumerate(rules_raw)),
        references=ctx.references,
        columns=parse_column_rules(raw, base, by_id),
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
    raw, digest = load_yaml_file(path, "codebook", CodebookError)
    try:
        return _parse(raw, path.name, digest, path.parent)
    except CodebookError as exc:
        raise CodebookError(f"{path.name}: {exc}") from None
