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
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from evalterritoire.errors import DesignError, ModelError
from evalterritoire.families import (
    _glm_fit,
    _glm_parts,
    _irls,
    _ordinal_fit,
    _ordinal_hessian,
    _ordinal_newton,
    _ordinal_parts,
    detect_ordinal_separation,
    detect_separation,
)
from evalterritoire.sandwich import WorkingModel, small_sample_correction

if TYPE_CHECKING:
    from evalterritoire.codebook import Codebook
    from evalterritoire.config import ModelSpec
    from evalterritoire.design import SurveyDesign

__all__ = [
    "MODEL_COLUMNS",
    "FittedModel",
    "ModelsResult",
    "detect_separation",
    "fit_model",
    "fit_study_models",
]

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
#: A territory whose removal moves a coefficient by more than this many SEs is influential.
INFLUENCE_SE = 1.0
_STAGE_COL = "stage"
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LEVEL_TERM = re.compile(
    r"^(?:C\((?P<cvar>[A-Za-z_]\w*)[^)]*\)|(?P<var>[A-Za-z_]\w*))\[T\.(?P<lvl>.+)\]$"
)

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


# --------------------------------------------------------------------------- data
@dataclass
class _Data:
    y: np.ndarray
    X: np.ndarray
    terms: list[str]
    rows: np.ndarray  # positions in the frame / design
    outcome: str
    levels: np.ndarray | None = None
    groups: np.ndarray | None = None
    territory: np.ndarray | None = None
    dropped: list[str] = field(default_factory=list)


def _referenced(formula: str, frame: pd.DataFrame) -> list[str]:
    cols = set(frame.columns)
    seen: list[str] = []
    for tok in _TOKEN.findall(formula):
        if tok in cols and tok not in seen:
            seen.append(tok)
    return seen


def _plain(series: pd.Series) -> pd.Series:
    """A column patsy understands: numbers as float/int, anything else as object with None."""
    if isinstance(series.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(series):
        return series.astype(object).where(series.notna(), None)
    values = series.astype(float)
    finite = values.dropna()
    if len(finite) and np.all(np.mod(finite.to_numpy(), 1.0) == 0):
        return values.astype("int64")
    return values


def _prepare(spec: ModelSpec, frame: pd.DataFrame, design: SurveyDesign, territory: str | None):
    import patsy

    if len(frame) != len(design.data):
        raise ModelError(
            f"model '{spec.name}': the frame has {len(frame)} rows but the design "
            f"{len(design.data)}; build the design from the same rows"
        )
    lhs = spec.formula.split("~", 1)[0]
    cols = _referenced(spec.formula, frame)
    if not _referenced(lhs, frame):
        raise ModelError(
            f"model '{spec.name}': outcome '{lhs.strip()}' is not a column of the data"
        )
    needed = list(cols)
    if spec.kind == "mixed":
        if not spec.groups or spec.groups not in frame.columns:
            raise ModelError(f"model '{spec.name}': unknown grouping column '{spec.groups}'")
        needed.append(spec.groups)
    mask = design.domain_mask & frame[needed].notna().all(axis=1).to_numpy()
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        raise ModelError(f"model '{spec.name}': no respondent has every variable of the formula")
    sub = pd.DataFrame({c: _plain(frame[c].iloc[rows]) for c in cols})
    sub.index = pd.RangeIndex(rows.size)
    env = patsy.EvalEnvironment([{"np": np}])
    try:
        y_df, x_df = patsy.dmatrices(
            spec.formula, sub, return_type="dataframe", NA_action="raise", eval_env=env
        )
    except Exception as exc:  # patsy raises PatsyError and whatever the formula evaluates
        raise ModelError(f"model '{spec.name}': formula '{spec.formula}': {exc}") from exc
    if spec.kind == "ordinal":  # the cut-points play the intercept
        x_df = x_df.drop(columns=[c for c in x_df.columns if c == "Intercept"])
    if y_df.shape[1] == 2 and str(y_df.columns[1]).endswith("[True]"):
        y_df = y_df.iloc[:, [1]]
    if y_df.shape[1] != 1:
        raise ModelError(
            f"model '{spec.name}': the outcome must be one numeric column, got "
            f"{', '.join(map(str, y_df.columns))}"
        )
    y = y_df.iloc[:, 0].to_numpy(dtype=float)
    data = _Data(
        y=y,
        X=x_df.to_numpy(dtype=float),
        terms=[str(c) for c in x_df.columns],
        rows=rows,
        outcome=str(y_df.columns[0]),
    )
    if spec.kind == "logistic":
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            raise ModelError(
                f"model '{spec.name}': a logistic outcome takes 0/1 values, found "
                f"{y[bad][0]:g} (write e.g. 'I({data.outcome} >= 2) ~ …')"
            )
    if spec.kind == "ordinal":
        if np.any(np.mod(y, 1.0) != 0):
            raise ModelError(f"model '{spec.name}': an ordinal outcome needs integer codes")
        levels, codes = np.unique(y, return_inverse=True)
        if levels.size < 2:
            raise ModelError(f"model '{spec.name}': the outcome takes a single value")
        data.levels = levels
        data.y = codes.astype(float)
    if spec.kind == "mixed":
        data.groups = frame[spec.groups].iloc[rows].astype(str).to_numpy()
    if territory is not None and territory in frame.columns:
        data.territory = frame[territory].iloc[rows].astype(str).to_numpy()
    return data


def _independent_columns(X: np.ndarray, w: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Keep columns in order, dropping those (nearly) spanned by earlier ones (R ``qr``)."""
    Xs = X * np.sqrt(w)[:, None]
    keep: list[int] = []
    for j in range(Xs.shape[1]):
        col = Xs[:, j]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        if keep:
            basis = Xs[:, keep]
            coef, *_ = np.linalg.lstsq(basis, col, rcond=None)
            resid = col - basis @ coef
        else:
            resid = col
        if np.linalg.norm(resid) > tol * norm:
            keep.append(j)
    return np.asarray(keep, dtype=int)


# --------------------------------------------------------------------------- labels
def _level_label(var: str, level: str, codebook: Codebook | None, stage_names: Mapping) -> str:
    if var == _STAGE_COL:
        try:
            return f"Stade : {stage_names[int(float(level))]}"
        except (KeyError, ValueError):
            return f"Stade : {level}"
    if codebook is not None and var in codebook.ids:
        labels = codebook.value_labels(var)
        key: Any = level
        if key not in labels:
            try:
                key = int(float(level))
            except ValueError:
                key = level
        lab = labels.get(key, labels.get(str(key), level))
        return f"{_short(codebook.label(var))} : {lab}"
    return f"{var} : {level}"


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def term_label(term: str, codebook: Codebook | None, stage_names: Mapping | None = None) -> str:
    """French label of a model term (``C(stage)[T.2]`` → ``Stade : Consolidation``)."""
    stage_names = stage_names or {}
    if term in {"Intercept", "const"}:
        return "Constante"
    parts = []
    for factor in term.split(":"):
        m = _LEVEL_TERM.match(factor)
        if m:
            var = m.group("cvar") or m.group("var")
            parts.append(_level_label(var, m.group("lvl"), codebook, stage_names))
        elif codebook is not None and factor in codebook.ids:
            parts.append(_short(codebook.label(factor)))
        elif factor == _STAGE_COL:
            parts.append("Stade (rang)")
        else:
            parts.append(factor)
    return " × ".join(parts)


def _cut_label(a: Any, b: Any, outcome: str, codebook: Codebook | None) -> str:
    labels = (
        codebook.value_labels(outcome) if codebook is not None and outcome in codebook.ids else {}
    )

    def lab(v):
        return labels.get(int(v), labels.get(str(int(v)), _num(v)))

    return f"Seuil « {lab(a)} » | « {lab(b)} »"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# --------------------------------------------------------------------------- fitting
@dataclass
class _Estimation:
    """What a family's fit hands to the common inference code (one entry per coefficient)."""

    beta: np.ndarray
    names: list[str]
    labels: list[str]
    U: np.ndarray  # (n, d) estimating-equation contributions, already design-weighted if any
    A: np.ndarray  # (d, d) derivative of −Σ U
    L: np.ndarray | None  # A = L'R row by row (exact territory deletion); None: one-step
    R: np.ndarray | None
    converged: bool
    separation: np.ndarray | None = None  # direction over the coefficients
    r2: float = np.nan
    r2_kind: str = ""
    loglik: float = np.nan
    n_params: int = 0  # table's n_params (mixed: + variance components)
    extra_rows: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # codes for every row
    messages: list[str] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _mixed_variance_design(
    design: SurveyDesign, frame: pd.DataFrame, groups: str
) -> tuple[SurveyDesign, dict[str, Any]]:
    """The design of the mixed model's sandwich: ultimate clusters = PSUs merged with groups.

    The GLS score of a group is not a sum of independent respondent terms (every respondent's
    score involves the group's BLUP), so the units summed independently must contain whole
    groups: the clusters are the connected components of the PSU–group graph (the groups when
    PSUs are nested in them, the PSUs when groups are nested in PSUs). The design's strata are
    kept when every cluster lies in one stratum; the clusters are taken with replacement (no
    fpc: the random intercept describes a superpopulation) with the ``adjust`` rule for a
    stratum holding one cluster, and without calibration (the estimator ignores the weights).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from evalterritoire.design import SurveyDesign as Design

    data = design.data
    n = len(data)
    spec = getattr(design, "_spec", {})
    psu_col = None if design.is_replicate else spec.get("psu")
    strata_col = None if design.is_replicate else spec.get("strata")
    psu = pd.factorize(data[psu_col].astype(str))[0] if psu_col else np.arange(n)
    grp = pd.factorize(frame[groups].astype(object))[0]  # −1 where missing
    n_p, n_g = int(psu.max()) + 1, int(grp.max()) + 1
    has = grp >= 0
    edges = coo_matrix(
        (np.ones(int(has.sum())), (psu[has], n_p + grp[has])), shape=(n_p + n_g, n_p + n_g)
    )
    _, comp = connected_components(edges, directed=False)
    cluster = pd.factorize(comp[psu])[0]
    table = pd.DataFrame({"_cluster": cluster})
    nested = False
    if strata_col:
        table["_stratum"] = data[strata_col].astype(str).to_numpy()
        nested = bool((table.groupby("_cluster")["_stratum"].nunique() == 1).all())
    clusters = Design(
        table,
        strata="_stratum" if nested else None,
        psu="_cluster",
        lonely_psu="adjust",
    )
    if not design.domain_mask.all():
        clusters = clusters.subset(design.domain_mask)
    info = {
        "variance_clusters": int(np.unique(cluster).size),
        "variance_cluster_rule": "PSUs merged with the model's groups (connected components)",
        "variance_strata": strata_col if nested else None,
    }
    return clusters, info


def _variance(design: SurveyDesign, data: _Data, kind, y, X, w, beta, U, Ainv, n_cuts=0):
    """Design covariance of the coefficients: sandwich (Taylor) or replicate refits."""
    if design.is_replicate and kind != "mixed":
        reps_w = design.replicate_weights[data.rows]
        scale = np.asarray(design.weights, dtype=float)[data.rows].mean()
        thetas = []
        for r in range(reps_w.shape[1]):
            wr = reps_w[:, r] / scale
            if kind == "ordinal":
                thetas.append(_ordinal_newton(y, X, wr, beta, n_cuts)[0])
            else:
                thetas.append(_irls(kind, y, X, wr, beta))
        return design.replicate_variance(np.vstack(thetas), beta)
    z = np.zeros((len(design.data), beta.size))
    z[data.rows] = U @ Ainv
    return design.variance_of_totals(z)


def _working_model(kind: str, data: _Data, X, w, est: _Estimation) -> WorkingModel:
    """Score loadings of the working model (independent standardised errors) of each family.

    Linear and logistic: one error per respondent, ``s_i = w_i √v_i x_i ε_i`` (``v`` the
    variance function, 1 for the linear model) and ``M_i = w_i v_i x_i x_i'``. Ordinal: one
    error per respondent and category, loadings ``w_i √p_ik g_ik`` with ``g_ik`` the score had
    the answer been ``k`` (the expected information is ``Σ_k p_ik g_ik g_ik'``). Mixed: the
    errors ``ε_g = V_g^{-1/2} r_g`` of each group, loadings ``X_g'V_g^{-1/2}`` whose column ``j`` is
    ``(x_j + (ρ_g − 1) x̄_g)/σ`` with ``ρ_g = (1 + n_g τ²/σ²)^{-1/2}``, and ``M_i`` from the GLS
    derivative ``A = L'R``.
    """
    rows = data.rows
    beta = est.beta
    if kind in ("linear", "logistic"):
        mu = expit(X @ beta)
        v = np.ones(len(rows)) if kind == "linear" else mu * (1.0 - mu)
        C = X * np.sqrt(v)[:, None]
        G = C * w[:, None]
        return WorkingModel(rows, G, rows, G, C)
    if kind == "ordinal":
        n_cuts = beta.size - X.shape[1]
        Cs, rows_k = [], []
        for k in range(n_cuts + 1):
            ll, score = _ordinal_parts(np.full(len(rows), k), X, beta, n_cuts)
            Cs.append(score * np.sqrt(np.exp(ll))[:, None])
            rows_k.append(rows)
        C = np.vstack(Cs)
        G = C * np.tile(w, n_cuts + 1)[:, None]
        idx = np.concatenate(rows_k)
        return WorkingModel(idx, G, idx, G, C)
    diag = est.diagnostics
    sigma2, tau2 = diag["residual_variance"], diag["group_variance"]
    _, g = np.unique(data.groups, return_inverse=True)
    n_g = np.bincount(g).astype(float)
    means = np.zeros((n_g.size, X.shape[1]))
    np.add.at(means, g, X)
    means /= n_g[:, None]
    rho = 1.0 / np.sqrt(1.0 + n_g * tau2 / sigma2)
    G = (X + (rho - 1.0)[g][:, None] * means[g]) / np.sqrt(sigma2)
    return WorkingModel(rows, G, rows, est.L, est.R)


def _influence(design: SurveyDesign, data: _Data, est: _Estimation, Ainv, se):
    """Territories whose removal moves a coefficient by more than INFLUENCE_SE × its SE.

    The shift is the deletion ``Δβ_g = −(A − A_g)⁻¹ U_g`` (exact for the linear model and, given
    the variance components, for the mixed model's GLS when the groups are the territories;
    one step for the logistic; ``−A⁻¹ U_g`` for the ordinal model); territories moving a
    coefficient by more than half a standard error are then judged against the standard error
    computed without them (DFBETAS), so that an outlying territory cannot hide behind the
    variance it inflates itself. ``design`` is the design of the Taylor sandwich.
    """
    codes, inv = np.unique(data.territory, return_inverse=True)
    U, A = est.U, est.A
    Ug = np.zeros((codes.size, U.shape[1]))
    np.add.at(Ug, inv, U)
    z = np.zeros((len(design.data), U.shape[1]))
    z[data.rows] = U @ Ainv
    out = []
    for g, code in enumerate(codes):
        sel = inv == g
        if est.L is not None:
            Ag = est.L[sel].T @ est.R[sel]
            try:
                delta = -np.linalg.solve(A - (Ag + Ag.T) / 2, Ug[g])
            except np.linalg.LinAlgError:
                delta = -Ainv @ Ug[g]
        else:
            delta = -Ainv @ Ug[g]
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.abs(delta) / se
        shift = np.where(np.isfinite(shift), shift, 0.0)
        if shift.max() <= INFLUENCE_SE / 2:
            continue
        z_g = z.copy()
        z_g[data.rows[sel]] = 0.0
        se_g = np.sqrt(np.clip(np.diag(design.variance_of_totals(z_g)), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.abs(delta) / se_g
        shift = np.where(np.isfinite(shift), shift, 0.0)
        if shift.max() > INFLUENCE_SE:
            out.append((str(code), shift))
    return out


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
    if codebook is not None and codebook.by_role("territory_code") is not None:
        territory = codebook.by_role("territory_code").id
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
