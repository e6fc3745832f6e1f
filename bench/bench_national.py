"""National-scale benchmark: one wave of every intercommunalité of France on this machine.

Simulates a national wave (``evalterritoire simulate --territories 1250 --respondents 150000
--waves 2025 --seed 7`` by default) in a temporary folder, then runs the study's steps one by
one as the command line does (``validate``, ``cluster``, ``estimate``, ``model``, the report
contexts, ``report``) and, in a clean build, the whole ``evalterritoire study`` (``--runs``
times: the goal must hold run after run). Then it renders the study again with
``--dask-scheduler`` on a ``LocalCluster`` of ``--workers`` processes and checks that every
published byte is the same (``manifest.json`` and the render status aside: they hold timings). For each run it prints the wall
time and the peak resident memory of the whole process tree (the command, its render workers
and kernels), sampled every 50 ms over all child processes with ``psutil``.

Baselines measured in the same run, where one exists:

* ``validate`` against a bare ``pyarrow.csv`` read of the same exports;
* ``estimate`` against the bare estimation engine (``estimate_mean`` of every mean-type item
  — likert, rating, ordinal, count, decimal — by territory on the study's design, in one
  process, reading ``responses.parquet``);
* ``report`` against the naive papermill loop (``papermill.execute_notebook`` then nbconvert's
  HTML exporter, one territory after the other) on ``--naive-sample`` territories, projected to
  all territories.

Goal (issue « national scale »): the whole study in ≤ 300 s and ≤ 4 GiB peak for the process
tree. Exit status 0 when the goal is met, 1 otherwise.

Usage::

    .venv/bin/python bench/bench_national.py                       # the national wave
    .venv/bin/python bench/bench_national.py --territories 200 --respondents 20000   # quick
    .venv/bin/python bench/bench_national.py --keep /tmp/national  # keep the study folder
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOAL_SECONDS = 300.0
GOAL_BYTES = 4 * 1024**3
STEPS = ("validate", "cluster", "estimate", "model", "contexts", "report")
#: Run-time bookkeeping that differs between two renders of the same study (timings).
BOOKKEEPING = {"manifest.json", ".render_status.json"}


@dataclass(frozen=True)
class Run:
    """Wall time, peak tree memory and exit status of one command."""

    name: str
    seconds: float
    peak_bytes: int
    returncode: int


def _tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and all its descendants (bytes)."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measure(name: str, command: list[str], cwd: Path, log: Path) -> Run:
    """Run ``command`` and sample the memory of its process tree until it ends."""
    peak = 0
    start = time.perf_counter()
    with log.open("ab") as sink:
        sink.write(f"\n$ {' '.join(command)}\n".encode())
        sink.flush()
        child = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        watched = psutil.Process(child.pid)
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(watched))
                stop.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = child.wait()
        stop.set()
        sampler.join()
    return Run(name, time.perf_counter() - start, peak, returncode)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


BARE_READ = """
import sys, pyarrow.csv as pc
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("*.csv")):
    pc.read_csv(path, parse_options=pc.ParseOptions(delimiter=";"),
                read_options=pc.ReadOptions(encoding="utf-8"))
"""

BARE_ENGINE = """
import sys, pandas as pd
from evalterritoire.config import load_study
from evalterritoire.codebook import load_codebook
from evalterritoire.design.survey import build_design
from evalterritoire.estimates.engine import estimate_mean
config = load_study(sys.argv[1])
codebook = load_codebook(config.codebook)
responses = pd.read_parquet(config.artefact("responses.parquet"))
territory = codebook.require("territory", "bench")
kinds = ("likert", "rating", "ordinal", "count", "decimal")
items = [v.id for v in codebook.of_type(*kinds) if v.id in responses.columns]
design = build_design(responses, config.design, config.calibration)
estimate_mean(design, items, by=territory)
"""


CONTEXTS = """
import sys
from evalterritoire.config import load_study
from evalterritoire.pipeline import run_contexts
run_contexts(load_study(sys.argv[1]))
"""

DASK_REPORT = """
import subprocess, sys
from distributed import LocalCluster
if __name__ == "__main__":
    with LocalCluster(n_workers=int(sys.argv[3]), threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        code = subprocess.call([sys.argv[1], "report", sys.argv[2], "--force",
                                "--dask-scheduler", cluster.scheduler_address])
    raise SystemExit(code)
"""


def _published(folder: Path) -> dict[str, bytes]:
    """Every published file of a reports folder (bookkeeping aside): relative path → bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in BOOKKEEPING
    }


def dask_check(
    et: str, study: Path, cwd: Path, workers: int, log: Path
) -> tuple[Run, int, list[str]]:
    """Render the study again on a ``LocalCluster`` and compare every published byte.

    Returns the run, the number of files compared and the files that differ (or are missing
    on one side).
    """
    reports = _reports_dir(study)
    before = _published(reports)
    run = measure(
        "report on Dask LocalCluster",
        [*_python(DASK_REPORT), et, str(study), str(workers)],
        cwd,
        log,
    )
    after = _published(reports)
    differ = sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
    return run, len(before), differ


def _reports_dir(study: Path) -> Path:
    from evalterritoire.config import load_study

    return load_study(study).reports_dir


def _exports(study_dir: Path) -> Path:
    """The folder of the wave's raw exports (as the simulator writes them)."""
    candidates = sorted({p.parent for p in study_dir.rglob("*.csv") if "build" not in p.parts})
    return candidates[0] if candidates else study_dir


NAIVE_LOOP = """
import sys, nbformat, papermill as pm
from pathlib import Path
from nbconvert import HTMLExporter
from evalterritoire.config import load_study
from evalterritoire.render.notebook import write_template_notebook
config = load_study(sys.argv[1])
contexts = config.artefact("contexts")
codes = sorted(p.stem for p in contexts.glob("*.json") if p.stem != "national")[: int(sys.argv[2])]
out = Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
from importlib.resources import files
template = Path(str(files("evalterritoire") / "data" / "templates" / "territory_report.py"))
notebook = write_template_notebook(template, out / "territory_report.ipynb")
for code in codes:
    executed = out / f"{code}.ipynb"
    pm.execute_notebook(str(notebook), str(executed), progress_bar=False, log_output=False,
                        parameters={"territory": code, "wave": config.wave,
                                    "context_path": str(contexts / f"{code}.json")})
    body, _ = HTMLExporter(exclude_input=True).from_notebook_node(
        nbformat.read(executed, as_version=4))
    (out / f"{code}.html").write_text(body, encoding="utf-8")
"""


def naive_loop(study: Path, cwd: Path, sample: int, log: Path) -> Run:
    """The naive papermill loop (as in ``bench_render``) on ``sample`` territories."""
    out = cwd / "naive"
    command = [*_python(NAIVE_LOOP), str(study), str(sample), str(out)]
    return measure("naive papermill loop", command, cwd, log)


def _fmt(run: Run) -> str:
    status = "" if run.returncode == 0 else f"  (exit {run.returncode})"
    return f"{run.seconds:8.1f} s  {run.peak_bytes / 1024**3:6.2f} GiB{status}"


def main(argv: list[str] | None = None) -> int:
    """Simulate a national wave, run its steps and the whole study, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--territories", type=int, default=1250)
    parser.add_argument("--respondents", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wave", default="2025")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--naive-sample", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="Keep the study in this (new) folder.")
    parser.add_argument("--runs", type=int, default=2, help="Whole-study runs (default 2).")
    parser.add_argument(
        "--no-dask",
        dest="dask",
        action="store_false",
        help="Skip the Dask LocalCluster render and its byte comparison.",
    )
    args = parser.parse_args(argv)

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="et-national-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "bench_national.log"
    et = str(BIN / "evalterritoire")
    print(f"national wave: {args.territories} territories × {args.respondents} respondents")
    print(f"folder: {workdir} (log: {log})")
    sim = measure(
        "simulate",
        [
            et,
            "simulate",
            "--territories",
            str(args.territories),
            "--respondents",
            str(args.respondents),
            "--waves",
            args.wave,
            "--seed",
            str(args.seed),
            "--out",
            "surveys",
        ],
        workdir,
        log,
    )
    study = workdir / "surveys" / args.wave / "study.toml"
    print(f"{'simulate':<24}{_fmt(sim)}")
    runs = [measure(step, [et, step, str(study)], workdir, log) for step in STEPS[:-2]]
    runs.append(measure("contexts", [*_python(CONTEXTS), str(study)], workdir, log))
    runs.append(
        measure("report", [et, "report", str(study), "--workers", str(args.workers)], workdir, log)
    )
    bare_read = measure(
        "bare pyarrow read", [*_python(BARE_READ), str(_exports(study.parent))], workdir, log
    )
    bare_engine = measure("bare engine", [*_python(BARE_ENGINE), str(study)], workdir, log)
    naive = naive_loop(study, workdir, args.naive_sample, log)
    naive_per_report = naive.seconds / max(args.naive_sample, 1)
    baselines = {
        "validate": (bare_read.seconds, "bare pyarrow read"),
        "estimate": (bare_engine.seconds, "bare engine"),
        "report": (naive_per_report * args.territories, "naive papermill loop, projected"),
    }
    print(f"\n{'step':<24}{'wall':>10}  {'peak tree':>10}   ratio to baseline")
    for run in runs:
        line = f"{run.name:<24}{_fmt(run)}"
        if run.name in baselines:
            seconds, label = baselines[run.name]
            line += f"   {run.seconds / seconds:6.2f}× {label} ({seconds:.1f} s)"
        print(line)
    wholes = []
    for k in range(args.runs):  # the goal must hold run after run
        for build in ("build", "reports"):
            shutil.rmtree(study.parent / build, ignore_errors=True)
            shutil.rmtree(workdir / build, ignore_errors=True)
        whole = measure(
            f"whole study (run {k + 1})",
            [et, "study", str(study), "--workers", str(args.workers)],
            workdir,
            log,
        )
        wholes.append(whole)
        print(f"{whole.name:<24}{_fmt(whole)}")
    ok_time = all(w.seconds <= GOAL_SECONDS for w in wholes)
    ok_mem = all(w.peak_bytes <= GOAL_BYTES for w in wholes)
    ok_runs = all(w.returncode in (0, 1) for w in wholes)
    print(
        f"\ngoal ≤ {GOAL_SECONDS:.0f} s: {'PASS' if ok_time else 'FAIL'}; "
        f"≤ 4 GiB: {'PASS' if ok_mem else 'FAIL'}; "
        f"render ratio (naive / ours per report): "
        f"{naive_per_report / (runs[-1].seconds / args.territories):.1f}×"
    )
    ok_dask = True
    if args.dask:
        run, n_files, differ = dask_check(et, study, workdir, args.workers, log)
        ok_dask = run.returncode in (0, 1) and not differ
        print(
            f"{run.name:<24}{_fmt(run)}   {n_files} published files, "
            + ("byte-identical" if not differ else f"{len(differ)} differ: {', '.join(differ[:5])}")
        )
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok_time and ok_mem and ok_runs and ok_dask else 1


if __name__ == "__main__":
    raise SystemExit(main())
