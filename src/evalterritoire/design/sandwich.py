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
PSUs accumulate) and ``ν`` a conservative approximation. ``B_k`` is built from low-rank pieces
(``n`` rows × ``d + q`` columns, with ``q`` calibration columns) and a PSUs × PSUs matrix; no
``n × n`` matrix is formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalterritoire.design.common import LinearOperator, _rowsum

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
    n = op.unit.size
    todo = np.arange(d) if coefficients is None else np.asarray(coefficients, dtype=int)
    kappa, df = np.ones(d), np.full(d, np.nan)
    expected, working = np.full(d, np.nan), np.full(d, np.nan)
    col_unit = op.unit[wm.col_row]
    inside = np.ones(wm.col_row.size) if op.domain is None else op.domain[wm.col_row]
    RA = wm.R @ A_inv  # (e, d)
    GA = wm.G @ A_inv  # (m, d): error c's loading on each coefficient
    for k in todo:
        full = GA[:, k]
        working[k] = float(full @ full)
        dv = full * inside  # diagonal part: error c → its row's contribution to coefficient k
        L = _rowsum(wm.ent_row, n, (wm.L @ A_inv[:, k])[:, None] * RA)  # (n, d)
        if op.domain is not None:
            L = L * op.domain[:, None]
        Rm = wm.G  # (m, d): S = G'ε
        for E, F in op.calibration:
            FD = F[wm.col_row] * dv[:, None]
            L = np.hstack([E, L - E @ (F.T @ L)])
            Rm = np.hstack([FD, Rm])
        lam = np.bincount(col_unit, weights=dv * dv, minlength=op.n_units)
        B = op.deviations(op.deviations(np.diag(lam)).T)
        P0R = op.deviations(_rowsum(col_unit, op.n_units, dv[:, None] * Rm))
        Q = op.deviations(op.unit_totals(L))
        cross = P0R @ Q.T
        B = B - cross - cross.T + Q @ (Rm.T @ Rm) @ Q.T
        tr = float(np.trace(B))
        tr2 = float(np.sum(B * B))
        expected[k] = tr
        if tr > 0 and working[k] > 0:
            kappa[k] = working[k] / tr
            df[k] = tr * tr / tr2
    return SmallSample(kappa, df, expected, working)
