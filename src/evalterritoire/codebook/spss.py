"""SPSS ``.sav`` → codebook: :func:`import_sav`.

An SPSS file carries its own dictionary: each variable's name, label (« variable label »),
value labels, user-missing values (discrete values or a range), measure (nominal, ordinal,
scale) and format (``A20`` text, ``F8.0`` integer, ``F8.2`` decimal, ``DATE11``…). The same
file is the export, so the imported codebook ingests it as it is. Mapping:

=========================================  =====================================================
text variable (``A``)                      ``text`` (an identifier or territory code by role)
date formats (``DATE``, ``ADATE``…)        ``date``
value labels                               choices → binary / likert (ordinal measure or labels
                                           reading as a scale) / categorical options
user-missing values                        special codes (kind from the label: « Ne sait pas »,
                                           « Refus », « Non concerné »; else don't-know, reported)
numeric without labels                     ``count`` (no decimals) or ``decimal``
=========================================  =====================================================

SPSS has no routing, constraint or required flag: none is imported (reported once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalterritoire.codebook.builder import ChoiceInfo, CodebookBuilder, special_kind
from evalterritoire.codebook.importing import ImportResult
from evalterritoire.errors import CodebookError

__all__ = ["import_sav"]

_DATE_FORMATS = ("DATE", "ADATE", "EDATE", "SDATE", "JDATE", "DATETIME", "YMDHMS")


def _code(value: Any) -> int | float | str:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _user_missing(ranges: list[dict]) -> list[Any]:
    """The discrete user-missing values of a variable (a range counts by its ends)."""
    out: list[Any] = []
    for r in ranges:
        for v in (r.get("lo"), r.get("hi")):
            if v is not None and _code(v) not in out:
                out.append(_code(v))
    return out


def import_sav(path: str | Path) -> ImportResult:
    """Import an SPSS file's dictionary (see the module docstring for the mapping).

    Raises
    ------
    CodebookError
        When the file cannot be read as an SPSS file.
    """
    import pyreadstat

    path = Path(path)
    try:
        _, meta = pyreadstat.read_sav(str(path), metadataonly=True, user_missing=True)
    except Exception as exc:
        raise CodebookError(
            f"{path.name}: not a readable SPSS .sav file ({type(exc).__name__})"
        ) from None
    builder = CodebookBuilder("SPSS", path.name, meta.file_label or path.stem)
    labels = meta.column_names_to_labels or {}
    for name in meta.column_names:
        _variable(builder, meta, name, labels.get(name) or "")
    builder.unmapped.append(
        "SPSS stores no routing, constraint or required flag: none imported (add `relevant:`, "
        "`min`/`max`, `required: true` by hand where the questionnaire has them)"
    )
    return builder.build()


def _variable(builder: CodebookBuilder, meta: Any, name: str, label: str) -> None:
    """One SPSS variable as a codebook variable."""
    fmt = str((meta.original_variable_types or {}).get(name, "")).upper()
    kind = (meta.readstat_variable_types or {}).get(name, "double")
    value_labels = {
        _code(k): str(v) for k, v in (meta.variable_value_labels or {}).get(name, {}).items()
    }
    missing = _user_missing((meta.missing_ranges or {}).get(name, []))
    measure = (meta.variable_measure or {}).get(name, "unknown")
    if kind == "string":
        builder.add_variable(name, label, "text")
        return
    if fmt.startswith(_DATE_FORMATS):
        builder.add_variable(name, label, "date")
        return
    special: list[str] = []
    for value in missing:
        text = value_labels.pop(value, "") if value in value_labels else ""
        found = special_kind(text) if text else None
        if found is None:
            found = "dont_know"
            builder.guessed.append(
                f"{name}: user-missing value {value} "
                f"« {text or 'sans libellé'} » taken as « ne sait pas »"
            )
        key = builder.special_code(found, text or "Ne sait pas", _as_int(value), str(value))
        if key is not None and key not in special:
            special.append(key)
    info: ChoiceInfo | None = None
    if value_labels:
        choices = [(str(k), v) for k, v in sorted(value_labels.items(), key=lambda kv: kv[0])]
        info = builder.choices(name, choices, ordered=measure == "ordinal")
        info.special = list(dict.fromkeys([*info.special, *special]))
        vtype = info.type
    else:
        decimals = fmt.rsplit(".", 1)[-1] if "." in fmt else "0"
        vtype = "count" if decimals in {"", "0"} else "decimal"
        if special:
            info = ChoiceInfo(vtype, special=special)
    builder.add_variable(name, label, vtype, info=info)


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
