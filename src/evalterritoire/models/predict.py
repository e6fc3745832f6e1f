"""Predicted marginal means with design-based SEs, and Wald tests of several terms.

**Predicted marginal means** (R ``svypredmeans``, Graubard & Korn 1999): the model of a
``[[models]]`` entry (linear, logistic or quasi-Poisson) is refitted with ``C(group)`` added;
for each level ``g`` of the group every fitted respondent is given that level, the predictions
``μ̂_i(g)`` are averaged with the design weights, ``m_g = Σ w μ̂_i(g) / Σ w``, and the variance
is R's sum of two parts: the design variance of that mean with the predictions held fixed (the
means' linearised scores, or the replicate means) plus ``d_g' V_β d_g`` for the uncertainty of
the coefficients (``V_β`` the model's design-based covariance, ``d_g = Σ w μ'(η_i(g)) x_i(g) /
Σ w``). R's ``svypredmeans`` averages over the rows of the model's design including those whose
group is missing and returns ``NaN`` when a covariate is missing; here the average is over the
rows the model uses (complete for the formula and the group). ``df``: the design's degrees of
freedom of those rows (R's ``svystat`` has none; the tests pass the same to ``confint``).

**Wald tests of several terms** (R ``regTermTest``, ``method = "Wald"``): ``χ² = β̂_T' V_T⁻¹ β̂_T``
over the coefficients of the named terms (a term is written as in the formula, e.g.
``C(stage)`` or ``C(a):x``; its coefficients are those whose name, with the ``[T.level]``
parts removed, is the term, factors in any order), ``F = χ²/q`` referred to ``F(q, ddf)``
with ``ddf`` the model's residual degrees of freedom (R ``df.residual``: design df + 1 −
coefficients for GLMs; design df − slopes for the ordinal model, as ``svyolr``), or ``χ²(q)``
with ``ddf=inf``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from evalterritoire.errors import ModelError
from evalterritoire.models.data import _Notes, _prepare
from evalterritoire.models.families import _mean_variance

if TYPE_CHECKING:
    from evalterritoire.codebook import Codebook
    from evalterritoire.config import ModelSpec
    from evalterritoire.design.survey import SurveyDesign
    from evalterritoire.models.fit import FittedModel

__all__ = ["PREDICTED_MEAN_COLUMNS", "estimate_predicted_means", "wald_test"]

#: Columns of :func:`estimate_predicted_means`.
PREDICTED_MEAN_COLUMNS = (
    "model",
    "group",
    "level",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "df",
    "n",
    "deff",
)
_LEVEL = re.compile(r"\[T\.[^\]]*\]")


def _group_columns(terms: list[str], group: str) -> dict[str, int]:
    """Level → model-matrix column of the group's dummies ``C(group)[T.level]``."""
    prefix = f"C({group})[T."
    return {t[len(prefix) : -1]: j for j, t in enumerate(terms) if t.startswith(prefix)}


def estimate_predicted_means(
    spec: ModelSpec,
    frame: pd.DataFrame,
    design: SurveyDesign,
    group: str,
    codebook: Codebook | None = None,
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    """Predicted marginal means of each level of ``group``, with design-based SEs.

    Parameters
    ----------
    spec : ModelSpec
        The adjustment model (``linear``, ``logistic`` or ``quasipoisson``); ``C(group)`` is
        added to its formula, which must not already name ``group``.
    frame : DataFrame
        Respondents, row for row the design's rows (as :func:`fit_model`).
    design : SurveyDesign
        The design (``spec.superpopulation`` drops its fpc, as in :func:`fit_model`).
    group : str
        Column whose levels get a predicted mean (sorted; numbers as their integer text).
    codebook : Codebook, optional
        Only used for the territory column of the fit (no effect on the means).
    level : float
        Confidence level (t with ``df``).

    Returns
    -------
    DataFrame
        :data:`PREDICTED_MEAN_COLUMNS`, one row per level: the mean on the outcome's scale
        (a probability for the logistic model), ``se``, interval, ``df``, ``n`` (respondents of
        that level among the fitted ones), ``deff`` (NaN).

    Examples
    --------
    >>> estimate_predicted_means(spec, frame, design, "stage")  # doctest: +SKIP
    """
    from evalterritoire.models.fit import _estimate
    from evalterritoire.models.variance import _covariance

    if spec.kind not in ("linear", "logistic", "quasipoisson"):
        raise ModelError(f"model '{spec.name}': predicted means need a linear, logistic or "
                         "quasi-Poisson model")  # fmt: skip
    if group not in frame.columns:
        raise ModelError(f"model '{spec.name}': unknown group column '{group}'")
    if re.search(rf"\b{re.escape(group)}\b", spec.formula):
        raise ModelError(f"model '{spec.name}': the formula already uses '{group}'")
    spec = dataclasses.replace(spec, formula=f"{spec.formula} + C({group})", small_sample=False)
    if spec.superpopulation:
        design = design.without_fpc()
    territory = codebook.column("territory") if codebook is not None else None
    data = _prepare(spec, frame, design, territory)
    notes = _Notes()
    model = _estimate(spec, frame, design, data, codebook, {}, notes)
    cov = _covariance(spec, design, data, model, notes)
    cols = _group_columns(model.terms, group)
    values = frame[group].iloc[data.rows]
    levels = sorted(pd.unique(values.dropna()), key=lambda v: (isinstance(v, str), v))
    names = [_level_text(v) for v in levels]
    missing = [n for n in names[1:] if n not in cols]
    if missing:
        raise ModelError(f"model '{spec.name}': level(s) {missing} of '{group}' are collinear")
    fits, grads = _predictions(spec.kind, model.X, model.est.beta, cols, names, data, design)
    var = _mean_variance_of_fits(design, data, fits, grads, cov.V)
    df = float(model.design_df)
    crit = stats.t.ppf(0.5 + level / 2, max(df, 1.0))
    w = np.asarray(design.weights, dtype=float)[data.rows]
    est = (w @ fits) / w.sum()
    se = np.sqrt(np.maximum(var, 0.0))
    counts = values.map(_level_text).value_counts()
    return pd.DataFrame(
        {
            "model": spec.name,
            "group": group,
            "level": pd.array(names, dtype="string"),
            "estimate": est,
            "se": se,
            "ci_low": est - crit * se,
            "ci_high": est + crit * se,
            "df": np.int64(df),
            "n": [int(counts.get(n, 0)) for n in names],
            "deff": np.nan,
        }
    )[list(PREDICTED_MEAN_COLUMNS)]


def _level_text(v: Any) -> str:
    return str(int(v)) if isinstance(v, float | np.floating) and float(v).is_integer() else str(v)


def _predictions(kind, X, beta, cols, names, data, design):
    """Predictions ``(n_fit, G)`` at every level and their gradients ``d_g`` ``(p, G)``."""
    w = np.asarray(design.weights, dtype=float)[data.rows]
    fits = np.empty((X.shape[0], len(names)))
    grads = np.empty((X.shape[1], len(names)))
    dummy = list(cols.values())
    for g, name in enumerate(names):
        xg = X.copy()
        xg[:, dummy] = 0.0
        if name in cols:
            xg[:, cols[name]] = 1.0
        eta = xg @ beta
        mu, v = _mean_variance(kind, eta)
        deriv = np.ones_like(eta) if kind == "linear" else v  # dμ/dη (canonical links)
        fits[:, g] = mu
        grads[:, g] = (xg * (w * deriv)[:, None]).sum(axis=0) / w.sum()
    return fits, grads


def _mean_variance_of_fits(design, data, fits, grads, v_beta) -> np.ndarray:
    """R's ``svypredmeans`` variance: design variance of the means + ``d' V_β d``."""
    w_all = np.asarray(design.weights, dtype=float)
    w = w_all[data.rows]
    m = (w @ fits) / w.sum()
    if design.is_replicate:
        rep = design.replicate_weights[data.rows]
        theta = (rep.T @ fits) / rep.sum(axis=0)[:, None]  # (R, G)
        cond = np.diag(design.replicate_variance(theta, m))
    else:
        z = np.zeros((w_all.size, fits.shape[1]))
        z[data.rows] = w[:, None] * (fits - m) / w.sum()
        cond = np.diag(design.variance_of_totals(z))
    add = np.einsum("pg,pq,qg->g", grads, v_beta, grads)
    return cond + add


# ----------------------------------------------------------------------------- Wald tests
def _term_of(coefficient: str) -> str:
    """The formula term of a coefficient: level parts removed, factors sorted (R's order)."""
    return ":".join(sorted(_LEVEL.sub("", f) for f in coefficient.split(":")))


def wald_test(
    model: FittedModel,
    terms: str | Sequence[str],
    *,
    null: Sequence[float] | None = None,
    ddf: float | None = None,
) -> pd.DataFrame:
    """Design-based Wald test that several terms of a fitted model are zero (R ``regTermTest``).

    Parameters
    ----------
    model : FittedModel
        A fitted model (its design covariance ``vcov`` is used).
    terms : str or sequence of str
        Terms as written in the formula (``"C(stage)"``, ``"x"``, ``"C(a):x"``).
    null : sequence of float, optional
        Values under the null hypothesis (default 0), one per coefficient tested.
    ddf : float, optional
        Denominator degrees of freedom (default: the model's residual df, see the module
        docstring); ``inf`` gives the chi-square test.

    Returns
    -------
    DataFrame
        One row: ``model``, ``terms``, ``n_coefficients``, ``statistic`` (F, or χ² when
        ``ddf`` is infinite), ``ndf``, ``ddf``, ``p_value``, ``method``.

    Examples
    --------
    >>> wald_test(fitted, ["C(stage)"])  # doctest: +SKIP
    """
    wanted = [terms] if isinstance(terms, str) else list(terms)
    names = list(model.vcov.index)
    index = [
        j
        for j, name in enumerate(names)
        if not name.startswith("cut_") and _term_of(name) in {_term_of(t) for t in wanted}
    ]
    if not index:
        raise ModelError(f"model '{model.name}': no coefficient of term(s) {wanted}")
    beta = model.table.set_index("term").loc[[names[j] for j in index], "estimate"].to_numpy()
    if null is not None:
        beta = beta - np.asarray(null, dtype=float)
    v = model.vcov.to_numpy()[np.ix_(index, index)]
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(v))):
        raise ModelError(f"model '{model.name}': the tested coefficients are not estimable")
    chisq = float(beta @ np.linalg.solve(v, beta))
    q = len(index)
    if ddf is None:
        diag = model.diagnostics
        slopes = sum(1 for n in names if not n.startswith("cut_"))
        ddf = float(diag["design_df"] - slopes if model.kind == "ordinal" else diag["df_resid"])
    if np.isinf(ddf):
        stat, p, method = chisq, float(stats.chi2.sf(chisq, q)), "Wald chi2"
    else:
        stat, p, method = chisq / q, float(stats.f.sf(chisq / q, q, ddf)), "Wald F"
    return pd.DataFrame(
        {
            "model": [model.name],
            "terms": [", ".join(wanted)],
            "n_coefficients": [q],
            "statistic": [stat],
            "ndf": [q],
            "ddf": [float(ddf)],
            "p_value": [p],
            "method": [method],
        }
    )
