"""Design covariance of many estimated totals at once: full matrices, chosen pairs, domain blocks.

The variance of :meth:`~evalterritoire.design.SurveyDesign.variance_of_totals` handles a few
dense columns. Comparisons between domains (contrasts, a territory against its nation,
t-tests, Rao–Scott tests) need covariances between *many* columns whose contributions are
sparse (a domain's column is zero outside the domain). This module writes each sampling stage
as a quadratic form in the unit totals ``t`` of the stage,

    ``Cov(t₁, t₂) = t₁' Q t₂``,  ``Q = diag(d) + Σ_h [1_h, v_h] M_h [1_h, v_h]' + E``,

where ``1_h`` and ``v_h`` are the indicator and a per-unit vector of group ``h`` (stratum, or
parent PSU at the second stage) and ``M_h = [[m11_h, m12_h], [m12_h, 0]]``:

* ordinary and Brewer stages (``Σ_a c_a (t_a − t̄_h)²`` with ``c_a = coef_h × unit_coef_a``):
  ``d = c``, ``v = c``, ``m11 = C_h / n_h²``, ``m12 = −1 / n_h`` (``C_h = Σ_{a∈h} c_a``), or
  ``m11 = m12 = 0`` for a group that is not centred (lonely PSU under ``adjust``);
* Hartley–Rao stages (R ``HRDcheck``): ``d = 1 − π + (1 + p2bar_h − 2π) / (n_h − 1)``,
  ``v = π``, ``m11 = −(1 + p2bar_h) / (n_h − 1)``, ``m12 = 1 / (n_h − 1)``, and ``E`` the sparse
  correction of the pairs whose probabilities add up to exactly 1 (R sets their term to 0).

So every covariance needs only products of the (sparse) unit totals with ``diag(d)``, the group
sums of ``t`` and of ``v t``, and ``E``. Calibrated designs residualise the contributions first
(R ``calibrate``: sequential weighted regressions on each step's variables); the residuals'
unit totals are ``U Z − M B`` with ``B`` small (calibration columns × columns) and ``M`` the
unit totals of the calibrated weights times the calibration variables, so no dense
rows × columns matrix is formed. Stages add up (the second stage's coefficients already carry
the first stage's sampling fraction).

Public entry points (the methods of :class:`~evalterritoire.design.SurveyDesign` call them):
``covariance_of_totals`` (a full ``K₁ × K₂`` matrix) and ``covariance_pairs`` (only the
entries ``(I[k], J[k])``, e.g. the diagonal blocks of many domains; a column met in many
pairs, like the nation compared with each territory, is applied to ``Q`` once and its pairs
cost only the other column's nonzeros). ``stage_form`` gives a
stage's quadratic form; ``form_domain_variances`` the per-domain variances of cell totals.
Replicate-weight designs are handled by the callers (the replicate estimates are estimator
specific), except for totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from evalterritoire.design.common import _indicator, _Stage
from evalterritoire.errors import DesignError

Matrix = Any  # ndarray or scipy sparse matrix


@dataclass(frozen=True)
class _Form:
    """One stage as a quadratic form in its unit totals (see the module docstring)."""

    unit: np.ndarray  # (n,) row → unit of the stage
    n_units: int
    group: np.ndarray  # (n_units,) group of each unit
    n_groups: int
    d: np.ndarray  # (n_units,)
    v: np.ndarray  # (n_units,)
    m11: np.ndarray  # (n_groups,)
    m12: np.ndarray  # (n_groups,)
    exc: sparse.csr_matrix | None  # (n_units, n_units)

    def group_sums(self, t: Matrix) -> Matrix:
        """Sums of the rows of ``t`` (n_units, K) within groups (sparse stays sparse)."""
        ind = _indicator(self.group, self.n_groups)
        return ind @ t

    def weighted_group_sums(self, t: Matrix) -> Matrix:
        """Sums of ``v ⊙ t`` within groups."""
        ind = _indicator(self.group, self.n_groups, self.v)
        return ind @ t


def stage_form(stage: _Stage) -> _Form:
    """The quadratic form of one sampling stage."""
    n = stage.n_in_group.astype(float)
    if stage.hr is None:
        c = stage.unit_scale()
        big_c = np.bincount(stage.group, weights=c, minlength=stage.n_groups)
        with np.errstate(divide="ignore", invalid="ignore"):
            m11 = np.where(stage.centre, big_c / (n * n), 0.0)
            m12 = np.where(stage.centre, -1.0 / n, 0.0)
        return _Form(stage.unit, stage.n_units, stage.group, stage.n_groups, c, c, m11, m12, None)
    hr = stage.hr
    pi = hr.pi
    c_h = 1.0 + hr.p2bar
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(n > 1, 1.0 / (n - 1.0), 0.0)
    d = (1.0 - pi) + (c_h[stage.group] - 2.0 * pi) * inv[stage.group]
    exc = None
    if hr.pairs.size:
        a, b = hr.pairs[:, 0], hr.pairs[:, 1]
        vals = hr.p2bar[stage.group[a]] * inv[stage.group[a]]
        exc = sparse.csr_matrix((vals, (a, b)), shape=(stage.n_units, stage.n_units))
    return _Form(
        stage.unit, stage.n_units, stage.group, stage.n_groups, d, pi, -c_h * inv, inv, exc
    )


# ----------------------------------------------------------------------------- products
def _dense(x: Matrix) -> np.ndarray:
    return np.asarray(x.toarray() if sparse.issparse(x) else x)


def _scale_rows(x: Matrix, s: np.ndarray) -> Matrix:
    if sparse.issparse(x):
        return sparse.diags(s) @ x
    return x * s[:, None]


def _q_full(form: _Form, x: Matrix, y: Matrix) -> np.ndarray:
    """``x' Q y`` for unit totals ``x`` (n_units, K1) and ``y`` (n_units, K2)."""
    out = _dense(x.T @ _scale_rows(y, form.d))
    sx, sy = form.group_sums(x), form.group_sums(y)
    vx, vy = form.weighted_group_sums(x), form.weighted_group_sums(y)
    out = out + _dense(sx.T @ _scale_rows(sy, form.m11))
    out = out + _dense(sx.T @ _scale_rows(vy, form.m12))
    out = out + _dense(vx.T @ _scale_rows(sy, form.m12))
    if form.exc is not None:
        out = out + _dense(x.T @ (form.exc @ y))
    return out


def _colsum_products(a: Matrix, b: Matrix) -> np.ndarray:
    """Column sums of the elementwise product of two matrices of the same shape."""
    if sparse.issparse(a):
        return np.asarray(a.multiply(b).sum(axis=0)).ravel()
    if sparse.issparse(b):
        return np.asarray(b.multiply(a).sum(axis=0)).ravel()
    return np.einsum("ij,ij->j", a, b)


def _cols(x: Matrix, idx: np.ndarray) -> Matrix:
    return x.tocsc()[:, idx] if sparse.issparse(x) else x[:, idx]


def _q_pairs(form: _Form, x: Matrix, y: Matrix, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``(x' Q y)[i[k], j[k]]`` for every k, without the full matrix.

    A column met in many pairs (a nation compared with each of its territories) is applied to
    ``Q`` once, ``Q y_j`` dense, and each of its pairs is the sum over the nonzero rows of the
    other column: the cost is the other columns' nonzeros, not one dense column per pair.
    """
    out = np.empty(i.size)
    on_j = _heavy(j, form.n_units)
    on_i = _heavy(i, form.n_units) & ~on_j
    rest = ~(on_j | on_i)
    if on_j.any():
        out[on_j] = _q_pairs_applied(form, x, y, i[on_j], j[on_j], transpose=False)
    if on_i.any():
        out[on_i] = _q_pairs_applied(form, y, x, j[on_i], i[on_i], transpose=True)
    if rest.any():
        out[rest] = _q_pairs_direct(form, x, y, i[rest], j[rest])
    return out


def _heavy(cols: np.ndarray, n_units: int, *, min_pairs: int = 8, cap: float = 5e7) -> np.ndarray:
    """Pairs whose column is met at least ``min_pairs`` times (while ``Q y`` stays small)."""
    _, inv, counts = np.unique(cols, return_inverse=True, return_counts=True)
    heavy = counts >= min_pairs
    if heavy.sum() * n_units > cap:
        return np.zeros(cols.size, dtype=bool)
    return heavy[inv]


def _q_apply(form: _Form, y: np.ndarray, *, transpose: bool) -> np.ndarray:
    """``Q y`` (or ``Q' y``) for dense unit totals ``y`` (n_units, K)."""
    sy = _dense(form.group_sums(y))
    vy = _dense(form.weighted_group_sums(y))
    g = form.group
    out = form.d[:, None] * y
    out += (form.m11[:, None] * sy + form.m12[:, None] * vy)[g]
    out += form.v[:, None] * (form.m12[:, None] * sy)[g]
    if form.exc is not None:
        out += _dense((form.exc.T if transpose else form.exc) @ y)
    return out


def _q_pairs_applied(form, x, y, i, j, *, transpose: bool) -> np.ndarray:
    """``x_i' (Q y_j)`` with ``Q y`` computed once per distinct ``j`` (``Q'`` when swapped)."""
    uj, pos = np.unique(j, return_inverse=True)
    qy = _q_apply(form, _dense(_cols(y, uj)), transpose=transpose)
    if not sparse.issparse(x):
        return np.einsum("uk,uk->k", np.asarray(x)[:, i], qy[:, pos])
    xc = sparse.csc_matrix(x)
    start, stop = xc.indptr[i], xc.indptr[i + 1]
    length = stop - start
    pair = np.repeat(np.arange(i.size), length)
    flat = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    flat += np.repeat(start, length)
    vals = xc.data[flat] * qy[xc.indices[flat], pos[pair]]
    return np.bincount(pair, weights=vals, minlength=i.size)


def _q_pairs_direct(form: _Form, x: Matrix, y: Matrix, i: np.ndarray, j: np.ndarray):
    """``(x' Q y)[i[k], j[k]]`` from the selected columns themselves."""
    xi, yj = _cols(x, i), _cols(y, j)
    out = _colsum_products(xi, _scale_rows(yj, form.d))
    sx, sy = _dense(form.group_sums(x)), _dense(form.group_sums(y))
    vx, vy = _dense(form.weighted_group_sums(x)), _dense(form.weighted_group_sums(y))
    out = out + np.einsum("hk,hk->k", sx[:, i], form.m11[:, None] * sy[:, j])
    out = out + np.einsum("hk,hk->k", sx[:, i], form.m12[:, None] * vy[:, j])
    out = out + np.einsum("hk,hk->k", vx[:, i], form.m12[:, None] * sy[:, j])
    if form.exc is not None:
        out = out + _colsum_products(xi, form.exc @ yj)
    return out


# ----------------------------------------------------------------------------- calibration
def _calibration_parts(design: Any, z: Matrix) -> tuple[np.ndarray, np.ndarray] | None:
    """``(WX, B)``: residualised contributions are ``z − WX @ B`` (sequential steps)."""
    if not design._cal:
        return None
    coefs: list[np.ndarray] = []
    for s, step in enumerate(design._cal):
        ratio = step.w_before / step.w_after
        rhs = _dense(z.T @ (step.x * ratio[:, None])).T  # (k_s, K)
        for t in range(s):
            prev = design._cal[t]
            cross = step.x.T @ (prev.x * (ratio * prev.w_after)[:, None])
            rhs = rhs - cross @ coefs[t]
        coefs.append(step.pinv @ rhs)
    wx = np.hstack([step.x * step.w_after[:, None] for step in design._cal])
    return wx, np.vstack(coefs)


def _prepare(design: Any, z: Matrix) -> Matrix:
    """Checked contributions (n, K), zero outside the design's domain, as float."""
    if design._rep is not None:
        raise DesignError("internal: the covariance engine is for Taylor designs")
    if z.shape[0] != len(design._data):
        raise DesignError(f"contributions must have {len(design._data)} rows, got {z.shape}")
    if sparse.issparse(z):
        z = sparse.csr_matrix(z, dtype=float)
        if not np.all(np.isfinite(z.data)):
            raise DesignError("contributions contain missing or infinite values")
        if design._domain is not None:
            z = sparse.diags(design._domain.astype(float)) @ z
        return z
    z = np.asarray(z, dtype=float)
    if z.ndim == 1:
        z = z[:, None]
    if not np.all(np.isfinite(z)):
        raise DesignError("contributions contain missing or infinite values")
    if design._domain is not None:
        z = z * design._domain[:, None]
    return z


def _stage_parts(
    stage: _Stage, z: Matrix, cal: tuple[np.ndarray, np.ndarray] | None
) -> tuple[_Form, Matrix, np.ndarray | None]:
    """The stage's form, the unit totals of ``z`` and the unit totals of ``WX``."""
    form = stage_form(stage)
    ind = _indicator(stage.unit, stage.n_units)
    a = ind @ z
    m = None if cal is None else np.asarray(ind @ cal[0])
    return form, a, m


# ----------------------------------------------------------------------------- entry points
def covariance_of_totals(design: Any, z1: Matrix, z2: Matrix | None = None) -> np.ndarray:
    """Full covariance ``(K1, K2)`` of the totals of the columns of ``z1`` and ``z2``."""
    same = z2 is None
    z1 = _prepare(design, z1)
    z2 = z1 if same else _prepare(design, z2)
    if design._rep is not None:
        raise DesignError("internal: replicate designs are handled by the callers")
    cal1 = _calibration_parts(design, z1)
    cal2 = cal1 if same else _calibration_parts(design, z2)
    out = np.zeros((z1.shape[1], z2.shape[1]))
    for stage in design._stages:
        form, a1, m = _stage_parts(stage, z1, cal1)
        a2 = a1 if same else _indicator(stage.unit, stage.n_units) @ z2
        out += _q_full(form, a1, a2)
        if cal1 is not None:
            b1, b2 = cal1[1], cal2[1]
            qam = _q_full(form, a1, m)  # (K1, k)
            qma = qam.T if same else _q_full(form, m, a2)  # (k, K2)
            out += -qam @ b2 - b1.T @ qma + b1.T @ _q_full(form, m, m) @ b2
    return out


def covariance_pairs(design: Any, z1: Matrix, z2: Matrix | None, i: Any, j: Any) -> np.ndarray:
    """Entries ``(i[k], j[k])`` of the covariance of the totals of ``z1`` and ``z2``."""
    same = z2 is None
    z1 = _prepare(design, z1)
    z2 = z1 if same else _prepare(design, z2)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    key = i * max(z2.shape[1], 1) + j  # each distinct pair once (the nation with itself
    key, back = np.unique(key, return_inverse=True)  # once, not once per territory)
    i, j = np.divmod(key, max(z2.shape[1], 1))
    cal1 = _calibration_parts(design, z1)
    cal2 = cal1 if same else _calibration_parts(design, z2)
    out = np.zeros(i.size)
    for stage in design._stages:
        form, a1, m = _stage_parts(stage, z1, cal1)
        a2 = a1 if same else _indicator(stage.unit, stage.n_units) @ z2
        out += _q_pairs(form, a1, a2, i, j)
        if cal1 is not None:
            b1, b2 = cal1[1], cal2[1]
            qam = _q_full(form, a1, m)  # (K1, k)
            qma = qam.T if same else _q_full(form, m, a2)  # (k, K2)
            qmm = _q_full(form, m, m)
            out -= np.einsum("kc,ck->k", qam[i], b2[:, j])
            out -= np.einsum("ck,ck->k", b1[:, i], qma[:, j])
            out += np.einsum("ck,ck->k", b1[:, i], qmm @ b2[:, j])
    return out[back.ravel()]


def form_domain_variances(
    stage: _Stage, unit: np.ndarray, dom: np.ndarray, t: np.ndarray, n_domains: int
) -> np.ndarray:
    """``(n_domains, p)`` variances of a (non-ordinary) stage from unit × domain cell totals.

    ``t`` (cells, p) are the totals of the cells ``(unit[c], dom[c])``; the variance of column
    ``j`` in domain ``g`` is ``a' Q a`` with ``a`` the unit totals of that domain and column.
    """
    p = t.shape[1]
    form = stage_form(stage)
    rows = np.repeat(unit, p)
    cols = (dom[:, None] * p + np.arange(p)[None, :]).ravel()
    a = sparse.csc_matrix((t.ravel(), (rows, cols)), shape=(stage.n_units, n_domains * p))
    k = np.arange(n_domains * p)
    return _q_pairs(form, a, a, k, k).reshape(n_domains, p)
