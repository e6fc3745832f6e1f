"""Maturity: dimension scores, reliability, territory profiles, ordered stages, transitions.

Flow (one wave)::

    typed responses ──MaturityScorer──► respondent scores score_<dim>, score_global
                    ──compute_profiles──► territory profiles (design-weighted means ± SE)
                    ──MaturityClustering──► ordered stages (0 = least mature)

Across waves the stage definitions are fitted on a reference wave and applied to the later ones
(or refitted and matched to the reference centroids with the Hungarian algorithm), so that a
stage name means the same thing every year. :func:`compute_maturity` is the pipeline entry.

Scoring rules
-------------
* A dimension's items are its Likert items in the codebook (milestones excluded). Reverse-coded
  items are mirrored on their scale (``min + max - x``).
* An item is *asked* to a respondent when the codebook routing (``asked_to`` groups, from
  ``id_type_repondant`` and ``prof_role_demarche``) includes them or they answered it anyway
  (a value, "ne sait pas" or a refusal), and the answer is not the special code ``filtre`` or
  ``nc``. The dimension score is the mean of the valid answers when
  at least ``min_items`` of the asked items have one (share, default the codebook's
  ``scoring.min_item_share``); "ne sait pas" never enters a mean but its share is kept.
* ``score_global`` is the mean of the available dimension scores under the same share rule.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from .codebook import Codebook
from .config import DEFAULT_STAGE_NAMES, MaturityConfig
from .errors import MaturityError

__all__ = [
    "CLUSTER_METHODS",
    "MaturityClustering",
    "MaturityInputError",
    "MaturityResult",
    "MaturityScorer",
    "MaturityWarning",
    "compute_maturity",
    "compute_profiles",
    "compute_stage_agreement",
    "compute_transition_matrix",
    "compute_transitions",
    "compute_weighted_kappa",
    "match_stages",
]

CLUSTER_METHODS = ("kmeans", "gmm", "ward")
#: Draws per territory for :func:`stage_robustness`.
ROBUSTNESS_DRAWS = 400
TERRITORY_COL = "id_territoire_code"
NAME_COL = "id_territoire_nom"
TYPE_COL = "id_type_repondant"
ROLE_COL = "prof_role_demarche"
DECLARED_COL = "stade_auto"
#: Special codes meaning "the question did not apply to this respondent".
NOT_ASKED_CODES = frozenset({"filtre", "nc"})


class MaturityWarning(UserWarning):
    """A maturity result needs care (unreliable dimension, imputed profile...)."""


class MaturityInputError(MaturityError, ValueError):
    """Invalid data given to an estimator (also a ValueError, as scikit-learn expects)."""


# =========================================================================== scoring
def _dimension_items(codebook: Codebook) -> dict[str, list[str]]:
    return {
        dim: [v.id for v in codebook.dimension_items(dim) if not v.milestone]
        for dim in codebook.dimensions
    }


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
            special = X[special_col].astype("string").fillna("").to_numpy(dtype=object)
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
        if not var.asked_to or "all" in var.asked_to or TYPE_COL not in X.columns:
            return np.ones(len(X), dtype=bool)
        rtype = X[TYPE_COL].astype("string").fillna("").to_numpy(dtype=object)
        role = (
            X[ROLE_COL].astype("string").fillna("").to_numpy(dtype=object)
            if ROLE_COL in X.columns
            else np.full(len(X), "", dtype=object)
        )
        pairs = pd.Series(list(zip(rtype, role, strict=True)), dtype=object)
        cache = {
            p: bool(self.codebook.groups_for(p[0] or None, p[1] or None) & set(var.asked_to))
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


# =========================================================================== profiles
def _weights_and_variance(design: Any, n: int):
    """Weights (n,) and a function z (n, p) -> variances (p,) of weighted totals.

    With a design exposing ``variance_of_totals`` (design.py: strata, PSUs, fpc, lonely-PSU
    rule, calibration), its linearisation variance is used. Otherwise (no design, or a design
    without that method) the with-replacement estimator treating every respondent as its own
    PSU is used: ``var = n / (n - 1) * sum((z_i - mean(z))**2)``.
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
    var_fn = getattr(design, "variance_of_totals", None)

    def variance(z: np.ndarray) -> np.ndarray:
        if z.shape[1] == 0:
            return np.zeros(0)
        if callable(var_fn):
            return np.diag(np.atleast_2d(np.asarray(var_fn(z), dtype=float))).copy()
        if n < 2:
            return np.full(z.shape[1], np.nan)
        centred = z - z.mean(axis=0)
        return n / (n - 1) * (centred**2).sum(axis=0)

    return weights, variance


def _domain_means(y: np.ndarray, w: np.ndarray, idx: np.ndarray, n_dom: int, variance):
    """Weighted domain means of the columns of ``y`` (NaN = missing) with linearised SEs.

    Domain estimation keeps the full design: the linearised variable of domain d is zero
    outside d (R ``svyby`` semantics), ``z_i = w_i 1[i in d, y_i valid] (y_i - ybar_d) / N_d``.
    """
    n, p = y.shape
    valid = np.isfinite(y)
    mean = np.full((n_dom, p), np.nan)
    se = np.full((n_dom, p), np.nan)
    counts = np.zeros((n_dom, p))
    rows = np.arange(n)
    for j in range(p):
        ok = valid[:, j]
        wv = np.where(ok, w, 0.0)
        y0 = np.where(ok, y[:, j], 0.0)
        n_hat = np.bincount(idx, weights=wv, minlength=n_dom)
        total = np.bincount(idx, weights=wv * y0, minlength=n_dom)
        counts[:, j] = np.bincount(idx, weights=ok.astype(float), minlength=n_dom)
        has = n_hat > 0
        m = np.divide(total, n_hat, out=np.full(n_dom, np.nan), where=has)
        z = np.zeros((n, n_dom))
        safe_n = np.where(has, n_hat, 1.0)
        z[rows, idx] = wv * (y0 - np.nan_to_num(m)[idx]) / safe_n[idx]
        var = variance(z)
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

    Parameters
    ----------
    responses : DataFrame
        Typed responses of one wave (``id_territoire_code`` required).
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
    if TERRITORY_COL not in responses.columns:
        raise MaturityError(f"responses have no territory column '{TERRITORY_COL}'")
    codes_all = responses[TERRITORY_COL].astype("string")
    if codes_all.isna().any():
        raise MaturityError(f"{int(codes_all.isna().sum())} response(s) without a territory code")
    details = scorer.score_details(responses)
    weights, variance = _weights_and_variance(design, len(responses))
    codes = sorted(codes_all.unique().tolist())
    idx = pd.Categorical(codes_all, categories=codes).codes.astype(int)
    dims = list(scorer.items_)
    score_cols = [f"score_{d}" for d in dims] + ["score_global"]
    y = details[score_cols].to_numpy(dtype=float)
    mean, se, counts = _domain_means(y, weights, idx, len(codes), variance)

    out: dict[str, Any] = {}
    if wave is not None:
        out["wave"] = np.full(len(codes), int(wave), dtype=np.int64)
    out["territory"] = pd.array(codes, dtype="string")
    if NAME_COL in responses.columns:
        names = (
            pd.DataFrame({"t": codes_all, "name": responses[NAME_COL].astype("string")})
            .dropna()
            .groupby("t")["name"]
            .agg(lambda s: s.value_counts().sort_index().idxmax())
        )
        out["territory_name"] = pd.array([names.get(c, c) for c in codes], dtype="string")
    else:
        out["territory_name"] = pd.array(codes, dtype="string")
    scored = np.isfinite(y[:, :-1]).any(axis=1)
    out["n"] = np.bincount(idx[scored], minlength=len(codes)).astype(np.int64)
    out["n_respondents"] = np.bincount(idx, minlength=len(codes)).astype(np.int64)
    rtype = (
        responses[TYPE_COL].astype("string")
        if TYPE_COL in responses.columns
        else pd.Series(pd.NA, index=responses.index, dtype="string")
    )
    out["n_types"] = (
        pd.DataFrame({"i": idx, "t": rtype})
        .dropna()
        .groupby("i")["t"]
        .nunique()
        .reindex(range(len(codes)), fill_value=0)
        .to_numpy(dtype=np.int64)
    )
    nsp = details[[f"n_nsp_{d}" for d in dims]].to_numpy(dtype=float)
    asked = details[[f"n_asked_{d}" for d in dims]].to_numpy(dtype=float)
    w_nsp = np.zeros((len(codes), len(dims)))
    w_asked = np.zeros((len(codes), len(dims)))
    np.add.at(w_nsp, idx, weights[:, None] * nsp)
    np.add.at(w_asked, idx, weights[:, None] * asked)
    with np.errstate(invalid="ignore", divide="ignore"):
        nsp_dim = np.where(w_asked > 0, w_nsp / w_asked, np.nan)
        nsp_all = np.where(w_asked.sum(axis=1) > 0, w_nsp.sum(axis=1) / w_asked.sum(axis=1), np.nan)
    for j, d in enumerate(dims):
        out[f"score_{d}"] = mean[:, j]
        out[f"se_{d}"] = se[:, j]
        out[f"n_{d}"] = counts[:, j].astype(np.int64)
        out[f"nsp_{d}"] = nsp_dim[:, j]
    out["score_global"] = mean[:, -1]
    out["se_global"] = se[:, -1]
    out["nsp_share"] = nsp_all
    type_var = scorer.codebook.by_role("respondent_type")
    for key in type_var.options if type_var is not None else ():
        out[f"n_type_{key}"] = np.bincount(
            idx[(rtype == key).fillna(False).to_numpy(dtype=bool)], minlength=len(codes)
        ).astype(np.int64)
    return pd.DataFrame(out)


# =========================================================================== clustering
def _generic_names(k: int) -> tuple[str, ...]:
    return tuple(f"Stade {i + 1}" for i in range(k))


class MaturityClustering(ClusterMixin, TransformerMixin, BaseEstimator):
    """Territories clustered into stages ordered by maturity (0 = least mature).

    Parameters
    ----------
    n_stages : int or "auto"
        Number of stages, or ``"auto"``: k in ``k_range`` chosen by the best silhouette
        (k-means, Ward) or the lowest BIC (Gaussian mixture); the diagnostics are in
        ``selection_``.
    method : {"kmeans", "gmm", "ward"}
        K-means, Gaussian mixture (diagonal covariances) or Ward hierarchical clustering.
    stage_names : sequence of str or None
        One name per stage, least mature first. None: the default names (émergence,
        structuration, consolidation, essaimage) for 4 stages, "Stade i" otherwise; names of the
        wrong length (possible with ``"auto"``) also fall back to "Stade i".
    random_state : int
        Seed of every random draw (initialisations, bootstrap).
    n_init : int
        Initialisations of k-means / the mixture.
    n_bootstrap : int
        Bootstrap resamples for the stability index (0 disables it).
    k_range : tuple of int
        Smallest and largest k tried by ``"auto"``.

    Attributes
    ----------
    n_stages_ : int
    stage_names_ : tuple of str
    labels_ : ndarray of int
        Stage of every fitted row (input order).
    cluster_centers_ : ndarray (n_stages_, n_features)
        Stage centroids in standardised units, least mature first.
    centers_ : ndarray (n_stages_, n_features)
        The same centroids in the input units.
    scaler_ : StandardScaler
    model_ : fitted scikit-learn estimator (components in the algorithm's own numbering)
    order_ : ndarray of int
        ``order_[s]`` is the algorithm's component number of stage ``s``.
    silhouette_ : float
    bic_ : float (NaN unless ``method == "gmm"``)
    stability_ : float
        Mean adjusted Rand index between the fitted stages and the stages from refits on
        bootstrap resamples of the rows (NaN when ``n_bootstrap == 0``).
    stability_scores_ : ndarray
    selection_ : DataFrame
        ``k``, ``silhouette``, ``bic`` for each k tried (one row when k is fixed).
    within_var_ : float
        Pooled within-stage variance per standardised feature (soft memberships).

    Notes
    -----
    Rows are sorted by their values before fitting (and labels mapped back), so the result
    does not depend on row order; with a given ``random_state`` it is identical run to run.
    """

    def __init__(
        self,
        n_stages: int | str = 4,
        method: str = "kmeans",
        stage_names: Sequence[str] | None = None,
        random_state: int = 0,
        n_init: int = 10,
        n_bootstrap: int = 50,
        k_range: tuple[int, int] = (2, 6),
    ):
        self.n_stages = n_stages
        self.method = method
        self.stage_names = stage_names
        self.random_state = random_state
        self.n_init = n_init
        self.n_bootstrap = n_bootstrap
        self.k_range = k_range

    # ------------------------------------------------------------------ internals
    def _check_params(self) -> None:
        if self.method not in CLUSTER_METHODS:
            raise MaturityError(
                f"method must be one of {', '.join(CLUSTER_METHODS)}, got {self.method!r}"
            )
        k = self.n_stages
        if not (
            k == "auto" or (isinstance(k, int | np.integer) and not isinstance(k, bool) and k >= 2)
        ):
            raise MaturityError(f'n_stages must be an integer ≥ 2 or "auto", got {k!r}')
        if not isinstance(self.n_bootstrap, int | np.integer) or self.n_bootstrap < 0:
            raise MaturityError(f"n_bootstrap must be an integer ≥ 0, got {self.n_bootstrap!r}")

    def _fit_raw(self, Z: np.ndarray, k: int, seed: int):
        """Fit the algorithm on standardised rows; return (model, raw labels, raw centroids).

        Native thread pools are limited to one thread: on tens of territories the OpenMP
        start-up dominates (about 20× slower on a shared machine) and one thread also keeps
        the result independent of the machine's core count.
        """
        with threadpool_limits(limits=1):
            return self._fit_raw_unlimited(Z, k, seed)

    def _fit_raw_unlimited(self, Z: np.ndarray, k: int, seed: int):
        if self.method == "kmeans":
            model = KMeans(n_clusters=k, n_init=self.n_init, random_state=seed).fit(Z)
            return model, model.labels_, model.cluster_centers_
        if self.method == "gmm":
            model = GaussianMixture(
                n_components=k, covariance_type="diag", n_init=self.n_init, random_state=seed
            ).fit(Z)
            return model, model.predict(Z), model.means_
        model = AgglomerativeClustering(n_clusters=k, linkage="ward").fit(Z)
        centers = np.vstack([Z[model.labels_ == c].mean(axis=0) for c in range(k)])
        return model, model.labels_, centers

    def _raw_predict(self, model, centers: np.ndarray, Z: np.ndarray) -> np.ndarray:
        if self.method == "gmm":
            return model.predict(Z)
        d2 = ((Z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        return d2.argmin(axis=1)

    def _prepare(self, X: Any, *, reset: bool) -> np.ndarray:
        try:
            arr = validate_data(self, X, reset=reset, dtype=np.float64)
        except ValueError as exc:
            raise MaturityInputError(f"invalid profiles for clustering: {exc}") from None
        return np.asarray(arr, dtype=float)

    # ------------------------------------------------------------------ API
    def fit(self, X: Any, y: Any = None) -> MaturityClustering:
        """Standardise, cluster, order the stages by maturity and measure stability.

        Parameters
        ----------
        X : array-like or DataFrame (n_territories, n_features)
            Territory profiles (higher = more mature on every feature), no missing values.
        y : ignored

        Returns
        -------
        MaturityClustering
            ``self``.
        """
        self._check_params()
        A = self._prepare(X, reset=True)
        n = A.shape[0]
        order = np.lexsort(A.T[::-1]) if A.shape[1] else np.arange(n)
        S = A[order]
        n_distinct = len(np.unique(S, axis=0))
        self.scaler_ = StandardScaler().fit(S)
        Z = self.scaler_.transform(S)
        seed = int(self.random_state)
        if self.n_stages == "auto":
            lo, hi = self.k_range
            ks = list(range(max(2, int(lo)), min(int(hi), n_distinct - 1) + 1))
            if not ks:
                raise MaturityInputError(
                    f"too few distinct territories ({n_distinct}, {n} sample(s)) to choose k"
                )
        else:
            ks = [int(self.n_stages)]
            if n_distinct <= ks[0]:
                raise MaturityInputError(
                    f"{n_distinct} distinct territory profile(s) ({n} sample(s)) cannot form "
                    f"{ks[0]} stages"
                )
        rows = []
        fits = {}
        for k in ks:
            model, raw, centers = self._fit_raw(Z, k, seed)
            n_lab = len(np.unique(raw))
            sil = float(silhouette_score(Z, raw)) if 1 < n_lab < n else float("nan")
            bic = float(model.bic(Z)) if self.method == "gmm" else float("nan")
            rows.append({"k": k, "silhouette": sil, "bic": bic})
            fits[k] = (model, raw, centers)
        self.selection_ = pd.DataFrame(rows)
        if len(ks) == 1:
            k = ks[0]
        elif self.method == "gmm":
            k = int(self.selection_.loc[self.selection_["bic"].idxmin(), "k"])
        else:
            k = int(self.selection_.loc[self.selection_["silhouette"].fillna(-2).idxmax(), "k"])
        model, raw, centers = fits[k]
        # Order the components by maturity: mean standardised score of the centroid.
        comp_order = np.argsort(centers.mean(axis=1), kind="stable")
        rank = np.empty(k, dtype=int)
        rank[comp_order] = np.arange(k)
        self.model_ = model
        self.order_ = comp_order
        self.n_stages_ = k
        self.cluster_centers_ = centers[comp_order]
        self.centers_ = self.scaler_.inverse_transform(self.cluster_centers_)
        labels_sorted = rank[raw]
        labels = np.empty(n, dtype=np.int64)
        labels[order] = labels_sorted
        self.labels_ = labels
        sel = self.selection_.set_index("k")
        self.silhouette_ = float(sel.loc[k, "silhouette"])
        self.bic_ = float(sel.loc[k, "bic"])
        names = tuple(self.stage_names) if self.stage_names is not None else None
        if names is None and k == len(DEFAULT_STAGE_NAMES):
            names = DEFAULT_STAGE_NAMES
        self.stage_names_ = names if names is not None and len(names) == k else _generic_names(k)
        d2 = ((Z - self.cluster_centers_[labels_sorted]) ** 2).sum(axis=1)
        dof = max(n - k, 1) * Z.shape[1]
        self.within_var_ = float(max(d2.sum() / dof, 1e-12))
        self._bootstrap(Z, labels_sorted, k, seed)
        return self

    def _bootstrap(self, Z: np.ndarray, labels: np.ndarray, k: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        scores = []
        n = Z.shape[0]
        for _ in range(int(self.n_bootstrap)):
            pick = np.sort(rng.integers(0, n, n))
            if len(np.unique(Z[pick], axis=0)) <= k:
                continue
            sub_seed = int(rng.integers(0, 2**31 - 1))
            model, _, centers = self._fit_raw(Z[pick], k, sub_seed)
            scores.append(adjusted_rand_score(labels, self._raw_predict(model, centers, Z)))
        self.stability_scores_ = np.asarray(scores, dtype=float)
        self.stability_ = float(self.stability_scores_.mean()) if scores else float("nan")

    def predict(self, X: Any) -> np.ndarray:
        """Stage (0 = least mature) of each row.

        k-means and Ward: nearest stage centroid in standardised units; mixture: the most
        probable component.
        """
        check_is_fitted(self, "cluster_centers_")
        Z = self.scaler_.transform(self._prepare(X, reset=False))
        if self.method == "gmm":
            rank = np.empty(self.n_stages_, dtype=int)
            rank[self.order_] = np.arange(self.n_stages_)
            return rank[self.model_.predict(Z)].astype(np.int64)
        return self.transform(X).argmin(axis=1).astype(np.int64)

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance of each row to each stage centroid (standardised units)."""
        check_is_fitted(self, "cluster_centers_")
        Z = self.scaler_.transform(self._prepare(X, reset=False))
        return np.sqrt(((Z[:, None, :] - self.cluster_centers_[None, :, :]) ** 2).sum(axis=2))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each stage (columns least mature first).

        Mixture: the model's posterior. k-means and Ward: the posterior of an equal-weight
        spherical Gaussian model centred on the stage centroids with the pooled within-stage
        variance (``within_var_``), i.e. ``softmax(-d**2 / (2 * within_var_))``.
        """
        check_is_fitted(self, "cluster_centers_")
        if self.method == "gmm":
            Z = self.scaler_.transform(self._prepare(X, reset=False))
            return self.model_.predict_proba(Z)[:, self.order_]
        logits = -(self.transform(X) ** 2) / (2.0 * self.within_var_)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit and return ``labels_``."""
        return self.fit(X).labels_


def match_stages(reference: MaturityClustering, other: MaturityClustering) -> np.ndarray:
    """Map the stages of ``other`` onto those of ``reference`` (Hungarian algorithm).

    The cost of pairing stage i of the reference with stage j of ``other`` is the squared
    distance between their centroids, both expressed in the reference's standardised units.

    Returns
    -------
    ndarray of int
        ``mapping[j]`` is the reference stage of ``other``'s stage ``j``.
    """
    check_is_fitted(reference, "cluster_centers_")
    check_is_fitted(other, "cluster_centers_")
    if reference.n_stages_ != other.n_stages_:
        raise MaturityError(
            f"cannot match {other.n_stages_} stages onto {reference.n_stages_} reference stages"
        )
    mine = reference.scaler_.transform(other.centers_)
    cost = ((reference.cluster_centers_[:, None, :] - mine[None, :, :]) ** 2).sum(axis=2)
    ref_idx, other_idx = linear_sum_assignment(cost)
    mapping = np.empty(other.n_stages_, dtype=np.int64)
    mapping[other_idx] = ref_idx
    return mapping


# =========================================================================== waves
def compute_transitions(stages: pd.DataFrame, stage_names: Sequence[str]) -> pd.DataFrame:
    """Stage changes between consecutive waves.

    Parameters
    ----------
    stages : DataFrame
        ``territory``, ``wave``, ``stage`` (int, NA allowed) for every territory and wave.
    stage_names : sequence of str
        Stage labels, least mature first.

    Returns
    -------
    DataFrame
        ``territory``, ``from_wave``, ``to_wave``, ``from_stage``, ``to_stage``, ``from_label``,
        ``to_label``, ``changed`` for each territory staged in two consecutive waves of the table;
        sorted by ``from_wave``, ``territory``.
    """
    cols = ["territory", "from_wave", "to_wave", "from_stage", "to_stage", "from_label",
            "to_label", "changed"]  # fmt: skip
    missing = {"territory", "wave", "stage"} - set(stages.columns)
    if missing:
        raise MaturityError(f"stage table lacks column(s) {', '.join(sorted(missing))}")
    st = stages[["territory", "wave", "stage"]].dropna()
    st = st.assign(territory=st["territory"].astype("string"), wave=st["wave"].astype(int),
                   stage=st["stage"].astype(int))  # fmt: skip
    waves = sorted(st["wave"].unique().tolist())
    parts = []
    for w0, w1 in itertools.pairwise(waves):
        a = st[st["wave"] == w0].rename(columns={"stage": "from_stage"}).drop(columns="wave")
        b = st[st["wave"] == w1].rename(columns={"stage": "to_stage"}).drop(columns="wave")
        m = a.merge(b, on="territory", how="inner")
        m["from_wave"], m["to_wave"] = w0, w1
        parts.append(m)
    if not parts:
        out = pd.DataFrame({c: pd.Series(dtype="int64") for c in cols})
        for c in ("territory", "from_label", "to_label"):
            out[c] = out[c].astype("string")
        return out.assign(changed=out["changed"].astype(bool))
    out = pd.concat(parts, ignore_index=True)
    names = list(stage_names)

    def label(s: int) -> str:
        return names[s] if 0 <= s < len(names) else f"Stade {s + 1}"

    out["from_label"] = pd.array([label(s) for s in out["from_stage"]], dtype="string")
    out["to_label"] = pd.array([label(s) for s in out["to_stage"]], dtype="string")
    out["changed"] = (out["from_stage"] != out["to_stage"]).astype(bool)
    out = out.astype({"from_wave": "int64", "to_wave": "int64", "from_stage": "int64",
                      "to_stage": "int64"})  # fmt: skip
    return (
        out[cols].sort_values(["from_wave", "territory"], kind="mergesort").reset_index(drop=True)
    )


def compute_transition_matrix(
    transitions: pd.DataFrame, n_stages: int, *, normalize: bool = False
) -> pd.DataFrame:
    """Counts (or row shares) of territories from stage i (rows) to stage j (columns)."""
    mat = np.zeros((n_stages, n_stages))
    for a, b in zip(transitions["from_stage"], transitions["to_stage"], strict=True):
        if 0 <= a < n_stages and 0 <= b < n_stages:
            mat[int(a), int(b)] += 1
    if normalize:
        rows = mat.sum(axis=1, keepdims=True)
        mat = np.divide(mat, rows, out=np.full_like(mat, np.nan), where=rows > 0)
    frame = pd.DataFrame(mat, index=pd.RangeIndex(n_stages, name="from_stage"),
                         columns=pd.RangeIndex(n_stages, name="to_stage"))  # fmt: skip
    return frame if normalize else frame.astype(np.int64)


# =========================================================================== agreement
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
    if DECLARED_COL not in responses.columns or DECLARED_COL not in codebook:
        return pd.array([pd.NA] * len(codes), dtype="Int64")
    lo, _ = codebook.value_range(DECLARED_COL)
    value = pd.to_numeric(responses[DECLARED_COL], errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    ) - (lo if lo is not None else 1)
    frame = pd.DataFrame(
        {
            "t": responses[TERRITORY_COL].astype("string").to_numpy(dtype=object),
            "s": value,
            "w": weights,
        }
    ).dropna()
    frame = frame[frame["s"] >= 0]
    tab = frame.groupby(["t", "s"])["w"].sum().reset_index()
    tab = tab.sort_values(["t", "w", "s"], ascending=[True, False, True], kind="mergesort")
    modal = tab.drop_duplicates("t").set_index("t")["s"]
    return pd.array([int(modal[c]) if c in modal.index else pd.NA for c in codes], dtype="Int64")


# =========================================================================== pipeline entry
@dataclass(frozen=True)
class MaturityResult:
    """Everything the maturity step produces (see docs/artefacts.md).

    Attributes
    ----------
    maturity : DataFrame
        One row per territory of the requested wave (``maturity.parquet``).
    transitions : DataFrame
        Stage changes between consecutive waves given (``transitions.parquet``).
    profiles : DataFrame
        Territory profiles of every wave given, with their stages.
    reliability : DataFrame
        Cronbach's alpha and item-rest correlations, per wave, dimension and item.
    diagnostics : dict
        JSON-ready: chosen k, k selection table, silhouette, bootstrap stability (mean ARI),
        agreement with declared stages (kappa), stage counts, alphas, centroids...
    clustering : MaturityClustering
        The estimator fitted on the reference wave.
    """

    maturity: pd.DataFrame
    transitions: pd.DataFrame
    profiles: pd.DataFrame
    reliability: pd.DataFrame
    diagnostics: dict[str, Any]
    clustering: MaturityClustering | None = field(default=None, compare=False, repr=False)


class _PermutedDesign:
    """A design seen through a row permutation (rows ``perm`` of the original, in order)."""

    def __init__(self, design: Any, perm: np.ndarray) -> None:
        self._design = design
        self._perm = perm
        self.weights = np.asarray(design.weights, dtype=float).reshape(-1)[perm]
        if callable(getattr(design, "variance_of_totals", None)):
            self.variance_of_totals = self._variance_of_totals

    def _variance_of_totals(self, z: np.ndarray) -> np.ndarray:
        original = np.empty_like(z)
        original[self._perm] = z
        return self._design.variance_of_totals(original)


def _canonical_order(responses: pd.DataFrame, design: Any) -> tuple[pd.DataFrame, Any]:
    """Rows sorted by territory and respondent id, so results never depend on row order."""
    if TERRITORY_COL not in responses.columns:
        raise MaturityError(f"responses have no territory column '{TERRITORY_COL}'")
    keys = [TERRITORY_COL] + (["id_repondant"] if "id_repondant" in responses.columns else [])
    frame = responses[keys].astype("string").reset_index(drop=True)
    perm = frame.sort_values(keys, kind="mergesort", na_position="last").index.to_numpy()
    if design is not None:
        n_w = np.asarray(getattr(design, "weights", None), dtype=float).reshape(-1).size
        if n_w != len(responses):
            raise MaturityError(
                f"the design has {n_w} weights for {len(responses)} responses: build it on "
                "the same responses"
            )
        design = _PermutedDesign(design, perm)
    return responses.iloc[perm].reset_index(drop=True), design


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def stage_robustness(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    se: np.ndarray,
    stages: np.ndarray,
    *,
    n_draws: int = ROBUSTNESS_DRAWS,
    seed: int = 0,
) -> np.ndarray:
    """Share of profiles drawn within their sampling error that keep their stage.

    For each territory, ``n_draws`` profiles are drawn from a normal distribution centred on
    its estimated dimension scores with its design-based standard errors (independent
    dimensions; a missing SE counts as 0) and classified with the fitted stage definitions.
    Unlike the clustering's posterior probability, which compares a territory with the spread
    *between* territories, this reflects how precisely the territory itself is measured: a
    territory with few respondents near a stage boundary gets a low value.

    Parameters
    ----------
    predict : callable
        Maps an (m, p) array of profiles to stage numbers (a fitted ``predict``).
    X, se : ndarray of shape (n, p)
        Estimated scores and their standard errors.
    stages : ndarray of shape (n,)
        The stage each territory was given.
    n_draws : int
        Draws per territory.
    seed : int
        Seed of the draws (rows are in canonical order, so the result is order invariant).

    Returns
    -------
    ndarray of shape (n,)
        Share of draws classified in ``stages`` (between 0 and 1).
    """
    X = np.asarray(X, dtype=float)
    sd = np.nan_to_num(np.asarray(se, dtype=float), nan=0.0)
    rng = np.random.default_rng(seed)
    out = np.empty(len(X))
    chunk = max(1, 200_000 // max(n_draws, 1))  # bounded memory for many territories
    for start in range(0, len(X), chunk):
        x, s = X[start : start + chunk], sd[start : start + chunk]
        draws = x[None] + rng.standard_normal((n_draws, *x.shape)) * s[None]
        pred = np.asarray(predict(draws.reshape(-1, X.shape[1]))).reshape(n_draws, len(x))
        out[start : start + chunk] = (pred == np.asarray(stages)[start : start + chunk]).mean(0)
    return out


def compute_maturity(
    responses_by_wave: Mapping[int, pd.DataFrame],
    designs_by_wave: Mapping[int, Any],
    codebook: Codebook,
    maturity_cfg: MaturityConfig,
    *,
    wave: int,
    min_n: int,
    random_state: int,
) -> MaturityResult:
    """Score, profile, cluster and track territories across the waves given.

    Stage definitions are fitted on ``maturity_cfg.reference_wave`` (default: the earliest wave
    given) and applied to the other waves; with ``maturity_cfg.refit`` each wave is clustered
    anew and its stages matched to the reference centroids (Hungarian algorithm).

    Parameters
    ----------
    responses_by_wave : mapping of int to DataFrame
        Typed responses per wave (must contain ``wave``).
    designs_by_wave : mapping of int to SurveyDesign or None
        Design of each wave (same rows as its responses); None or absent → equal weights.
    codebook : Codebook
    maturity_cfg : MaturityConfig
        ``n_stages``, ``stage_names``, ``method``, ``reference_wave``, ``refit``,
        ``n_bootstrap``.
    wave : int
        Wave whose ``maturity`` table is returned.
    min_n : int
        Territories with fewer scored respondents (or fewer than 5), or answered by a single
        respondent type, get ``is_indicative = True`` (evaluation grid: « indicatif »).
    random_state : int
        Seed of the clustering and bootstrap.

    Returns
    -------
    MaturityResult

    Raises
    ------
    MaturityError
        Unknown wave or reference wave, missing columns, too few territories to cluster.
    """
    if not responses_by_wave:
        raise MaturityError("no responses given")
    waves = sorted(int(w) for w in responses_by_wave)
    if wave not in waves:
        raise MaturityError(f"wave {wave} is not among the waves given ({waves})")
    ref = maturity_cfg.reference_wave if maturity_cfg.reference_wave is not None else waves[0]
    if ref not in waves:
        raise MaturityError(
            f"reference wave {ref} has no responses here (waves given: {waves}); add it to "
            "previous_waves or change maturity.reference_wave"
        )
    if not isinstance(min_n, int) or min_n < 1:
        raise MaturityError(f"min_n must be an integer ≥ 1, got {min_n!r}")
    dims = list(codebook.dimensions)
    feat_cols = [f"score_{d}" for d in dims]

    profiles: dict[int, pd.DataFrame] = {}
    reliability = []
    weights_by_wave: dict[int, np.ndarray] = {}
    unreliable: dict[int, list[str]] = {}
    sorted_responses: dict[int, pd.DataFrame] = {}
    for w in waves:
        resp = responses_by_wave[w]
        if not isinstance(resp, pd.DataFrame) or resp.empty:
            raise MaturityError(f"wave {w}: no responses")
        design = designs_by_wave.get(w) if designs_by_wave is not None else None
        resp, design = _canonical_order(resp, design)
        sorted_responses[w] = resp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MaturityWarning)
            scorer = MaturityScorer(codebook).fit(resp)
        unreliable[w] = list(scorer.unreliable_)
        profiles[w] = compute_profiles(resp, scorer, design, wave=w)
        weights_by_wave[w] = _weights_and_variance(design, len(resp))[0]
        reliability.append(scorer.reliability_.assign(wave=w))
    rel = pd.concat(reliability, ignore_index=True)
    rel = rel[["wave", *[c for c in rel.columns if c != "wave"]]]

    fill = profiles[ref][feat_cols].mean(axis=0, skipna=True)
    if fill.isna().any():
        raise MaturityError(
            f"reference wave {ref}: no territory has a score on "
            + ", ".join(fill.index[fill.isna()].str.removeprefix("score_"))
        )

    def features(w: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        prof = profiles[w]
        raw = prof[feat_cols]
        scored = raw.notna().any(axis=1).to_numpy() & (prof["n"].to_numpy() > 0)
        imputed = raw.isna().to_numpy()
        return raw.fillna(fill), scored, imputed

    X_ref, ok_ref, _ = features(ref)
    clf = MaturityClustering(
        n_stages=maturity_cfg.n_stages,
        method=maturity_cfg.method,
        stage_names=maturity_cfg.stage_names,
        random_state=random_state,
        n_bootstrap=maturity_cfg.n_bootstrap,
    ).fit(X_ref[ok_ref])
    k = clf.n_stages_
    names = clf.stage_names_
    refits: dict[str, Any] = {}

    staged: dict[int, pd.DataFrame] = {}
    for w in waves:
        X, ok, imputed = features(w)
        prof = profiles[w]
        stage = np.full(len(prof), -1, dtype=np.int64)
        proba = np.full(len(prof), np.nan)
        dist = np.full(len(prof), np.nan)
        robust = np.full(len(prof), np.nan)
        if ok.any():
            Xo = X[ok]
            if w == ref:
                lab, P, D = clf.labels_, clf.predict_proba(Xo), clf.transform(Xo)
            elif maturity_cfg.refit:
                own = clone_clustering(clf, n_stages=k).fit(Xo)
                mapping = match_stages(clf, own)
                lab = mapping[own.labels_]
                P = np.empty((len(Xo), k))
                D = np.empty((len(Xo), k))
                P[:, mapping] = own.predict_proba(Xo)
                D[:, mapping] = own.transform(Xo)
                refits[str(w)] = {
                    "mapping": mapping.tolist(),
                    "silhouette": _finite(own.silhouette_),
                    "stability": _finite(own.stability_),
                }
            else:
                lab, P, D = clf.predict(Xo), clf.predict_proba(Xo), clf.transform(Xo)
            rows = np.arange(len(Xo))
            stage[ok] = lab
            proba[ok] = P[rows, lab]
            dist[ok] = D[rows, lab]
            se = prof.loc[ok, [f"se_{d}" for d in dims]].to_numpy(dtype=float)
            model, relabel = (own, mapping) if w != ref and maturity_cfg.refit else (clf, None)

            def predict(Z: np.ndarray, model=model, relabel=relabel) -> np.ndarray:
                got = model.predict(pd.DataFrame(Z, columns=feat_cols))
                return got if relabel is None else relabel[got]

            robust[ok] = stage_robustness(
                predict, Xo.to_numpy(dtype=float), se, np.asarray(lab), seed=random_state + w
            )
        flags = []
        for i in range(len(prof)):
            f = []
            if not ok[i]:
                f.append("unscored")
            elif imputed[i].any():
                f.append("imputed:" + ",".join(d for d, m in zip(dims, imputed[i], strict=True)
                                               if m))  # fmt: skip
            if prof["n"].iat[i] < min_n:
                f.append("small_n")
            if prof["n_types"].iat[i] < 2:
                f.append("single_type")
            flags.append(";".join(f))
        stage_arr = pd.array(np.where(stage >= 0, stage, 0), dtype="Int64")
        stage_arr[stage < 0] = pd.NA
        labels = pd.array([names[s] if s >= 0 else pd.NA for s in stage], dtype="string")
        staged[w] = prof.assign(
            stage=stage_arr,
            stage_label=labels,
            stage_probability=proba,
            stage_robustness=robust,
            distance=dist,
            # evaluation grid: « indicatif » below min_n (at least 5) actors or with one type only
            is_indicative=((prof["n"] < max(min_n, 5)) | (prof["n_types"] < 2)).to_numpy(
                dtype=bool
            ),
            stage_declared=_declared_stages(
                sorted_responses[w], codebook, weights_by_wave[w], prof["territory"].tolist()
            ),
            flags=pd.array(flags, dtype="string"),
        )

    all_profiles = pd.concat([staged[w] for w in waves], ignore_index=True)
    transitions = compute_transitions(all_profiles[["territory", "wave", "stage"]], names)
    cur = staged[wave]
    maturity = cur[
        ["wave", "territory", "territory_name", "stage", "stage_label", "stage_probability",
         "stage_robustness", "distance", *feat_cols, *[f"se_{d}" for d in dims], "score_global", "se_global",
         "nsp_share", "n", "n_types", "is_indicative", "stage_declared", "flags"]
    ].reset_index(drop=True)  # fmt: skip

    declared_levels = (
        len(codebook.value_labels(DECLARED_COL)) if DECLARED_COL in codebook else k
    ) or k
    agreement = compute_stage_agreement(
        cur["stage"], cur["stage_declared"], k, n_declared=declared_levels
    )
    rel_cur = rel[(rel["wave"] == wave) & (rel["item"] == "")]
    diagnostics: dict[str, Any] = {
        "wave": int(wave),
        "waves": waves,
        "reference_wave": int(ref),
        "method": maturity_cfg.method,
        "refit": bool(maturity_cfg.refit),
        "n_stages": int(k),
        "n_stages_requested": maturity_cfg.n_stages,
        "stage_names": list(names),
        "k_selection": [
            {key: (_finite(v) if key != "k" else int(v)) for key, v in row.items()}
            for row in clf.selection_.to_dict(orient="records")
        ],
        "silhouette": _finite(clf.silhouette_),
        "bic": _finite(clf.bic_),
        "stability_ari": _finite(clf.stability_),
        "n_bootstrap": len(clf.stability_scores_),
        "centroids": {
            names[s]: {d: float(v) for d, v in zip(dims, clf.centers_[s], strict=True)}
            for s in range(k)
        },
        "stage_counts": {names[s]: int((cur["stage"] == s).sum()) for s in range(k)},
        "n_territories": len(cur),
        "n_indicative": int(cur["is_indicative"].sum()),
        "n_unscored": int(cur["stage"].isna().sum()),
        "min_n": int(min_n),
        "agreement_declared": {
            "n": agreement["n"],
            "n_missing": agreement["n_missing"],
            "agreement": _finite(agreement["agreement"]),
            "kappa": _finite(agreement["kappa"]),
            "kappa_linear": _finite(agreement["kappa_linear"]),
            "kappa_quadratic": _finite(agreement["kappa_quadratic"]),
            "confusion": agreement["confusion"].to_numpy().tolist(),
        },
        "alpha": {r.dimension: _finite(r.alpha) for r in rel_cur.itertuples()},
        "unreliable_dimensions": unreliable[wave],
        "transition_matrix": compute_transition_matrix(transitions, k).to_numpy().tolist(),
        "n_changed": int(transitions["changed"].sum()),
        "refits": refits,
    }
    if unreliable[wave]:
        warnings.warn(
            f"wave {wave}: unreliable maturity dimension(s): {', '.join(unreliable[wave])}",
            MaturityWarning,
            stacklevel=2,
        )
    return MaturityResult(
        maturity=maturity,
        transitions=transitions,
        profiles=all_profiles,
        reliability=rel,
        diagnostics=diagnostics,
        clustering=clf,
    )


def clone_clustering(clf: MaturityClustering, **changes: Any) -> MaturityClustering:
    """An unfitted copy of ``clf`` with some parameters changed (``sklearn.base.clone``)."""
    from sklearn.base import clone

    return clone(clf).set_params(**changes)
