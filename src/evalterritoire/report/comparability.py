"""Trends across codebook versions: which dimension trends the reports may draw.

An observatory changes its questionnaire a little every year. When an item's wording, scale or
options change between two waves (:func:`evalterritoire.codebook.diff.comparability_breaks`),
its answers before and after are not comparable, and neither is a dimension score built on it:
the reports then draw no trend of that dimension across the change — unless the study
acknowledges the change (``[study] acknowledged_changes``). :func:`find_trend_breaks` lists the
breaks between consecutive waves; :func:`without_broken_trends` blanks the earlier waves' scores
of the dimensions concerned in the profiles table (every trend chart, table and sentence reads
it), and :func:`describe_breaks` says it in the methodological annex.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook

__all__ = ["describe_breaks", "find_trend_breaks", "without_broken_trends"]

#: A change in words (the annex speaks French).
_KIND_FR = {
    "wording": "libellé modifié",
    "scale": "échelle modifiée",
    "options": "modalités modifiées",
}


def find_trend_breaks(
    codebooks: Mapping[int, Codebook], acknowledged: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The unacknowledged item changes between consecutive waves.

    Parameters
    ----------
    codebooks : mapping
        Wave → the codebook that wave was collected with (at least the current wave).
    acknowledged : sequence of str
        Item ids whose change the study acknowledges.

    Returns
    -------
    list of dict
        One record per changed item and pair of waves: ``item``, ``label``, ``dimension``
        (None when the item feeds no dimension), ``kinds`` (tuple), ``from_wave``, ``to_wave``;
        sorted by wave then item.
    """
    from evalterritoire.codebook.diff import comparability_breaks

    waves = sorted(codebooks)
    out = []
    for before, after in pairwise(waves):
        new = codebooks[after]
        breaks = comparability_breaks(codebooks[before], new, frozenset(acknowledged))
        for item, changes in sorted(breaks.items()):
            var = next((v for v in new if v.id == item), None)
            out.append(
                {
                    "item": item,
                    "label": new.label(item) if var is not None else item,
                    "dimension": getattr(var, "dimension", None),
                    "kinds": tuple(sorted({c.kind for c in changes})),
                    "from_wave": before,
                    "to_wave": after,
                }
            )
    return out


def without_broken_trends(
    profiles: pd.DataFrame | None, breaks: Sequence[Mapping[str, Any]]
) -> pd.DataFrame | None:
    """The profiles table with the scores that a break makes incomparable blanked.

    For a dimension fed by a changed item, the scores of the waves before the change are set
    to missing (and their ``n_``/``se_`` columns with them), so no trend crosses the change.

    Parameters
    ----------
    profiles : DataFrame or None
        ``profiles.parquet`` (``wave``, ``territory``, ``score_<dimension>``…).
    breaks : sequence of mapping
        From :func:`find_trend_breaks`.

    Returns
    -------
    DataFrame or None
        A new table (the input is not modified), or the input when nothing is blanked.
    """
    if profiles is None or "wave" not in profiles.columns:
        return profiles
    boundary: dict[str, int] = {}
    for b in breaks:
        if b.get("dimension"):
            dim = str(b["dimension"])
            boundary[dim] = max(boundary.get(dim, b["to_wave"]), int(b["to_wave"]))
    if not boundary:
        return profiles
    out = profiles.copy()
    for dim, wave in boundary.items():
        before = out["wave"] < wave
        for col in (f"score_{dim}", f"se_{dim}", f"n_{dim}"):
            if col in out.columns:
                out[col] = out[col].astype(float).where(~before, np.nan)
    return out


def describe_breaks(
    breaks: Sequence[Mapping[str, Any]], dimensions: Mapping[str, str]
) -> list[str]:
    """French sentences for the methodological annex, one per changed item.

    Parameters
    ----------
    breaks : sequence of mapping
        From :func:`find_trend_breaks`.
    dimensions : mapping
        Dimension id → its French label.

    Returns
    -------
    list of str
    """
    out = []
    for b in breaks:
        kinds = ", ".join(_KIND_FR.get(k, k) for k in b["kinds"])
        text = (
            f"« {b['label']} » : {kinds} entre {b['from_wave']} et {b['to_wave']} ; les réponses "
            "d'avant et d'après ne sont pas comparables"
        )
        dim = b.get("dimension")
        if dim:
            text += (
                f", et l'évolution de la dimension « {dimensions.get(dim, dim)} » n'est pas "
                "tracée à travers ce changement"
            )
        out.append(text + ".")
    return out
