"""The quality summary of a report: its figures counted by status.

Owns ``_records`` (every estimate record in a context's sections, gathered in one recursive
pass that answers the common leaf types without the abstract classes) and ``_quality`` /
``_quality_of`` (how many figures a report shows and how many are publishable, fragile,
suppressed, model-based or without an estimable interval, and the count of each reason), which
the quality box of every report renders.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

_LEAVES = frozenset({str, int, float, bool, type(None)})


def _records(values: Iterable[Any]) -> list[Mapping[str, Any]]:
    """Every estimate record (a mapping with a ``status`` and an ``interval``) in some values.

    In depth-first order: a mapping before the records it holds.
    """
    out: list[Mapping[str, Any]] = []
    _collect(values, out)
    return out


def _collect(values: Iterable[Any], out: list[Mapping[str, Any]]) -> None:
    """Append the estimate records of ``values`` to ``out`` (:func:`_records`)."""
    for value in values:
        kind = type(value)
        if kind in _LEAVES:  # the common leaves, answered without the abstract classes
            continue
        if kind is dict or (kind is not list and kind is not tuple and isinstance(value, Mapping)):
            if "status" in value and "interval" in value and value.get("status") is not None:
                out.append(value)
            _collect(value.values(), out)
        elif isinstance(value, list | tuple):
            _collect(value, out)


def _quality(values: Iterable[Any]) -> dict[str, Any]:
    """The report's figures by status, the model-based ones, the ones without interval."""
    return _quality_of(_records(values))


def _quality_of(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`_quality` of the estimate records of a report (:func:`_records`)."""
    status = Counter(str(r["status"]) for r in records)
    reasons = Counter(
        code for r in records for code in str(r.get("reason") or "").split(";") if code
    )
    return {
        "n_figures": len(records),
        "publishable": status.get("publishable", 0),
        "fragile": status.get("fragile", 0),
        "suppressed": status.get("suppressed", 0),
        "modelled": sum(
            1
            for r in records
            if r.get("estimator") == "fay_herriot" and r["status"] != "suppressed"
        ),
        "not_estimable": sum(
            1
            for r in records
            if r.get("interval") == "not_estimable" and r["status"] != "suppressed"
        ),
        "reasons": dict(sorted(reasons.items())),
    }
