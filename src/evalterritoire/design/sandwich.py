"""Small-sample correction of the model sandwich: working-model bias and Satterthwaite df.

The Taylor-linearisation (sandwich) variance of a regression coefficient is consistent as the
number of PSUs grows, but with a few hundred PSUs of very unequal weights, calibrated on a
score of margins, it is biased downwards and, more importantly, it is a noisy estimate whose
effective degrees of freedom are far below the design's ``n_PSU − n_strata``:

* the fitted residuals are smaller than the errors (leverage: a PSU with a large weight pulls
  the fit towards itself), the calibration residualisation removes a chance fit of the scores
  on the margins, and the centring within strata removes the strata means;
* a variance that rests on a handful of heavy PSUs, or a coefficient identified by the few
  territories of one stage, has the precision of a handful of observations, so the ``t``
  quantile with the design df is too small.

Following Kott (1994, *Survey Methodology* 20(2), "A hypothesis test of linear regression
coefficients with survey data") and Bell & McCaffrey (2002, *Survey Methodology* 28(2),
"Bias reduction in standard errors for linear regression with multi-stage samples"), both
are computed under a *working model* in which the standardised errors are independent with
unit variance (respondents for the linear, logistic and ordinal models; the random-intercept
covariance ``σ²I + τ²11'`` of each group for the mixed model):

* the variance estimator ``v̂_k`` of coefficient ``k`` is a quadratic form ``ε'K_k'K_kε`` in the
  errors, where ``K_k`` chains the linearised residual map (``ŝ_i = s_i − M_i A⁻¹ Σ_j s_j``),
  the calibration residualisation, the PSU sums and the stratum centring and scaling of the
  design (:meth:`evalterritoire.design.survey.SurveyDesign.linear_operator`);
* ``E[v̂_k] = tr(B_k)`` with ``B_k = K_k K_k'`` (PSUs × PSUs) and the working-model variance of
  the coefficient is ``v_k = a_k' Var(S) a_k`` (``a_k`` the k-th column of ``A⁻¹``, ``S`` the
  total score); the variance is rescaled by ``κ_k = v_k / E[v̂_k]`` (Kott's model-unbiased
  linearisation variance; the covariance matrix as ``diag(√κ) V diag(√κ)``);
* the effective degrees of freedom are Satterthwaite's ``ν_k = tr(B_k)² / tr(B_k²)``
  (Bell & McCaffrey's working-model df), used for the ``t`` interval and p-value.

Under the working model both are exact for the linear model (to the linearisation for the
others) whatever the weights, strata, calibration and PSU sizes; when the errors are
correlated within PSUs the rescaled variance stays a design-consistent sandwich (``κ → 1`` as
PSUs accumulate) and ``ν`` a conservative approximation.

``B_k`` itself is never formed. With ``D = S C`` the stage's scaling and centring of unit
totals, ``B_k = A0 + Y H Y'`` where ``A0 = DΛD'`` (``Λ`` the working-model variance of each
PSU's own errors) and ``Y = D [U0, T]`` has ``2r`` columns (``r = d + q``, ``q`` calibration
columns). ``tr(B_k)`` and ``tr(B_k²)`` then come from ``2r × 2r`` Gram matrices (``Y'Y``,
``(D'Y)'Λ(D'Y)``) and, for ``‖A0‖²``, from per-stratum sums of ``M = D'D``, whose entries have a
closed form (:class:`_StageGram`). The coefficient-free row-level pieces (unit totals of the
calibration columns, ``F_t'E_s``, ``G'G``) are built once (:class:`_RowPieces`); per coefficient
the work is ``O(n·r + m·d)`` plus ``(#PSU) × 2r`` products: no ``n × n``, no PSUs × PSUs and
no per-coefficient ``n × r`` calibration matrix. This is an exact reformulation of the former
PSUs × PSUs algebra (checked to 1e-10 in ``tests/test_sandwich.py``); floats may differ from it
in their last bits only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from evalterritoire.design.common import LinearOperator, _indicator

__all__ = ["SmallSample", "WorkingModel", "small_sample_correction"]


@dataclass(frozen=True)
class WorkingModel:
    """Second moments of the estimating equations under the working model.

    The score total is ``S = G'ε`` with ``ε`` independent standardised errors (one per row of
    ``G``). Error ``c`` feeds the score of design row ``col_row[c]`` (for the mixed model the
    errors of a group feed its rows together; they are attributed to one of them, which is
    exact when groups are nested in the design's units and the design is not calibrated). The
    fitted score of row ``i`` is ``ŝ_i = s_i − M_i A⁻¹ S`` (linearisation) with
    ``M_i = Σ_{e: ent_row[e] = i} L_e R_e'``.
    """

    col_row: np.ndarray  # (m,) design row of each error
    G: np.ndarray  # (m, d) score loadings of each error
    ent_row: np.ndarray  # (e,) design row of each term of M
    L: np.ndarray  # (e, d)
    R: np.ndarray  # (e, d)


@dataclass(frozen=True)
class SmallSample:
    """Per-coefficient variance factor ``kappa`` and effective degrees of freedom ``df``."""

    kappa: np.ndarray  # (d,)
    df: np.ndarray  # (d,)
    expected: np.ndarray  # (d,) E[v̂_k] under the working model
    working: np.ndarray  # (d,) working-model variance v_k


def small_sample_correction(
    op: LinearOperator, A_inv: np.ndarray, wm: WorkingModel, coefficients: np.ndarray | None = None
) -> SmallSample:
    """Working-model expectation and Satterthwaite df of the sandwich variance of each coefficient.

    Parameters
    ----------
    op : LinearOperator
        The (single-stage) design's variance as a linear map.
    A_inv : ndarray, shape (d, d)
        Inverse of the (symmetric) derivative of the estimating equations.
    wm : WorkingModel
        Score loadings and fitted-score derivatives.
    coefficients : ndarray of int, optional
        Coefficients to compute (default all); the others get ``kappa = 1`` and ``df = nan``.

    Returns
    -------
    SmallSample
        ``kappa = v_k / E[v̂_k]`` and ``df = tr(B_k)² / tr(B_k²)``.
    """
    d = A_inv.shape[0]
    todo = np.arange(d) if coefficients is None else np.asarray(coefficients, dtype=int)
    kappa, df = np.ones(d), np.full(d, np.nan)
    expected, working = np.full(d, np.nan), np.full(d, np.nan)
    inside = np.ones(wm.col_row.size) if op.domain is None else op.domain[wm.col_row]
    rows = _RowPieces.of(op, wm)
    stage = _StageGram.of(op)
    RA = wm.R @ A_inv  # (e, d)
    GA = wm.G @ A_inv  # (m, d): error c's loading on each coefficient
    LA = wm.L @ A_inv  # (e, d): column k is L a_k
    for k in todo:
        full = GA[:, k]
        working[k] = float(full @ full)
        dv = full * inside  # diagonal part: error c → its row's contribution to coefficient k
        lam, U0, W = rows.score_side(dv, wm.G)
        T = rows.fitted_side(LA[:, k][:, None] * RA)
        tr, tr2 = stage.traces(lam, U0, T, W)
        expected[k] = tr
        if tr > 0 and working[k] > 0:
            kappa[k] = working[k] / tr
            df[k] = tr * tr / tr2
    return SmallSample(kappa, df, expected, working)


@dataclass(frozen=True)
class _RowPieces:
    """Row-level pieces of ``B_k`` that do not depend on the coefficient, built once.

    With the calibration steps ``(E_s, F_s)`` applied in order, the residualised fitted-score
    map is ``L ← [E_s, L − E_s (F_s' L)]`` and the score loadings ``R ← [F_s[row] dv, R]``
    (:func:`small_sample_correction`); only their unit totals ``T``, ``U0 = Σ_c dv_c R_c`` by
    unit and the Gram matrix ``W = R'R`` enter ``B_k``. They are taken here from unit totals
    ``Σ_unit E_s``, the products ``F_t' E_s`` and ``F_t' L`` and row-level sums of the errors
    (``ω_i = Σ_{c→i} dv_c²``, ``Σ_{c→i} dv_c G_c``): ``(#PSU) × r`` and ``r × r`` matrices, with
    no ``n × r`` matrix formed per coefficient.
    """

    op: LinearOperator
    unit_ind: sparse.csr_matrix  # (n_units, n): row → unit
    error_ind: sparse.csr_matrix  # (n, m): error → design row
    entry_ind: sparse.csr_matrix  # (n, e): entry of M → design row (× domain)
    F: np.ndarray  # (n, Q): F_{S−1}, …, F_0 side by side (the order of the columns of R)
    UE: np.ndarray  # (n_units, Q): unit totals of E_{S−1}, …, E_0
    FE: tuple[tuple[np.ndarray, ...], ...]  # FE[t][s] = F_t' E_s (s < t)
    GG: np.ndarray  # (d, d) G'G
    col_unit: np.ndarray  # (m,) unit of each error

    @classmethod
    def of(cls, op: LinearOperator, wm: WorkingModel) -> _RowPieces:
        """The pieces for ``op`` and ``wm``."""
        n = op.unit.size
        steps = op.calibration
        unit_ind = _indicator(op.unit, op.n_units)
        dom = None if op.domain is None else op.domain[wm.ent_row]
        empty = np.zeros((n, 0))
        F = np.hstack([F for _, F in reversed(steps)]) if steps else empty
        UE = np.asarray(unit_ind @ np.hstack([E for E, _ in reversed(steps)])) if steps else empty
        FE = tuple(tuple(steps[t][1].T @ steps[s][0] for s in range(t)) for t in range(len(steps)))
        return cls(
            op,
            unit_ind,
            _indicator(wm.col_row, n),
            _indicator(wm.ent_row, n, dom),
            F,
            UE if steps else np.zeros((op.n_units, 0)),
            FE,
            wm.G.T @ wm.G,
            op.unit[wm.col_row],
        )

    def score_side(
        self, dv: np.ndarray, G: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``λ`` (Σ dv² by unit), ``U0`` (Σ dv R by unit) and ``W = R'R`` for ``R = [F dv, G]``."""
        omega = self.error_ind @ (dv * dv)  # (n,) Σ_{c→i} dv_c²
        Gd = np.asarray(self.error_ind @ (dv[:, None] * G))  # (n, d) Σ_{c→i} dv_c G_c
        lam = np.bincount(self.col_unit, weights=dv * dv, minlength=self.op.n_units)
        Fw = self.F * omega[:, None]
        U0 = np.asarray(self.unit_ind @ np.hstack([Fw, Gd]))
        FG = self.F.T @ Gd
        W = np.block([[self.F.T @ Fw, FG], [FG.T, self.GG]])
        return lam, U0, W

    def fitted_side(self, entries: np.ndarray) -> np.ndarray:
        """Unit totals ``T`` of the residualised fitted-score map with entries ``L_e a_k R_e'``."""
        L0 = np.asarray(self.entry_ind @ entries)  # (n, d), zero outside the domain
        steps = self.op.calibration
        T = np.asarray(self.unit_ind @ L0)
        P = [F.T @ L0 for _, F in steps]  # F_t' L for every step still to apply
        q_done = 0
        for s, (E, _) in enumerate(steps):
            K = P[s]  # z ← z − E_s (F_s' z)
            q = E.shape[1]
            first = self.UE.shape[1] - q_done - q  # UE holds the steps in reverse order
            T = np.hstack([self.UE[:, first : first + q], T - self.UE[:, first : first + q] @ K])
            for t in range(s + 1, len(steps)):
                P[t] = np.hstack([self.FE[t][s], P[t] - self.FE[t][s] @ K])
            q_done += q
        return T


@dataclass(frozen=True)
class _StageGram:
    """``M = D'D`` of the stage's deviations ``D = S C`` (scale ``S``, centring ``C``), entrywise.

    Within a group ``h`` with centring factor ``c_h`` (``1/n_h``, 0 when not centred) and unit
    scales ``v = s²``, ``M_ab = δ_ab v_a + α_a + α_b`` with ``α_a = c_h² σ_h / 2 − c_h v_a`` and
    ``σ_h = Σ_h v``; units of different groups give 0.
    """

    op: LinearOperator
    scale: np.ndarray  # (n_units,) s = √v
    alpha: np.ndarray  # (n_units,)
    diag: np.ndarray  # (n_units,) M_aa = v_a + 2 α_a

    @classmethod
    def of(cls, op: LinearOperator) -> _StageGram:
        """The pieces of ``M`` for ``op``'s stage."""
        st = op.stage
        v = st.unit_scale()
        c = np.where(st.centre, 1.0 / st.n_in_group, 0.0)
        sigma = np.bincount(st.group, weights=v, minlength=st.n_groups)
        alpha = (c * c * sigma / 2.0)[st.group] - c[st.group] * v
        return cls(op, np.sqrt(v), alpha, v + 2.0 * alpha)

    def frobenius(self, lam: np.ndarray) -> float:
        """``tr((DΛD')²) = Σ_ab λ_a λ_b M_ab²`` group by group (``Λ = diag(λ)``)."""
        st = self.op.stage
        v, a = self.scale * self.scale, self.alpha
        la = lam * a
        tot = np.bincount(st.group, weights=lam, minlength=st.n_groups)
        la2 = np.bincount(st.group, weights=la * a, minlength=st.n_groups)
        s_la = np.bincount(st.group, weights=la, minlength=st.n_groups)
        return float(np.sum(lam * lam * v * (v + 4.0 * a)) + 2.0 * (tot @ la2 + s_la @ s_la))

    def traces(
        self, lam: np.ndarray, U0: np.ndarray, T: np.ndarray, W: np.ndarray
    ) -> tuple[float, float]:
        """``tr(B)`` and ``tr(B²)`` of ``B = D (Λ − U0 T' − T U0' + T W T') D'`` (PSUs × PSUs).

        With ``A0 = DΛD'``, ``Y = D [U0, T]`` and ``H = [[0, −I], [−I, W]]``, ``B = A0 + Y H Y'``:
        ``tr(B) = Σ λ_a M_aa + tr(H Y'Y)`` and ``tr(B²) = ‖A0‖² + 2 tr(H (D'Y)'Λ(D'Y)) +
        tr((H Y'Y)²)``: Gram matrices of ``2r`` columns, never a PSUs × PSUs matrix.
        """
        r = W.shape[0]
        Y = self.op.deviations(np.hstack([U0, T]))  # (n_units, 2r)
        Yt = self.op.stage.centred(Y * self.scale[:, None])  # D'Y (C is symmetric)
        eye = np.eye(r)
        H = np.block([[np.zeros((r, r)), -eye], [-eye, W]])
        HG = H @ (Y.T @ Y)
        tr = float(lam @ self.diag + np.trace(HG))
        cross = float(np.sum(H * (Yt.T @ (lam[:, None] * Yt))))
        tr2 = self.frobenius(lam) + 2.0 * cross + float(np.sum(HG * HG.T))
        return tr, tr2
