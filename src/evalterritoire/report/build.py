"""Assembly of the report contexts: :func:`build_contexts` (national, then each territory).

:func:`iter_context_texts` gives the same contexts with their JSON text, each written once. Owns the orchestration of one wave's contexts from its :class:`StudyArtefacts`, the evaluation
grid and the report spec (the study's, or the shipped defaults), and the territory contexts:
the stage decision of each territory (« entre deux stades » when the membership probability of
its stage is below :data:`BETWEEN_THRESHOLD`, grid §6, the grid entry it follows and « vers le
stade suivant »), its identity card, its content sections and its stage block, and the quality
summary of every report (its figures by status, :func:`_quality`) with the small-area fits
behind its model-based figures. The shared preparation is :mod:`.wave`, the national context
:mod:`.national`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.config import StudyConfig
from evalterritoire.errors import RenderError
from evalterritoire.progress import step_progress
from evalterritoire.report.colophon import colophon, glossary, glossary_in_text
from evalterritoire.report.context import (
    SMALL_CELL,
    ReportContext,
    StudyArtefacts,
    _clean,
    _num,
    dumps_indented,
    short_label,
    with_list_field,
)
from evalterritoire.report.grid import EvaluationGrid, load_grid
from evalterritoire.report.narrative import narrative_fields
from evalterritoire.report.national import _national
from evalterritoire.report.neighbours import METHOD, nearest_neighbours
from evalterritoire.report.quality import _quality_of, _records
from evalterritoire.report.sections import _median, _modal, _numeric, _option_label
from evalterritoire.report.spec import ReportSpec, load_report_spec
from evalterritoire.report.stages import (
    _neighbour_stage,
    _profile,
    _stage_label,
    _stage_probabilities,
)
from evalterritoire.report.trends import trend_fields
from evalterritoire.report.wave import _prepare_wave, _Wave

#: Below this membership probability of its stage a territory is « entre deux stades » (grid §6):
#: the probabilities are calibrated (``bench/bench_stage_probability.py``), so below 0,8 one
#: territory in five or more actually belongs to another stage.
BETWEEN_THRESHOLD = 0.8


def build_contexts(
    config: StudyConfig,
    codebook: Codebook,
    artefacts: StudyArtefacts,
    *,
    grid: EvaluationGrid | None = None,
    spec: ReportSpec | None = None,
) -> list[ReportContext]:
    """Build the national context and one context per territory.

    Parameters
    ----------
    config : StudyConfig
        The study (name, wave, ``min_n``, stage names, ``[report] grid`` and ``report_spec``).
    codebook : Codebook
        Labels, roles, dimensions, fragility domains.
    artefacts : StudyArtefacts
        The wave's tables; missing tables leave their sections empty.
    grid : EvaluationGrid, optional
        The evaluation grid; by default the study's (``config.report.grid``).
    spec : ReportSpec, optional
        The report spec; by default the study's (``config.report.report_spec``).

    Returns
    -------
    list of ReportContext
        National first, then territories sorted by code.

    Raises
    ------
    RenderError
        When neither responses nor the maturity table is available (nothing to report on).
    GridError
        When the study's evaluation grid is malformed.
    ReportSpecError
        When the study's report spec is malformed, names an item the codebook lacks, or a
        stage the grid lacks.
    """
    contexts, terms = _assemble(config, codebook, artefacts, grid, spec)
    return [replace(c, glossary=glossary(c.to_data(), terms)) for c in contexts]


def iter_context_texts(
    config: StudyConfig,
    codebook: Codebook,
    artefacts: StudyArtefacts,
    *,
    grid: EvaluationGrid | None = None,
    spec: ReportSpec | None = None,
) -> Iterator[tuple[ReportContext, str]]:
    """:func:`build_contexts`, each context with its JSON text, one after the other.

    The text is :meth:`ReportContext.to_json` of the context, written once: the context is
    turned into JSON-ready values once, its glossary is searched in their text
    (:func:`.colophon.glossary_in_text`) and written into it; the texts are made one at a time,
    so that they are never all held at once.

    Parameters and exceptions are those of :func:`build_contexts`.

    Yields
    ------
    tuple of (ReportContext, str)
        National first, then territories sorted by code.
    """
    contexts, terms = _assemble(config, codebook, artefacts, grid, spec)
    contexts.reverse()
    while contexts:
        yield _with_glossary(contexts.pop(), terms)


def _with_glossary(ctx: ReportContext, terms: Mapping[str, str]) -> tuple[ReportContext, str]:
    """A context without glossary → with its glossary, and its JSON text."""
    data = ctx.to_data()
    text = dumps_indented(data)
    found = glossary_in_text(text, data, terms)
    if found:
        cleaned = _clean(found)  # what to_data() of the context with its glossary gives
        spliced = with_list_field(text, "glossary", cleaned)
        if spliced is None:
            data["glossary"] = cleaned
            spliced = dumps_indented(data)
        text = spliced
    return replace(ctx, glossary=found), text


def _assemble(
    config: StudyConfig,
    codebook: Codebook,
    artefacts: StudyArtefacts,
    grid: EvaluationGrid | None,
    spec: ReportSpec | None,
) -> tuple[list[ReportContext], Mapping[str, str]]:
    """The contexts without their glossary, and the glossary's terms."""
    if artefacts.responses is None and artefacts.maturity is None:
        raise RenderError("no responses and no maturity table: run ingest and maturity first")
    grid = grid if grid is not None else load_grid(config.report.grid)
    spec = spec if spec is not None else load_report_spec(config.report.report_spec, codebook)
    spec.check_grid(grid)
    wave = _prepare_wave(config, codebook, grid, spec, artefacts)
    territories = []
    with step_progress("Contextes", len(wave.codes)) as advance:
        for code in wave.codes:
            territories.append(_territory(wave, code))
            advance()
    groups = nearest_neighbours(territories)
    shared = colophon(config, codebook, spec.narrative, artefacts.responses)
    out = [replace(_national(wave), colophon=shared, **trend_fields(wave))]
    for ctx in territories:
        ctx = replace(ctx, **_narrative(wave, ctx, groups.get(ctx.territory, {})), colophon=shared)
        out.append(ctx)
    return out, spec.narrative.glossary


def _narrative(wave: _Wave, ctx: ReportContext, group: Mapping[str, Any]) -> dict[str, Any]:
    """The narrative fields of a territory context (:mod:`.narrative`)."""
    domain = ("territory", ctx.territory)
    spec = wave.spec
    fields = narrative_fields(
        ctx,
        spec.narrative,
        wave.codebook,
        lambda items: wave.sections.items(domain, items),
        group,
        {"composition": spec.composition or "", "barriers": spec.barriers or ""},
    )
    return {**fields, "neighbour_method": METHOD if fields["neighbours"] else ""}


# --------------------------------------------------------------------------- stage decision
@dataclass(frozen=True)
class _StageDecision:
    """The stage of a territory and the stage whose grid its report follows."""

    stage: int | None
    label: str
    probability: float | None
    robustness: float | None
    #: The neighbouring stage it shares its membership with (between two stages), else None.
    other: int | None
    report_stage: int | None
    report_label: str
    #: Grid key of the stage the report follows, and of the assigned stage.
    key: str
    assigned_key: str

    @property
    def between(self) -> bool:
        """Whether the territory lies between two stages (grid §6)."""
        return self.other is not None


def _decide_stage(wave: _Wave, row: Mapping[str, Any]) -> _StageDecision:
    """Grid §6: between two stages, the report follows the EARLIER stage's grid.

    Between two stages when the membership probability of the assigned stage is below
    :data:`BETWEEN_THRESHOLD`; the other stage is the most probable of the others (the
    adjacent one in its direction when it is not adjacent), or, without per-stage
    probabilities, the nearer adjacent centroid.
    """
    names, n_stages = wave.names, wave.n_stages
    stage = int(row["stage"]) if _num(row.get("stage")) is not None else None
    label = str(row.get("stage_label") or _stage_label(names, stage))
    prob = _num(row.get("stage_probability"))
    robust = _num(row.get("stage_robustness"))
    other = None
    if stage is not None and prob is not None and prob < BETWEEN_THRESHOLD:
        other = _other_stage(row, stage, n_stages)
        if other is None:
            other = _neighbour_stage(row, wave.labels, wave.centroids, stage, n_stages)
    report_stage = min(stage, other) if stage is not None and other is not None else stage
    report_label = label if report_stage == stage else _stage_label(names, report_stage)
    grid = wave.grid
    return _StageDecision(
        stage=stage,
        label=label,
        probability=prob,
        robustness=robust,
        other=other,
        report_stage=report_stage,
        report_label=report_label if report_stage is not None else "",
        key=grid.stage_key(report_stage, n_stages, report_label)
        if report_stage is not None
        else "",
        assigned_key=grid.stage_key(stage, n_stages, label) if stage is not None else "",
    )


def _other_stage(row: Mapping[str, Any], stage: int, n_stages: int) -> int | None:
    """The most probable stage after the assigned one, brought next to it (None without)."""
    probs = {s: _num(row.get(f"p_stage_{s}")) for s in range(n_stages) if s != stage}
    probs = {s: p for s, p in probs.items() if p is not None}
    if not probs:
        return None
    best = max(probs, key=lambda s: (probs[s], -abs(s - stage), -s))
    return stage + (1 if best > stage else -1)


def _next_stage(
    wave: _Wave, decision: _StageDecision, milestones: list[dict[str, Any]]
) -> dict[str, Any]:
    """« Vers le stade suivant »: the later of the two stages, with the missing milestones."""
    if not decision.between or decision.stage is None or decision.other is None:
        return {}
    stage, other = decision.stage, decision.other
    later = max(stage, other)
    later_label = decision.label if later == stage else _stage_label(wave.names, later)
    nxt = wave.grid.stage_for(later, wave.n_stages, later_label)
    return {
        "stage": later,
        "key": nxt.key,
        "name": later_label,
        "is_assigned": later == stage,
        "signals": nxt.signals,
        "missing_milestones": [m["label"] for m in milestones if m["done"] is False],
    }


def _stage_fields(
    wave: _Wave, row: Mapping[str, Any], domain: tuple[str, str], frame: pd.DataFrame
) -> dict[str, Any]:
    """The « stade attribué » fields of a territory context, and its stage block."""
    decision = _decide_stage(wave, row)
    stage, names = decision.stage, wave.names
    declared = _num(row.get("stage_declared"))
    declared_i = int(declared) if declared is not None else None
    milestones = wave.sections.items(domain, wave.spec.milestones)
    for m in milestones:
        # no verdict on a suppressed share: « fait / à faire » would reveal it
        m["done"] = None if m["estimate"] is None else bool(m["estimate"] >= 0.5)
    centroid = wave.centroids.get(stage, {}) if stage is not None else {}
    return {
        "stage": stage,
        "stage_label": decision.label,
        "grid_key": decision.key,
        "assigned_grid_key": decision.assigned_key,
        "report_stage": decision.report_stage,
        "report_stage_label": decision.report_label,
        "stage_probability": decision.probability,
        "stage_probabilities": tuple(_stage_probabilities(row, names)) if row else (),
        "stage_robustness": decision.robustness,
        "between_stages": decision.between,
        "other_stage": decision.other,
        "other_stage_label": _stage_label(names, decision.other),
        "stage_declared": declared_i,
        "stage_declared_label": _stage_label(names, declared_i),
        "stage_gap": declared_i - stage if declared_i is not None and stage is not None else None,
        "declared_distribution": tuple(wave.sections.declared(domain, frame)),
        "profile": tuple(
            _profile(
                row,
                wave.labels,
                centroid,
                wave.national_means,
                score_range=wave.codebook.score_range,
                rules=wave.config.publication,
                lookup=wave.sections.lookup,
                domain=domain,
                min_n=wave.min_n,
            )
        )
        if row
        else (),
        "milestones": tuple(milestones),
        "next_stage": _next_stage(wave, decision, milestones),
        **_stage_block(wave, domain, decision.key),
    }


def _stage_block(wave: _Wave, domain: tuple[str, str], key: str) -> dict[str, Any]:
    """The grid entry the report follows, its recommendations and its indicator table."""
    if not key:
        return {"stage_grid": {}, "recommendations": (), "stage_indicators": ()}
    entry = wave.grid.stage(key)
    shown_by_table = wave.spec.section("essaimage") if "essaimage_table" in entry.charts else ()
    indicators = [
        i
        for i in _numeric(wave.codebook, wave.spec.indicators(key))
        # items of the milestones checklist and of the stage's own table are not shown twice
        if i not in wave.spec.milestones and i not in shown_by_table
    ]
    return {
        "stage_grid": entry.to_record(),
        "recommendations": entry.recommendations,
        "stage_indicators": tuple(wave.sections.items(domain, indicators)),
    }


# --------------------------------------------------------------------------- territory
def _territory(wave: _Wave, code: str) -> ReportContext:
    """The context of one territory's report."""
    frame = wave.by_code.get(code)
    if frame is None:  # a territory without responses (built only then: it is not cheap)
        frame = pd.DataFrame(columns=wave.responses.columns)
    row = wave.mat_rows.get(code, {})
    domain = ("territory", code)
    context_row = (
        wave.ctx_table.loc[code].to_dict() if code in wave.ctx_table.index else {}  # type: ignore[union-attr]
    )
    respondents = wave.sections.respondent_mix(frame)
    n_resp = int(_num(row.get("n")) or len(frame))
    n_types = (
        int(frame[wave.columns.respondent_type].nunique())
        if (wave.columns.respondent_type and wave.columns.respondent_type in frame.columns)
        else len(respondents)
    )
    name = (
        row.get("territory_name") or _mode(wave, code, frame, wave.columns.territory_name) or code
    )
    content = {
        **_stage_fields(wave, row, domain, frame),
        **_sections(wave, domain, frame, context_row),
        "wave_scores": wave.scores_by_code.get(code, ()),
    }
    records = _records(content.values())
    return ReportContext(
        **wave.common,
        territory=code,
        territory_name=str(name),
        is_national=False,
        identity=_identity(wave, code, frame, context_row),
        context_indicators=_context_indicators(wave, context_row),
        **content,
        free_text=tuple(wave.sections.free_text(frame, n_resp, _quotable(wave, code))),
        respondents=tuple(respondents),
        n_respondents=n_resp,
        n_types=n_types,
        is_indicative=bool(row.get("is_indicative") or False) or n_resp < SMALL_CELL or n_types < 2,
        quality=_quality_of(records),
        smallarea_fits=tuple(_smallarea_fits(wave, records)),
        history=wave.history_by_code.get(code, ()),
        later_waves=tuple(w for w, codes in wave.artefacts.later_waves if code in codes),
        methodology=wave.methodology,
    )


def _smallarea_fits(wave: _Wave, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Fay–Herriot fits behind the model-based figures of a report (for its annex).

    ``records`` are the report's estimate records (:func:`~.quality._records`).
    """
    fits = wave.artefacts.smallarea
    shown = sorted(
        {
            (str(r.get("model_variable") or r.get("variable")), str(r.get("label") or ""))
            for r in records
            if r.get("estimator") == "fay_herriot" and r.get("status") != "suppressed"
        }
    )
    if fits is None or fits.empty or not shown:
        return []
    codebook = wave.codebook
    out, seen = [], set()
    for variable, label in shown:
        base = variable.split("__")[0]
        if base in seen:
            continue
        seen.add(base)
        fit = _fit_summary(wave, base)
        if fit is None:
            continue
        out.append(
            {
                "variable": base,
                "label": label or _item_label(codebook, base),
                "covariates": list(fit["covariates"]),
                "sigma2_u": fit["sigma2_u"],
                "mean_gamma": fit["mean_gamma"],
                "n_areas": fit["n_areas"],
                "n_models": fit["n_models"],
            }
        )
    return out


def _fit_summary(wave: _Wave, base: str) -> Mapping[str, Any] | None:
    """The annex summary of a variable's first small-area fit (read once a wave), or None."""
    if base in wave.fit_summaries:
        return wave.fit_summaries[base]
    rows = wave.fit_rows.get(base)
    summary = None
    if rows is not None and wave.artefacts.smallarea is not None:
        codebook = wave.codebook
        fit = wave.artefacts.smallarea.iloc[rows[0]]
        covariates = [c for c in str(fit["covariates"] or "").split(";") if c]
        summary = {
            "covariates": tuple(codebook.label(c) if c in codebook else c for c in covariates),
            "sigma2_u": float(fit["sigma2_u"]),
            "mean_gamma": float(fit["mean_gamma"]),
            "n_areas": int(fit["n_areas"]),
            "n_models": len(rows),
        }
    wave.fit_summaries[base] = summary
    return summary


def _item_label(codebook: Any, variable: str) -> str:
    """An item's short French label (the variable id when the codebook does not know it)."""
    if variable in codebook:
        return short_label(codebook[variable].label_fr, limit=90)
    return variable


def _identity(
    wave: _Wave, code: str, frame: pd.DataFrame, context_row: Mapping[str, Any]
) -> dict[str, Any]:
    """Identity card: level, region, population, start year, organisations involved.

    A row the study does not declare (no codebook role, no report-spec item) is left out, so
    that the card never shows an empty line for a question the instrument does not ask. The
    start year and the organisations are design-based medians (R ``svyquantile``, from the
    estimate step's ``item_medians.parquet``) when the step computed them, and none when fewer
    than the study's minimum cell of respondents answered.
    """
    cols, identity = wave.columns, wave.spec.identity
    out: dict[str, Any] = {}
    if cols.territory_level:
        level = _mode(wave, code, frame, cols.territory_level)
        out["level"] = _option_label(wave.codebook, cols.territory_level, level)
    if cols.region_name or cols.region:
        out["region"] = _mode(wave, code, frame, cols.region_name) or _mode(
            wave, code, frame, cols.region
        )
    if cols.population:
        out["population"] = _num(context_row.get(cols.population))
    medians = wave.medians_by_code.get(str(code), {})
    for key in ("start_year", "n_organisations"):
        if identity.get(key):
            item = identity[key]
            out[key] = medians[item] if item in medians else _median(frame, item)
    return out


def _quotable(wave: _Wave, code: str) -> pd.DataFrame | None:
    """The territory's quotable rows from the wave's one pass (None: not computed)."""
    if wave.quotable is None or code not in wave.by_code:
        return None
    groups, empty = wave.quotable
    return groups.get(code, empty)


def _mode(wave: _Wave, code: str, frame: pd.DataFrame, col: str | None) -> str:
    """``_modal(frame, col)`` of a territory's responses, from the wave's grouped pass."""
    if col is None or col not in frame.columns:
        return ""
    if code in wave.by_code and col in wave.modes:
        return wave.modes[col].get(code, "")
    return _modal(frame, col)


def _context_indicators(wave: _Wave, context_row: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """The territory's public statistics, each with the median of the territories."""
    codebook = wave.codebook
    return tuple(
        {
            "variable": c,
            "label": codebook.label(c) if c in codebook else c,
            "value": _num(context_row.get(c)),
            "median": wave.ctx_median.get(c),
            "type": codebook[c].type if c in codebook else "decimal",
            "source": codebook[c].source if c in codebook else "",
        }
        for c in sorted(wave.ctx_median)
        if _num(context_row.get(c)) is not None
    )


def _sections(
    wave: _Wave,
    domain: tuple[str, str],
    frame: pd.DataFrame,
    context_row: Mapping[str, Any],
) -> dict[str, Any]:
    """The content sections of a territory's report."""
    sections, spec = wave.sections, wave.spec
    return dict(
        composition=tuple(sections.composition(domain)),
        fragilities=tuple(sections.fragilities(domain, context_row, wave.ctx_median, frame)),
        partnership=tuple(sections.items(domain, spec.section("partnership"))),
        dynamic=tuple(sections.items(domain, spec.section("dynamic"))),
        status_levels=tuple(sections.levels(domain, spec.status, frame)),
        agreement=tuple(sections.agreement(domain)),
        results=tuple(sections.items(domain, spec.section("results"))),
        essaimage=tuple(sections.items(domain, spec.section("essaimage"))),
        by_type=tuple(sections.by_type(domain[1])),
        freins=tuple(sections.barriers(domain)),
        nsp=tuple(sections.nsp_by_dimension(domain, wave.labels)),
    )
