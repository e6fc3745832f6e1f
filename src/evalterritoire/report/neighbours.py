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
    context, profile = _Block(context_z), _Block(profile_z)
    out = {}
    for i, ctx in enumerate(terr):
        dists = _nearest(_distances(context, profile, i), i, k, terr)
        group = [terr[j] for _, _, j in dists]
        out[ctx.territory] = {
            "neighbours": [
                {
                    "territory": o.territory,
                    "name": o.territory_name,
                    "stage_label": o.stage_label,
                    "distance": d,
                }
                for (d, _, _), o in zip(dists, group, strict=True)
            ],
            "means": group_means(group),
        }
    return out


def _nearest(
    distance: np.ndarray, i: int, k: int, terr: Sequence[ReportContext]
) -> list[tuple[float, str, int]]:
    """The ``k`` nearest others of territory ``i``: (distance to 9 decimals, code, index).

    Ordered by the rounded distance then the code. Only the territories within a hair of the
    ``k``-th smallest raw distance can be among them (rounding keeps the order), so only those
    are rounded and sorted.
    """
    distance = distance.copy()
    distance[i] = np.nan
    known = np.flatnonzero(~np.isnan(distance))
    if known.size > k > 0:
        kth = np.partition(distance[known], k - 1)[k - 1]
        known = known[distance[known] <= kth + 1e-8]
    dists = sorted((round(float(distance[j]), 9), terr[j].territory, int(j)) for j in known)
    return dists[:k]


class _Block:
    """One block's z-scores, with its territories grouped by which variables they have."""

    def __init__(self, z: np.ndarray) -> None:
        self.z = z[:, ~np.isnan(z).all(axis=0)] if z.shape[1] else z
        self.present = ~np.isnan(self.z)
        self.patterns = np.zeros((0, self.z.shape[1]), dtype=bool)
        self.pattern = np.zeros(z.shape[0], dtype=int)
        if self.z.shape[1] and self.z.shape[0]:
            patterns, pattern = np.unique(self.present, axis=0, return_inverse=True)
            self.patterns = patterns.reshape(-1, self.z.shape[1])
            self.pattern = np.asarray(pattern).reshape(-1)

    def means(self, i: int) -> np.ndarray:
        """Mean squared difference of territory ``i`` to each territory (NaN: none shared).

        The same floating-point operations, in the same order, as ``np.mean`` of each pair's
        squared differences over the variables both have, done for every
        territory at once: the distances do not depend on how they are computed.
        """
        n = self.z.shape[0]
        out = np.full(n, np.nan)
        if self.z.shape[1] == 0:
            return out
        squares = (self.z[i] - self.z) ** 2
        for p, pattern in enumerate(self.patterns):
            rows = np.flatnonzero(self.pattern == p)
            cols = np.flatnonzero(pattern & self.present[i])
            if rows.size and cols.size:
                part = squares[np.ix_(rows, cols)]
                out[rows] = _pairwise_sum([part[:, c] for c in range(cols.size)]) / cols.size
        return out


def _pairwise_sum(columns: list[np.ndarray]) -> np.ndarray:
    """Numpy's pairwise summation of a 1-D array (``np.add.reduce``), element-wise over columns.

    Below 8 terms a running sum from zero; up to 128, eight running sums combined in a fixed
    tree then the remainder; above, the two halves (a multiple of 8 first) added.
    """
    n = len(columns)
    if n < 8:
        total = np.zeros_like(columns[0])
        for column in columns:
            total = total + column
        return total
    if n <= 128:
        partial = list(columns[:8])
        i = 8
        while i < n - (n % 8):
            for j in range(8):
                partial[j] = partial[j] + columns[i + j]
            i += 8
        total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + (
            (partial[4] + partial[5]) + (partial[6] + partial[7])
        )
        for column in columns[i:]:
            total = total + column
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(columns[:half]) + _pairwise_sum(columns[half:])


def _distances(context: _Block, profile: _Block, i: int) -> np.ndarray:
    """Distance of territory ``i`` to each territory (NaN where no block is shared)."""
    c, p = context.means(i), profile.means(i)
    both = (c + p) / 2
    return np.sqrt(np.where(np.isnan(c), p, np.where(np.isnan(p), c, both)))


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
