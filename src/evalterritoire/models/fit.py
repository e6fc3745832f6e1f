"""Models of what drives co-construction and maturity, with design-based uncertainty.

Point estimates come from statsmodels fitted with the (normalised) design weights; their
covariance comes from the survey design, as R ``survey`` computes it:

* **linear** (``svyglm`` gaussian), **logistic** (``svyglm`` quasibinomial) and
  **quasipoisson** (``svyglm`` quasipoisson: log link, variance ∝ mean, for counts):
  statsmodels ``GLM`` with ``var_weights``; covariance = Taylor-linearisation sandwich
  ``A⁻¹ [V_design(Σ U_i)] A⁻¹`` where ``U_i`` are the weighted score contributions and ``A`` the
  weighted information, the middle term computed by
  :meth:`evalterritoire.design.SurveyDesign.variance_of_totals` (strata, PSUs, second stage,
  fpc, calibration residuals). Replicate-weight designs refit the model with every replicate
  weight (R ``svyglm.svrepdesign``). Tests are ``t`` with the residual degrees of freedom of
  R: design df + 1 − number of coefficients; the intervals use the same ``t``, as R's
  ``confint.svyglm`` (Wald, ``ddf = df.residual``) in survey 4.1; ``ci="normal"`` gives the
  normal quantile (R ``confint.default``, the only interval R offers for ``svyolr``).
* **ordinal** (cumulative logit, R ``svyolr``): statsmodels ``OrderedModel`` with a weighted
  log-likelihood, polished by Newton steps with the analytic score and Hessian (the bread of the
  sandwich is the analytic Hessian, R's is a finite difference); the cut-points are
  reported on their natural scale (``P(Y ≤ k) = logistic(cut_k − x'β)``) and the sandwich
  uses the same design variance of the score.
* **mixed** (``MixedLM``, random intercept per group): statsmodels does not take sampling
  weights in a mixed model, so the point estimates are unweighted (REML) and every row says so
  in ``flags``. The covariance of the fixed effects is nevertheless a design-based sandwich:
  given the estimated variance components ``(τ², σ²)``, the fixed effects solve the GLS
  estimating equations ``Σ_i U_i = 0`` with the per-respondent score
  ``U_i = x_i (y_i − x_i'β − û_g) / σ²`` (``û_g`` the group's BLUP), and
  ``V = A⁻¹ V_design(Σ U_i) A⁻¹`` with ``A = X'V⁻¹X``; the middle term comes from
  :meth:`~evalterritoire.design.SurveyDesign.variance_of_totals` on a design whose clusters
  are the PSUs merged with the groups (a group's score is not a sum of independent PSU terms),
  with the design's strata when they nest the clusters, with replacement and without
  calibration (the estimator does not use the weights); see ``docs/models.md``. The
  uncertainty of ``τ²`` and ``σ²`` is not propagated, and the variance components have no SE.

``dispersion`` (GLM families) is R ``summary.svyglm``'s: on Taylor designs the design-based
variance (``svyvar``) of the residuals ``(y − μ)/√V(μ)`` (R's Pearson residuals, whose prior
and sampling weights cancel; zero on rows left out for a missing value, as R); on replicate
designs ``summary.svrepglm``'s weighted mean of the squared Pearson residuals, which carry a
factor ``N`` (the design's rows) from R's weight normalisations; ``NaN`` for the ordinal and
mixed models (the mixed model's residual variance is its ``var_residuelle`` row).

Diagnostics (each a flag in the table and an entry in the diagnostics mapping, never a silent
missing value): complete or quasi-complete separation (linear programmes of Konis, 2007, for
the logistic and the cumulative logit; the coefficients that diverge are published as missing
with the flag, the others are flagged), collinear terms (dropped like R's aliased
coefficients), a singular information matrix, too few PSUs for the number of parameters,
non-convergence, and influential territories (removing a territory moves a coefficient by more
than its standard error; skipped, and said so, for linear, logistic and ordinal models on
replicate-weight designs, whose ``n_psu`` is missing).

Layout: this module holds :func:`fit_model` as its steps (estimate → covariance → inference →
influence → table and diagnostics) and the tidy table; :mod:`evalterritoire.models.families`
holds each family's fit and estimating equations and the likelihoods (separation, weighted GLM,
cumulative logit, mixed model), :mod:`evalterritoire.models.data` the model inputs, French term
labels and what the steps hand each other, :mod:`evalterritoire.models.variance` the design
covariance (sandwich, ``small_sample``), the mixed model's clusters, the working model and the
influence check, and :mod:`evalterritoire.design.sandwich` the ``small_sample`` correction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from evalterritoire.errors import ModelError
from evalterritoire.models.data import (
    _STAGE_COL,
    _Data,
    _independent_columns,
    _Model,
    _Notes,
    _prepare,
    term_label,
)
from evalterritoire.models.families import _estimate_glm, _estimate_mixed, _estimate_ordinal
from evalterritoire.models.variance import (
    _Covariance,
    _covariance,
    _influence_check,
    _InfluenceCheck,
    _mixed_variance_design,
)

if TYPE_CHECKING:
    from evalterritoire.codebook import Codebook
    from evalterritoire.config import ModelSpec
    from evalterritoire.design.survey import SurveyDesign

__all__ = ["MODEL_COLUMNS", "FittedModel", "ModelsResult", "fit_model", "fit_study_models"]

#: Columns of ``models.parquet`` (one row per model term).
MODEL_COLUMNS: tuple[str, ...] = (
    "model",
    "kind",
    "term",
    "label",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "p_value",
    "odds_ratio",
    "n",
    "n_psu",
    "df",
    "variance",
    "flags",
    "outcome",
    "n_params",
    "design_df",
    "r2",
    "r2_kind",
    "loglik",
    "dispersion",
)
KINDS: tuple[str, ...] = ("linear", "logistic", "ordinal", "mixed", "quasipoisson")
FLAG_TEXT = {
    "separation": "séparation (quasi) complète : estimation non fiable",
    "separated": "séparation (quasi) complète : coefficient infini, non publié",
    "collinear": "terme colinéaire, retiré du modèle",
    "few_psu": "peu d'UPE pour le nombre de paramètres",
    "no_df": "aucun degré de liberté résiduel : pas d'erreur-type",
    "not_converged": "l'estimation n'a pas convergé",
    "singular": "information singulière : paramètres non identifiables",
    "unweighted": "modèle mixte non pondéré : estimations sans les poids, erreurs-types du plan",
    "influence_skipped": "influence des territoires non évaluée (plan à poids répliqués)",
    "boundary": "variance inter-groupes nulle (à la frontière)",
    "variance_component": "composante de variance (sans erreur-type)",
}


@dataclass(frozen=True)
class FittedModel:
    """One fitted model, ready for tables (no statsmodels object inside).

    Attributes
    ----------
    name, kind, formula : str
        From the study's ``[[models]]`` entry.
    table : DataFrame
        One row per term (columns :data:`MODEL_COLUMNS`).
    vcov : DataFrame
        Design-based covariance of the estimated coefficients (rows and columns named by term;
        mixed models: fixed effects only; separated coefficients: missing).
    diagnostics : dict
        JSON-ready: n, PSUs, degrees of freedom, convergence, flags with messages,
        dropped terms, separation, influential territories, fit statistics.
    """

    name: str
    kind: str
    formula: str
    table: pd.DataFrame
    vcov: pd.DataFrame
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelsResult:
    """The study's models: the tidy table of ``models.parquet`` and per-model diagnostics."""

    table: pd.DataFrame
    diagnostics: dict[str, Any]
    models: tuple[FittedModel, ...] = ()


def fit_model(
    spec: ModelSpec,
    frame: pd.DataFrame,
    design: SurveyDesign,
    codebook: Codebook | None = None,
    *,
    level: float = 0.95,
    ci: str = "t",
) -> FittedModel:
    """Fit one study model with design-based uncertainty.

    Parameters
    ----------
    spec : ModelSpec
        Name, formula (statsmodels/patsy), kind (``linear``, ``logistic``, ``ordinal``,
        ``mixed``; ``spec.family`` is the same), grouping column (mixed), ``maxiter`` and the
        ``superpopulation`` option.
    frame : DataFrame
        Respondents, row for row the rows of ``design.data`` (same order), with every column
        of the formula (responses, ``score_*``, ``stage``, context indicators…).
    design : SurveyDesign
        The wave's design (Taylor or replicate); a subset design restricts the model to its
        domain. Rows with a missing value in the formula are left out of the fit but keep
        their PSU in the variance (R ``svyglm``).
    codebook : Codebook, optional
        French labels of the terms; its territory column drives the influence diagnostic.
    level : float
        Confidence level of the intervals.
    ci : {"t", "normal"}
        ``t`` with the residual degrees of freedom (design df + 1 − coefficients, as R
        ``summary.svyglm`` and ``confint.svyglm``) or the normal quantile.

    Returns
    -------
    FittedModel
        Tidy table, covariance and diagnostics. Coefficients that diverge under separation are
        published as missing (estimate, SE, interval) with the flag ``separation``.

    Raises
    ------
    ModelError
        Unknown kind or column, unusable outcome, no complete respondent.
    """
    if spec.kind not in KINDS:
        raise ModelError(f"model '{spec.name}': unknown kind '{spec.kind}' ({', '.join(KINDS)})")
    if ci not in ("t", "normal"):
        raise ModelError(f"ci must be 't' or 'normal', got {ci!r}")
    if spec.superpopulation:
        design = design.without_fpc()
    territory = codebook.column("territory") if codebook is not None else None
    data = _prepare(spec, frame, design, territory)
    stage_names = _stage_names(frame)
    notes = _Notes()
    model = _estimate(spec, frame, design, data, codebook, stage_names, notes)
    cov = _covariance(spec, design, data, model, notes)
    inf = _inference(model, cov, level, ci, notes, mixed=spec.kind == "mixed")
    influence = _influence_check(
        design, data, model, cov, inf.se, notes, mixed=spec.kind == "mixed"
    )
    inf = _without_separated(inf, cov)
    table = _table(spec, design, data, model, cov, inf, influence, notes, codebook, stage_names)
    vcov = pd.DataFrame(inf.V, index=model.est.names, columns=model.est.names)
    diagnostics = _diagnostics(spec, design, data, model, cov, influence, notes, ci)
    dispersion = _dispersion(spec, design, data, model)
    table["dispersion"] = dispersion
    diagnostics["dispersion"] = dispersion
    return FittedModel(spec.name, spec.kind, spec.formula, table, vcov, diagnostics)


def _dispersion(spec: ModelSpec, design: SurveyDesign, data: _Data, model: _Model) -> float:
    """R ``summary.svyglm``'s dispersion (GLMs only; survey 4.1.1).

    Taylor designs: ``svyvar`` of R's Pearson residuals. Their prior weights and the design's
    weights are the same normalised weights, so the residual is ``e = (y − μ)/√V(μ)`` on the
    fitted rows and ``0`` on the domain's rows left out for a missing value (R's
    ``residuals.svyglm`` fills them with zeros); ``svyvar`` is ``n/(n − 1) Σ w (r − r̄)² / Σ w``
    with ``n`` the rows of nonzero weight. Replicate designs (``summary.svrepglm``):
    ``Σ w r² / Σ w`` with ``r = e √N`` (prior weights ``w/w̄`` over the ``N`` rows of the
    design, divided by ``w/Σw``), over the fitted rows (R recycles vectors of different
    lengths when rows are missing; that case is not defined in R).
    """
    from evalterritoire.models.families import _mean_variance

    if spec.kind not in ("linear", "logistic", "quasipoisson"):
        return float("nan")
    w_all = np.asarray(design.weights, dtype=float)
    mu, v = _mean_variance(spec.kind, model.X @ model.est.beta)
    with np.errstate(divide="ignore", invalid="ignore"):  # separation: V(μ) = 0
        e = (data.y - mu) / np.sqrt(v)
    if design.is_replicate:
        w = w_all[data.rows]
        return float(design.domain_mask.sum() * np.sum(w * e**2) / np.sum(w))
    r_all = np.zeros(w_all.size)
    r_all[data.rows] = e
    keep = design.domain_mask & (w_all > 0)
    w, r = w_all[keep], r_all[keep]
    n = r.size
    if n < 2:
        return float("nan")
    rbar = np.sum(w * r) / np.sum(w)
    return float(n / (n - 1) * np.sum(w * (r - rbar) ** 2) / np.sum(w))


# ------------------------------------------------------------------ the estimation
# (the covariance and influence steps live in models/variance.py)


def _stage_names(frame: pd.DataFrame) -> dict[int, str]:
    """Stage number → stage label, when the frame carries both (French term labels)."""
    if _STAGE_COL not in frame.columns or "stage_label" not in frame.columns:
        return {}
    pairs = frame[[_STAGE_COL, "stage_label"]].dropna().drop_duplicates(_STAGE_COL)
    return {
        int(s): str(lab) for s, lab in zip(pairs[_STAGE_COL], pairs["stage_label"], strict=True)
    }


def _estimate(
    spec: ModelSpec,
    frame: pd.DataFrame,
    design: SurveyDesign,
    data: _Data,
    codebook: Codebook | None,
    stage_names: Mapping[int, str],
    notes: _Notes,
) -> _Model:
    """Drop collinear columns, count the design's PSUs and df, fit the model's family."""
    w_raw = np.asarray(design.weights, dtype=float)[data.rows]
    w = w_raw / w_raw.mean()
    mixed = spec.kind == "mixed"
    keep = _independent_columns(data.X, np.ones_like(w) if mixed else w)
    dropped = [t for j, t in enumerate(data.terms) if j not in set(keep)]
    X = data.X[:, keep]
    terms = [data.terms[j] for j in keep]
    for t in dropped:
        notes.messages.append(f"terme colinéaire retiré : {t}")
    in_fit = np.isin(np.arange(len(design.data)), data.rows)
    design_df = int(design.subset(in_fit).df)
    if design.is_replicate:
        n_psu: int | None = None
        notes.messages.append(
            "plan à poids répliqués : nombre d'UPE inconnu (n_psu manquant) ; degrés de liberté "
            f"du plan = rang des répliques − 1 = {design_df}"
        )
    else:
        n_psu = int(np.unique(_psu_codes(design, data.rows)).size)
    var_design = design
    if mixed:
        est = _estimate_mixed(spec, data, X, terms, codebook, stage_names)
        var_design, cluster_info = _mixed_variance_design(design, frame, spec.groups)
        est.diagnostics.update(cluster_info)
        design_df = int(var_design.subset(np.isin(np.arange(len(frame)), data.rows)).df)
    elif spec.kind == "ordinal":
        est = _estimate_ordinal(spec, data, X, terms, w, codebook, stage_names)
    else:
        est = _estimate_glm(spec, data, X, terms, w, codebook, stage_names)
    for code in est.flags:
        notes.flag(code)
    notes.messages.extend(est.messages)
    return _Model(X, terms, dropped, w, est, var_design, design_df, n_psu)


# ------------------------------------------------------------------ the inference
@dataclass
class _Inference:
    """Published coefficients, SEs, tests and intervals (missing where not estimable)."""

    beta: np.ndarray
    se: np.ndarray
    p_value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    V: np.ndarray


def _inference(
    model: _Model, cov: _Covariance, level: float, ci: str, notes: _Notes, *, mixed: bool
) -> _Inference:
    """Tests and intervals (t or normal quantile); none without residual degrees of freedom."""
    est, beta, V = model.est, model.est.beta, cov.V
    n_coef = beta.size  # coefficients with a design variance
    se = np.sqrt(np.clip(np.diag(V), 0.0, None))
    if model.design_df < n_coef:
        if mixed:
            psu_text = f"{est.diagnostics['variance_clusters']} grappes (UPE et groupes)"
        else:
            psu_text = f"{model.n_psu} UPE" if model.n_psu is not None else "plan répliqué"
        notes.flag(
            "few_psu",
            f"{psu_text} ({model.design_df} degrés de liberté du plan) pour {n_coef} paramètres",
        )
    if not est.converged:
        notes.flag("not_converged", "l'estimation n'a pas convergé")
    if cov.df_resid >= 1:
        crit = (
            stats.t.ppf(0.5 + level / 2, cov.df_coef)
            if ci == "t"
            else stats.norm.ppf(0.5 + level / 2)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            tstat = beta / se
        p_value = 2 * stats.t.sf(np.abs(tstat), cov.df_coef)
        ci_low, ci_high = beta - crit * se, beta + crit * se
    else:
        notes.flag("no_df", "aucun degré de liberté résiduel : pas d'erreur-type ni d'intervalle")
        se = np.full_like(beta, np.nan)
        p_value = ci_low = ci_high = np.full_like(beta, np.nan)
        V = np.full_like(V, np.nan)
    return _Inference(beta, se, p_value, ci_low, ci_high, V)


# ------------------------------------------------------------------ the table
def _without_separated(inf: _Inference, cov: _Covariance) -> _Inference:
    """The diverging coefficients published as missing (estimate, SE, interval, covariance)."""
    if not cov.separated:
        return inf
    gone = cov.gone
    V = inf.V.copy()
    V[gone, :] = np.nan
    V[:, gone] = np.nan
    return _Inference(
        *(
            np.where(gone, np.nan, a)
            for a in (inf.beta, inf.se, inf.p_value, inf.ci_low, inf.ci_high)
        ),
        V,
    )


def _table(
    spec: ModelSpec,
    design: SurveyDesign,
    data: _Data,
    model: _Model,
    cov: _Covariance,
    inf: _Inference,
    influence: _InfluenceCheck,
    notes: _Notes,
    codebook: Codebook | None,
    stage_names: Mapping[int, str],
) -> pd.DataFrame:
    """One row per coefficient, variance component and dropped term (:data:`MODEL_COLUMNS`)."""
    est = model.est
    rows = _coefficient_rows(spec, est.names, est.labels, inf, cov, influence, notes)
    common = [FLAG_TEXT[c] for c in notes.codes]
    missing = ("se", "ci_low", "ci_high", "p_value", "odds_ratio")
    for extra in est.extra_rows:
        rows.append(
            {
                "term": extra["term"],
                "label": extra["label"],
                "estimate": extra["value"],
                **dict.fromkeys(missing, np.nan),
                "flags": "; ".join([*common, FLAG_TEXT["variance_component"]]),
            }
        )
    for t in model.dropped:
        rows.append(
            {
                "term": t,
                "label": term_label(t, codebook, stage_names),
                **dict.fromkeys(("estimate", *missing), np.nan),
                "flags": FLAG_TEXT["collinear"],
            }
        )
    table = _finish_table(
        rows, spec, data, model.n_psu, cov.df_resid, est.n_params, model.design_df, est.r2,
        est.r2_kind, est.loglik,
    )  # fmt: skip
    table["variance"] = _variance_code(spec, design)
    if spec.small_sample:
        table.loc[table["term"].isin(est.names), "df"] = table["term"].map(
            dict(zip(est.names, cov.df_coef, strict=True))
        )
    return table


def _coefficient_rows(
    spec: ModelSpec,
    names: list[str],
    labels: list[str],
    inf: _Inference,
    cov: _Covariance,
    influence: _InfluenceCheck,
    notes: _Notes,
) -> list[dict[str, Any]]:
    """The coefficients' rows: estimates, tests, odds ratios of slopes and flags in French."""
    odds = spec.kind in ("logistic", "ordinal")
    by_term = influence.by_term()
    rows = []
    for j, name in enumerate(names):
        codes = list(notes.codes)
        if name in cov.separated:
            codes = ["separated" if c == "separation" else c for c in codes]
        text = [FLAG_TEXT[c] for c in dict.fromkeys(codes)]
        if name in by_term:
            text.append("territoire influent : " + ", ".join(by_term[name][:3]))
        is_slope = odds and name not in ("Intercept",) and not name.startswith("cut_")
        rows.append(
            {
                "term": name,
                "label": labels[j],
                "estimate": inf.beta[j],
                "se": inf.se[j],
                "ci_low": inf.ci_low[j],
                "ci_high": inf.ci_high[j],
                "p_value": inf.p_value[j],
                "odds_ratio": _exp(inf.beta[j]) if is_slope else np.nan,
                "flags": "; ".join(text),
            }
        )
    return rows


def _diagnostics(
    spec: ModelSpec,
    design: SurveyDesign,
    data: _Data,
    model: _Model,
    cov: _Covariance,
    influence: _InfluenceCheck,
    notes: _Notes,
    ci: str,
) -> dict[str, Any]:
    """The model's entry of ``models_diagnostics.json``."""
    return {
        "kind": spec.kind,
        "formula": spec.formula,
        "outcome": data.outcome,
        "n": int(data.rows.size),
        "n_psu": model.n_psu,
        "design_df": model.design_df,
        "df_resid": int(cov.df_resid),
        "n_params": int(model.est.n_params),
        "converged": bool(model.est.converged),
        "flags": sorted(set(notes.codes)),
        "messages": notes.messages,
        "dropped_terms": model.dropped,
        "separation": bool(cov.separated),
        "separated_terms": cov.separated,
        **influence.diagnostics(),
        **model.est.diagnostics,
        "r2": model.est.r2,
        "r2_kind": model.est.r2_kind,
        "loglik": model.est.loglik,
        "variance": _variance_text(spec, design),
        "ci": ci,
        **cov.small,
    }


def _variance_text(spec: ModelSpec, design: SurveyDesign) -> str:
    """How the covariance was computed, in the diagnostics' words."""
    if spec.kind == "mixed":
        variance = (
            "Taylor linearisation of the GLS estimating equations given the variance "
            "components; ultimate clusters = PSUs merged with groups, with replacement, "
            "uncalibrated (unweighted point estimates)"
        )
    elif design.is_replicate:
        variance = "replicate refits"
    else:
        variance = "Taylor linearisation" + (
            " without fpc (superpopulation)" if spec.superpopulation else ""
        )
    return variance + ("; small-sample corrected" if spec.small_sample else "")


def _exp(value: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.exp(value))


def _psu_codes(design: SurveyDesign, rows: np.ndarray) -> np.ndarray:
    """PSU label of each fitted row (every row its own PSU without a PSU column)."""
    psu = design._spec.get("psu") if hasattr(design, "_spec") else None
    if psu is None:
        return rows
    return design.data[psu].iloc[rows].astype(str).to_numpy()


def _variance_code(spec: ModelSpec, design: SurveyDesign) -> str:
    """The ``variance`` column: how the SEs were computed (the reports' captions say it)."""
    if design.is_replicate and spec.kind != "mixed":
        return "replicate"
    code = "gls_taylor" if spec.kind == "mixed" else "taylor"
    return code + ("_small_sample" if spec.small_sample else "")


def _finish_table(rows, spec, data, n_psu, df, n_params, design_df, r2, r2_kind, loglik):
    table = pd.DataFrame(rows)
    table["variance"] = ""
    table.insert(0, "kind", spec.kind)
    table.insert(0, "model", spec.name)
    table["n"] = np.int64(data.rows.size)
    table["n_psu"] = np.int64(n_psu) if n_psu is not None else np.nan
    table["df"] = float(df) if df is not None else np.nan
    table["outcome"] = data.outcome
    table["n_params"] = np.int64(n_params)
    table["design_df"] = np.int64(design_df)
    table["r2"] = float(r2) if r2 is not None else np.nan
    table["r2_kind"] = r2_kind
    table["loglik"] = float(loglik) if loglik is not None else np.nan
    table["dispersion"] = np.nan  # set by fit_model once the fit is known
    return table[list(MODEL_COLUMNS)]


def fit_study_models(
    specs: Sequence[ModelSpec],
    frame: pd.DataFrame,
    design: SurveyDesign,
    codebook: Codebook | None = None,
    *,
    level: float = 0.95,
) -> ModelsResult:
    """Fit every model of the study (``[[models]]``) in the study's order.

    Parameters
    ----------
    specs : sequence of ModelSpec
        The study's models.
    frame : DataFrame
        Respondents with scores, stage and context (row for row ``design.data``).
    design : SurveyDesign
        The wave's design.
    codebook : Codebook, optional
        French labels.
    level : float
        Confidence level.

    Returns
    -------
    ModelsResult
        ``table`` (``models.parquet``: one row per term, :data:`MODEL_COLUMNS`) and
        ``diagnostics`` (``models_diagnostics.json``: one entry per model).
    """
    from evalterritoire.progress import step_progress

    fitted = []
    with step_progress("Modèles", len(specs)) as advance:
        for spec in specs:
            fitted.append(fit_model(spec, frame, design, codebook, level=level))
            advance(1)
    if fitted:
        table = pd.concat([f.table for f in fitted], ignore_index=True)
    else:
        table = pd.DataFrame({c: pd.Series(dtype=object) for c in MODEL_COLUMNS})
    diagnostics = {f.name: _json_ready(f.diagnostics) for f in fitted}
    return ModelsResult(table=table, diagnostics=diagnostics, models=tuple(fitted))


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if not np.isfinite(value) else round(value, 12)
    return value
