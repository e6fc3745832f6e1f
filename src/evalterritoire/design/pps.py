"""PPS sampling without replacement at the first stage: Brewer and Hartley–Rao approximations.

A design drawn with probability proportional to size and without replacement has a variance
that needs the joint inclusion probabilities ``π_ab`` of the PSUs, which a sample file rarely
carries. Two approximations from the PSUs' own probabilities ``π_a`` (the ``fpc`` column, given
as a probability ≤ 1 and constant within the PSU), as R ``svydesign`` computes them:

* ``pps="brewer"`` (R ``svydesign(..., fpc = ~p, pps = "brewer")``): the stratified
  with-replacement variance with each PSU's squared deviation multiplied by ``1 − π_a``,
  ``Σ_h n_h/(n_h − 1) Σ_a (1 − π_a)(t_a − t̄_h)²`` (``t̄_h`` the unweighted mean of the PSU
  totals). A second stage (``psu2``/``fpc2``) adds its term multiplied by ``π_a``. The
  lonely-PSU rules apply as for other designs.
* ``pps="hartley_rao"`` (R ``svydesign(..., fpc = ~p, pps = HR(p2bar))``): the
  Horvitz–Thompson form ``Σ_a Σ_b D_ab t_a t_b`` with ``D_aa = 1 − π_a`` and, for two PSUs of the
  same stratum, ``D_ab = (π_a + π_b − 1 − p2bar_h)/(n_h − 1)`` (R ``HRDcheck``; ``D_ab = 0`` when
  ``π_a + π_b`` is exactly 1), with ``p2bar_h = Σ_a π_a² / n_h`` over the stratum's sampled
  PSUs, the value of R's documented ``HR(sum(p^2)/n)``. (R's ``HR()`` without an argument
  uses the mean of ``π`` instead.) One stage only (R refuses more); a stratum with one PSU
  contributes ``(1 − π_a) t_a²`` (R has no lonely-PSU rule for this form).

Without a weight column the weights are ``1/π_a`` (times the second stage's ``M_a/m_a``).
Domains keep the full design: a domain's variance uses every PSU's ``π_a`` with zero totals
outside the domain. (R's ``svyby``/``subset`` of an uncalibrated Brewer design drops the other
rows and pads the stratum with zero totals that all take the *first* remaining PSU's ``1 − π``:
an order-dependent artefact; the full-design value here is R's ``svyratio`` on the whole
design, which is what the tests compare with.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.design.common import _LOG, PPS_METHODS, _as_float, _HartleyRao, _Stage
from evalterritoire.errors import DesignError


def _psu_probabilities(data: pd.DataFrame, fpc: str | None, psus: Any, pps: str) -> np.ndarray:
    """Each PSU's inclusion probability from the ``fpc`` column (≤ 1, constant in the PSU)."""
    if fpc is None:
        raise DesignError(f"pps={pps!r} needs fpc = the PSUs' inclusion probabilities")
    values = _as_float(data[fpc], fpc, "fpc")
    if np.isnan(values).any():
        raise DesignError(f"fpc column '{fpc}' has {int(np.isnan(values).sum())} missing value(s)")
    if (values <= 0).any() or (values > 1).any():
        raise DesignError(
            f"with pps={pps!r} the fpc column '{fpc}' holds inclusion probabilities in (0, 1]"
        )
    lo = np.full(psus.n, np.inf)
    hi = np.full(psus.n, -np.inf)
    np.minimum.at(lo, psus.codes, values)
    np.maximum.at(hi, psus.codes, values)
    varying = np.flatnonzero(hi - lo > 1e-12 * hi)
    if varying.size:
        raise DesignError(
            f"fpc column '{fpc}' is not constant within PSU '{psus.names[varying[0]]}'"
        )
    return lo


def pps_first_stage(
    design: Any,
    data: pd.DataFrame,
    fpc: str | None,
    pps: str,
    psus: Any,
    s_labels: np.ndarray,
    psu2: str | None,
) -> tuple[_Stage, np.ndarray]:
    """The first stage of a PPS design and each PSU's inclusion probability."""
    from evalterritoire.design.taylor import build_stage

    if pps not in PPS_METHODS:
        raise DesignError(f"pps must be one of {', '.join(PPS_METHODS)}, got {pps!r}")
    pi = _psu_probabilities(data, fpc, psus, pps)
    n_strata = len(s_labels)
    n_h = np.bincount(psus.stratum, minlength=n_strata).astype(float)
    if pps == "hartley_rao":
        if psu2 is not None:
            raise DesignError("pps='hartley_rao' covers one stage only (as R); drop psu2")
        return _hartley_rao_stage(psus, pi, n_strata, n_h), pi
    uncertain = np.bincount(psus.stratum, weights=(1.0 - pi >= 1e-7), minlength=n_strata)
    f_h = (uncertain > 0).astype(float)
    stage = build_stage(
        design, psus.codes, psus.n, psus.stratum, n_strata, n_h, f_h, s_labels, "stratum", None
    )
    unit_coef = 1.0 - pi
    unit_coef.setflags(write=False)
    return (
        _Stage(
            stage.unit,
            stage.n_units,
            stage.group,
            stage.n_groups,
            stage.n_in_group,
            stage.coef,
            stage.centre,
            unit_coef=unit_coef,
        ),
        pi,
    )


def _hartley_rao_stage(psus: Any, pi: np.ndarray, n_strata: int, n_h: np.ndarray) -> _Stage:
    """Hartley–Rao form: ``p2bar_h = Σ π² / n_h`` and the pairs whose ``π`` add up to 1."""
    p2bar = np.bincount(psus.stratum, weights=pi * pi, minlength=n_strata) / n_h
    pairs = _unit_pairs_summing_to_one(psus.stratum, pi)
    if pairs.size:
        _LOG.info("Hartley-Rao: %d PSU pair(s) with π_a + π_b = 1 get D_ab = 0", len(pairs) // 2)
    for arr in (pi, p2bar, pairs):
        arr.setflags(write=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(n_h > 1, n_h / (n_h - 1), 0.0)
    centre = np.ones(n_strata, dtype=bool)
    for arr in (coef, centre, n_h):
        arr.setflags(write=False)
    return _Stage(
        psus.codes,
        psus.n,
        psus.stratum,
        n_strata,
        n_h,
        coef,
        centre,
        hr=_HartleyRao(pi, p2bar, pairs),
    )


def _unit_pairs_summing_to_one(stratum: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """Pairs ``(a, b)``, ``a ≠ b`` in the same stratum with ``π_a + π_b == 1`` in floating point.

    ``π_a + v`` is non-decreasing in ``v``, so the matching ``π_b`` of a stratum form a
    contiguous run of its sorted probabilities, found by binary search near ``1 − π_a``.
    """
    order = np.lexsort((pi, stratum))
    s_sorted, p_sorted = stratum[order], pi[order]
    starts = np.searchsorted(s_sorted, s_sorted, side="left")
    ends = np.searchsorted(s_sorted, s_sorted, side="right")
    out: list[tuple[int, int]] = []
    eps = 8 * np.finfo(float).eps
    for pos in range(order.size):
        lo, hi = starts[pos], ends[pos]
        seg = p_sorted[lo:hi]
        target = 1.0 - p_sorted[pos]
        a = lo + np.searchsorted(seg, target - eps, side="left")
        b = lo + np.searchsorted(seg, target + eps, side="right")
        for other in range(a, b):
            if other != pos and p_sorted[pos] + p_sorted[other] == 1.0:
                out.append((int(order[pos]), int(order[other])))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)
