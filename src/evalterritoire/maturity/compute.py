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

Layout
------
This module holds the study step (:func:`compute_maturity`, :class:`MaturityResult`); the
building blocks live in the sibling modules ``common`` (column names, :class:`MaturityWarning`),
``scoring`` (:class:`MaturityScorer`, reliability), ``profiles`` (:func:`compute_profiles`),
``clustering`` (:class:`MaturityClustering`, :func:`match_stages`, :func:`stage_robustness`),
``transitions`` and ``agreement``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.config import MaturityConfig
from evalterritoire.errors import MaturityError
from evalterritoire.maturity.agreement import (
    _declared_stages,
    compute_stage_agreement,
)
from evalterritoire.maturity.clustering import (
    MaturityClustering,
    clone_clustering,
    match_stages,
    stage_robustness,
)
from evalterritoire.maturity.common import (
    DECLARED_COL,
    TERRITORY_COL,
    MaturityWarning,
)
from evalterritoire.maturity.profiles import _weights_and_variance, compute_profiles
from evalterritoire.maturity.scoring import MaturityScorer
from evalterritoire.maturity.transitions import compute_transition_matrix, compute_transitions

__all__ = ["MaturityResult", "compute_maturity"]


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
