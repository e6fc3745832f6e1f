"""Statistically similar territories: each territory's nearest neighbours on context and profile.

For each territory the :data:`N_NEIGHBOURS` other territories of the wave closest to it on two
blocks of standardised variables:

- **context**: the territory's public statistics (the codebook's territory-level items, as in
  the report's context table); an indicator whose positive values span more than two orders of
  magnitude (population…) is compared on a log scale;
- **profile**: its maturity dimension scores.

Each variable is centred on the territories' mean and divided by their standard deviation
(z-scores). The distance between two territories is

    d = sqrt( ½ · mean_context (z_a − z_b)² + ½ · mean_profile (z_a − z_b)² )

— each block weighs half whatever its number of variables, a mean over the variables both
territories have (a block neither has is left out and the other weighs all). It reads in
standard deviations: 0 for identical territories, about 1,4 for two territories drawn at random.
Ties go to the smaller territory code, so the group is deterministic. The group's mean
dimension scores are the report's third point of comparison beside the stage's and the
nation's.

Owns :func:`nearest_neighbours` (the records of each territory's group and its mean profile)
and :data:`METHOD` (the annex's description).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evalterritoire.report.context import ReportContext, _num

__all__ = [
    "CHOSEN_METHOD",
    "METHOD",
    "N_NEIGHBOURS",
    "group_means",
    "is_chosen_group",
    "nearest_neighbours",
]

#: Size of each territory's comparison group.
N_NEIGHBOURS = 5
#: Above this ratio of largest to smallest positive value, an indicator is compared in logs.
LOG_RATIO = 100.0
#: How the annex describes the distance (French, reader-facing).
METHOD = (
    "Les territoires similaires sont les cinq territoires les plus proches sur deux blocs de "
    "variables : le contexte (statistiques publiques du territoire, la population et les "
    "autres indicateurs très étalés étant comparés en logarithme) et le profil de maturité "
    "(score de chaque dimension). Chaque variable est centrée et réduite sur l'ensemble des "
    "territoires ; la distance est la racine de la moyenne des écarts au carré, chaque bloc "
    "pesant pour moitié. Elle s'exprime en écarts-types : 0 pour deux territoires identiques, "
    "environ 1,4 pour deux territoires pris au hasard."
)

#: How the annex describes a comparison group the evaluator chose (French, reader-facing).
CHOSEN_METHOD = (
    "Le groupe de comparaison a été choisi par l'évaluateur. Sa moyenne est la moyenne simple "
    "des scores de dimension publiés de ses territoires (un score masqué n'y entre pas)."
)


def nearest_neighbours(
    contexts: Sequence[ReportContext], k: int = N_NEIGHBOURS
) -> dict[str, dict[str, Any]]:
    """Each territory's ``k`` nearest territories on context and profile.

    Parameters
    ----------
    contexts : sequence of ReportContext
        The wave's territory contexts (the national one is ignored).
    k : int
        Size of each group (fewer when the wave has fewer other territories).

    Returns
    -------
    dict
        Territory code → ``{"neighbours": [{territory, name, stage_label, distance}],
        "means": {dimension: mean score of the group}}``.
    """
    terr = sorted((c for c in contexts if not c.is_national), key=lambda c: c.territory)
    if len(terr) < 2:
        return {c.territory: {"neighbours": [], "means": {}} for c in terr}
    context_z = _zscores([_context_values(c) for c in terr])
    profile_z = _zscores([_profile_values(c) for c in terr])
    out = {}
    for i, ctx in enumerate(terr):
        dists = []
        for j, other in enumerate(terr):
            if i != j:
                d = _distance(context_z, profile_z, i, j)
                if d is not None:
                    dists.append((round(d, 9), other.territory, j))
        dists.sort()
        group = [terr[j] for _, _, j in dists[:k]]
        out[ctx.territory] = {
            "neighbours": [
                {
                    "territory": o.territory,
                    "name": o.territory_name,
                    "stage_label": o.stage_label,
                    "distance": d,
                }
                for (d, _, _), o in zip(dists[:k], group, strict=True)
            ],
            "means": group_means(group),
        }
    return out


def _context_values(ctx: ReportContext) -> dict[str, float]:
    return {
        str(r["variable"]): float(r["value"])
        for r in ctx.context_indicators
        if _num(r.get("value")) is not None
    }


def _profile_values(ctx: ReportContext) -> dict[str, float]:
    return {
        str(r["dimension"]): float(r["score"])
        for r in ctx.profile
        if _num(r.get("score")) is not None and r.get("status") != "suppressed"
    }


def _zscores(rows: list[dict[str, float]]) -> np.ndarray:
    """Territories × variables z-scores (NaN where missing or constant)."""
    names = sorted({k for r in rows for k in r})
    table = np.array([[r.get(n, math.nan) for n in names] for r in rows], dtype=float)
    if table.size == 0:
        return np.empty((len(rows), 0))
    for col in range(table.shape[1]):
        values = table[:, col]
        known = values[~np.isnan(values)]
        if known.size and known.min() > 0 and known.max() / known.min() > LOG_RATIO:
            values = np.log(values)
        sd = np.nanstd(values) if known.size > 1 else 0.0
        table[:, col] = (values - np.nanmean(values)) / sd if sd > 0 else math.nan
    return table


def _block(z: np.ndarray, i: int, j: int) -> float | None:
    if z.shape[1] == 0:
        return None
    diff = z[i] - z[j]
    diff = diff[~np.isnan(diff)]
    return float(np.mean(diff**2)) if diff.size else None


def _distance(context_z: np.ndarray, profile_z: np.ndarray, i: int, j: int) -> float | None:
    blocks = [b for b in (_block(context_z, i, j), _block(profile_z, i, j)) if b is not None]
    return math.sqrt(sum(blocks) / len(blocks)) if blocks else None


def group_means(group: Sequence[ReportContext]) -> dict[str, float]:
    """The unweighted mean score of each dimension over a group of territories.

    Parameters
    ----------
    group : sequence of ReportContext
        The territories of the group.

    Returns
    -------
    dict
        Dimension → mean of the territories' scores (suppressed scores left out), sorted.
    """
    scores: dict[str, list[float]] = {}
    for ctx in group:
        for dim, score in _profile_values(ctx).items():
            scores.setdefault(dim, []).append(score)
    return {dim: math.fsum(v) / len(v) for dim, v in sorted(scores.items())}


def is_chosen_group(ctx: ReportContext) -> bool:
    """Whether the report's comparison group was chosen by the evaluator (no distances)."""
    return bool(ctx.neighbours) and all(n.get("distance") is None for n in ctx.neighbours)


def neighbour_means(records: Mapping[str, Any]) -> Mapping[str, float]:
    """The group's mean scores from one territory's :func:`nearest_neighbours` entry."""
    return records.get("means", {})
