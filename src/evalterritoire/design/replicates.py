"""Replicate-weight designs: construction, replicate covariance and domain degrees of freedom.

Owns the checks and defaults of ``SurveyDesign.from_replicate_weights`` (replication types,
R ``svrepdesign``'s scales, ``rscales``, Fay's ``rho``; ``from_replicate_weights``), the
replicate patterns of the rows (``_row_patterns``), the covariance of an estimator from its
replicate values (``replicate_cov``, R ``svrVar``) and the degrees of freedom of domains of a
replicate design (``replicate_domain_df``, R ``degf`` of a subset). The functions take the
design (or its class) as their first argument; the methods of
:class:`~evalterritoire.design.SurveyDesign` call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.design.common import REPLICATE_TYPES, _as_float, _Replicates
from evalterritoire.errors import DesignError


def from_replicate_weights(
    cls: Any,
    data: pd.DataFrame,
    *,
    weight: str,
    replicate_weights: Sequence[str],
    type: str,
    scale: float | None,
    rscales: Sequence[float] | float | None,
    rho: float | None,
    mse: bool,
) -> Any:
    """A replicate-weight design of class ``cls`` (see ``SurveyDesign.from_replicate_weights``).

    The steps: check the type and columns, build the full-sample design, read the replicate
    weights, check Fay's ``rho``, settle ``rscales`` and ``scale``, then record the replicate
    patterns of the rows and the rank of the replicate weights (the design's df + 1).
    """
    if type not in REPLICATE_TYPES:
        raise DesignError(f"type must be one of {', '.join(REPLICATE_TYPES)}, got {type!r}")
    cols = list(replicate_weights)
    if not cols:
        raise DesignError("replicate_weights must name at least one column")
    unknown = [c for c in cols if c not in data]
    if unknown:
        raise DesignError(f"unknown replicate weight column(s): {', '.join(unknown)}")
    design = cls(data, weight=weight, lonely_psu="remove")
    rep = np.column_stack([_as_float(data[c], c, "replicate weight") for c in cols])
    if not np.all(np.isfinite(rep)) or (rep < 0).any():
        raise DesignError("replicate weights must be finite and ≥ 0")
    n_rep = rep.shape[1]
    _check_rho(type, rho)
    rs = _replicate_scales(type, rscales, n_rep)
    scale = _overall_scale(type, scale, n_rep, rho)
    # rows whose replicate weights are proportional (same PSU) share one pattern: the rank
    # of any set of rows is the rank of their distinct patterns
    ratio = rep / design.weights[:, None]
    rounded = np.round(ratio, 10) + 0.0
    pattern, first = _row_patterns(rounded)
    patterns = ratio[first]
    rank = int(np.linalg.matrix_rank(rep, tol=1e-5 * np.abs(rep).max()))
    for arr in (rep, rs, pattern, patterns):
        arr.setflags(write=False)
    info = _Replicates(rep, float(scale), rs, bool(mse), type, pattern, patterns)
    return design._copy(_rep=info, _rep_df=rank - 1)


def _check_rho(type: str, rho: float | None) -> None:
    """Fay's ``rho`` is required for ``type="Fay"``, in ``[0, 1)``, and refused otherwise."""
    if type == "Fay":
        if rho is None:
            raise DesignError("type='Fay' needs rho")
        if not 0 <= float(rho) < 1:
            raise DesignError(f"Fay's rho must be in [0, 1), got {rho}")
    elif rho is not None:
        raise DesignError(f"rho is only used by type='Fay' (got rho={rho} for {type!r})")


def _replicate_scales(type: str, rscales: Sequence[float] | float | None, n_rep: int) -> np.ndarray:
    """One multiplier per replicate (1 by default; JKn must give them)."""
    if type == "JKn" and rscales is None:
        raise DesignError("type='JKn' needs rscales ((n_h - 1)/n_h per replicate)")
    if rscales is None:
        return np.ones(n_rep)
    rs = np.atleast_1d(np.asarray(rscales, dtype=float)).reshape(-1)
    if rs.size not in (1, n_rep):
        raise DesignError(
            f"rscales has {rs.size} values, should have 1 or one per replicate weight "
            f"column ({n_rep})"
        )
    if not np.all(np.isfinite(rs)) or (rs < 0).any():
        raise DesignError("rscales must be finite and ≥ 0")
    return np.broadcast_to(rs, (n_rep,)).copy()


def _overall_scale(type: str, scale: float | None, n_rep: int, rho: float | None) -> float:
    """The variance multiplier: fixed for BRR and Fay, else given or R ``svrepdesign``'s."""
    fixed = {"BRR": 1.0 / n_rep}
    if type == "Fay":
        fixed["Fay"] = 1.0 / (n_rep * (1.0 - float(rho)) ** 2)
    if type in fixed:
        if scale is not None and not np.isclose(float(scale), fixed[type], rtol=1e-9, atol=0):
            raise DesignError(
                f"type={type!r} fixes scale = {fixed[type]:.10g} for {n_rep} replicates"
                f"{' and this rho' if type == 'Fay' else ''}; got scale={scale} (use "
                "type='other' to give your own scale)"
            )
        scale = fixed[type]
    elif scale is None:
        scale = {"JK1": (n_rep - 1) / n_rep, "bootstrap": 1.0 / (n_rep - 1)}.get(type, 1.0)
    if not np.isfinite(float(scale)) or float(scale) <= 0:
        raise DesignError(f"scale must be finite and > 0, got {scale}")
    return scale


def _row_patterns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Code of each row's distinct value pattern and the index of one row per pattern."""
    _, first, inverse = np.unique(values, axis=0, return_index=True, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), first.astype(np.int64)


def replicate_domain_df(design: Any, codes: np.ndarray, n_domains: int) -> np.ndarray:
    """Rank − 1 of the replicate weights of each domain's rows (R ``degf`` of a subset)."""
    rep = design._rep
    keep = codes >= 0
    n_pat = np.int64(rep.patterns.shape[0])
    uniq = np.unique(codes[keep] * n_pat + rep.pattern[keep])  # sorted by domain
    dom = uniq // n_pat
    pat = uniq % n_pat
    out = np.full(n_domains, -1, dtype=np.int64)
    full_rank = int(design.__dict__["_rep_df"]) + 1
    starts = np.searchsorted(dom, np.arange(n_domains + 1))
    tol_scale = np.abs(rep.patterns).max()
    for g in range(n_domains):
        ids = pat[starts[g] : starts[g + 1]]
        if ids.size == 0:
            continue
        if ids.size == rep.patterns.shape[0]:
            out[g] = full_rank - 1
            continue
        block = rep.patterns[ids]
        out[g] = int(np.linalg.matrix_rank(block, tol=1e-5 * tol_scale)) - 1
    return np.maximum(out, 0)


def replicate_cov(design: Any, reps: np.ndarray, full: np.ndarray) -> np.ndarray:
    """``scale × Σ_r rscales_r (θ_r − c)(θ_r − c)'`` (R ``svrVar``)."""
    rep = design._rep
    centre = full if rep.mse else reps.mean(axis=0)
    d = reps - centre
    return rep.scale * (d * rep.rscales[:, None]).T @ d
