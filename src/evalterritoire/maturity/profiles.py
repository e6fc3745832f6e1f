"""Territory profiles: design-weighted means of the respondent scores with standard errors.

Owns :func:`compute_profiles` and its estimation helpers: the design's weights and variance of
weighted totals (linearisation when the design provides it, with-replacement otherwise) and
domain means that keep the full design (R ``svyby`` semantics). With a Taylor design the
domain variances come from the design's domain engine
(:func:`evalterritoire.design.domains.domain_variances`: unit × territory cell totals and the
calibration residuals through their regression coefficients), one score at a time with a
progress bar « Profils des territoires »: a national wave (1,250 territories) never forms a
(respondents × territories) matrix. Other designs (replicate weights, foreign objects exposing
``variance_of_totals``) get the diagonal of the design covariance of the domain-masked
contributions, by blocks of territories (at least 193, starting at multiples of 8, so that
every variance is bit-identical to the one of a single pass over all territories).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from evalterritoire.codebook import Codebook
from evalterritoire.errors import MaturityError
from evalterritoire.maturity.common import present_column, territory_column
from evalterritoire.maturity.scoring import MaturityScorer


def _weights_and_variance(design: Any, n: int):
    """Weights (n,) and a function giving the variances of every domain total of every column.

    The function takes ``(z, idx, n_dom)``: contributions ``z`` (n, p) and the domain code of
    each row, and returns the ``(n_dom, p)`` variances of the totals of ``z[:, j]`` restricted
    to domain ``g`` (zero outside it). A Taylor design (:class:`~evalterritoire.design.SurveyDesign`
    without replicate weights, also seen through a row permutation: one exposing ``original``
    and ``original_rows``) gets them from the design's domain engine
    (:func:`evalterritoire.design.domains.domain_variances`: unit × domain cell totals, with
    the calibration residuals taken from the regression coefficients), without any
    (respondents × territories) matrix: the same quantity as the diagonal of
    ``variance_of_totals`` of the domain-masked contributions (an exact reformulation: sums
    reordered, the last bits may differ). Another design exposing ``variance_of_totals``
    (replicate weights, a foreign object) gets that diagonal, formed by blocks of domains
    (:func:`_domain_blocks`). Without design, or for a design without that method, the
    with-replacement estimator treating every respondent as its own PSU is used:
    ``var = n / (n - 1) * sum((z_i - mean(z))**2)``.
    """
    if design is None:
        weights = np.ones(n)
    else:
        weights = np.asarray(getattr(design, "weights", None), dtype=float).reshape(-1)
        if weights.shape != (n,):
            raise MaturityError(
                f"the design has {weights.size} weights for {n} responses: build it on the "
                "same responses"
            )
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise MaturityError("design weights must be finite and non-negative")
    permuted = callable(getattr(design, "original_rows", None))
    base = design.original if permuted else design
    row_map = design.original_rows if permuted else None
    if _has_domain_engine(base):

        def domain_engine(z: np.ndarray, idx: np.ndarray, n_dom: int) -> np.ndarray:
            from evalterritoire.design.domains import domain_variances

            if row_map is not None:
                perm = row_map(np.arange(n))
                z_orig, idx_orig = np.empty_like(z), np.empty_like(idx)
                z_orig[perm], idx_orig[perm] = z, idx
                z, idx = z_orig, idx_orig
            return domain_variances(base, z, idx, n_dom)

        return weights, domain_engine
    var_fn = getattr(base, "variance_of_totals", None)

    def variance(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, p: int) -> np.ndarray:
        if p == 0:
            return np.zeros(0)
        z = np.zeros((n, p))
        z[rows if row_map is None else row_map(rows), cols] = values
        if callable(var_fn):
            return np.diag(np.atleast_2d(np.asarray(var_fn(z), dtype=float))).copy()
        if n < 2:
            return np.full(p, np.nan)
        centred = z - z.mean(axis=0)
        return n / (n - 1) * (centred**2).sum(axis=0)

    def by_blocks(z: np.ndarray, idx: np.ndarray, n_dom: int) -> np.ndarray:
        rows = np.arange(n)
        var = np.empty((n_dom, z.shape[1]))
        for j in range(z.shape[1]):
            for block in _domain_blocks(n_dom):
                lo = block[0]
                inside = (idx >= lo) & (idx <= block[-1])
                var[block, j] = variance(rows[inside], idx[inside] - lo, z[inside, j], block.size)
        return var

    return weights, by_blocks


def _has_domain_engine(design: Any) -> bool:
    """Whether the design is a Taylor :class:`~evalterritoire.design.SurveyDesign`."""
    from evalterritoire.design import SurveyDesign

    return isinstance(design, SurveyDesign) and not design.is_replicate


_BLOCK_MIN = 193  # narrower products take other BLAS kernels, whose sums differ in the last bit


def _domain_blocks(n_dom: int) -> list[np.ndarray]:
    """The domains in blocks whose variances are bit-identical to one call on all of them.

    Blocks start at multiples of 8 and hold at least ``_BLOCK_MIN`` domains, so that every
    column meets the same matrix-product kernels (and tile position) as in a single call on
    all domains: the block width is the first multiple of 8 from 256 whose last block is
    empty or wide enough. One block when all domains fit in it.
    """
    width = 256
    while width < n_dom and n_dom % width and n_dom % width < _BLOCK_MIN:
        width += 8
    if n_dom <= width:
        return [np.arange(n_dom)]
    return [np.arange(lo, min(lo + width, n_dom)) for lo in range(0, n_dom, width)]


def _domain_means(y: np.ndarray, w: np.ndarray, idx: np.ndarray, n_dom: int, variance):
    """Weighted domain means of the columns of ``y`` (NaN = missing) with linearised SEs.

    Domain estimation keeps the full design: the linearised variable of domain d is zero
    outside d (R ``svyby`` semantics), ``z_i = w_i 1[i in d, y_i valid] (y_i - ybar_d) / N_d``.
    ``variance`` (of :func:`_weights_and_variance`) gives the variances of every domain of
    one column at a time, so that the progress bar advances by score and memory stays
    bounded on a national wave (1,250 territories × 150,000 respondents).
    """
    from evalterritoire.progress import step_progress

    p = y.shape[1]
    valid = np.isfinite(y)
    mean = np.full((n_dom, p), np.nan)
    se = np.full((n_dom, p), np.nan)
    counts = np.zeros((n_dom, p))
    with step_progress("Profils des territoires", p) as advance:
        for j in range(p):
            ok = valid[:, j]
            wv = np.where(ok, w, 0.0)
            y0 = np.where(ok, y[:, j], 0.0)
            n_hat = np.bincount(idx, weights=wv, minlength=n_dom)
            total = np.bincount(idx, weights=wv * y0, minlength=n_dom)
            counts[:, j] = np.bincount(idx, weights=ok.astype(float), minlength=n_dom)
            has = n_hat > 0
            m = np.divide(total, n_hat, out=np.full(n_dom, np.nan), where=has)
            safe_n = np.where(has, n_hat, 1.0)
            contrib = wv * (y0 - np.nan_to_num(m)[idx]) / safe_n[idx]
            var = variance(contrib[:, None], idx, n_dom)[:, 0]
            advance(1)
            mean[:, j] = m
            se[:, j] = np.where(has, np.sqrt(np.maximum(var, 0.0)), np.nan)
    return mean, se, counts


def compute_profiles(
    responses: pd.DataFrame,
    scorer: MaturityScorer,
    design: Any = None,
    *,
    wave: int | None = None,
) -> pd.DataFrame:
    """Territory profiles: design-weighted dimension means with standard errors.

    The columns are those of the scorer's codebook roles: ``territory`` (required),
    ``territory_name`` and ``respondent_type`` (optional).

    Parameters
    ----------
    responses : DataFrame
        Typed responses of one wave (the territory column required).
    scorer : MaturityScorer
        A fitted scorer.
    design : SurveyDesign or None
        The wave's design (same rows as ``responses``); None gives equal weights.
    wave : int, optional
        Written in a ``wave`` column when given.

    Returns
    -------
    DataFrame
        One row per territory (sorted by code): ``territory``, ``territory_name``, ``n``
        (respondents with at least one dimension score), ``n_respondents``, ``n_types``, ``score_<dim>``,
        ``se_<dim>``, ``n_<dim>``, ``nsp_<dim>`` for each dimension, ``score_global``,
        ``se_global``, ``nsp_share`` (weighted share of "ne sait pas" among asked maturity items)
        and ``n_type_<type>`` for each respondent type of the codebook.
    """
    check_is_fitted(scorer, "items_")
    codebook = scorer.codebook
    codes_all = _territory_codes(responses, territory_column(codebook, responses))
    details = scorer.score_details(responses)
    weights, variance = _weights_and_variance(design, len(responses))
    codes = sorted(codes_all.unique().tolist())
    idx = pd.Categorical(codes_all, categories=codes).codes.astype(int)
    dims = list(scorer.items_)
    score_cols = [f"score_{d}" for d in dims] + ["score_global"]
    y = details[score_cols].to_numpy(dtype=float)
    mean, se, counts = _domain_means(y, weights, idx, len(codes), variance)
    rtype = _respondent_types(responses, present_column(codebook, "respondent_type", responses))
    nsp_dim, nsp_all = _nsp_shares(details, dims, weights, idx, len(codes))

    out: dict[str, Any] = {}
    if wave is not None:
        out["wave"] = np.full(len(codes), int(wave), dtype=np.int64)
    out["territory"] = pd.array(codes, dtype="string")
    out["territory_name"] = _territory_names(
        responses, present_column(codebook, "territory_name", responses), codes_all, codes
    )
    scored = np.isfinite(y[:, :-1]).any(axis=1)
    out["n"] = np.bincount(idx[scored], minlength=len(codes)).astype(np.int64)
    out["n_respondents"] = np.bincount(idx, minlength=len(codes)).astype(np.int64)
    out["n_types"] = _n_types(idx, rtype, len(codes))
    for j, d in enumerate(dims):
        out[f"score_{d}"] = mean[:, j]
        out[f"se_{d}"] = se[:, j]
        out[f"n_{d}"] = counts[:, j].astype(np.int64)
        out[f"nsp_{d}"] = nsp_dim[:, j]
    out["score_global"] = mean[:, -1]
    out["se_global"] = se[:, -1]
    out["nsp_share"] = nsp_all
    out |= _type_counts(codebook, idx, rtype, len(codes))
    return pd.DataFrame(out)


def _type_counts(
    codebook: Codebook, idx: np.ndarray, rtype: pd.Series, n_codes: int
) -> dict[str, np.ndarray]:
    """``n_type_<type>``: respondents of each respondent type of the codebook, per territory."""
    type_var = codebook.role("respondent_type")
    return {
        f"n_type_{key}": np.bincount(
            idx[(rtype == key).fillna(False).to_numpy(dtype=bool)], minlength=n_codes
        ).astype(np.int64)
        for key in (type_var.options if type_var is not None else ())
    }


def _territory_codes(responses: pd.DataFrame, territory: str) -> pd.Series:
    """The territory code of every response (as strings); a missing code is an error."""
    codes = responses[territory].astype("string")
    if codes.isna().any():
        raise MaturityError(f"{int(codes.isna().sum())} response(s) without a territory code")
    return codes


def _respondent_types(responses: pd.DataFrame, type_col: str | None) -> pd.Series:
    """Each respondent's type (as strings; all missing without a type column)."""
    if type_col is None:
        return pd.Series(pd.NA, index=responses.index, dtype="string")
    return responses[type_col].astype("string")


def _territory_names(
    responses: pd.DataFrame, name_col: str | None, codes_all: pd.Series, codes: list[str]
) -> pd.array:
    """Most frequent name of each territory (ties → first in order); the code without names."""
    if name_col is None:
        return pd.array(codes, dtype="string")
    names = (
        pd.DataFrame({"t": codes_all, "name": responses[name_col].astype("string")})
        .dropna()
        .groupby("t")["name"]
        .agg(lambda s: s.value_counts().sort_index().idxmax())
    )
    return pd.array([names.get(c, c) for c in codes], dtype="string")


def _n_types(idx: np.ndarray, rtype: pd.Series, n_codes: int) -> np.ndarray:
    """Number of distinct respondent types among each territory's respondents."""
    return (
        pd.DataFrame({"i": idx, "t": rtype})
        .dropna()
        .groupby("i")["t"]
        .nunique()
        .reindex(range(n_codes), fill_value=0)
        .to_numpy(dtype=np.int64)
    )


def _nsp_shares(
    details: pd.DataFrame, dims: list[str], weights: np.ndarray, idx: np.ndarray, n_codes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted share of "ne sait pas" among asked items: per dimension and over all of them."""
    nsp = details[[f"n_nsp_{d}" for d in dims]].to_numpy(dtype=float)
    asked = details[[f"n_asked_{d}" for d in dims]].to_numpy(dtype=float)
    w_nsp = np.zeros((n_codes, len(dims)))
    w_asked = np.zeros((n_codes, len(dims)))
    np.add.at(w_nsp, idx, weights[:, None] * nsp)
    np.add.at(w_asked, idx, weights[:, None] * asked)
    with np.errstate(invalid="ignore", divide="ignore"):
        nsp_dim = np.where(w_asked > 0, w_nsp / w_asked, np.nan)
        nsp_all = np.where(w_asked.sum(axis=1) > 0, w_nsp.sum(axis=1) / w_asked.sum(axis=1), np.nan)
    return nsp_dim, nsp_all
