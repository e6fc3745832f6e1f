"""Small-area estimates on ground truth: Fay–Herriot EBLUP vs the direct estimate, by territory.

The demo's 2025 wave supplies everything but the answers: its respondents, their territories,
strata, PSUs and raked weights, which respondents answered each fragility priority item, and
the territory context file. The answers are redrawn ``--replicates`` times from the simulator's
generating model of those items (``evalterritoire.simulate.params``: territory mean
``5.5 + slope × (context − centre) + u_t`` with a territory effect ``u_t ~ N(0, 0.5²)`` drawn
anew in each replicate, a respondent noise ``N(0, 1.8²)``, answers rounded and clipped to 0–10).
The true territory value is the exact expectation of an answer in the territory (normal
probabilities of each rounded, clipped value), so the truth is known in every replicate.

For every replicate and item the study's own code computes the direct estimates
(:func:`evalterritoire.estimates.engine._engine`, the design-based domain means) and the
Fay–Herriot estimates (:func:`compute_smallarea_estimates`: smoothed sampling variances from
the direct variances corrected for the few PSUs of each territory,
covariates chosen by BIC among the context file's columns, REML, Prasad–Rao MSE) with their
published intervals (:func:`compute_intervals`, logit of the rescaled mean). It prints:

* the MSE of the EBLUP and of the direct estimate over replicates, for the small territories
  (fewer than ``min_n`` = 30 respondents to the item) and for all, and their ratio;
* the coverage of the EBLUP's 95 % interval (target 0.93–0.97) and of the direct one.

Exit status 0 when the EBLUP's MSE is below the direct one for small territories and the
coverage is within 0.93–0.97, 1 otherwise.

Usage::

    .venv/bin/python bench/bench_smallarea.py [--replicates 200] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from evalterritoire.codebook import load_codebook
from evalterritoire.config import load_study
from evalterritoire.design.survey import build_design
from evalterritoire.estimates.engine import _domains, _engine
from evalterritoire.estimates.intervals import compute_intervals
from evalterritoire.estimates.smallarea import compute_smallarea_estimates
from evalterritoire.estimates.study import compute_domain_variance_factors
from evalterritoire.ingest.files import ingest_file
from evalterritoire.simulate.params import FRAGILITY_BASE, FRAGILITY_LINKS

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "surveys" / "2025" / "study.toml"
SD_TERRITORY = 0.5  # the simulator's territory × domain effect (simulate/answers.py)
SD_RESPONDENT = 1.8
SMALL = 30
COVERAGE = (0.93, 0.97)


def expected_answer(mean: np.ndarray, lo: int = 0, hi: int = 10) -> np.ndarray:
    """E[clip(rint(mean + N(0, sd²)), lo, hi)] for each territory mean (exact)."""
    k = np.arange(lo, hi + 1, dtype=float)
    upper = np.where(k == hi, np.inf, k + 0.5)
    lower = np.where(k == lo, -np.inf, k - 0.5)
    z_hi = (upper[None, :] - mean[:, None]) / SD_RESPONDENT
    z_lo = (lower[None, :] - mean[:, None]) / SD_RESPONDENT
    prob = stats.norm.cdf(z_hi) - stats.norm.cdf(z_lo)
    return prob @ k


def load_demo():
    """The demo wave's valid responses, design, context and the fragility items to redraw."""
    config = load_study(STUDY)
    codebook = load_codebook()
    valid = ingest_file(config.exports[0], codebook, profile=config.ingest.profile).valid
    design = build_design(valid, config.design, config.calibration).without_fpc()
    territory = codebook.column("territory")
    context = pd.read_csv(config.context, dtype={territory: str}).set_index(territory)
    context.index = context.index.astype("string")
    items = [
        (f"frag_{d}_priorite", col, centre, slope)
        for d, (col, centre, slope) in FRAGILITY_LINKS.items()
        if f"frag_{d}_priorite" in valid.columns
    ]
    return config, design, territory, context, items


def simulate(design, territory, context, items, replicates: int, seed: int):
    """Answers of every replicate × item (columns) and the true territory values."""
    rng = np.random.default_rng(seed)
    data = design.data
    codes, labels = _domains(design, [territory])
    terr = labels[territory].astype("string").to_numpy()
    ctx = context.reindex(pd.Index(terr, dtype="string"))
    cols, truth, names = [], [], []
    for item, ctx_col, centre, slope in items:
        answered = data[item].notna().to_numpy()
        base = FRAGILITY_BASE + slope * (ctx[ctx_col].to_numpy(dtype=float) - centre)
        for r in range(replicates):
            mean_t = base + rng.normal(0, SD_TERRITORY, len(terr))
            noise = rng.normal(0, SD_RESPONDENT, len(data))
            y = np.clip(np.rint(mean_t[np.maximum(codes, 0)] + noise), 0, 10)
            cols.append(np.where(answered & (codes >= 0), y, np.nan))
            truth.append(expected_answer(mean_t))
            names.append(f"{item}#{r}")
    return np.column_stack(cols), np.column_stack(truth), names, codes, terr


def direct_and_model(design, y, codes, terr, names, context, df_dom):
    """Direct estimates, their intervals, and the Fay–Herriot estimates of every column."""
    n_dom = len(terr)
    res = _engine(design, y, codes, n_dom, kind="mean")
    valid = ~np.isnan(y)
    w = np.where(valid, design.weights[:, None], 0.0)
    keep = codes >= 0
    idx = codes[keep]
    wsum = np.zeros((n_dom, y.shape[1]))
    np.add.at(wsum, idx, w[keep])
    y0 = np.where(valid, y, 0.0)
    m1 = np.zeros_like(wsum)
    m2 = np.zeros_like(wsum)
    np.add.at(m1, idx, (w * y0)[keep])
    np.add.at(m2, idx, (w * y0**2)[keep])
    n = res["n"]
    s2 = np.maximum(m2 / wsum - (m1 / wsum) ** 2, 0) * n / np.maximum(n - 1, 1)
    p = y.shape[1]
    direct = pd.DataFrame(
        {
            "domain": np.repeat(terr, p),
            "variable": np.tile(np.asarray(names, dtype=object), n_dom),
            "level": "",
            "statistic": "mean",
            "kind": "bounded_mean",
            "estimate": res["estimate"].ravel(),
            "se": np.sqrt(res["var"]).ravel(),
            "df": np.repeat(df_dom, p),
            "n": n.ravel(),
            "deff": res["deff"].ravel(),
            "range_low": 0.0,
            "range_high": 10.0,
        }
    )
    lo, hi, _ = compute_intervals(
        "bounded_mean", direct["estimate"], direct["se"], direct["df"], direct["n"], low=0, high=10
    )
    direct["ci_low"], direct["ci_high"] = lo, hi
    element = pd.Series(s2.ravel(), index=direct.index)
    factor = pd.Series(
        compute_domain_variance_factors(design, y, codes, n_dom).ravel(), index=direct.index
    )
    model, _ = compute_smallarea_estimates(
        direct, element, context, min_cell=5, variance_factor=factor
    )
    mlo, mhi, _ = compute_intervals(
        "bounded_mean", model["estimate"], model["se"], None, model["n"], low=0, high=10, model=True
    )
    model["ci_low"], model["ci_high"] = mlo, mhi
    return direct, model


def summarise(direct: pd.DataFrame, model: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """MSEs and coverages, for small territories and all."""
    d = direct.merge(truth, on=["domain", "variable"])
    m = model.merge(truth, on=["domain", "variable"])
    both = d.merge(
        m[["domain", "variable", "estimate"]], on=["domain", "variable"], suffixes=("", "_fh")
    )
    rows = []
    for label, sel_d, sel_m, sel_b in (
        ("small (n < 30)", d["n"] < SMALL, m["n"] < SMALL, both["n"] < SMALL),
        ("all", d["n"] > 0, m["n"] > 0, both["n"] > 0),
    ):
        b = both[sel_b]
        mse_direct = float(np.mean((b["estimate"] - b["truth"]) ** 2))
        mse_fh = float(np.mean((b["estimate_fh"] - b["truth"]) ** 2))
        dd, mm = d[sel_d], m[sel_m]
        rows.append(
            {
                "territories": label,
                "cells": len(b),
                "mse_direct": mse_direct,
                "mse_eblup": mse_fh,
                "ratio": mse_fh / mse_direct,
                "coverage_direct": float(
                    ((dd["ci_low"] <= dd["truth"]) & (dd["truth"] <= dd["ci_high"])).mean()
                ),
                "coverage_eblup": float(
                    ((mm["ci_low"] <= mm["truth"]) & (mm["truth"] <= mm["ci_high"])).mean()
                ),
            }
        )
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    t0 = time.perf_counter()
    _, design, territory, context, items = load_demo()
    y, truth, names, codes, terr = simulate(
        design, territory, context, items, args.replicates, args.seed
    )
    df_dom = design.domain_df(codes, len(terr))
    direct, model = direct_and_model(design, y, codes, terr, names, context, df_dom)
    truth_long = pd.DataFrame(
        {
            "domain": np.repeat(terr, truth.shape[1]),
            "variable": np.tile(np.asarray(names, dtype=object), len(terr)),
            "truth": truth.ravel(),
        }
    )
    table = summarise(direct, model, truth_long)
    print(
        f"{len(items)} fragility items × {args.replicates} replicates on the demo's 2025 design "
        f"({len(terr)} territories); {time.perf_counter() - t0:.0f} s"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    small, overall = table.iloc[0], table.iloc[1]
    ok = small["ratio"] < 1 and COVERAGE[0] <= overall["coverage_eblup"] <= COVERAGE[1]
    print(
        "targets: EBLUP MSE < direct MSE for small territories; coverage 0.93–0.97 →",
        "met" if ok else "NOT met",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
