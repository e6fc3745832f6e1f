"""Models: design-based covariance checked by independent computations, and every diagnostic
triggered by a small crafted data set. Agreement with R ``svyglm``/``svyolr`` lives in
``test_models_r.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evalterritoire.config import ModelSpec
from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import ModelError
from evalterritoire.models.data import term_label
from evalterritoire.models.families import detect_ordinal_separation, detect_separation
from evalterritoire.models.fit import MODEL_COLUMNS, fit_model, fit_study_models


def _frame(seed: int = 1, n_strata: int = 4, n_psu: int = 6, m: int = 25) -> pd.DataFrame:
    """Stratified cluster sample: territory = PSU, a territory-level and a respondent-level x."""
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(n_strata):
        for j in range(n_psu):
            u = rng.normal(0, 0.4)
            ctx = rng.normal(10, 3)
            stage = (h + j) % 4
            for _ in range(m):
                x = rng.normal()
                eta = -0.5 + 0.8 * x + 0.05 * (ctx - 10) + 0.6 * stage + u
                rows.append(
                    {
                        "strate": f"S{h}",
                        "psu": f"S{h}P{j}",
                        "territoire": f"T{h}{j}",
                        "poids": float(rng.uniform(1, 4)),
                        "x": x,
                        "ctx": ctx,
                        "stage": stage,
                        "stage_label": ["Émergence", "Structuration", "Consolidation", "Essaimage"][
                            stage
                        ],
                        "y": eta + rng.normal(),
                        "b": float(rng.random() < 1 / (1 + np.exp(-eta))),
                        "o": int(np.digitize(eta + rng.logistic(), [-1.0, 0.5, 2.0])),
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


def _design(frame: pd.DataFrame) -> SurveyDesign:
    return SurveyDesign(frame, weight="poids", strata="strate", psu="psu")


def test_table_columns_and_determinism(frame) -> None:
    spec = ModelSpec("m", "y ~ x + C(stage) + ctx", "linear")
    a = fit_model(spec, frame, _design(frame))
    b = fit_model(spec, frame.sample(frac=1, random_state=3).sort_index(), _design(frame))
    assert tuple(a.table.columns) == MODEL_COLUMNS
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.table["term"].tolist() == [
        "Intercept",
        "C(stage)[T.1]",
        "C(stage)[T.2]",
        "C(stage)[T.3]",
        "x",
        "ctx",
    ]
    assert (a.table["n"] == len(frame)).all()
    assert (a.table["n_psu"] == 24).all()
    assert (a.table["df"] == 24 - 4 + 1 - 6).all()
    assert list(a.vcov.index) == a.table["term"].tolist()


def test_linear_sandwich_equals_cluster_robust_by_hand(frame) -> None:
    """One stage, no strata, with replacement: V = G/(G-1) A⁻¹ Σ_g U_g U_g' A⁻¹."""
    design = SurveyDesign(frame, weight="poids", psu="psu")
    fit = fit_model(ModelSpec("m", "y ~ x + ctx", "linear"), frame, design)
    X = np.column_stack([np.ones(len(frame)), frame["x"], frame["ctx"]])
    w, y = frame["poids"].to_numpy(), frame["y"].to_numpy()
    A = (X * w[:, None]).T @ X
    beta = np.linalg.solve(A, X.T @ (w * y))
    U = X * (w * (y - X @ beta))[:, None]
    groups = pd.factorize(frame["psu"])[0]
    Ug = np.zeros((groups.max() + 1, 3))
    np.add.at(Ug, groups, U)
    Ug -= Ug.mean(axis=0)
    G = Ug.shape[0]
    Ainv = np.linalg.inv(A)
    V = G / (G - 1) * Ainv @ Ug.T @ Ug @ Ainv
    np.testing.assert_allclose(fit.table["estimate"], beta, rtol=1e-10)
    np.testing.assert_allclose(fit.vcov.to_numpy(), V, rtol=1e-9)


def test_logistic_estimates_and_odds_ratios(frame) -> None:
    fit = fit_model(ModelSpec("m", "b ~ x + C(stage)", "logistic"), frame, _design(frame))
    t = fit.table.set_index("term")
    assert np.isnan(t.loc["Intercept", "odds_ratio"])
    assert t.loc["x", "odds_ratio"] == pytest.approx(np.exp(t.loc["x", "estimate"]))
    assert 0.3 < t.loc["x", "estimate"] < 1.3  # generating value 0.8
    assert (t["ci_low"] < t["estimate"]).all()
    assert (t["estimate"] < t["ci_high"]).all()
    assert not fit.diagnostics["separation"]
    assert fit.diagnostics["converged"]


def test_boolean_outcome_from_formula(frame) -> None:
    fit = fit_model(ModelSpec("m", "I(o >= 2) ~ x", "logistic"), frame, _design(frame))
    assert fit.diagnostics["outcome"].startswith("I(o >= 2)")
    direct = fit_model(
        ModelSpec("m", "b2 ~ x", "logistic"),
        frame.assign(b2=(frame["o"] >= 2).astype(float)),
        _design(frame),
    )
    np.testing.assert_allclose(fit.table["estimate"], direct.table["estimate"], rtol=1e-10)


def test_ordinal_weighted_fit_equals_replicated_rows(frame) -> None:
    """Integer weights = frequency weights: compare with statsmodels on replicated rows."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    df = frame.assign(wi=(np.arange(len(frame)) % 3 + 1).astype(float))
    design = SurveyDesign(df, weight="wi", strata="strate", psu="psu")
    fit = fit_model(ModelSpec("m", "o ~ x + ctx", "ordinal"), df, design)
    rep = df.loc[df.index.repeat(df["wi"].astype(int))]
    res = OrderedModel(rep["o"].to_numpy(), rep[["x", "ctx"]].to_numpy(), distr="logit").fit(
        method="newton", disp=False, maxiter=200
    )
    cuts = OrderedModel(
        rep["o"].to_numpy(), rep[["x", "ctx"]].to_numpy()
    ).transform_threshold_params(res.params)[1:-1]
    expected = np.concatenate([res.params[:2], cuts])
    np.testing.assert_allclose(fit.table["estimate"], expected, rtol=1e-5, atol=1e-6)
    assert fit.table["term"].tolist() == ["x", "ctx", "cut_0/1", "cut_1/2", "cut_2/3"]
    assert fit.table["odds_ratio"].notna().tolist() == [True, True, False, False, False]


def test_replicate_design_refits_each_replicate(frame) -> None:
    """JK1 by PSU: the variance is (R-1)/R Σ (β_r − β̄)² of refits without each PSU."""
    df = frame.copy()
    psus = sorted(df["psu"].unique())
    R = len(psus)
    reps = []
    for k, p in enumerate(psus):
        col = f"rep{k}"
        df[col] = np.where(df["psu"] == p, 0.0, df["poids"] * R / (R - 1))
        reps.append(col)
    design = SurveyDesign.from_replicate_weights(
        df, weight="poids", replicate_weights=reps, type="JK1"
    )
    fit = fit_model(ModelSpec("m", "y ~ x", "linear"), df, design)
    X = np.column_stack([np.ones(len(df)), df["x"]])
    y = df["y"].to_numpy()
    betas = []
    for col in reps:
        w = df[col].to_numpy()
        betas.append(np.linalg.lstsq(X * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0])
    betas = np.array(betas)
    d = betas - betas.mean(axis=0)
    V = (R - 1) / R * d.T @ d
    np.testing.assert_allclose(fit.vcov.to_numpy(), V, rtol=1e-8)
    assert fit.diagnostics["variance"] == "replicate refits"


def test_subset_design_restricts_the_model_and_keeps_psus(frame) -> None:
    design = _design(frame).subset(frame["stage"].to_numpy() >= 1)
    fit = fit_model(ModelSpec("m", "y ~ x", "linear"), frame, design)
    assert fit.diagnostics["n"] == int((frame["stage"] >= 1).sum())
    sub = frame[frame["stage"] >= 1]
    X = np.column_stack([np.ones(len(sub)), sub["x"]])
    w = sub["poids"].to_numpy()
    beta = np.linalg.solve((X * w[:, None]).T @ X, X.T @ (w * sub["y"].to_numpy()))
    np.testing.assert_allclose(fit.table["estimate"], beta, rtol=1e-10)


def test_missing_values_leave_rows_out(frame) -> None:
    df = frame.copy()
    df.loc[::7, "x"] = np.nan
    fit = fit_model(ModelSpec("m", "y ~ x", "linear"), df, _design(df))
    assert fit.diagnostics["n"] == int(df["x"].notna().sum())
    assert fit.table["se"].notna().all()


# --------------------------------------------------------------------------- diagnostics
def test_complete_separation_is_flagged(frame) -> None:
    df = frame.assign(sep=(frame["x"] > 0).astype(float))
    fit = fit_model(ModelSpec("m", "sep ~ x + ctx", "logistic"), df, _design(df))
    assert fit.diagnostics["separation"]
    assert "separation" in fit.diagnostics["flags"]
    assert fit.table.set_index("term").loc["x", "flags"].count("séparation") == 1


def test_quasi_separation_by_a_category_is_flagged(frame) -> None:
    df = frame.copy()
    df.loc[df["stage"] == 3, "b"] = 1.0
    fit = fit_model(ModelSpec("m", "b ~ x + C(stage)", "logistic"), df, _design(df))
    assert fit.diagnostics["separation"]
    flags = fit.table.set_index("term")["flags"]
    assert "séparation" in flags["C(stage)[T.3]"]


def test_detect_separation_on_overlapping_data_is_none(frame) -> None:
    X = np.column_stack([np.ones(len(frame)), frame["x"]])
    assert detect_separation(X, frame["b"].to_numpy()) is None


def test_collinear_term_is_dropped_and_flagged(frame) -> None:
    df = frame.assign(x2=2 * frame["x"] + 1)
    fit = fit_model(ModelSpec("m", "y ~ x + x2 + ctx", "linear"), df, _design(df))
    row = fit.table.set_index("term").loc["x2"]
    assert np.isnan(row["estimate"])
    assert row["flags"] == "terme colinéaire, retiré du modèle"
    assert fit.diagnostics["dropped_terms"] == ["x2"]
    assert fit.table.set_index("term").drop(index="x2")["se"].notna().all()


def test_few_psus_for_the_parameters_are_flagged() -> None:
    df = _frame(n_strata=2, n_psu=3)  # 6 PSUs, 2 strata: 4 design df
    fit = fit_model(ModelSpec("m", "y ~ x + ctx + C(stage)", "linear"), df, _design(df))
    assert "few_psu" in fit.diagnostics["flags"]
    assert "no_df" in fit.diagnostics["flags"]
    assert fit.table["flags"].str.contains("peu d'UPE").all()
    assert fit.table["se"].isna().all()  # and said so in every row
    assert fit.table["flags"].str.contains("pas d'erreur-type").all()
    ok = fit_model(ModelSpec("m", "y ~ x", "linear"), df, _design(df))
    assert ok.diagnostics["flags"] == []
    assert ok.table["df"].iloc[0] == 3


def test_ordinal_separation_is_flagged_and_not_published(frame) -> None:
    df = frame.assign(sep=(frame["x"] > 0).astype(float))
    fit = fit_model(ModelSpec("m", "sep ~ x", "ordinal"), df, _design(df))
    assert "separation" in fit.diagnostics["flags"]
    assert fit.table["flags"].str.len().gt(0).all()
    assert fit.table.set_index("term").loc["x", ["estimate", "se"]].isna().all()


def test_logistic_non_convergence_alone_is_flagged(frame) -> None:
    """maxiter = 1 on overlapping data: no separation, only the convergence flag."""
    spec = ModelSpec("m", "b ~ x + C(stage)", "logistic", maxiter=1)
    fit = fit_model(spec, frame, _design(frame))
    assert fit.diagnostics["flags"] == ["not_converged"]
    assert fit.diagnostics["messages"] == ["l'estimation n'a pas convergé"]
    assert not fit.diagnostics["separation"]
    assert not fit.diagnostics["converged"]
    assert (fit.table["flags"] == "l'estimation n'a pas convergé").all()
    assert fit.table["estimate"].notna().all()
    ok = fit_model(ModelSpec("m", "b ~ x + C(stage)", "logistic"), frame, _design(frame))
    assert ok.diagnostics["flags"] == []
    assert ok.diagnostics["converged"]


def test_ordinal_non_convergence_alone_is_flagged(frame) -> None:
    spec = ModelSpec("m", "o ~ x + ctx", "ordinal", maxiter=1)
    fit = fit_model(spec, frame, _design(frame))
    assert fit.diagnostics["flags"] == ["not_converged"]
    assert fit.diagnostics["messages"] == ["l'estimation n'a pas convergé"]
    assert (fit.table["flags"] == "l'estimation n'a pas convergé").all()
    assert detect_ordinal_separation(frame[["x", "ctx"]].to_numpy(), frame["o"].to_numpy()) is None
    ok = fit_model(ModelSpec("m", "o ~ x + ctx", "ordinal"), frame, _design(frame))
    assert ok.diagnostics["flags"] == []
    assert ok.diagnostics["converged"]


def test_near_singular_information_alone_is_flagged(frame) -> None:
    """x2 = x + 3e-7 noise: kept by the collinearity check, but the information is singular."""
    noise = np.random.default_rng(5).normal(size=len(frame))
    df = frame.assign(x2=frame["x"] + 3e-7 * noise)
    fit = fit_model(ModelSpec("m", "y ~ x + x2", "linear"), df, _design(df))
    assert fit.diagnostics["flags"] == ["singular"]
    assert fit.diagnostics["dropped_terms"] == []
    assert fit.diagnostics["messages"] == [
        "matrice d'information singulière : paramètres non identifiables"
    ]
    assert fit.table["flags"].str.fullmatch("information singulière : .*").all()


def test_separated_coefficients_are_not_published(frame) -> None:
    """Quasi-separation by a category: its coefficient is missing, the others are flagged."""
    df = frame.copy()
    df.loc[df["stage"] == 3, "b"] = 1.0
    fit = fit_model(ModelSpec("m", "b ~ x + C(stage)", "logistic"), df, _design(df))
    t = fit.table.set_index("term")
    gone = t.loc["C(stage)[T.3]"]
    assert gone[["estimate", "se", "ci_low", "ci_high", "p_value", "odds_ratio"]].isna().all()
    assert gone["flags"] == "séparation (quasi) complète : coefficient infini, non publié"
    assert fit.diagnostics["separated_terms"] == ["C(stage)[T.3]"]
    assert fit.vcov.loc["C(stage)[T.3]"].isna().all()
    rest = t.drop(index="C(stage)[T.3]")
    assert rest[["estimate", "se", "ci_low", "ci_high"]].notna().all().all()
    assert (rest["flags"] == "séparation (quasi) complète : estimation non fiable").all()
    assert (rest["se"] < 1).all()  # finite, sensible SEs for the identified terms
    # the others equal the fit without the separated category's respondents
    keep = df["stage"] != 3
    sub = fit_model(
        ModelSpec("m", "b ~ x + C(stage)", "logistic"),
        df,
        _design(df).subset(keep.to_numpy()),
    )
    np.testing.assert_allclose(
        rest["estimate"], sub.table.set_index("term").loc[rest.index, "estimate"], rtol=1e-5
    )


def test_detect_ordinal_separation_names_the_category_term() -> None:
    x = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1], dtype=float)
    z = np.array([0.1, -0.3, 0.4, 1.2, -0.5, 0.2, 0.9, -1.1, 0.0, 0.3])
    y = np.array([0, 1, 2, 1, 2, 2, 2, 2, 0, 2])  # x = 1 → top category only
    direction = detect_ordinal_separation(np.column_stack([x, z]), y)
    assert direction is not None
    assert direction[0] > 0
    assert direction[1] == 0
    y_mixed = y.copy()
    y_mixed[4] = 0
    assert detect_ordinal_separation(np.column_stack([x, z]), y_mixed) is None


def test_influential_territory_is_flagged(frame) -> None:
    df = frame.copy()
    out = df["territoire"] == "T00"
    df.loc[out, "y"] += 25 * df.loc[out, "x"]  # one territory with a wild slope
    fit = fit_model(ModelSpec("m", "y ~ x", "linear"), df, _design(df), _territory_codebook())
    influential = fit.diagnostics["influential_territories"]
    assert [d["territory"] for d in influential] == ["T00"]
    assert "territoire influent : T00" in fit.table.set_index("term").loc["x", "flags"]
    clean = fit_model(
        ModelSpec("m", "y ~ x", "linear"), frame, _design(frame), _territory_codebook()
    )
    assert clean.diagnostics["influential_territories"] == []


def test_mixed_model_is_flagged_unweighted(frame) -> None:
    fit = fit_model(
        ModelSpec("m", "y ~ x + C(stage)", "mixed", groups="territoire"), frame, _design(frame)
    )
    assert fit.diagnostics["flags"][-1] == "unweighted"
    assert fit.table["flags"].str.contains("non pondéré").all()
    t = fit.table.set_index("term")
    assert 0.05 < t.loc["var_groupe", "estimate"] < 0.5  # generating variance 0.16
    assert t.loc["x", "estimate"] == pytest.approx(0.8, abs=0.15)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ModelSpec("m", "y ~ nope", "linear"), "formula 'y ~ nope'"),
        (ModelSpec("m", "nope ~ x", "linear"), "outcome 'nope'"),
        (ModelSpec("m", "y ~ x", "logistic"), "0/1"),
        (ModelSpec("m", "y ~ x", "mixed", groups="nope"), "grouping column 'nope'"),
        (ModelSpec("m", "y ~ x", "probit"), "unknown kind"),
    ],
)
def test_bad_specs_raise_one_typed_error(frame, spec, message) -> None:
    with pytest.raises(ModelError, match=message):
        fit_model(spec, frame, _design(frame))


def test_no_complete_row_raises(frame) -> None:
    df = frame.assign(empty=np.nan)
    with pytest.raises(ModelError, match="no respondent"):
        fit_model(ModelSpec("m", "y ~ empty", "linear"), df, _design(df))


def test_frame_and_design_must_match(frame) -> None:
    with pytest.raises(ModelError, match="rows"):
        fit_model(ModelSpec("m", "y ~ x", "linear"), frame.iloc[:10], _design(frame))


# --------------------------------------------------------------------------- labels, study
def test_french_term_labels(codebook) -> None:
    stages = {2: "Consolidation"}
    assert term_label("Intercept", codebook) == "Constante"
    assert term_label("C(stage)[T.2]", codebook, stages) == "Stade : Consolidation"
    label = term_label("C(id_type_repondant)[T.association]", codebook)
    assert label.endswith(": " + codebook.value_labels("id_type_repondant")["association"])
    assert term_label("ctx_taux_chomage", codebook) == codebook.label("ctx_taux_chomage")
    assert " × " in term_label("C(stage)[T.2]:ctx_taux_chomage", codebook, stages)


def test_study_models_concatenate_in_study_order(frame) -> None:
    specs = [
        ModelSpec("b_model", "b ~ x", "logistic"),
        ModelSpec("a_model", "y ~ x", "linear"),
    ]
    res = fit_study_models(specs, frame, _design(frame))
    assert res.table["model"].drop_duplicates().tolist() == ["b_model", "a_model"]
    assert set(res.diagnostics) == {"a_model", "b_model"}
    empty = fit_study_models([], frame, _design(frame))
    assert tuple(empty.table.columns) == MODEL_COLUMNS
    assert empty.table.empty


def test_study_models_report_progress_per_model(frame, monkeypatch) -> None:
    import contextlib

    import evalterritoire.progress

    seen: list[tuple[str, int]] = []
    done: list[int] = []

    @contextlib.contextmanager
    def recorder(label, total, **_):
        seen.append((label, total))
        yield lambda n=1: done.append(n)

    monkeypatch.setattr(evalterritoire.progress, "step_progress", recorder)
    specs = [ModelSpec("b_model", "b ~ x", "logistic"), ModelSpec("a_model", "y ~ x", "linear")]
    fit_study_models(specs, frame, _design(frame))
    assert seen == [("Modèles", 2)]
    assert sum(done) == 2


def _territory_codebook():
    """A stand-in exposing only what fit_model asks of a codebook (territory column)."""

    class _Codebook:
        ids: tuple[str, ...] = ()

        def column(self, role):
            return "territoire" if role == "territory" else None

    return _Codebook()


def test_superpopulation_variance_drops_the_fpc(frame) -> None:
    df = frame.assign(fpc=frame["strate"].map({"S0": 8, "S1": 10, "S2": 7, "S3": 12}))
    finite = SurveyDesign(df, weight="poids", strata="strate", psu="psu", fpc="fpc")
    wr = SurveyDesign(df, weight="poids", strata="strate", psu="psu")
    spec = ModelSpec("m", "y ~ x + ctx", "linear")
    spec_super = ModelSpec("m", "y ~ x + ctx", "linear", superpopulation=True)
    a = fit_model(spec_super, df, finite)
    b = fit_model(spec, df, wr)
    c = fit_model(spec, df, finite)
    np.testing.assert_allclose(a.vcov.to_numpy(), b.vcov.to_numpy(), rtol=1e-12)
    assert (c.table["se"] < a.table["se"]).all()  # the fpc shrinks the census variance
    assert "superpopulation" in a.diagnostics["variance"]
    assert finite.without_fpc().weights is finite.weights


# --------------------------------------------------------------------------- mixed sandwich
def _two_psu_territories(seed: int = 2) -> pd.DataFrame:
    """3 strata × 4 territories × 2 PSUs × 7 respondents, territory random intercepts."""
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(3):
        for t in range(4):
            u = rng.normal(0, 0.6)
            ctx = rng.normal(10, 3)
            for j in range(2):
                for _ in range(5 + 2 * j + (t % 2)):  # unequal PSU and territory sizes
                    x = rng.normal()
                    rows.append(
                        {
                            "strate": f"S{h}",
                            "territoire": f"T{h}{t}",
                            "psu": f"T{h}{t}-{j}",
                            "poids": float(rng.uniform(1, 4)),
                            "x": x,
                            "ctx": ctx,
                            "y": 1.0 + 0.8 * x + 0.1 * ctx + u + rng.normal(),
                        }
                    )
    return pd.DataFrame(rows)


def test_mixed_sandwich_equals_hand_computation() -> None:
    """GLS scores given the variance components, summed by territory (the PSUs are nested in
    them), stratified with-replacement variance: V = A⁻¹ [Σ_h n_h/(n_h−1) Σ_c (T_c − T̄_h)²] A⁻¹."""
    df = _two_psu_territories()
    design = SurveyDesign(df, weight="poids", strata="strate", psu="psu")
    spec = ModelSpec("m", "y ~ x + ctx", "mixed", groups="territoire")
    fit = fit_model(spec, df, design)
    t = fit.table.set_index("term")
    beta = t.loc[["Intercept", "x", "ctx"], "estimate"].to_numpy()
    tau2, s2 = t.loc["var_groupe", "estimate"], t.loc["var_residuelle", "estimate"]
    X = np.column_stack([np.ones(len(df)), df["x"], df["ctx"]])
    r = df["y"].to_numpy() - X @ beta
    p = X.shape[1]
    A = np.zeros((p, p))
    U = np.zeros_like(X)
    for _, idx in df.groupby("territoire").indices.items():
        n_g = len(idx)
        gamma = tau2 / (s2 + n_g * tau2)
        Xg = X[idx]
        Sg = Xg.sum(axis=0)
        A += (Xg.T @ Xg - gamma * np.outer(Sg, Sg)) / s2
        U[idx] = Xg * ((r[idx] - gamma * r[idx].sum()) / s2)[:, None]
    middle = np.zeros((p, p))
    for _, d in df.assign(i=np.arange(len(df))).groupby("strate"):
        T = np.array([U[g["i"].to_numpy()].sum(axis=0) for _, g in d.groupby("territoire")])
        dev = T - T.mean(axis=0)
        middle += len(T) / (len(T) - 1) * dev.T @ dev
    Ainv = np.linalg.inv(A)
    V = Ainv @ middle @ Ainv
    np.testing.assert_allclose(fit.vcov.to_numpy(), V, rtol=1e-9)
    np.testing.assert_allclose(U.sum(axis=0), 0.0, atol=1e-6)  # MixedLM's β is the GLS root
    # A is the GLS information: its inverse is MixedLM's model-based covariance
    model_se = pd.Series(fit.diagnostics["model_based_se"])
    np.testing.assert_allclose(model_se, np.sqrt(np.diag(Ainv)), rtol=1e-3)
    d = fit.diagnostics
    assert d["variance_clusters"] == 12
    assert d["variance_strata"] == "strate"
    assert d["design_df"] == 12 - 3
    assert d["df_resid"] == 12 - 3 + 1 - 3
    assert (t["df"] == 7).all()
    assert (t["n_psu"] == 24).all()
    crit = stats.t.ppf(0.975, 7)
    np.testing.assert_allclose(
        t.loc["x", "ci_high"] - t.loc["x", "estimate"], crit * t.loc["x", "se"]
    )
    assert t.loc["var_groupe", "se"] != t.loc["var_groupe", "se"]  # NaN: no SE for it
    assert "composante de variance" in t.loc["var_groupe", "flags"]
    assert d["flags"] == ["unweighted"]


def test_mixed_sandwich_ignores_weights_calibration_and_fpc() -> None:
    """The point estimates are unweighted: weights, calibration and fpc leave the variance."""
    df = _two_psu_territories().assign(fpc=40)
    spec = ModelSpec("m", "y ~ x + ctx", "mixed", groups="territoire")
    base = fit_model(spec, df, SurveyDesign(df, weight="poids", strata="strate", psu="psu"))
    others = [
        SurveyDesign(df, strata="strate", psu="psu"),
        SurveyDesign(df, weight="poids", strata="strate", psu="psu", fpc="fpc"),
        SurveyDesign(df, weight="poids", strata="strate", psu="psu").poststratify(
            {"strate": {"S0": 300.0, "S1": 200.0, "S2": 500.0}}
        ),
    ]
    for design in others:
        fit = fit_model(spec, df, design)
        np.testing.assert_allclose(fit.vcov.to_numpy(), base.vcov.to_numpy(), rtol=1e-12)


def test_mixed_groups_nested_in_psus_cluster_by_psu() -> None:
    """Groups inside PSUs (e.g. respondent type within a cluster): the PSUs are the clusters."""
    df = _two_psu_territories()
    df["sous_groupe"] = df["psu"] + "/" + (df["x"] > 0).astype(str)
    design = SurveyDesign(df, weight="poids", strata="strate", psu="territoire")
    fit = fit_model(ModelSpec("m", "y ~ x", "mixed", groups="sous_groupe"), df, design)
    assert fit.diagnostics["variance_clusters"] == 12
    # groups crossing the PSUs and strata: one cluster, no design degrees of freedom, said so
    crossed = fit_model(
        ModelSpec("m", "y ~ x", "mixed", groups="signe"),
        df.assign(signe=(df["x"] > 0).astype(str)),
        _design_by_psu(df),
    )
    assert crossed.diagnostics["variance_clusters"] == 1
    assert crossed.diagnostics["variance_strata"] is None
    assert {"few_psu", "no_df"} <= set(crossed.diagnostics["flags"])
    assert crossed.table.loc[crossed.table["term"] == "x", "se"].isna().all()


def _design_by_psu(df: pd.DataFrame) -> SurveyDesign:
    return SurveyDesign(df, weight="poids", strata="strate", psu="psu")


def test_mixed_few_clusters_and_influence_are_diagnosed() -> None:
    df = _frame(n_strata=2, n_psu=3)  # territory = PSU: 6 clusters, 2 strata, 4 df
    spec = ModelSpec("m", "y ~ x + ctx + C(stage)", "mixed", groups="territoire")
    fit = fit_model(spec, df, _design(df))
    assert {"few_psu", "no_df", "unweighted"} <= set(fit.diagnostics["flags"])
    assert any("6 grappes" in m for m in fit.diagnostics["messages"])
    fixed = fit.table[~fit.table["term"].str.startswith("var_")]
    assert fixed["se"].isna().all()
    assert fixed["flags"].str.contains("peu d'UPE").all()

    frame = _frame()
    wild = frame.copy()
    out = wild["territoire"] == "T00"
    wild.loc[out, "y"] += 25 * wild.loc[out, "x"]
    spec = ModelSpec("m", "y ~ x", "mixed", groups="territoire")
    fit = fit_model(spec, wild, _design(wild), _territory_codebook())
    assert fit.diagnostics["influence_check"] == "done"
    assert [d["territory"] for d in fit.diagnostics["influential_territories"]] == ["T00"]
    assert "territoire influent : T00" in fit.table.set_index("term").loc["x", "flags"]
    clean = fit_model(spec, frame, _design(frame), _territory_codebook())
    assert clean.diagnostics["influential_territories"] == []


# --------------------------------------------------------------------------- replicate designs
def test_replicate_design_has_no_psu_count_and_skips_influence(frame) -> None:
    df = frame.copy()
    psus = sorted(df["psu"].unique())
    reps = []
    for k, p in enumerate(psus):
        df[f"rep{k}"] = np.where(df["psu"] == p, 0.0, df["poids"] * len(psus) / (len(psus) - 1))
        reps.append(f"rep{k}")
    design = SurveyDesign.from_replicate_weights(
        df, weight="poids", replicate_weights=reps, type="JK1"
    )
    fit = fit_model(ModelSpec("m", "y ~ x", "linear"), df, design, _territory_codebook())
    assert fit.table["n_psu"].isna().all()
    assert fit.diagnostics["n_psu"] is None
    assert any("nombre d'UPE inconnu" in m for m in fit.diagnostics["messages"])
    assert fit.diagnostics["influence_check"].startswith("skipped: replicate")
    assert "influence_skipped" in fit.diagnostics["flags"]
    assert fit.table["flags"].str.contains("influence des territoires non évaluée").all()
    assert fit.table["se"].notna().all()


# --------------------------------------------------------------------------- study file
_STUDY = """
[study]
name = "Test"
wave = 2025
exports = ["export.csv"]
random_state = 7
min_n = 20

[[models]]
name = "m"
formula = "b ~ x"
"""


def _load(tmp_path, extra: str):
    from evalterritoire.config import load_study

    (tmp_path / "export.csv").write_text("id\n1\n", encoding="utf-8")
    path = tmp_path / "study.toml"
    path.write_text(_STUDY + extra, encoding="utf-8")
    return load_study(path)


def test_study_file_family_is_an_alias_of_kind(tmp_path, frame) -> None:
    from evalterritoire.errors import StudyConfigError

    spec = _load(tmp_path, 'family = "logistic"\nmaxiter = 1\n').models[0]
    assert spec.kind == "logistic"
    assert spec.family == "logistic"
    assert spec.maxiter == 1
    assert _load(tmp_path, 'kind = "ordinal"\n').models[0].family == "ordinal"
    assert _load(tmp_path, 'kind = "mixed"\nfamily = "mixed"\ngroups = "g"\n').models[0].kind == (
        "mixed"
    )
    fit = fit_model(spec, frame, _design(frame))
    assert fit.diagnostics["flags"] == ["not_converged"]
    with pytest.raises(StudyConfigError, match="disagree"):
        _load(tmp_path, 'kind = "linear"\nfamily = "logistic"\n')
    with pytest.raises(StudyConfigError, match="family"):
        _load(tmp_path, 'family = "probit"\n')
    with pytest.raises(StudyConfigError, match="maxiter"):
        _load(tmp_path, "maxiter = 0\n")
