"""Domains of a design: subsets, domain codes, degrees of freedom and vectorised variances.

Owns the checks of ``SurveyDesign.subset`` (``subset``), the restriction of domain codes to
the design's own domain (``domain_codes``), the degrees of freedom of each domain
(``domain_df``: PSUs with members − strata with members, or the replicate rank), and the
variances of every domain total of every column in one pass: finest unit × domain cells
(``domain_cells``), their variances summed over the stages (``cell_variances``) and the
calibrated case without row × domain matrices (``domain_variances_calibrated``), also fed
by column blocks of the contributions (``domain_variances_blocks``: each block read once).
Domains keep the full design (R ``subset``/``svyby`` semantics). The functions take the
design as their first argument; the methods of :class:`~evalterritoire.design.SurveyDesign`
call them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from evalterritoire.design.common import _rowsum
from evalterritoire.design.covariance import covariance_pairs, form_domain_variances
from evalterritoire.design.replicates import replicate_domain_df
from evalterritoire.errors import DesignError


def subset(design: Any, mask: Any) -> Any:
    """The design restricted to a domain (see ``SurveyDesign.subset``)."""
    if isinstance(mask, pd.Series):
        if not mask.index.equals(design._data.index):
            raise DesignError("subset mask index does not match the design data")
        mask = mask.fillna(False).to_numpy(dtype=bool)
    m = np.asarray(mask)
    if m.shape != (len(design._data),):
        raise DesignError(f"subset mask must have {len(design._data)} values, got {m.shape}")
    m = m.astype(bool)
    if design._domain is not None:
        m = m & design._domain
    if not m.any():
        raise DesignError("subset domain has no members")
    m.setflags(write=False)
    return design._copy(_domain=m)


def domain_codes(design: Any, codes: np.ndarray) -> np.ndarray:
    """Domain codes as int64, ``-1`` for the rows outside the design's own domain."""
    codes = np.asarray(codes, dtype=np.int64)
    if design._domain is not None:
        codes = np.where(design._domain, codes, -1)
    return codes


def domain_df(design: Any, codes: np.ndarray, n_domains: int) -> np.ndarray:
    """Degrees of freedom of each domain (see ``SurveyDesign.domain_df``)."""
    codes = domain_codes(design, codes)
    if design._rep is not None:
        return replicate_domain_df(design, codes, n_domains)
    keep = codes >= 0
    n_psu_g = _count_pairs(codes[keep], design._psu[keep], n_domains)
    n_str_g = _count_pairs(codes[keep], design._strata[keep], n_domains)
    return (n_psu_g - n_str_g).astype(np.int64)


def _count_pairs(codes: np.ndarray, other: np.ndarray, n_domains: int) -> np.ndarray:
    """Number of distinct ``other`` values within each domain code."""
    if codes.size == 0:
        return np.zeros(n_domains, dtype=np.int64)
    key = other.astype(np.int64) * np.int64(n_domains) + codes
    uniq = pd.unique(key)
    return np.bincount(uniq % n_domains, minlength=n_domains)


# ----------------------------------------------------------------------------- variances
def domain_cells(design: Any, codes: np.ndarray, n_domains: int) -> tuple[np.ndarray, np.ndarray]:
    """Finest sampling unit × domain cells: cell code of each kept row and the cell keys.

    ``codes`` must already be restricted to the design's domain (``-1`` = no domain); the
    cell code array has one entry per row with ``codes >= 0``; ``key = unit * G + domain``.
    """
    keep = codes >= 0
    unit = design._stages[-1].unit
    key = (unit[keep] if not keep.all() else unit) * np.int64(n_domains) + codes[keep]
    cell, keys = pd.factorize(key, sort=False)
    return cell.astype(np.int64), np.asarray(keys, dtype=np.int64)


def cell_variances(
    design: Any, t: np.ndarray, keys: np.ndarray, n_domains: int
) -> tuple[np.ndarray, np.ndarray]:
    """Variances from totals ``t`` (cells, p) of finest-unit × domain cells.

    Returns the ``(n_domains, p)`` variances (sum over stages of
    ``coef_h Σ_a (t_a - t̄_h)²`` within group × domain) and the domain degrees of freedom.
    """
    p = t.shape[1]
    out = np.zeros((n_domains, p))
    unit = keys // n_domains
    dom = keys % n_domains
    df = np.zeros(n_domains, dtype=np.int64)
    for s in range(len(design._stages) - 1, -1, -1):
        stage = design._stages[s]
        if s < len(design._stages) - 1:
            # aggregate the child cells to this stage's units
            unit = design._stages[s + 1].group[unit]
            key = unit * np.int64(n_domains) + dom
            cell, ukeys = pd.factorize(key, sort=False)
            t = _rowsum(cell.astype(np.int64), len(ukeys), t)
            ukeys = np.asarray(ukeys, dtype=np.int64)
            unit, dom = ukeys // n_domains, ukeys % n_domains
        grp = stage.group[unit]
        if not stage.is_standard:  # PPS stage: its quadratic form on the unit x domain cells
            out += form_domain_variances(stage, unit, dom, t, n_domains)
            if s == 0:
                df = _cell_df(grp, dom, n_domains)
            continue
        gcell, g_keys = pd.factorize(grp * np.int64(n_domains) + dom, sort=False)
        g_keys = np.asarray(g_keys, dtype=np.int64)
        gcell = gcell.astype(np.int64)
        s1 = _rowsum(gcell, g_keys.size, t)
        s2 = _rowsum(gcell, g_keys.size, t * t)
        g_grp, g_dom = g_keys // n_domains, g_keys % n_domains
        centre = np.where(stage.centre[g_grp], 1.0 / stage.n_in_group[g_grp], 0.0)
        vg = stage.coef[g_grp][:, None] * (s2 - s1 * s1 * centre[:, None])
        out += _rowsum(g_dom, n_domains, vg)
        if s == 0:
            df = np.bincount(dom, minlength=n_domains) - np.bincount(g_dom, minlength=n_domains)
    return np.maximum(out, 0.0), df.astype(np.int64)


def _cell_df(grp: np.ndarray, dom: np.ndarray, n_domains: int) -> np.ndarray:
    """Degrees of freedom from first-stage cells: PSUs with members − strata with members."""
    g_keys = pd.unique(grp * np.int64(n_domains) + dom)
    return np.bincount(dom, minlength=n_domains) - np.bincount(
        np.asarray(g_keys, dtype=np.int64) % n_domains, minlength=n_domains
    )


def domain_variances(
    design: Any,
    z: np.ndarray,
    codes: np.ndarray,
    n_domains: int,
    *,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Variance of every domain total of every column, in one vectorised pass.

    ``z`` (n, p) holds contributions; column ``j`` of domain ``g`` is ``z[:, j]`` restricted
    to rows with ``codes == g`` (``-1`` = no domain). Returns ``(n_domains, p)`` variances,
    equal to ``diag(variance_of_totals(z_j * (codes == g)))`` for each pair. ``advance(n)``
    (calibrated designs) is told each time ``n`` more domain × column pairs are done.
    """
    codes = domain_codes(design, codes)
    keep = codes >= 0
    if not keep.all():
        z = np.where(keep[:, None], z, 0.0)
    if design._cal and not all(stage.is_standard for stage in design._stages):
        return _domain_variances_general(design, z, codes, n_domains)
    if design._cal:
        return domain_variances_calibrated(design, z, codes, n_domains, advance=advance)
    cell, keys = domain_cells(design, codes, n_domains)
    t = _rowsum(cell, keys.size, z[keep] if not keep.all() else z)
    return cell_variances(design, t, keys, n_domains)[0]


# Columns per dense block: fixed, as the BLAS products ``M_s b_s`` of a block give bits that
# depend on the block's width (the results must not change with an optimisation)
_BLOCK_VALUES = 2_000_000


def domain_variances_calibrated(
    design: Any,
    z: np.ndarray,
    codes: np.ndarray,
    n_domains: int,
    *,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Domain variances for calibrated designs without forming row × domain matrices.

    The residualised contribution of column ``j`` in domain ``g`` is
    ``z_j 1[g] - Σ_s w_s ⊙ (X_s b_sgj)`` with ``b_s`` the (sequential) calibration regression
    coefficients; its unit totals are therefore the sparse cell totals minus
    ``M_s b_s`` where ``M_s`` are unit totals of ``w_s X_s``. Only (unit × chunk of
    domain-columns) dense blocks are formed; every value is computed with the same
    floating-point operations in the same order as a whole-matrix evaluation would.
    """
    return _calibrated_from_blocks(design, [z], codes, n_domains, advance)


def domain_variances_blocks(
    design: Any,
    blocks: Iterable[np.ndarray],
    codes: np.ndarray,
    n_domains: int,
    *,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """:func:`domain_variances` of ``z`` given as consecutive column blocks (n, p_b).

    Each block is read once (calibration right-hand sides and unit × domain cell totals of
    its columns) and may be dropped by the caller afterwards, so the contributions of all
    columns are never held at once on an ordinary calibrated design. The result is
    bit-identical to ``domain_variances`` of the concatenated blocks.
    """
    codes = domain_codes(design, codes)
    if design._cal and all(stage.is_standard for stage in design._stages):
        return _calibrated_from_blocks(design, blocks, codes, n_domains, advance)
    z = np.concatenate(list(blocks), axis=1)
    return domain_variances(design, z, codes, n_domains, advance=advance)


def _calibrated_from_blocks(
    design: Any,
    blocks: Iterable[np.ndarray],
    codes: np.ndarray,
    n_domains: int,
    advance: Callable[[int], None] | None,
) -> np.ndarray:
    """Calibrated domain variances from column blocks of ``z`` (codes already restricted)."""
    keep = codes >= 0
    all_rows = bool(keep.all())
    ck = codes if all_rows else codes[keep]
    stacked = [_stacked_weights(step, ck, keep, n_domains) for step in design._cal]
    stage_cells = []
    for stage in design._stages:
        unit = stage.unit if all_rows else stage.unit[keep]
        cell, cell_keys = pd.factorize(unit * np.int64(n_domains) + ck, sort=False)
        stage_cells.append((cell.astype(np.int64), np.asarray(cell_keys, dtype=np.int64)))
    rhs_parts: list[list[np.ndarray]] = [[] for _ in design._cal]
    tot_parts: list[list[np.ndarray]] = [[] for _ in design._stages]
    for z in blocks:
        zk = z if all_rows else z[keep]
        for s, matrix in enumerate(stacked):
            rhs_parts[s].append(np.asarray(matrix @ zk).reshape(-1, n_domains, zk.shape[1]))
        for t, (cell, cell_keys) in enumerate(stage_cells):
            tot_parts[t].append(_rowsum(cell, cell_keys.size, zk))
    p = sum(part.shape[2] for part in rhs_parts[0]) if design._cal else 0
    rhs = [np.concatenate(parts, axis=2).reshape(-1, n_domains * p) for parts in rhs_parts]
    coefs = _calibration_coefficients(design, rhs)
    out = np.zeros(n_domains * p)
    for stage, (_, cell_keys), parts in zip(design._stages, stage_cells, tot_parts, strict=True):
        tot = np.concatenate(parts, axis=1)
        _calibrated_stage(design, stage, coefs, cell_keys, tot, n_domains, out, advance)
    return np.maximum(out.reshape(n_domains, p), 0.0)


def _stacked_weights(step: Any, ck: np.ndarray, keep: np.ndarray, n_domains: int):
    """Sparse (k G × rows) matrix of ``ratio_i x_ic`` at ``(c G + g_i, i)``.

    Its product with the contributions gives every ``Σ_i∈g ratio_i x_ic z_ij`` (the products
    summed over the rows in order, as ``_rowsum`` of the scaled columns). Written straight in
    CSR form (each row's entries in the order of the rows), the arrays the CSC → CSR
    conversion gives, without its copies (memory: ``k`` entries a respondent).
    """
    ratio = step.w_before / step.w_after
    x = step.x if keep.all() else step.x[keep]
    ratio = ratio if keep.all() else ratio[keep]
    k = x.shape[1]
    n_keep = ck.size
    order = np.argsort(ck, kind="stable")
    nnz = k * n_keep
    big = max(nnz, n_keep, k * n_domains) >= np.iinfo(np.int32).max
    index_dtype = np.int64 if big else np.int32
    indices = np.tile(order.astype(index_dtype), k)
    data = np.empty(nnz)
    ratio = ratio[order]
    for c in range(k):
        np.multiply(ratio, x[order, c], out=data[c * n_keep : (c + 1) * n_keep])
    indptr = np.zeros(k * n_domains + 1, dtype=index_dtype)
    np.cumsum(np.tile(np.bincount(ck, minlength=n_domains), k), out=indptr[1:])
    return sparse.csr_matrix((data, indices, indptr), shape=(k * n_domains, n_keep))


def _calibration_coefficients(design: Any, rhs: list[np.ndarray]) -> list[np.ndarray]:
    """Sequential calibration regression coefficients ``b_s`` (k_s, G * p) of every column."""
    coefs: list[np.ndarray] = []
    for s, step in enumerate(design._cal):
        ratio = step.w_before / step.w_after
        for t in range(s):
            prev = design._cal[t]
            cross = step.x.T @ (prev.x * (ratio * prev.w_after)[:, None])
            rhs[s] -= cross @ coefs[t]
        coefs.append(step.pinv @ rhs[s])
    return coefs


def _calibrated_stage(
    design: Any,
    stage: Any,
    coefs: list[np.ndarray],
    cell_keys: np.ndarray,
    tot: np.ndarray,
    n_domains: int,
    out: np.ndarray,
    advance: Callable[[int], None] | None,
) -> None:
    """Add one stage's ``Σ_u coef (t_u - M b - centre)²`` of every domain-column to ``out``.

    ``tot`` holds the totals of the stage's unit × domain cells ``cell_keys`` (cells, p).
    """
    p = tot.shape[1]
    width = n_domains * p
    cells = _cell_matrix(tot, cell_keys, n_domains, stage.n_units)
    del tot
    m_units = [
        _rowsum(stage.unit, stage.n_units, step.w_after[:, None] * step.x) for step in design._cal
    ]
    groups = _GroupSums(stage)
    coef = stage.coef[stage.group][:, None]
    chunk = max(1, int(_BLOCK_VALUES // max(stage.n_units, 1)))
    # squares formed in C order (fast), then copied by tiles of units into a Fortran block
    # whose column sums are numpy's pairwise sums over each column's units, as before
    square = np.empty((stage.n_units, min(chunk, width)))
    fortran = np.empty((stage.n_units, min(chunk, width)), order="F")
    for c0 in range(0, width, chunk):
        c1 = min(width, c0 + chunk)
        block = _residual_block(cells, m_units, coefs, c0, c1)
        groups.centre(block)
        sq = np.multiply(coef, block, out=square[:, : c1 - c0])
        sq *= block
        out[c0:c1] += _fortran_copy(sq, fortran[:, : c1 - c0]).sum(axis=0)
        if advance is not None:
            advance(c1 - c0)


def _cell_matrix(
    tot: np.ndarray, cell_keys: np.ndarray, n_domains: int, n_units: int
) -> sparse.csc_matrix:
    """The (units × domains·p) CSC matrix of the unit × domain cell totals ``tot`` (cells, p).

    Column ``d p + j`` holds column ``j`` of the cells of domain ``d`` at their units' rows,
    rows in increasing order: the matrix ``csc_matrix((tot.ravel(), (rows, cols)))`` gives
    (each cell is one (unit, domain) pair, so nothing is summed), written straight in CSC form
    without the coordinate arrays and the sort of that conversion (memory at 1M respondents:
    ~20 instead of ~36 bytes a cell total).
    """
    p = tot.shape[1]
    units = cell_keys // n_domains
    domains = cell_keys % n_domains
    order = np.lexsort((units, domains))  # by domain, then unit
    counts = np.bincount(domains, minlength=n_domains)
    nnz = units.size * p
    big = max(nnz, n_units, n_domains * p) >= np.iinfo(np.int32).max
    index_dtype = np.int64 if big else np.int32
    data = np.empty(nnz)
    indices = np.empty(nnz, dtype=index_dtype)
    bounds = np.r_[0, np.cumsum(counts)]
    start = 0
    for lo, hi in itertools.pairwise(bounds):  # one domain's columns at a time
        if hi == lo:
            continue
        rows = order[lo:hi]
        end = start + (hi - lo) * p
        data[start:end].reshape(p, hi - lo)[:] = tot[rows].T
        indices[start:end].reshape(p, hi - lo)[:] = units[rows]
        start = end
    indptr = np.zeros(n_domains * p + 1, dtype=index_dtype)
    np.cumsum(np.repeat(counts, p), out=indptr[1:])
    return sparse.csc_matrix((data, indices, indptr), shape=(n_units, n_domains * p))


def _fortran_copy(values: np.ndarray, target: np.ndarray, tile: int = 1024) -> np.ndarray:
    """Copy C-ordered ``values`` into the Fortran-ordered ``target`` by tiles of rows."""
    for r0 in range(0, values.shape[0], tile):
        target[r0 : r0 + tile] = values[r0 : r0 + tile]
    return target


def _residual_block(
    cells: sparse.csc_matrix,
    m_units: list[np.ndarray],
    coefs: list[np.ndarray],
    c0: int,
    c1: int,
) -> np.ndarray:
    """Unit totals of the residualised columns ``c0:c1``: ``t - M_1 b_1 - M_2 b_2 …``.

    ``t`` is sparse: the first product is negated in place and ``t`` added at its cells
    (``t - x`` and ``-x + t`` are the same floating-point number).
    """
    block = np.negative(m_units[0] @ coefs[0][:, c0:c1])
    lo, hi = cells.indptr[c0], cells.indptr[c1]
    if hi > lo:
        cols = np.repeat(np.arange(c1 - c0), np.diff(cells.indptr[c0 : c1 + 1]))
        block[cells.indices[lo:hi], cols] += cells.data[lo:hi]
    for m_s, b_s in zip(m_units[1:], coefs[1:], strict=True):
        block -= m_s @ b_s[:, c0:c1]
    return block


class _GroupSums:
    """Centre unit totals within their groups (``t - centre_h Σ_h t``), in place.

    Each group's sum runs over its units in order (as ``_rowsum``): on a C-ordered block,
    ``sum(axis=0)`` of the group's rows (a slice when the group's units are contiguous).
    """

    def __init__(self, stage: Any) -> None:
        self.stage = stage
        self.scale = np.where(stage.centre, 1.0 / stage.n_in_group, 0.0)
        order = np.argsort(stage.group, kind="stable")
        cuts = np.flatnonzero(np.diff(stage.group[order])) + 1
        self.members: list[tuple[int, slice | np.ndarray]] = []
        for idx in np.split(order, cuts) if order.size else []:
            h = int(stage.group[idx[0]])
            if self.scale[h] == 0.0:
                continue
            contiguous = idx[-1] - idx[0] == idx.size - 1
            self.members.append((h, slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx))

    def centre(self, block: np.ndarray) -> None:
        """Subtract ``centre_h × (group sum)`` from every unit's row of C-ordered ``block``."""
        if block.shape[1] <= 8:  # rows of a narrow block sum pairwise: sum as ``_rowsum`` does
            stage = self.stage
            gsum = _rowsum(stage.group, stage.n_groups, block)
            block -= gsum[stage.group] * self.scale[stage.group][:, None]
            return
        for h, rows in self.members:
            part = block[rows]
            gsum = part.sum(axis=0) if part.shape[0] > 1 else part[0].copy()
            gsum *= self.scale[h]
            if isinstance(rows, slice):
                block[rows] -= gsum
            else:
                block[rows] = part - gsum


def _domain_variances_general(
    design: Any, z: np.ndarray, codes: np.ndarray, n_domains: int
) -> np.ndarray:
    """Domain variances through the general covariance engine (calibrated PPS designs)."""
    p = z.shape[1]
    rows = np.flatnonzero(codes >= 0)
    cols = codes[rows][:, None] * p + np.arange(p)[None, :]
    zs = sparse.csr_matrix(
        (z[rows].ravel(), (np.repeat(rows, p), cols.ravel())), shape=(z.shape[0], n_domains * p)
    )
    k = np.arange(n_domains * p)
    return np.maximum(covariance_pairs(design, zs, None, k, k).reshape(n_domains, p), 0.0)
