"""Command line: ``evalterritoire <command>``.

A thin layer over :mod:`evalterritoire.pipeline` and the module entry functions. Every
:class:`~evalterritoire.errors.EvalTerritoireError` becomes one clear message on stderr and a
non-zero exit status; no traceback reaches the user (set ``EVALTERRITOIRE_DEBUG=1`` to see one).
``SIGTERM`` unwinds a command as Ctrl-C does (exit status 143), so the processes it started
stop with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from evalterritoire.errors import EvalTerritoireError, StudyConfigError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from evalterritoire.config import StudyConfig

__all__ = ["app", "console", "main"]

app = typer.Typer(
    name="evalterritoire",
    help="Maturity-adapted evaluation reports from survey waves on territorial co-construction.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

StudyArg = Annotated[Path, typer.Argument(help="Study file surveys/<wave>/study.toml.")]


def _echo(message: str) -> None:
    typer.echo(message)


def _load(study: Path):
    from evalterritoire.config import load_study

    return load_study(study)


@app.command()
def simulate(
    territories: Annotated[int, typer.Option(help="Number of territories.")] = 60,
    respondents: Annotated[int, typer.Option(help="Respondents per wave.")] = 3000,
    waves: Annotated[
        str, typer.Option(help="Comma-separated waves, e.g. 2023,2024,2025.")
    ] = "2023,2024,2025",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 2025,
    out: Annotated[
        Path, typer.Option(help="Output directory (one sub-directory per wave).")
    ] = Path("surveys"),
) -> None:
    """Write synthetic raw exports, study files and ground truth for several waves."""
    from evalterritoire.simulate.waves import simulate_waves

    try:
        wave_list = [int(w) for w in waves.split(",") if w.strip()]
    except ValueError:
        raise StudyConfigError(f"--waves must be comma-separated years, got {waves!r}") from None
    if territories < 2 or respondents < territories:
        raise StudyConfigError("--territories must be ≥ 2 and --respondents ≥ --territories")
    if seed > 2**32 - 1:  # written in the study files it generates (numpy's range; < 0: below)
        raise StudyConfigError(f"--seed must be an integer from 0 to {2**32 - 1}, got {seed}")
    try:
        result = simulate_waves(
            out, n_territories=territories, n_respondents=respondents, waves=wave_list, seed=seed
        )
    except OSError as exc:  # unwritable --out: a path under a file, no permission, disk full
        where = exc.filename or out
        reason = exc.strerror or type(exc).__name__
        raise StudyConfigError(f"--out {out}: cannot write {where} ({reason})") from None
    _echo(result.summary())


@app.command()
def ingest(
    export: Annotated[
        Path, typer.Argument(help="Raw export: CSV/TSV/TXT, XLSX, SPSS .sav or Parquet.")
    ],
    codebook: Annotated[str, typer.Option(help="Codebook YAML, or 'default'.")] = "default",
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: alongside, build/).")
    ] = None,
    profile: Annotated[
        str, typer.Option(help="auto|limesurvey|sphinx|kobo|qualtrics|google-forms")
    ] = "auto",
    sheet: Annotated[str | None, typer.Option(help="XLSX sheet name.")] = None,
    header_row: Annotated[
        int | None, typer.Option(help="1-based header row (default: detected).")
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="Force the text encoding.")] = None,
    delimiter: Annotated[str | None, typer.Option(help="Force the field delimiter.")] = None,
    repair_mojibake: Annotated[
        bool,
        typer.Option(
            "--repair-mojibake",
            help="Repair double-encoded text ('Ã©' → 'é'); each repair is counted in the report.",
        ),
    ] = False,
    column_map: Annotated[
        Path | None,
        typer.Option(help="Column-mapping CSV (source,variable) added to the codebook's map."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the ingestion report as JSON.")
    ] = False,
) -> None:
    """Read and validate one export; write responses.parquet, quarantine.csv, ingestion.json.

    Exit status: 0 all rows valid, 1 some rows quarantined, 2 file rejected or usage error.
    """
    from evalterritoire.codebook import load_codebook
    from evalterritoire.ingest.files import ingest_file, write_ingest_outputs

    cb = load_codebook(None if codebook == "default" else codebook)
    result = ingest_file(
        export,
        cb,
        profile=profile,
        sheet=sheet,
        header_row=header_row,
        encoding=encoding,
        delimiter=delimiter,
        repair_mojibake=repair_mojibake,
        column_map=column_map,
    )
    out_dir = out if out is not None else Path("build") / "ingest" / export.stem
    write_ingest_outputs(result, out_dir)
    if as_json:
        _echo(json.dumps(result.report, ensure_ascii=False, indent=2, sort_keys=True, default=str))
    else:
        _echo(result.summary())
        _echo(f"outputs: {out_dir}")
    raise typer.Exit(result.exit_code)


@app.command()
def validate(study: StudyArg) -> None:
    """Ingest every export of a study and write build/<wave>/ (exit 1 if rows were quarantined)."""
    config = _load(study)
    from evalterritoire.pipeline import run_ingest

    result = run_ingest(config)
    _echo(result.summary())
    raise typer.Exit(result.exit_code)


@app.command()
def estimate(study: StudyArg) -> None:
    """Design-based estimates for every item → build/<wave>/estimates.parquet."""
    config = _load(study)
    from evalterritoire.pipeline import run_estimates

    table = run_estimates(config)
    _echo(f"estimates: {len(table)} rows")


@app.command()
def cluster(study: StudyArg) -> None:
    """Maturity stages per territory → build/<wave>/maturity.parquet, transitions.parquet."""
    config = _load(study)
    from evalterritoire.pipeline import run_maturity

    result = run_maturity(config)
    counts = result.maturity["stage_label"].value_counts().sort_index()
    _echo("stages: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))


@app.command()
def model(study: StudyArg) -> None:
    """Fit the study's models with design-based uncertainty → build/<wave>/models.parquet."""
    config = _load(study)
    from evalterritoire.pipeline import run_models

    result = run_models(config)
    _echo(
        f"models: {result.table['model'].nunique() if len(result.table) else 0} fitted, "
        f"{len(result.table)} coefficient rows"
    )


def _render_limits(
    config: StudyConfig, **given: float | int | None
) -> AbstractContextManager[None]:
    """Report time limit, retries and kernel recycling: command line, else ``[report]``."""
    from evalterritoire.render.options import render_defaults

    names = ("timeout", "retries", "max_reports_per_kernel", "max_kernel_memory_mb")
    return render_defaults(
        **{
            name: given[name] if given.get(name) is not None else getattr(config.report, name)
            for name in names
        }
    )


def _parse_params(values: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise StudyConfigError(
                f"-p expects key=value with a Python identifier key, got {item!r}"
            )
        params[key.strip()] = value
    return params


TerritoryOpt = Annotated[
    list[str] | None,
    typer.Option("--territory", "-t", help="Territory code (repeatable); default: all."),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="Report parameter key=value, as the template declares it (repeatable).",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", help="Render into this folder (never the published reports/<wave>/); no manifest."
    ),
]
FormatOpt = Annotated[
    list[str] | None, typer.Option("--format", "-f", help="html|pdf|docx|ipynb (repeatable).")
]
EngineOpt = Annotated[str | None, typer.Option(help="warm|papermill|quarto")]
WorkersOpt = Annotated[int | None, typer.Option(help="Parallel workers (default: cores).")]
DaskOpt = Annotated[str | None, typer.Option(help="Address of an existing Dask scheduler.")]
OnlyFailedOpt = Annotated[
    bool, typer.Option("--only-failed", help="Re-render failed territories only.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Render even when inputs are unchanged.")]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(help="Time limit of one report in seconds (default: study, else 600)."),
]
RetriesOpt = Annotated[
    int | None, typer.Option(help="Retries after a kernel failure (default: study, else 1).")
]
MaxReportsOpt = Annotated[
    int | None,
    typer.Option(help="Recycle a warm kernel after N reports (default: study, else 1000)."),
]
MaxMemoryOpt = Annotated[
    float | None,
    typer.Option(help="Recycle a warm kernel above this memory, MiB (default: 1024)."),
]


@app.command()
def report(
    study: StudyArg,
    territory: TerritoryOpt = None,
    param: ParamOpt = None,
    fmt: FormatOpt = None,
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    dask_scheduler: DaskOpt = None,
    only_failed: OnlyFailedOpt = False,
    force: ForceOpt = False,
    timeout: TimeoutOpt = None,
    retries: RetriesOpt = None,
    max_reports_per_kernel: MaxReportsOpt = None,
    max_kernel_memory_mb: MaxMemoryOpt = None,
    out: OutOpt = None,
) -> None:
    """Render the evaluation reports (one per territory, plus the annual study and the index).

    Exit status: 0 all reports rendered or unchanged, 1 some reports failed (the others are
    written; re-run with --only-failed after a fix), 2 usage error.
    """
    parameters = _parse_params(param)
    config = _load(study)
    from evalterritoire.pipeline import run_reports

    limits = {
        "timeout": timeout,
        "retries": retries,
        "max_reports_per_kernel": max_reports_per_kernel,
        "max_kernel_memory_mb": max_kernel_memory_mb,
    }
    with _render_limits(config, **limits):
        summary = run_reports(
            config,
            territories=territory,
            parameters=parameters,
            formats=fmt,
            engine=engine,
            workers=workers,
            dask_scheduler=dask_scheduler,
            only_failed=only_failed,
            force=force,
            out_dir=out,
        )
    _echo(summary.describe() if hasattr(summary, "describe") else str(summary))
    raise typer.Exit(summary.exit_code)


@app.command("study")
def study_cmd(
    study: StudyArg,
    all_waves: Annotated[
        bool, typer.Option("--all-waves", help="Also build the previous waves named in the study.")
    ] = False,
    workers: Annotated[int | None, typer.Option(help="Parallel render workers.")] = None,
) -> None:
    """Run every step of a study: ingest, maturity, estimates, models, contexts, reports, manifest."""
    config = _load(study)
    from evalterritoire.pipeline import run_study

    with _render_limits(config):
        code = run_study(config, all_waves=all_waves, workers=workers)
    raise typer.Exit(code)


@app.command()
def reproduce(
    manifest: Annotated[Path, typer.Argument(help="reports/<wave>/manifest.json of a past run.")],
) -> None:
    """Re-run a study in a temporary directory and compare every artefact with the manifest."""
    from evalterritoire.pipeline import run_reproduce

    code = run_reproduce(manifest, echo=_echo)
    raise typer.Exit(code)


codebook_app = typer.Typer(
    help="Codebooks: import one from a survey tool's questionnaire, compare two versions.",
    no_args_is_help=True,
)
app.add_typer(codebook_app, name="codebook")


@codebook_app.command("import")
def codebook_import(
    source: Annotated[
        Path,
        typer.Argument(help="XLSForm .xlsx, LimeSurvey .lss, SPSS .sav or Qualtrics .qsf."),
    ],
    out: Annotated[
        Path | None, typer.Option(help="Codebook YAML to write (default: SOURCE.codebook.yaml).")
    ] = None,
) -> None:
    """Write a codebook from a survey tool's questionnaire; print what needs a review."""
    from evalterritoire.artefacts import write_text_atomic
    from evalterritoire.codebook.importing import import_codebook
    from evalterritoire.errors import CodebookError

    result = import_codebook(source)
    target = out if out is not None else source.with_name(source.stem + ".codebook.yaml")
    try:
        write_text_atomic(target, result.to_yaml())
    except OSError as exc:  # a path under a file, no permission, disk full
        raise CodebookError(f"--out {target}: cannot write ({exc.strerror or exc})") from None
    _echo(result.summary())
    _echo(f"codebook: {target}")


@codebook_app.command("diff")
def codebook_diff(
    old: Annotated[Path, typer.Argument(help="Older codebook YAML.")],
    new: Annotated[Path, typer.Argument(help="Newer codebook YAML.")],
) -> None:
    """Items added, removed, reworded, or whose scale or options changed. Exit 1 if any."""
    from evalterritoire.codebook import diff_codebooks, load_codebook

    changes = diff_codebooks(load_codebook(old), load_codebook(new))
    _echo(changes.describe())
    raise typer.Exit(1 if changes else 0)


class _Terminated(KeyboardInterrupt):
    """``SIGTERM`` received: unwinds like Ctrl-C (render workers and kernels are stopped)."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[list[int]]:
    """Turn ``SIGTERM`` into :class:`_Terminated` while a command runs (main thread only).

    Yields the list of signals received (typer turns the interruption into exit status 130:
    the list tells a ``SIGTERM`` from a Ctrl-C).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_app(argv: list[str] | None) -> None:
    """Run the command (standalone mode: typer prints usage errors and exits with status 2)."""
    with _sigterm_interrupts() as received:
        try:
            app(args=argv, prog_name="evalterritoire", standalone_mode=True)
        except SystemExit:
            if received:
                raise _Terminated from None
            raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``evalterritoire`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 success, 1 partial (rows quarantined, reports failed, differences found),
        2 rejected input or usage error, 3 unexpected internal error, 130 interrupted (Ctrl-C),
        143 stopped by ``SIGTERM`` (the render workers and kernels stop with the command).
    """
    debug = os.environ.get("EVALTERRITOIRE_DEBUG") == "1"
    try:
        _run_app(argv)
    except _Terminated:
        typer.echo("stopped (SIGTERM)", err=True)
        return 143
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 2
    except EvalTerritoireError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} "
            "(this is a bug in evalterritoire; re-run with EVALTERRITOIRE_DEBUG=1 for details)",
            err=True,
        )
        return 3
    return 0


def console(argv: list[str] | None = None) -> NoReturn:
    """The console script: run :func:`main`, then end the process without native teardown.

    Python's own exit destroys the C++ thread pools of the compiled libraries (Arrow's
    Parquet readers, BLAS) while some of their threads may still be alive, which now and
    then aborts a finished command with ``terminate called without an active exception``
    (exit status −6 instead of the command's own). So, once the command has returned, the
    process does what a normal exit does for Python — joins the threads that are not
    daemons, runs the ``atexit`` handlers, flushes its streams — and then ends with
    ``os._exit`` and the command's status. Embedders call :func:`main` instead, which
    returns.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).
    """
    import atexit

    code = main(argv)
    try:
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console()
