"""Calibration and trimming of a design's weights.

Owns the margin matrix built from ``{variable: {level: population total}}`` (``margin_matrix``:
checks, one-hot levels, optional intercept, agreement of the margins' population sizes), the
new design a calibration returns with its calibration step for the variance (``calibrated``),
post-stratification (R ``postStratify``: ``poststratify``), raking by iterative proportional
fitting (``rake``), linear GREG calibration (R ``calibrate(calfun="linear")``:
``calibrate_linear``), R ``trimWeights`` (``trim_weights``) and R's general ``calibrate``
(``calibrate``: categorical margins and totals of numeric auxiliaries, linear / raking / logit
distance, bounds on the g-weights; R ``grake``'s Newton iterations, see ``_grake``). The
functions take the design as their first argument; the methods of
:class:`~evalterritoire.design.SurveyDesign` call them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from evalterritoire.design.common import CALFUNS, _as_float, _CalStep, _level_strings
from evalterritoire.errors import DesignError


# ----------------------------------------------------------------------------- margins
def margin_matrix(
    design: Any, margins: Mapping[str, Mapping[str, float]], *, intercept: bool
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Calibration model matrix, its population totals and each margin's (codes, totals)."""
    if design._rep is not None:
        raise DesignError("calibration of replicate-weight designs is not supported")
    if not margins:
        raise DesignError("calibration needs at least one margin")
    blocks: list[np.ndarray] = []
    totals: list[float] = []
    coded: list[tuple[np.ndarray, np.ndarray]] = []
    grand: list[float] = []
    for var in sorted(margins):
        levels_tot = margins[var]
        if var not in design._data:
            raise DesignError(f"calibration variable '{var}' is not a column of the data")
        levels = sorted(str(k) for k in levels_tot)
        tot = np.array([float(levels_tot[k]) for k in sorted(levels_tot, key=str)])
        if not np.all(np.isfinite(tot)) or (tot < 0).any():
            raise DesignError(f"calibration totals of '{var}' must be finite and ≥ 0")
        values = _level_strings(design._data[var])
        if values.isna().any():
            raise DesignError(
                f"calibration variable '{var}' has {int(values.isna().sum())} missing value(s)"
            )
        lookup = {lv: i for i, lv in enumerate(levels)}
        idx = values.map(lookup)
        if idx.isna().any():
            extra = sorted(set(values[idx.isna()].unique()))[:5]
            raise DesignError(
                f"calibration variable '{var}' has level(s) {', '.join(map(repr, extra))} "
                "with no population total"
            )
        code = idx.to_numpy(dtype=np.int64)
        present = np.bincount(code, minlength=len(levels))
        empty = [levels[i] for i in np.flatnonzero((present == 0) & (tot > 0))]
        if empty:
            raise DesignError(
                f"calibration level(s) {', '.join(map(repr, empty))} of '{var}' have a "
                "population total but no respondent"
            )
        coded.append((code, tot))
        grand.append(float(tot.sum()))
        onehot = np.zeros((len(code), len(levels)))
        onehot[np.arange(len(code)), code] = 1.0
        if intercept:
            blocks.append(onehot[:, 1:])
            totals.extend(tot[1:])
        else:
            blocks.append(onehot)
            totals.extend(tot)
    if max(grand) - min(grand) > 1e-6 * max(grand):
        raise DesignError(
            "calibration margins disagree on the population size: "
            + ", ".join(f"{v}={g:g}" for v, g in zip(sorted(margins), grand, strict=True))
        )
    if intercept:
        blocks.insert(0, np.ones((len(design._data), 1)))
        totals.insert(0, grand[0])
    return np.hstack(blocks), np.array(totals), coded


def calibrated(design: Any, x: np.ndarray, w_new: np.ndarray, info: dict[str, Any]) -> Any:
    """The design with calibrated weights ``w_new`` and one more calibration step on ``x``."""
    if not np.all(np.isfinite(w_new)):
        raise DesignError(f"{info['method']} calibration produced non-finite weights")
    gram = x.T @ (x * design._w[:, None])
    step = _CalStep(x, design._w, w_new, np.linalg.pinv(gram))
    info = dict(info, n_nonpositive_weights=int((w_new <= 0).sum()))
    info["weight_min"] = float(w_new.min())
    info["weight_max"] = float(w_new.max())
    w_new.setflags(write=False)
    return design._copy(_w=w_new, _cal=(*design._cal, step), _calibration=info)


# ----------------------------------------------------------------------------- methods
def poststratify(design: Any, margins: Mapping[str, Mapping[str, float]]) -> Any:
    """Post-stratification to one variable (see ``SurveyDesign.poststratify``)."""
    if len(margins) != 1:
        raise DesignError("poststratify takes exactly one variable; use rake for several")
    x, _totals, coded = margin_matrix(design, margins, intercept=False)
    code, tot = coded[0]
    current = np.bincount(code, weights=design._w, minlength=tot.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(current > 0, tot / current, 0.0)
    w_new = design._w * factor[code]
    return calibrated(
        design, x, w_new, {"method": "poststratify", "iterations": 1, "converged": True}
    )


def rake(
    design: Any, margins: Mapping[str, Mapping[str, float]], *, max_iter: int, tol: float
) -> Any:
    """Raking by iterative proportional fitting (see ``SurveyDesign.rake``)."""
    if max_iter < 1 or tol <= 0:
        raise DesignError("rake needs max_iter ≥ 1 and tol > 0")
    x, _, coded = margin_matrix(design, margins, intercept=True)
    w = design._w.copy()
    err = np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - reported below
        for code, tot in coded:
            s = np.bincount(code, weights=w, minlength=tot.size)
            with np.errstate(divide="ignore", invalid="ignore"):
                w = w * np.where(s > 0, tot / s, 0.0)[code]
        err = max(
            float(
                np.max(
                    np.abs(np.bincount(c, weights=w, minlength=t.size) - t) / np.maximum(t, 1e-300)
                )
            )
            for c, t in coded
        )
        if err < tol:
            break
    info = {
        "method": "rake",
        "iterations": it,
        "converged": bool(err < tol),
        "max_relative_error": err,
    }
    return calibrated(design, x, w, info)


def calibrate_linear(design: Any, margins: Mapping[str, Mapping[str, float]]) -> Any:
    """Linear (GREG) calibration (see ``SurveyDesign.calibrate_linear``)."""
    x, totals, _ = margin_matrix(design, margins, intercept=True)
    gram = x.T @ (x * design._w[:, None])
    lam = np.linalg.pinv(gram) @ (totals - x.T @ design._w)
    w_new = design._w * (1.0 + x @ lam)
    err = float(np.max(np.abs(x.T @ w_new - totals) / np.maximum(np.abs(totals), 1e-300)))
    info = {"method": "linear", "iterations": 1, "converged": err < 1e-6}
    info["max_relative_error"] = err
    return calibrated(design, x, w_new, info)


# ----------------------------------------------------------------------------- trimming
def trim_weights(
    design: Any, lower: float | None, upper: float | None, *, strict: bool, max_iter: int
) -> Any:
    """R ``trimWeights`` (see ``SurveyDesign.trim_weights``)."""
    if design._rep is not None:
        raise DesignError("trimming the weights of a replicate-weight design is not supported")
    lo = -np.inf if lower is None else float(lower)
    hi = np.inf if upper is None else float(upper)
    if lo > hi or hi <= 0 or np.isnan(lo) or np.isnan(hi):
        raise DesignError(f"invalid trimming bounds [{lower}, {upper}]")
    if max_iter < 1:
        raise DesignError("trim_weights needs max_iter ≥ 1")
    w = design._w.copy()
    total = w.sum()
    if (lo > 0 and lo * w.size > total) or hi * w.size < total:
        raise DesignError(
            f"trimming bounds [{lower}, {upper}] cannot keep the weight total {total:g}"
        )
    n_trimmed = int(((w < lo) | (w > hi)).sum())
    it = 0
    while True:
        outside = (w < lo) | (w > hi)
        if not outside.any():
            break
        if it >= (max_iter if strict else 1):
            if strict:
                raise DesignError(
                    f"strict trimming to [{lower}, {upper}] did not finish in {max_iter} "
                    f"rounds ({int(outside.sum())} weight(s) still outside)"
                )
            break
        if outside.all():
            raise DesignError(
                f"no weight lies within the trimming bounds [{lower}, {upper}] to take the "
                "trimmed amount"
            )
        it += 1
        new = np.clip(w, lo, hi)
        new[~outside] += (w - new).sum() / int((~outside).sum())
        w = new
    info = dict(design._calibration)
    info.update({"trim_lower": lower, "trim_upper": upper, "trim_strict": bool(strict)})
    info.update({"trim_iterations": it, "n_trimmed": n_trimmed})
    w.setflags(write=False)
    return design._copy(_w=w, _calibration=info)


# ----------------------------------------------------------------------------- calibrate()
def calibration_matrix(
    design: Any,
    margins: Mapping[str, Mapping[str, float]] | None,
    totals: Mapping[str, float] | None,
    population: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Model matrix and population totals: intercept, margin dummies, numeric auxiliaries.

    With ``margins`` the intercept's total is their common population size (``population``,
    when also given, must agree); without them ``population`` adds the intercept, and without
    either there is none (R ``~ x - 1``).
    """
    if design._rep is not None:
        raise DesignError("calibration of replicate-weight designs is not supported")
    if not margins and not totals:
        raise DesignError("calibrate needs margins or totals")
    blocks: list[np.ndarray] = []
    pop: list[float] = []
    if margins:
        x, t, _ = margin_matrix(design, margins, intercept=True)
        if population is not None and abs(float(population) - t[0]) > 1e-6 * t[0]:
            raise DesignError(
                f"population {population:g} disagrees with the margins' total {t[0]:g}"
            )
        blocks.append(x)
        pop.extend(t)
    elif population is not None:
        if not np.isfinite(float(population)) or float(population) <= 0:
            raise DesignError(f"population must be finite and > 0, got {population}")
        blocks.append(np.ones((len(design._data), 1)))
        pop.append(float(population))
    for col in sorted(totals or {}):
        if col not in design._data:
            raise DesignError(f"calibration variable '{col}' is not a column of the data")
        values = _as_float(design._data[col], col, "calibration variable")
        if not np.all(np.isfinite(values)):
            raise DesignError(f"calibration variable '{col}' has missing or infinite values")
        total = float(totals[col])
        if not np.isfinite(total):
            raise DesignError(f"calibration total of '{col}' must be finite")
        blocks.append(values[:, None])
        pop.append(total)
    return np.hstack(blocks), np.asarray(pop, dtype=float)


def _distance(calfun: str, bounds: tuple[float, float]):
    """R's distance functions ``(Fm1, dF)``, with ``g = 1 + Fm1(x'η)``.

    ``cal.linear``, ``cal.raking`` and ``cal.logit`` with the bounds on ``g`` exactly as R
    writes them (R's raking derivative compares ``u`` with ``U − 1``, not ``log U``).
    """
    lo, hi = bounds
    if calfun == "linear":
        return (
            lambda u: np.minimum(np.maximum(u + 1.0, lo), hi) - 1.0,
            lambda u: ((u < hi - 1.0) & (u > lo - 1.0)).astype(float),
        )
    if calfun == "raking":

        def fm1(u):
            with np.errstate(over="ignore"):
                return np.minimum(np.maximum(np.exp(u), lo), hi) - 1.0

        def df(u):
            with np.errstate(over="ignore"):
                return np.where((u < hi - 1.0) & (u > lo - 1.0), np.exp(u), 0.0)

        return fm1, df
    a = (hi - lo) / ((hi - 1.0) * (1.0 - lo))

    def fm1_logit(u):
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(a * u)
            return (lo * (hi - 1.0) + hi * (1.0 - lo) * e) / (hi - 1.0 + (1.0 - lo) * e) - 1.0

    def df_logit(u):
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(a * u)
            den = hi - 1.0 + (1.0 - lo) * e
            return (
                hi * (1.0 - lo) * e * a / den
                - ((lo * (hi - 1.0) + hi * (1.0 - lo) * e) * ((1.0 - lo) * e * a)) / den**2
            )

    return fm1_logit, df_logit


def _grake(
    x: np.ndarray,
    w: np.ndarray,
    calfun: str,
    bounds: tuple[float, float],
    population: np.ndarray,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, float]:
    """R ``grake``: Newton steps on ``η`` (generalised inverse, step halving while non-finite).

    Returns the g-weights, the iterations and the final ``max |misfit| / (1 + |total|)``. When
    every ``population / sample total`` exceeds 20 the weights are first rescaled by their
    mean ratio and the bounds apply to the rescaled g (R's rule, kept so that the g-weights
    are R's).
    """
    fm1, dfun = _distance(calfun, bounds)
    sample_total = x.T @ w
    eta = np.zeros(x.shape[1])
    xeta = x @ eta
    deriv = dfun(xeta)
    with np.errstate(divide="ignore"):
        scales = population / sample_total
    scale = float(np.mean(scales)) if np.min(scales) > 20 else None
    if scale is not None:
        w = w * scale
        sample_total = sample_total * scale
    it = 1
    while True:
        tmat = (x * (w * deriv)[:, None]).T @ x
        misfit = population - sample_total - x.T @ (w * fm1(xeta))
        deta = np.linalg.pinv(tmat, rcond=256 * np.finfo(float).eps) @ misfit
        eta = eta + deta
        xeta = x @ eta
        g, deriv = 1.0 + fm1(xeta), dfun(xeta)
        while it < max_iter and not (np.all(np.isfinite(g)) and np.all(np.isfinite(deriv))):
            it += 1
            deta = deta / 2
            eta = eta - deta
            xeta = x @ eta
            g, deriv = 1.0 + fm1(xeta), dfun(xeta)
        misfit = population - sample_total - x.T @ (w * fm1(xeta))
        err = float(np.max(np.abs(misfit) / (1.0 + np.abs(population))))
        if err < tol:
            break
        it += 1
        if it > max_iter:
            break
    return (g * scale if scale is not None else g), it, err


def calibrate(
    design: Any,
    margins: Mapping[str, Mapping[str, float]] | None,
    totals: Mapping[str, float] | None,
    *,
    population: float | None,
    calfun: str,
    bounds: tuple[float, float] | None,
    max_iter: int,
    tol: float,
    force: bool,
) -> Any:
    """R ``calibrate`` (see ``SurveyDesign.calibrate``)."""
    if calfun not in CALFUNS:
        raise DesignError(f"calfun must be one of {', '.join(CALFUNS)}, got {calfun!r}")
    if max_iter < 1 or tol <= 0:
        raise DesignError("calibrate needs max_iter ≥ 1 and tol > 0")
    lo, hi = (-np.inf, np.inf) if bounds is None else (float(bounds[0]), float(bounds[1]))
    if not lo < 1 < hi:
        raise DesignError(f"calibration bounds must satisfy lower < 1 < upper, got {bounds}")
    if calfun == "logit" and not (np.isfinite(lo) and np.isfinite(hi)):
        raise DesignError("logit calibration needs finite bounds (R cal.logit)")
    x, pop = calibration_matrix(design, margins, totals, population)
    w0 = design._w
    if calfun == "linear" and bounds is None:  # R regcalibrate: one solve
        gram = x.T @ (x * w0[:, None])
        g = 1.0 + x @ np.linalg.solve(gram, pop - x.T @ w0)
        it, err = 1, float(np.max(np.abs(x.T @ (w0 * g) - pop) / (1.0 + np.abs(pop))))
    else:
        g, it, err = _grake(x, w0, calfun, (lo, hi), pop, tol, max_iter)
    converged = bool(err < tol) or (calfun == "linear" and bounds is None)
    if not converged and not force:
        raise DesignError(
            f"{calfun} calibration did not converge in {max_iter} iterations (max misfit "
            f"{err:.3g} relative to 1 + |total|); loosen the bounds or pass force=True"
        )
    info = {"method": "calibrate", "calfun": calfun, "iterations": it, "converged": converged}
    info |= {"max_relative_error": err, "bounds": None if bounds is None else [lo, hi]}
    return calibrated(design, x, w0 * g, info)
