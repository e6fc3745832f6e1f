"""Reference lists at ingestion: codes checked against a declared list, with its version.

A variable with ``reference:`` names one of the codebook's ``references:`` (a CSV of valid
codes, e.g. the official list of communes). :func:`_check_reference` turns every distinct value
of the column that is not in the list into an error (rule ``not_in_reference``): a territory
code that matches the pattern but does not exist is quarantined. :func:`_reference_report` is
the ingestion report's ``reference_lists``: for each code variable the export has (a territory
code, or a variable with ``reference:``) the list, its version, file and hash and how many
codes were not found — or, explicitly, « not checked against a reference list ».
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from evalterritoire.codebook import Codebook, Variable
from evalterritoire.ingest.parse import _ERROR, _VALUE, _Parsed

#: The report's words for a code variable no list checks.
NOT_CHECKED = "not checked against a reference list"


def _check_reference(var: Variable, codebook: Codebook, parsed: _Parsed) -> int:
    """Mark the distinct values not in the variable's reference list as errors (in place).

    Returns
    -------
    int
        The number of distinct values not found.
    """
    ref = codebook.references[var.reference or ""]
    values = [
        str(v).strip().upper() if s == _VALUE else None
        for s, v in zip(parsed.status, parsed.value, strict=True)
    ]
    bad = np.array([v is not None and v not in ref.codes for v in values], dtype=bool)
    if bad.any():
        version = f", version {ref.version}" if ref.version else ""
        parsed.status[bad] = _ERROR
        parsed.rule[bad] = "not_in_reference"
        parsed.detail[bad] = np.array(
            [
                f"code {values[k]!r} is not in the reference list {ref.name!r}"
                f" ({ref.label or ref.file}{version})"
                for k in np.flatnonzero(bad)
            ],
            dtype=object,
        )
    return int(bad.sum())


def _reference_report(
    codebook: Codebook, present: Iterable[Variable], not_found: dict[str, int]
) -> list[dict[str, Any]]:
    """The report's ``reference_lists``: one entry per code variable of the export."""
    out = []
    for var in present:
        if var.reference is None and var.type != "territory_code":
            continue
        if var.reference is None:
            out.append({"variable": var.id, "checked": False, "note": NOT_CHECKED})
            continue
        ref = codebook.references[var.reference]
        out.append(
            {
                "variable": var.id,
                "checked": True,
                "list": ref.name,
                "label": ref.label,
                "version": ref.version,
                "file": ref.file,
                "sha256": ref.sha256,
                "codes": len(ref.codes),
                "values_not_found": not_found.get(var.id, 0),
            }
        )
    return out
