"""The rules an observatory declares in its codebook beyond the variables themselves.

* ``references:`` — lists of valid codes (a CSV of the official communes or EPCI…), each with
  its version; a variable names one with ``reference:`` (:func:`parse_references`);
* ``columns:`` — what to do with export columns the variables' names do not match: ``map``
  (source header → variable, inline or in a ``map_file`` CSV ``source,variable``), ``ignore``
  and ``keep`` (header patterns) (:func:`parse_column_rules`);
* per variable: routing (``relevant:``, :mod:`evalterritoire.codebook.conditions`), soft bounds
  (``warn_below``, ``warn_above``, ``warn_median_ratio``) and the reference list
  (:func:`variable_rules`), then the checks that need every variable (:func:`check_routing`,
  :func:`check_special_spellings`).

Files named here are relative to the codebook file and bounded in size.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from evalterritoire.codebook.conditions import Condition, parse_condition
from evalterritoire.codebook.model import (
    NUMERIC_TYPES,
    ColumnRules,
    ReferenceList,
    SpecialCode,
    Variable,
)
from evalterritoire.codebook.parsing import (
    _as_mapping,
    _as_str,
    _as_str_tuple,
    _fail,
    _number,
)
from evalterritoire.codebook.safeyaml import short_repr as _show
from evalterritoire.codebook.text import normalise_header, normalise_text
from evalterritoire.errors import CodebookError

__all__ = [
    "check_routing",
    "check_special_spellings",
    "parse_column_rules",
    "parse_references",
    "read_column_map",
    "variable_rules",
]

#: Largest reference list or column-mapping file read (bytes).
MAX_LIST_BYTES = 50_000_000
#: Types whose values are codes a reference list can hold.
_CODE_TYPES = frozenset({"territory_code", "identifier", "text", "stratum", "psu"})


def _read_csv_file(path: Path, where: str) -> tuple[list[dict[str, str]], list[str], str]:
    """Rows, columns and SHA-256 of a small UTF-8 CSV (``,`` or ``;``), or a clear error."""
    try:
        size = path.stat().st_size
        if size > MAX_LIST_BYTES:
            raise _fail(where, f"{path.name}: {size:,} bytes, more than {MAX_LIST_BYTES:,}")
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(where, f"file {path} cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _fail(where, f"{path.name}: not UTF-8 text") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = list(reader)
    return rows, [c.strip() for c in reader.fieldnames or []], hashlib.sha256(data).hexdigest()


def parse_references(raw: Mapping, base: Path | None) -> dict[str, ReferenceList]:
    """The ``references:`` section: name → :class:`ReferenceList` (codes read from the CSV).

    Each entry: ``file`` (CSV relative to the codebook), ``column`` (default: the first),
    ``version`` (reported in the ingestion report) and ``label``.
    """
    out: dict[str, ReferenceList] = {}
    for name, entry in _as_mapping(raw.get("references"), "key 'references'").items():
        where = f"key 'references.{name}'"
        entry = _as_mapping(entry, where)
        unknown = set(entry) - {"file", "column", "version", "label"}
        if unknown:
            raise _fail(where, f"unknown key(s) {sorted(map(str, unknown))}")
        file = _as_str(entry.get("file"), f"{where}.file")
        if not file:
            raise _fail(f"{where}.file", "a reference list needs its CSV file")
        if base is None:
            raise _fail(f"{where}.file", "a codebook given as data cannot name files")
        rows, columns, digest = _read_csv_file(base / file, f"{where}.file")
        column = _as_str(entry.get("column"), f"{where}.column") or (columns[:1] or [""])[0]
        if column not in columns:
            raise _fail(
                f"{where}.column", f"{file} has no column {_show(column)} (columns: {columns})"
            )
        codes = frozenset(
            (r.get(column) or "").strip().upper() for r in rows if (r.get(column) or "").strip()
        )
        if not codes:
            raise _fail(f"{where}.file", f"{file}: no code in column {_show(column)}")
        out[str(name)] = ReferenceList(
            name=str(name),
            codes=codes,
            version=str(entry.get("version") or ""),
            label=str(entry.get("label") or ""),
            file=Path(file).name,
            sha256=digest,
        )
    return out


def read_column_map(path: str | Path, where: str = "column map") -> dict[str, str]:
    """A column-mapping CSV (columns ``source`` and ``variable``) → {source header: target}.

    Raises
    ------
    CodebookError
        When the file cannot be read or lacks one of the two columns.
    """
    path = Path(path)
    rows, columns, _ = _read_csv_file(path, where)
    missing = {"source", "variable"} - set(columns)
    if missing:
        raise _fail(where, f"{path.name} lacks column(s) {sorted(missing)} (source, variable)")
    return {
        r["source"].strip(): r["variable"].strip()
        for r in rows
        if (r.get("source") or "").strip() and (r.get("variable") or "").strip()
    }


def parse_column_rules(
    raw: Mapping, base: Path | None, variables: Mapping[str, Variable]
) -> ColumnRules:
    """The ``columns:`` section: ``map`` / ``map_file``, ``ignore`` and ``keep``."""
    entry = _as_mapping(raw.get("columns"), "key 'columns'")
    unknown = set(entry) - {"map", "map_file", "ignore", "keep"}
    if unknown:
        raise _fail("key 'columns'", f"unknown key(s) {sorted(map(str, unknown))}")
    mapping: dict[str, str] = {}
    map_file = _as_str(entry.get("map_file"), "key 'columns.map_file'")
    if map_file:
        if base is None:
            raise _fail("key 'columns.map_file'", "a codebook given as data cannot name files")
        mapping.update(read_column_map(base / map_file, "key 'columns.map_file'"))
    for source, target in _as_mapping(entry.get("map"), "key 'columns.map'").items():
        mapping[str(source)] = _as_str(target, f"key 'columns.map.{source}'") or ""
    checked = check_column_map(mapping, variables, "key 'columns.map'")
    return ColumnRules(
        map=checked,
        ignore=_as_str_tuple(entry.get("ignore"), "key 'columns.ignore'"),
        keep=_as_str_tuple(entry.get("keep"), "key 'columns.keep'"),
    )


def check_column_map(
    mapping: Mapping[str, str], variables: Mapping[str, Variable], where: str
) -> dict[str, str]:
    """Normalised source header → target, each target a variable or one of its option columns.

    Raises
    ------
    CodebookError
        Naming the source header whose target is not a variable (nor ``<id>__<option>`` of a
        multi-select).
    """
    out: dict[str, str] = {}
    for source, target in mapping.items():
        base, _, option = target.partition("__")
        var = variables.get(base)
        ok = var is not None and (
            not option or (var.type == "multi_select" and option in var.options)
        )
        if not ok:
            raise _fail(
                where,
                f"source {_show(source)} maps to {_show(target)}, which is neither a variable "
                "nor an option column <id>__<option> of a multi-select",
            )
        out[normalise_header(source)] = target
    return out


def variable_rules(rv: Mapping, where: str, vtype: str, references: Iterable[str]) -> dict:
    """Routing, soft bounds and reference list of one variable entry."""
    text = _as_str(rv.get("relevant"), f"{where}.relevant")
    relevant: Condition | None = None
    if text is not None:
        try:
            relevant = parse_condition(text)
        except CodebookError as exc:
            raise _fail(f"{where}.relevant", str(exc)) from None
    bounds = {k: _number(rv.get(k), f"{where}.{k}") for k in ("warn_below", "warn_above")}
    ratio = _number(rv.get("warn_median_ratio"), f"{where}.warn_median_ratio")
    if any(v is not None for v in (*bounds.values(), ratio)) and vtype not in NUMERIC_TYPES:
        raise _fail(where, f"soft bounds (warn_…) apply to numbers, not to a {vtype} variable")
    if ratio is not None and ratio <= 1:
        raise _fail(f"{where}.warn_median_ratio", f"must be greater than 1, got {_show(ratio)}")
    lo, hi = bounds["warn_below"], bounds["warn_above"]
    if lo is not None and hi is not None and lo > hi:
        raise _fail(where, f"warn_below {lo} is greater than warn_above {hi}")
    reference = _as_str(rv.get("reference"), f"{where}.reference")
    if reference is not None:
        if reference not in set(references):
            raise _fail(f"{where}.reference", f"unknown reference list {_show(reference)}")
        if vtype not in _CODE_TYPES:
            raise _fail(f"{where}.reference", f"a {vtype} variable holds no codes to check")
    return {
        "relevant": relevant,
        "warn_below": lo,
        "warn_above": hi,
        "warn_median_ratio": ratio,
        "reference": reference,
    }


def check_routing(variables: list[Variable], special: Mapping[str, SpecialCode]) -> list[Variable]:
    """Check the routing conditions and give each routed variable the « not asked » code.

    A condition may only read other variables of the codebook, ``selected`` only a
    multi-select or categorical item, and a comparison's value must be a number for a numeric
    item and an option key for a categorical one.

    Returns
    -------
    list of Variable
        The variables, routed ones with the codebook's ``not_asked`` special code added.
    """
    from dataclasses import replace

    by_id = {v.id: v for v in variables}
    not_asked = next((k for k, sc in special.items() if sc.kind == "not_asked"), None)
    out = []
    for i, var in enumerate(variables):
        if var.relevant is None:
            out.append(var)
            continue
        where = f"key 'variables[{i}]' (id '{var.id}').relevant"
        for node in var.relevant.nodes():
            _check_node(node, var, by_id, where)
        if not_asked is None:
            raise _fail(
                where,
                "a routed variable needs the codebook to declare a special code of kind "
                "'not_asked' (e.g. non_pose: {code: -9, kind: not_asked, label_fr: Question "
                "non posée})",
            )
        codes = (
            var.special_codes if not_asked in var.special_codes else (*var.special_codes, not_asked)
        )
        out.append(replace(var, special_codes=codes))
    return out


def _check_node(node: Condition, var: Variable, by_id: Mapping[str, Variable], where: str) -> None:
    if not node.variable:
        return
    gate = by_id.get(node.variable)
    if gate is None:
        raise _fail(where, f"unknown variable {_show(node.variable)} in {_show(var.relevant.text)}")
    if gate.id == var.id:
        raise _fail(where, "a question cannot be routed on its own answer")
    if node.kind == "selected" and gate.type not in {
        "multi_select",
        "categorical",
        "respondent_type",
    }:
        raise _fail(where, f"selected() needs a multi-select or categorical item, not {gate.id!r}")
    if node.kind == "selected" and str(node.value) not in gate.options:
        raise _fail(where, f"{gate.id!r} has no option {_show(node.value)}")
    if node.kind != "compare":
        return
    numeric = gate.type in NUMERIC_TYPES
    if numeric and not isinstance(node.value, float):
        raise _fail(
            where, f"{gate.id!r} is a number: compare it with a number, not {_show(node.value)}"
        )
    if gate.options and not numeric and _option_key(node.value) not in gate.options:
        raise _fail(where, f"{gate.id!r} has no option {_show(node.value)}")
    if node.op not in {"=", "!="} and not numeric:
        raise _fail(where, f"{node.op} compares numbers; {gate.id!r} is not a number")


def _option_key(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


def check_special_spellings(
    special: Mapping[str, SpecialCode], variables: Iterable[Variable]
) -> None:
    """Refuse a spelling a cell could read as two special codes of one variable.

    Numeric codes are unique in the codebook; a label or spelling may be shared by two codes
    (« Ne sait pas » coded 9 on one list and 99 on another) as long as no variable accepts both.

    Raises
    ------
    CodebookError
        Naming the second code's key, the spelling, the code that already uses it and a
        variable accepting both.
    """
    owner: dict[str, str] = {}
    for sc in special.values():
        other = owner.setdefault(normalise_text(str(sc.code)), sc.key)
        if other != sc.key:
            raise _fail(
                f"key 'special_codes.{sc.key}'.code",
                f"spelling {_show(str(sc.code))} is already used by special code {_show(other)} "
                "(a cell would be ambiguous)",
            )
    spellings = {
        sc.key: [("", sc.key), (".label_fr", sc.label_fr), (".code", str(sc.code))]
        + [(".spellings", s) for s in sc.spellings]
        for sc in special.values()
    }
    for var in variables:
        seen: dict[str, str] = {}
        for key in var.special_codes:
            for suffix, spelling in spellings.get(key, ()):
                other = seen.setdefault(normalise_text(spelling), key)
                if other != key:
                    raise _fail(
                        f"key 'special_codes.{key}'{suffix}",
                        f"spelling {_show(spelling)} is already used by special code "
                        f"{_show(other)}, and variable '{var.id}' accepts both (a cell would "
                        "be ambiguous)",
                    )
