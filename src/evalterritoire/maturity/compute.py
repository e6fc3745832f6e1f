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
  the ``respondent_type`` and ``respondent_role`` columns) includes them or they answered it anyway
  (a value, "ne sait pas" or a refusal), and the answer is not the special code ``filtre`` or
  ``nc``. The dimension score is the mean of the valid answers when
  at least ``min_items`` of the asked items have one (share, default the codebook's
  ``scoring.min_item_share``); "ne sait pas" never enters a mean but its share is kept.
* ``score_global`` is the mean of the available dimension scores under the same share rule.

Layout
------
This module holds the study step (:func:`compute_maturity`, :class:`MaturityResult`); the
building blocks live in the sibling modules ``common`` (role columns, :class:`MaturityWarning`),
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
)
from evalterritoire.maturity.clustering import (
    MaturityClustering,
    clone_clustering,
    match_stages,
    stage_robustness,
)
from evalterritoire.maturity.common import MaturityWarning, present_column, territory_column
from evalterritoire.maturity.diagnostics import (
    _agreement_diagnostics,
    _stage_diagnostics,
    _wave_diagnostics,
)
from evalterritoire.maturity.probabilities import (
    SamplingModel,
    StageMixture,
    build_sampling_model,
    compute_stage_probabilities,
    fit_stage_mixture,
    refine_stage_mixture,
)
from evalterritoire.maturity.profiles import _weights_and_variance, compute_profiles
from evalterritoire.maturity.scoring import MaturityScorer
from evalterritoire.maturity.transitions import compute_transitions

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

    @property
    def original(self) -> Any:
        """The design in its own row order."""
        return self._design

    def original_rows(self, rows: np.ndarray) -> np.ndarray:
        """Positions in the original design of rows ``rows`` of this view."""
        return self._perm[rows]

    def _variance_of_totals(self, z: np.ndarray) -> np.ndarray:
        original = np.empty_like(z)
        original[self._perm] = z
        return self._design.variance_of_totals(original)


def _canonical_order(
    responses: pd.DataFrame, design: Any, codebook: Codebook
) -> tuple[pd.DataFrame, Any]:
    """Rows sorted by territory and respondent id, so results never depend on row order."""
    keys = [territory_column(codebook, responses)]
    respondent = present_column(codebook, "respondent_id", responses)
    keys += [respondent] if respondent is not None else []
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
        Items, dimensions and the role columns (``territory``, ``respondent_id``…).
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
    waves, ref = _check_request(responses_by_wave, maturity_cfg, wave=wave, min_n=min_n)
    scored = {
        w: _score_wave(w, responses_by_wave[w], _design_of(designs_by_wave, w), codebook)
        for w in waves
    }
    features = _Features(scored[ref].profiles, list(codebook.dimensions), ref)
    clf = _fit_stages(features, scored[ref].profiles, maturity_cfg, random_state)
    mixture = _fit_mixture(scored[ref], clf, features)
    staged, refits = _stage_waves(
        scored, clf, features, codebook, mixture, ref=ref, refit=maturity_cfg.refit,
        min_n=min_n, random_state=random_state,
    )  # fmt: skip
    all_profiles = pd.concat(list(staged.values()), ignore_index=True)
    transitions = compute_transitions(
        all_profiles[["territory", "wave", "stage"]], clf.stage_names_
    )
    reliability = pd.concat([s.reliability for s in scored.values()], ignore_index=True)
    reliability = reliability[["wave", *[c for c in reliability.columns if c != "wave"]]]
    cur = staged[wave]
    diagnostics = {
        "wave": int(wave),
        "waves": waves,
        "reference_wave": int(ref),
        "method": maturity_cfg.method,
        "refit": bool(maturity_cfg.refit),
        **_stage_diagnostics(clf, features.dims, cur, maturity_cfg, min_n),
        "agreement_declared": _agreement_diagnostics(cur, codebook, clf.n_stages_),
        **_wave_diagnostics(reliability, wave, scored[wave].unreliable, transitions, clf),
        "refits": refits,
    }
    if scored[wave].unreliable:
        warnings.warn(
            f"wave {wave}: unreliable maturity dimension(s): {', '.join(scored[wave].unreliable)}",
            MaturityWarning,
            stacklevel=2,
        )
    maturity = _maturity_table(cur, features)
    return MaturityResult(maturity, transitions, all_profiles, reliability, diagnostics, clf)


# ------------------------------------------------------------------------- step 1: request
def _check_request(
    responses_by_wave: Mapping[int, pd.DataFrame],
    maturity_cfg: MaturityConfig,
    *,
    wave: int,
    min_n: int,
) -> tuple[list[int], int]:
    """The waves given (sorted) and the reference wave, once the request is checked."""
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
    return waves, ref


def _design_of(designs_by_wave: Mapping[int, Any] | None, w: int) -> Any:
    return designs_by_wave.get(w) if designs_by_wave is not None else None


# -------------------------------------------------------------------- step 2: score a wave
@dataclass(frozen=True)
class _ScoredWave:
    """One wave scored and profiled (responses in canonical order)."""

    responses: pd.DataFrame
    profiles: pd.DataFrame
    weights: np.ndarray
    reliability: pd.DataFrame
    unreliable: list[str]
    sampling: SamplingModel


def _score_wave(w: int, responses: Any, design: Any, codebook: Codebook) -> _ScoredWave:
    """Respondent scores, reliability and design-weighted territory profiles of one wave.

    The profiles get each territory's design ``df``; the sampling model of the profiles
    (:mod:`.probabilities`) is fitted on the responses in the design's own row order.
    """
    if not isinstance(responses, pd.DataFrame) or responses.empty:
        raise MaturityError(f"wave {w}: no responses")
    original, original_design = responses, design
    responses, design = _canonical_order(responses, design, codebook)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        scorer = MaturityScorer(codebook).fit(responses)
    profiles = compute_profiles(responses, scorer, design, wave=w)
    sampling, df = build_sampling_model(
        original, original_design, scorer, territory_column(codebook, original), profiles
    )
    return _ScoredWave(
        responses=responses,
        profiles=profiles.assign(df=df),
        weights=_weights_and_variance(design, len(responses))[0],
        reliability=scorer.reliability_.assign(wave=w),
        unreliable=list(scorer.unreliable_),
        sampling=sampling,
    )


# --------------------------------------------------------------- step 3: clustering features
class _Features:
    """Profiles as clustering features; a missing dimension takes the reference wave's mean."""

    def __init__(self, reference: pd.DataFrame, dims: list[str], ref: int) -> None:
        self.dims = dims
        self.columns = [f"score_{d}" for d in dims]
        self.se_columns = [f"se_{d}" for d in dims]
        self.fill = reference[self.columns].mean(axis=0, skipna=True)
        if self.fill.isna().any():
            raise MaturityError(
                f"reference wave {ref}: no territory has a score on "
                + ", ".join(self.fill.index[self.fill.isna()].str.removeprefix("score_"))
            )

    def __call__(self, prof: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """(features with imputed gaps, territory is scored, which dimension was imputed)."""
        raw = prof[self.columns]
        scored = raw.notna().any(axis=1).to_numpy() & (prof["n"].to_numpy() > 0)
        imputed = raw.isna().to_numpy()
        return raw.fillna(self.fill), scored, imputed


def _fit_stages(
    features: _Features, reference: pd.DataFrame, maturity_cfg: MaturityConfig, seed: int
) -> MaturityClustering:
    """The stage definitions: the clustering of the reference wave's scored territories."""
    X_ref, ok_ref, _ = features(reference)
    return MaturityClustering(
        n_stages=maturity_cfg.n_stages,
        method=maturity_cfg.method,
        stage_names=maturity_cfg.stage_names,
        random_state=seed,
        n_bootstrap=maturity_cfg.n_bootstrap,
    ).fit(X_ref[ok_ref])


def _fit_mixture(
    reference: _ScoredWave, clf: MaturityClustering, features: _Features
) -> StageMixture:
    """The stage mixture of the membership probabilities, on the reference wave."""
    X, ok, imputed = features(reference.profiles)
    n = reference.profiles[[f"n_{d}" for d in features.dims]].to_numpy(dtype=float)
    V = reference.sampling.covariance(n[ok], imputed[ok])
    Xo = X[ok].to_numpy(dtype=float)
    start = fit_stage_mixture(Xo, clf.labels_, V, clf.centers_, clf.n_stages_)
    return refine_stage_mixture(start, Xo, V)


# ------------------------------------------------------------------- step 4: stage a wave
def _stage_waves(
    scored: dict[int, _ScoredWave],
    clf: MaturityClustering,
    features: _Features,
    codebook: Codebook,
    mixture: StageMixture,
    *,
    ref: int,
    refit: bool,
    min_n: int,
    random_state: int,
) -> tuple[dict[int, pd.DataFrame], dict[str, Any]]:
    """Every wave's staged profiles (wave order) and the refits' mappings (key: the wave)."""
    staged: dict[int, pd.DataFrame] = {}
    refits: dict[str, Any] = {}
    for w, wave in scored.items():
        staged[w], info = _stage_wave(
            wave, clf, features, codebook, mixture, is_reference=w == ref, refit=refit,
            min_n=min_n, seed=random_state + w,
        )  # fmt: skip
        if info is not None:
            refits[str(w)] = info
    return staged, refits


def _stage_wave(
    wave: _ScoredWave,
    clf: MaturityClustering,
    features: _Features,
    codebook: Codebook,
    mixture: StageMixture,
    *,
    is_reference: bool,
    refit: bool,
    min_n: int,
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The wave's profiles with their stage, its probabilities, robustness and flags.

    The probabilities come from the stage mixture and each profile's sampling covariance
    (:mod:`.probabilities`): ``stage_probability`` for the assigned stage, ``p_stage_<s>`` for
    every stage. Also returns, for a refit wave, its stage mapping and clustering quality
    (else None).
    """
    prof = wave.profiles
    X, ok, imputed = features(prof)
    n = len(prof)
    k = clf.n_stages_
    stage = np.full(n, -1, dtype=np.int64)
    proba, dist, robust = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    p_stage = np.full((n, k), np.nan)
    refit_info = None
    if ok.any():
        Xo = X[ok]
        lab, _, D, predict, refit_info = _assign_stages(clf, Xo, is_reference, refit)
        rows = np.arange(len(Xo))
        stage[ok] = lab
        n_dim = prof[[f"n_{d}" for d in features.dims]].to_numpy(dtype=float)[ok]
        V = wave.sampling.covariance(n_dim, imputed[ok])
        p_stage[ok] = compute_stage_probabilities(mixture, Xo.to_numpy(dtype=float), V)
        proba[ok] = p_stage[ok][rows, lab]
        dist[ok] = D[rows, lab]
        se = prof.loc[ok, features.se_columns].to_numpy(dtype=float)
        robust[ok] = stage_robustness(
            predict, Xo.to_numpy(dtype=float), se, np.asarray(lab), seed=seed
        )
    names = clf.stage_names_
    stage_arr = pd.array(np.where(stage >= 0, stage, 0), dtype="Int64")
    stage_arr[stage < 0] = pd.NA
    staged = prof.assign(
        stage=stage_arr,
        stage_label=pd.array([names[s] if s >= 0 else pd.NA for s in stage], dtype="string"),
        stage_probability=proba,
        stage_robustness=robust,
        distance=dist,
        # evaluation grid: « indicatif » below min_n (at least 5) actors or with one type only
        is_indicative=((prof["n"] < max(min_n, 5)) | (prof["n_types"] < 2)).to_numpy(dtype=bool),
        stage_declared=_declared_stages(
            wave.responses, codebook, wave.weights, prof["territory"].tolist()
        ),
        flags=_flags(prof, ok, imputed, features.dims, min_n),
        **{f"p_stage_{s}": p_stage[:, s] for s in range(k)},
    )
    return staged, refit_info


def _assign_stages(clf: MaturityClustering, Xo: pd.DataFrame, is_reference: bool, refit: bool):
    """Stages, stage probabilities, centroid distances and classifier of scored territories.

    The reference wave keeps its fitted labels; another wave is classified by the reference
    stages, or (``refit``) clustered anew with its stages matched to the reference ones, whose
    mapping and quality are returned last (None without a refit).
    """
    if not is_reference and refit:
        k = clf.n_stages_
        own = clone_clustering(clf, n_stages=k).fit(Xo)
        mapping = match_stages(clf, own)
        P = np.empty((len(Xo), k))
        D = np.empty((len(Xo), k))
        P[:, mapping] = own.predict_proba(Xo)
        D[:, mapping] = own.transform(Xo)
        info = {
            "mapping": mapping.tolist(),
            "silhouette": _finite(own.silhouette_),
            "stability": _finite(own.stability_),
        }
        return mapping[own.labels_], P, D, _classifier(own, mapping, Xo.columns), info
    lab = clf.labels_ if is_reference else clf.predict(Xo)
    return lab, clf.predict_proba(Xo), clf.transform(Xo), _classifier(clf, None, Xo.columns), None


def _classifier(model: MaturityClustering, relabel: np.ndarray | None, columns):
    """Profiles (array) → reference stage numbers, for :func:`stage_robustness`."""

    def predict(Z: np.ndarray) -> np.ndarray:
        got = model.predict(pd.DataFrame(Z, columns=columns))
        return got if relabel is None else relabel[got]

    return predict


def _flags(
    prof: pd.DataFrame, ok: np.ndarray, imputed: np.ndarray, dims: list[str], min_n: int
) -> pd.array:
    """``unscored`` / ``imputed:<dims>``, ``small_n``, ``single_type``, joined by ``;``."""
    flags = []
    for i in range(len(prof)):
        f = []
        if not ok[i]:
            f.append("unscored")
        elif imputed[i].any():
            f.append("imputed:" + ",".join(d for d, m in zip(dims, imputed[i], strict=True) if m))
        if prof["n"].iat[i] < min_n:
            f.append("small_n")
        if prof["n_types"].iat[i] < 2:
            f.append("single_type")
        flags.append(";".join(f))
    return pd.array(flags, dtype="string")


def _maturity_table(cur: pd.DataFrame, features: _Features) -> pd.DataFrame:
    """The ``maturity.parquet`` columns of the requested wave's staged profiles."""
    p_cols = sorted((c for c in cur.columns if c.startswith("p_stage_")), key=lambda c: int(c[8:]))
    return cur[
        ["wave", "territory", "territory_name", "stage", "stage_label", "stage_probability",
         *p_cols, "stage_robustness", "distance", *features.columns, *features.se_columns,
         *[f"n_{d}" for d in features.dims], "score_global", "se_global", "df", "nsp_share",
         "n", "n_types", "is_indicative", "stage_declared", "flags"]
    ].reset_index(drop=True)  # fmt: skip
