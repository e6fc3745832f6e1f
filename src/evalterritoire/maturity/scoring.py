"""Respondent scoring: :class:`MaturityScorer` (items → dimension scores) and its reliability.

Owns the item handling (reverse coding, codebook routing, special codes, the share rule; see
the scoring rules in :mod:`evalterritoire.maturity.compute`) and the reliability statistics computed
at ``fit``: Cronbach's alpha, item-rest correlations and alpha if an item is deleted.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from evalterritoire.codebook import Codebook
from evalterritoire.errors import MaturityError
from evalterritoire.maturity.common import MaturityWarning, present_column

#: Special codes meaning "the question did not apply to this respondent".
NOT_ASKED_CODES = frozenset({"filtre", "nc"})


def _dimension_items(codebook: Codebook) -> dict[str, list[str]]:
    return {
        dim: [v.id for v in codebook.dimension_items(dim) if not v.milestone]
        for dim in codebook.dimensions
    }


def _special_text(column: pd.Series) -> np.ndarray:
    """A special-code column as an object array of its strings, ``""`` where missing.

    A ``category`` column (the estimate step reads them so) is decoded from its codes, the
    same strings as ``astype("string")`` gives, without converting every row.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        labels = column.cat.categories.astype("string").to_numpy(dtype=object)
        return np.append(labels, "").astype(object)[column.cat.codes.to_numpy()]
    return column.astype("string").fillna("").to_numpy(dtype=object)


class MaturityScorer(TransformerMixin, BaseEstimator):
    """Respondent scores on the codebook's maturity dimensions, with reliability.

    Parameters
    ----------
    codebook : Codebook
        Gives the dimensions, their Likert items, reverse coding and routing.
    min_items : float or int or None
        Minimum share (float in (0, 1]) or number (int ≥ 1) of the asked items that must have a
        valid answer for a dimension score; None uses ``codebook.min_item_share``.
    min_alpha : float
        Cronbach's alpha below which a dimension is reported unreliable (with a warning).

    Attributes
    ----------
    items_ : dict of str to list of str
        Items scored for each dimension (codebook order).
    reliability_ : DataFrame
        One row per dimension (``item == ""``) and per item: ``dimension``, ``item``, ``n``
        (complete cases), ``n_items``, ``alpha``, ``item_rest_r``, ``alpha_if_deleted``,
        ``is_reliable``.
    unreliable_ : list of str
        Dimensions whose alpha is below ``min_alpha`` (or cannot be computed).
    """

    def __init__(
        self, codebook: Codebook, min_items: float | int | None = None, min_alpha: float = 0.6
    ) -> None:
        self.codebook = codebook
        self.min_items = min_items
        self.min_alpha = min_alpha

    # ------------------------------------------------------------------ helpers
    def _check_frame(self, X: Any) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise MaturityError("MaturityScorer expects a DataFrame of typed responses")
        items = [i for ids in _dimension_items(self.codebook).values() for i in ids]
        if not items:
            raise MaturityError("the codebook declares no Likert item in its maturity dimensions")
        missing = [i for i in items if i not in X.columns]
        if missing:
            raise MaturityError(
                f"{len(missing)} maturity item column(s) missing from the responses: "
                + ", ".join(missing[:8])
                + (" ..." if len(missing) > 8 else "")
            )
        return X

    def _item_arrays(
        self, X: pd.DataFrame, item: str, cache: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(value with reverse coding, is_asked, is_nsp) for one item."""
        var = self.codebook[item]
        value = pd.to_numeric(X[item], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        lo, hi = self.codebook.value_range(item)
        if lo is not None and hi is not None:
            value = np.where((value < lo) | (value > hi), np.nan, value)
            if var.reverse_coded:
                value = lo + hi - value
        special_col = f"{item}__special"
        if special_col in X.columns:
            special = _special_text(X[special_col])
        else:
            special = np.full(len(X), "", dtype=object)
        answered = ~np.isnan(value) | np.isin(special, ["nsp", "refus"])
        key = tuple(self.codebook[item].asked_to)
        cache = {} if cache is None else cache
        if key not in cache:
            cache[key] = self._routing(X, item)
        asked = (cache[key] | answered) & ~np.isin(special, list(NOT_ASKED_CODES))
        nsp = asked & (special == "nsp") & np.isnan(value)
        return value, asked, nsp

    def _routing(self, X: pd.DataFrame, item: str) -> np.ndarray:
        var = self.codebook[item]
        type_col = present_column(self.codebook, "respondent_type", X)
        if not var.asked_to or "all" in var.asked_to or type_col is None:
            return np.ones(len(X), dtype=bool)
        role_col = present_column(self.codebook, "respondent_role", X)
        rtype = X[type_col].astype("string").fillna("").to_numpy(dtype=object)
        role = (
            X[role_col].astype("string").fillna("").to_numpy(dtype=object)
            if role_col is not None
            else np.full(len(X), "", dtype=object)
        )
        pairs = pd.Series(list(zip(rtype, role, strict=True)), dtype=object)
        cache = {
            p: bool(
                self.codebook.groups_for({"respondent_type": p[0], "respondent_role": p[1]})
                & set(var.asked_to)
            )
            for p in pd.unique(pairs)
        }
        return pairs.map(cache).to_numpy(dtype=bool)

    def _min_needed(self, n_asked: np.ndarray) -> np.ndarray:
        rule = self.min_items if self.min_items is not None else self.codebook.min_item_share
        if isinstance(rule, bool) or not isinstance(rule, int | float):
            raise MaturityError(f"min_items must be a share in (0, 1] or a count ≥ 1, got {rule!r}")
        if isinstance(rule, int) and rule >= 1:
            return np.minimum(n_asked, rule)
        if not 0 < rule <= 1:
            raise MaturityError(f"min_items must be a share in (0, 1] or a count ≥ 1, got {rule!r}")
        return np.ceil(rule * n_asked - 1e-9)

    # ------------------------------------------------------------------ API
    def fit(self, X: pd.DataFrame, y: Any = None) -> MaturityScorer:
        """Check the columns and compute the reliability of each dimension.

        Parameters
        ----------
        X : DataFrame
            Typed responses (codebook columns).
        y : ignored

        Returns
        -------
        MaturityScorer
            ``self``.
        """
        X = self._check_frame(X)
        self._min_needed(np.ones(1))  # validates min_items early
        self.items_ = _dimension_items(self.codebook)
        rows = []
        unreliable = []
        cache: dict = {}
        for dim, items in self.items_.items():
            values = (
                np.column_stack([self._item_arrays(X, i, cache)[0] for i in items])
                if items
                else None
            )
            dim_rows = _reliability_rows(dim, items, values, self.min_alpha)
            if not dim_rows[0]["is_reliable"]:
                unreliable.append(dim)
            rows.extend(dim_rows)
        self.reliability_ = pd.DataFrame(rows)
        self.unreliable_ = unreliable
        if unreliable:
            warnings.warn(
                "unreliable maturity dimension(s) (Cronbach's alpha < "
                f"{self.min_alpha} or not computable): {', '.join(unreliable)}",
                MaturityWarning,
                stacklevel=2,
            )
        return self

    def score_details(self, X: pd.DataFrame) -> pd.DataFrame:
        """Scores plus, per dimension, the counts behind them.

        Returns
        -------
        DataFrame
            ``score_<dim>``, ``n_valid_<dim>``, ``n_asked_<dim>``, ``n_nsp_<dim>`` for each
            dimension, then ``score_global``; same index as ``X``.
        """
        check_is_fitted(self, "items_")
        X = self._check_frame(X)
        out: dict[str, np.ndarray] = {}
        scores = []
        cache: dict = {}
        for dim, items in self.items_.items():
            n = len(X)
            total = np.zeros(n)
            n_valid = np.zeros(n)
            n_asked = np.zeros(n)
            n_nsp = np.zeros(n)
            for item in items:
                value, asked, nsp = self._item_arrays(X, item, cache)
                valid = asked & ~np.isnan(value)
                total += np.where(valid, value, 0.0)
                n_valid += valid
                n_asked += asked
                n_nsp += nsp
            ok = (n_asked > 0) & (n_valid >= self._min_needed(n_asked)) & (n_valid > 0)
            score = np.where(ok, total / np.maximum(n_valid, 1), np.nan)
            out[f"score_{dim}"] = score
            out[f"n_valid_{dim}"] = n_valid
            out[f"n_asked_{dim}"] = n_asked
            out[f"n_nsp_{dim}"] = n_nsp
            scores.append(score)
        mat = np.column_stack(scores)
        finite = np.isfinite(mat)
        n_dims = finite.sum(axis=1)
        need = np.maximum(self._min_needed(np.full(len(X), float(mat.shape[1]))), 1)
        dim_total = np.where(finite, mat, 0.0).sum(axis=1)
        glob = np.where(n_dims >= need, dim_total / np.maximum(n_dims, 1), np.nan)
        out["score_global"] = glob
        return pd.DataFrame(out, index=X.index)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Respondent scores ``score_<dimension>`` (codebook order) and ``score_global``.

        Parameters
        ----------
        X : DataFrame
            Typed responses.

        Returns
        -------
        DataFrame
            Float columns, same index as ``X``; NaN where the share rule is not met.
        """
        details = self.score_details(X)
        cols = [f"score_{d}" for d in self.items_] + ["score_global"]
        return details[cols]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the columns :meth:`transform` returns."""
        check_is_fitted(self, "items_")
        return np.array([f"score_{d}" for d in self.items_] + ["score_global"], dtype=object)


def _cronbach(values: np.ndarray) -> float:
    """Cronbach's alpha of complete cases (rows) × items (columns), ddof = 1."""
    k = values.shape[1]
    if k < 2 or values.shape[0] < 2:
        return float("nan")
    item_var = values.var(axis=0, ddof=1).sum()
    total_var = values.sum(axis=1).var(ddof=1)
    if total_var <= 0:
        return float("nan")
    return float(k / (k - 1) * (1.0 - item_var / total_var))


def _reliability_rows(
    dim: str, items: Sequence[str], values: np.ndarray | None, min_alpha: float
) -> list[dict[str, Any]]:
    if values is None or not len(items):
        complete = np.empty((0, 0))
    else:
        complete = values[np.isfinite(values).all(axis=1)]
    alpha = _cronbach(complete) if complete.size else float("nan")
    reliable = bool(np.isfinite(alpha) and alpha >= min_alpha)
    rows = [
        {
            "dimension": dim,
            "item": "",
            "n": int(complete.shape[0]),
            "n_items": len(items),
            "alpha": alpha,
            "item_rest_r": float("nan"),
            "alpha_if_deleted": float("nan"),
            "is_reliable": reliable,
        }
    ]
    for j, item in enumerate(items):
        r = float("nan")
        a_del = float("nan")
        if complete.shape[0] >= 3 and len(items) >= 2:
            rest = np.delete(complete, j, axis=1)
            x, s = complete[:, j], rest.sum(axis=1)
            if x.std() > 0 and s.std() > 0:
                r = float(np.corrcoef(x, s)[0, 1])
            a_del = _cronbach(rest)
        rows.append(
            {
                "dimension": dim,
                "item": item,
                "n": int(complete.shape[0]),
                "n_items": len(items),
                "alpha": alpha,
                "item_rest_r": r,
                "alpha_if_deleted": a_del,
                "is_reliable": reliable,
            }
        )
    return rows
