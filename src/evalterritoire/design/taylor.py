"""Taylor linearisation: the sampling stages of a design and the variance of totals they give.

Owns the construction of a :class:`~evalterritoire.design.SurveyDesign` from its columns
(``init_design``: weights, strata, PSUs nested in strata, first-stage fpc, second stage, the
weights implied by an fpc), the fpc of each stratum or PSU (``fpc_per_group``), the lonely-PSU
rule applied to one stage (``build_stage``), the residuals of the contributions on the
calibration steps (``residualise``), the variance of totals over the stages
(``taylor_variance``), the with-replacement version of a design (``without_fpc``) and the
variance as a linear map (``linear_operator``). The functions take the design as their first
argument; the methods of :class:`~evalterritoire.design.SurveyDesign` call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.design.common import (
    _CERTAIN,
    _LOG,
    LONELY_PSU_RULES,
    LinearOperator,
    _as_float,
    _codes,
    _rowsum,
    _Stage,
)
from evalterritoire.errors import DesignError


# ----------------------------------------------------------------------------- construction
def init_design(
    design: Any,
    data: pd.DataFrame,
    *,
    weight: str | None,
    strata: str | None,
    psu: str | None,
    fpc: str | None,
    psu2: str | None,
    fpc2: str | None,
    lonely_psu: str,
    pps: str | None = None,
) -> None:
    """Validate the design columns and set the attributes of a new (not yet frozen) design.

    The steps: check the columns, read the weights, the strata, the PSUs nested in them, the
    first stage (with its fpc, or the PSUs' inclusion probabilities of a PPS design) and, with
    a first-stage fpc, the second stage; without a weight column the weights are those the fpc
    imply (inverse sampling fractions).
    """
    named = {"weight": weight, "strata": strata, "psu": psu, "fpc": fpc}
    named |= {"psu2": psu2, "fpc2": fpc2}
    _check_design_columns(data, named, lonely_psu)
    n = len(data)
    design._data = data
    design._spec = dict(named, lonely_psu=lonely_psu, pps=pps)
    design._lonely = lonely_psu
    w = np.ones(n) if weight is None else _read_weights(data[weight], weight)
    if strata is None:
        s_codes, s_labels = np.zeros(n, dtype=np.int64), np.array(["(all)"], dtype=object)
    else:
        s_codes, s_labels = _codes(data[strata], strata, "strata")
    psus = _nested_psus(data, psu, s_codes, s_labels)
    if pps is None:
        stage1, frac1 = _first_stage(design, data, fpc, s_codes, s_labels, psus)
        psu_frac = None if frac1 is None else frac1[psus.stratum]
        design._fpc_factor = np.ones(len(s_labels)) if frac1 is None else 1.0 - frac1
    else:
        from evalterritoire.design.pps import pps_first_stage

        stage1, psu_frac = pps_first_stage(design, data, fpc, pps, psus, s_labels, psu2)
        design._fpc_factor = None  # varies by PSU
    stages = [stage1]
    if psu2 is not None and fpc is not None:
        stage2, pop2, m_a = _second_stage(design, data, psu2, fpc2, psus, psu_frac)
        stages.append(stage2)
        if weight is None:
            w = w * (pop2 / m_a)[psus.codes]
    if weight is None and psu_frac is not None:
        w = w / psu_frac[psus.codes]
    w.setflags(write=False)
    design._w = w
    design._stages = tuple(stages)
    design._strata = s_codes
    design._n_strata = len(s_labels)
    design._psu = psus.codes
    design._n_psu = psus.n
    design._psu_stratum = psus.stratum
    design._domain = None
    design._cal = ()
    design._rep = None
    design._calibration = {"method": "none"}


def _check_design_columns(data: Any, named: dict[str, str | None], lonely_psu: str) -> None:
    """The data is a non-empty frame holding every named column; the stages are complete."""
    if not isinstance(data, pd.DataFrame):
        raise DesignError(f"design data must be a DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise DesignError("design data has no rows")
    if lonely_psu not in LONELY_PSU_RULES:
        raise DesignError(
            f"lonely_psu must be one of {', '.join(LONELY_PSU_RULES)}, got {lonely_psu!r}"
        )
    unknown = [f"{k}='{v}'" for k, v in named.items() if v is not None and v not in data]
    if unknown:
        raise DesignError(f"unknown design column(s): {', '.join(unknown)}")
    if named["fpc2"] is not None and (named["psu2"] is None or named["fpc"] is None):
        raise DesignError("fpc2 needs psu2 and a first-stage fpc")
    if named["psu2"] is not None and named["fpc"] is not None and named["fpc2"] is None:
        raise DesignError(
            "a two-stage design with a first-stage fpc needs fpc2 (second-stage population)"
        )


def _read_weights(series: pd.Series, weight: str) -> np.ndarray:
    """The weight column as floats, all finite and > 0."""
    w = _as_float(series, weight, "weight")
    bad = ~np.isfinite(w)
    if bad.any():
        raise DesignError(
            f"weight column '{weight}' has {int(bad.sum())} missing or infinite "
            f"value(s) (first at row {int(np.flatnonzero(bad)[0])})"
        )
    if (w <= 0).any():
        raise DesignError(
            f"weight column '{weight}' has {int((w <= 0).sum())} value(s) ≤ 0 "
            f"(first at row {int(np.flatnonzero(w <= 0)[0])})"
        )
    return w


@dataclass(frozen=True)
class _PSUs:
    """First-stage units: each row's PSU code, their number, stratum and names."""

    codes: np.ndarray  # PSU of each row (0..n-1), numbered by (PSU label, stratum)
    n: int
    stratum: np.ndarray  # stratum of each PSU
    names: np.ndarray  # label of each PSU (its number without a PSU column)


def _nested_psus(
    data: pd.DataFrame, psu: str | None, s_codes: np.ndarray, s_labels: np.ndarray
) -> _PSUs:
    """The PSUs, each within one stratum (every row its own PSU without a PSU column)."""
    n, n_strata = len(data), len(s_labels)
    if psu is None:
        return _PSUs(np.arange(n, dtype=np.int64), n, s_codes.copy(), np.arange(n))
    raw, psu_labels = _codes(data[psu], psu, "psu")
    pair, pair_uniques = pd.factorize(raw * np.int64(n_strata) + s_codes, sort=True)
    pair_uniques = np.asarray(pair_uniques, dtype=np.int64)
    pair_psu = pair_uniques // n_strata
    if len(np.unique(pair_psu)) != len(pair_psu):
        counts = np.bincount(pair_psu)
        bad_psu = int(np.flatnonzero(counts > 1)[0])
        in_strata = sorted(str(s_labels[k]) for k in pair_uniques[pair_psu == bad_psu] % n_strata)
        raise DesignError(
            f"PSUs are not nested in strata: PSU '{psu_labels[bad_psu]}' appears in "
            f"strata {', '.join(in_strata)}"
        )
    stratum = pair_uniques % n_strata
    names = np.asarray(psu_labels, dtype=object)[pair_psu]
    return _PSUs(pair.astype(np.int64), int(stratum.size), stratum, names)


def _first_stage(
    design: Any,
    data: pd.DataFrame,
    fpc: str | None,
    s_codes: np.ndarray,
    s_labels: np.ndarray,
    psus: _PSUs,
) -> tuple[_Stage, np.ndarray | None]:
    """The first stage (PSUs within strata, its fpc) and the strata's sampling fractions."""
    n_strata = len(s_labels)
    n_h = np.bincount(psus.stratum, minlength=n_strata).astype(float)
    if fpc is None:
        f_h, frac1 = np.ones(n_strata), None
    else:
        pop = fpc_per_group(data[fpc], fpc, s_codes, n_strata, n_h, s_labels, "stratum")
        f_h, frac1 = np.where(np.isinf(pop), 1.0, (pop - n_h) / pop), n_h / pop
    stage = build_stage(
        design, psus.codes, psus.n, psus.stratum, n_strata, n_h, f_h, s_labels, "stratum", None
    )
    return stage, frac1


def _second_stage(
    design: Any,
    data: pd.DataFrame,
    psu2: str,
    fpc2: str,
    psus: _PSUs,
    psu_frac: np.ndarray,
) -> tuple[_Stage, np.ndarray, np.ndarray]:
    """The second stage (units within PSUs, its fpc), the PSUs' populations and sample sizes.

    ``psu_frac`` is each PSU's first-stage sampling fraction (``n_h / N_h``, or ``π_a`` for a
    PPS design), the multiplier of its second-stage variance.
    """
    raw2, _ = _codes(data[psu2], psu2, "psu2")
    pair2, pair2_uniques = pd.factorize(raw2 * np.int64(psus.n) + psus.codes, sort=True)
    ssu_psu = np.asarray(pair2_uniques, dtype=np.int64) % psus.n
    m_a = np.bincount(ssu_psu, minlength=psus.n).astype(float)
    pop2 = fpc_per_group(data[fpc2], fpc2, psus.codes, psus.n, m_a, None, "PSU")
    f2 = np.where(np.isinf(pop2), 1.0, (pop2 - m_a) / pop2)
    stage = build_stage(
        design,
        pair2.astype(np.int64),
        int(ssu_psu.size),
        ssu_psu,
        psus.n,
        m_a,
        f2,
        psus.names,
        "PSU",
        psu_frac,
    )
    return stage, pop2, m_a


def fpc_per_group(
    series: pd.Series,
    col: str,
    codes: np.ndarray,
    n_groups: int,
    n_sampled: np.ndarray,
    labels: np.ndarray | None,
    what: str,
) -> np.ndarray:
    """Population count of each group (stratum or PSU) from an fpc column (count or fraction)."""
    values = _as_float(series, col, "fpc")
    if np.isnan(values).any():
        raise DesignError(f"fpc column '{col}' has {int(np.isnan(values).sum())} missing value(s)")
    if (values <= 0).any():
        raise DesignError(f"fpc column '{col}' has value(s) ≤ 0")
    lo = np.full(n_groups, np.inf)
    hi = np.full(n_groups, -np.inf)
    np.minimum.at(lo, codes, values)
    np.maximum.at(hi, codes, values)
    varying = np.flatnonzero(hi - lo > 1e-9 * np.maximum(1.0, np.abs(hi)))
    if varying.size:
        name = labels[varying[0]] if labels is not None else varying[0]
        raise DesignError(f"fpc column '{col}' is not constant within {what} '{name}'")
    if np.all(values <= 1):
        pop = n_sampled / lo  # sampling fraction → population count
    else:
        pop = lo
        short = np.flatnonzero(pop < n_sampled - 1e-9)
        if short.size:
            k = short[0]
            name = labels[k] if labels is not None else k
            raise DesignError(
                f"fpc column '{col}' is smaller than the number of sampled units in {what} "
                f"'{name}' ({pop[k]:g} < {int(n_sampled[k])})"
            )
    return pop


def build_stage(
    design: Any,
    unit: np.ndarray,
    n_units: int,
    group: np.ndarray,
    n_groups: int,
    n_in: np.ndarray,
    f: np.ndarray,
    labels: np.ndarray,
    what: str,
    multiplier: np.ndarray | None,
) -> _Stage:
    """One stage's variance structure under the design's lonely-PSU rule (logged, recorded)."""
    lonely = (n_in == 1) & (f >= _CERTAIN)
    if lonely.any() and design._lonely == "fail":
        names = [str(labels[k]) for k in np.flatnonzero(lonely)[:5]]
        raise DesignError(
            f"{what} {', '.join(repr(x) for x in names)} has only one sampled "
            f"{'PSU' if what == 'stratum' else 'second-stage unit'} (lonely_psu='fail'); "
            "merge strata or choose lonely_psu = remove | adjust | certainty"
        )
    if lonely.any():
        names = tuple(sorted(str(labels[k]) for k in np.flatnonzero(lonely)))
        design.__dict__.setdefault("_lonely_units", ())
        design.__dict__["_lonely_units"] += tuple(f"{what} {x}" for x in names)
        _LOG.info(
            "lonely PSU rule %r applied to %d %s(s): %s",
            design._lonely,
            len(names),
            what,
            ", ".join(names[:10]),
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(n_in > 1, f * n_in / (n_in - 1), 0.0)
    coef = np.where(f < _CERTAIN, 0.0, coef)
    centre = np.ones(n_groups, dtype=bool)
    if design._lonely == "adjust":
        coef = np.where(lonely, f, coef)
        centre = ~lonely
    if multiplier is not None:
        coef = coef * multiplier
    for arr in (unit, group, n_in, coef, centre):
        arr.setflags(write=False)
    return _Stage(unit, n_units, group, n_groups, n_in, coef, centre)


# ----------------------------------------------------------------------------- variance
def residualise(design: Any, z: np.ndarray) -> np.ndarray:
    """Residuals of the contributions on each calibration step, in order (R ``calibrate``)."""
    for step in design._cal:
        u = z / step.w_after[:, None]
        b = step.pinv @ (step.x.T @ (u * step.w_before[:, None]))
        z = z - step.w_after[:, None] * (step.x @ b)
    return z


def taylor_variance(design: Any, z: np.ndarray) -> np.ndarray:
    """Covariance of the totals of checked, domain-restricted contributions ``z`` (n, p)."""
    from evalterritoire.design.covariance import _q_full, stage_form

    z = residualise(design, z)
    v = np.zeros((z.shape[1], z.shape[1]))
    for stage in design._stages:
        if not stage.is_standard:  # PPS stages (Brewer, Hartley-Rao): the quadratic form
            t = _rowsum(stage.unit, stage.n_units, z)
            v += _q_full(stage_form(stage), t, t)
            continue
        t = stage.centred(_rowsum(stage.unit, stage.n_units, z))
        v += (t * stage.coef[stage.group][:, None]).T @ t
    return v


def without_fpc(design: Any) -> Any:
    """The design with a with-replacement first stage (see ``SurveyDesign.without_fpc``)."""
    if design._rep is not None or design._spec.get("fpc") is None:
        return design
    st = design._stages[0]
    n_in = st.n_in_group
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(n_in > 1, n_in / (n_in - 1), 0.0)
    centre = np.ones(st.n_groups, dtype=bool)
    if design._lonely == "adjust":
        coef = np.where(n_in == 1, 1.0, coef)
        centre = n_in > 1
    for arr in (coef, centre):
        arr.setflags(write=False)
    stage = _Stage(st.unit, st.n_units, st.group, st.n_groups, n_in, coef, centre)
    spec = dict(design._spec, fpc=None, psu2=None, fpc2=None, pps=None)
    return design._copy(_stages=(stage,), _spec=spec, _fpc_factor=np.ones(st.n_groups))


def linear_operator(design: Any) -> LinearOperator:
    """The single-stage variance as a linear map (see ``SurveyDesign.linear_operator``)."""
    if design._rep is not None:
        raise DesignError("a replicate-weight design has no linearisation operator")
    if len(design._stages) != 1:
        raise DesignError(
            "the linearisation operator covers a single stage (use without_fpc() first)"
        )
    stage = design._stages[0]
    if stage.hr is not None:
        raise DesignError(
            "a Hartley-Rao PPS design's variance is not a sum of squares (no linear operator)"
        )
    steps = []
    for step in design._cal:
        E = step.x * step.w_after[:, None]
        F = (step.x * (step.w_before / step.w_after)[:, None]) @ step.pinv.T
        steps.append((E, F))
    domain = None if design._domain is None else design._domain.astype(float)
    return LinearOperator(stage.unit, stage.n_units, stage, tuple(steps), domain)
