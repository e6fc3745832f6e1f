"""Benchmark: the whole ``estimate`` step (command line) on a large simulated study.

Simulates one wave (``evalterritoire simulate --territories 1000 --respondents 1000000
--waves 2025 --seed 7`` by default) in a temporary folder, checks it (``validate``, not
measured), then measures ``evalterritoire estimate`` — the study's estimates table with its
publication rules and Fay–Herriot fits, the national comparisons, alphas and medians — and,
in the same run, the bare estimation engine (``estimate_mean`` of every mean-type item by
territory on the study's design, as ``bench_national``). For each it prints the wall time and
the peak resident memory of the process tree (sampled every 50 ms with ``psutil``), then the
ratio of the step to the bare engine.

Goal (issue « national scale »): the estimate step of a 1,000,000-respondent study in
≤ 4 GiB peak. Exit status 0 when the goal is met (or does not apply: fewer rows), 1 otherwise.

Usage::

    .venv/bin/python bench/bench_estimate_step.py                      # 1,000,000 respondents
    .venv/bin/python bench/bench_estimate_step.py --respondents 150000 --territories 1250
    .venv/bin/python bench/bench_estimate_step.py --keep /tmp/estimate_step   # keep the study
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_national import BARE_ENGINE, BIN, _python, measure

GOAL_BYTES = 4 * 1024**3
GOAL_ROWS = 1_000_000


def _line(name: str, seconds: float, peak: int, extra: str = "") -> str:
    return f"{name:<16}{seconds:8.1f} s  {peak / 1024**3:6.2f} GiB{extra}"


def main(argv: list[str] | None = None) -> int:
    """Simulate the study, measure the estimate step and the bare engine, print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--territories", type=int, default=1000)
    parser.add_argument("--respondents", type=int, default=GOAL_ROWS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wave", default="2025")
    parser.add_argument("--keep", type=Path, help="Keep the study in this (new) folder.")
    args = parser.parse_args(argv)

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="et-estimate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "bench_estimate_step.log"
    et = str(BIN / "evalterritoire")
    print(f"study: {args.territories} territories × {args.respondents} respondents")
    print(f"folder: {workdir} (log: {log})")
    simulate = [et, "simulate", "--territories", str(args.territories)]
    simulate += ["--respondents", str(args.respondents), "--waves", args.wave]
    simulate += ["--seed", str(args.seed), "--out", "surveys"]
    study = workdir / "surveys" / args.wave / "study.toml"
    setup = [measure("simulate", simulate, workdir, log)]
    setup.append(measure("validate", [et, "validate", str(study)], workdir, log))
    if any(run.returncode not in (0, 1) for run in setup):
        print(f"setup failed (see {log})")
        return 1
    step = measure("estimate", [et, "estimate", str(study)], workdir, log)
    bare = measure("bare engine", [*_python(BARE_ENGINE), str(study)], workdir, log)
    print(_line("estimate step", step.seconds, step.peak_bytes))
    print(_line("bare engine", bare.seconds, bare.peak_bytes))
    print(
        f"ratio step / bare engine: {step.seconds / bare.seconds:.1f}× time, "
        f"{step.peak_bytes / max(bare.peak_bytes, 1):.1f}× memory; "
        f"{step.peak_bytes / args.respondents / 1024:.1f} KiB per respondent"
    )
    applies = args.respondents >= GOAL_ROWS
    ok = step.returncode == 0 and (not applies or step.peak_bytes <= GOAL_BYTES)
    verdict = "PASS" if ok else "FAIL"
    print(f"goal ≤ 4 GiB at {GOAL_ROWS:,} rows: {verdict if applies else 'n/a'}")
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
