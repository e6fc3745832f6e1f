"""Replicate weights created from a Taylor design (R ``as.svrepdesign``).

``SurveyDesign.as_replicate(type)`` turns a design given by strata, PSUs and fpc into a
replicate-weight design whose replicate weights are the design weights times a factor per
(PSU, replicate), as R ``as.svrepdesign`` builds them:

* ``JK1`` (unstratified designs, R ``jk1weights``): replicate ``r`` drops PSU ``r``; the other
  PSUs get ``n/(n − 1)``; ``scale = f (n − 1)/n`` with ``f = 1 − n/N`` the first-stage fpc
  factor (1 without fpc); ``rscales = 1``.
* ``JKn`` (stratified, R ``jknweights``): one replicate per PSU of every stratum with at least
  two PSUs, dropping it and giving ``n_h/(n_h − 1)`` to the other PSUs of its stratum;
  ``rscales = f_h (n_h − 1)/n_h``, ``scale = 1``. A stratum sampled exhaustively (``f_h = 0``)
  gets no replicate (R's default ``survey.drop.replicates``); a stratum with one PSU none under
  ``remove``/``certainty`` and, under ``adjust``, one replicate that zeroes it and multiplies
  the other PSUs by ``H/(H − 1)`` (``rscale (H − 1)/H``, ``H`` strata), as R.
* ``bootstrap`` — Rao and Wu's (1988) rescaled bootstrap with ``n_h − 1`` PSUs drawn with
  replacement in each stratum (R ``subbootweights``, ``as.svrepdesign(type =
  "subbootstrap")``): factor = draws × ``n_h/(n_h − 1)``, ``scale = 1/(R − 1)``. The draws come
  from ``random_state`` (numpy), so they differ from R's; the first-stage fpc is ignored (as R).
  A stratum with one PSU keeps factor 1 in every replicate (R gives ``NaN`` weights there).
* ``BRR`` and ``Fay`` (R ``brrweights``): strata of two PSUs form the half-sample pairs (a
  stratum with an even number of PSUs is split into pairs in their order of appearance, R's
  ``large = "split"``; pairs of split strata are numbered first, then the two-PSU strata, each
  group in sorted stratum order, as R); replicate ``i`` is column ``i`` of a Hadamard matrix
  ``H`` whose row ``k + 1`` says which half of pair ``k`` is kept: factor ``2 − ρ`` for the kept
  PSU and ``ρ`` for the other (``ρ = 0``: BRR). ``scale = 1/(R (1 − ρ)²)``. ``H`` is the
  user's ``hadamard`` (any two-valued matrix with at least ``pairs + 1`` rows; its first value
  in column order plays R's 0) or the smallest Sylvester or Paley matrix (R's ``paley``
  construction, doubled as R's ``hadamard.doubler``) of order ≥ ``pairs + 1``. The first-stage
  fpc is dropped (R warns).

Calibrated designs (the replicates would have to be recalibrated) and PPS designs are refused;
two-stage designs keep their first stage only (R's ``ultimate cluster``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalterritoire.design.common import _LOG, _Replicates
from evalterritoire.errors import DesignError

REPLICATE_METHODS = ("JK1", "JKn", "bootstrap", "BRR", "Fay")


def as_replicate(
    design: Any,
    type: str,
    *,
    replicates: int,
    rho: float | None,
    hadamard: Any,
    random_state: Any,
    mse: bool,
) -> Any:
    """A replicate-weight design built from a Taylor design (see ``SurveyDesign.as_replicate``)."""
    _check_design(design, type)
    if rho is not None and type != "Fay":
        raise DesignError(f"rho is only used by type='Fay' (got rho={rho} for {type!r})")
    psu_stratum = design._psu_stratum
    n_strata = int(design._n_strata)
    n_h = np.bincount(psu_stratum, minlength=n_strata)
    f_h = np.asarray(design._fpc_factor, dtype=float)
    if type == "JK1":
        if n_strata > 1:
            raise DesignError("JK1 needs an unstratified design (R); use JKn")
        factors, scale, rscales = _jk1(design._n_psu, float(f_h[0]))
    elif type == "JKn":
        factors, scale, rscales = _jkn(psu_stratum, n_h, f_h, design._lonely)
    elif type == "bootstrap":
        factors = _rao_wu(psu_stratum, n_h, int(replicates), np.random.default_rng(random_state))
        scale, rscales = 1.0 / (int(replicates) - 1), np.ones(int(replicates))
    else:
        fay = 0.0 if type == "BRR" else _fay_rho(rho)
        factors = _brr(design, psu_stratum, n_h, hadamard, fay)
        scale = 1.0 / (factors.shape[1] * (1.0 - fay) ** 2)
        rscales = np.ones(factors.shape[1])
        if design._spec.get("fpc") is not None:
            _LOG.warning("%s replicate weights: the finite population correction is dropped", type)
    if factors.shape[1] == 0:
        raise DesignError("no replicate: every stratum was sampled exhaustively")
    return _replicate_design(design, factors, float(scale), rscales, type, mse)


def _check_design(design: Any, type: str) -> None:
    if type not in REPLICATE_METHODS:
        raise DesignError(f"type must be one of {', '.join(REPLICATE_METHODS)}, got {type!r}")
    if design._rep is not None:
        raise DesignError("the design already uses replicate weights")
    if design._cal:
        raise DesignError(
            "create the replicate weights before calibrating (the replicates would have to be "
            "recalibrated, which replicate designs do not support here)"
        )
    if design._spec.get("pps") is not None:
        raise DesignError("replicate weights from a PPS design are not supported")
    if type in ("JKn", "BRR", "Fay") and design._n_strata < 2:
        raise DesignError(f"{type} needs a stratified design (R); use JK1 or bootstrap")


def _fay_rho(rho: float | None) -> float:
    if rho is None:
        raise DesignError("type='Fay' needs rho")
    if not 0 < float(rho) < 1:
        raise DesignError(f"Fay's rho must be in (0, 1), got {rho}")
    return float(rho)


# ----------------------------------------------------------------------------- jackknives
def _jk1(n: int, f: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Delete-one-PSU jackknife: ``(n_psu, n)`` factors, scale ``f (n − 1)/n``."""
    if n < 2:
        raise DesignError("JK1 needs at least two PSUs")
    factors = np.full((n, n), n / (n - 1.0))
    np.fill_diagonal(factors, 0.0)
    return factors, f * (n - 1.0) / n, np.ones(n)


def _jkn(
    psu_stratum: np.ndarray, n_h: np.ndarray, f_h: np.ndarray, lonely: str
) -> tuple[np.ndarray, float, np.ndarray]:
    """Stratified delete-one jackknife (R ``jknweights``)."""
    n_psu, n_strata = psu_stratum.size, n_h.size
    cols: list[np.ndarray] = []
    rscales: list[float] = []
    for h in range(n_strata):
        members = np.flatnonzero(psu_stratum == h)
        if n_h[h] == 1:
            if lonely == "adjust":
                col = np.where(psu_stratum == h, 0.0, n_strata / (n_strata - 1.0))
                cols.append(col)
                rscales.append((n_strata - 1.0) / n_strata)
            continue
        if f_h[h] == 0:  # exhaustively sampled: R drops its replicates
            continue
        for a in members:
            col = np.ones(n_psu)
            col[members] = n_h[h] / (n_h[h] - 1.0)
            col[a] = 0.0
            cols.append(col)
            rscales.append(f_h[h] * (n_h[h] - 1.0) / n_h[h])
    factors = np.column_stack(cols) if cols else np.empty((n_psu, 0))
    return factors, 1.0, np.asarray(rscales)


# ----------------------------------------------------------------------------- bootstrap
def _rao_wu(
    psu_stratum: np.ndarray, n_h: np.ndarray, replicates: int, rng: np.random.Generator
) -> np.ndarray:
    """Rao–Wu factors: ``n_h − 1`` draws with replacement per stratum, times ``n_h/(n_h − 1)``."""
    if replicates < 2:
        raise DesignError("the bootstrap needs at least 2 replicates")
    factors = np.ones((psu_stratum.size, replicates))
    for h in np.flatnonzero(n_h > 1):
        members = np.flatnonzero(psu_stratum == h)
        m = members.size
        draws = rng.integers(0, m, size=(m - 1, replicates))
        counts = np.zeros((m, replicates))
        np.add.at(counts, (draws, np.broadcast_to(np.arange(replicates), draws.shape)), 1.0)
        factors[members] = counts * m / (m - 1.0)
    return factors


# ----------------------------------------------------------------------------- BRR / Fay
def _brr(
    design: Any, psu_stratum: np.ndarray, n_h: np.ndarray, hadamard: Any, rho: float
) -> np.ndarray:
    """Half-sample factors ``(n_psu, R)`` from a Hadamard matrix (R ``brrweights``)."""
    if (n_h < 2).any() or (n_h % 2 == 1).any():
        raise DesignError(
            "BRR and Fay need two PSUs per stratum (or an even number, split into pairs)"
        )
    first_row = np.full(psu_stratum.size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_row, design._psu, np.arange(design._psu.size))
    labels = np.asarray([str(v) for v in _stratum_labels(design)], dtype=object)
    pair = np.empty(psu_stratum.size, dtype=np.int64)
    half = np.empty(psu_stratum.size, dtype=np.int64)  # 0: first of its pair, 1: second
    count = 0
    large = sorted((h for h in range(n_h.size) if n_h[h] > 2), key=lambda h: labels[h])
    small = sorted((h for h in range(n_h.size) if n_h[h] == 2), key=lambda h: labels[h])
    for h in [*large, *small]:
        members = np.flatnonzero(psu_stratum == h)
        members = members[np.argsort(first_row[members], kind="stable")]
        pair[members] = count + np.arange(members.size) // 2
        half[members] = np.arange(members.size) % 2
        count += members.size // 2
    h01 = _hadamard01(hadamard, count)
    keep_second = 1 - h01[1 + pair]  # (n_psu, R): R's 0 keeps the second PSU of the pair
    kept = np.where(half[:, None] == 1, keep_second, 1 - keep_second)
    return np.where(kept == 1, 2.0 - rho, rho)


def _stratum_labels(design: Any) -> list[Any]:
    col = design._spec.get("strata")
    if col is None:
        return ["(all)"]
    codes = design._strata
    first = np.full(design._n_strata, -1, dtype=np.int64)
    rows = np.arange(codes.size)[::-1]
    first[codes[rows]] = rows
    return list(design._data[col].iloc[first])


def _hadamard01(hadamard: Any, n_pairs: int) -> np.ndarray:
    """The 0/1 Hadamard matrix (first value in column order ↦ 0, as R) with ≥ n_pairs + 1 rows."""
    if hadamard is None:
        h = hadamard_matrix(n_pairs + 1)
    else:
        h = np.asarray(hadamard, dtype=float)
        if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] < n_pairs + 1:
            raise DesignError(
                f"hadamard must be a square matrix with at least {n_pairs + 1} rows "
                f"({n_pairs} pairs + 1)"
            )
    values = np.unique(h)
    if values.size != 2:
        raise DesignError("hadamard must hold exactly two distinct values")
    first = h.ravel(order="F")[0]
    h01 = np.where(h == first, 0, 1).astype(np.int64)
    pm = 2.0 * h01 - 1.0
    if not np.allclose(pm.T @ pm, h.shape[0] * np.eye(h.shape[0])):
        raise DesignError("hadamard is not a Hadamard matrix (columns not orthogonal)")
    return h01


def hadamard_matrix(order: int) -> np.ndarray:
    """The smallest 0/1 Hadamard matrix of order ≥ ``order`` built by Sylvester or Paley.

    Candidates: ``2^k`` (Sylvester doubling of ``[[1, 1], [1, 0]]``) and ``(p + 1) 2^k`` for
    primes ``p ≡ 3 (mod 4)`` (R's ``paley`` quadratic-residue construction, then R's
    ``hadamard.doubler``). The first row and column are all 1.
    """
    best: tuple[int, int, int] | None = None  # (size, p or 0, doublings)
    size = 2
    k = 1
    while size < order:
        size *= 2
        k += 1
    best = (size, 0, k - 1)
    for p in _primes_3_mod_4(2 * max(order, 4)):
        s, d = p + 1, 0
        while s < order:
            s *= 2
            d += 1
        if s < best[0]:
            best = (s, p, d)
    size, p, d = best
    h = np.array([[1, 1], [1, 0]], dtype=np.int64) if p == 0 else _paley(p)
    for _ in range(d):
        h = np.block([[h, h], [h, 1 - h]])
    return h


def _paley(p: int) -> np.ndarray:
    """R ``paley(prime = p)``: quadratic residues mod p, bordered by ones (0/1 coding)."""
    m = np.add.outer(np.arange(p), np.arange(p)) % p
    residues = {0, 1} | {(i * i) % p for i in range(2, (p - 1) // 2 + 1)}
    m = np.where(np.isin(m, sorted(residues)), 0, 1)
    out = np.ones((p + 1, p + 1), dtype=np.int64)
    out[1:, 1:] = m
    return out


def _primes_3_mod_4(limit: int) -> list[int]:
    sieve = np.ones(limit + 1, dtype=bool)
    sieve[:2] = False
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    return [int(p) for p in np.flatnonzero(sieve) if p % 4 == 3]


# ----------------------------------------------------------------------------- the design
def _replicate_design(
    design: Any, factors: np.ndarray, scale: float, rscales: np.ndarray, type: str, mse: bool
) -> Any:
    """A replicate design with weights ``w × factor[psu]`` (combined weights)."""
    base = design.__class__(design._data, lonely_psu="remove")
    w = np.array(design._w, dtype=float)
    psu = design._psu
    rep = w[:, None] * factors[psu]
    rounded = np.round(factors, 10) + 0.0
    _, first, inverse = np.unique(rounded, axis=0, return_index=True, return_inverse=True)
    pattern = inverse.reshape(-1)[psu].astype(np.int64)
    patterns = factors[first]
    rank = int(np.linalg.matrix_rank(factors, tol=1e-5 * np.abs(factors).max()))
    w.setflags(write=False)
    rscales = np.asarray(rscales, dtype=float)
    for arr in (rep, rscales, pattern, patterns):
        arr.setflags(write=False)
    info = _Replicates(rep, scale, rscales, bool(mse), type, pattern, patterns)
    calib = {"method": "none", "replicates_from": type, "n_replicates": int(factors.shape[1])}
    return base._copy(_w=w, _rep=info, _rep_df=rank - 1, _domain=design._domain, _calibration=calib)
