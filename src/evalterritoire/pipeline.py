"""Orchestration: the ``run_*`` steps, the only place that reads and writes artefacts.

Each step reads the artefacts of the previous ones under ``build/<wave>/`` and writes its own,
so that a user (or ``make``) can start from any artefact::

    run_ingest     exports             → responses.parquet, quarantine.csv, ingestion.json
    run_maturity   responses (+ earlier waves) → maturity.parquet, transitions.parquet, ...
    run_estimates  responses + stages  → estimates.parquet
    run_models     responses + stages  → models.parquet
    run_contexts   every table above   → contexts/<territory>.json
    run_reports    contexts            → reports/<wave>/…html, index.html, manifest.json

Stages are computed before the estimates so that estimates can be published by stage (the
maturity step uses its own design-weighted profiles and needs no estimates artefact).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from evalterritoire.codebook import Codebook, load_codebook
from evalterritoire.config import StudyConfig, load_study
from evalterritoire.errors import EvalTerritoireError, ReproduceError

if TYPE_CHECKING:
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


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _step(message: str) -> None:
    _console().print(f"[bold cyan]›[/] {message}")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    from evalterritoire.artefacts import write_bytes_atomic

    write_bytes_atomic(path, data)


def _write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(buffer, index=False)
    _atomic_write_bytes(path, buffer.getvalue())
    return path


def _write_json(obj: Any, path: Path) -> Path:
    text = json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=_json_default)
    _atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    return path


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.name
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    return str(value)


def _read_artefact(config: StudyConfig, name: str, step: str) -> pd.DataFrame:
    path = config.artefact(name)
    if not path.is_file():
        raise EvalTerritoireError(
            f"{path} does not exist: run `evalterritoire {step} {config.path}` first"
        )
    return pd.read_parquet(path)


def _previous_configs(
    config: StudyConfig, relocate: Callable[[StudyConfig], StudyConfig] | None = None
) -> list[StudyConfig]:
    """Study configs of the earlier waves named by ``previous_waves``, oldest first."""
    configs = [load_study(p) for p in config.previous_waves]
    if relocate is not None:
        configs = [relocate(c) for c in configs]
    return sorted(configs, key=lambda c: c.wave)


def _responses(config: StudyConfig) -> pd.DataFrame:
    path = config.artefact("responses.parquet")
    if not path.is_file():
        run_ingest(config)
    return pd.read_parquet(path)


def _design(config: StudyConfig, responses: pd.DataFrame):
    from evalterritoire.design.survey import build_design

    return build_design(responses, config.design, config.calibration)


def _with_stage(config: StudyConfig, responses: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """Responses + respondent dimension scores + the territory's stage, if maturity has run."""
    from evalterritoire.maturity.scoring import MaturityScorer

    scores = MaturityScorer(codebook).fit(responses).transform(responses)
    frame = pd.concat([responses.reset_index(drop=True), scores.reset_index(drop=True)], axis=1)
    path = config.artefact("maturity.parquet")
    if path.is_file():
        territory = codebook.require("territory", "joining the maturity stages")
        maturity = pd.read_parquet(path, columns=["territory", "stage", "stage_label"])
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

    codebook = codebook or load_study_codebook(config)
    results = []
    for export in config.exports:
        _step(f"ingest {export.name}")
        results.append(
            ingest_file(
                export,
                codebook,
                profile=config.ingest.profile,
                sheet=config.ingest.sheet,
                header_row=config.ingest.header_row,
                encoding=config.ingest.encoding,
                delimiter=config.ingest.delimiter,
            )
        )
    result = results[0] if len(results) == 1 else combine_results(results)
    if result.status == "rejected":
        messages = (
            "; ".join(e.get("message", str(e)) for e in result.report.get("errors", [])[:3])
            or result.summary()
        )
        raise EvalTerritoireError(f"export rejected: {messages}")
    write_ingest_outputs(result, config.build_dir)
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
    responses_by_wave = {c.wave: _responses(c) for c in configs}
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
    _write_parquet(result.maturity, config.artefact("maturity.parquet"))
    _write_parquet(result.transitions, config.artefact("transitions.parquet"))
    _write_parquet(result.profiles, config.artefact("profiles.parquet"))
    _write_parquet(result.reliability, config.artefact("reliability.parquet"))
    _write_json(result.diagnostics, config.artefact("maturity_diagnostics.json"))
    return result


def run_estimates(config: StudyConfig, *, codebook: Codebook | None = None) -> pd.DataFrame:
    """Design-based estimates for every item, nationally and by domain → ``estimates.parquet``."""
    from evalterritoire.estimates.engine import compute_study_estimates

    codebook = codebook or load_study_codebook(config)
    territory = codebook.require("territory", "estimates by territory")
    responses = _responses(config)
    maturity_path = config.artefact("maturity.parquet")
    if maturity_path.is_file():
        stages = pd.read_parquet(maturity_path, columns=["territory", "stage_label"])
        responses = responses.merge(
            stages.rename(columns={"territory": territory, "stage_label": "stage"}),
            on=territory,
            how="left",
        )
    design = _design(config, responses)
    domains: dict[str, str | None] = {
        "territory": territory,
        "respondent_type": codebook.column("respondent_type"),
        "stage": "stage" if "stage" in responses.columns else None,
    }
    _step(f"estimates {config.wave}")
    table = compute_study_estimates(
        design, codebook, domains=domains, min_n=config.min_n, wave=config.wave
    )
    _write_parquet(table, config.artefact("estimates.parquet"))
    return table


def run_models(config: StudyConfig, *, codebook: Codebook | None = None):
    """Fit the study's models with design-based covariance → ``models.parquet``."""
    from evalterritoire.models.fit import fit_study_models

    codebook = codebook or load_study_codebook(config)
    frame = _with_stage(config, _responses(config), codebook)
    if config.context is not None:
        frame = _merge_context(frame, config.context, codebook)
    design = _design(config, frame)
    _step(f"models {config.wave} ({len(config.models)})")
    result = fit_study_models(config.models, frame, design, codebook)
    _write_parquet(result.table, config.artefact("models.parquet"))
    _write_json(result.diagnostics, config.artefact("models_diagnostics.json"))
    return result


def _load_context_table(path: Path, codebook: Codebook) -> pd.DataFrame:
    """The territory context file (one row per territory, keyed by the territory column)."""
    territory = codebook.require("territory", "the territory context file")
    if path.suffix.lower() == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path, sep=None, engine="python", dtype={territory: str})
    if territory not in table.columns:
        raise EvalTerritoireError(f"{path}: context file lacks the column {territory}")
    return table


def _merge_context(frame: pd.DataFrame, path: Path, codebook: Codebook) -> pd.DataFrame:
    """Responses + the context columns they do not already hold, joined on the territory."""
    territory = codebook.require("territory", "the territory context file")
    context = _load_context_table(path, codebook)
    keep = [c for c in context.columns if c == territory or c not in frame.columns]
    return frame.merge(context[keep], on=territory, how="left")


def _artefacts(config: StudyConfig, codebook: Codebook):
    from evalterritoire.report.context import StudyArtefacts

    def optional(name: str) -> pd.DataFrame | None:
        path = config.artefact(name)
        return pd.read_parquet(path) if path.is_file() else None

    ingestion_path = config.artefact("ingestion.json")
    ingestion = (
        json.loads(ingestion_path.read_text(encoding="utf-8")) if ingestion_path.is_file() else None
    )
    context = _load_context_table(config.context, codebook) if config.context is not None else None
    return StudyArtefacts(
        profiles=optional("profiles.parquet"),
        responses=optional("responses.parquet"),
        estimates=optional("estimates.parquet"),
        maturity=optional("maturity.parquet"),
        transitions=optional("transitions.parquet"),
        models=optional("models.parquet"),
        reliability=optional("reliability.parquet"),
        ingestion=ingestion,
        context=context,
    )


def run_contexts(
    config: StudyConfig,
    *,
    codebook: Codebook | None = None,
    relocate: Callable[[StudyConfig], StudyConfig] | None = None,
) -> list[Path]:
    """Build one report context per territory (+ national) → ``contexts/*.json``."""
    from evalterritoire.manifest import safe_filename
    from evalterritoire.report.build import build_contexts

    codebook = codebook or load_study_codebook(config)
    contexts = build_contexts(config, codebook, _artefacts(config, codebook))
    out_dir = config.artefact("contexts")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ctx in contexts:
        name = "national" if ctx.is_national else safe_filename(ctx.territory)
        path = out_dir / f"{name}.json"
        _atomic_write_bytes(path, ctx.to_json().encode("utf-8"))
        paths.append(path)
    _step(f"contexts {config.wave}: {len(paths)}")
    return paths


# --------------------------------------------------------------------------- reports
def _templates_dir(config: StudyConfig) -> Path:
    """The study's templates folder (``[report] templates_dir``, else the package's own)."""
    if config.report.templates_dir is not None:
        return config.report.templates_dir
    from importlib import resources

    return Path(str(resources.files("evalterritoire") / "data" / "templates"))


def _template(config: StudyConfig, name: str) -> Path:
    folder = _templates_dir(config)
    for candidate in (folder / name, folder / f"{name}.py", folder / f"{name}.ipynb"):
        if candidate.is_file():
            return candidate
    raise EvalTerritoireError(f"template '{name}' not found in {folder}")


def _write_generated_notebook(template: Path, folder: Path) -> Path | None:
    """Write the ``.ipynb`` of a jupytext template into ``folder`` (for papermill users).

    Rewritten only when its content changes; skipped (``None``) when the folder is read-only.
    """
    import nbformat

    from evalterritoire.render.notebook import build_notebook

    if template.suffix != ".py":
        return None
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{template.stem}.ipynb"
    text = nbformat.writes(build_notebook(template)) + "\n"
    try:
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
    except OSError:
        return None
    return target


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
    from evalterritoire.render.options import render_defaults
    from evalterritoire.render.params import check_parameters
    from evalterritoire.render.reports import render_reports

    target = _render_target(config, out_dir)
    templates = _report_templates(config)
    extra = check_parameters(templates[0], parameters or {})
    contexts = _load_contexts(config, codebook)
    wanted = _wanted_territories(config, contexts, territories)
    names = {c.territory: c.territory_name for c in contexts if not c.is_national}
    batches = _render_batches(
        config,
        wanted,
        templates,
        extra,
        with_study=not territories,
        reports_dir=target,
        names=names,
    )
    options = {
        "engine": engine or config.report.engine,
        "workers": workers if workers is not None else config.report.workers,
        "formats": tuple(formats) if formats else config.report.formats,
        "dask_scheduler": dask_scheduler,
        "only_failed": only_failed,
        "force": force,
    }
    summaries = []
    with render_defaults(docx_reference=config.report.docx_reference):
        for folder, batch in batches:
            _step(f"reports {config.wave}: {len(batch)} → {folder}")
            summaries.append(render_reports(batch, out_dir=folder, **options))
    summary = _merge_summaries(summaries)
    _write_publication(config, contexts, wanted, target, codebook, with_study=not territories)
    if not territories and out_dir is None:
        _write_run_manifest(
            config, codebook=codebook, templates=templates, options=options, parameters=extra
        )
    return summary


def _render_target(config: StudyConfig, out_dir: str | Path | None) -> Path:
    """Where reports go: ``reports/<wave>/``, or an evaluator's folder outside it."""
    if out_dir is None:
        return config.reports_dir
    target = Path(out_dir).resolve()
    published = config.reports_dir.resolve()
    if target == published or published in target.parents or target in published.parents:
        raise EvalTerritoireError(
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
) -> None:
    """The index (table and map) and the downloads of the rendered reports."""
    from evalterritoire.manifest import safe_filename
    from evalterritoire.render.downloads import write_downloads
    from evalterritoire.render.index import render_index

    if codebook is None:
        from evalterritoire.codebook import load_codebook

        codebook = load_codebook(None if config.codebook == "default" else config.codebook)
    special = [
        {"key": c.key, "code": c.code, "label": c.label_fr, "kind": c.kind}
        for c in sorted(codebook.special_codes.values(), key=lambda c: c.code, reverse=True)
    ]
    chosen = set(wanted)
    for ctx in contexts:
        if ctx.is_national and not with_study:
            continue
        if not ctx.is_national and ctx.territory not in chosen:
            continue
        stem = "national" if ctx.is_national else safe_filename(ctx.territory)
        write_downloads(ctx, target / "donnees", stem=stem, special_codes=special)
    if target != config.reports_dir:  # an evaluator's variant indexes what it rendered
        contexts = [c for c in contexts if c.is_national or c.territory in chosen]
    render_index(contexts, target / "index.html", geometry=config.report.geometry)


def _load_contexts(config: StudyConfig, codebook: Codebook | None) -> list[Any]:
    """The wave's report contexts (built first when the national one is missing)."""
    from evalterritoire.report.context import ReportContext

    contexts_dir = config.artefact("contexts")
    if not (contexts_dir / "national.json").is_file():
        run_contexts(config, codebook=codebook)
    return [ReportContext.from_json(p) for p in sorted(contexts_dir.glob("*.json"))]


def _wanted_territories(
    config: StudyConfig, contexts: Sequence[Any], territories: Sequence[str] | None
) -> list[str]:
    """The territory codes to render: those asked (each must have a context), else all."""
    by_code = {c.territory for c in contexts if not c.is_national}
    wanted = list(territories) if territories else sorted(by_code)
    unknown = [t for t in wanted if t not in by_code]
    if unknown:
        raise EvalTerritoireError(
            f"unknown territory code(s) {', '.join(unknown)} for wave {config.wave} "
            f"(see {config.artefact('maturity.parquet')})"
        )
    return wanted


def _report_templates(config: StudyConfig) -> tuple[Path, Path]:
    """The territory and study templates (their ``.ipynb`` written beside them)."""
    territory_template = _template(config, config.report.territory_template)
    study_template = _template(config, config.report.study_template)
    for template in (territory_template, study_template):
        _write_generated_notebook(template, config.artefact("templates"))
    return territory_template, study_template


def _render_batches(
    config: StudyConfig,
    wanted: Sequence[str],
    templates: tuple[Path, Path],
    extra: Mapping[str, Any],
    *,
    with_study: bool,
    reports_dir: Path | None = None,
    names: Mapping[str, str] | None = None,
) -> list[tuple[Path, list[Any]]]:
    """(output folder, render tasks): the territory reports, then the annual study if asked.

    Each task is titled by its territory's name (``names``: the page ``<title>`` and the PDF and
    DOCX title); the evaluator's ``extra`` parameters go to the territory template, the study's
    evaluation grid to both (``grid_path``, "" for the shipped grid).
    """
    from evalterritoire.manifest import safe_filename
    from evalterritoire.render.reports import RenderTask

    contexts_dir = config.artefact("contexts")
    territory_template, study_template = templates

    reports_dir = reports_dir or config.reports_dir
    names = names or {}
    grid = "" if str(config.report.grid) == "default" else str(config.report.grid)

    def parameters(code: str, context: str) -> dict[str, Any]:
        return {
            "territory": code,
            "wave": config.wave,
            "context_path": str(contexts_dir / f"{context}.json"),
            **({"grid_path": grid, **extra} if code else {}),
        }

    tasks = [
        RenderTask(
            territory=code,
            template=territory_template,
            parameters=parameters(code, safe_filename(code)),
            output_stem=safe_filename(code),
            title=names.get(code) or code,
        )
        for code in wanted
    ]
    batches = [(reports_dir / "territoires", tasks)]
    if with_study:  # the annual study: the national context, no territory
        study = RenderTask(
            territory="national",
            template=study_template,
            parameters=parameters("", "national"),
            output_stem="synthese",
            title=config.name,
        )
        batches.append((reports_dir, [study]))
    return batches


def _merge_summaries(summaries: Sequence[Any]) -> Any:
    """One summary for several render batches (territories, then the annual study)."""
    first = summaries[0]
    if len(summaries) == 1:
        return first
    outputs: dict[str, Any] = {}
    for s in summaries:
        outputs.update(s.outputs)
    return replace(
        first,
        n_total=sum(s.n_total for s in summaries),
        n_rendered=sum(s.n_rendered for s in summaries),
        n_skipped=sum(s.n_skipped for s in summaries),
        n_failed=sum(s.n_failed for s in summaries),
        failed=tuple(sorted(f for s in summaries for f in s.failed)),
        outputs=outputs,
        seconds=sum(s.seconds for s in summaries),
    )


def _write_run_manifest(
    config: StudyConfig,
    *,
    codebook: Codebook | None = None,
    templates: Sequence[Path] = (),
    options: Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``reports/<wave>/manifest.json``.

    Inputs: the wave's study file, exports, codebook, context and margins files, the same
    files of every earlier wave it reads (stages, transitions), and the report templates.
    Parameters: the study's, the rendering options that name the outputs (engine, formats,
    template names; not the worker count) and the extra notebook parameters.
    """
    from evalterritoire.manifest import build_manifest, write_manifest

    rendering = {
        "engine": options["engine"],
        "formats": list(options["formats"]),
        "territory_template": config.report.territory_template,
        "study_template": config.report.study_template,
    }
    artefacts = sorted(
        p
        for p in config.build_dir.rglob("*")
        if p.is_file() and p.suffix in {".parquet", ".json", ".csv"} and not p.name.startswith(".")
    )
    # the study's own formats only: a PDF or DOCX an evaluator rendered for one territory with
    # `report --format` is not part of the study (its re-run would never produce it)
    suffixes = {".html"} | {f".{f}" for f in config.report.formats if f in {"pdf", "docx"}}
    reports = sorted(
        p
        for p in config.reports_dir.rglob("*")
        if p.is_file() and p.suffix in suffixes and not p.name.startswith(".")
    )
    manifest = build_manifest(
        config,
        artefacts=artefacts,
        reports=reports,
        previous=_previous_configs(config),
        templates=templates,
        rendering=rendering,
        parameters=parameters,
    )
    return write_manifest(manifest, config.reports_dir / "manifest.json")


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
    status = 0
    for cfg in configs:
        codebook = load_study_codebook(cfg)
        _console().rule(f"{cfg.name}")
        ingest_result = run_ingest(cfg, codebook=codebook)
        if ingest_result.exit_code:
            status = 1
        run_maturity(cfg, codebook=codebook, relocate=relocate)
        run_estimates(cfg, codebook=codebook)
        if cfg.models:
            run_models(cfg, codebook=codebook)
        run_contexts(cfg, codebook=codebook, relocate=relocate)
        if render:
            summary = run_reports(
                cfg, workers=workers, codebook=codebook, force=relocate is not None
            )
            if summary.exit_code:
                status = 1
    return status


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

    Inputs (exports, codebook, study file, context) are compared in place with the hashes the
    manifest recorded; result tables and reports with those of the re-run.

    Returns
    -------
    int
        0 when every recorded artefact and report is identical, 1 otherwise.
    """
    from evalterritoire.manifest import compare_artefacts, format_comparisons, load_manifest

    manifest_path = Path(manifest_path).resolve()
    manifest = load_manifest(manifest_path)
    study_file = (manifest_path.parent / manifest["study"]["study_file"]).resolve()
    if not study_file.is_file():
        raise ReproduceError(f"the study file recorded in {manifest_path} is gone: {study_file}")
    config = load_study(study_file)
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
    return 0 if all(c.status == "identical" for c in comparisons) else 1
