"""Orchestration: the ``run_*`` steps, the only place that reads and writes artefacts.

Each step reads the artefacts of the previous ones under ``build/<wave>/`` and writes its own,
so that a user (or ``make``) can start from any artefact::

    run_ingest     exports             → responses.parquet, quarantine.csv, ingestion.json
    run_maturity   responses (+ earlier waves) → maturity.parquet, transitions.parquet, ...
    run_estimates  responses + stages  → estimates.parquet (statuses), smallarea.parquet,
                                         national_comparisons.parquet,
                                         dimension_alpha.parquet, item_medians.parquet
    run_models     responses + stages  → models.parquet
    run_contexts   every table above   → contexts/<territory>.json
    run_reports    contexts            → reports/<wave>/…html, index.html, manifest.json

Stages are computed before the estimates so that estimates can be published by stage (the
maturity step uses its own design-weighted profiles and needs no estimates artefact).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from evalterritoire.artefacts import folder_lock
from evalterritoire.codebook import Codebook, load_codebook
from evalterritoire.config import StudyConfig, load_study
from evalterritoire.errors import (
    ArtefactError,
    EvalTerritoireError,
    ModelError,
    ReproduceError,
    StaleArtefactError,
    StudyConfigError,
)
from evalterritoire.provenance import Provenance, StepRecorder

if TYPE_CHECKING:
    from evalterritoire.design.survey import SurveyDesign
    from evalterritoire.ingest.report import IngestResult

__all__ = [
    "load_study_codebook",
    "run_contexts",
    "run_estimates",
    "run_ingest",
    "run_maturity",
    "run_models",
    "run_reports",
    "run_reproduce",
    "run_study",
]


# --------------------------------------------------------------------------- helpers
def load_study_codebook(config: StudyConfig) -> Codebook:
    """Load the codebook named by a study (``"default"`` is the one shipped in the package)."""
    return load_codebook(None if config.codebook == "default" else config.codebook)


def _codebook_file(config: StudyConfig) -> Path:
    from evalterritoire.codebook import default_codebook_path

    return default_codebook_path() if config.codebook == "default" else Path(config.codebook)


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _step(message: str) -> None:
    _console().print(f"[bold cyan]›[/] {message}")


def _warn(message: str) -> None:
    _console().print(f"[bold yellow]![/] {message}", markup=True)


@contextlib.contextmanager
def _locked(configs: Sequence[StudyConfig], command: str) -> Iterator[None]:
    """Hold the lock of every build folder a step writes or reads (earliest wave first)."""
    with contextlib.ExitStack() as stack:
        for cfg in sorted(configs, key=lambda c: c.wave):
            stack.enter_context(folder_lock(cfg.build_dir, f"evalterritoire {command} {cfg.path}"))
        yield


def _previous_configs(
    config: StudyConfig, relocate: Callable[[StudyConfig], StudyConfig] | None = None
) -> list[StudyConfig]:
    """Study configs of the earlier waves named by ``previous_waves``, oldest first."""
    configs = [load_study(p) for p in config.previous_waves]
    if relocate is not None:
        configs = [relocate(c) for c in configs]
    return sorted(configs, key=lambda c: c.wave)


def _responses(
    config: StudyConfig, record: StepRecorder, codebook: Codebook | None = None
) -> pd.DataFrame:
    """A wave's checked responses (ingested first when the wave has none).

    With ``codebook``, read lean (:func:`~evalterritoire.provenance.read_table_lean`): a few
    columns at a time, the special-code columns as ``category``.
    """
    if not config.artefact("responses.parquet").is_file():
        run_ingest(config)
        record.provenance.forget(config.build_dir)
    if codebook is None:
        return record.table("responses.parquet", build_dir=config.build_dir)
    special = {var.special_col for var in codebook.variables if var.special_col}
    return record.table(
        "responses.parquet", build_dir=config.build_dir, lean=True, categorical=special.__contains__
    )


def _design(config: StudyConfig, responses: pd.DataFrame):
    from evalterritoire.design.survey import build_design

    return build_design(responses, config.design, config.calibration)


def _with_stage(
    responses: pd.DataFrame, maturity: pd.DataFrame | None, codebook: Codebook
) -> pd.DataFrame:
    """Responses + respondent dimension scores + the territory's stage, if maturity has run."""
    from evalterritoire.maturity.scoring import MaturityScorer

    scores = MaturityScorer(codebook).fit(responses).transform(responses)
    frame = pd.concat([responses.reset_index(drop=True), scores.reset_index(drop=True)], axis=1)
    if maturity is not None:
        territory = codebook.require("territory", "joining the maturity stages")
        maturity = maturity[["territory", "stage", "stage_label"]]
        frame = frame.merge(
            maturity.rename(columns={"territory": territory}), on=territory, how="left"
        )
    return frame


# --------------------------------------------------------------------------- steps
def run_ingest(config: StudyConfig, *, codebook: Codebook | None = None) -> IngestResult:
    """Ingest every export of the wave and write ``responses.parquet``, quarantine, report.

    Returns
    -------
    IngestResult
        The combined result (its ``exit_code`` is 1 when rows were quarantined).
    """
    from evalterritoire.ingest.files import combine_results, ingest_file, write_ingest_outputs

    with _locked([config], "validate"):
        record = StepRecorder(Provenance([config]), config, "ingest")
        codebook = codebook or load_study_codebook(config)
        record.file(_codebook_file(config))
        results = []
        for export in config.exports:
            _step(f"ingest {export.name}")
            record.file(export)  # hashed before it is read: a later edit shows as stale
            results.append(
                ingest_file(
                    export,
                    codebook,
                    profile=config.ingest.profile,
                    sheet=config.ingest.sheet,
                    header_row=config.ingest.header_row,
                    encoding=config.ingest.encoding,
                    delimiter=config.ingest.delimiter,
                    column_map=config.ingest.column_map,
                )
            )
        result = results[0] if len(results) == 1 else combine_results(results)
        if result.status == "rejected":
            messages = (
                "; ".join(e.get("message", str(e)) for e in result.report.get("errors", [])[:3])
                or result.summary()
            )
            raise EvalTerritoireError(f"export rejected: {messages}")
        for name in write_ingest_outputs(result, config.build_dir).values():
            record.output(Path(name).name)
        record.commit()
    return result


def run_maturity(
    config: StudyConfig,
    *,
    codebook: Codebook | None = None,
    relocate: Callable[[StudyConfig], StudyConfig] | None = None,
):
    """Score, cluster and track the territories; write maturity and transitions tables.

    Earlier waves (``previous_waves``) are read from their own ``build/`` folders (ingested
    first when needed) so that stages keep the meaning fitted on the reference wave.
    """
    from evalterritoire.maturity.compute import compute_maturity

    codebook = codebook or load_study_codebook(config)
    configs = [*_previous_configs(config, relocate), config]
    with _locked(configs, "cluster"):
        record = StepRecorder(Provenance(configs), config, "maturity")
        responses_by_wave = {c.wave: _responses(c, record) for c in configs}
        designs_by_wave = {c.wave: _design(c, responses_by_wave[c.wave]) for c in configs}
        _step(f"maturity {config.wave} ({len(configs)} wave(s))")
        result = compute_maturity(
            responses_by_wave,
            designs_by_wave,
            codebook,
            config.maturity,
            wave=config.wave,
            min_n=config.min_n,
            random_state=config.random_state,
        )
        record.write_parquet(result.maturity, "maturity.parquet")
        record.write_parquet(result.transitions, "transitions.parquet")
        record.write_parquet(result.profiles, "profiles.parquet")
        record.write_parquet(result.reliability, "reliability.parquet")
        record.write_json(result.diagnostics, "maturity_diagnostics.json")
        record.commit()
    return result


def run_estimates(config: StudyConfig, *, codebook: Codebook | None = None) -> pd.DataFrame:
    """Design-based estimates for every item, nationally and by domain → ``estimates.parquet``.

    Each row is judged by the study's ``[publication]`` rules; the Fay–Herriot fits of the
    territory statistics (covariates from the study's context file) → ``smallarea.parquet``.
    """
    from evalterritoire.progress import step_progress

    codebook = codebook or load_study_codebook(config)
    territory = codebook.require("territory", "estimates by territory")
    with _locked([config], "estimate"):
        record = StepRecorder(Provenance([config]), config, "estimates")
        responses = _responses(config, record, codebook)
        stages = record.table("maturity.parquet", optional=True)
        if stages is not None:
            stages = stages[["territory", "stage_label"]]
            responses = responses.merge(
                stages.rename(columns={"territory": territory, "stage_label": "stage"}),
                on=territory,
                how="left",
            )
        scores = _dimension_scores(responses, codebook)
        responses = pd.concat([responses.reset_index(drop=True), scores], axis=1)
        design = _design(config, responses)
        domains: dict[str, str | None] = {
            "territory": territory,
            "respondent_type": codebook.column("respondent_type"),
            "stage": "stage" if "stage" in responses.columns else None,
        }
        context = None
        if config.context is not None:
            record.file(config.context)
            context = _load_context_table(config.context, codebook, responses)
            context = context.set_index(territory)
            context.index = context.index.astype("string")
        _step(f"estimates {config.wave}")
        with contextlib.ExitStack() as bars:

            def progress(label: str, total: int):
                return bars.enter_context(step_progress(label, total))

            tables = _study_tables(config, codebook, design, domains, context, scores, progress)
        record.write_parquet(tables.smallarea, "smallarea.parquet")
        record.write_parquet(tables.estimates, "estimates.parquet")
        _write_study_tables(record, design, codebook)
        record.commit()
    return tables.estimates


def _study_tables(
    config: StudyConfig,
    codebook: Codebook,
    design: SurveyDesign,
    domains: dict[str, str | None],
    context: pd.DataFrame | None,
    scores: pd.DataFrame,
    progress: Callable[[str, int], Callable[[int], None]],
):
    """The estimates and small-area tables of ``run_estimates`` (progress through ``progress``)."""
    from evalterritoire.estimates import compute_study_tables

    return compute_study_tables(
        design,
        codebook,
        domains=domains,
        min_n=config.min_n,
        wave=config.wave,
        publication=config.publication,
        context=context,
        scores={
            c: (codebook.score_range if c.startswith("score_") else (0.0, 1.0))
            for c in scores.columns
        },
        progress=progress,
    )


def _dimension_scores(responses: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """Respondent dimension scores ``score_<dim>`` and « ne sait pas » shares ``nsp_<dim>``.

    From the maturity scorer, for the estimates table (``nsp_<dim>``: the respondent's share
    of « ne sait pas » among the dimension's items asked).
    """
    import warnings

    from evalterritoire.maturity.common import MaturityWarning
    from evalterritoire.maturity.scoring import MaturityScorer

    if not codebook.dimensions:
        return pd.DataFrame(index=range(len(responses)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaturityWarning)
        details = MaturityScorer(codebook).fit(responses).score_details(responses)
    out = {}
    for dim in codebook.dimensions:
        if f"score_{dim}" not in details.columns:
            continue
        out[f"score_{dim}"] = details[f"score_{dim}"].to_numpy(dtype=float)
        asked = details[f"n_asked_{dim}"].to_numpy(dtype=float)
        nsp = details[f"n_nsp_{dim}"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"nsp_{dim}"] = np.where(asked > 0, nsp / asked, np.nan)
    return pd.DataFrame(out)


def _write_study_tables(record: StepRecorder, design: SurveyDesign, codebook: Codebook) -> None:
    """The report tables: territory vs nation, alpha per dimension, medians of counts."""
    from evalterritoire.estimates.report_tables import (
        compute_dimension_reliability,
        compute_item_medians,
        compute_national_comparisons,
    )

    tables = {
        "national_comparisons.parquet": compute_national_comparisons(design, codebook),
        "dimension_alpha.parquet": compute_dimension_reliability(design, codebook),
        "item_medians.parquet": compute_item_medians(design, codebook),
    }
    for name, frame in tables.items():
        record.write_parquet(frame, name)


def run_models(config: StudyConfig, *, codebook: Codebook | None = None):
    """Fit the study's models with design-based covariance → ``models.parquet``."""
    from evalterritoire.models.fit import fit_study_models

    codebook = codebook or load_study_codebook(config)
    with _locked([config], "model"):
        record = StepRecorder(Provenance([config]), config, "models")
        responses = _responses(config, record)
        frame = _with_stage(responses, record.table("maturity.parquet", optional=True), codebook)
        if config.context is not None:
            record.file(config.context)
            context = _load_context_table(config.context, codebook, responses)
            frame = _merge_context(frame, context, codebook)
        design = _design(config, frame)
        _step(f"models {config.wave} ({len(config.models)})")
        result = fit_study_models(config.models, frame, design, codebook)
        record.write_parquet(result.table, "models.parquet")
        record.write_json(result.diagnostics, "models_diagnostics.json")
        record.commit()
    return result


# --------------------------------------------------------------------------- context file
def _read_context_file(path: Path, territory: str) -> pd.DataFrame:
    """The context file as read, or one clear message (empty, unreadable, not a table)."""
    import csv

    try:
        if not path.read_bytes()[:65536].strip(b"\xef\xbb\xbf \t\r\n"):
            raise pd.errors.EmptyDataError
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep=None, engine="python", dtype={territory: str})
    except pd.errors.EmptyDataError:
        raise StudyConfigError(f"{path}: the context file is empty") from None
    except (csv.Error, pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise StudyConfigError(
            f"{path}: the context file is not a readable table ({reason})"
        ) from None


def _load_context_table(
    path: Path, codebook: Codebook, responses: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The territory context file (one row per territory, keyed by the territory column).

    Codes are normalised as the ingestion normalises the exports' (trimmed, upper-cased, a
    spreadsheet's ``.0`` dropped, four-digit INSEE codes zero-padded), so a context file written
    in lower case still meets its territories. With ``responses``, context rows that match no
    territory of the wave, and territories without a context row, are reported on the console.

    Raises
    ------
    StudyConfigError
        When the file is empty, unreadable, lacks the territory column, has no row, or lists
        a territory twice.
    """
    from evalterritoire.ingest.parse import _territory_code

    territory = codebook.require("territory", "the territory context file")
    table = _read_context_file(path, territory)
    if territory not in table.columns:
        raise StudyConfigError(f"{path}: context file lacks the column {territory}")
    codes = table[territory].astype("string").str.strip()
    table = table.loc[codes.notna() & (codes != "")].copy()
    if table.empty:
        raise StudyConfigError(f"{path}: the context file has no territory row")
    table[territory] = [_territory_code(str(c).strip(), None)[0] for c in table[territory]]
    twice = sorted(set(table.loc[table[territory].duplicated(), territory]))
    if twice:
        raise StudyConfigError(
            f"{path}: the context file lists territory {', '.join(twice[:5])} more than once"
        )
    if responses is not None and territory in responses.columns:
        _report_context_match(path, set(table[territory]), set(responses[territory].dropna()))
    return table


def _report_context_match(path: Path, listed: set[str], present: set[str]) -> None:
    """Say which context rows match no territory, and which territories have no context row."""
    unmatched, without = sorted(listed - present), sorted(present - listed)
    if unmatched:
        _warn(
            f"{path.name}: {len(unmatched)} context row(s) match no territory of the wave "
            f"({', '.join(map(str, unmatched[:8]))}{'…' if len(unmatched) > 8 else ''})"
        )
    if without:
        _warn(
            f"{path.name}: {len(without)} territory(ies) of the wave have no context row "
            f"({', '.join(map(str, without[:8]))}{'…' if len(without) > 8 else ''}): "
            "their context figures stay empty"
        )


def _merge_context(frame: pd.DataFrame, context: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """Responses + the context columns they do not already hold, joined on the territory."""
    territory = codebook.require("territory", "the territory context file")
    keep = [c for c in context.columns if c == territory or c not in frame.columns]
    return frame.merge(context[keep], on=territory, how="left")


def _artefacts(config: StudyConfig, codebook: Codebook, record: StepRecorder):
    from evalterritoire.report.context import StudyArtefacts

    def optional(name: str) -> pd.DataFrame | None:
        return record.table(name, optional=True)

    ingestion_bytes = record.read("ingestion.json", optional=True)
    try:
        ingestion = json.loads(ingestion_bytes) if ingestion_bytes is not None else None
    except ValueError:
        raise ArtefactError(
            f"{config.artefact('ingestion.json')} is not valid JSON: re-run "
            f"`evalterritoire validate {config.path}`"
        ) from None
    responses = optional("responses.parquet")
    context = None
    if config.context is not None:
        record.file(config.context)
        context = _load_context_table(config.context, codebook, responses)
    return StudyArtefacts(
        profiles=optional("profiles.parquet"),
        smallarea=optional("smallarea.parquet"),
        dimension_alpha=optional("dimension_alpha.parquet"),
        item_medians=optional("item_medians.parquet"),
        responses=responses,
        estimates=optional("estimates.parquet"),
        maturity=optional("maturity.parquet"),
        transitions=optional("transitions.parquet"),
        models=optional("models.parquet"),
        reliability=optional("reliability.parquet"),
        ingestion=ingestion,
        context=context,
    )


def _report_data_files(config: StudyConfig) -> list[Path]:
    """The evaluation grid and report spec files a study's contexts are built from."""
    from evalterritoire.report.grid import default_grid_path
    from evalterritoire.report.spec import default_report_spec_path

    grid, spec = config.report.grid, config.report.report_spec
    return [
        default_grid_path() if grid == "default" else Path(grid),
        default_report_spec_path() if spec == "default" else Path(spec),
    ]


def _trend_breaks(
    config: StudyConfig,
    codebook: Codebook,
    relocate: Callable[[StudyConfig], StudyConfig] | None,
) -> list[dict[str, Any]]:
    """Item changes between the waves' codebooks the study has not acknowledged (warned)."""
    from evalterritoire.report.comparability import find_trend_breaks

    codebooks = {cfg.wave: load_study_codebook(cfg) for cfg in _previous_configs(config, relocate)}
    codebooks[config.wave] = codebook
    breaks = find_trend_breaks(codebooks, config.acknowledged_changes)
    for b in breaks:
        _warn(
            f"{b['item']}: {', '.join(b['kinds'])} changed between {b['from_wave']} and "
            f"{b['to_wave']}; no trend is drawn across the change (acknowledge it with "
            f'[study] acknowledged_changes = ["{b["item"]}"] in {config.path.name})'
        )
    return breaks


def run_contexts(
    config: StudyConfig,
    *,
    codebook: Codebook | None = None,
    relocate: Callable[[StudyConfig], StudyConfig] | None = None,
    later: Sequence[StudyConfig] = (),
) -> list[Path]:
    """Build one report context per territory (+ national) → ``contexts/*.json``.

    The contexts of territories that are no longer in the data are removed. ``later`` are the
    study's later waves built in the same run (``study --all-waves``): a territory's context
    lists those in which it has a report, so that its report links forward to them.
    """
    from evalterritoire.manifest import safe_filename
    from evalterritoire.report.build import iter_context_texts

    codebook = codebook or load_study_codebook(config)
    with _locked([config], "report"):
        record = StepRecorder(Provenance([config]), config, "contexts")
        for path in _report_data_files(config):
            record.file(path)
        artefacts = _artefacts(config, codebook, record)
        for previous in _previous_configs(config, relocate):  # the trends read their codebooks
            record.file(_codebook_file(previous))
        breaks = _trend_breaks(config, codebook, relocate)
        if breaks:
            artefacts = replace(artefacts, trend_breaks=tuple(breaks))
        if later:
            artefacts = replace(artefacts, later_waves=_later_waves(later, record))
        paths = []
        for ctx, text in iter_context_texts(config, codebook, artefacts):
            name = "national" if ctx.is_national else safe_filename(ctx.territory)
            paths.append(record.write_bytes(f"contexts/{name}.json", text.encode("utf-8")))
        written = {p.resolve() for p in paths}
        gone = sorted(
            p for p in config.artefact("contexts").glob("*.json") if p.resolve() not in written
        )
        for path in gone:  # territories that left the data
            path.unlink(missing_ok=True)
        record.commit()
    _step(f"contexts {config.wave}: {len(paths)}")
    if gone:
        _warn(f"contexts removed (territories no longer in the data): {len(gone)}")
    return paths


def _later_waves(
    later: Sequence[StudyConfig], record: StepRecorder
) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """Each later wave with the territory codes it reports on (from its ``maturity.parquet``)."""
    out = []
    for cfg in later:
        path = cfg.artefact("maturity.parquet")
        if not path.is_file():
            continue
        record.file(path)
        codes = pd.read_parquet(path, columns=["territory"])["territory"].astype(str)
        out.append((int(cfg.wave), tuple(sorted(set(codes)))))
    return tuple(sorted(out))


# --------------------------------------------------------------------------- reports
def run_reports(
    config: StudyConfig,
    *,
    territories: Sequence[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    formats: Sequence[str] | None = None,
    engine: str | None = None,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    only_failed: bool = False,
    force: bool = False,
    codebook: Codebook | None = None,
    out_dir: str | Path | None = None,
):
    """Render the territory reports, the annual study, the index and the downloads.

    The contexts are checked first (and rebuilt when only they are stale); the reports of
    territories that left the data are removed, so neither the index nor the manifest lists
    them.

    Parameters
    ----------
    config : StudyConfig
        The study.
    territories : sequence of str, optional
        Territory codes to render (default: every territory, plus the annual study).
    parameters : mapping, optional
        The evaluator's parameters, checked against the territory template's declaration
        (:func:`evalterritoire.render.params.check_parameters`; text converted to the declared
        types).
    formats, engine, workers, dask_scheduler, only_failed, force
        Rendering options (defaults from the study's ``[report]`` table).
    out_dir : str or Path, optional
        Render into this folder instead of ``reports/<wave>/`` (an evaluator's variant); it may
        not be, or lie inside, the published reports folder, and no manifest is written.

    Returns
    -------
    RenderSummary
        Counts and failures; its ``exit_code`` is non-zero when a report failed.
    """
    from evalterritoire.manifest import write_study_manifest
    from evalterritoire.render.options import render_defaults
    from evalterritoire.render.params import check_parameters
    from evalterritoire.render.status import prune_downloads, prune_reports
    from evalterritoire.render.study import (
        merge_summaries,
        report_templates,
        study_tasks,
        wanted_territories,
    )

    with _locked([config], "report"):
        target = _render_target(config, out_dir)
        templates = report_templates(config)
        extra = check_parameters(templates[0], parameters or {})
        contexts = _load_contexts(config, codebook)
        current = sorted(c.territory for c in contexts if not c.is_national)
        if out_dir is None:
            removed = prune_reports(config.reports_dir / "territoires", current)
            removed += prune_downloads(config.reports_dir / "donnees", current)
            if removed:
                _warn(f"reports removed (territories no longer in the data): {len(removed)}")
        wanted = wanted_territories(config, current, territories)
        titles = {_context_stem(c): c.title for c in contexts}
        batches = study_tasks(
            config,
            wanted,
            templates,
            extra,
            with_study=not territories,
            reports_dir=target,
            titles=titles,
        )
        flags = {"dask_scheduler": dask_scheduler, "only_failed": only_failed, "force": force}
        options = _render_options(config, engine, workers, formats, **flags)
        for folder, batch in batches:
            _step(f"reports {config.wave}: {len(batch)} → {folder}")
        with render_defaults(docx_reference=config.report.docx_reference):
            summary = merge_summaries(_render_batches(batches, options))
        _write_publication(
            config,
            contexts,
            wanted,
            target,
            codebook,
            with_study=not territories,
            workers=options["workers"],
        )
        if not territories and out_dir is None:
            write_study_manifest(
                config,
                previous=_previous_configs(config),
                templates=templates,
                options=options,
                parameters=extra,
            )
    return summary


def _render_batches(
    batches: Sequence[tuple[Path, Sequence[Any]]], options: Mapping[str, Any]
) -> list[Any]:
    """Render each (folder, tasks) batch; the summaries in the batches' order.

    When the first batch (the territories) renders on a pool of processes, the one-report
    batches after it (the annual study) render at the same time in a thread of this process,
    instead of waiting for the pool to end and then starting a kernel of their own: the
    study's kernel starts while the territories render. Each batch keeps its own folder,
    status record and journal; their files are the same bytes either way.
    """
    import threading

    from evalterritoire.render.kernel import shutdown_kernels
    from evalterritoire.render.reports import default_workers, render_reports

    workers = options.get("workers") or default_workers()
    first, rest = batches[0], list(batches[1:])
    alongside = (
        [b for b in rest if len(b[1]) == 1]
        if workers > 1 and len(first[1]) > 1 and not options.get("dask_scheduler")
        else []
    )
    results: dict[int, Any] = {}
    errors: list[BaseException] = []
    contextual = contextvars.copy_context()  # the render defaults of the caller

    def render_alongside() -> None:
        try:
            for batch in alongside:
                results[id(batch)] = contextual.run(
                    render_reports, batch[1], out_dir=batch[0], **{**options, "progress": False}
                )
        except BaseException as exc:  # raised in the caller's thread below
            errors.append(exc)

    thread = threading.Thread(target=render_alongside, name="evalterritoire-study", daemon=True)
    if alongside:
        thread.start()
    try:
        results[id(first)] = render_reports(first[1], out_dir=first[0], **options)
    except BaseException:
        shutdown_kernels()  # the thread's report fails at once; nothing is left running
        raise
    if alongside:
        thread.join()
    if errors:
        raise errors[0]
    for batch in rest:
        if id(batch) not in results:
            results[id(batch)] = render_reports(batch[1], out_dir=batch[0], **options)
    return [results[id(b)] for b in batches]


def _render_options(
    config: StudyConfig,
    engine: str | None,
    workers: int | None,
    formats: Sequence[str] | None,
    **flags: Any,
) -> dict[str, Any]:
    """The rendering options: the command line's, else the study's ``[report]`` table."""
    return {
        "engine": engine or config.report.engine,
        "workers": workers if workers is not None else config.report.workers,
        "formats": tuple(formats) if formats else config.report.formats,
        **flags,
    }


def _render_target(config: StudyConfig, out_dir: str | Path | None) -> Path:
    """Where reports go: ``reports/<wave>/``, or an evaluator's folder outside it."""
    if out_dir is None:
        return config.reports_dir
    target = Path(out_dir).resolve()
    published = config.reports_dir.resolve()
    if target == published or published in target.parents or target in published.parents:
        raise StudyConfigError(
            f"--out {out_dir}: choose a folder outside the published reports ({published}), "
            "so that they are never overwritten"
        )
    return target


def _write_publication(
    config: StudyConfig,
    contexts: Sequence[Any],
    wanted: Sequence[str],
    target: Path,
    codebook: Codebook | None,
    *,
    with_study: bool,
    workers: int | None = None,
) -> None:
    """The index (table and map) and the downloads of the rendered reports.

    The downloads are written on as many processes as the reports were rendered
    (``workers``; default: the usable cores).
    """
    from evalterritoire.render.downloads import write_all_downloads
    from evalterritoire.render.index import render_index
    from evalterritoire.render.reports import default_workers

    codebook = codebook or load_study_codebook(config)
    special = [
        {"key": c.key, "code": c.code, "label": c.label_fr, "kind": c.kind}
        for c in sorted(codebook.special_codes.values(), key=lambda c: c.code, reverse=True)
    ]
    chosen = set(wanted)
    items = [
        (ctx, _context_stem(ctx))
        for ctx in contexts
        if (with_study if ctx.is_national else ctx.territory in chosen)
    ]
    write_all_downloads(
        items, target / "donnees", special_codes=special, workers=workers or default_workers()
    )
    if target != config.reports_dir:  # an evaluator's variant indexes what it rendered
        contexts = [c for c in contexts if c.is_national or c.territory in chosen]
    render_index(contexts, target / "index.html", geometry=config.report.geometry)


def _context_stem(ctx: Any) -> str:
    """The file stem of a context (``national`` for the study's, else the territory's)."""
    from evalterritoire.manifest import safe_filename

    return "national" if ctx.is_national else safe_filename(ctx.territory)


def _load_contexts(config: StudyConfig, codebook: Codebook | None) -> list[Any]:
    """The wave's checked report contexts (built first when missing or stale).

    Contexts whose inputs are fresh but which were built from other versions of them (or
    from other settings) are rebuilt; when an earlier step is stale, the error names it.
    """
    from evalterritoire.report.context import ReportContext

    build = config.build_dir
    provenance = Provenance([config, *_previous_configs(config)])
    record = provenance.producer(build, "contexts/national.json")
    try:
        if record is None and not config.artefact("contexts/national.json").is_file():
            raise StaleArtefactError("no contexts", step="contexts", build_dir=str(build))
        if record is not None:
            provenance.check_step(build.resolve(), record)
    except StaleArtefactError as exc:
        if exc.step != "contexts" or Path(exc.build_dir) != build.resolve():
            raise
        if record is not None:
            _warn("the report contexts are older than their inputs: rebuilt")
        run_contexts(config, codebook=codebook)
        provenance = Provenance([config])
        record = provenance.producer(build, "contexts/national.json")
    if record is not None:
        names = sorted(n for n in record["outputs"] if n.startswith("contexts/"))
        paths = [build / n for n in names]
    else:  # contexts made without a record (by hand, or by an earlier version)
        paths = sorted(config.artefact("contexts").glob("*.json"))
    return [ReportContext.from_json(p) for p in paths]


# --------------------------------------------------------------------------- whole study
def run_study(
    config: StudyConfig,
    *,
    all_waves: bool = False,
    workers: int | None = None,
    render: bool = True,
    relocate: Callable[[StudyConfig], StudyConfig] | None = None,
) -> int:
    """Run every step of a wave (and, with ``all_waves``, of its earlier waves first).

    The build folders of the waves are locked for the whole run. Quarantined rows and failed
    reports are listed at the end (wave, territory, reason).

    Returns
    -------
    int
        0 when everything succeeded, 1 when rows were quarantined or a report failed.
    """
    configs = [config]
    if all_waves:
        previous = _previous_configs(config)
        if relocate is not None:
            previous = [relocate(c) for c in previous]
        configs = [*previous, config]
    for cfg in configs:  # a hostile formula is refused before anything runs
        _check_formulas(cfg)
    problems: list[str] = []
    with _locked(configs, "study"):
        # the data steps of every wave first, so that an earlier wave's reports link to the
        # later ones (a wave's data steps read only its earlier waves)
        codebooks = [load_study_codebook(cfg) for cfg in configs]
        for cfg, codebook in zip(configs, codebooks, strict=True):
            problems += _run_data_steps(cfg, codebook, relocate=relocate)
        for i, (cfg, codebook) in enumerate(zip(configs, codebooks, strict=True)):
            problems += _run_report_steps(
                cfg, codebook, later=configs[i + 1 :], workers=workers, render=render,
                relocate=relocate,
            )  # fmt: skip
    if problems:
        _warn("the study ran, with problems to look at:")
        for line in problems:
            _console().print(f"  {line}", markup=False, highlight=False)
    return 1 if problems else 0


def _check_formulas(config: StudyConfig) -> None:
    """Refuse a study whose model formulas are not made of the whitelisted pieces only."""
    if not config.models:
        return
    from evalterritoire.models.formula import check_formula

    for spec in config.models:
        try:
            check_formula(spec.formula, name=spec.name)
        except EvalTerritoireError as exc:
            raise StudyConfigError(f"{config.path}: [[models]] {exc}") from None


def _run_data_steps(
    cfg: StudyConfig,
    codebook: Codebook,
    *,
    relocate: Callable[[StudyConfig], StudyConfig] | None,
) -> list[str]:
    """Validate, cluster, estimate and model one wave; the lines explaining a non-zero exit."""
    problems = []
    _console().rule(f"{cfg.name}")
    ingest_result = run_ingest(cfg, codebook=codebook)
    if ingest_result.exit_code:
        n = ingest_result.report.get("rows_quarantined", "some")
        problems.append(f"{cfg.wave}: {n} row(s) quarantined, see {cfg.artefact('quarantine.csv')}")
    run_maturity(cfg, codebook=codebook, relocate=relocate)
    _run_estimates_and_models(cfg, codebook)
    return problems


#: From this many responses, a wave's models are fitted in a process of their own while its
#: estimates are computed (starting a process costs about 2 s of CPU: the models of smaller
#: waves are fitted after the estimates, in this process).
PARALLEL_MODELS_MIN_ROWS = 20_000


def _run_estimates_and_models(cfg: StudyConfig, codebook: Codebook) -> None:
    """``run_estimates`` then ``run_models``; on a large wave, both at once.

    Both read the responses and the stages, neither reads the other's outputs, and each writes
    its own artefacts and record: the results are the same either way. The models' process
    holds no lock of its own (this process holds the build folder's for it) and ends with this
    one; what it prints is printed here once the estimates are done, in the order of a
    sequential run, and its error (raised after the estimates are written) is this step's.
    """
    if not cfg.models:
        run_estimates(cfg, codebook=codebook)
        return
    if _response_rows(cfg) < PARALLEL_MODELS_MIN_ROWS:
        run_estimates(cfg, codebook=codebook)
        run_models(cfg, codebook=codebook)
        return
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from evalterritoire.render.lifeline import stop_pool_workers

    with _locked([cfg], "estimate"):
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            future = pool.submit(_models_apart, cfg, codebook, os.getpid(), sys.stderr.isatty())
            run_estimates(cfg, codebook=codebook)
            try:
                printed, error = future.result()
            except BrokenProcessPool:
                raise ModelError(
                    "the process fitting the models ended abruptly (out of memory?); the "
                    f"estimates are written: run `evalterritoire model {cfg.path}`, then the "
                    "steps after it"
                ) from None
        except BaseException:  # Ctrl-C, SIGTERM, a failed estimate: stop the models now
            stop_pool_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    sys.stderr.write(printed)
    sys.stderr.flush()
    if error is not None:
        raise error


def _response_rows(cfg: StudyConfig) -> int:
    """The number of valid responses of a wave (from the Parquet footer; 0 when unreadable)."""
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(cfg.artefact("responses.parquet")).metadata.num_rows)
    except (OSError, ValueError):  # the step itself says what is wrong with the file
        return 0


def _models_apart(
    cfg: StudyConfig, codebook: Codebook, parent: int, colour: bool = False
) -> tuple[str, EvalTerritoireError | None]:
    """``run_models`` in a child process; what it printed and its error, if any.

    The child ends when ``parent`` does, and writes under the lock its parent holds. With
    ``colour`` (the parent prints on a terminal) its messages keep their styles.
    """
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from evalterritoire.artefacts import adopt_folder_locks
    from evalterritoire.render.lifeline import watch_parent

    watch_parent(parent)
    adopt_folder_locks([cfg.build_dir])
    if colour:  # rich styles what it prints into the buffer as for the parent's terminal
        os.environ["FORCE_COLOR"] = "1"
    printed = io.StringIO()
    with redirect_stdout(printed), redirect_stderr(printed):
        try:
            run_models(cfg, codebook=codebook)
        except EvalTerritoireError as exc:
            return printed.getvalue(), exc
    return printed.getvalue(), None


def _run_report_steps(
    cfg: StudyConfig,
    codebook: Codebook,
    *,
    later: Sequence[StudyConfig],
    workers: int | None,
    render: bool,
    relocate: Callable[[StudyConfig], StudyConfig] | None,
) -> list[str]:
    """Contexts and reports of one wave; the lines that explain a non-zero exit status."""
    problems: list[str] = []
    run_contexts(cfg, codebook=codebook, relocate=relocate, later=later)
    if render:
        summary = run_reports(cfg, workers=workers, codebook=codebook, force=relocate is not None)
        problems += [f"{cfg.wave}: report {code} failed: {why}" for code, why in summary.failed]
        if summary.failed:
            problems.append(
                f"{cfg.wave}: after a fix, `evalterritoire report {cfg.path} --only-failed` "
                "renders the failed reports only"
            )
    return problems


def _relocator(root: Path, original: StudyConfig) -> Callable[[StudyConfig], StudyConfig]:
    """Map a study's build/reports folders into ``root`` keeping their relative layout."""
    rel = os.path.relpath(original.build_dir.parent, original.reports_dir.parent)
    depth = sum(1 for part in Path(rel).parts if part == "..")
    reports_root = root.joinpath(*(["r"] * depth), "reports")
    build_root = (reports_root / rel).resolve()

    def relocate(cfg: StudyConfig) -> StudyConfig:
        return replace(
            cfg,
            build_dir=build_root / cfg.build_dir.name,
            reports_dir=reports_root / cfg.reports_dir.name,
        )

    return relocate


def run_reproduce(
    manifest_path: str | Path,
    *,
    echo: Callable[[str], None] = print,
    workers: int | None = None,
) -> int:
    """Re-run the study of a manifest in a temporary directory and compare every artefact.

    Checks, in order: the recorded environment against this one (Python and package versions,
    git commit, uncommitted changes), the published files (artefacts and reports in place)
    against their recorded hashes, then the inputs in place and the re-run's result tables and
    reports against the recorded hashes. The study file's formulas are checked before anything
    runs (:mod:`evalterritoire.models.formula`); its templates folder, when it is the study's
    own, holds Python code that the re-run executes, and is named first.

    Returns
    -------
    int
        0 when the environment, the published files and every recorded artefact and report
        are identical, 1 otherwise.
    """
    from evalterritoire.manifest import (
        compare_artefacts,
        compare_environment,
        format_comparisons,
        load_manifest,
    )

    manifest_path = Path(manifest_path).resolve()
    manifest = load_manifest(manifest_path)
    study_file = (manifest_path.parent / manifest["study"]["study_file"]).resolve()
    if not study_file.is_file():
        raise ReproduceError(f"the study file recorded in {manifest_path} is gone: {study_file}")
    config = load_study(study_file)
    for cfg in [*_previous_configs(config), config]:
        _check_formulas(cfg)
    if config.report.templates_dir is not None:
        echo(f"templates (Python code, executed by the re-run): {config.report.templates_dir}")
    environment = compare_environment(manifest, config.study_dir)
    echo("environment: " + ("identical" if not environment else "differs"))
    for line in environment:
        echo(f"  {line}")
    published = [
        c
        for c in compare_artefacts(manifest, manifest_path.parent, kinds=("artefact", "report"))
        if not c.is_identical
    ]
    echo(
        "published files: "
        + ("as recorded" if not published else f"{len(published)} changed since the run")
    )
    for comparison in published:
        echo(f"  {comparison.describe()}")
    with tempfile.TemporaryDirectory(prefix="evalterritoire-reproduce-") as tmp:
        relocate = _relocator(Path(tmp), config)
        fresh = relocate(config)
        echo(f"re-running {config.name} in a temporary directory …")
        run_study(fresh, all_waves=True, relocate=relocate, workers=workers)
        # inputs are read in place: compare them with the files the manifest recorded
        comparisons = compare_artefacts(
            manifest, manifest_path.parent, base_dir=manifest_path.parent, kinds=("input",)
        ) + compare_artefacts(
            manifest,
            fresh.reports_dir,
            base_dir=manifest_path.parent,
            kinds=("artefact", "report"),
        )
        echo(format_comparisons(comparisons))
    same = all(c.is_identical for c in comparisons) and not environment and not published
    echo("reproduced: identical" if same else "not reproduced identically (see above)")
    return 0 if same else 1
