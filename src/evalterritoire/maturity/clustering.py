"""Ordered stages: :class:`MaturityClustering` (scikit-learn estimator) and stage robustness.

Owns the clustering of territory profiles (k-means, Gaussian mixture, Ward; choice of k),
the ordering of stages by maturity (0 = least mature), the bootstrap stability index, the
matching of a refit's stages onto reference stages (:func:`match_stages`), unfitted copies
(:func:`clone_clustering`) and :func:`stage_robustness` (stage kept under sampling error).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

from evalterritoire.config import DEFAULT_STAGE_NAMES
from evalterritoire.errors import MaturityError

CLUSTER_METHODS = ("kmeans", "gmm", "ward")
#: Draws per territory for :func:`stage_robustness`.
ROBUSTNESS_DRAWS = 400


class MaturityInputError(MaturityError, ValueError):
    """Invalid data given to an estimator (also a ValueError, as scikit-learn expects)."""


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
        self.scaler_ = StandardScaler().fit(S)
        Z = self.scaler_.transform(S)
        seed = int(self.random_state)
        fits = self._fit_candidates(Z, self._candidate_ks(len(np.unique(S, axis=0)), n), seed)
        k = self._choose_k()
        labels_sorted = self._order_stages(*fits[k])
        self.labels_ = np.empty(n, dtype=np.int64)
        self.labels_[order] = labels_sorted
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

    def _candidate_ks(self, n_distinct: int, n: int) -> list[int]:
        """The numbers of stages to try: ``k_range`` for ``"auto"``, else ``n_stages``."""
        if self.n_stages == "auto":
            lo, hi = self.k_range
            ks = list(range(max(2, int(lo)), min(int(hi), n_distinct - 1) + 1))
            if not ks:
                raise MaturityInputError(
                    f"too few distinct territories ({n_distinct}, {n} sample(s)) to choose k"
                )
            return ks
        k = int(self.n_stages)
        if n_distinct <= k:
            raise MaturityInputError(
                f"{n_distinct} distinct territory profile(s) ({n} sample(s)) cannot form {k} stages"
            )
        return [k]

    def _fit_candidates(self, Z: np.ndarray, ks: list[int], seed: int) -> dict[int, tuple]:
        """Fit every candidate k; their silhouette and BIC go to ``selection_``."""
        n = Z.shape[0]
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
        return fits

    def _choose_k(self) -> int:
        """The only candidate, the lowest BIC (mixture) or the best silhouette."""
        sel = self.selection_
        if len(sel) == 1:
            return int(sel["k"].iat[0])
        if self.method == "gmm":
            return int(sel.loc[sel["bic"].idxmin(), "k"])
        return int(sel.loc[sel["silhouette"].fillna(-2).idxmax(), "k"])

    def _order_stages(self, model: Any, raw: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Number the components by maturity (mean standardised centroid score), keep the model.

        Returns the stage of every (sorted) row.
        """
        k = centers.shape[0]
        comp_order = np.argsort(centers.mean(axis=1), kind="stable")
        rank = np.empty(k, dtype=int)
        rank[comp_order] = np.arange(k)
        self.model_ = model
        self.order_ = comp_order
        self.n_stages_ = k
        self.cluster_centers_ = centers[comp_order]
        self.centers_ = self.scaler_.inverse_transform(self.cluster_centers_)
        return rank[raw]

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


def clone_clustering(clf: MaturityClustering, **changes: Any) -> MaturityClustering:
    """An unfitted copy of ``clf`` with some parameters changed (``sklearn.base.clone``)."""
    from sklearn.base import clone

    return clone(clf).set_params(**changes)


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
