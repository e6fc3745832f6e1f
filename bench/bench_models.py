"""Coverage study of the models' 95 % intervals against the simulator's true effects.

For each seed: ``simulate_waves`` (demo size by default: 60 territories, 3,000 respondents) →
``run_ingest`` → ``run_maturity`` → ``run_models``; then, for every model term with a known
generating value, whether the 95 % interval contains it. Prints the coverage per model with a
binomial 95 % interval over the (seed, term) pairs, and the time per seed.

Expected: logistic and ordinal models are the exact generating models (respondent-level
Bernoulli / cumulative logit given the territory's stage), so their coverage should be close to
95 %; the linear model's truth lives on the latent scale before rounding and clipping of the
Likert answers (attenuated, coverage below 95 % is expected and reported only); the mixed model
is fitted without weights (model-based intervals).

Usage::

    .venv/bin/python bench/bench_models.py [--seeds 20] [--territories 60] [--respondents 3000]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from evalterritoire.config import load_study
from evalterritoire.pipeline import run_ingest, run_maturity, run_models
from evalterritoire.simulate import simulate_waves

EXPECTED_NOMINAL = ("animation_identifiee", "perception_dynamique", "reussite_percue")


def run_seed(seed: int, n_territories: int, n_respondents: int) -> pd.DataFrame:
    """One simulated wave through the pipeline; one row per term with a true value."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        simulate_waves(
            out, n_territories=n_territories, n_respondents=n_respondents, waves=[2025], seed=seed
        )
        cfg = load_study(out / "2025" / "study.toml")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_ingest(cfg)
            run_maturity(cfg)
            result = run_models(cfg)
        truth = json.loads((out / "ground_truth" / "truth.json").read_text(encoding="utf-8"))
    rows = []
    table = result.table.set_index(["model", "term"])
    for spec in truth["models"]:
        for term, value in spec["truth"].items():
            if (spec["name"], term) not in table.index:
                continue
            r = table.loc[(spec["name"], term)]
            rows.append(
                {
                    "seed": seed,
                    "model": spec["name"],
                    "kind": spec["kind"],
                    "term": term,
                    "truth": float(value),
                    "estimate": float(r["estimate"]),
                    "covered": bool(r["ci_low"] <= value <= r["ci_high"]),
                }
            )
    return pd.DataFrame(rows)


def coverage_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Coverage per model with a Clopper-Pearson 95 % interval."""
    out = []
    for (model, kind), g in runs.groupby(["model", "kind"], sort=False):
        k, n = int(g["covered"].sum()), len(g)
        lo = stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        hi = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        bias = float((g["estimate"] - g["truth"]).mean())
        out.append(
            {
                "model": model,
                "kind": kind,
                "intervals": n,
                "coverage": k / n,
                "ci_low": lo,
                "ci_high": hi,
                "mean_bias": bias,
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--territories", type=int, default=60)
    parser.add_argument("--respondents", type=int, default=3000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    frames, times = [], []
    for s in range(args.seeds):
        t0 = time.perf_counter()
        frames.append(run_seed(5000 + s, args.territories, args.respondents))
        times.append(time.perf_counter() - t0)
        print(f"seed {5000 + s}: {times[-1]:.1f} s", flush=True)
    runs = pd.concat(frames, ignore_index=True)
    table = coverage_table(runs)
    nominal = runs[runs["model"].isin(EXPECTED_NOMINAL[:2])]
    k, n = int(nominal["covered"].sum()), len(nominal)
    print(
        f"\n{args.seeds} seeds × {args.territories} territories × {args.respondents} respondents; "
        f"{np.mean(times):.1f} s per seed"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    lo, hi = stats.beta.ppf(0.025, k, n - k + 1), stats.beta.ppf(0.975, k + 1, n - k)
    verdict = "PASS" if lo <= 0.95 <= hi else "CHECK"
    print(
        f"\nexact generating models (logistic + ordinal): coverage {k}/{n} = {k / n:.3f} "
        f"[{lo:.3f}, {hi:.3f}] vs nominal 0.950 → {verdict}"
    )
    by_term = runs.groupby(["model", "term"], sort=False)["covered"].mean()
    print("\ncoverage per term:")
    print(by_term.to_string(float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
