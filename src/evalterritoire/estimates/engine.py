"""Design-based estimates: means, totals, ratios and proportions, by domain, in one vectorised pass.

Public estimators, under their full and short names (``from evalterritoire import estimates``):
:func:`estimate_mean` / ``estimates.mean``, :func:`estimate_total` / ``estimates.total``,
:func:`estimate_ratio` / ``estimates.ratio`` and :func:`estimate_proportion` /
``estimates.proportion`` (every level of a categorical variable). Each takes many variables at
once and ``by=`` one or more domain columns. The domains are factorised once; weighted sums are
aggregated with ``np.bincount``/sparse products and the linearised scores are aggregated to
(PSU × domain) cells and then to (stratum × domain) cells, so the cost does not grow with a Python
loop over domains. Results agree with R ``survey`` (``svymean``/``svytotal``/``svyratio``/
``svyciprop`` on ``subset()`` designs, i.e. ``svyby``); docs/estimation.md lists the reference
cases and the measured differences.

Conventions
-----------
* Missing values are dropped per variable inside each domain; the PSUs stay in the design (R
  ``na.rm=TRUE``). Domains where a variable has no valid value are left out of the table.
* ``se`` is the linearisation (or replicate) standard error; ``df`` is the domain's degrees of
  freedom (PSUs with members − strata with members; replicate designs: rank of the replicate
  weights of the domain's rows − 1, R ``degf`` of the subset). Intervals are
  ``estimate ± t(df) se`` (``ci="normal"``: normal quantile). **A domain with df < 1** (all its
  members in one PSU) has ``df = 0`` in the table, and its t interval uses ``df = 1`` (R would
  give ``NaN``); such an interval is very wide and the domain should be read as not estimable.
* Proportions: logit intervals by default (R ``svyciprop(method="logit")``; on replicate designs
  the standard error of the logit is the replicate one, as R's refitted ``svyglm``: infinite,
  hence ``[0, 1]``, when a replicate estimate is 0 or 1), ``interval="beta"`` for Korn–Graubard
  (R ``method="beta"``: effective ``n = p(1-p)/var × (t(α/2, n_R - 1) / t(α/2, df))²`` with
  ``n_R`` R's ``nrow()`` of the domain's subset — the domain's rows including those with a missing
  answer, or every row of the sample for a calibrated design, whose R subsets keep all rows;
  ``ci="normal"`` drops the df adjustment), ``interval="wald"`` for the symmetric one. When the
  proportion is 0 or 1 (or its variance is 0) the logit interval collapses to the estimate and
  the beta interval is Clopper–Pearson with ``n`` = respondents with a valid answer (R: ``NaN``).
* ``deff`` = design variance / variance under simple random sampling without replacement of the
  same ``n`` from the estimated population ``N̂ = Σw`` (R ``deff=TRUE``); it is ``NaN`` whenever
  that SRS variance is 0 or undefined: one respondent, a constant variable (proportions of 0 %
  or 100 %, whose ``se`` is 0 too) or ``N̂ ≤ n`` (e.g. unweighted data: a census under SRSWOR).
  ``n`` counts respondents with a valid answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from evalterritoire.design.common import _indicator, _rowsum
from evalterritoire.design.domains import domain_variances_blocks
from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import EstimationError
from evalterritoire.estimates.intervals import korn_graubard

__all__ = [
    "ESTIMATE_COLUMNS",
    "estimate_mean",
    "estimate_proportion",
    "estimate_ratio",
    "estimate_total",
    "mean",
    "proportion",
    "ratio",
    "total",
]

ESTIMATE_COLUMNS = ("estimate", "se", "ci_low", "ci_high", "df", "n", "deff")


# ----------------------------------------------------------------------------- domains
def _by_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _check_columns(design: SurveyDesign, cols: Sequence[str], what: str) -> None:
    unknown = [c for c in cols if c not in design.data]
    if unknown:
        raise EstimationError(f"unknown {what} column(s): {', '.join(map(repr, unknown))}")


def _domains(design: SurveyDesign, by: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Domain code per row (-1 = outside every domain) and the domain labels table."""
    data = design.data
    mask = design.domain_mask
    if not by:
        return np.where(mask, 0, -1).astype(np.int64), pd.DataFrame(index=range(1))
    _check_columns(design, by, "by")
    frame = data[by].copy()
    for col in by:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            frame[col] = frame[col].astype("string")
    codes = frame.groupby(by, sort=True, dropna=True, observed=True).ngroup().to_numpy()
    codes = np.where(np.isnan(codes.astype(float)), -1, codes).astype(np.int64)
    codes = np.where(mask, codes, -1)
    if (codes < 0).all():
        raise EstimationError(f"no respondent belongs to any domain of {', '.join(by)}")
    present = np.bincount(codes[codes >= 0]) > 0
    remap = np.cumsum(present) - 1
    out = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1).astype(np.int64)
    n_used = int(present.sum())
    first = np.full(n_used, -1, dtype=np.int64)
    rows = np.flatnonzero(out >= 0)
    first[out[rows[::-1]]] = rows[::-1]
    labels = frame.iloc[first].reset_index(drop=True)
    return out, labels


def _numeric(design: SurveyDesign, cols: Sequence[str]) -> np.ndarray:
    out = np.empty((len(design.data), len(cols)), order="F")
    for j, col in enumerate(cols):
        s = design.data[col]
        if pd.api.types.is_bool_dtype(s):
            s = s.astype("Float64")
        if not pd.api.types.is_numeric_dtype(s):
            raise EstimationError(f"column '{col}' is not numeric; use estimate_proportion")
        out[:, j] = s.to_numpy(dtype="float64", na_value=np.nan)
    if np.isinf(out).any():
        raise EstimationError("infinite values cannot be estimated")
    return out


# ----------------------------------------------------------------------------- the engine
def _domain_sums(codes: np.ndarray, n_dom: int, x: np.ndarray) -> np.ndarray:
    keep = codes >= 0
    if keep.all():  # every row in a domain: no copy of the rows
        return _rowsum(codes, n_dom, x)
    return _rowsum(codes[keep], n_dom, x[keep])


def _engine(
    design: SurveyDesign,
    y: np.ndarray,
    codes: np.ndarray,
    n_dom: int,
    *,
    kind: str,
    x: np.ndarray | None = None,
    logit: bool = False,
    advance: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Estimates, variances, n and deff for every (domain, column); kind = mean|total|ratio.

    With ``logit=True`` on a replicate design (proportions) the result also holds
    ``var_logit``, the replicate variance of the logit of the replicate estimates (R
    ``svyciprop(method="logit")`` refits ``svyglm`` on every replicate). Linearised designs
    are processed by blocks of columns (:data:`_BLOCK_BYTES` of rows × columns at a time),
    taken as ``y[:, a:b]``: ``y`` may be any matrix that gives float64 blocks so (the study
    table's :class:`~evalterritoire.estimates.study.CompactColumns`; the other designs take
    ``np.asarray(y)``); ``advance(n)`` is told when ``n`` more domain × column variances are
    done.
    """
    if kind != "ratio" and not design.is_replicate and not design._cal:
        return _engine_cells(design, np.asarray(y), codes, n_dom, kind=kind)
    if design.is_replicate:
        y = np.asarray(y)
        return _engine_replicate(design, y, codes, n_dom, kind=kind, x=x, logit=logit)
    parts: list[dict[str, np.ndarray]] = []

    def z_blocks() -> Iterator[np.ndarray]:
        p = y.shape[1]
        width = max(1, _BLOCK_BYTES // (8 * max(y.shape[0], 1)))
        for j0 in range(0, p, width):
            cols = slice(j0, min(p, j0 + width))
            xb = None if x is None else (x[:, cols] if x.shape[1] == p else x)
            part = _engine_block(design, y[:, cols], xb, codes, n_dom, kind)
            yield part.pop("z")
            parts.append(part)

    var = domain_variances_blocks(design, z_blocks(), codes, n_dom, advance=advance)
    got = {key: np.concatenate([part[key] for part in parts], axis=1) for key in parts[0]}
    tx = got.pop("tx", None)
    deff = _deff(
        var,
        got["ss"],
        got["tyy"],
        got["wsum"],
        got["n"],
        kind,
        None if tx is None else tx / got["wsum"],
    )
    return {"estimate": got["estimate"], "var": var, "n": got["n"], "deff": deff}


# rows × columns of the responses processed at once by the linearised engine (bytes of float64)
_BLOCK_BYTES = 32 * 1024**2


def _valid_sums(
    design: SurveyDesign, y: np.ndarray, x: np.ndarray | None, codes: np.ndarray, n_dom: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    """The answered cells and the domain counts and weight sums both engines start from.

    Returns ``valid`` (y, and x for a ratio, answered), ``y0`` and ``x0`` (zeros where not
    valid), the valid weights ``wv`` and, by domain, the counts ``n`` and weight sums ``wsum``.
    """
    valid = ~np.isnan(y)
    if x is not None:
        valid &= ~np.isnan(x)
    x0 = np.where(valid, x, 0.0) if x is not None else None
    y0 = np.where(valid, y, 0.0)
    vf = valid.astype(float)
    wv = vf * design.weights[:, None]
    n = _domain_sums(codes, n_dom, vf)
    wsum = _domain_sums(codes, n_dom, wv)
    return valid, y0, x0, wv, n, wsum


def _engine_block(
    design: SurveyDesign,
    y: np.ndarray,
    x: np.ndarray | None,
    codes: np.ndarray,
    n_dom: int,
    kind: str,
) -> dict[str, np.ndarray]:
    """Domain sums, estimates and linearised contributions ``z`` of a block of columns."""
    valid, y0, x0, wv, n, wsum = _valid_sums(design, y, x, codes, n_dom)
    est, resid, z, tx = _linearise(kind, codes, n_dom, valid, wv, wsum, y0, x0)
    ss = _domain_sums(codes, n_dom, wv * np.square(np.where(np.isfinite(resid), resid, 0.0)))
    tyy = _domain_sums(codes, n_dom, wv * np.square(y0))
    out = {"estimate": est, "n": n, "wsum": wsum, "ss": ss, "tyy": tyy, "z": z}
    if tx is not None:
        out["tx"] = tx
    return out


def _engine_replicate(
    design: SurveyDesign,
    y: np.ndarray,
    codes: np.ndarray,
    n_dom: int,
    *,
    kind: str,
    x: np.ndarray | None,
    logit: bool,
) -> dict[str, np.ndarray]:
    """The engine on a replicate-weight design (variances from the replicate estimates)."""
    valid, y0, x0, wv, n, wsum = _valid_sums(design, y, x, codes, n_dom)
    est, resid, _, tx = _linearise(kind, codes, n_dom, valid, wv, wsum, y0, x0)
    extra: dict[str, np.ndarray] = {}
    var, var_logit = _replicate_variance(
        design, y0, valid, codes, n_dom, kind, est, x0, logit=logit and kind == "mean"
    )
    if var_logit is not None:
        extra["var_logit"] = var_logit
    ss = _domain_sums(codes, n_dom, wv * np.square(np.where(np.isfinite(resid), resid, 0.0)))
    tyy = _domain_sums(codes, n_dom, wv * np.square(y0))
    deff = _deff(var, ss, tyy, wsum, n, kind, None if kind != "ratio" else tx / wsum)
    return {"estimate": est, "var": var, "n": n, "deff": deff, **extra}


def _linearise(
    kind: str,
    codes: np.ndarray,
    n_dom: int,
    valid: np.ndarray,
    wv: np.ndarray,
    wsum: np.ndarray,
    y0: np.ndarray,
    x0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Domain estimates, residuals, linearised scores ``z`` and (ratios) the domain totals of x.

    ``wv`` are the weights of the valid rows (0 elsewhere), ``y0``/``x0`` the values with 0
    for missing ones; ``z`` is 0 where the domain's estimate is undefined.
    """
    gi = np.maximum(codes, 0)
    ty = _domain_sums(codes, n_dom, wv * y0)
    tx = None
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "mean":
            est = ty / wsum
            resid = np.where(valid, y0 - est[gi], 0.0)
            z = wv * resid / wsum[gi]
        elif kind == "total":
            est = ty
            resid = np.where(valid, y0 - (ty / wsum)[gi], 0.0)
            z = wv * y0
        else:
            tx = _domain_sums(codes, n_dom, wv * x0)
            est = ty / tx
            resid = np.where(valid, y0 - est[gi] * x0, 0.0)
            z = wv * resid / tx[gi]
    return est, resid, np.where(np.isfinite(z), z, 0.0), tx


def _deff(
    var: np.ndarray,
    ss: np.ndarray,
    tyy: np.ndarray,
    wsum: np.ndarray,
    n: np.ndarray,
    kind: str,
    xbar: np.ndarray | None,
) -> np.ndarray:
    """Design variance / SRSWOR variance (R ``deff=TRUE``); NaN where the latter is 0.

    ``ss`` = Σ w (y - ŷ)² over the domain's valid rows. The SRS variance of a mean is
    ``s² / n × max(0, 1 - n / N̂)`` with ``s² = ss / N̂ × n / (n - 1)`` and ``N̂ = Σw``; it is 0
    (or undefined) for one respondent, a constant variable (a proportion of 0 or 1) or
    ``N̂ ≤ n``, and the design effect is then NaN rather than R's ``Inf``/``NaN``. A variable
    is constant when ``ss ≤ 1e-12 Σ w y²`` (``tyy``; rounding noise of the sums).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ss = np.where(ss <= 1e-12 * tyy, 0.0, ss)
        s2 = np.where(n > 1, ss / wsum * n / (n - 1), np.nan)
        vsrs = s2 / n * np.maximum(0.0, (wsum - n) / wsum)
        if kind == "total":
            vsrs = vsrs * wsum**2
        elif kind == "ratio":
            vsrs = vsrs / np.square(xbar)
        ok = np.isfinite(vsrs) & (vsrs > 0)
        return np.where(ok, var / np.where(ok, vsrs, 1.0), np.nan)


def _engine_cells(
    design: SurveyDesign, y: np.ndarray, codes: np.ndarray, n_dom: int, *, kind: str
) -> dict[str, np.ndarray]:
    """Fast path (Taylor, uncalibrated): everything from (finest unit × domain) cell sums.

    One sparse product per sum (Σw·y, Σw·y², and Σw, Σ1 over valid rows) aggregates the rows to
    cells; domain estimates, the linearised PSU-cell totals ``(Σw y - m Σw) / Σw`` and the
    variances then only touch cells, never rows again.
    """
    codes = design._domain_codes(codes)
    keep = codes >= 0
    all_rows = bool(keep.all())
    cell, keys = design._cells(codes, n_dom)
    n_cell = keys.size
    w = design.weights if all_rows else design.weights[keep]
    yk = y if all_rows else y[keep]
    nan = np.isnan(yk)
    nan_cols = np.flatnonzero(nan.any(axis=0))
    y0 = np.where(nan, 0.0, yk) if nan_cols.size else yk
    a_w = _indicator(cell, n_cell, w)
    s1 = np.asarray(a_w @ y0)
    s2 = np.asarray(a_w @ np.square(y0))
    p = yk.shape[1]
    s0 = np.repeat(np.asarray(a_w.sum(axis=1)), p, axis=1)
    cnt = np.repeat(np.bincount(cell, minlength=n_cell).astype(float)[:, None], p, axis=1)
    if nan_cols.size:
        valid = (~nan[:, nan_cols]).astype(float)
        s0[:, nan_cols] = a_w @ valid
        cnt[:, nan_cols] = _indicator(cell, n_cell) @ valid
    dom = keys % n_dom
    wsum = _rowsum(dom, n_dom, s0)
    ty = _rowsum(dom, n_dom, s1)
    tyy = _rowsum(dom, n_dom, s2)
    n = _rowsum(dom, n_dom, cnt)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = ty / wsum
        if kind == "mean":
            est = mean
            t = (s1 - mean[dom] * s0) / wsum[dom]
        else:
            est = ty
            t = s1
        t = np.where(np.isfinite(t), t, 0.0)
        var, _ = design._cell_variances(t, keys, n_dom)
        ss = tyy - 2 * mean * ty + mean * mean * wsum  # Σw(y-ȳ)² from the expanded sums
    deff = _deff(var, ss, tyy, wsum, n, kind, None)
    return {"estimate": est, "var": var, "n": n, "deff": deff}


def _replicate_variance(
    design: SurveyDesign,
    y0: np.ndarray,
    valid: np.ndarray,
    codes: np.ndarray,
    n_dom: int,
    kind: str,
    est: np.ndarray,
    x0: np.ndarray | None,
    *,
    logit: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Replicate variances of domain estimates (and of their logits when ``logit``)."""
    rep = design._rep
    keep = np.flatnonzero(codes >= 0)
    out = np.empty_like(est)
    out_logit = np.full_like(est, np.nan) if logit else None
    for j in range(y0.shape[1]):
        rows = keep[valid[keep, j]]
        ind = sparse.csr_matrix(
            (np.ones(rows.size), (codes[rows], rows)), shape=(n_dom, y0.shape[0])
        )
        ty = ind.multiply(y0[:, j]) @ rep.weights
        if kind == "mean":
            theta = ty / (ind @ rep.weights)
        elif kind == "total":
            theta = np.asarray(ty)
        else:
            theta = ty / (ind.multiply(x0[:, j]) @ rep.weights)
        theta = np.asarray(theta)
        centre = est[:, j][:, None] if rep.mse else theta.mean(axis=1, keepdims=True)
        out[:, j] = rep.scale * (np.square(theta - centre) * rep.rscales).sum(axis=1)
        if out_logit is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                eta = np.log(theta / (1 - theta))
                full = np.log(est[:, j] / (1 - est[:, j]))[:, None]
                centre = full if rep.mse else eta.mean(axis=1, keepdims=True)
                v = rep.scale * (np.square(eta - centre) * rep.rscales).sum(axis=1)
            # a replicate estimate at 0 or 1 has an infinite logit (R's svyglm stops somewhere
            # near ±30 and its interval is then ~[0, 1]): the logit variance is infinite
            out_logit[:, j] = np.where(np.isinf(eta).any(axis=1), np.inf, v)
    return out, out_logit


def _quantile(level: float, df: np.ndarray, ci: str) -> np.ndarray:
    """Two-sided quantile: normal, or t with ``max(df, 1)`` (R would give NaN for df < 1)."""
    if not 0 < level < 1:
        raise EstimationError(f"level must be in (0, 1), got {level}")
    if ci == "normal":
        return np.full(df.shape, stats.norm.ppf(0.5 + level / 2))
    if ci != "t":
        raise EstimationError(f"ci must be 't' or 'normal', got {ci!r}")
    return stats.t.ppf(0.5 + level / 2, np.maximum(df, 1))


def _tidy(
    labels: pd.DataFrame,
    names: Sequence[str],
    levels: Sequence[str] | None,
    res: dict[str, np.ndarray],
    df_dom: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> pd.DataFrame:
    n_dom, p = res["estimate"].shape
    dom_idx = np.repeat(np.arange(n_dom), p)
    col_idx = np.tile(np.arange(p), n_dom)
    out = labels.iloc[dom_idx].reset_index(drop=True)
    out["variable"] = np.asarray(names, dtype=object)[col_idx]
    if levels is not None:
        out["level"] = np.asarray(levels, dtype=object)[col_idx]
    out["estimate"] = res["estimate"].ravel()
    out["se"] = np.sqrt(res["var"]).ravel()
    out["ci_low"] = lo.ravel()
    out["ci_high"] = hi.ravel()
    out["df"] = np.repeat(df_dom, p)
    out["n"] = res["n"].ravel().astype(np.int64)
    out["deff"] = res["deff"].ravel()
    out = out[out["n"] > 0]
    for col in ("variable", "level"):
        if col in out:
            out[col] = out[col].astype("string")
    keys = [*labels.columns, "variable", *(["level"] if levels is not None else [])]
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _symmetric(res: dict[str, np.ndarray], q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = q[:, None] * np.sqrt(res["var"])
    return res["estimate"] - half, res["estimate"] + half


def _prepare(design: SurveyDesign, cols: Sequence[str], by: Any) -> tuple:
    if not isinstance(design, SurveyDesign):
        raise EstimationError(f"design must be a SurveyDesign, got {type(design).__name__}")
    cols = [cols] if isinstance(cols, str) else list(cols)
    if not cols:
        raise EstimationError("no variable to estimate")
    _check_columns(design, cols, "variable")
    by = _by_list(by)
    codes, labels = _domains(design, by)
    return cols, codes, labels


def _finish(res: dict[str, np.ndarray], names: Sequence[str], what: str) -> None:
    if not (res["n"] > 0).any():
        raise EstimationError(f"no valid value of {', '.join(names)} in the domain(s) for {what}")


def estimate_mean(
    design: SurveyDesign,
    variables: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    ci: str = "t",
    level: float = 0.95,
) -> pd.DataFrame:
    """Weighted means with linearisation (or replicate) standard errors, by domain.

    Parameters
    ----------
    design : SurveyDesign
        The survey design (a subset restricts to its domain).
    variables : str or sequence of str
        Numeric columns.
    by : str or sequence of str, optional
        Domain columns (rows with a missing domain value are in no domain).
    ci : {"t", "normal"}
        t intervals with the domain's degrees of freedom, or normal intervals.
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        ``by`` columns, ``variable``, ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``,
        ``n``, ``deff``; sorted by domain and variable. ``df`` can be 0 (the interval then uses
        1) and ``deff`` NaN (SRS variance 0): see the module's Conventions.
    """
    cols, codes, labels = _prepare(design, variables, by)
    res = _engine(design, _numeric(design, cols), codes, len(labels), kind="mean")
    _finish(res, cols, "a mean")
    df = design.domain_df(codes, len(labels))
    lo, hi = _symmetric(res, _quantile(level, df, ci))
    return _tidy(labels, cols, None, res, df, lo, hi)


def estimate_total(
    design: SurveyDesign,
    variables: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    ci: str = "t",
    level: float = 0.95,
) -> pd.DataFrame:
    """Weighted totals by domain (same parameters and output as :func:`estimate_mean`)."""
    cols, codes, labels = _prepare(design, variables, by)
    res = _engine(design, _numeric(design, cols), codes, len(labels), kind="total")
    _finish(res, cols, "a total")
    df = design.domain_df(codes, len(labels))
    lo, hi = _symmetric(res, _quantile(level, df, ci))
    return _tidy(labels, cols, None, res, df, lo, hi)


def estimate_ratio(
    design: SurveyDesign,
    numerators: str | Sequence[str],
    denominators: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    ci: str = "t",
    level: float = 0.95,
) -> pd.DataFrame:
    """Ratios of weighted totals ``Σwy / Σwx`` by domain (R ``svyratio``).

    Parameters
    ----------
    design : SurveyDesign
        The survey design.
    numerators, denominators : str or sequence of str
        Paired numeric columns (same length); a row counts when both are valid.
    by, ci, level
        As in :func:`estimate_mean`.

    Returns
    -------
    DataFrame
        As :func:`estimate_mean`, ``variable`` = ``"num/den"``. ``deff`` compares with the SRS
        variance of the ratio's linearised residuals.
    """
    nums, codes, labels = _prepare(design, numerators, by)
    dens = [denominators] if isinstance(denominators, str) else list(denominators)
    _check_columns(design, dens, "denominator")
    if len(dens) != len(nums):
        raise EstimationError("numerators and denominators must have the same length")
    res = _engine(
        design,
        _numeric(design, nums),
        codes,
        len(labels),
        kind="ratio",
        x=_numeric(design, dens),
    )
    names = [f"{a}/{b}" for a, b in zip(nums, dens, strict=True)]
    _finish(res, names, "a ratio")
    df = design.domain_df(codes, len(labels))
    lo, hi = _symmetric(res, _quantile(level, df, ci))
    return _tidy(labels, names, None, res, df, lo, hi)


def _indicators(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        vals = series.to_numpy(dtype="float64", na_value=np.nan)
        ok = ~np.isnan(vals)
        if ok.any() and np.all(vals[ok] == np.round(vals[ok])):
            text = pd.Series(
                np.where(ok, np.nan_to_num(vals).astype(np.int64).astype(str), ""),
                index=series.index,
            )
        else:
            text = series.astype("string").fillna("")
        text = text.where(ok, None)
    else:
        text = series.astype("string")
    missing = text.isna().to_numpy()
    codes, levels = pd.factorize(text, sort=True)
    ind = np.zeros((len(series), len(levels)))
    ok = codes >= 0
    ind[np.flatnonzero(ok), codes[ok]] = 1.0
    ind[missing] = np.nan
    return ind, [str(v) for v in levels]


def _proportion_ci(
    res: dict[str, np.ndarray],
    df: np.ndarray,
    level: float,
    ci: str,
    interval: str,
    n_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Interval of proportions ``res["estimate"]`` (domains × columns).

    ``n_rows`` (domains,) is R's ``nrow(design)`` for the Korn–Graubard df adjustment (defaults
    to ``res["n"]``).
    """
    p = res["estimate"]
    var = res["var"]
    q = _quantile(level, df, ci)[:, None]
    if interval == "wald":
        return _symmetric(res, q[:, 0])
    if interval == "logit":
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.log(p / (1 - p))
            se_eta = np.sqrt(var) / (p * (1 - p))
            if "var_logit" in res:  # replicate designs: variance of the replicate logits
                se_rep = np.sqrt(res["var_logit"])
                se_eta = np.where(np.isnan(se_rep), se_eta, se_rep)
            half = q * se_eta
            lo = 1 / (1 + np.exp(-(eta - half)))
            hi = 1 / (1 + np.exp(-(eta + half)))
        edge = (p <= 0) | (p >= 1) | (var <= 0)
        return np.where(edge, p, lo), np.where(edge, p, hi)
    if interval == "beta":  # Korn-Graubard, as R svyciprop(method="beta")
        rows = (n_rows[:, None] if n_rows is not None else res["n"]).astype(float)
        return korn_graubard(
            p, var, df[:, None] if ci == "t" else None, res["n"], rows, level=level
        )
    raise EstimationError(f"interval must be 'logit', 'beta' or 'wald', got {interval!r}")


def _design_rows(design: SurveyDesign, codes: np.ndarray, n_dom: int) -> np.ndarray:
    """R's ``nrow(design)`` for each domain's ``subset`` (Korn–Graubard df adjustment).

    The domain's rows, with or without an answer to the variable; for calibrated designs
    R's ``subset`` keeps every row (zero weight outside the domain), so it is the sample size.
    """
    if design._cal and not design.is_replicate:
        return np.full(n_dom, float(len(design.data)))
    c = design._domain_codes(codes)
    return np.bincount(c[c >= 0], minlength=n_dom).astype(float)


def estimate_proportion(
    design: SurveyDesign,
    variables: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    interval: str = "logit",
    ci: str = "t",
    level: float = 0.95,
) -> pd.DataFrame:
    """Proportion of every level of categorical (or coded numeric) variables, by domain.

    Parameters
    ----------
    design : SurveyDesign
        The survey design.
    variables : str or sequence of str
        Columns whose distinct values are the levels (numbers print as integers, e.g. ``"1"``).
    by : str or sequence of str, optional
        Domain columns.
    interval : {"logit", "beta", "wald"}
        Logit (R ``svyciprop`` default), Korn–Graubard (R ``method="beta"``, with R's effective
        n and df adjustment, see the module's Conventions), or symmetric (R ``method="mean"``).
    ci : {"t", "normal"}
        Quantiles from t with domain df or from the normal (for ``"beta"``: no df adjustment).
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        As :func:`estimate_mean` plus ``level``; one row per domain × variable × level.
    """
    cols, codes, labels = _prepare(design, variables, by)
    blocks, names, levels = [], [], []
    for col in cols:
        ind, lv = _indicators(design.data[col])
        blocks.append(ind)
        names += [col] * len(lv)
        levels += lv
    y = np.hstack(blocks)
    n_dom = len(labels)
    res = _engine(design, y, codes, n_dom, kind="mean", logit=interval == "logit")
    _finish(res, cols, "a proportion")
    df = design.domain_df(codes, n_dom)
    lo, hi = _proportion_ci(res, df, level, ci, interval, _design_rows(design, codes, n_dom))
    return _tidy(labels, names, levels, res, df, lo, hi)


# ----------------------------------------------------------------------------- short names
#: Short public names (``from evalterritoire import estimates; estimates.mean(design, ...)``);
#: the same functions as :func:`estimate_mean`, :func:`estimate_total`, :func:`estimate_ratio`
#: and :func:`estimate_proportion`.
mean = estimate_mean
total = estimate_total
ratio = estimate_ratio
proportion = estimate_proportion
