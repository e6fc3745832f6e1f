"""Stage recovery study: how the adjusted Rand index degrades with fewer respondents.

Runs the project pipeline pieces on synthetic waves with a known stage per territory:
``simulate_waves`` (demo noise level) → ``ingest_file`` → ``build_design`` → ``compute_maturity``,
for several numbers of respondents per territory and several seeds, and prints the mean ARI
against the ground truth, the exact-stage accuracy, the bootstrap stability index and the
ratio of each ARI to the demo size's ARI measured in the same run (the baseline).

Usage::

    .venv/bin/python bench/bench_maturity.py [--territories 60] [--sizes 5 10 20 30 50]
                                             [--seeds 3] [--method kmeans]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from evalterritoire.codebook import load_codebook
from evalterritoire.config import MaturityConfig, load_study
from evalterritoire.design.survey import build_design
from evalterritoire.ingest.files import ingest_file
from evalterritoire.maturity.common import MaturityWarning
from evalterritoire.maturity.compute import compute_maturity
from evalterritoire.simulate.waves import simulate_waves

DEMO_SIZE = 50


def run_once(n_territories: int, per: int, seed: int, method: str) -> dict[str, float]:
    """One simulated wave → maturity; ARI, accuracy and stability against the truth."""
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
                {2025: ing.valid}, {2025: design}, codebook,
                MaturityConfig(method=method, n_bootstrap=20), wave=2025, min_n=cfg.min_n,
                random_state=seed,
            )  # fmt: skip
        truth = pd.read_csv(out / "ground_truth" / "stages.csv", dtype={"territory": "string"})
    got = res.maturity.merge(truth[truth["wave"] == 2025], on="territory")
    staged = got["stage"].notna()
    pred = got.loc[staged, "stage"].astype(int)
    true = got.loc[staged, "true_stage"]
    return {
        "ari": adjusted_rand_score(true, pred),
        "accuracy": float((pred == true).mean()),
        "stability": res.diagnostics["stability_ari"] or float("nan"),
        "kappa_q": res.diagnostics["agreement_declared"]["kappa_quadratic"] or float("nan"),
        "unstaged": float((~staged).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--territories", type=int, default=60)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 30, DEMO_SIZE])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--method", default="kmeans", choices=["kmeans", "gmm", "ward"])
    args = parser.parse_args()
    sizes = sorted(set(args.sizes) | {DEMO_SIZE})
    rows = []
    for per in sizes:
        t0 = time.perf_counter()
        runs = [run_once(args.territories, per, 1000 + s, args.method) for s in range(args.seeds)]
        rec = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        rec["ari_min"] = float(min(r["ari"] for r in runs))
        rows.append({"per_territory": per, **rec, "seconds": time.perf_counter() - t0})
    table = pd.DataFrame(rows)
    base = float(table.loc[table["per_territory"] == DEMO_SIZE, "ari"].iloc[0])
    table["ari_ratio_vs_demo"] = table["ari"] / base
    print(
        f"{args.territories} territories, method={args.method}, {args.seeds} seed(s) per size; "
        f"baseline = {DEMO_SIZE} respondents/territory (demo)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
