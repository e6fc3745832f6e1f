"""Agreement between statistical stages and the stages actors declare themselves.

Owns Cohen's kappa (unweighted, linear, quadratic: :func:`compute_weighted_kappa`), the
agreement summary (:func:`compute_stage_agreement`) and the weighted modal declared stage of
each territory read from the responses (``_declared_stages``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.errors import MaturityError
from evalterritoire.maturity.common import present_column, territory_column


def compute_weighted_kappa(
    rater_a: Sequence[int], rater_b: Sequence[int], n_categories: int, weights: str | None
) -> float:
    """Cohen's kappa between two ratings on categories 0..n_categories-1.

    ``weights`` is None (unweighted), ``"linear"`` (|i - j|) or ``"quadratic"`` ((i - j)**2);
    the categories are all of 0..n_categories-1 even when some are unused. NaN when the
    expected disagreement is zero (both raters constant on the same category).
    """
    a = np.asarray(rater_a, dtype=int)
    b = np.asarray(rater_b, dtype=int)
    if a.shape != b.shape:
        raise MaturityError("the two ratings have different lengths")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_categories):
        raise MaturityError(f"ratings must lie in 0..{n_categories - 1}")
    obs = np.zeros((n_categories, n_categories))
    np.add.at(obs, (a, b), 1.0)
    if obs.sum() == 0:
        return float("nan")
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0)) / obs.sum()
    i, j = np.indices(obs.shape)
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j).astype(float)
    elif weights == "quadratic":
        w = ((i - j) ** 2).astype(float)
    else:
        raise MaturityError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    denom = (w * exp).sum()
    return float(1.0 - (w * obs).sum() / denom) if denom > 0 else float("nan")


def compute_stage_agreement(
    statistical: Sequence[int],
    declared: Sequence[Any],
    n_stages: int,
    n_declared: int | None = None,
) -> dict[str, Any]:
    """Agreement between statistical stages and the stages actors declare.

    Pairs with a missing stage on either side are left out (and counted).

    Parameters
    ----------
    statistical : sequence of int
        Statistical stage 0..n_stages-1 (missing allowed).
    declared : sequence of int
        Declared stage 0..n_declared-1 (missing allowed).
    n_stages : int
        Number of statistical stages.
    n_declared : int, optional
        Number of declared stages (default ``n_stages``). Kappas need the same categories on
        both sides: they are NaN when the numbers differ (e.g. ``n_stages="auto"`` chose 3).

    Returns
    -------
    dict
        ``confusion`` (DataFrame, rows = statistical, columns = declared), ``n``, ``n_missing``,
        ``agreement`` (share on the diagonal), ``kappa``, ``kappa_linear``, ``kappa_quadratic``.
    """
    m = n_stages if n_declared is None else int(n_declared)
    stat = pd.array(list(statistical), dtype="Int64")
    decl = pd.array(list(declared), dtype="Int64")
    ok = ~(pd.isna(stat) | pd.isna(decl))
    a = np.asarray(stat[ok], dtype=int)
    b = np.asarray(decl[ok], dtype=int)
    if a.size and (a.min() < 0 or a.max() >= n_stages or b.min() < 0 or b.max() >= m):
        raise MaturityError(f"stages must lie in 0..{n_stages - 1} and 0..{m - 1}")
    conf = np.zeros((n_stages, m), dtype=np.int64)
    np.add.at(conf, (a, b), 1)
    same = m == n_stages
    nan = float("nan")
    return {
        "confusion": pd.DataFrame(
            conf,
            index=pd.RangeIndex(n_stages, name="stage"),
            columns=pd.RangeIndex(m, name="stage_declared"),
        ),
        "n": int(ok.sum()),
        "n_missing": int((~ok).sum()),
        "agreement": float(np.trace(conf) / conf.sum()) if same and conf.sum() else nan,
        "kappa": compute_weighted_kappa(a, b, m, None) if same else nan,
        "kappa_linear": compute_weighted_kappa(a, b, m, "linear") if same else nan,
        "kappa_quadratic": compute_weighted_kappa(a, b, m, "quadratic") if same else nan,
    }


def _declared_stages(
    responses: pd.DataFrame, codebook: Codebook, weights: np.ndarray, codes: Sequence[str]
) -> pd.array:
    """Weighted modal self-declared stage per territory (0-based; ties → the lower stage)."""
    declared = present_column(codebook, "declared_stage", responses)
    if declared is None:
        return pd.array([pd.NA] * len(codes), dtype="Int64")
    lo, _ = codebook.value_range(declared)
    value = pd.to_numeric(responses[declared], errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    ) - (lo if lo is not None else 1)
    territory = territory_column(codebook, responses)
    frame = pd.DataFrame(
        {
            "t": responses[territory].astype("string").to_numpy(dtype=object),
            "s": value,
            "w": weights,
        }
    ).dropna()
    frame = frame[frame["s"] >= 0]
    tab = frame.groupby(["t", "s"])["w"].sum().reset_index()
    tab = tab.sort_values(["t", "w", "s"], ascending=[True, False, True], kind="mergesort")
    modal = tab.drop_duplicates("t").set_index("t")["s"]
    return pd.array([int(modal[c]) if c in modal.index else pd.NA for c in codes], dtype="Int64")
