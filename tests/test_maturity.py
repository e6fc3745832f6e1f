"""Tests of maturity.py: scoring, reliability, profiles, ordered stages, waves, agreement."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score, cohen_kappa_score

from evalterritoire.codebook import Codebook
from evalterritoire.config import DEFAULT_STAGE_NAMES, MaturityConfig
from evalterritoire.errors import MaturityError
from evalterritoire.maturity.agreement import compute_stage_agreement, compute_weighted_kappa
from evalterritoire.maturity.clustering import MaturityClustering, match_stages
from evalterritoire.maturity.common import MaturityWarning
from evalterritoire.maturity.compute import compute_maturity
from evalterritoire.maturity.profiles import compute_profiles
from evalterritoire.maturity.scoring import MaturityScorer
from evalterritoire.maturity.transitions import compute_transition_matrix, compute_transitions

pytestmark = pytest.mark.filterwarnings("ignore::evalterritoire.maturity.MaturityWarning")

# --------------------------------------------------------------------------- generator
#: Latent mean of a dimension by true stage (each dimension shifted a little).
STAGE_MEANS = np.array([2.1, 2.8, 3.4, 3.9])
INSIDER_ROLES = ("pilote", "partenaire_actif", "partenaire_occasionnel")


def make_wave(
    codebook: Codebook,
    stages: np.ndarray,
    n_per: int = 50,
    *,
    seed: int = 0,
    wave: int = 2024,
    sd_territory: float = 0.15,
    sd_item: float = 0.6,
    p_nsp: float = 0.06,
) -> pd.DataFrame:
    """Typed responses of one wave: true stage → latent dimension means → Likert items.

    latent[i, d] = STAGE_MEANS[stage] + dim_offset[d] + tau[t, d] + halo[i] + e[i, d];
    item = clip(round(latent + e_item), 1, 5) (mirrored when reverse-coded); NSP with p_nsp;
    items are asked following the codebook routing (70 % of respondents are insiders).
    """
    rng = np.random.default_rng(seed)
    dims = list(codebook.dimensions)
    n_t = len(stages)
    territory = np.repeat(np.arange(n_t), n_per)
    n = len(territory)
    offsets = np.linspace(-0.2, 0.2, len(dims))
    tau = rng.normal(0, sd_territory, (n_t, len(dims)))
    latent = (
        STAGE_MEANS[stages][territory][:, None]
        + offsets[None, :]
        + tau[territory]
        + rng.normal(0, 0.3, n)[:, None]
        + rng.normal(0, 0.25, (n, len(dims)))
    )
    types = list(codebook["id_type_repondant"].options)
    rtype = np.array(types)[rng.integers(0, len(types), n)]
    insider = rng.random(n) < 0.7
    role = np.where(insider, np.array(INSIDER_ROLES)[rng.integers(0, 3, n)], "informe")
    codes = np.array([f"T{t:03d}" for t in range(n_t)])
    frame: dict[str, object] = {
        "id_repondant": pd.array([f"R{i:05d}" for i in range(n)], dtype="string"),
        "id_territoire_code": pd.array(codes[territory], dtype="string"),
        "id_territoire_nom": pd.array([f"Territoire {t}" for t in territory], dtype="string"),
        "id_type_repondant": pd.array(rtype, dtype="string"),
        "prof_role_demarche": pd.array(role, dtype="string"),
        "id_poids": rng.uniform(0.5, 2.0, n),
    }
    groups = {}
    for j, dim in enumerate(dims):
        for var in codebook.dimension_items(dim):
            if var.milestone:
                continue
            key = tuple(var.asked_to)
            if key not in groups:
                groups[key] = (
                    np.array(
                        [
                            bool(
                                codebook.groups_for({"respondent_type": a, "respondent_role": b})
                                & set(var.asked_to)
                            )
                            for a, b in zip(rtype, role, strict=False)
                        ]
                    )
                    if var.asked_to and "all" not in var.asked_to
                    else np.ones(n, dtype=bool)
                )
            asked = groups[key]
            value = np.clip(np.rint(latent[:, j] + rng.normal(0, sd_item, n)), 1, 5)
            if var.reverse_coded:
                value = 6 - value
            nsp = asked & (rng.random(n) < p_nsp)
            keep = asked & ~nsp
            frame[var.id] = pd.array(np.where(keep, value, np.nan), dtype="Float64").astype("Int64")
            frame[f"{var.id}__special"] = pd.array(np.where(nsp, "nsp", None), dtype="string")
    shift = np.select([rng.random(n) < 0.15, rng.random(n) < 0.15], [-1, 1], 0)
    frame["stade_auto"] = pd.array(np.clip(stages[territory] + shift, 0, 3) + 1, dtype="Int64")
    frame["stade_auto__special"] = pd.array([None] * n, dtype="string")
    return pd.DataFrame(frame)


def true_stages(n_t: int, seed: int = 0) -> np.ndarray:
    """Balanced true stages 0..3 in a seeded random order."""
    return np.random.default_rng(seed).permutation(np.arange(n_t) % 4)


@pytest.fixture(scope="module")
def wave_demo(codebook):
    stages = true_stages(60, seed=1)
    return stages, make_wave(codebook, stages, 50, seed=2)


@pytest.fixture(scope="module")
def profiles_demo(codebook, wave_demo):
    _, resp = wave_demo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        scorer = MaturityScorer(codebook).fit(resp)
    return compute_profiles(resp, scorer, wave=2024)


def features(profiles: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    return profiles[[f"score_{d}" for d in codebook.dimensions]]


# --------------------------------------------------------------------------- scorer
def _tiny(codebook: Codebook, values: dict[str, list], specials: dict[str, list] | None = None):
    """A typed frame with every maturity item missing except those given."""
    n = len(next(iter(values.values())))
    frame: dict[str, object] = {
        "id_territoire_code": pd.array(["A"] * n, dtype="string"),
        "id_type_repondant": pd.array(["catalyseur"] * n, dtype="string"),
        "prof_role_demarche": pd.array(["pilote"] * n, dtype="string"),
    }
    specials = specials or {}
    for dim in codebook.dimensions:
        for var in codebook.dimension_items(dim):
            if var.milestone:
                continue
            frame[var.id] = pd.array(values.get(var.id, [None] * n), dtype="Int64")
            frame[f"{var.id}__special"] = pd.array(specials.get(var.id, [None] * n), dtype="string")
    return pd.DataFrame(frame)


POS = ["mat_pos_role_clair", "mat_pos_legitimite", "mat_pos_catalyse_vs_operation",
       "mat_pos_articulation"]  # fmt: skip


def test_scores_mean_of_valid_items_nsp_excluded_but_counted(codebook):
    df = _tiny(
        codebook,
        {POS[0]: [4, 5, 2], POS[1]: [2, None, 2], POS[2]: [3, None, None], POS[3]: [5, 4, None]},
        {POS[1]: [None, "nsp", None], POS[2]: [None, "nsp", "nsp"]},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        scorer = MaturityScorer(codebook).fit(df)
    det = scorer.score_details(df)
    # respondent 0: (4 + 2 + 3 + 5) / 4; respondent 1: 2 valid of 4 asked < 2/3 → no score;
    # respondent 2: 2 valid of 4 asked (POS[3] blank) → no score.
    assert det["score_positionnement"].iloc[0] == pytest.approx(3.5)
    assert np.isnan(det["score_positionnement"].iloc[1])
    assert det["n_nsp_positionnement"].tolist() == [0, 2, 1]
    assert det["n_asked_positionnement"].tolist() == [4, 4, 4]
    # with a share of 1/2 respondents 1 and 2 get scores: NSP never enters the mean
    det2 = MaturityScorer(codebook, min_items=0.5).fit(df).score_details(df)
    assert det2["score_positionnement"].tolist() == pytest.approx([3.5, 4.5, 2.0])
    # a count rule: at least 3 valid items
    det3 = MaturityScorer(codebook, min_items=3).fit(df).score_details(df)
    assert det3["score_positionnement"].notna().tolist() == [True, False, False]


def test_transform_columns_and_routing(codebook, wave_demo):
    _, resp = wave_demo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        scorer = MaturityScorer(codebook).fit(resp)
    out = scorer.transform(resp)
    expected = [f"score_{d}" for d in codebook.dimensions] + ["score_global"]
    assert list(out.columns) == expected == list(scorer.get_feature_names_out())
    assert out.index.equals(resp.index)
    assert all(out[c].dtype == np.float64 for c in out.columns)
    # positionnement is asked to insiders only: "informé" respondents get no score
    outsiders = (resp["prof_role_demarche"] == "informe").to_numpy()
    assert out.loc[outsiders, "score_positionnement"].isna().all()
    assert out.loc[~outsiders, "score_positionnement"].notna().mean() > 0.9
    # interconnaissance has one item asked to all: outsiders are scored on it
    assert out.loc[outsiders, "score_interconnaissance"].notna().mean() > 0.8
    assert out.stack().dropna().between(1, 5).all()


def test_reverse_coded_items_are_mirrored(codebook):
    import dataclasses

    rev = dataclasses.replace(
        codebook,
        variables=tuple(
            dataclasses.replace(v, reverse_coded=True) if v.id == POS[0] else v
            for v in codebook.variables
        ),
    )
    df = _tiny(codebook, {POS[0]: [1, 5], POS[1]: [5, 1], POS[2]: [5, 1], POS[3]: [5, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        plain = MaturityScorer(codebook).fit(df).transform(df)["score_positionnement"]
        mirrored = MaturityScorer(rev).fit(df).transform(df)["score_positionnement"]
    assert plain.tolist() == pytest.approx([4.0, 2.0])  # (1+5+5+5)/4, (5+1+1+1)/4
    assert mirrored.tolist() == pytest.approx([5.0, 1.0])  # item 1 read as 6 - x


def test_cronbach_alpha_checked_by_hand(codebook):
    # Four respondents × the four positionnement items:
    #   r1: 1 2 2 1   (total 6)     item variances (ddof 1): i1 [1,3,4,5]   → 8.75/3
    #   r2: 3 3 4 3   (total 13)                             i2 [2,3,4,4]   → 2.75/3
    #   r3: 4 4 5 4   (total 17)                             i3 [2,4,5,5]   → 6.00/3
    #   r4: 5 4 5 4   (total 18)                             i4 [1,3,4,4]   → 6.00/3
    # sum of item variances = 23.5/3; totals [6, 13, 17, 18], mean 13.5,
    # squared deviations 56.25 + 0.25 + 12.25 + 20.25 = 89 → var = 89/3.
    # alpha = k/(k-1) * (1 - 23.5/89) = 4/3 * 65.5/89 = 262/267 = 0.98127...
    df = _tiny(codebook, {POS[0]: [1, 3, 4, 5], POS[1]: [2, 3, 4, 4], POS[2]: [2, 4, 5, 5],
                          POS[3]: [1, 3, 4, 4]})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        scorer = MaturityScorer(codebook).fit(df)
    rel = scorer.reliability_.set_index(["dimension", "item"])
    assert rel.loc[("positionnement", ""), "alpha"] == pytest.approx(262 / 267)
    assert rel.loc[("positionnement", ""), "n"] == 4
    # item-rest of item 1: corr([1,3,4,5], [5,10,13,13])
    assert rel.loc[("positionnement", POS[0]), "item_rest_r"] == pytest.approx(
        np.corrcoef([1, 3, 4, 5], [5, 10, 13, 13])[0, 1]
    )
    assert bool(rel.loc[("positionnement", ""), "is_reliable"])
    # every other dimension has no data → not computable → reported unreliable with a warning
    assert "gouvernance" in scorer.unreliable_
    assert "positionnement" not in scorer.unreliable_
    with pytest.warns(MaturityWarning, match="gouvernance"):
        MaturityScorer(codebook).fit(df)


def test_scorer_estimator_contract(codebook, wave_demo):
    _, resp = wave_demo
    scorer = MaturityScorer(codebook, min_items=0.5)
    assert scorer.get_params() == {"codebook": codebook, "min_items": 0.5, "min_alpha": 0.6}
    twin = clone(scorer)
    assert twin.get_params()["min_items"] == 0.5
    assert twin.codebook == codebook
    assert scorer.set_params(min_items=2) is scorer
    assert scorer.min_items == 2
    with pytest.raises(NotFittedError):
        scorer.transform(resp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        assert scorer.fit(resp) is scorer
    assert hasattr(scorer, "items_")
    assert not hasattr(twin, "items_")


def test_scorer_bad_input_is_a_typed_error(codebook, wave_demo):
    _, resp = wave_demo
    with pytest.raises(MaturityError, match="missing"):
        MaturityScorer(codebook).fit(resp.drop(columns=[POS[0]]))
    with pytest.raises(MaturityError, match="DataFrame"):
        MaturityScorer(codebook).fit(resp.to_numpy())
    with pytest.raises(MaturityError, match="min_items"):
        MaturityScorer(codebook, min_items=1.5).fit(resp)


# --------------------------------------------------------------------------- profiles
class FakeDesign:
    """Stands in for design.SurveyDesign: weights and a variance of weighted totals."""

    def __init__(self, weights: np.ndarray, scale: float = 2.0) -> None:
        self.weights = weights
        self.scale = scale
        self.calls = 0

    def variance_of_totals(self, z: np.ndarray) -> np.ndarray:
        self.calls += 1
        z = np.atleast_2d(z.T).T
        n = z.shape[0]
        c = z - z.mean(axis=0)
        return self.scale * n / (n - 1) * (c.T @ c)


def test_profiles_weighted_means_and_se_by_hand(codebook):
    df = _tiny(codebook, {p: [2, 4, 5] for p in POS})
    df["id_territoire_code"] = pd.array(["A", "A", "B"], dtype="string")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        scorer = MaturityScorer(codebook).fit(df)
    w = np.array([1.0, 3.0, 2.0])
    design = FakeDesign(w, scale=1.0)
    prof = compute_profiles(df, scorer, design).set_index("territory")
    # A: (1*2 + 3*4) / 4 = 3.5; B: 5
    assert prof.loc["A", "score_positionnement"] == pytest.approx(3.5)
    assert prof.loc["B", "score_positionnement"] == pytest.approx(5.0)
    # linearised z for A: w (y - 3.5) / 4 inside A, 0 outside → [-0.375, 0.375, 0]
    z = np.array([-0.375, 0.375, 0.0])
    assert prof.loc["A", "se_positionnement"] == pytest.approx(np.sqrt(1.5 * (z**2).sum()))
    assert prof.loc["B", "se_positionnement"] == pytest.approx(0.0)
    assert design.calls > 0
    # no design → equal weights, same with-replacement formula
    eq = compute_profiles(df, scorer, None).set_index("territory")
    assert eq.loc["A", "score_positionnement"] == pytest.approx(3.0)
    assert eq.loc["A", "se_positionnement"] == pytest.approx(np.sqrt(1.5 * 2 * 0.5**2))
    assert prof.loc["A", "n"] == 2
    assert prof.loc["A", "n_type_catalyseur"] == 2
    with pytest.raises(MaturityError, match="weights"):
        compute_profiles(df, scorer, FakeDesign(np.ones(2)))


def test_profiles_nsp_share(codebook):
    df = _tiny(codebook, {POS[0]: [4, None], POS[1]: [4, 4], POS[2]: [4, 4], POS[3]: [4, 4]},
               {POS[0]: [None, "nsp"]})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        scorer = MaturityScorer(codebook).fit(df)
    prof = compute_profiles(df, scorer)
    assert prof["nsp_positionnement"].iloc[0] == pytest.approx(1 / 8)
    assert prof["n_positionnement"].iloc[0] == 2


# --------------------------------------------------------------------------- clustering
def test_stage_recovery_ari_at_demo_noise(codebook, wave_demo, profiles_demo):
    stages, _ = wave_demo
    clf = MaturityClustering(n_bootstrap=10).fit(features(profiles_demo, codebook))
    assert adjusted_rand_score(stages, clf.labels_) >= 0.9
    # ordered by maturity: stage s+1 centroid dominates stage s on average, and labels match truth
    assert np.all(np.diff(clf.cluster_centers_.mean(axis=1)) > 0)
    assert (clf.labels_ == stages).mean() >= 0.95
    assert clf.stage_names_ == DEFAULT_STAGE_NAMES
    assert clf.stability_ > 0.8
    assert len(clf.stability_scores_) == 10


@pytest.mark.parametrize("method", ["kmeans", "gmm", "ward"])
def test_order_invariance_and_reproducibility(codebook, profiles_demo, method):
    X = features(profiles_demo, codebook)
    perm = np.random.default_rng(5).permutation(len(X))
    a = MaturityClustering(method=method, n_bootstrap=5, random_state=3).fit(X)
    b = MaturityClustering(method=method, n_bootstrap=5, random_state=3).fit(X.iloc[perm])
    c = MaturityClustering(method=method, n_bootstrap=5, random_state=3).fit(X)
    np.testing.assert_array_equal(b.labels_, a.labels_[perm])
    np.testing.assert_array_equal(c.labels_, a.labels_)
    np.testing.assert_allclose(b.cluster_centers_, a.cluster_centers_)
    assert b.stability_ == a.stability_ == c.stability_
    np.testing.assert_array_equal(a.predict(X), a.labels_)
    proba = a.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == a.labels_).mean() > 0.95
    dist = a.transform(X)
    assert dist.shape == (len(X), 4)
    if method != "gmm":
        np.testing.assert_array_equal(dist.argmin(axis=1), a.labels_)


def test_labels_follow_maturity_not_algorithm_numbering(codebook, profiles_demo):
    X = features(profiles_demo, codebook)
    clf = MaturityClustering(n_bootstrap=0).fit(X)
    means = X.mean(axis=1).to_numpy()
    by_stage = [means[clf.labels_ == s].mean() for s in range(4)]
    assert by_stage == sorted(by_stage)
    assert sorted(clf.order_.tolist()) == [0, 1, 2, 3]
    assert np.isnan(clf.stability_)


def test_auto_k_reports_diagnostics(codebook, profiles_demo):
    X = features(profiles_demo, codebook)
    clf = MaturityClustering(n_stages="auto", n_bootstrap=0, k_range=(2, 5)).fit(X)
    assert clf.selection_["k"].tolist() == [2, 3, 4, 5]
    assert clf.n_stages_ == int(clf.selection_.loc[clf.selection_["silhouette"].idxmax(), "k"])
    gmm = MaturityClustering(n_stages="auto", method="gmm", n_bootstrap=0, k_range=(2, 5)).fit(X)
    assert gmm.n_stages_ == int(gmm.selection_.loc[gmm.selection_["bic"].idxmin(), "k"])
    assert gmm.selection_["bic"].notna().all()
    if gmm.n_stages_ != 4:
        assert gmm.stage_names_[0] == "Stade 1"


def test_clustering_estimator_contract(codebook, profiles_demo):
    X = features(profiles_demo, codebook)
    clf = MaturityClustering(n_stages=3, method="ward", stage_names=("a", "b", "c"))
    params = clf.get_params()
    assert params["n_stages"] == 3
    assert params["stage_names"] == ("a", "b", "c")
    twin = clone(clf)
    assert twin.get_params() == params
    assert clf.set_params(n_bootstrap=0) is clf
    with pytest.raises(NotFittedError):
        clf.predict(X)
    assert clf.fit(X) is clf
    assert clf.stage_names_ == ("a", "b", "c")
    assert list(clf.feature_names_in_) == list(X.columns)
    assert clf.n_features_in_ == 9
    assert not hasattr(twin, "labels_")
    with pytest.raises(MaturityError):
        clf.predict(X.iloc[:, :3].to_numpy())


def test_sklearn_check_estimator_on_clustering():
    from sklearn.utils.estimator_checks import check_estimator

    # Failures listed here are deliberate: typed MaturityError instead of ValueError for some
    # invalid inputs is the package convention; everything else must pass.
    result = check_estimator(MaturityClustering(n_stages=2, n_bootstrap=2, n_init=2), on_fail=None)
    failed = {r["check_name"]: str(r["exception"]) for r in result if r["status"] == "failed"}
    assert failed == {}, failed


def test_clustering_bad_parameters_are_typed_errors(profiles_demo, codebook):
    X = features(profiles_demo, codebook)
    with pytest.raises(MaturityError, match="method"):
        MaturityClustering(method="dbscan").fit(X)
    with pytest.raises(MaturityError, match="n_stages"):
        MaturityClustering(n_stages=1).fit(X)
    with pytest.raises(MaturityError, match="distinct"):
        MaturityClustering(n_stages=4).fit(X.iloc[:3])
    with pytest.raises(MaturityError, match="invalid profiles"):
        MaturityClustering().fit(X.assign(score_evaluation=np.nan))


def test_reference_wave_mapping_keeps_labels_stable(codebook):
    stages = true_stages(40, seed=7)
    w1 = make_wave(codebook, stages, 40, seed=11)
    w2 = make_wave(codebook, stages, 40, seed=12)  # same truth, new sample
    scorer = MaturityScorer(codebook)
    p1 = compute_profiles(w1, scorer.fit(w1))
    p2 = compute_profiles(w2, scorer.fit(w2))
    ref = MaturityClustering(n_bootstrap=0).fit(features(p1, codebook))
    applied = ref.predict(features(p2, codebook))
    assert (applied == ref.labels_).mean() >= 0.95
    # refit on wave 2 with a different seed, then match centroids back to the reference
    own = MaturityClustering(n_bootstrap=0, random_state=99).fit(features(p2, codebook))
    mapping = match_stages(ref, own)
    assert sorted(mapping.tolist()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(mapping[own.labels_], own.labels_)  # both ordered by maturity
    assert (mapping[own.labels_] == applied).mean() >= 0.95
    with pytest.raises(MaturityError, match="cannot match"):
        match_stages(ref, MaturityClustering(n_stages=3, n_bootstrap=0).fit(features(p2, codebook)))


def test_match_stages_undoes_a_permutation(codebook, profiles_demo):
    X = features(profiles_demo, codebook)
    ref = MaturityClustering(n_bootstrap=0).fit(X)
    other = MaturityClustering(n_bootstrap=0).fit(X)
    perm = np.array([2, 0, 3, 1])  # scramble other's stage numbering
    other.cluster_centers_ = other.cluster_centers_[perm]
    other.centers_ = other.centers_[perm]
    mapping = match_stages(ref, other)
    np.testing.assert_array_equal(mapping, perm)


# --------------------------------------------------------------------------- waves, agreement
def test_transitions_and_matrix():
    stages = pd.DataFrame(
        {
            "territory": ["A", "B", "C", "A", "B", "C", "A"],
            "wave": [2023, 2023, 2023, 2024, 2024, 2024, 2025],
            "stage": pd.array([0, 1, 2, 1, 1, None, 3], dtype="Int64"),
        }
    )
    tr = compute_transitions(stages, DEFAULT_STAGE_NAMES)
    assert list(tr.columns) == ["territory", "from_wave", "to_wave", "from_stage", "to_stage",
                                "from_label", "to_label", "changed"]  # fmt: skip
    assert tr[["territory", "from_wave", "to_wave", "from_stage", "to_stage"]].values.tolist() == [
        ["A", 2023, 2024, 0, 1],
        ["B", 2023, 2024, 1, 1],
        ["A", 2024, 2025, 1, 3],
    ]
    assert tr["changed"].tolist() == [True, False, True]
    assert tr["to_label"].iloc[0] == DEFAULT_STAGE_NAMES[1]
    mat = compute_transition_matrix(tr, 4)
    assert mat.to_numpy().sum() == 3
    assert mat.loc[0, 1] == 1
    assert mat.loc[1, 1] == 1
    assert mat.loc[1, 3] == 1
    shares = compute_transition_matrix(tr, 4, normalize=True)
    assert shares.loc[1].sum() == pytest.approx(1.0)
    assert shares.loc[2].isna().all()
    empty = compute_transitions(stages[stages["wave"] == 2023], DEFAULT_STAGE_NAMES)
    assert empty.empty
    assert list(empty.columns) == list(tr.columns)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_weighted_kappa_matches_sklearn(weights):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 4, 200)
    b = np.clip(a + rng.integers(-1, 2, 200), 0, 3)
    ours = compute_weighted_kappa(a, b, 4, weights)
    assert ours == pytest.approx(cohen_kappa_score(a, b, weights=weights, labels=[0, 1, 2, 3]))
    assert compute_weighted_kappa(a, a, 4, weights) == pytest.approx(1.0)


def test_stage_agreement_confusion_and_kappa():
    stat = [0, 1, 2, 3, 3, 1]
    decl = pd.array([0, 2, 2, 3, pd.NA, 1], dtype="Int64")
    out = compute_stage_agreement(stat, decl, 4)
    assert out["n"] == 5
    assert out["n_missing"] == 1
    assert out["confusion"].to_numpy().sum() == 5
    assert out["confusion"].loc[1, 2] == 1
    assert out["agreement"] == pytest.approx(4 / 5)
    keep = [0, 1, 2, 3, 5]
    expected = cohen_kappa_score(
        np.array(stat)[keep], np.array([0, 2, 2, 3, 1]), weights="quadratic", labels=[0, 1, 2, 3]
    )
    assert out["kappa_quadratic"] == pytest.approx(expected)
    with pytest.raises(MaturityError, match="weights"):
        compute_weighted_kappa([0], [0], 4, "cubic")


# --------------------------------------------------------------------------- pipeline entry
_DIMS = ("positionnement", "modele_socio_eco", "gouvernance", "cadre_technique",
         "interconnaissance", "diagnostic_partage", "action_collective", "evaluation",
         "essaimage")  # fmt: skip
MATURITY_COLUMNS = (
    ["wave", "territory", "territory_name", "stage", "stage_label", "stage_probability",
     "p_stage_0", "p_stage_1", "p_stage_2", "p_stage_3", "stage_robustness", "distance"]
    + [f"score_{d}" for d in _DIMS]
    + [f"se_{d}" for d in _DIMS]
    + [f"n_{d}" for d in _DIMS]
    + ["score_global", "se_global", "df", "nsp_share", "n", "n_types", "is_indicative",
       "stage_declared", "flags"]
)  # fmt: skip


@pytest.fixture(scope="module")
def two_waves(codebook):
    s1 = true_stages(40, seed=21)
    s2 = s1.copy()
    movers = np.array([0, 1, 2, 3, 4, 5])  # six territories move up one stage (capped)
    s2[movers] = np.minimum(s2[movers] + 1, 3)
    w1 = make_wave(codebook, s1, 40, seed=31, wave=2024)
    w2 = make_wave(codebook, s2, 40, seed=32, wave=2025)
    # two territories of wave 2 keep only a handful of respondents → indicative
    small = w2["id_territoire_code"].isin(["T010", "T011"]) & (
        w2.groupby("id_territoire_code").cumcount() >= 6
    )
    return s1, s2, w1, w2[~small].reset_index(drop=True)


def _run(two_waves, **cfg):
    _, _, w1, w2 = two_waves
    return compute_maturity(
        {2024: w1, 2025: w2},
        {2024: None, 2025: FakeDesign(np.ones(len(w2)))},
        load_default(),
        MaturityConfig(n_bootstrap=5, **cfg),
        wave=2025,
        min_n=10,
        random_state=0,
    )


def load_default():
    from evalterritoire.codebook import load_codebook

    return load_codebook()


def test_compute_maturity_tables(two_waves):
    s1, s2, _, _ = two_waves
    res = _run(two_waves)
    m = res.maturity
    assert list(m.columns) == MATURITY_COLUMNS
    assert (m["wave"] == 2025).all()
    assert m["territory"].tolist() == sorted(m["territory"].tolist())
    assert adjusted_rand_score(s2, m["stage"].to_numpy(dtype=int)) >= 0.9
    assert m["stage_label"].iloc[0] in DEFAULT_STAGE_NAMES
    assert m["stage_probability"].between(0, 1).all()
    probs = m[[f"p_stage_{s}" for s in range(4)]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(
        probs[np.arange(len(m)), m["stage"].astype(int)], m["stage_probability"]
    )
    assert m["stage_robustness"].between(0, 1).all()
    small = m["territory"].isin(["T010", "T011"])
    assert m.loc[small, "is_indicative"].all()
    assert not m.loc[~small, "is_indicative"].any()
    assert m.loc[small, "flags"].str.contains("small_n").all()
    # declared stage: weighted modal stade_auto, 0-based, mostly the truth
    assert (m["stage_declared"].to_numpy(dtype=int) == s2).mean() > 0.9
    # transitions between 2024 and 2025: the six movers that really moved are found
    tr = res.transitions
    assert set(tr["from_wave"]) == {2024}
    assert len(tr) == 40
    moved = {f"T{t:03d}" for t in range(6) if s2[t] != s1[t]}
    assert set(tr.loc[tr["changed"], "territory"]) == moved
    # profiles of both waves, reliability of both waves
    assert set(res.profiles["wave"]) == {2024, 2025}
    assert set(res.reliability["wave"]) == {2024, 2025}
    d = res.diagnostics
    assert d["reference_wave"] == 2024
    assert d["n_stages"] == 4
    assert d["agreement_declared"]["kappa_quadratic"] > 0.8
    assert d["n_changed"] == len(moved)
    assert sum(d["stage_counts"].values()) == 40
    assert d["stability_ari"] > 0.8
    assert all(a > 0.6 for a in d["alpha"].values())
    import json

    json.dumps(d)  # JSON-ready


def test_compute_maturity_refit_matches_reference(two_waves):
    fixed = _run(two_waves)
    refit = _run(two_waves, refit=True)
    agree = (fixed.maturity["stage"] == refit.maturity["stage"]).mean()
    assert agree >= 0.95
    assert "2025" in refit.diagnostics["refits"]


def test_compute_maturity_is_reproducible_and_order_free(two_waves):
    s1, s2, w1, w2 = two_waves
    a = _run(two_waves)
    shuffled = (s1, s2, w1.sample(frac=1.0, random_state=4), w2.sample(frac=1.0, random_state=5))
    b = _run(shuffled)
    pd.testing.assert_frame_equal(a.maturity, b.maturity, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(a.transitions, b.transitions)
    assert a.diagnostics == b.diagnostics


def test_compute_maturity_bad_input(two_waves):
    _, _, w1, _ = two_waves
    cb = load_default()
    with pytest.raises(MaturityError, match="wave 2030"):
        compute_maturity({2024: w1}, {}, cb, MaturityConfig(), wave=2030, min_n=5, random_state=0)
    with pytest.raises(MaturityError, match="reference wave 2020"):
        compute_maturity(
            {2024: w1}, {}, cb, MaturityConfig(reference_wave=2020), wave=2024, min_n=5,
            random_state=0,
        )  # fmt: skip
    with pytest.raises(MaturityError, match="territory"):
        compute_maturity(
            {2024: w1.drop(columns="id_territoire_code")}, {}, cb, MaturityConfig(), wave=2024,
            min_n=5, random_state=0,
        )  # fmt: skip


def test_profiles_agree_with_design_and_estimates_modules(codebook, wave_demo):
    from evalterritoire.design.survey import SurveyDesign
    from evalterritoire.estimates.engine import estimate_mean

    _, resp = wave_demo
    scorer = MaturityScorer(codebook).fit(resp)
    resp = resp.assign(psu=resp["id_territoire_code"] + "-" + (resp.index % 5).astype(str))
    design = SurveyDesign(resp, weight="id_poids", psu="psu")
    prof = compute_profiles(resp, scorer, design).set_index("territory")
    scored = pd.concat([resp, scorer.transform(resp)], axis=1)
    ref = estimate_mean(
        SurveyDesign(scored, weight="id_poids", psu="psu"),
        ["score_gouvernance", "score_global"],
        by="id_territoire_code",
    )
    for var in ("score_gouvernance", "score_global"):
        r = ref[ref["variable"] == var].set_index("id_territoire_code")
        np.testing.assert_allclose(prof["score_" + var[6:]], r["estimate"], rtol=1e-10)
        se_col = "se_" + var[6:]
        np.testing.assert_allclose(prof[se_col], r["se"], rtol=1e-8)


# --------------------------------------------------------------------------- real simulator
def test_simulator_ingest_design_maturity_recovers_ground_truth(tmp_path, codebook):
    """Project simulator at the demo's size and noise → ingest → design → compute_maturity.

    The issue's bar: adjusted Rand index ≥ 0.9 against the true stages (bench/bench_maturity.py
    reports how it degrades with fewer respondents per territory).
    """
    from evalterritoire.config import load_study
    from evalterritoire.design.survey import build_design
    from evalterritoire.ingest.files import ingest_file
    from evalterritoire.simulate.waves import simulate_waves

    simulate_waves(tmp_path, n_territories=60, n_respondents=3000, waves=[2024, 2025], seed=7)
    responses, designs = {}, {}
    for w in (2024, 2025):
        cfg = load_study(tmp_path / str(w) / "study.toml")
        res = ingest_file(cfg.exports[0], codebook, profile=cfg.ingest.profile)
        responses[w] = res.valid
        designs[w] = build_design(res.valid, cfg.design, cfg.calibration)
    out = compute_maturity(
        responses,
        designs,
        codebook,
        MaturityConfig(n_bootstrap=10, reference_wave=2024),
        wave=2025,
        min_n=cfg.min_n,
        random_state=0,
    )
    truth = pd.read_csv(tmp_path / "ground_truth" / "stages.csv", dtype={"territory": "string"})
    for w in (2024, 2025):
        got = out.profiles[out.profiles["wave"] == w].merge(
            truth[truth["wave"] == w], on="territory", validate="one_to_one"
        )
        assert len(got) == 60
        assert adjusted_rand_score(got["true_stage"], got["stage"].astype(int)) >= 0.9
    tr = out.transitions.merge(truth[truth["wave"] == 2025], on="territory")
    assert (tr["to_stage"] == tr["true_stage"]).mean() >= 0.85


def test_an_answer_means_the_item_was_asked(codebook):
    # routing says "informé" respondents are not asked positionnement; one answered anyway
    df = _tiny(codebook, {p: [4, 2] for p in POS}, {POS[0]: [None, "nsp"]})
    df["prof_role_demarche"] = pd.array(["informe", pd.NA], dtype="string")
    df.loc[1, POS[0]] = pd.NA
    det = MaturityScorer(codebook).fit(df).score_details(df)
    assert det["n_asked_positionnement"].tolist() == [4, 4]
    assert det["n_nsp_positionnement"].tolist() == [0, 1]
    assert det["score_positionnement"].tolist() == pytest.approx([4.0, 2.0])
    # a "filtre" code means not asked: it never counts against the share rule
    df2 = _tiny(codebook, {POS[0]: [None], POS[1]: [3], POS[2]: [3], POS[3]: [None]},
                {POS[0]: ["filtre"], POS[3]: ["nc"]})  # fmt: skip
    det2 = MaturityScorer(codebook).fit(df2).score_details(df2)
    assert det2["n_asked_positionnement"].tolist() == [2]
    assert det2["score_positionnement"].tolist() == [3.0]


@pytest.mark.parametrize(("method", "n_stages"), [("gmm", 4), ("ward", 4), ("kmeans", "auto")])
def test_compute_maturity_methods_and_auto(two_waves, method, n_stages):
    _s1, s2, _, _ = two_waves
    res = _run(two_waves, method=method, n_stages=n_stages)
    d = res.diagnostics
    assert d["method"] == method
    assert len(d["k_selection"]) == (1 if n_stages == 4 else 5)
    k = d["n_stages"]
    assert res.maturity["stage"].dropna().between(0, k - 1).all()
    assert len(d["stage_names"]) == k
    if k == 4:
        assert adjusted_rand_score(s2, res.maturity["stage"].to_numpy(dtype=int)) >= 0.9
    probs = res.maturity["stage_probability"]
    assert probs.between(0, 1).all()


def test_agreement_with_different_numbers_of_stages_has_no_kappa():
    out = compute_stage_agreement([0, 1, 1], [0, 3, 2], 2, n_declared=4)
    assert out["confusion"].shape == (2, 4)
    assert out["confusion"].loc[1, 3] == 1
    assert np.isnan(out["kappa_quadratic"])
    with pytest.raises(MaturityError, match="stages must lie"):
        compute_stage_agreement([0, 5], [0, 1], 4)


def test_stage_robustness_reflects_sampling_error():
    from evalterritoire.maturity.clustering import stage_robustness

    def predict(Z):  # two stages split at 0 on the first dimension
        return (Z[:, 0] > 0).astype(int)

    X = np.array([[-3.0, 0.0], [-0.05, 0.0], [0.0, 0.0], [2.0, 5.0]])
    se = np.array([[0.5, 1.0], [1.0, 1.0], [0.0, 0.0], [np.nan, 0.0]])
    stages = np.array([0, 0, 0, 1])
    got = stage_robustness(predict, X, se, stages, n_draws=4000, seed=1)
    assert got[0] == 1.0  # six SEs from the boundary
    # Phi(0.05) = 0.52: a territory on the boundary keeps its stage about half the time
    assert got[1] == pytest.approx(0.52, abs=0.03)
    assert got[2] == 1.0  # no sampling error (SE 0): always the same stage
    assert got[3] == 1.0  # a missing SE counts as 0
    again = stage_robustness(predict, X, se, stages, n_draws=4000, seed=1)
    np.testing.assert_array_equal(got, again)


def test_single_respondent_type_is_indicative(two_waves):
    """Evaluation grid: « indicatif » with fewer than 2 respondent types, whatever n."""
    s1, s2, w1, w2 = two_waves
    w2 = w2.copy()
    one_type = w2["id_territoire_code"] == "T020"
    w2["id_type_repondant"] = w2["id_type_repondant"].where(~one_type, "association")
    m = _run((s1, s2, w1, w2)).maturity.set_index("territory")
    assert m.loc["T020", "n"] >= 10
    assert m.loc["T020", "n_types"] == 1
    assert bool(m.loc["T020", "is_indicative"])
    assert "single_type" in m.loc["T020", "flags"]
    assert m.drop(index=["T010", "T011", "T020"])["is_indicative"].sum() == 0


def _raked_design(
    n_dom: int, n_per: int, seed: int = 3, *, fpc: bool = False, calibrated: bool = True
):
    from evalterritoire.design import SurveyDesign

    rng = np.random.default_rng(seed)
    n = n_dom * n_per
    data = pd.DataFrame(
        {
            "w": rng.uniform(0.5, 3.0, n),
            "strate": np.repeat(np.arange(max(n_dom // 20, 2)), -(-n // max(n_dom // 20, 2)))[:n],
            "psu": np.repeat(np.arange(n // 3 + 1), 3)[:n],
            "type": np.array(["a", "b", "c"])[rng.integers(0, 3, n)],
            "region": np.array(["r1", "r2"])[rng.integers(0, 2, n)],
        }
    )
    data["fpc"] = data.groupby("strate")["psu"].transform("nunique") * 4
    design = SurveyDesign(data, weight="w", strata="strate", psu="psu", fpc="fpc" if fpc else None)
    if calibrated:
        design = design.rake(
            {"type": {"a": 900.0, "b": 1100.0, "c": 1000.0}, "region": {"r1": 1500.0, "r2": 1500.0}}
        )
    y = rng.normal(3.0, 1.0, (n, 2))
    y[rng.random((n, 2)) < 0.1] = np.nan
    return design, np.repeat(np.arange(n_dom), n_per), y


class _CovarianceOnly:
    """A design exposing only ``weights`` and ``variance_of_totals`` (no domain engine)."""

    def __init__(self, design):
        self.weights = design.weights
        self.variance_of_totals = design.variance_of_totals


def test_profiles_by_blocks_of_domains_are_bit_identical_to_one_pass(monkeypatch):
    """Many territories, a design without domain engine: blocks equal one pass exactly."""
    from evalterritoire.maturity import profiles as prof_mod

    n_dom, n_per = 520, 6
    design, idx, y = _raked_design(n_dom, n_per)
    weights, variance = prof_mod._weights_and_variance(_CovarianceOnly(design), n_dom * n_per)
    blocks = prof_mod._domain_blocks(n_dom)
    assert len(blocks) > 1
    assert min(b.size for b in blocks) >= prof_mod._BLOCK_MIN
    assert np.array_equal(np.concatenate(blocks), np.arange(n_dom))
    by_blocks = prof_mod._domain_means(y, weights, idx, n_dom, variance)
    monkeypatch.setattr(prof_mod, "_domain_blocks", lambda k: [np.arange(k)])
    one_pass = prof_mod._domain_means(y, weights, idx, n_dom, variance)
    for got, want in zip(by_blocks, one_pass, strict=True):
        assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("calibrated", [True, False])
@pytest.mark.parametrize("fpc", [True, False])
@pytest.mark.parametrize("permuted", [True, False])
def test_profiles_domain_engine_equals_the_covariance_diagonal(calibrated, fpc, permuted):
    """The domain engine's variances equal diag(variance_of_totals) of the masked columns."""
    from evalterritoire.maturity import profiles as prof_mod
    from evalterritoire.maturity.compute import _PermutedDesign

    n_dom, n_per = 40, 6
    design, idx, y = _raked_design(n_dom, n_per, seed=5, fpc=fpc, calibrated=calibrated)
    n = n_dom * n_per
    if permuted:
        perm = np.random.default_rng(1).permutation(n)
        design, idx, y = _PermutedDesign(design, perm), idx[perm], y[perm]
    weights, engine = prof_mod._weights_and_variance(design, n)
    _, diagonal = prof_mod._weights_and_variance(_PermutedOrPlain(design), n)
    assert engine.__name__ == "domain_engine"
    assert diagonal.__name__ == "by_blocks"
    fast = prof_mod._domain_means(y, weights, idx, n_dom, engine)
    slow = prof_mod._domain_means(y, weights, idx, n_dom, diagonal)
    assert np.array_equal(fast[0], slow[0], equal_nan=True)
    assert np.array_equal(fast[2], slow[2])
    assert np.all(np.isfinite(fast[1]))
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-12, atol=0.0)


class _PermutedOrPlain:
    """The same design (permuted view or not) with its domain engine hidden."""

    def __init__(self, design):
        self.weights = design.weights
        if callable(getattr(design, "original_rows", None)):
            self.original = _CovarianceOnly(design.original)
            self.original_rows = design.original_rows
        else:
            self.variance_of_totals = design.variance_of_totals


def test_profiles_report_progress_by_dimension(codebook, wave_demo, monkeypatch):
    import contextlib

    import evalterritoire.progress

    seen: list[tuple[str, int]] = []
    done: list[int] = []

    @contextlib.contextmanager
    def recorder(label, total, **_):
        seen.append((label, total))
        yield lambda n=1: done.append(n)

    monkeypatch.setattr(evalterritoire.progress, "step_progress", recorder)
    _, responses = wave_demo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        scorer = MaturityScorer(codebook).fit(responses)
    compute_profiles(responses, scorer)
    n_scores = len(codebook.dimensions) + 1
    assert seen == [("Profils des territoires", n_scores)]
    assert sum(done) == n_scores
