"""Quantiles, contrasts, tests, alpha, PPS, calibration and created replicates against R `survey`.

Fixtures: ``Rscript r/methods_reference.R`` writes ``tests/fixtures/r/methods/`` (the data and
R 4.2 / survey 4.1.1's values, 17 significant digits); CI does not need R. Every value is
compared to 1e-8 relative (an absolute 1e-12 where R's value is 0): estimates, SEs, interval
bounds, degrees of freedom (exactly), test statistics and p-values, by domain, on designs with
strata, clusters, fpc, two stages, PPS, calibration and replicate weights.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalterritoire.design import SurveyDesign
from evalterritoire.estimates import (
    compare_with_whole,
    design_ttest,
    estimate_contrast,
    estimate_cronbach_alpha,
    estimate_domain_covariance,
    estimate_mean,
    estimate_quantile,
    estimate_total,
    rao_scott_test,
)

FIX = Path(__file__).parent / "fixtures" / "r" / "methods"
REL = 1e-8
ATOL = 1e-12
META = json.loads((FIX / "meta.json").read_text(encoding="utf-8"))
TAYLOR = (
    "strat_fpc",
    "twostage",
    "rake",
    "greg_x",
    "logit_x",
    "brewer",
    "election_brewer",
    "election_hr",
)
REPLICATE = ("jkn", "jkn_fpc", "jk1", "jk1_fpc", "brr", "fay", "subbootstrap")
CALIB_EXTRA = ("linear_bounded", "raking_bounded", "raking_x", "rescaled")
MEASURED: dict[str, float] = {}  # largest relative difference per kind of value


@cache
def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(FIX / name, keep_default_na=True, na_values=["", "NA"])


@cache
def _ref() -> pd.DataFrame:
    out = pd.read_csv(FIX / "results.csv", keep_default_na=False, na_values=["NA"])
    out["domain"] = out["domain"].astype(str)
    out["key"] = out["key"].astype(str)
    return out


def _margins(kind: str) -> dict:
    if kind == "rake":
        return {"age": {"adulte": 520, "jeune": 310, "senior": 270}, "sexe": {"F": 570, "H": 530}}
    return {"age": {"adulte": 170, "jeune": 230, "senior": 200}}


@cache
def _design(case: str) -> SurveyDesign:
    strat = _data("strat.csv")
    base = SurveyDesign(strat, weight="w", strata="h", psu="psu", fpc="N")
    cal = {"tol": 1e-12, "max_iter": 200}
    if case == "strat_fpc":
        return base
    if case == "twostage":
        return SurveyDesign(
            _data("twostage.csv"), weight="w", strata="h", psu="psu", fpc="fpc1", psu2="ssu",
            fpc2="fpc2",
        )  # fmt: skip
    if case == "rake":
        return base.calibrate(_margins("rake"), calfun="raking", **cal)
    x = {"x": 3300.0}
    calibrations = {
        "greg_x": {},
        "logit_x": {"calfun": "logit", "bounds": (0.6, 1.6), **cal},
        "linear_bounded": {"calfun": "linear", "bounds": (0.8, 1.45), **cal},
        "raking_bounded": {"calfun": "raking", "bounds": (0.75, 1.5), **cal},
        "raking_x": {"calfun": "raking", **cal},
    }
    if case in calibrations:
        return base.calibrate(_margins("x"), x, **calibrations[case])
    if case == "rescaled":
        small = strat.assign(w30=strat["w"] / 30)
        d = SurveyDesign(small, weight="w30", strata="h", psu="psu", fpc="N")
        return d.calibrate(_margins("x"), x, calfun="logit", bounds=(0.5, 2.0), **cal)
    if case == "brewer":
        return SurveyDesign(_data("strat_pps.csv"), strata="h", psu="psu", fpc="ppi", pps="brewer")
    if case.startswith("election_"):
        pps = "brewer" if case.endswith("brewer") else "hartley_rao"
        return SurveyDesign(_data("election_pps.csv"), fpc="p", pps=pps)
    return _replicate_design(case, strat)


def _replicate_design(case: str, strat: pd.DataFrame) -> SurveyDesign:
    hadamard = np.loadtxt(FIX / "hadamard8.csv", delimiter=",")
    if case == "jkn":
        return SurveyDesign(strat, weight="w", strata="h", psu="psu").as_replicate("JKn")
    if case == "jkn_fpc":
        return SurveyDesign(strat, weight="w", strata="h", psu="psu", fpc="N").as_replicate("JKn")
    if case == "jk1":
        return SurveyDesign(strat, weight="w", psu="psu").as_replicate("JK1")
    if case == "jk1_fpc":
        d = SurveyDesign(strat.assign(n40=40), weight="w", psu="psu", fpc="n40")
        return d.as_replicate("JK1")
    if case in ("brr", "fay"):
        d = SurveyDesign(_data("brr.csv"), weight="w", strata="h", psu="pair")
        rho = 0.3 if case == "fay" else None
        return d.as_replicate("Fay" if rho else "BRR", rho=rho, hadamard=hadamard)
    if case == "subbootstrap":
        reps = _data("repweights_subbootstrap.csv")
        meta = META["replicate"]["subbootstrap"]
        return SurveyDesign.from_replicate_weights(
            pd.concat([strat, reps], axis=1), weight="w", replicate_weights=list(reps.columns),
            type="bootstrap", scale=meta["scale"],
        )  # fmt: skip
    raise AssertionError(case)


SPECS = {
    "strat": {"q": ["y1", "cnt"], "v": "y1", "t": ("y1", "sexe"), "chi": ("cat", "age"),
              "alpha": ["y1", "y2", "z"], "m": ["y1", "y2"]},
    "two": {"q": ["y"], "v": "y", "t": ("y", "g2"), "chi": ("cat2", "g2"),
            "alpha": ["y", "y_b", "y_c"], "m": ["y"]},
    "elec": {"q": ["Bush"], "v": "share", "t": ("share", "dom"), "chi": None,
             "alpha": ["Bush", "Kerry", "votes"], "m": ["Bush", "share"]},
}  # fmt: skip


def _spec(case: str) -> dict:
    if case == "twostage":
        return SPECS["two"]
    return SPECS["elec"] if case.startswith("election") else SPECS["strat"]


def _domain_col(frame: pd.DataFrame) -> pd.Series:
    return frame["dom"].astype(str) if "dom" in frame else pd.Series("", index=frame.index)


def _both(fn, design, *args, **kw) -> pd.DataFrame:
    """A function's national table and its table by ``dom``, keyed by ``domain``."""
    national = fn(design, *args, **kw).assign(domain="")
    by = fn(design, *args, by="dom", **kw)
    by["domain"] = _domain_col(by)
    return pd.concat([national, by], ignore_index=True)


def _close(got: float, want: float, what: str) -> None:
    if pd.isna(want):
        assert pd.isna(got), (what, got)
        return
    assert np.isfinite(got), (what, got, want)
    diff = abs(got - want)
    assert diff <= max(REL * abs(want), ATOL), (what, got, want)
    if abs(want) > ATOL:  # below, R's value is rounding noise (e.g. a 1e-18 cross-covariance)
        kind = what.split("|")[0]
        MEASURED[kind] = max(MEASURED.get(kind, 0.0), diff / abs(want))


def _check(ref: pd.DataFrame, got: pd.DataFrame, keys: list[str], cols: list[str]) -> int:
    got = got.set_index(keys)
    n = 0
    for row in ref.itertuples():
        key = tuple(getattr(row, k) for k in ("domain", "variable", "key")[: len(keys)])
        assert key in got.index, (row.case, row.what, key)
        g = got.loc[key]
        g = g.iloc[0] if isinstance(g, pd.DataFrame) else g
        for col in cols:
            _close(float(g[col]), float(getattr(row, col)), f"{row.what}|{row.case}|{key}|{col}")
            n += 1
        if "df" in g and not pd.isna(row.df):
            assert int(g["df"]) == int(row.df), (row.case, row.what, key)
    return n


# ------------------------------------------------------------------ quantiles
@pytest.mark.parametrize("case", TAYLOR + REPLICATE)
def test_quantiles_agree_with_r(case: str) -> None:
    design, spec, ref = _design(case), _spec(case), _ref()
    checked = 0
    for rule in ("math", "school"):
        want = ref[(ref["case"] == case) & (ref["what"] == f"quantile_{rule}")]
        if want.empty:
            continue
        got = _both(estimate_quantile, design, spec["q"], [0.25, 0.5, 0.9], rule=rule)
        got["key"] = got["quantile"].map(lambda q: f"{q:g}")
        cols = ["estimate", "se", "ci_low", "ci_high"]
        checked += _check(want, got, ["domain", "variable", "key"], cols)
    assert checked >= 12


def test_quantile_bound_outside_zero_one_is_nan_as_r() -> None:
    """A share interval leaving [0, 1] gives a NaN bound (and se), as R's svyquantile."""
    ref = _ref()
    want = ref[ref["what"].str.startswith("quantile") & ref["ci_low"].isna()]
    assert len(want) > 0  # the fixtures hold such cases (0.9 quantiles of small domains)
    test_quantiles_agree_with_r(want["case"].iloc[0])


# ------------------------------------------------------------------ contrasts
@pytest.mark.parametrize("case", TAYLOR + REPLICATE)
def test_domain_covariance_and_contrasts_agree_with_r(case: str) -> None:
    design, spec, ref = _design(case), _spec(case), _ref()
    ref = ref[ref["case"] == case]
    v = spec["v"]
    cov = estimate_domain_covariance(design, v, "dom")
    for row in ref[ref["what"] == "covariance"].itertuples():
        _close(cov.loc[row.domain, row.key], row.estimate, f"covariance|{case}")
    means = estimate_mean(design, v, by="dom").assign(key="")
    means["domain"] = _domain_col(means)
    _check(
        ref[ref["what"] == "domain_mean"], means, ["domain", "variable", "key"], ["estimate", "se"]
    )
    whole = compare_with_whole(design, v, by="dom").assign(key="")
    whole["domain"] = _domain_col(whole)
    cols = ["estimate", "se", "ci_low", "ci_high"]
    assert _check(ref[ref["what"] == "versus_whole"], whole, ["domain", "variable", "key"], cols)
    want = ref[ref["what"] == "contrast"]
    contrasts = {d: dict(zip(d.split("-"), (1.0, -1.0), strict=True)) for d in want["domain"]}
    got = estimate_contrast(design, v, contrasts, by="dom").rename(columns={"contrast": "domain"})
    got["key"] = ""
    assert _check(want, got, ["domain", "variable", "key"], cols) >= 4


# ------------------------------------------------------------------ tests and alpha
@pytest.mark.parametrize("case", TAYLOR + REPLICATE)
def test_ttests_agree_with_r(case: str) -> None:
    design, spec, ref = _design(case), _spec(case), _ref()
    ref = ref[ref["case"] == case]
    v, g = spec["t"]
    cols = ["estimate", "se", "ci_low", "ci_high", "statistic", "p_value"]
    want = ref[ref["what"] == "ttest"]
    national = design_ttest(design, v, g).assign(domain="", key=g)
    parts = [national]
    if g != "dom":
        by = design_ttest(design, v, g, by="dom").assign(key=g)
        by["domain"] = _domain_col(by)
        parts.append(by)
    n = _check(want, pd.concat(parts, ignore_index=True), ["domain", "variable", "key"], cols)
    one = _both(design_ttest, design, v).assign(key="")
    n += _check(ref[ref["what"] == "ttest_one"], one, ["domain", "variable", "key"], cols)
    assert n >= 12


@pytest.mark.parametrize("case", [c for c in TAYLOR + REPLICATE if not c.startswith("election")])
def test_rao_scott_agrees_with_r(case: str) -> None:
    design, spec, ref = _design(case), _spec(case), _ref()
    want = ref[(ref["case"] == case) & (ref["what"] == "chisq")]
    row, col = spec["chi"]
    brewer = case == "brewer"
    got = rao_scott_test(design, row, col).assign(domain="")
    if not brewer:
        by = rao_scott_test(design, row, col, by="dom")
        by["domain"] = _domain_col(by)
        got = pd.concat([got, by], ignore_index=True)
    got = got.rename(columns={"row_variable": "variable", "column_variable": "key"})
    assert _check(want, got, ["domain", "variable", "key"], ["statistic", "ndf", "ddf", "p_value"])


@pytest.mark.parametrize("case", TAYLOR + REPLICATE)
def test_cronbach_alpha_agrees_with_r(case: str) -> None:
    design, spec, ref = _design(case), _spec(case), _ref()
    want = ref[(ref["case"] == case) & (ref["what"] == "alpha")]
    items = spec["alpha"]
    name = "+".join(items)
    got = estimate_cronbach_alpha(design, {name: items}).assign(domain="")
    if case not in ("brewer", "election_brewer"):
        by = estimate_cronbach_alpha(design, {name: items}, by="dom")
        by["domain"] = _domain_col(by)
        got = pd.concat([got, by], ignore_index=True)
    got = got.rename(columns={"scale": "variable"}).assign(key="")
    cols = ["estimate", "se", "ci_low", "ci_high"]
    assert _check(want, got, ["domain", "variable", "key"], cols)


# ------------------------------------------------------------------ designs themselves
@pytest.mark.parametrize("case", TAYLOR + REPLICATE + CALIB_EXTRA)
def test_means_and_totals_agree_with_r(case: str) -> None:
    design, spec, ref = _design(case), _spec(case), _ref()
    for what, fn in (("mean", estimate_mean), ("total", estimate_total)):
        want = ref[(ref["case"] == case) & (ref["what"] == what)]
        if case in ("brewer", "election_brewer"):
            got = fn(design, spec["m"]).assign(domain="")
        else:
            got = _both(fn, design, spec["m"])
        assert _check(want, got.assign(key=""), ["domain", "variable", "key"], ["estimate", "se"])


@pytest.mark.parametrize("case", ["rake", "greg_x", "logit_x", *CALIB_EXTRA])
def test_calibration_weights_agree_with_r(case: str) -> None:
    g = _data("calibration_g.csv")[case].to_numpy()
    design = _design(case)
    base = _data("strat.csv")["w"].to_numpy() / (30 if case == "rescaled" else 1)
    np.testing.assert_allclose(design.weights / base, g, rtol=1e-9, atol=0)
    assert design.calibration["converged"]


@pytest.mark.parametrize("case", [c for c in REPLICATE if c != "subbootstrap"])
def test_created_replicates_have_r_scale_rscales_and_df(case: str) -> None:
    meta = META["replicate"][case]
    design = _design(case)
    rep = design._rep
    assert rep.scale == pytest.approx(meta["scale"], rel=1e-12)
    np.testing.assert_allclose(np.sort(rep.rscales), np.atleast_1d(meta["rscales"]), rtol=1e-12)
    assert rep.weights.shape[1] == meta["n_replicates"]
    assert design.df == meta["degf"]
