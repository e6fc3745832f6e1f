"""Coverage of the models' 95 % intervals against known generating values (exit 1 if off).

Two modes; both judge the coverage ``c`` of each family with its Monte-Carlo standard error
(MC SE) and exit with status 1 when a judged family falls outside the band

    0.95 − tolerance − 3 MC SE  ≤  c  ≤  0.95 + 3 MC SE.

``--tolerance`` (default 0) is an optional one-sided allowance below the nominal level. The
study's models use ``small_sample = true`` (:mod:`evalterritoire.design.sandwich`: the sandwich rescaled
to be unbiased under a working model, per-coefficient Satterthwaite df), which is what is
judged. The plain Taylor intervals (R ``svyglm``'s, ``small_sample = false``) are refitted on the
same replicates and reported, not judged: on the demo design (202 PSUs in 10 strata, weights
varying 250-fold, raking on 22 margins, stage coefficients resting on a few territories) they
cover 0.91–0.93 (SEs 5–15 % short, t quantile with the design df too small). With four judged
families and 3 SE the chance of a false alarm is about 1 %.

``--mode parametric`` (default; what ``make bench`` runs: about 90 s on 2 cores)
    One simulated demo wave (``simulate_waves`` → ``run_ingest``, the territories' true stages
    put back in place of the estimated ones) fixes the design (strata, PSUs, fpc, raking), the
    covariates and which answers are missing. Each replicate redraws the four outcomes from
    exact generating models with the simulator's coefficients and refits the study's four
    models with :func:`evalterritoire.models.fit.fit_model` (same formulas, design, calibration,
    ``superpopulation`` and ``small_sample`` options as the demo study; once more with
    ``small_sample = false``, reported as ``svyglm``):

    * linear: ``score_global = x'β + v_PSU + e`` (``v`` ~ N(0, 0.15²), ``e`` ~ N(0, 0.45²):
      correlation within PSUs, which the design sandwich must capture);
    * logistic: ``dyn_animateur_existe`` ~ Bernoulli(logistic(x'β)) (the simulator's model);
    * ordinal: ``dyn_statut`` from a latent ``x'β + Logistic(0, 1)`` and the simulator's cuts;
    * mixed: ``res_reussite_globale = x'β + u_territory + e`` (sd 0.5 and 1.4, the simulator's
      values before rounding), fixed effects judged.

    Every family is judged.

``--mode pipeline`` (the whole pipeline twice per seed; 500 seeds take about 30 minutes on 2 cores)
    The whole pipeline per seed (``simulate_waves`` → ``run_ingest`` → ``run_maturity`` →
    ``run_models``), fitted with the stages found by ``run_maturity`` and with the true stages.
    Judged: logistic and ordinal with the true stages (exact generating models). The linear
    and mixed truths live on latent scales before rounding and clipping of the answers
    (attenuated estimates), so those families are reported, not judged.

Monte-Carlo standard error of a family's coverage ``c = Σ_s k_s / Σ_s n_s`` over replicates
``s`` (``k_s`` intervals covering among the ``n_s`` terms of the family in replicate ``s``; the
terms of one replicate share its data and are not independent):
``sqrt(S/(S−1) Σ_s (k_s − c n_s)²) / Σ_s n_s``, never less than the binomial SE of ``Σ n_s``
independent intervals at the nominal level, ``sqrt(0.95 × 0.05 / Σ n_s)`` (a run where every
interval covers is not judged with a zero SE). With the default 200 replicates the MC SE is
about 0.01 per family: the check catches SEs off by 25 % or more (coverage below 0.89 or above
0.98), not a 1-point drift; use ``--replicates 2000`` for a precise figure.

Usage::

    .venv/bin/python bench/bench_models.py [--replicates 200] [--workers 2]
    .venv/bin/python bench/bench_models.py --mode pipeline --seeds 500 [--save runs.csv]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread per worker process

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.special import expit  # noqa: E402

from evalterritoire import pipeline  # noqa: E402
from evalterritoire.config import load_study  # noqa: E402
from evalterritoire.models.data import _referenced  # noqa: E402
from evalterritoire.models.fit import fit_model  # noqa: E402
from evalterritoire.simulate.params import MIX_SD_RESIDUAL, MIX_SD_TERRITORY  # noqa: E402
from evalterritoire.simulate.waves import simulate_waves  # noqa: E402

NOMINAL = 0.95
Z_BAND = 3.0
TOLERANCE = 0.0
#: Families judged in each mode (the others are reported only).
JUDGED = {
    "parametric": ("linear", "logistic", "ordinal", "mixed"),
    "pipeline": ("logistic", "ordinal"),
}
LINEAR_SD_PSU = 0.15
LINEAR_SD_RESIDUAL = 0.45
TERRITORY = "id_territoire_code"


# --------------------------------------------------------------------------- judging
def coverage_table(
    runs: pd.DataFrame, judged: tuple[str, ...], tolerance: float = TOLERANCE
) -> pd.DataFrame:
    """Coverage per (stage source, model) with its Monte-Carlo SE and the verdicts.

    Parameters
    ----------
    runs : DataFrame
        One row per (replicate, term): ``seed``, ``stage_source``, ``model``, ``kind``,
        ``covered``, ``estimate``, ``truth``.
    judged : tuple of str
        Kinds judged (in the pipeline mode only with the true stages).
    tolerance : float
        One-sided allowance below the nominal level.

    Returns
    -------
    DataFrame
        ``coverage``, ``mc_se``, the judged band ``low``/``high``, ``verdict`` (PASS, FAIL or
        "reported") and ``strict`` (the verdict against 0.95 ± 3 MC SE).
    """
    out = []
    for (source, model, kind), g in runs.groupby(["stage_source", "model", "kind"], sort=False):
        per = g.groupby("seed")["covered"].agg(["sum", "count"])
        k, n = per["sum"].to_numpy(float), per["count"].to_numpy(float)
        S, total = len(per), n.sum()
        c = k.sum() / total
        clustered = np.sqrt(S / max(S - 1, 1) * np.sum((k - c * n) ** 2)) / total
        se = max(clustered, np.sqrt(NOMINAL * (1 - NOMINAL) / total))
        low, high = NOMINAL - tolerance - Z_BAND * se, NOMINAL + Z_BAND * se
        strict = abs(c - NOMINAL) <= Z_BAND * se
        is_judged = kind in judged and source in ("true", "parametric")
        out.append(
            {
                "stages": source,
                "model": model,
                "kind": kind,
                "replicates": S,
                "intervals": int(total),
                "coverage": c,
                "mc_se": se,
                "low": low,
                "high": high,
                "mean_bias": float((g["estimate"] - g["truth"]).mean()),
                "verdict": ("PASS" if low <= c <= high else "FAIL") if is_judged else "reported",
                "strict": ("PASS" if strict else "FAIL") if is_judged else "-",
            }
        )
    return pd.DataFrame(out)


def per_term(runs: pd.DataFrame) -> pd.DataFrame:
    """Coverage, bias and calibration of the SE (sd of z, 1 if right) per term."""
    runs = runs.assign(z=(runs["estimate"] - runs["truth"]) / runs["se"])
    by = runs.groupby(["stage_source", "model", "term"], sort=False).agg(
        truth=("truth", "first"),
        coverage=("covered", "mean"),
        mean_estimate=("estimate", "mean"),
        empirical_sd=("estimate", "std"),
        mean_se=("se", "mean"),
        sd_z=("z", "std"),
        replicates=("seed", "nunique"),
    )
    by["sd_z_mc_se"] = by["sd_z"] / np.sqrt(2 * (by["replicates"] - 1))
    return by


def _rows(table: pd.DataFrame, truth_models: list[dict], seed: int, source: str) -> list[dict]:
    rows = []
    indexed = table.set_index(["model", "term"])
    for spec in truth_models:
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


def simulate_wave(
    tmp: Path, seed: int, n_territories: int, n_respondents: int
) -> tuple[Any, dict[str, Any], pd.DataFrame]:
    """Simulate wave 2025 under ``tmp``: its study config, the ground truth and the true stages.

    The study writes to ``../../build``, which stays inside ``tmp``.
    """
    out = tmp / "surveys"
    simulate_waves(
        out, n_territories=n_territories, n_respondents=n_respondents, waves=[2025], seed=seed
    )
    cfg = load_study(out / "2025" / "study.toml")
    truth = json.loads((out / "ground_truth" / "truth.json").read_text(encoding="utf-8"))
    stages = pd.read_csv(out / "ground_truth" / "stages.csv", dtype={"territory": str})
    return cfg, truth, stages


# --------------------------------------------------------------------------- parametric mode
_STATE: dict[str, Any] = {}


def build_base(seed: int, n_territories: int, n_respondents: int) -> dict[str, Any]:
    """One simulated wave → frame (true stages, context), design, codebook, truths, X."""
    import patsy

    with tempfile.TemporaryDirectory() as tmp:
        cfg, truth, stages = simulate_wave(Path(tmp), seed, n_territories, n_respondents)
        codebook = pipeline.load_study_codebook(cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipeline.run_ingest(cfg, codebook=codebook)
            responses = pipeline._responses(cfg)
            frame = pipeline._with_stage(cfg, responses, codebook)
            true = stages[stages["wave"] == 2025].set_index("territory")["true_stage"]
            names = truth["stage_names"]
            frame["stage"] = frame[TERRITORY].map(true).astype("Int64")
            frame["stage_label"] = frame["stage"].map(lambda s: names[int(s)])
            frame = pipeline._merge_context(frame, cfg.context, codebook)
            design = pipeline._design(cfg, frame)
    designs = {}
    for spec in cfg.models:
        outcome, rhs = (part.strip() for part in spec.formula.split("~", 1))
        observed = frame[outcome].notna().to_numpy()
        cols = [c for c in _referenced(rhs, frame) if c != outcome]
        sub = frame.loc[observed, cols].copy()
        for c in cols:
            if isinstance(sub[c].dtype, pd.Int64Dtype):
                sub[c] = sub[c].astype("int64")
        X = patsy.dmatrix(rhs, sub, return_type="dataframe", NA_action="raise")
        model_truth = next(m for m in truth["models"] if m["name"] == spec.name)
        beta = X.columns.map(lambda t, mt=model_truth: mt["truth"].get(t, np.nan))
        if spec.kind == "ordinal":
            keep = [t for t in X.columns if t != "Intercept"]
            X, beta = X[keep], pd.Index([model_truth["truth"][t] for t in keep])
        if np.isnan(np.asarray(beta, dtype=float)).any():
            raise SystemExit(
                f"{spec.name}: no generating value for some terms of {list(X.columns)}"
            )
        designs[spec.name] = {
            "outcome": outcome,
            "rows": np.flatnonzero(observed),
            "eta": X.to_numpy(float) @ np.asarray(beta, dtype=float),
            "truth": model_truth,
        }
    return {
        "frame": frame,
        "design": design,
        "codebook": codebook,
        "specs": cfg.models,
        "models": designs,
        "psu": pd.factorize(frame["id_psu"])[0],
        "territory": pd.factorize(frame[TERRITORY])[0],
    }


def _init(base: dict[str, Any]) -> None:
    _STATE.update(base)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")


def draw_outcomes(base: dict[str, Any], rng: np.random.Generator) -> pd.DataFrame:
    """The frame with the four outcomes redrawn from their generating models."""
    frame = base["frame"].copy()
    for spec in base["specs"]:
        m = base["models"][spec.name]
        rows, eta = m["rows"], m["eta"]
        if spec.kind == "linear":
            v = rng.normal(0.0, LINEAR_SD_PSU, base["psu"].max() + 1)[base["psu"][rows]]
            y = eta + v + rng.normal(0.0, LINEAR_SD_RESIDUAL, rows.size)
        elif spec.kind == "logistic":
            y = (rng.random(rows.size) < expit(eta)).astype(float)
        elif spec.kind == "ordinal":
            cuts = [v for k, v in sorted(m["truth"]["truth"].items()) if k.startswith("cut_")]
            y = np.digitize(eta + rng.logistic(size=rows.size), cuts).astype(float)
        else:
            u = rng.normal(0.0, MIX_SD_TERRITORY, base["territory"].max() + 1)
            y = eta + u[base["territory"][rows]] + rng.normal(0.0, MIX_SD_RESIDUAL, rows.size)
        values = np.full(len(frame), np.nan)
        values[rows] = y
        frame[m["outcome"]] = values
    return frame


def run_replicate(replicate: int, base_seed: int = 0) -> list[dict]:
    """Redraw the outcomes (seeded by the replicate) and refit the four models."""
    base = _STATE
    rng = np.random.default_rng([base_seed, replicate])
    frame = draw_outcomes(base, rng)
    rows = []
    for spec in base["specs"]:
        truth = base["models"][spec.name]["truth"]
        fit = fit_model(spec, frame, base["design"], base["codebook"])
        rows += _rows(fit.table, [truth], replicate, "parametric")
        plain = dataclasses.replace(spec, small_sample=False)
        fit = fit_model(plain, frame, base["design"], base["codebook"])
        rows += _rows(fit.table, [truth], replicate, "svyglm")
    return rows


def run_parametric(args: argparse.Namespace) -> pd.DataFrame:
    t0 = time.perf_counter()
    base = build_base(args.base_seed, args.territories, args.respondents)
    print(f"base wave built in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    reps = range(args.replicates)
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers, initializer=_init, initargs=(base,)) as pool:
            chunks = list(pool.map(run_replicate, reps, [args.base_seed] * len(reps), chunksize=4))
    else:
        _init(base)
        chunks = [run_replicate(r, args.base_seed) for r in reps]
    elapsed = time.perf_counter() - t0
    print(
        f"{args.replicates} replicates × 4 models in {elapsed:.1f} s "
        f"({elapsed / max(args.replicates, 1) * args.workers:.2f} s per replicate and core)"
    )
    return pd.DataFrame([row for chunk in chunks for row in chunk])


# --------------------------------------------------------------------------- pipeline mode
def run_seed(seed: int, n_territories: int, n_respondents: int) -> pd.DataFrame:
    """One simulated wave through the pipeline; one row per term with a true value.

    The models are fitted twice: with the stages found by ``run_maturity`` (what a user gets)
    and with the true stages (the truth is conditional on them, so this isolates the
    intervals' calibration from stage-recovery errors).
    """
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, truth, stages = simulate_wave(Path(tmp), seed, n_territories, n_respondents)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipeline.run_ingest(cfg)
            pipeline.run_maturity(cfg)
            estimated = pipeline.run_models(cfg).table
            path = cfg.artefact("maturity.parquet")
            maturity = pd.read_parquet(path)
            true = stages[stages["wave"] == 2025].set_index("territory")["true_stage"]
            accuracy = float((maturity["stage"] == maturity["territory"].map(true)).mean())
            maturity["stage"] = maturity["territory"].map(true).astype(maturity["stage"].dtype)
            maturity.to_parquet(path)
            with_true = pipeline.run_models(cfg).table
    rows = _rows(estimated, truth["models"], seed, "estimated")
    rows += _rows(with_true, truth["models"], seed, "true")
    frame = pd.DataFrame(rows)
    frame["stage_accuracy"] = accuracy
    return frame


def run_pipeline(args: argparse.Namespace) -> pd.DataFrame:
    seeds = [5000 + s for s in range(args.seeds)]
    t0 = time.perf_counter()
    n = len(seeds)
    with ProcessPoolExecutor(max(args.workers, 1)) as pool:
        frames = list(pool.map(run_seed, seeds, [args.territories] * n, [args.respondents] * n))
    elapsed = time.perf_counter() - t0
    runs = pd.concat(frames, ignore_index=True)
    print(
        f"{n} seeds × {args.territories} territories × {args.respondents} respondents in "
        f"{elapsed:.0f} s; stage accuracy of run_maturity "
        f"{runs.groupby('seed')['stage_accuracy'].first().mean():.3f}"
    )
    return runs


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("parametric", "pipeline"), default="parametric")
    parser.add_argument("--replicates", type=int, default=200, help="parametric mode")
    parser.add_argument("--seeds", type=int, default=500, help="pipeline mode")
    parser.add_argument("--base-seed", type=int, default=2025, help="parametric base wave")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--tolerance", type=float, default=TOLERANCE, help="allowance below 0.95 (one-sided)"
    )
    parser.add_argument("--territories", type=int, default=60)
    parser.add_argument("--respondents", type=int, default=3000)
    parser.add_argument("--save", type=Path, help="write every (replicate, term) row to a CSV")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    runs = run_parametric(args) if args.mode == "parametric" else run_pipeline(args)
    if args.save:
        runs.to_csv(args.save, index=False)
    table = coverage_table(runs, JUDGED[args.mode], args.tolerance)
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(
            "\nper term (sd of z = (estimate − truth) / se: about 1 when the SE is right, "
            "a little above with few df):"
        )
        print(per_term(runs).to_string(float_format=lambda v: f"{v:.4f}"))
    failed = table[table["verdict"] == "FAIL"]
    judged = table[table["verdict"] != "reported"]
    strict_ok = int((judged["strict"] == "PASS").sum())
    print(
        f"\nstrict check: {strict_ok}/{len(judged)} judged families within "
        f"{NOMINAL:.2f} ± {Z_BAND:g} MC SE"
    )
    print(
        f"verdict: {len(judged) - len(failed)}/{len(judged)} judged families within "
        f"[{NOMINAL:.2f} − {args.tolerance:g} − {Z_BAND:g} MC SE, {NOMINAL:.2f} + {Z_BAND:g} MC SE]"
        + (" → FAIL" if len(failed) else " → PASS")
    )
    return 1 if len(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
