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
  weights in a mixed model, so the fit is unweighted and its standard errors are the model's,
  not the design's; every row says so in ``flags``.

Diagnostics (each a flag in the table and an entry in the diagnostics mapping, never a silent
missing value): complete or quasi-complete separation (linear programme of Konis, 2007),
collinear terms (dropped like R's aliased coefficients), too few PSUs for the number of
parameters, non-convergence, and influential territories (removing a territory moves a
coefficient by more than its standard error).
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

from evalterritoire.errors import ModelError

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
    "collinear": "terme colinéaire, retiré du modèle",
    "few_psu": "peu d'UPE pour le nombre de paramètres",
    "no_df": "aucun degré de liberté résiduel : pas d'erreur-type",
    "not_converged": "l'estimation n'a pas convergé",
    "singular": "information singulière : paramètres non identifiables",
    "unweighted": "modèle mixte non pondéré : erreurs-types du modèle, pas du plan",
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
        Covariance of the estimated coefficients (rows and columns named by term; design-based
        except for mixed models).
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


# --------------------------------------------------------------------------- separation
def detect_separation(X: Any, y: Any, *, tol: float = 1e-7) -> np.ndarray | None:
    """Detect complete or quasi-complete separation of a binary outcome (Konis, 2007).

    Solves ``max Σ s_i x_i'b`` subject to ``s_i x_i'b ≥ 0`` and ``−1 ≤ b ≤ 1`` with
    ``s_i = 2y_i − 1``: a positive optimum means a direction that classifies every observation
    without error, so the maximum-likelihood estimate does not exist.

    Parameters
    ----------
    X : array-like, shape (n, p)
        Model matrix.
    y : array-like of {0, 1}, shape (n,)
        Outcome.
    tol : float
        Threshold on the optimum, relative to the scale of ``X``.

    Returns
    -------
    ndarray or None
        The separating direction ``b`` (non-zero entries name the terms involved) or ``None``.
    """
    from scipy.optimize import linprog

    X = np.asarray(X, dtype=float)
    s = 2.0 * np.asarray(y, dtype=float) - 1.0
    A = -(X * s[:, None])
    c = A.sum(axis=0)  # minimise −Σ s_i x_i'b
    res = linprog(c, A_ub=A, b_ub=np.zeros(len(s)), bounds=[(-1.0, 1.0)] * X.shape[1])
    if res.status != 0:
        return None
    scale = max(1.0, float(np.abs(X).max()))
    if -res.fun > tol * scale * len(s) ** 0.5:
        b = np.asarray(res.x, dtype=float)
        b[np.abs(b) < 1e-9] = 0.0
        return b
    return None


# --------------------------------------------------------------------------- GLM
def _glm_fit(kind: str, y, X, w, start=None):
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    family = sm.families.Gaussian() if kind == "linear" else sm.families.Binomial()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sm.GLM(y, X, family=family, var_weights=w).fit(
            start_params=start, maxiter=100, tol=1e-12
        )
    converged = bool(getattr(res, "converged", True)) and not any(
        issubclass(c.category, ConvergenceWarning) for c in caught
    )
    return np.asarray(res.params, dtype=float), converged


def _irls(kind: str, y, X, w, start, *, max_iter: int = 50):
    """Weighted least squares / logistic IRLS from ``start`` (replicate refits)."""
    beta = np.array(start, dtype=float)
    if kind == "linear":
        sw = np.sqrt(w)
        return np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    for _ in range(max_iter):
        mu = expit(X @ beta)
        v = mu * (1.0 - mu)
        step = np.linalg.solve((X * (w * v)[:, None]).T @ X, X.T @ (w * (y - mu)))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12 * max(1.0, np.max(np.abs(beta))):
            break
    return beta


def _glm_parts(kind: str, y, X, w, beta):
    """Score contributions U (n, p) and information A (p, p) of a weighted GLM."""
    eta = X @ beta
    if kind == "linear":
        mu, v = eta, np.ones_like(eta)
    else:
        mu = expit(eta)
        v = mu * (1.0 - mu)
    U = X * (w * (y - mu))[:, None]
    A = (X * (w * v)[:, None]).T @ X
    return U, A, mu, v


# --------------------------------------------------------------------------- ordinal
def _ordinal_parts(y: np.ndarray, X: np.ndarray, theta: np.ndarray, n_cuts: int):
    """Per-observation log-likelihood and score of the cumulative logit in (β, cuts)."""
    p = X.shape[1]
    beta, cuts = theta[:p], theta[p:]
    k = y.astype(int)
    eta = X @ beta
    upper = np.append(cuts, np.inf)[k] - eta
    lower = np.insert(cuts, 0, -np.inf)[k] - eta
    Fu, Fl = expit(upper), expit(lower)
    fu = np.where(np.isfinite(upper), Fu * (1 - Fu), 0.0)
    fl = np.where(np.isfinite(lower), Fl * (1 - Fl), 0.0)
    prob = np.clip(Fu - Fl, 1e-300, None)
    ll = np.log(prob)
    score = np.empty((len(y), p + n_cuts))
    score[:, :p] = -X * ((fu - fl) / prob)[:, None]
    score[:, p:] = 0.0
    rows = np.arange(len(y))
    up = k < n_cuts
    score[rows[up], p + k[up]] += fu[up] / prob[up]
    lo = k > 0
    score[rows[lo], p + k[lo] - 1] -= fl[lo] / prob[lo]
    return ll, score


def _ordinal_hessian(y, X, w, theta, n_cuts):
    """Hessian of the weighted log-likelihood (central differences of the analytic score)."""
    d = theta.size
    H = np.empty((d, d))
    for j in range(d):
        h = 1e-5 * max(1.0, abs(theta[j]))
        e = np.zeros(d)
        e[j] = h
        gp = w @ _ordinal_parts(y, X, theta + e, n_cuts)[1]
        gm = w @ _ordinal_parts(y, X, theta - e, n_cuts)[1]
        H[:, j] = (gp - gm) / (2 * h)
    return (H + H.T) / 2


def _ordinal_newton(y, X, w, theta, n_cuts, *, max_iter: int = 100):
    """Newton iterations with step halving on the weighted cumulative-logit likelihood."""
    theta = np.array(theta, dtype=float)
    ll = w @ _ordinal_parts(y, X, theta, n_cuts)[0]
    converged = False
    for _ in range(max_iter):
        g = w @ _ordinal_parts(y, X, theta, n_cuts)[1]
        H = _ordinal_hessian(y, X, w, theta, n_cuts)
        try:
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-8:
            cand = theta + t * step
            cuts = cand[X.shape[1] :]
            if np.all(np.diff(cuts) > 0):
                ll_new = w @ _ordinal_parts(y, X, cand, n_cuts)[0]
                if ll_new >= ll - 1e-12 * abs(ll):
                    break
            t /= 2
        theta, ll = theta + t * step, ll_new
        if np.max(np.abs(t * step)) < 1e-11 * max(1.0, np.max(np.abs(theta))):
            converged = True
            break
    return theta, converged


def _ordinal_fit(y, X, w, start=None):
    """Weighted cumulative logit: statsmodels ``OrderedModel`` then Newton polishing."""
    n_cuts = int(y.max())
    if start is None:
        from statsmodels.miscmodels.ordinal_model import OrderedModel

        class _WeightedOrderedModel(OrderedModel):
            def loglike(self, params):
                return float(np.sum(w * self.loglikeobs(params)))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = _WeightedOrderedModel(y.astype(int), X, distr="logit")
            res = model.fit(method="bfgs", maxiter=2000, disp=False)
        params = np.asarray(res.params, dtype=float)
        cuts = model.transform_threshold_params(params)[1:-1]
        start = np.concatenate([params[: X.shape[1]], cuts])
    return _ordinal_newton(y, X, w, start, n_cuts)


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
def _variance(design: SurveyDesign, data: _Data, kind, y, X, w, beta, U, Ainv, n_cuts=0):
    """Design covariance of the coefficients: sandwich (Taylor) or replicate refits."""
    if design.is_replicate:
        reps_w = design.replicate_weights[data.rows]
        scale = w.mean()
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


def _influence(design: SurveyDesign, data: _Data, U, A, Ainv, se, kind, X, w, v):
    """Territories whose removal moves a coefficient by more than INFLUENCE_SE × its SE.

    The shift is the one-step deletion ``Δβ_g = −(A − A_g)⁻¹ U_g`` (exact for a linear model);
    territories moving a coefficient by more than half a standard error are then judged
    against the standard error computed without them (DFBETAS), so that an outlying
    territory cannot hide behind the variance it inflates itself.
    """
    if data.territory is None:
        return []
    codes, inv = np.unique(data.territory, return_inverse=True)
    if codes.size < 3:
        return []
    Ug = np.zeros((codes.size, U.shape[1]))
    np.add.at(Ug, inv, U)
    z = np.zeros((len(design.data), U.shape[1]))
    z[data.rows] = U @ Ainv
    out = []
    for g, code in enumerate(codes):
        sel = inv == g
        if kind in ("linear", "logistic"):
            Ag = (X[sel] * (w[sel] * v[sel])[:, None]).T @ X[sel]
            try:
                delta = -np.linalg.solve(A - Ag, Ug[g])
            except np.linalg.LinAlgError:
                delta = -Ainv @ Ug[g]
        else:
            delta = -Ainv @ Ug[g]
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.abs(delta) / se
        shift = np.where(np.isfinite(shift), shift, 0.0)
        if shift.max() <= INFLUENCE_SE / 2:
            continue
        if not design.is_replicate:
            z_g = z.copy()
            z_g[data.rows[sel]] = 0.0
            se_g = np.sqrt(np.clip(np.diag(design.variance_of_totals(z_g)), 0.0, None))
            with np.errstate(divide="ignore", invalid="ignore"):
                shift = np.abs(delta) / se_g
            shift = np.where(np.isfinite(shift), shift, 0.0)
        if shift.max() > INFLUENCE_SE:
            out.append((str(code), shift))
    return out


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
        ``mixed``) and grouping column (mixed).
    frame : DataFrame
        Respondents, row for row the rows of ``design.data`` (same order), with every column
        of the formula (responses, ``score_*``, ``stage``, context indicators…).
    design : SurveyDesign
        The wave's design (Taylor or replicate); a subset design restricts the model to its
        domain. Rows with a missing value in the formula are left out of the fit but keep
        their PSU in the variance (R ``svyglm``).
    codebook : Codebook, optional
        French labels of the terms.
    level : float
        Confidence level of the intervals.
    ci : {"t", "normal"}
        ``t`` with the residual degrees of freedom (design df + 1 − coefficients, as R
        ``summary.svyglm`` and ``confint.svyglm``) or the normal quantile.

    Returns
    -------
    FittedModel
        Tidy table, covariance and diagnostics.

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
    keep = _independent_columns(data.X, w)
    dropped = [t for j, t in enumerate(data.terms) if j not in set(keep)]
    X = data.X[:, keep]
    terms = [data.terms[j] for j in keep]
    y = data.y
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
    n_psu = int(np.unique(_psu_codes(design, data.rows)).size)
    if spec.kind == "mixed":
        return _fit_mixed(
            spec, data, X, terms, dropped, codebook, stage_names, level, n_psu, design_df
        )

    n_cuts = 0
    separation = None
    if spec.kind in ("linear", "logistic"):
        beta, converged = _glm_fit(spec.kind, y, X, w)
        U, A, _mu, v = _glm_parts(spec.kind, y, X, w, beta)
        if spec.kind == "logistic":
            separation = detect_separation(X, y)
        names = list(terms)
    else:
        n_cuts = int(y.max())
        beta, converged = _ordinal_fit(y, X, w)
        _, score = _ordinal_parts(y, X, beta, n_cuts)
        U = score * w[:, None]
        A = -_ordinal_hessian(y, X, w, beta, n_cuts)
        v = np.ones_like(y)
        lv = data.levels
        names = terms + [f"cut_{_num(lv[k])}/{_num(lv[k + 1])}" for k in range(n_cuts)]
    if np.linalg.cond(A) > 1e12:
        flag("*", "singular")
        messages.append("matrice d'information singulière : paramètres non identifiables")
        Ainv = np.linalg.pinv(A)
    else:
        Ainv = np.linalg.inv(A)
    V = _variance(design, data, spec.kind, y, X, w, beta, U, Ainv, n_cuts)
    se = np.sqrt(np.clip(np.diag(V), 0.0, None))
    n_params = beta.size
    df_resid = design_df + 1 - n_params if not design.is_replicate else design.df + 1 - n_params
    if design_df < n_params:
        flag("*", "few_psu")
        messages.append(
            f"{n_psu} UPE ({design_df} degrés de liberté du plan) pour {n_params} paramètres"
        )
    if not converged:
        flag("*", "not_converged")
        messages.append("l'estimation n'a pas convergé")
    if separation is not None:
        involved = [terms[j] for j in np.flatnonzero(separation)]
        for t in involved:
            flag(t, "separation")
        flag("*", "separation")
        messages.append("séparation (quasi) complète : " + ", ".join(involved))
    elif spec.kind == "ordinal" and (np.max(np.abs(beta)) > 15 or not converged):
        flag("*", "separation")
        messages.append("coefficients extrêmes : séparation probable")

    if df_resid >= 1:
        crit = (
            stats.t.ppf(0.5 + level / 2, df_resid) if ci == "t" else stats.norm.ppf(0.5 + level / 2)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            tstat = beta / se
        p_value = 2 * stats.t.sf(np.abs(tstat), df_resid)
        ci_low, ci_high = beta - crit * se, beta + crit * se
    else:
        flag("*", "no_df")
        messages.append("aucun degré de liberté résiduel : pas d'erreur-type ni d'intervalle")
        se = np.full_like(beta, np.nan)
        p_value = ci_low = ci_high = np.full_like(beta, np.nan)
        V = np.full_like(V, np.nan)

    influential = []
    if df_resid >= 1:
        for code, shift in _influence(design, data, U, A, Ainv, se, spec.kind, X, w, v):
            moved = [names[j] for j in np.flatnonzero(shift > INFLUENCE_SE)]
            influential.append(
                {"territory": code, "terms": moved, "max_shift_se": round(float(shift.max()), 3)}
            )
    influence_by_term: dict[str, list[str]] = {}
    for item in sorted(influential, key=lambda d: (-d["max_shift_se"], d["territory"])):
        for t in item["terms"]:
            influence_by_term.setdefault(t, []).append(item["territory"])

    r2, r2_kind, loglik = _fit_stats(spec.kind, y, X, w, beta, n_cuts)
    labels = [term_label(t, codebook, stage_names) for t in terms]
    if spec.kind == "ordinal":
        lv = data.levels
        labels += [_cut_label(lv[k], lv[k + 1], data.outcome, codebook) for k in range(n_cuts)]
    odds = spec.kind in ("logistic", "ordinal")
    rows = []
    for j, name in enumerate(names):
        codes = flags.get("*", []) + flags.get(name, [])
        text = [FLAG_TEXT[c] for c in dict.fromkeys(codes)]
        if name in influence_by_term:
            text.append("territoire influent : " + ", ".join(influence_by_term[name][:3]))
        is_slope = odds and name not in ("Intercept",) and not name.startswith("cut_")
        rows.append(
            {
                "term": name,
                "label": labels[j],
                "estimate": beta[j],
                "se": se[j],
                "ci_low": ci_low[j],
                "ci_high": ci_high[j],
                "p_value": p_value[j],
                "odds_ratio": _exp(beta[j]) if is_slope else np.nan,
                "flags": "; ".join(text),
            }
        )
    for t in dropped:
        rows.append(
            {
                "term": t,
                "label": term_label(t, codebook, stage_names),
                "estimate": np.nan,
                "se": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "p_value": np.nan,
                "odds_ratio": np.nan,
                "flags": FLAG_TEXT["collinear"],
            }
        )
    table = _finish_table(
        rows, spec, data, n_psu, df_resid, n_params, design_df, r2, r2_kind, loglik
    )
    vcov = pd.DataFrame(V, index=names, columns=names)
    diagnostics = {
        "kind": spec.kind,
        "formula": spec.formula,
        "outcome": data.outcome,
        "n": int(data.rows.size),
        "n_psu": n_psu,
        "design_df": design_df,
        "df_resid": int(df_resid),
        "n_params": int(n_params),
        "converged": bool(converged),
        "flags": sorted({c for codes in flags.values() for c in codes}),
        "messages": messages,
        "dropped_terms": dropped,
        "separation": separation is not None,
        "influential_territories": sorted(influential, key=lambda d: d["territory"]),
        "r2": r2,
        "r2_kind": r2_kind,
        "loglik": loglik,
        "variance": "replicate refits"
        if design.is_replicate
        else "Taylor linearisation"
        + (" without fpc (superpopulation)" if spec.superpopulation else ""),
        "ci": ci,
    }
    return FittedModel(spec.name, spec.kind, spec.formula, table, vcov, diagnostics)


def _exp(value: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.exp(value))


def _psu_codes(design: SurveyDesign, rows: np.ndarray) -> np.ndarray:
    psu = design._spec.get("psu") if hasattr(design, "_spec") else None
    if design.is_replicate or psu is None:
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


def _finish_table(rows, spec, data, n_psu, df, n_params, design_df, r2, r2_kind, loglik):
    table = pd.DataFrame(rows)
    table.insert(0, "kind", spec.kind)
    table.insert(0, "model", spec.name)
    table["n"] = np.int64(data.rows.size)
    table["n_psu"] = np.int64(n_psu)
    table["df"] = float(df) if df is not None else np.nan
    table["outcome"] = data.outcome
    table["n_params"] = np.int64(n_params)
    table["design_df"] = np.int64(design_df)
    table["r2"] = float(r2) if r2 is not None else np.nan
    table["r2_kind"] = r2_kind
    table["loglik"] = float(loglik) if loglik is not None else np.nan
    return table[list(MODEL_COLUMNS)]


def _fit_mixed(spec, data, X, terms, dropped, codebook, stage_names, level, n_psu, design_df):
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = sm.MixedLM(data.y, X, groups=data.groups)
        res = model.fit(reml=True, method=["bfgs", "lbfgs", "powell"])
    converged = bool(res.converged) and not any(
        issubclass(c.category, ConvergenceWarning) for c in caught
    )
    p = len(terms)
    beta = np.asarray(res.fe_params, dtype=float)
    V = np.asarray(res.cov_params(), dtype=float)[:p, :p]
    se = np.sqrt(np.clip(np.diag(V), 0.0, None))
    crit = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        pval = 2 * stats.norm.sf(np.abs(beta / se))
    group_var = float(np.asarray(res.cov_re)[0, 0])
    resid_var = float(res.scale)
    base = [FLAG_TEXT["unweighted"]]
    messages = ["modèle mixte ajusté sans pondération (statsmodels MixedLM)"]
    codes = ["unweighted"]
    if not converged:
        base.append(FLAG_TEXT["not_converged"])
        codes.append("not_converged")
        messages.append("l'estimation n'a pas convergé")
    if group_var <= 1e-10 * max(resid_var, 1e-300):
        base.append(FLAG_TEXT["boundary"])
        codes.append("boundary")
        messages.append("variance inter-groupes estimée à zéro")
    rows = []
    for j, t in enumerate(terms):
        rows.append(
            {
                "term": t,
                "label": term_label(t, codebook, stage_names),
                "estimate": beta[j],
                "se": se[j],
                "ci_low": beta[j] - crit * se[j],
                "ci_high": beta[j] + crit * se[j],
                "p_value": pval[j],
                "odds_ratio": np.nan,
                "flags": "; ".join(base),
            }
        )
    for term, label, value in (
        ("var_groupe", "Variance entre groupes (effet aléatoire)", group_var),
        ("var_residuelle", "Variance résiduelle", resid_var),
    ):
        rows.append(
            {
                "term": term,
                "label": label,
                "estimate": value,
                "se": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "p_value": np.nan,
                "odds_ratio": np.nan,
                "flags": "; ".join([*base, FLAG_TEXT["variance_component"]]),
            }
        )
    for t in dropped:
        rows.append(
            {
                "term": t,
                "label": term_label(t, codebook, stage_names),
                **dict.fromkeys(("estimate", "se", "ci_low", "ci_high", "p_value"), np.nan),
                "odds_ratio": np.nan,
                "flags": FLAG_TEXT["collinear"],
            }
        )
    fixed = X @ beta
    var_fixed = float(np.var(fixed))
    r2 = var_fixed / (var_fixed + group_var + resid_var)
    table = _finish_table(
        rows, spec, data, n_psu, np.nan, p + 2, design_df, r2, "R² marginal", float(res.llf)
    )
    vcov = pd.DataFrame(V, index=terms, columns=terms)
    diagnostics = {
        "kind": "mixed",
        "formula": spec.formula,
        "outcome": data.outcome,
        "groups": spec.groups,
        "n": int(data.rows.size),
        "n_groups": int(np.unique(data.groups).size),
        "n_psu": n_psu,
        "design_df": design_df,
        "df_resid": None,
        "n_params": p + 2,
        "converged": converged,
        "flags": sorted(set(codes)),
        "messages": messages + [f"terme colinéaire retiré : {t}" for t in dropped],
        "dropped_terms": dropped,
        "separation": False,
        "influential_territories": [],
        "group_variance": group_var,
        "residual_variance": resid_var,
        "icc": group_var / (group_var + resid_var),
        "r2": r2,
        "r2_kind": "R² marginal",
        "loglik": float(res.llf),
        "variance": "model-based (unweighted REML)",
        "ci": "normal",
    }
    return FittedModel(spec.name, "mixed", spec.formula, table, vcov, diagnostics)


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
