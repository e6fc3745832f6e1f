"""Calibration of the stage membership probabilities on the simulator's ground truth.

Simulates studies with a known stage per territory (``simulate_waves``, demo noise level) for
several numbers of respondents per territory and seeds, runs the project's ingestion, design
and maturity step, and compares each territory's membership probabilities (``p_stage_<s>``,
:mod:`evalterritoire.maturity.probabilities`) with its true stage:

* **Brier score** (mean over territories of ``Σ_s (P_s − 1[true = s])²``) of the new
  probabilities, of today's 100 %-certain assignment (probability 1 on the assigned stage) and
  of the clustering's own softmax (``MaturityClustering.predict_proba``, the previous
  ``stage_probability``);
* **calibration**: among territories given ``P ≥ 0.9`` for their assigned stage, the share
  truly in it (target ≥ 0.9), and the mean probability against the share correct in bins.

Exit status 0 when, pooled over every run, the share correct among ``P ≥ 0.9`` is at least
0.9 and the new Brier score is at most the certain assignment's, 1 otherwise.

Usage::

    .venv/bin/python bench/bench_stage_probability.py [--territories 60] [--sizes 5 10 20 50]
                                                      [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from evalterritoire.codebook import load_codebook
from evalterritoire.config import MaturityConfig, load_study
from evalterritoire.design.survey import build_design
from evalterritoire.ingest.files import ingest_file
from evalterritoire.maturity.common import MaturityWarning
from evalterritoire.maturity.compute import compute_maturity
from evalterritoire.simulate.waves import simulate_waves


def run_once(n_territories: int, per: int, seed: int) -> pd.DataFrame:
    """One simulated wave → one row per scored territory: probabilities and the truth."""
    codebook = load_codebook()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        simulate_waves(
            out, n_territories=n_territories, n_respondents=n_territories * per,
            waves=[2025], seed=seed,
        )  # fmt: skip
        cfg = load_study(out / "2025" / "study.toml")
        ing = ingest_file(cfg.exports[0], codebook, profile=cfg.ingest.profile)
        design = build_design(ing.valid, cfg.design, cfg.calibration)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MaturityWarning)
            res = compute_maturity(
                {2025: ing.valid}, {2025: design}, codebook, MaturityConfig(n_bootstrap=0),
                wave=2025, min_n=cfg.min_n, random_state=seed,
            )  # fmt: skip
        truth = pd.read_csv(out / "ground_truth" / "stages.csv", dtype={"territory": "string"})
    m = res.maturity.merge(truth[truth["wave"] == 2025], on="territory")
    m = m[m["stage"].notna()].copy()
    clf = res.clustering
    X = m[[f"score_{d}" for d in codebook.dimensions]].fillna(
        res.profiles[[f"score_{d}" for d in codebook.dimensions]].mean()
    )
    old = clf.predict_proba(X)
    for s in range(clf.n_stages_):
        m[f"old_{s}"] = old[:, s]
    m["per"], m["seed"] = per, seed
    return m


def scores(m: pd.DataFrame, k: int) -> dict[str, float]:
    """Brier scores and calibration of one set of territories."""
    true = np.eye(k)[m["true_stage"].to_numpy(dtype=int)]
    new = m[[f"p_stage_{s}" for s in range(k)]].to_numpy(dtype=float)
    old = m[[f"old_{s}" for s in range(k)]].to_numpy(dtype=float)
    certain = np.eye(k)[m["stage"].to_numpy(dtype=int)]
    correct = (m["stage"] == m["true_stage"]).to_numpy()
    p = m["stage_probability"].to_numpy(dtype=float)
    high = p >= 0.9
    return {
        "territories": len(m),
        "accuracy": float(correct.mean()),
        "brier_new": float(np.mean(np.sum((new - true) ** 2, axis=1))),
        "brier_certain": float(np.mean(np.sum((certain - true) ** 2, axis=1))),
        "brier_softmax": float(np.mean(np.sum((old - true) ** 2, axis=1))),
        "share_p_ge_0.9": float(high.mean()),
        "correct_if_p_ge_0.9": float(correct[high].mean()) if high.any() else float("nan"),
        "mean_p": float(p.mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--territories", type=int, default=60)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    runs = [
        run_once(args.territories, per, 2000 + s) for per in args.sizes for s in range(args.seeds)
    ]
    allm = pd.concat(runs, ignore_index=True)
    k = int(allm["true_stage"].max()) + 1
    k = max(k, len([c for c in allm.columns if c.startswith("p_stage_")]))
    rows = [{"respondents_per_territory": per, **scores(g, k)} for per, g in allm.groupby("per")]
    rows.append({"respondents_per_territory": "all", **scores(allm, k)})
    table = pd.DataFrame(rows)
    print(
        f"{args.territories} territories, sizes {args.sizes}, {args.seeds} seed(s) each; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    bins = pd.cut(allm["stage_probability"], [0, 0.5, 0.7, 0.9, 0.99, 1.0])
    reliability = allm.assign(correct=allm["stage"] == allm["true_stage"]).groupby(
        bins, observed=True
    )
    print("\ncalibration (assigned stage): mean probability vs share correct, by bin")
    print(
        reliability.agg(
            territories=("correct", "size"),
            mean_probability=("stage_probability", "mean"),
            share_correct=("correct", "mean"),
        ).to_string(float_format=lambda v: f"{v:.3f}")
    )
    total = rows[-1]
    ok = total["correct_if_p_ge_0.9"] >= 0.9 and total["brier_new"] <= total["brier_certain"]
    print(
        "\ntargets: ≥ 90 % correct among P ≥ 0.9; Brier ≤ the certain assignment's →",
        "met" if ok else "NOT met",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
