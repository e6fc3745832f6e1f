"""Models of what drives co-construction and maturity, with design-based uncertainty.

Point estimates come from statsmodels fitted with the (normalised) design weights; their
covariance comes from the survey design, as R ``survey`` computes it:

* **linear** (``svyglm`` gaussian) and **logistic** (``svyglm`` quasibinomial): statsmodels
  ``GLM`` with ``var_weights``; covariance = Taylor-linearisation sandwich
  ``A⁻¹ [V_design(Σ U_i)] A⁻¹`` where ``U_i`` are the weighted score contributions and ``A`` the
  weighted information, the middle term computed by
  :meth:`evalterritoire.design.SurveyDesign.variance_of_totals` (strata, PSUs, second stage,
  fpc, calibration residuals). Replicate-weight designs refit the model with every replicate
  weight (R ``svyglm.svrepdesign``). Tests are ``t`` with the residual degrees of freedom of
  R: design df + 1 − number of coefficients; the intervals use the same ``t``, as R's
  ``confint.svyglm`` (Wald, ``ddf = df.residual``) in survey 4.1; ``ci="normal"`` gives the
  normal quantile (R ``confint.default``, the only interval R offers for ``svyolr``).
* **ordinal** (cumulative logit, R ``svyolr``): statsmodels ``OrderedModel`` with a weighted
  log-likelihood, polished by Newton steps with the analytic score; the cut-points are
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

Diagnostics (each a flag in the table and an entry in the diagnostics mapping, never a silent
missing value): complete or quasi-complete separation (linear programmes of Konis, 2007, for
the logistic and the cumulative logit; the coefficients that diverge are published as missing
with the flag, the others are flagged), collinear terms (dropped like R's aliased
coefficients), a singular information matrix, too few PSUs for the number of parameters,
non-convergence, and influential territories (removing a territory moves a coefficient by more
than its standard error; skipped, and said so, for linear, logistic and ordinal models on
replicate-weight designs, whose ``n_psu`` is missing).

Layout: this module fits and publishes (``fit_model``, the families' estimating equations, the
tidy table); :mod:`evalterritoire.models.families` holds the likelihoods (separation, weighted GLM,
cumulative logit), :mod:`evalterritoire.models.data` the model inputs and French term
labels, :mod:`evalterritoire.models.variance` the design covariance, the mixed model's clusters, the working model and
the influence check, and :mod:`evalterritoire.design.sandwich` the ``small_sample`` correction.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from evalterritoire.design.sandwich import small_sample_correction
from evalterritoire.errors import DesignError, ModelError
from evalterritoire.models.data import (
    _STAGE_COL,
    _cut_label,
    _Data,
    _Estimation,
    _independent_columns,
    _num,
    _prepare,
    term_label,
)
from evalterritoire.models.families import (
    _glm_fit,
    _glm_parts,
    _ordinal_fit,
    _ordinal_hessian,
    _ordinal_parts,
    detect_ordinal_separation,
    detect_separation,
)
from evalterritoire.models.variance import (
    INFLUENCE_SE,
    _influence,
    _mixed_variance_design,
    _variance,
    _working_model,
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
)
KINDS: tuple[str, ...] = ("linear", "logistic", "ordinal", "mixed")
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


def _estimate_glm(spec: ModelSpec, data: _Data, X, terms, w, codebook, stage_names):
    y = data.y
    beta, converged = _glm_fit(spec.kind, y, X, w, maxiter=spec.maxiter)
    U, A, _mu, v = _glm_parts(spec.kind, y, X, w, beta)
    separation = detect_separation(X, y) if spec.kind == "logistic" else None
    r2, r2_kind, loglik = _fit_stats(spec.kind, y, X, w, beta, 0)
    return _Estimation(
        beta=beta,
        names=list(terms),
        labels=[term_label(t, codebook, stage_names) for t in terms],
        U=U,
        A=A,
        L=X * (w * v)[:, None],
        R=X,
        converged=converged,
        separation=separation,
        r2=r2,
        r2_kind=r2_kind,
        loglik=loglik,
        n_params=beta.size,
    )


def _estimate_ordinal(spec: ModelSpec, data: _Data, X, terms, w, codebook, stage_names):
    y = data.y
    n_cuts = int(y.max())
    beta, converged = _ordinal_fit(y, X, w, maxiter=spec.maxiter)
    _, score = _ordinal_parts(y, X, beta, n_cuts)
    lv = data.levels
    r2, r2_kind, loglik = _fit_stats("ordinal", y, X, w, beta, n_cuts)
    return _Estimation(
        beta=beta,
        names=terms + [f"cut_{_num(lv[k])}/{_num(lv[k + 1])}" for k in range(n_cuts)],
        labels=[term_label(t, codebook, stage_names) for t in terms]
        + [_cut_label(lv[k], lv[k + 1], data.outcome, codebook) for k in range(n_cuts)],
        U=score * w[:, None],
        A=-_ordinal_hessian(y, X, w, beta, n_cuts),
        L=None,
        R=None,
        converged=converged,
        separation=detect_ordinal_separation(X, y),
        r2=r2,
        r2_kind=r2_kind,
        loglik=loglik,
        n_params=beta.size,
    )


def _estimate_mixed(spec: ModelSpec, data: _Data, X, terms, codebook, stage_names):
    """MixedLM (REML, unweighted) and the GLS estimating equations of its fixed effects.

    Given the variance components, ``β̂`` solves ``Σ_g X_g'V_g⁻¹(y_g − X_g β) = 0`` with
    ``V_g = σ² I + τ² 11'``. Since ``V_g⁻¹ = (I − γ_g 11')/σ²`` with
    ``γ_g = τ²/(σ² + n_g τ²)``, the group's contribution splits over its respondents as
    ``U_i = x_i (r_i − û_g)/σ²`` where ``r_i = y_i − x_i'β̂`` and ``û_g = γ_g Σ_{j∈g} r_j`` is
    the BLUP of the group's intercept; ``A = Σ_i x_i (x_i − γ_g S_g)'/σ²`` with
    ``S_g = Σ_{j∈g} x_j`` (``= X'V⁻¹X``).
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    y = data.y
    fit_kw = {} if spec.maxiter is None else {"maxiter": int(spec.maxiter)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = sm.MixedLM(y, X, groups=data.groups)
        res = model.fit(reml=True, method=["bfgs", "lbfgs", "powell"], **fit_kw)
    converged = bool(res.converged) and not any(
        issubclass(c.category, ConvergenceWarning) for c in caught
    )
    p = len(terms)
    beta = np.asarray(res.fe_params, dtype=float)
    tau2 = float(np.asarray(res.cov_re)[0, 0])
    sigma2 = float(res.scale)
    _, g = np.unique(data.groups, return_inverse=True)
    n_g = np.bincount(g).astype(float)
    gamma = tau2 / (sigma2 + n_g * tau2)
    resid = y - X @ beta
    u_hat = gamma * np.bincount(g, weights=resid)
    S = np.zeros((n_g.size, p))
    np.add.at(S, g, X)
    L = X / sigma2
    R = X - gamma[g][:, None] * S[g]
    A = L.T @ R
    A = (A + A.T) / 2
    U = X * ((resid - u_hat[g]) / sigma2)[:, None]
    model_se = np.sqrt(np.clip(np.diag(np.asarray(res.cov_params(), dtype=float)[:p, :p]), 0, None))
    fixed = X @ beta
    var_fixed = float(np.var(fixed))
    r2 = var_fixed / (var_fixed + tau2 + sigma2)
    flags, messages = (
        ["unweighted"],
        [
            "modèle mixte ajusté sans pondération (statsmodels MixedLM) ; erreurs-types : sandwich "
            "du plan sur les équations d'estimation des effets fixes, composantes de variance fixées"
        ],
    )
    if tau2 <= 1e-10 * max(sigma2, 1e-300):
        flags.append("boundary")
        messages.append("variance inter-groupes estimée à zéro")
    extra = [
        {"term": "var_groupe", "label": "Variance entre groupes (effet aléatoire)", "value": tau2},
        {"term": "var_residuelle", "label": "Variance résiduelle", "value": sigma2},
    ]
    return _Estimation(
        beta=beta,
        names=list(terms),
        labels=[term_label(t, codebook, stage_names) for t in terms],
        U=U,
        A=A,
        L=L,
        R=R,
        converged=converged,
        r2=r2,
        r2_kind="R² marginal",
        loglik=float(res.llf),
        n_params=p + 2,
        extra_rows=extra,
        flags=flags,
        messages=messages,
        diagnostics={
            "groups": spec.groups,
            "n_groups": int(n_g.size),
            "group_variance": tau2,
            "residual_variance": sigma2,
            "icc": tau2 / (tau2 + sigma2),
            "model_based_se": dict(zip(terms, map(float, model_se), strict=True)),
            "gls_root_step": float(np.max(np.abs(U.sum(axis=0) @ np.linalg.pinv(A)))),
        },
    )


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
    territory = None
    if codebook is not None and codebook.column("territory") is not None:
        territory = codebook.column("territory")
    data = _prepare(spec, frame, design, territory)
    stage_names: dict[int, str] = {}
    if _STAGE_COL in frame.columns and "stage_label" in frame.columns:
        pairs = frame[[_STAGE_COL, "stage_label"]].dropna().drop_duplicates(_STAGE_COL)
        stage_names = {
            int(s): str(lab) for s, lab in zip(pairs[_STAGE_COL], pairs["stage_label"], strict=True)
        }
    w_raw = np.asarray(design.weights, dtype=float)[data.rows]
    w = w_raw / w_raw.mean()
    mixed = spec.kind == "mixed"
    keep = _independent_columns(data.X, np.ones_like(w) if mixed else w)
    dropped = [t for j, t in enumerate(data.terms) if j not in set(keep)]
    X = data.X[:, keep]
    terms = [data.terms[j] for j in keep]
    flags: dict[str, list[str]] = {}  # term -> flag codes ("*" = every row)
    messages: list[str] = []

    def flag(term: str, code: str) -> None:
        flags.setdefault(term, [])
        if code not in flags[term]:
            flags[term].append(code)

    for t in dropped:
        messages.append(f"terme colinéaire retiré : {t}")
    sub_design = design.subset(np.isin(np.arange(len(design.data)), data.rows))
    design_df = int(sub_design.df)
    if design.is_replicate:
        n_psu: int | None = None
        messages.append(
            "plan à poids répliqués : nombre d'UPE inconnu (n_psu manquant) ; degrés de liberté "
            f"du plan = rang des répliques − 1 = {design_df}"
        )
    else:
        n_psu = int(np.unique(_psu_codes(design, data.rows)).size)

    if mixed:
        est = _estimate_mixed(spec, data, X, terms, codebook, stage_names)
        var_design, cluster_info = _mixed_variance_design(design, frame, spec.groups)
        est.diagnostics.update(cluster_info)
        design_df = int(var_design.subset(np.isin(np.arange(len(frame)), data.rows)).df)
    elif spec.kind == "ordinal":
        est = _estimate_ordinal(spec, data, X, terms, w, codebook, stage_names)
        var_design = design
    else:
        est = _estimate_glm(spec, data, X, terms, w, codebook, stage_names)
        var_design = design
    for code in est.flags:
        flag("*", code)
    messages.extend(est.messages)
    beta, names, A = est.beta, est.names, est.A
    n_cuts = beta.size - len(terms)
    separated: list[str] = []
    gone = np.zeros(beta.size, dtype=bool)
    if est.separation is not None:
        gone = est.separation != 0
        separated = [names[j] for j in np.flatnonzero(gone)]
        flag("*", "separation")
        messages.append(
            "séparation (quasi) complète : le maximum de vraisemblance n'existe pas ; "
            "coefficients infinis non publiés : " + ", ".join(separated)
        )
    # The diverging coefficients carry no information (their observations are fitted with
    # probability 0 or 1): the sandwich of the others uses the rest of the information matrix.
    free = np.flatnonzero(~gone)
    A_free = A[np.ix_(free, free)]
    Ainv = np.zeros_like(A)
    if free.size and np.linalg.cond(A_free) > 1e12:
        flag("*", "singular")
        messages.append("matrice d'information singulière : paramètres non identifiables")
        Ainv[np.ix_(free, free)] = np.linalg.pinv(A_free)
    elif free.size:
        Ainv[np.ix_(free, free)] = np.linalg.inv(A_free)
    V = _variance(var_design, data, spec.kind, data.y, X, w, beta, est.U, Ainv, n_cuts)
    n_coef = beta.size  # coefficients with a design variance
    df_resid = design_df + 1 - n_coef
    df_coef = np.full(n_coef, float(df_resid))
    small: dict[str, Any] = {}
    if spec.small_sample:
        if design.is_replicate and not mixed:
            raise ModelError(
                f"model '{spec.name}': small_sample needs a Taylor design (replicate-weight "
                "variances come from refits, which already account for leverage)"
            )
        try:
            op = var_design.without_fpc().linear_operator()
        except DesignError as exc:
            raise ModelError(f"model '{spec.name}': small_sample: {exc}") from exc
        wm = _working_model(spec.kind, data, X, np.ones_like(w) if mixed else w, est)
        ss = small_sample_correction(op, Ainv, wm, free)
        root = np.sqrt(ss.kappa)
        V = V * root[:, None] * root[None, :]
        df_coef = np.where(np.isfinite(ss.df), np.minimum(ss.df, df_resid), df_resid)
        small = {
            "small_sample": "Kott (1994) working-model bias correction, Bell-McCaffrey df",
            "small_sample_se_factor": dict(zip(names, map(float, root), strict=True)),
            "small_sample_df": dict(zip(names, map(float, df_coef), strict=True)),
        }
    se = np.sqrt(np.clip(np.diag(V), 0.0, None))
    if design_df < n_coef:
        flag("*", "few_psu")
        if mixed:
            psu_text = f"{est.diagnostics['variance_clusters']} grappes (UPE et groupes)"
        else:
            psu_text = f"{n_psu} UPE" if n_psu is not None else "plan répliqué"
        messages.append(
            f"{psu_text} ({design_df} degrés de liberté du plan) pour {n_coef} paramètres"
        )
    if not est.converged:
        flag("*", "not_converged")
        messages.append("l'estimation n'a pas convergé")
    if df_resid >= 1:
        crit = (
            stats.t.ppf(0.5 + level / 2, df_coef) if ci == "t" else stats.norm.ppf(0.5 + level / 2)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            tstat = beta / se
        p_value = 2 * stats.t.sf(np.abs(tstat), df_coef)
        ci_low, ci_high = beta - crit * se, beta + crit * se
    else:
        flag("*", "no_df")
        messages.append("aucun degré de liberté résiduel : pas d'erreur-type ni d'intervalle")
        se = np.full_like(beta, np.nan)
        p_value = ci_low = ci_high = np.full_like(beta, np.nan)
        V = np.full_like(V, np.nan)

    influential = []
    if design.is_replicate and not mixed:
        influence_check = "skipped: replicate-weight design (no Taylor variance to judge by)"
        flag("*", "influence_skipped")
        messages.append("influence des territoires non évaluée : plan à poids répliqués")
    elif data.territory is None:
        influence_check = "skipped: no territory column (codebook role territory_code)"
    elif np.unique(data.territory).size < 3:
        influence_check = "skipped: fewer than 3 territories"
    elif df_resid < 1:
        influence_check = "skipped: no residual degrees of freedom"
    elif separated:
        influence_check = "skipped: separation"
    else:
        influence_check = "done"
        for code, shift in _influence(var_design, data, est, Ainv, se):
            moved = [names[j] for j in np.flatnonzero(shift > INFLUENCE_SE)]
            influential.append(
                {"territory": code, "terms": moved, "max_shift_se": round(float(shift.max()), 3)}
            )
    influence_by_term: dict[str, list[str]] = {}
    for item in sorted(influential, key=lambda d: (-d["max_shift_se"], d["territory"])):
        for t in item["terms"]:
            influence_by_term.setdefault(t, []).append(item["territory"])

    if separated:
        beta = np.where(gone, np.nan, beta)
        se, p_value = np.where(gone, np.nan, se), np.where(gone, np.nan, p_value)
        ci_low, ci_high = np.where(gone, np.nan, ci_low), np.where(gone, np.nan, ci_high)
        V = V.copy()
        V[gone, :] = np.nan
        V[:, gone] = np.nan

    odds = spec.kind in ("logistic", "ordinal")
    rows = []
    for j, name in enumerate(names):
        codes = flags.get("*", []) + flags.get(name, [])
        if name in separated:
            codes = ["separated" if c == "separation" else c for c in codes]
        text = [FLAG_TEXT[c] for c in dict.fromkeys(codes)]
        if name in influence_by_term:
            text.append("territoire influent : " + ", ".join(influence_by_term[name][:3]))
        is_slope = odds and name not in ("Intercept",) and not name.startswith("cut_")
        rows.append(
            {
                "term": name,
                "label": est.labels[j],
                "estimate": beta[j],
                "se": se[j],
                "ci_low": ci_low[j],
                "ci_high": ci_high[j],
                "p_value": p_value[j],
                "odds_ratio": _exp(beta[j]) if is_slope else np.nan,
                "flags": "; ".join(text),
            }
        )
    common = [FLAG_TEXT[c] for c in flags.get("*", [])]
    for extra in est.extra_rows:
        rows.append(
            {
                "term": extra["term"],
                "label": extra["label"],
                "estimate": extra["value"],
                **dict.fromkeys(("se", "ci_low", "ci_high", "p_value", "odds_ratio"), np.nan),
                "flags": "; ".join([*common, FLAG_TEXT["variance_component"]]),
            }
        )
    for t in dropped:
        rows.append(
            {
                "term": t,
                "label": term_label(t, codebook, stage_names),
                **dict.fromkeys(
                    ("estimate", "se", "ci_low", "ci_high", "p_value", "odds_ratio"), np.nan
                ),
                "flags": FLAG_TEXT["collinear"],
            }
        )
    table = _finish_table(
        rows, spec, data, n_psu, df_resid, est.n_params, design_df, est.r2, est.r2_kind, est.loglik
    )
    table["variance"] = _variance_code(spec, design)
    if spec.small_sample:
        table.loc[table["term"].isin(names), "df"] = table["term"].map(
            dict(zip(names, df_coef, strict=True))
        )
    vcov = pd.DataFrame(V, index=names, columns=names)
    if mixed:
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
    diagnostics = {
        "kind": spec.kind,
        "formula": spec.formula,
        "outcome": data.outcome,
        "n": int(data.rows.size),
        "n_psu": n_psu,
        "design_df": design_df,
        "df_resid": int(df_resid),
        "n_params": int(est.n_params),
        "converged": bool(est.converged),
        "flags": sorted({c for codes in flags.values() for c in codes}),
        "messages": messages,
        "dropped_terms": dropped,
        "separation": bool(separated),
        "separated_terms": separated,
        "influence_check": influence_check,
        "influential_territories": sorted(influential, key=lambda d: d["territory"]),
        **est.diagnostics,
        "r2": est.r2,
        "r2_kind": est.r2_kind,
        "loglik": est.loglik,
        "variance": variance + ("; small-sample corrected" if spec.small_sample else ""),
        "ci": ci,
        **small,
    }
    return FittedModel(spec.name, spec.kind, spec.formula, table, vcov, diagnostics)


def _exp(value: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.exp(value))


def _psu_codes(design: SurveyDesign, rows: np.ndarray) -> np.ndarray:
    """PSU label of each fitted row (every row its own PSU without a PSU column)."""
    psu = design._spec.get("psu") if hasattr(design, "_spec") else None
    if psu is None:
        return rows
    return design.data[psu].iloc[rows].astype(str).to_numpy()


def _fit_stats(kind, y, X, w, beta, n_cuts):
    if kind == "linear":
        mu = X @ beta
        ybar = np.average(y, weights=w)
        r2 = 1.0 - np.sum(w * (y - mu) ** 2) / np.sum(w * (y - ybar) ** 2)
        return float(r2), "R² pondéré", np.nan
    if kind == "logistic":
        mu = np.clip(expit(X @ beta), 1e-300, 1 - 1e-16)
        ll = float(np.sum(w * (y * np.log(mu) + (1 - y) * np.log1p(-mu))))
        pbar = np.average(y, weights=w)
        ll0 = float(np.sum(w * (y * np.log(pbar) + (1 - y) * np.log1p(-pbar))))
    else:
        ll = float(w @ _ordinal_parts(y, X, beta, n_cuts)[0])
        shares = np.bincount(y.astype(int), weights=w, minlength=n_cuts + 1) / w.sum()
        ll0 = float(np.sum(w * np.log(shares[y.astype(int)])))
    return float(1.0 - ll / ll0), "pseudo-R² de McFadden pondéré", ll


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
    fitted = [fit_model(s, frame, design, codebook, level=level) for s in specs]
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
