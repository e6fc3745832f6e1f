"""Shared vocabulary of the design modules: constants, small array helpers and value types.

Owns the option lists (``LONELY_PSU_RULES``, ``CALIBRATION_METHODS``, ``REPLICATE_TYPES``), the
design logger, R's certainty threshold, the grouping helpers (``_rowsum``, ``_indicator``), the
column readers (``_as_float``, ``_level_strings``, ``_codes``) and the frozen value types a
:class:`~evalterritoire.design.SurveyDesign` holds: one sampling stage (``_Stage``), one
calibration step (``_CalStep``), the replicate weights (``_Replicates``), the Hartley–Rao form
of a PPS stage (``_HartleyRao``) and the Taylor variance as a linear map (:class:`LinearOperator`).
It imports no other design module, so every module of :mod:`evalterritoire.design` can import it
without a cycle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from evalterritoire.errors import DesignError

LONELY_PSU_RULES = ("fail", "remove", "adjust", "certainty")
CALIBRATION_METHODS = ("none", "poststratify", "rake", "linear")
REPLICATE_TYPES = ("JK1", "JKn", "bootstrap", "BRR", "Fay", "other")
PPS_METHODS = ("brewer", "hartley_rao")
CALFUNS = ("linear", "raking", "logit")
_LOG = logging.getLogger("evalterritoire.design")
_CERTAIN = 1e-7  # R's threshold below which a stratum's finite-population factor means certainty


# ----------------------------------------------------------------------------- small helpers
def _rowsum(codes: np.ndarray, n_groups: int, x: np.ndarray) -> np.ndarray:
    """Sum the rows of ``x`` (n,) or (n, p) within integer groups ``codes`` (R ``rowsum``)."""
    if x.ndim == 1:
        return np.bincount(codes, weights=x, minlength=n_groups)
    p = x.shape[1]
    if p <= 8:
        out = np.empty((n_groups, p))
        for j in range(p):
            out[:, j] = np.bincount(codes, weights=x[:, j], minlength=n_groups)
        return out
    return np.asarray(_indicator(codes, n_groups) @ x)


def _indicator(
    codes: np.ndarray, n_groups: int, values: np.ndarray | None = None
) -> sparse.csr_matrix:
    """Sparse (n_groups × n) matrix with ``values`` (default 1) at ``(codes[i], i)``."""
    n = codes.size
    data = np.ones(n) if values is None else np.asarray(values, dtype=float)
    return sparse.csc_matrix((data, codes, np.arange(n + 1)), shape=(n_groups, n)).tocsr()


def _as_float(series: pd.Series, col: str, role: str) -> np.ndarray:
    try:
        values = pd.to_numeric(series, errors="raise")
    except (TypeError, ValueError):
        raise DesignError(f"{role} column '{col}' is not numeric") from None
    return np.asarray(values.to_numpy(dtype="float64", na_value=np.nan), dtype=float)


def _level_strings(series: pd.Series) -> pd.Series:
    """Typed column → string levels (integer-valued numbers print without a decimal part)."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        finite = values[~np.isnan(values)]
        if finite.size and np.all(finite == np.round(finite)):
            out = pd.Series(
                [None if np.isnan(v) else str(int(v)) for v in values],
                index=series.index,
                dtype="string",
            )
            return out
    return series.astype("string")


def _codes(series: pd.Series, col: str, role: str) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(series, sort=True)
    if (codes < 0).any():
        first = int(np.flatnonzero(codes < 0)[0])
        raise DesignError(
            f"{role} column '{col}' has {int((codes < 0).sum())} missing value(s) "
            f"(first at row {first})"
        )
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


# ----------------------------------------------------------------------------- value types
@dataclass(frozen=True)
class _CalStep:
    """One calibration step: residualise ``z/w_after`` on ``x`` with weights ``w_before``."""

    x: np.ndarray  # (n, k) calibration model matrix
    w_before: np.ndarray  # (n,) weights before the step (regression weights)
    w_after: np.ndarray  # (n,) weights after the step
    pinv: np.ndarray  # (k, k) pseudo-inverse of X' diag(w_before) X


@dataclass(frozen=True)
class _Replicates:
    weights: np.ndarray  # (n, R) replicate (combined) weights
    scale: float
    rscales: np.ndarray  # (R,)
    mse: bool
    type: str
    pattern: np.ndarray  # (n,) code of the row's replicate pattern (replicate / full weights)
    patterns: np.ndarray  # (k, R) the distinct patterns (rank of a set of rows = rank of theirs)


@dataclass(frozen=True)
class _HartleyRao:
    """Hartley–Rao's approximation of a PPS without-replacement stage (R ``pps=HR(p2bar)``).

    The variance of unit totals ``t`` is ``Σ_a (1 − π_a) t_a² + Σ_{a≠b} D_ab t_a t_b`` over the
    units of each stratum, with ``D_ab = (π_a + π_b − 1 − p2bar_h) / (n_h − 1)`` (R
    ``HRDcheck``), except ``D_ab = 0`` for the pairs with ``π_a + π_b == 1`` exactly
    (``pairs``: their unit codes, both orders).
    """

    pi: np.ndarray  # (n_units,) first-stage inclusion probability of each unit
    p2bar: np.ndarray  # (n_groups,) p2bar of each stratum
    pairs: np.ndarray  # (m, 2) unit pairs (a, b), a != b, same stratum, π_a + π_b == 1


@dataclass(frozen=True)
class _Stage:
    """Variance structure of one sampling stage: units grouped into strata (or parent PSUs).

    Ordinary stages give ``Σ_a coef_h u_a (t_a − t̄_h)²`` per group ``h`` (``u_a`` =
    ``unit_coef``, 1 unless the stage is a Brewer PPS stage, where it is ``1 − π_a``; ``t̄_h``
    is the unweighted mean of the group's unit totals, or 0 when the group is not centred). A
    Hartley–Rao stage (``hr``) gives the quadratic form of :class:`_HartleyRao` instead.
    """

    unit: np.ndarray  # (n,) unit code of each row
    n_units: int
    group: np.ndarray  # (n_units,) group (stratum / parent PSU) of each unit
    n_groups: int
    n_in_group: np.ndarray  # (n_groups,) sampled units per group
    coef: np.ndarray  # (n_groups,) variance coefficient
    centre: np.ndarray  # (n_groups,) bool: centre unit totals within the group
    unit_coef: np.ndarray | None = None  # (n_units,) per-unit factor (Brewer: 1 − π)
    hr: _HartleyRao | None = None

    @property
    def is_standard(self) -> bool:
        """Whether the stage is the ordinary stratified form with one coefficient per group."""
        return self.unit_coef is None and self.hr is None

    def unit_scale(self) -> np.ndarray:
        """Variance coefficient of each unit's squared deviation (ordinary and Brewer stages)."""
        scale = self.coef[self.group]
        return scale if self.unit_coef is None else scale * self.unit_coef

    def centred(self, t: np.ndarray) -> np.ndarray:
        """Unit totals ``t`` (n_units, p) minus their group mean where the group is centred."""
        g = _rowsum(self.group, self.n_groups, t)
        centre = np.where(self.centre, 1.0 / self.n_in_group, 0.0)
        return t - (g * centre[:, None])[self.group]


@dataclass(frozen=True)
class LinearOperator:
    """The Taylor variance of a single-stage design as a linear map.

    See :meth:`SurveyDesign.linear_operator`.
    """

    unit: np.ndarray  # (n,) unit (PSU) code of each row
    n_units: int
    stage: _Stage
    calibration: tuple[tuple[np.ndarray, np.ndarray], ...]  # (E, F): z ← z − E (F' z)
    domain: np.ndarray | None  # (n,) 1.0 inside the design's domain, 0.0 outside

    def apply(self, z: np.ndarray) -> np.ndarray:
        """``τ`` of per-row contributions ``z`` (n, m): ``variance_of_totals(z) = τ'τ``."""
        z = np.asarray(z, dtype=float)
        if self.domain is not None:
            z = z * self.domain[:, None]
        for E, F in self.calibration:
            z = z - E @ (F.T @ z)
        return self.deviations(self.unit_totals(z))

    def unit_totals(self, z: np.ndarray) -> np.ndarray:
        """Sums of the rows of ``z`` (n, m) within units: (n_units, m)."""
        return _rowsum(self.unit, self.n_units, z)

    def deviations(self, t: np.ndarray) -> np.ndarray:
        """Unit totals (n_units, m) → scaled deviations ``τ`` with ``variance = τ'τ``."""
        st = self.stage
        return st.centred(t) * np.sqrt(st.unit_scale())[:, None]
