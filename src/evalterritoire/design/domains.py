"""Domains of a design: subsets, domain codes, degrees of freedom and vectorised variances.

Owns the checks of ``SurveyDesign.subset`` (``subset``), the restriction of domain codes to
the design's own domain (``domain_codes``), the degrees of freedom of each domain
(``domain_df``: PSUs with members − strata with members, or the replicate rank), and the
variances of every domain total of every column in one pass: finest unit × domain cells
(``domain_cells``), their variances summed over the stages (``cell_variances``) and the
calibrated case without row × domain matrices (``domain_variances_calibrated``). Domains keep
the full design (R ``subset``/``svyby`` semantics). The functions take the design as their
first argument; the methods of :class:`~evalterritoire.design.SurveyDesign` call them.
"""

from __future__ import annotations

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


def domain_variances(design: Any, z: np.ndarray, codes: np.ndarray, n_domains: int) -> np.ndarray:
    """Variance of every domain total of every column, in one vectorised pass.

    ``z`` (n, p) holds contributions; column ``j`` of domain ``g`` is ``z[:, j]`` restricted
    to rows with ``codes == g`` (``-1`` = no domain). Returns ``(n_domains, p)`` variances,
    equal to ``diag(variance_of_totals(z_j * (codes == g)))`` for each pair.
    """
    codes = domain_codes(design, codes)
    keep = codes >= 0
    z = np.where(keep[:, None], z, 0.0)
    if design._cal and not all(stage.is_standard for stage in design._stages):
        return _domain_variances_general(design, z, codes, n_domains)
    if design._cal:
        return domain_variances_calibrated(design, z, codes, n_domains)
    cell, keys = domain_cells(design, codes, n_domains)
    t = _rowsum(cell, keys.size, z[keep])
    return cell_variances(design, t, keys, n_domains)[0]


def domain_variances_calibrated(
    design: Any, z: np.ndarray, codes: np.ndarray, n_domains: int
) -> np.ndarray:
    """Domain variances for calibrated designs without forming row × domain matrices.

    The residualised contribution of column ``j`` in domain ``g`` is
    ``z_j 1[g] - Σ_s w_s ⊙ (X_s b_sgj)`` with ``b_s`` the (sequential) calibration regression
    coefficients; its unit totals are therefore the sparse cell totals minus
    ``M_s b_s`` where ``M_s`` are unit totals of ``w_s X_s``. Only (unit × chunk of
    domain-columns) dense blocks are formed.
    """
    p = z.shape[1]
    g_count = n_domains
    keep = codes >= 0
    zk, ck = z[keep], codes[keep]
    coefs: list[np.ndarray] = []  # b_s, shape (k_s, G * p)
    for s, step in enumerate(design._cal):
        ratio = step.w_before / step.w_after
        k = step.x.shape[1]
        rhs = np.empty((k, g_count * p))
        for c in range(k):
            scaled = zk * (ratio[keep] * step.x[keep, c])[:, None]
            rhs[c] = _rowsum(ck, g_count, scaled).reshape(-1)
        for t in range(s):
            prev = design._cal[t]
            cross = step.x.T @ (prev.x * (ratio * prev.w_after)[:, None])
            rhs -= cross @ coefs[t]
        coefs.append(step.pinv @ rhs)
    out = np.zeros(g_count * p)
    for stage in design._stages:
        key = stage.unit[keep] * np.int64(g_count) + ck
        cell, cell_keys = pd.factorize(key, sort=False)
        cell_keys = np.asarray(cell_keys, dtype=np.int64)
        tot = _rowsum(cell.astype(np.int64), cell_keys.size, zk)
        rows = np.repeat(cell_keys // g_count, p)
        cols = ((cell_keys % g_count)[:, None] * p + np.arange(p)[None, :]).ravel()
        cells = sparse.csc_matrix((tot.ravel(), (rows, cols)), shape=(stage.n_units, g_count * p))
        m_units = [
            _rowsum(stage.unit, stage.n_units, step.w_after[:, None] * step.x)
            for step in design._cal
        ]
        centre = np.where(stage.centre, 1.0 / stage.n_in_group, 0.0)[stage.group]
        coef = stage.coef[stage.group][:, None]
        chunk = max(1, int(2_000_000 // max(stage.n_units, 1)))
        for c0 in range(0, g_count * p, chunk):
            c1 = min(g_count * p, c0 + chunk)
            block = cells[:, c0:c1].toarray()
            for m_s, b_s in zip(m_units, coefs, strict=True):
                block -= m_s @ b_s[:, c0:c1]
            gsum = _rowsum(stage.group, stage.n_groups, block)
            block -= gsum[stage.group] * centre[:, None]
            out[c0:c1] += (coef * block * block).sum(axis=0)
    return np.maximum(out.reshape(g_count, p), 0.0)


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
