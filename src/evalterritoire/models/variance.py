"""The models' design variance: sandwich, mixed-model clusters, working model and influence.

Private part of :mod:`evalterritoire.models.fit`: the Taylor (or replicate-refit) covariance of the
coefficients (``_covariance``: separated coefficients left out, inverse information, sandwich,
``small_sample`` correction), the design whose clusters contain whole groups for the mixed
model, the score loadings of each family's working model for the ``small_sample`` correction
(:mod:`evalterritoire.design.sandwich`) and the influential-territory check (``_influence_check``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from evalterritoire.design.sandwich import WorkingModel, small_sample_correction
from evalterritoire.errors import DesignError, ModelError
from evalterritoire.models.data import _Data, _Estimation, _Model, _Notes
from evalterritoire.models.families import (
    _irls,
    _mean_variance,
    _ordinal_newton,
    _ordinal_parts,
)

if TYPE_CHECKING:
    from evalterritoire.config import ModelSpec
    from evalterritoire.design.survey import SurveyDesign

#: A territory whose removal moves a coefficient by more than this many SEs is influential.
INFLUENCE_SE = 1.0


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

    from evalterritoire.design.survey import SurveyDesign as Design

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

    Linear, logistic and quasi-Poisson: one error per respondent, ``s_i = w_i √v_i x_i ε_i``
    (``v`` the variance function: 1, ``μ(1 − μ)``, ``μ``) and ``M_i = w_i v_i x_i x_i'``. Ordinal: one
    error per respondent and category, loadings ``w_i √p_ik g_ik`` with ``g_ik`` the score had
    the answer been ``k`` (the expected information is ``Σ_k p_ik g_ik g_ik'``). Mixed: the
    errors ``ε_g = V_g^{-1/2} r_g`` of each group, loadings ``X_g'V_g^{-1/2}`` whose column ``j`` is
    ``(x_j + (ρ_g − 1) x̄_g)/σ`` with ``ρ_g = (1 + n_g τ²/σ²)^{-1/2}``, and ``M_i`` from the GLS
    derivative ``A = L'R``.
    """
    rows = data.rows
    beta = est.beta
    if kind in ("linear", "logistic", "quasipoisson"):
        v = _mean_variance(kind, X @ beta)[1]
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


# --------------------------------------------------------------------------- covariance
@dataclass
class _Covariance:
    """Design-based covariance of the coefficients and its degrees of freedom."""

    V: np.ndarray
    Ainv: np.ndarray  # inverse information (zero rows and columns for separated coefficients)
    gone: np.ndarray  # coefficients that diverge under separation
    separated: list[str]  # their names
    df_resid: int  # design df + 1 − coefficients
    df_coef: np.ndarray  # df of each coefficient's test (small-sample: Bell–McCaffrey)
    small: dict[str, Any]  # small-sample diagnostics


def _covariance(
    spec: ModelSpec, design: SurveyDesign, data: _Data, model: _Model, notes: _Notes
) -> _Covariance:
    """Sandwich ``A⁻¹ V_design(Σ U) A⁻¹`` over the coefficients that do not diverge."""
    est = model.est
    names = est.names
    gone = np.zeros(est.beta.size, dtype=bool)
    separated: list[str] = []
    if est.separation is not None:
        gone = est.separation != 0
        separated = [names[j] for j in np.flatnonzero(gone)]
        notes.flag(
            "separation",
            "séparation (quasi) complète : le maximum de vraisemblance n'existe pas ; "
            "coefficients infinis non publiés : " + ", ".join(separated),
        )
    # The diverging coefficients carry no information (their observations are fitted with
    # probability 0 or 1): the sandwich of the others uses the rest of the information matrix.
    free = np.flatnonzero(~gone)
    Ainv = _inverse_information(est.A, free, notes)
    n_cuts = est.beta.size - len(model.terms)
    V = _variance(
        model.var_design, data, spec.kind, data.y, model.X, model.w, est.beta, est.U, Ainv, n_cuts
    )
    df_resid = model.design_df + 1 - est.beta.size
    df_coef = np.full(est.beta.size, float(df_resid))
    small: dict[str, Any] = {}
    if spec.small_sample:
        V, df_coef, small = _small_sample(spec, design, data, model, Ainv, free, V, df_resid)
    return _Covariance(V, Ainv, gone, separated, df_resid, df_coef, small)


def _inverse_information(A: np.ndarray, free: np.ndarray, notes: _Notes) -> np.ndarray:
    """``A⁻¹`` on the free coefficients (pseudo-inverse, flagged, when singular), 0 elsewhere."""
    A_free = A[np.ix_(free, free)]
    Ainv = np.zeros_like(A)
    if free.size and np.linalg.cond(A_free) > 1e12:
        notes.flag("singular", "matrice d'information singulière : paramètres non identifiables")
        Ainv[np.ix_(free, free)] = np.linalg.pinv(A_free)
    elif free.size:
        Ainv[np.ix_(free, free)] = np.linalg.inv(A_free)
    return Ainv


def _small_sample(
    spec: ModelSpec,
    design: SurveyDesign,
    data: _Data,
    model: _Model,
    Ainv: np.ndarray,
    free: np.ndarray,
    V: np.ndarray,
    df_resid: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Kott's bias correction of ``V`` and Bell–McCaffrey df (``small_sample = true``)."""
    mixed = spec.kind == "mixed"
    if design.is_replicate and not mixed:
        raise ModelError(
            f"model '{spec.name}': small_sample needs a Taylor design (replicate-weight "
            "variances come from refits, which already account for leverage)"
        )
    try:
        op = model.var_design.without_fpc().linear_operator()
    except DesignError as exc:
        raise ModelError(f"model '{spec.name}': small_sample: {exc}") from exc
    w = np.ones_like(model.w) if mixed else model.w
    ss = small_sample_correction(
        op, Ainv, _working_model(spec.kind, data, model.X, w, model.est), free
    )
    root = np.sqrt(ss.kappa)
    V = V * root[:, None] * root[None, :]
    df_coef = np.where(np.isfinite(ss.df), np.minimum(ss.df, df_resid), df_resid)
    names = model.est.names
    small = {
        "small_sample": "Kott (1994) working-model bias correction, Bell-McCaffrey df",
        "small_sample_se_factor": dict(zip(names, map(float, root), strict=True)),
        "small_sample_df": dict(zip(names, map(float, df_coef), strict=True)),
    }
    return V, df_coef, small


@dataclass
class _InfluenceCheck:
    """Whether the territories' influence was checked, and the influential ones."""

    status: str
    influential: list[dict[str, Any]] = field(default_factory=list)

    def by_term(self) -> dict[str, list[str]]:
        """Term → influential territories, the most influential first."""
        out: dict[str, list[str]] = {}
        for item in sorted(self.influential, key=lambda d: (-d["max_shift_se"], d["territory"])):
            for t in item["terms"]:
                out.setdefault(t, []).append(item["territory"])
        return out

    def diagnostics(self) -> dict[str, Any]:
        return {
            "influence_check": self.status,
            "influential_territories": sorted(self.influential, key=lambda d: d["territory"]),
        }


def _influence_check(
    design: SurveyDesign,
    data: _Data,
    model: _Model,
    cov: _Covariance,
    se: np.ndarray,
    notes: _Notes,
    *,
    mixed: bool,
) -> _InfluenceCheck:
    """Territories whose removal moves a coefficient by more than ``INFLUENCE_SE`` SEs."""
    if design.is_replicate and not mixed:
        notes.flag(
            "influence_skipped", "influence des territoires non évaluée : plan à poids répliqués"
        )
        return _InfluenceCheck("skipped: replicate-weight design (no Taylor variance to judge by)")
    if data.territory is None:
        return _InfluenceCheck("skipped: no territory column (codebook role territory)")
    if np.unique(data.territory).size < 3:
        return _InfluenceCheck("skipped: fewer than 3 territories")
    if cov.df_resid < 1:
        return _InfluenceCheck("skipped: no residual degrees of freedom")
    if cov.separated:
        return _InfluenceCheck("skipped: separation")
    check = _InfluenceCheck("done")
    names = model.est.names
    for code, shift in _influence(model.var_design, data, model.est, cov.Ainv, se):
        moved = [names[j] for j in np.flatnonzero(shift > INFLUENCE_SE)]
        check.influential.append(
            {"territory": code, "terms": moved, "max_shift_se": round(float(shift.max()), 3)}
        )
    return check
