"""Benchmark: domain means with SEs for every item × territory, against R ``survey::svyby``.

Usage::

    .venv/bin/python bench/bench_estimates.py            # 1,000,000 respondents (target ≤ 3 s)
    .venv/bin/python bench/bench_estimates.py --rows 100000 --r-rows 5000   # quick run

The full case has 1,000 territories, 20 strata, 5,000 PSUs (with replacement) and 30 Likert items.
On a random subset (20,000 rows by default) the same estimates are computed by R ``svyby``
(``svymean`` per territory) through Rscript in the same run when R and ``survey`` are installed
(a notice is printed otherwise), and the script prints both times, their ratio (target ≥ 50×) and
the largest relative difference from R (target ≤ 1e-9).

Exit status: 0 when every target that applies is met, 1 otherwise. The time target (≤ 3 s)
applies to runs with at least 1,000,000 rows, the speed-up target (≥ 50×) to runs whose R subset
has at least 20,000 rows when R is installed, and the agreement target (≤ 1e-9, and values that
are 0 in R also ~0 here) whenever R ran; a target that does not apply is printed as ``n/a``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from evalterritoire.design.survey import SurveyDesign
from evalterritoire.estimates.engine import estimate_mean

N_STRATA = 20
N_PSU = 5_000
N_TERRITORIES = 1_000
N_ITEMS = 30
TARGET_SECONDS = 3.0  # for FULL_ROWS respondents
FULL_ROWS = 1_000_000
TARGET_SPEEDUP = 50.0  # on a shared subset of at least FULL_R_ROWS rows
FULL_R_ROWS = 20_000
TARGET_REL = 1e-9

R_SCRIPT = r"""
suppressMessages(library(survey))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
items <- grep("^q", names(d), value = TRUE)
des <- svydesign(ids = ~psu, strata = ~h, weights = ~w, data = d)
f <- as.formula(paste("~", paste(items, collapse = "+")))
t0 <- proc.time()[["elapsed"]]
res <- svyby(f, ~territory, des, svymean)
elapsed <- proc.time()[["elapsed"]] - t0
est <- as.matrix(res[, items])
se <- as.matrix(SE(res))
out <- data.frame(territory = rep(res$territory, times = length(items)),
                  variable = rep(items, each = nrow(res)),
                  estimate = sprintf("%.17g", as.vector(est)),
                  se = sprintf("%.17g", as.vector(se)))
write.csv(out, args[2], row.names = FALSE)
cat(sprintf("%.6f\n", elapsed))
"""


def make_data(n_rows: int, seed: int = 2026) -> pd.DataFrame:
    """Synthetic respondents: PSUs nested in strata, territories overlapping PSUs."""
    rng = np.random.default_rng(seed)
    n_psu = min(N_PSU, max(N_STRATA * 2, n_rows // 200))
    psu = rng.integers(0, n_psu, n_rows)
    stratum = psu % N_STRATA
    home = (psu * N_TERRITORIES) // n_psu
    other = rng.integers(0, N_TERRITORIES, n_rows)
    territory = np.where(rng.random(n_rows) < 0.8, home, other)
    data = {
        "h": stratum,
        "psu": psu,
        "territory": territory,
        "w": rng.uniform(0.5, 3.0, n_rows).round(4),
    }
    effect = rng.normal(0, 0.5, N_TERRITORIES)[territory]
    for j in range(N_ITEMS):
        latent = 3 + effect + rng.normal(0, 1, n_rows)
        data[f"q{j + 1:02d}"] = np.clip(np.rint(latent), 1, 5)
    return pd.DataFrame(data)


def python_estimates(df: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    items = [c for c in df.columns if c.startswith("q")]
    best = np.inf
    out = None
    for _ in range(3):
        t0 = time.perf_counter()
        design = SurveyDesign(df, weight="w", strata="h", psu="psu")
        out = estimate_mean(design, items, by="territory")
        best = min(best, time.perf_counter() - t0)
    return out, best


def r_estimates(df: pd.DataFrame) -> tuple[pd.DataFrame, float] | None:
    if shutil.which("Rscript") is None:
        return None
    check = subprocess.run(
        ["Rscript", "-e", "quit(status = !requireNamespace('survey', quietly = TRUE))"],
        capture_output=True,
    )
    if check.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data_csv, out_csv, script = (Path(tmp) / n for n in ("d.csv", "r.csv", "b.R"))
        df.to_csv(data_csv, index=False)
        script.write_text(R_SCRIPT)
        run = subprocess.run(
            ["Rscript", str(script), str(data_csv), str(out_csv)],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            print(f"R failed:\n{run.stderr}", file=sys.stderr)
            return None
        return pd.read_csv(out_csv), float(run.stdout.strip().splitlines()[-1])


def _verdict(name: str, ok: bool | None, detail: str) -> bool:
    """Print one target line; returns False only for a missed target that applies."""
    status = "n/a " if ok is None else ("PASS" if ok else "FAIL")
    print(f"  [{status}] {name}: {detail}")
    return ok is not False


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print times, ratio and agreement with R; 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS, help="respondents (large case)")
    parser.add_argument(
        "--r-rows", type=int, default=FULL_R_ROWS, help="rows of the shared R subset"
    )
    args = parser.parse_args(argv)

    big = make_data(args.rows)
    table, t_big = python_estimates(big)
    n_dom = table["territory"].nunique()
    print(
        f"evalterritoire: {args.rows:,} rows, {big['psu'].nunique():,} PSUs, {N_STRATA} strata, "
        f"{n_dom:,} territories × {N_ITEMS} items → {len(table):,} means with SE in {t_big:.2f} s"
    )

    rng = np.random.default_rng(7)
    small = big.iloc[np.sort(rng.choice(len(big), min(args.r_rows, len(big)), replace=False))]
    small = small.reset_index(drop=True)
    py_small, t_py = python_estimates(small)
    print(f"evalterritoire on the {len(small):,}-row subset: {t_py:.3f} s")
    r = r_estimates(small)
    ratio = rel = None
    zeros_ok = True
    if r is None:
        print("NOTICE: Rscript with the 'survey' package is not installed: R comparison skipped")
    else:
        r_table, t_r = r
        merged = py_small.merge(r_table, on=["territory", "variable"], suffixes=("", "_r"))
        if len(merged) != len(py_small) or len(merged) != len(r_table):
            print(f"row mismatch: python {len(py_small)}, R {len(r_table)}, matched {len(merged)}")
            return 1
        # a value is numerically zero when ≤ 1e-12 × |estimate| (one-PSU or constant domains,
        # where R's own SEs are 0 or rounding noise); other values are compared relatively
        scale = 1e-12 * np.maximum(np.abs(merged["estimate_r"].to_numpy()), 1.0)
        rel = 0.0
        n_zero = 0
        for c in ("estimate", "se"):
            ours, theirs = merged[c].to_numpy(), merged[f"{c}_r"].to_numpy()
            nz = np.abs(theirs) > scale
            rel = max(rel, float(np.max(np.abs(ours[nz] / theirs[nz] - 1), initial=0.0)))
            zeros_ok &= bool(np.all(np.abs(ours[~nz]) <= scale[~nz]))
            n_zero += int((~nz).sum())
        ratio = t_r / t_py
        print(f"R survey::svyby on the same subset: {t_r:.2f} s")
        print(f"speed-up vs R: {ratio:.0f}×")
        print(f"max relative difference from R (estimate, se): {rel:.2e}")
        print(
            f"{n_zero} values are numerically 0 in R (one-PSU or constant domains): "
            f"{'all ≤ 1e-12 × estimate here' if zeros_ok else 'NOT all ~0 here'}"
        )

    print("targets:")
    ok = _verdict(
        f"1M-row case ≤ {TARGET_SECONDS:g} s",
        None if args.rows < FULL_ROWS else t_big <= TARGET_SECONDS,
        f"{t_big:.2f} s for {args.rows:,} rows"
        + (f" (applies from {FULL_ROWS:,} rows)" if args.rows < FULL_ROWS else ""),
    )
    ok &= _verdict(
        f"speed-up ≥ {TARGET_SPEEDUP:g}× R",
        None if ratio is None or len(small) < FULL_R_ROWS else ratio >= TARGET_SPEEDUP,
        "R not available"
        if ratio is None
        else f"{ratio:.0f}× on {len(small):,} rows"
        + (f" (applies from {FULL_R_ROWS:,} rows)" if len(small) < FULL_R_ROWS else ""),
    )
    ok &= _verdict(
        f"max relative difference ≤ {TARGET_REL:g}",
        None if rel is None else (rel <= TARGET_REL and zeros_ok),
        "R not available" if rel is None else f"{rel:.2e}",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
