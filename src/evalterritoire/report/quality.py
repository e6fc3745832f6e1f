"""The quality summary of a report: its figures counted by status.

Owns ``_records`` (every estimate record in a context's sections) and ``_quality`` (how many
figures a report shows and how many are publishable, fragile, suppressed, model-based or
without an estimable interval, and the count of each reason), which the quality box of every
report renders.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


def _records(values: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    """Every estimate record (a mapping with a ``status`` and an ``interval``) in some values."""
    for value in values:
        if isinstance(value, Mapping):
            if "status" in value and "interval" in value and value.get("status") is not None:
                yield value
            yield from _records(value.values())
        elif isinstance(value, list | tuple):
            yield from _records(value)


def _quality(values: Iterable[Any]) -> dict[str, Any]:
    """The report's figures by status, the model-based ones, the ones without interval."""
    records = list(_records(values))
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
