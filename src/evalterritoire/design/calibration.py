"""Calibration and trimming of a design's weights.

Owns the margin matrix built from ``{variable: {level: population total}}`` (``margin_matrix``:
checks, one-hot levels, optional intercept, agreement of the margins' population sizes), the
new design a calibration returns with its calibration step for the variance (``calibrated``),
post-stratification (R ``postStratify``: ``poststratify``), raking by iterative proportional
fitting (``rake``), linear GREG calibration (R ``calibrate(calfun="linear")``:
``calibrate_linear``) and R ``trimWeights`` (``trim_weights``). The functions take the design
as their first argument; the methods of :class:`~evalterritoire.design.SurveyDesign` call them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from evalterritoire.design.common import _CalStep, _level_strings
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
