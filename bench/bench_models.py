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

EXPECTED_NOMINAL = ("animation_identifiee", "perception_dynamique")


def _table_rows(table: pd.DataFrame, truth: dict, seed: int, source: str) -> list[dict]:
    rows = []
    indexed = table.set_index(["model", "term"])
    for spec in truth["models"]:
        for term, value in spec["truth"].items():
            if (spec["name"], term) not in indexed.index:
                continue
            r = indexed.loc[(spec["name"], term)]
            rows.append(
                {
                    "seed": seed,
                    "stage_source": source,
                    "model": spec["name"],
                    "kind": spec["kind"],
                    "term": term,
                    "truth": float(value),
                    "estimate": float(r["estimate"]),
                    "se": float(r["se"]),
                    "covered": bool(r["ci_low"] <= value <= r["ci_high"]),
                }
            )
    return rows


def run_seed(seed: int, n_territories: int, n_respondents: int) -> pd.DataFrame:
    """One simulated wave through the pipeline; one row per term with a true value.

    The models are fitted twice: with the stages found by ``run_maturity`` (what a user gets)
    and with the true stages (the truth is conditional on them, so this isolates the
    intervals' calibration from stage-recovery errors).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        simulate_waves(
            out, n_territories=n_territories, n_respondents=n_respondents, waves=[2025], seed=seed
        )
        cfg = load_study(out / "2025" / "study.toml")
        truth = json.loads((out / "ground_truth" / "truth.json").read_text(encoding="utf-8"))
        stages = pd.read_csv(out / "ground_truth" / "stages.csv", dtype={"territory": str})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_ingest(cfg)
            run_maturity(cfg)
            estimated = run_models(cfg).table
            path = cfg.artefact("maturity.parquet")
            maturity = pd.read_parquet(path)
            true = stages[stages["wave"] == 2025].set_index("territory")["true_stage"]
            accuracy = float((maturity["stage"] == maturity["territory"].map(true)).mean())
            maturity["stage"] = maturity["territory"].map(true).astype(maturity["stage"].dtype)
            maturity.to_parquet(path)
            with_true = run_models(cfg).table
    rows = _table_rows(estimated, truth, seed, "estimated") + _table_rows(
        with_true, truth, seed, "true"
    )
    frame = pd.DataFrame(rows)
    frame["stage_accuracy"] = accuracy
    frame["profile"] = cfg.ingest.profile
    return frame


def coverage_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Coverage per model with a Clopper-Pearson 95 % interval."""
    out = []
    for (source, model, kind), g in runs.groupby(["stage_source", "model", "kind"], sort=False):
        k, n = int(g["covered"].sum()), len(g)
        lo = stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        hi = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        bias = float((g["estimate"] - g["truth"]).mean())
        out.append(
            {
                "stages": source,
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
    parser.add_argument("--save", type=Path, help="write every (seed, term) row to this CSV")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    frames, times = [], []
    for s in range(args.seeds):
        t0 = time.perf_counter()
        frames.append(run_seed(5000 + s, args.territories, args.respondents))
        times.append(time.perf_counter() - t0)
        print(f"seed {5000 + s}: {times[-1]:.1f} s", flush=True)
    runs = pd.concat(frames, ignore_index=True)
    if args.save:
        runs.to_csv(args.save, index=False)
    table = coverage_table(runs)
    print(
        f"\n{args.seeds} seeds × {args.territories} territories × {args.respondents} respondents; "
        f"{np.mean(times):.1f} s per seed; stage accuracy of run_maturity "
        f"{runs.groupby('seed')['stage_accuracy'].first().mean():.3f}"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for source in ("estimated", "true"):
        nominal = runs[runs["model"].isin(EXPECTED_NOMINAL) & (runs["stage_source"] == source)]
        k, n = int(nominal["covered"].sum()), len(nominal)
        lo, hi = stats.beta.ppf(0.025, k, n - k + 1), stats.beta.ppf(0.975, k + 1, n - k)
        verdict = "PASS" if lo <= 0.95 <= hi else "CHECK"
        print(
            f"\nexact generating models (logistic, ordinal), {source} stages: coverage "
            f"{k}/{n} = {k / n:.3f} [{lo:.3f}, {hi:.3f}] vs nominal 0.950 → {verdict}"
        )
    by_term = runs.groupby(["stage_source", "model", "term"], sort=False).agg(
        truth=("truth", "first"),
        coverage=("covered", "mean"),
        mean_estimate=("estimate", "mean"),
        empirical_sd=("estimate", "std"),
        mean_se=("se", "mean"),
    )
    by_term["sd_over_se"] = by_term["empirical_sd"] / by_term["mean_se"]
    print("\nper term (empirical sd of the estimates over seeds vs the mean reported se):")
    print(by_term.to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
