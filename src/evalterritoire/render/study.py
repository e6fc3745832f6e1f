"""What a study renders: its templates, its render tasks, and the summary of its batches.

Owns the study-level side of rendering that :func:`evalterritoire.pipeline.run_reports` drives:
the templates folder of a study and the lookup of a template in it (:func:`find_template`:
a template is a file name of the study's declared folder, ``[report] templates_dir``, else the
package's own; a name with a path separator, or a file that resolves outside the folder, is
refused, so a study file runs no other Python code than its declared templates), the ``.ipynb``
generated beside the build for papermill users (:func:`write_generated_notebook`), the render
tasks of the territories and of the annual study (:func:`study_tasks`), the summary of several
batches (:func:`merge_summaries`) and the French lines listing failed reports
(:func:`failure_lines`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalterritoire.artefacts import write_text_atomic
from evalterritoire.errors import RenderError

if TYPE_CHECKING:
    from evalterritoire.config import StudyConfig
    from evalterritoire.render.reports import RenderSummary, RenderTask

__all__ = [
    "find_template",
    "merge_summaries",
    "report_templates",
    "study_tasks",
    "templates_dir",
    "wanted_territories",
    "write_generated_notebook",
]

#: A template name: a file name (no separator, not hidden), with or without its extension.
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}")


def templates_dir(config: StudyConfig) -> Path:
    """The study's templates folder (``[report] templates_dir``, else the package's own)."""
    if config.report.templates_dir is not None:
        return config.report.templates_dir
    from importlib import resources

    return Path(str(resources.files("evalterritoire") / "data" / "templates"))


def find_template(config: StudyConfig, name: str) -> Path:
    """The template ``name`` of the study's templates folder.

    Parameters
    ----------
    config : StudyConfig
        The study.
    name : str
        A file name of the folder, with or without ``.py`` / ``.ipynb``.

    Returns
    -------
    Path
        The template (resolved: inside the folder).

    Raises
    ------
    RenderError
        When the name is not a plain file name, the template is missing, or it resolves
        outside the folder (a symbolic link out of it).
    """
    folder = templates_dir(config)
    if not _TEMPLATE_NAME.fullmatch(name) or ".." in name:
        raise RenderError(
            f"template name {name!r} must be a file name of the templates folder {folder} "
            "(no path: a study runs only the templates of its declared folder)"
        )
    root = folder.resolve()
    for candidate in (folder / name, folder / f"{name}.py", folder / f"{name}.ipynb"):
        if candidate.is_file():
            resolved = candidate.resolve()
            if not resolved.is_relative_to(root):
                raise RenderError(
                    f"template {candidate} leads outside its folder ({resolved}): refused"
                )
            return resolved
    raise RenderError(f"template '{name}' not found in {folder}")


def write_generated_notebook(template: Path, folder: Path) -> Path | None:
    """Write the ``.ipynb`` of a jupytext template into ``folder`` (for papermill users).

    Rewritten (atomically) only when its content changes; skipped (``None``) when the folder is
    read-only.
    """
    import nbformat

    from evalterritoire.render.notebook import build_notebook

    if template.suffix != ".py":
        return None
    target = folder / f"{template.stem}.ipynb"
    text = nbformat.writes(build_notebook(template)) + "\n"
    try:
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            write_text_atomic(target, text)
    except OSError:
        return None
    return target


def study_tasks(
    config: StudyConfig,
    wanted: Sequence[str],
    templates: tuple[Path, Path],
    extra: Mapping[str, Any],
    *,
    with_study: bool,
    reports_dir: Path | None = None,
    titles: Mapping[str, str | None] | None = None,
) -> list[tuple[Path, list[RenderTask]]]:
    """(output folder, render tasks): the territory reports, then the annual study if asked.

    Each task is titled from its context (the page ``<title>`` and the PDF and DOCX title):
    ``titles`` maps a context file's stem (``national`` for the study) to its title when the
    caller has the contexts in hand, else each context file is read (:func:`context_title`).
    The evaluator's ``extra`` parameters go to the territory template, the study's evaluation
    grid to it too (``grid_path``, "" for the shipped grid). ``reports_dir`` (default: the
    study's published folder) is where an evaluator's variant goes.
    """
    from evalterritoire.manifest import safe_filename
    from evalterritoire.render.reports import RenderTask

    contexts_dir = config.artefact("contexts")
    territory_template, study_template = templates
    reports_dir = reports_dir or config.reports_dir
    grid = "" if str(config.report.grid) == "default" else str(config.report.grid)

    def title(stem: str) -> str | None:
        if titles is not None and stem in titles:
            return titles[stem]
        return context_title(contexts_dir / f"{stem}.json")

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
            title=title(safe_filename(code)),
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
            title=title("national"),
        )
        batches.append((reports_dir, [study]))
    return batches


def context_title(path: Path) -> str | None:
    """The page title of a report (« Territoire — rapport d'évaluation 2025 »), from its context.

    Parameters
    ----------
    path : Path
        The report's context file.

    Returns
    -------
    str or None
        The context's title, or ``None`` when the context cannot be read (the renderer then
        names the page after the territory and the render itself reports the problem).
    """
    from evalterritoire.errors import EvalTerritoireError
    from evalterritoire.report.context import ReportContext

    try:
        return ReportContext.from_json(path).title
    except EvalTerritoireError:
        return None


def merge_summaries(summaries: Sequence[RenderSummary]) -> RenderSummary:
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


def wanted_territories(
    config: StudyConfig, current: Sequence[str], territories: Sequence[str] | None
) -> list[str]:
    """The territory codes to render: those asked (each must have a context), else all."""
    wanted = list(territories) if territories else sorted(current)
    unknown = [t for t in wanted if t not in set(current)]
    if unknown:
        raise RenderError(
            f"unknown territory code(s) {', '.join(unknown)} for wave {config.wave} "
            f"(see {config.artefact('maturity.parquet')})"
        )
    return wanted


def report_templates(config: StudyConfig) -> tuple[Path, Path]:
    """The territory and study templates (their ``.ipynb`` written beside the build)."""
    territory_template = find_template(config, config.report.territory_template)
    study_template = find_template(config, config.report.study_template)
    for template in (territory_template, study_template):
        write_generated_notebook(template, config.artefact("templates"))
    return territory_template, study_template
