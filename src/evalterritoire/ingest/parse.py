"""Cleaning and parsing of cell texts with the codebook (French-locale values).

Owns the per-variable parsing spec (:class:`_Spec`, built from the codebook: labels, aliases,
scales, ranges, special codes, missing spellings), the parsers of one distinct text — numbers
with a decimal comma and (narrow) no-break-space thousands, dates (ISO, day-first, Excel
serials), options, multi-selects split on the declared options, identifiers, INSEE territory
codes — and their vectorised fast path over the distinct texts of a column
(:func:`_parse_uniques`), plus the detection and opt-in repair of double-encoded text
(mojibake). Every parse returns a status (missing, value, special, error) with the rule broken
or the normalisation applied, so that the caller can count and report it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, Variable, normalise_text
from evalterritoire.codebook.model import FLOAT_TYPES, INTEGER_TYPES
from evalterritoire.ingest.raw import _Raw
from evalterritoire.ingest.report import _norm_add

#: Above this many distinct texts in a column, simple texts are parsed vectorised.
_PY_UNIQUE_LIMIT = 4000

_GARBLED = re.compile(
    "Ã[\u0080-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039"
    "\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a"
    "\u0153\u017e\u0178]|â€|Â[\u00a0-\u00bf]"
)
_NUMBER = re.compile(r"^([+-]?)(\d{1,3}(?:[ \u00a0\u202f\u2007]\d{3})+|\d+)(?:([.,])(\d+))?$")
_SCI = re.compile(r"^[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
_FR_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?: \d{1,2}:\d{2}(?::\d{2})?)?$")
_EXCEL_EPOCH = dt.date(1899, 12, 30)
_ID_STRUCT = re.compile(r"^[^\s]+(?:.*[^\s])?$")

_MISSING, _VALUE, _SPECIAL, _ERROR = 0, 1, 2, 3
_SEPS = frozenset(",;| ")
_SPACES_NUM = re.compile(r"[ \u00a0\u202f\u2007]")


@dataclass
class _Spec:
    var: Variable
    kind: str
    lookup: dict[str, Any]
    code_keys: frozenset[str]
    label_keys: frozenset[str]
    allowed: frozenset[float] | None
    lo: float | None
    hi: float | None
    pattern: re.Pattern | None
    specials: dict[str, str]
    all_specials: dict[str, str]
    missing: frozenset[str]
    options: list[tuple[str, str]]
    special_desc: str = ""

    @property
    def scale(self) -> str:
        """The item's codes or range, in words."""
        if self.allowed is not None:
            return f"codes {', '.join(str(int(a)) for a in sorted(self.allowed))}"
        if self.lo is not None or self.hi is not None:
            lo = "" if self.lo is None else _fmt(self.lo)
            hi = "" if self.hi is None else _fmt(self.hi)
            return f"range [{lo}, {hi}]"
        return self.var.type

    @property
    def describe(self) -> str:
        """What the item accepts, in words, its special codes included."""
        return self.scale + self.special_desc


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _build_spec(var: Variable, codebook: Codebook) -> _Spec:
    if var.type in INTEGER_TYPES:
        kind = "int"
    elif var.type in FLOAT_TYPES:
        kind = "float"
    elif var.type in {"categorical", "respondent_type"}:
        kind = "option"
    else:
        kind = {
            "multi_select": "multi",
            "date": "date",
            "identifier": "identifier",
            "territory_code": "territory",
        }.get(var.type, "text")
    lookup = codebook.value_lookup(var.id) if kind in {"int", "option", "multi"} else {}
    scale = codebook.scales.get(var.scale or "")
    allowed = None
    code_keys: set[str] = set()
    label_keys: set[str] = set()
    if kind == "int" and scale is not None and scale.values:
        allowed = frozenset(float(c) for c in scale.values)
        code_keys = {normalise_text(str(c)) for c in scale.values}
        label_keys = {normalise_text(lbl) for lbl in scale.values.values()}
    if var.options:
        code_keys = {normalise_text(k) for k in var.options}
        label_keys = {normalise_text(lbl) for lbl in var.options.values()}
    lo, hi = codebook.value_range(var.id) if kind in {"int", "float"} else (None, None)
    options = []
    if kind == "multi":
        options = sorted(
            {(k, v) for k, v in lookup.items() if k},
            key=lambda kv: (-len(kv[0]), kv[0]),
        )
    return _Spec(
        var=var,
        kind=kind,
        lookup=lookup,
        code_keys=frozenset(code_keys),
        label_keys=frozenset(label_keys),
        allowed=allowed,
        lo=lo,
        hi=hi,
        pattern=re.compile(var.pattern) if var.pattern else None,
        specials=codebook.special_lookup_of(var.id),
        all_specials=dict(codebook.special_lookup),
        missing=frozenset(normalise_text(m) for m in codebook.missing_spellings),
        options=options,
        special_desc=_special_desc(var, codebook),
    )


def _special_desc(var: Variable, codebook: Codebook) -> str:
    """`` or the special codes -1 (« Ne sait pas »), …`` for the codes an item accepts."""
    shown = [
        f"{sc.code} (« {sc.label_fr} »)"
        for key in var.special_codes
        if (sc := codebook.special_codes.get(key)) is not None and sc.kind != "not_asked"
    ]
    if not shown:
        return ""
    return f" or the special code{'s' if len(shown) > 1 else ''} " + ", ".join(shown)


def _parse_number(t: str) -> tuple[float, list[str]] | None:
    """A number as a French-locale export writes it, with the normalisations it needed.

    Decimal comma (``decimal_comma``), space or no-break-space thousands
    (``thousands_separator``), exponent notation as spreadsheets write it (``1e0``, ``2,5E3``:
    ``exponent_notation``); None when the text is not a number.
    """
    m = _NUMBER.match(t)
    if not m:
        if _SCI.match(t):
            return float(t.replace(",", ".")), ["exponent_notation"]
        return None
    sign, whole, sep, frac = m.groups()
    kinds = []
    if _SPACES_NUM.search(whole):
        kinds.append("thousands_separator")
        whole = _SPACES_NUM.sub("", whole)
    if sep == ",":
        kinds.append("decimal_comma")
    value = float(f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}")
    return value, kinds


def _parse_date(t: str) -> tuple[str, Any, str]:
    """Return (status, value|rule, detail or norm kind)."""
    m = _ISO_DATE.match(t)
    if m:
        y, mo, d = (int(x) for x in m.groups())
        try:
            return "value", dt.date(y, mo, d), ""
        except ValueError:
            return "error", "impossible_date", f"{t!r} is not a calendar date"
    m = _FR_DATE.match(t)
    if m:
        d, mo, y = m.groups()
        if len(y) == 2:
            return "error", "ambiguous_date", "two-digit year is ambiguous; write the year in full"
        try:
            return "value", dt.date(int(y), int(mo), int(d)), "day_first_date"
        except ValueError:
            return "error", "impossible_date", f"{t!r} is not a calendar date (read day first)"
    num = _parse_number(t)
    if num is not None and 10000 <= num[0] <= 99999:
        return "value", _EXCEL_EPOCH + dt.timedelta(days=int(num[0])), "excel_serial_date"
    return "error", "not_a_date", "not a date (expected AAAA-MM-JJ, JJ/MM/AAAA or an Excel serial)"


def _parse_one(spec: _Spec, text: str) -> tuple[int, Any, str | None, str | None]:
    """Parse one distinct cell text: (status, value, rule, detail-or-norm-kind).

    Missing spellings and the item's special codes first, then the parser of the variable's
    kind (:data:`_PARSERS`).
    """
    t = text.strip().strip("\u00a0\u202f")
    trimmed = "trim_whitespace" if t != text else None
    key = normalise_text(t)
    if t == "" or key in spec.missing:
        return _MISSING, None, None, ("missing_spelling" if t else None)
    if key in spec.specials:
        return _SPECIAL, spec.specials[key], None, "special_code"
    number_key = _integral_key(t)
    if number_key is not None and number_key in spec.specials:
        return _SPECIAL, spec.specials[number_key], None, "special_code_as_number"
    undeclared = spec.all_specials.get(key) or (
        spec.all_specials.get(number_key) if number_key is not None else None
    )
    parser = _PARSERS.get(spec.kind, _parse_text)
    return parser(spec, t, key, trimmed, undeclared)


def _integral_key(t: str) -> str | None:
    """The integer a numeric cell holds, as text (``"9.0"``, ``"9,0"``, ``"9e0"`` → ``"9"``)."""
    if not t or not (t[0].isdigit() or t[0] in "+-"):
        return None
    num = _parse_number(t)
    if num is None or not num[0].is_integer() or abs(num[0]) >= 1e15:
        return None
    return str(int(num[0]))


def _special_not_allowed(undeclared: str) -> tuple[int, Any, str | None, str | None]:
    return (
        _ERROR,
        None,
        "special_not_allowed",
        f"special code '{undeclared}' is not declared for this item",
    )


def _parse_numeric(
    spec: _Spec, t: str, key: str, trimmed: str | None, undeclared: str | None
) -> tuple[int, Any, str | None, str | None]:
    """A code, a label or alias of a coded item, or a number (decimal comma, thousands)."""
    if key in spec.lookup and spec.kind == "int":
        value = float(spec.lookup[key])
        norm = (
            None
            if key in spec.code_keys
            else ("label_to_code" if key in spec.label_keys else "alias")
        )
        return _VALUE, value, None, norm or trimmed
    num = _parse_number(t)
    if num is None:
        if undeclared:
            return _special_not_allowed(undeclared)
        if spec.allowed is not None:
            return _ERROR, None, "unknown_label", f"unknown label; expected {spec.describe}"
        return _ERROR, None, "not_a_number", "not a number"
    value, kinds = num
    if spec.kind == "int":
        if not value.is_integer():
            return _ERROR, None, "not_integer", "not a whole number (never truncated)"
        if "." in t or "," in t:
            kinds.append("integral_float")
    if _out_of_range(spec, value):
        if undeclared:
            return _special_not_allowed(undeclared)
        return _ERROR, None, "out_of_range", f"out of range; expected {spec.describe}"
    if spec.var.type in {"weight", "fpc"} and value <= 0:
        return _ERROR, None, "not_positive", f"a {spec.var.type} must be greater than 0"
    return _VALUE, value, None, (kinds[-1] if kinds else trimmed)


def _out_of_range(spec: _Spec, value: float) -> bool:
    """Whether a number is not one of the item's codes, or outside its declared range."""
    if spec.allowed is not None:
        return value not in spec.allowed
    return (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi)


def _parse_option(
    spec: _Spec, t: str, key: str, trimmed: str | None, undeclared: str | None
) -> tuple[int, Any, str | None, str | None]:
    """An option key, or its label or alias (case-insensitively); ``2.0`` is option ``2``."""
    if key in spec.lookup:
        value = spec.lookup[key]
        norm = None if t == value else ("label_to_code" if key in spec.label_keys else "alias")
        if norm is None and key in spec.code_keys and t != value:
            norm = "case"
        return _VALUE, value, None, norm or trimmed
    number_key = _integral_key(t)
    if number_key is not None and number_key in spec.lookup:
        return _VALUE, spec.lookup[number_key], None, "integral_float"
    if undeclared:
        return _special_not_allowed(undeclared)
    return (
        _ERROR,
        None,
        "unknown_option",
        f"unknown option; expected one of {', '.join(spec.var.options)}{spec.special_desc}",
    )


def _parse_date_cell(
    spec: _Spec, t: str, key: str, trimmed: str | None, undeclared: str | None
) -> tuple[int, Any, str | None, str | None]:
    """A date (:func:`_parse_date`)."""
    status, val, extra = _parse_date(t)
    if status == "error":
        return _ERROR, None, val, extra
    return _VALUE, val, None, extra or trimmed


def _parse_text(
    spec: _Spec, t: str, key: str, trimmed: str | None, undeclared: str | None
) -> tuple[int, Any, str | None, str | None]:
    """Free text, an identifier or an INSEE territory code, checked against the pattern.

    An identifier in scientific notation is an error (its digits are lost); a territory code
    is repaired (:func:`_territory_code`).
    """
    norm = trimmed
    if spec.kind == "identifier" and _SCI.match(t):
        return (
            _ERROR,
            None,
            "scientific_notation",
            "identifier in scientific notation: digits are lost, re-export ids as text",
        )
    if spec.kind == "territory":
        t, norm = _territory_code(t, norm)
    if spec.pattern is not None and not spec.pattern.search(t):
        return _ERROR, None, "pattern", f"does not match the pattern {spec.pattern.pattern}"
    if spec.kind == "text" and undeclared and spec.var.special_codes:
        return _special_not_allowed(undeclared)
    return _VALUE, t, None, norm


def _territory_code(t: str, norm: str | None) -> tuple[str, str | None]:
    """An INSEE code as written by a spreadsheet, repaired, with the last repair's name."""
    if re.fullmatch(r"\d+\.0+", t):
        t, norm = t.split(".")[0], "drop_float_suffix"
    if t != t.upper():
        t, norm = t.upper(), "uppercase"
    if re.fullmatch(r"\d{4}", t):
        t, norm = "0" + t, "zero_pad"
    return t, norm


def _parse_multi(
    spec: _Spec, t: str, key: str, trimmed: str | None, undeclared: str | None
) -> tuple[int, Any, str | None, str | None]:
    """Options ticked in one cell, split on the declared options (longest first)."""
    chosen: list[str] = []
    pos, n = 0, len(key)
    while pos < n:
        while pos < n and key[pos] in _SEPS:
            pos += 1
        if pos >= n:
            break
        for cand, opt in spec.options:
            end = pos + len(cand)
            if key.startswith(cand, pos) and (end == n or key[end] in _SEPS):
                chosen.append(str(opt))
                pos = end
                break
        else:
            if undeclared and not chosen:
                return _special_not_allowed(undeclared)
            stop = pos
            while stop < n and key[stop] not in ",;|":
                stop += 1
            return (
                _ERROR,
                None,
                "unknown_option",
                f"unknown option {key[pos:stop].strip()!r}; declared options are "
                f"{', '.join(spec.var.options)}",
            )
    if not chosen:
        return _MISSING, None, None, None
    picked = frozenset(chosen)
    if spec.var.max_choices is not None and len(picked) > spec.var.max_choices:
        return (
            _ERROR,
            None,
            "too_many_choices",
            f"{len(picked)} options ticked, at most {spec.var.max_choices} allowed",
        )
    return _VALUE, picked, None, "multi_select_split"


#: The parser of each kind of variable (:attr:`_Spec.kind`); free text for the others.
_PARSERS = {
    "int": _parse_numeric,
    "float": _parse_numeric,
    "option": _parse_option,
    "multi": _parse_multi,
    "date": _parse_date_cell,
}


@dataclass
class _Parsed:
    status: np.ndarray  # per unique
    value: np.ndarray  # per unique (float or object)
    rule: np.ndarray
    detail: np.ndarray
    special: np.ndarray  # per unique: special-code key or None


def _parse_uniques(spec: _Spec, uniques: np.ndarray) -> _Parsed:
    """Parse every distinct text of a column (the status, value, rule and detail of each).

    Above :data:`_PY_UNIQUE_LIMIT` distinct texts, the simple ones (plain numbers, ISO dates,
    plain codes) are parsed vectorised first; every other text goes through :func:`_parse_one`.
    """
    nu = len(uniques)
    numeric = spec.kind in {"int", "float"}
    out = _Parsed(
        status=np.full(nu, -1, dtype=np.int8),
        value=np.full(nu, np.nan) if numeric else np.full(nu, None, dtype=object),
        rule=np.full(nu, None, dtype=object),
        detail=np.full(nu, None, dtype=object),
        special=np.full(nu, None, dtype=object),
    )
    if nu > _PY_UNIQUE_LIMIT and spec.kind != "multi":
        s = pd.Series(uniques, dtype="str")
        if numeric:
            _simple_numbers(spec, s, out)
        elif spec.kind == "date":
            _simple_dates(s, out)
        else:
            _simple_codes(spec, s, uniques, out)
    for u in np.flatnonzero(out.status < 0):
        st, val, rl, dtl = _parse_one(spec, uniques[u])
        out.status[u] = st
        if st == _SPECIAL:
            out.special[u] = val
        elif val is not None:
            out.value[u] = val
        out.rule[u], out.detail[u] = rl, dtl
    return out


def _simple_numbers(spec: _Spec, s: pd.Series, out: _Parsed) -> None:
    """Vectorised: plain integers (and decimal-comma numbers for a decimal item) in range."""
    simple = s.str.fullmatch(r"\d+").to_numpy(dtype=bool, copy=True)
    vals = pd.to_numeric(s.where(simple, "0")).to_numpy(dtype=float)
    if spec.kind == "float":
        comma = s.str.fullmatch(r"-?\d+,\d+").to_numpy(dtype=bool, copy=True)
        cv = pd.to_numeric(s.where(comma, "0").str.replace(",", ".", regex=False)).to_numpy(
            dtype=float
        )
        vals = np.where(comma, cv, vals)
        out.detail[comma] = "decimal_comma"
        simple |= comma
    ok = simple.copy()
    if spec.allowed is not None:
        ok &= np.isin(vals, list(spec.allowed))
    if spec.lo is not None:
        ok &= vals >= spec.lo
    if spec.hi is not None:
        ok &= vals <= spec.hi
    out.value[ok] = vals[ok]
    out.status[ok] = _VALUE
    out.detail[~ok] = None


def _simple_dates(s: pd.Series, out: _Parsed) -> None:
    """Vectorised: ISO dates (``AAAA-MM-JJ``) that are calendar dates."""
    simple = s.str.fullmatch(r"\d{4}-\d{2}-\d{2}").to_numpy(dtype=bool, copy=True)
    d = pd.to_datetime(s.where(simple, None), format="%Y-%m-%d", errors="coerce")
    ok = simple & d.notna().to_numpy()
    out.value[ok] = d[ok].dt.date.to_numpy()
    out.status[ok] = _VALUE


def _simple_codes(spec: _Spec, s: pd.Series, uniques: np.ndarray, out: _Parsed) -> None:
    """Vectorised: plain codes (letters, digits, ``_``, ``-``) that need no normalisation."""
    cls = r"[0-9A-Z_\-]+" if spec.kind == "territory" else r"[0-9A-Za-z_\-]+"
    ok = s.str.fullmatch(cls).to_numpy(dtype=bool, copy=True)
    low = s.str.lower()
    ok &= ~low.isin(list(spec.all_specials) + list(spec.missing)).to_numpy(dtype=bool, copy=True)
    if spec.kind == "territory":
        ok &= ~s.str.fullmatch(r"\d{4}").to_numpy(dtype=bool, copy=True)
    if spec.kind == "identifier":
        ok &= ~s.str.fullmatch(r"\d+[eE]\d+").to_numpy(dtype=bool, copy=True)
    if spec.pattern is not None:
        ok &= s.str.contains(spec.pattern.pattern, regex=True).to_numpy(dtype=bool, copy=True)
    out.value[ok] = uniques[ok]
    out.status[ok] = _VALUE


def _repair_text(text: str) -> str | None:
    """Undo one round of UTF-8 read as cp1252 (or latin-1); None when that is not what happened."""
    for enc in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(enc).decode("utf-8")
        except UnicodeError:
            continue
        if fixed != text:
            return fixed
    return None


def _repair_mojibake(raw: _Raw, mapping, norms, warnings: list[str], name: str) -> None:
    """Repair double-encoded cells of mapped columns in place, counting each repair."""
    for j, t in enumerate(mapping):
        u = raw.uniques[j]
        if t[0] not in {"var", "opt"} or not len(u):
            continue
        hit = pd.Series(u, dtype="str").str.contains(_GARBLED.pattern, regex=True)
        hit = hit.fillna(False).to_numpy(dtype=bool)
        if not hit.any():
            continue
        fixed = np.array(u, dtype=object, copy=True)
        repaired = np.zeros(len(u), dtype=bool)
        for k in np.flatnonzero(hit):
            new = _repair_text(str(u[k]))
            if new is not None:
                fixed[k], repaired[k] = new, True
        if repaired.any():
            raw.uniques[j] = fixed
            k0 = int(np.flatnonzero(repaired)[0])
            n_rows = int(repaired[raw.codes[j]].sum())
            column = t[1] if t[0] == "var" else f"{t[1]}__{t[2]}"
            _norm_add(norms, column, "mojibake_repaired", n_rows, f"{u[k0]} → {fixed[k0]}")
            warnings.append(
                f"{name}: column {raw.header[j]!r}: double-encoded text repaired on {n_rows} "
                f"row(s) (e.g. {str(u[k0])!r} → {str(fixed[k0])!r}), as asked"
            )
