"""SurveyDesign: construction errors, variance_of_totals contract, calibration, replicates."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from evalterritoire.design.survey import SurveyDesign, compute_kish_effective_n
from evalterritoire.errors import DesignError


@pytest.fixture
def strat() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 60
    return pd.DataFrame(
        {
            "h": np.repeat(["a", "b", "c"], 20),
            "psu": [f"p{i // 4}" for i in range(n)],
            "w": rng.uniform(1, 5, n),
            "y": rng.normal(10, 2, n),
            "x": rng.normal(0, 1, n),
            "N": np.repeat([40.0, 50.0, 60.0], 20),
        }
    )


def _by_hand(df: pd.DataFrame, z: np.ndarray, fpc: bool) -> np.ndarray:
    """Textbook stratified cluster variance of a total (independent implementation)."""
    v = np.zeros((z.shape[1], z.shape[1]))
    for h, part in df.assign(_i=np.arange(len(df))).groupby("h"):
        totals = np.array([z[g["_i"].to_numpy()].sum(axis=0) for _, g in part.groupby("psu")])
        n_h = len(totals)
        f = (1 - n_h / part["N"].iloc[0]) if fpc else 1.0
        dev = totals - totals.mean(axis=0)
        v += f * n_h / (n_h - 1) * dev.T @ dev
        del h
    return v


@pytest.mark.parametrize("fpc", [False, True])
def test_variance_of_totals_matches_textbook_formula(strat: pd.DataFrame, fpc: bool) -> None:
    d = SurveyDesign(strat, weight="w", strata="h", psu="psu", fpc="N" if fpc else None)
    z = np.column_stack([strat.w * strat.y, strat.w * strat.x])
    v = d.variance_of_totals(z)
    assert v.shape == (2, 2)
    np.testing.assert_allclose(v, _by_hand(strat, z, fpc), rtol=1e-12)
    assert d.variance_of_totals(z[:, 0]).shape == (1, 1)
    assert d.n_psu == 15
    assert d.n_strata == 3
    assert d.df == 12


def test_fpc_fraction_equals_count(strat: pd.DataFrame) -> None:
    n_h = strat.groupby("h")["psu"].transform("nunique")
    frac = strat.assign(f=n_h / strat["N"])
    z = (strat.w * strat.y).to_numpy()
    a = SurveyDesign(frac, weight="w", strata="h", psu="psu", fpc="N").variance_of_totals(z)
    b = SurveyDesign(frac, weight="w", strata="h", psu="psu", fpc="f").variance_of_totals(z)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_design_is_immutable(strat: pd.DataFrame) -> None:
    d = SurveyDesign(strat, weight="w")
    with pytest.raises(AttributeError):
        d.foo = 1  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="read-only"):
        d.weights[0] = 3.0


def test_subset_zeroes_contributions_outside_domain(strat: pd.DataFrame) -> None:
    d = SurveyDesign(strat, weight="w", strata="h", psu="psu")
    mask = (strat.x > 0).to_numpy()
    z = (strat.w * strat.y).to_numpy()
    np.testing.assert_allclose(
        d.subset(mask).variance_of_totals(z), d.variance_of_totals(z * mask), rtol=1e-12
    )
    sub = d.subset(strat.h == "a")
    assert sub.df == 5 - 1
    with pytest.raises(DesignError, match="no members"):
        d.subset(np.zeros(len(strat), dtype=bool))


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda df: df.assign(w=df.w.where(df.index != 3)), {"weight": "w"}, "missing"),
        (lambda df: df.assign(w=df.w.where(df.index != 3, 0.0)), {"weight": "w"}, "≤ 0"),
        (lambda df: df, {"weight": "poids"}, "unknown design column"),
        (
            lambda df: df.assign(psu=np.where(df.index < 30, "p0", "p1")),
            {"strata": "h", "psu": "psu"},
            "not nested",
        ),
        (
            lambda df: df.assign(psu=np.where(df.h == "a", "solo", df.psu)),
            {"strata": "h", "psu": "psu"},
            "stratum 'a' has only one sampled PSU",
        ),
        (
            lambda df: df.assign(N=2.0),
            {"strata": "h", "psu": "psu", "fpc": "N"},
            "smaller than the number of sampled",
        ),
        (lambda df: df, {"lonely_psu": "average"}, "lonely_psu must be one of"),
    ],
)
def test_bad_input_gives_one_typed_error(strat, change, kwargs, message) -> None:
    with pytest.raises(DesignError, match=message):
        SurveyDesign(change(strat), **kwargs)


def test_lonely_psu_rules(strat: pd.DataFrame) -> None:
    df = strat.assign(psu=np.where(strat.h == "a", "solo", strat.psu))
    z = (df.w * df.y).to_numpy()
    base = SurveyDesign(df[df.h != "a"], weight="w", strata="h", psu="psu")
    v_rest = base.variance_of_totals(z[(df.h != "a").to_numpy()])
    for rule in ("remove", "certainty"):
        v = SurveyDesign(df, weight="w", strata="h", psu="psu", lonely_psu=rule)
        np.testing.assert_allclose(v.variance_of_totals(z), v_rest, rtol=1e-12)
    adj = SurveyDesign(df, weight="w", strata="h", psu="psu", lonely_psu="adjust")
    assert adj.lonely_units == ("stratum a",)
    lonely_total = z[(df.h == "a").to_numpy()].sum()
    np.testing.assert_allclose(adj.variance_of_totals(z), v_rest + lonely_total**2, rtol=1e-12)


def test_kish_effective_n() -> None:
    assert compute_kish_effective_n(np.ones(10)) == pytest.approx(10)
    assert compute_kish_effective_n([1.0, 3.0]) == pytest.approx(16 / 10)


# ----------------------------------------------------------------------------- calibration
def _margins(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    n_pop = 1000.0
    return {
        "g": {"0": 0.55 * n_pop, "1": 0.45 * n_pop},
        "k": {"u": 0.3 * n_pop, "v": 0.3 * n_pop, "x": 0.4 * n_pop},
    }


@pytest.fixture
def cal_data(strat: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return strat.assign(g=rng.integers(0, 2, len(strat)), k=rng.choice(["u", "v", "x"], len(strat)))


@pytest.mark.parametrize("method", ["rake", "calibrate_linear"])
def test_calibration_hits_margins(cal_data: pd.DataFrame, method: str) -> None:
    base = SurveyDesign(cal_data, weight="w", strata="h", psu="psu")
    margins = _margins(cal_data)
    cal = getattr(base, method)(margins)
    for var, totals in margins.items():
        got = pd.Series(cal.weights).groupby(cal_data[var].astype(str).to_numpy()).sum()
        np.testing.assert_allclose(got[list(totals)], list(totals.values()), rtol=1e-8)
    assert cal.calibration["converged"]
    assert base.calibration["method"] == "none"  # the original design is unchanged
    # calibration variables are estimated without error after calibration
    z = cal.weights * (cal_data["g"] == 1).to_numpy()
    assert cal.variance_of_totals(z)[0, 0] < 1e-18 * z.sum() ** 2


@pytest.mark.parametrize("kind", ["rake", "two_steps", "two_stage"])
def test_calibrated_domain_variances_equal_subset_variance(
    cal_data: pd.DataFrame, kind: str
) -> None:
    margins = _margins(cal_data)
    if kind == "two_stage":
        data = cal_data.assign(ssu=np.arange(len(cal_data)) % 2, N2=9.0)
        base = SurveyDesign(data, weight="w", strata="h", psu="psu", fpc="N", psu2="ssu", fpc2="N2")
    else:
        base = SurveyDesign(cal_data, weight="w", strata="h", psu="psu")
    if kind == "two_steps":
        cal = base.poststratify({"k": margins["k"]}).calibrate_linear(margins)
    else:
        cal = base.rake(margins)
    codes = pd.factorize(cal_data["k"], sort=True)[0]
    z = np.column_stack([cal.weights * cal_data.y, cal.weights * cal_data.x])
    fast = cal._domain_variances(z, codes, 3)
    for g in range(3):
        brute = np.diag(cal.variance_of_totals(z * (codes == g)[:, None]))
        np.testing.assert_allclose(fast[g], brute, rtol=1e-10)


def test_rake_reports_non_convergence(cal_data: pd.DataFrame) -> None:
    base = SurveyDesign(cal_data, weight="w")
    rk = base.rake(_margins(cal_data), max_iter=1, tol=1e-15)
    assert rk.calibration["iterations"] == 1
    assert not rk.calibration["converged"]
    bad = dict(_margins(cal_data), g={"0": 10.0, "1": 20.0})
    with pytest.raises(DesignError, match="disagree on the population size"):
        base.rake(bad)
    with pytest.raises(DesignError, match="no population total"):
        base.poststratify({"k": {"u": 1.0, "v": 2.0}})


def test_trim_weights_follows_r_trimweights(cal_data: pd.DataFrame) -> None:
    """R's rule: clip, then share the trimmed amount equally (additively) among the weights that
    were inside; once, or until none is outside (strict)."""
    d = SurveyDesign(cal_data, weight="w")
    w = d.weights
    lo, hi = 1.5, 4.5
    outside = (w < lo) | (w > hi)
    by_hand = np.clip(w, lo, hi)
    by_hand[~outside] += (w - np.clip(w, lo, hi)).sum() / (~outside).sum()
    once = d.trim_weights(lo, hi)
    np.testing.assert_allclose(once.weights, by_hand, rtol=1e-14)
    assert once.calibration["n_trimmed"] == outside.sum() > 0
    assert once.calibration["trim_iterations"] == 1
    assert not once.calibration["trim_strict"]
    t = d.trim_weights(lo, hi, strict=True)
    assert t.weights.sum() == pytest.approx(d.weights.sum(), rel=1e-12)
    assert t.weights.min() >= lo
    assert t.weights.max() <= hi
    assert t.calibration["trim_iterations"] >= 1
    assert t.calibration["trim_strict"]
    # nothing outside: the same weights
    np.testing.assert_array_equal(d.trim_weights(0.1, 100.0).weights, d.weights)
    with pytest.raises(DesignError, match="cannot keep the weight total"):
        d.trim_weights(upper=1.0)
    with pytest.raises(DesignError, match="invalid trimming bounds"):
        d.trim_weights(3.0, 2.0)
    two = SurveyDesign(pd.DataFrame({"w": [0.5, 10.0]}), weight="w")
    with pytest.raises(DesignError, match="no weight lies within"):
        two.trim_weights(1.0, 9.0)
    # tight bounds: one round leaves weights outside (R strict=FALSE), strict needs more rounds
    loose = d.trim_weights(2.0, 3.2)
    assert ((loose.weights < 2.0) | (loose.weights > 3.2)).any()
    tight = d.trim_weights(2.0, 3.2, strict=True)
    assert tight.calibration["trim_iterations"] > 1
    assert tight.weights.max() <= 3.2
    with pytest.raises(DesignError, match="did not finish"):
        d.trim_weights(2.0, 3.2, strict=True, max_iter=1)


def test_build_design_from_config(cal_data: pd.DataFrame) -> None:
    from evalterritoire.config import CalibrationConfig, DesignConfig
    from evalterritoire.design.survey import build_design

    cfg = DesignConfig(weight="w", strata="h", psu="psu", fpc="N", lonely_psu="fail")
    d = build_design(cal_data, cfg, CalibrationConfig())
    assert d.calibration["method"] == "none"
    assert d.df == 12
    cal = CalibrationConfig(method="rake", margins=_margins(cal_data), trim_upper=20.0)
    d = build_design(cal_data, cfg, cal)
    assert d.calibration["method"] == "rake"
    assert d.weights.max() <= 20.0 + 1e-9
    # an optional design column present but empty is treated as absent
    empty = cal_data.assign(N=np.nan)
    assert build_design(empty, cfg, CalibrationConfig()).df == 12
    with pytest.raises(DesignError, match="not in the responses"):
        build_design(cal_data, DesignConfig(weight="poids"), CalibrationConfig())
    with pytest.raises(DesignError, match="did not converge"):
        build_design(
            cal_data, cfg, CalibrationConfig(method="rake", margins=_margins(cal_data), max_iter=1)
        )


# ----------------------------------------------------------------------------- replicates
def test_replicate_variance_of_totals_matches_estimator(strat: pd.DataFrame) -> None:
    from evalterritoire.estimates.engine import estimate_total

    rng = np.random.default_rng(2)
    reps = {f"r{i}": strat.w * rng.choice([0.0, 2.0], len(strat)) for i in range(20)}
    data = strat.assign(**reps)
    d = SurveyDesign.from_replicate_weights(
        data, weight="w", replicate_weights=list(reps), type="BRR"
    )
    v = d.variance_of_totals((d.weights * data.y).to_numpy())
    se = estimate_total(d, "y").iloc[0].se
    assert v[0, 0] == pytest.approx(se**2, rel=1e-12)
    assert d.is_replicate
    assert d.df == 19
    with pytest.raises(DesignError, match="needs rho"):
        SurveyDesign.from_replicate_weights(
            data, weight="w", replicate_weights=list(reps), type="Fay"
        )
    with pytest.raises(DesignError, match="not supported"):
        d.rake({"h": {"a": 1.0, "b": 1.0, "c": 1.0}})
    with pytest.raises(DesignError, match="not supported"):
        d.trim_weights(upper=3.0)


def test_replicate_arguments_are_checked(strat: pd.DataFrame) -> None:
    """rscales of the wrong length, a scale BRR/Fay would override, rho outside Fay: typed errors."""
    from evalterritoire.errors import EvalTerritoireError

    rng = np.random.default_rng(5)
    reps = {f"r{i}": strat.w * rng.choice([0.0, 2.0], len(strat)) for i in range(8)}
    data = strat.assign(**reps)
    cols = list(reps)

    def build(**kw):
        return SurveyDesign.from_replicate_weights(data, weight="w", replicate_weights=cols, **kw)

    with pytest.raises(
        DesignError, match=r"rscales has 3 values, should have 1 or one per .*\(8\)"
    ):
        build(type="JK1", rscales=[1.0, 1.0, 1.0])
    assert issubclass(DesignError, EvalTerritoireError)
    assert build(type="JK1", rscales=0.5)._rep.rscales.tolist() == [0.5] * 8
    assert build(type="JKn", rscales=np.full(8, 0.75))._rep.rscales.tolist() == [0.75] * 8
    with pytest.raises(DesignError, match="rscales must be finite"):
        build(type="JK1", rscales=[-1.0] * 8)
    # BRR and Fay fix the scale: a different one is refused, the same one accepted
    with pytest.raises(DesignError, match=r"type='BRR' fixes scale = 0.125 .* got scale=0.5"):
        build(type="BRR", scale=0.5)
    assert build(type="BRR", scale=1 / 8)._rep.scale == pytest.approx(1 / 8)
    fay = 1 / (8 * 0.7**2)
    with pytest.raises(DesignError, match="type='Fay' fixes scale"):
        build(type="Fay", rho=0.3, scale=1 / 8)
    assert build(type="Fay", rho=0.3)._rep.scale == pytest.approx(fay, rel=1e-15)
    with pytest.raises(DesignError, match="rho is only used by type='Fay'"):
        build(type="BRR", rho=0.3)
    with pytest.raises(DesignError, match="rho must be in"):
        build(type="Fay", rho=1.0)
    with pytest.raises(DesignError, match="needs rscales"):
        build(type="JKn")
    with pytest.raises(DesignError, match="scale must be finite and > 0"):
        build(type="other", scale=0.0)
    # defaults as R svrepdesign: JK1 (R-1)/R, bootstrap 1/(R-1), other 1; a given scale is kept
    assert build(type="JK1")._rep.scale == pytest.approx(7 / 8)
    assert build(type="bootstrap")._rep.scale == pytest.approx(1 / 7)
    assert build(type="other")._rep.scale == 1.0
    assert build(type="JK1", scale=0.3)._rep.scale == 0.3


def test_two_stage_variance_of_totals_by_hand() -> None:
    """Two-stage with fpc: between-PSU term plus f1 × within-PSU terms (textbook formula)."""
    rng = np.random.default_rng(4)
    rows = []
    for a in range(5):
        for b in range(3):
            for _ in range(4):
                rows.append({"psu": f"a{a}", "ssu": f"b{b}", "y": rng.normal()})
    df = pd.DataFrame(rows).assign(w=1.0, N1=20.0, N2=10.0)
    d = SurveyDesign(df, weight="w", psu="psu", fpc="N1", psu2="ssu", fpc2="N2")
    z = df.y.to_numpy()
    t_psu = df.groupby("psu").y.sum().to_numpy()
    v1 = (1 - 5 / 20) * 5 / 4 * np.sum((t_psu - t_psu.mean()) ** 2)
    v2 = 0.0
    for _, g in df.groupby("psu"):
        t = g.groupby("ssu").y.sum().to_numpy()
        v2 += (5 / 20) * (1 - 3 / 10) * 3 / 2 * np.sum((t - t.mean()) ** 2)
    assert d.variance_of_totals(z)[0, 0] == pytest.approx(v1 + v2, rel=1e-12)


def test_design_pickles_and_keeps_values(strat: pd.DataFrame) -> None:
    import pickle

    d = SurveyDesign(strat, weight="w", strata="h", psu="psu").subset(strat.x > 0)
    again = pickle.loads(pickle.dumps(d))
    z = (strat.w * strat.y).to_numpy()
    np.testing.assert_array_equal(again.variance_of_totals(z), d.variance_of_totals(z))
    assert again.df == d.df


@pytest.mark.parametrize("kind", ["rake", "two_steps", "two_stage"])
def test_domain_variances_by_blocks_are_bit_identical(cal_data: pd.DataFrame, kind: str) -> None:
    """Column blocks of any width (narrow ones too) give exactly the whole-matrix variances."""
    from evalterritoire.design.domains import domain_variances_blocks

    margins = _margins(cal_data)
    if kind == "two_stage":
        data = cal_data.assign(ssu=np.arange(len(cal_data)) % 2, N2=9.0)
        base = SurveyDesign(data, weight="w", strata="h", psu="psu", fpc="N", psu2="ssu", fpc2="N2")
    else:
        base = SurveyDesign(cal_data, weight="w", strata="h", psu="psu")
    if kind == "two_steps":
        cal = base.poststratify({"k": margins["k"]}).calibrate_linear(margins)
    else:
        cal = base.rake(margins)
    rng = np.random.default_rng(5)
    z = rng.normal(size=(len(cal_data), 13)) * cal.weights[:, None]
    codes = pd.factorize(cal_data["k"], sort=True)[0]
    codes = np.where(rng.random(len(codes)) < 0.1, -1, codes)  # some rows in no domain
    whole = cal._domain_variances(z, codes, 3)
    done: list[int] = []
    for cuts in ([13], [1, 1, 11], [5, 8], [9, 2, 2]):
        edges = np.cumsum([0, *cuts])
        blocks = [z[:, a:b] for a, b in itertools.pairwise(edges)]
        got = domain_variances_blocks(cal, iter(blocks), codes, 3, advance=done.append)
        assert np.array_equal(got.view(np.int64), whole.view(np.int64))
    assert sum(done) == 4 * 3 * 13 * len(cal._stages)


@pytest.mark.parametrize(
    ("n", "groups", "k", "share"), [(400, 7, 5, 1.0), (400, 7, 5, 0.7), (30, 50, 3, 1.0)]
)
def test_stacked_weights_written_as_csr_equal_the_csc_conversion(n, groups, k, share) -> None:
    """The CSR arrays written directly are those of the former CSC → CSR conversion."""
    from types import SimpleNamespace

    from scipy import sparse

    from evalterritoire.design.domains import _stacked_weights

    rng = np.random.default_rng(n + k)
    keep = rng.random(n) < share
    x = rng.integers(0, 2, (n, k)) * rng.normal(size=(n, k))  # explicit zeros kept
    step = SimpleNamespace(w_before=rng.uniform(1, 3, n), w_after=rng.uniform(1, 3, n), x=x)
    ck = rng.integers(0, groups, int(keep.sum()))
    ratio = (step.w_before / step.w_after)[keep]
    weights = (ratio * x[keep].T).T
    rows = (np.arange(k, dtype=np.int64)[None, :] * groups + ck[:, None]).ravel()
    want = sparse.csc_matrix(
        (np.ascontiguousarray(weights).ravel(), rows, np.arange(0, k * ck.size + 1, k)),
        shape=(k * groups, ck.size),
    ).tocsr()
    got = _stacked_weights(step, ck, keep, groups)
    assert got.format == "csr"
    assert got.shape == want.shape
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        assert getattr(got, name).dtype == getattr(want, name).dtype


def test_cell_matrix_is_the_coordinate_conversion_written_straight():
    """``_cell_matrix`` gives the arrays of ``csc_matrix((tot.ravel(), (rows, cols)))``."""
    from scipy import sparse

    from evalterritoire.design.domains import _cell_matrix

    rng = np.random.default_rng(3)
    for _ in range(200):
        n_units, n_domains, p = (int(rng.integers(1, k)) for k in (60, 7, 5))
        keys = rng.permutation(n_units * n_domains)[: int(rng.integers(1, n_units * n_domains + 1))]
        tot = rng.normal(size=(keys.size, p))
        tot[rng.random(tot.shape) < 0.2] = 0.0  # explicit zeros are kept, as the conversion does
        rows = np.repeat(keys // n_domains, p)
        cols = ((keys % n_domains)[:, None] * p + np.arange(p)[None, :]).ravel()
        shape = (n_units, n_domains * p)
        ref = sparse.csc_matrix((tot.ravel(), (rows, cols)), shape=shape)
        got = _cell_matrix(tot, keys.astype(np.int64), n_domains, n_units)
        assert got.shape == ref.shape
        assert np.array_equal(got.indptr, ref.indptr)
        assert np.array_equal(got.indices, ref.indices)
        assert got.data.tobytes() == ref.data.tobytes()
