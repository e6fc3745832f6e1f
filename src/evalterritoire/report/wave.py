"""What every report context of one wave shares, prepared once: :class:`_Wave`.

Owns :func:`_prepare_wave`: the study, codebook, evaluation grid and report spec; the responses
(territory codes as text) with their estimates (the descriptive fallback when
``estimates.parquet`` is missing), the maturity table by territory, the stage centroids and
national means of the dimension scores, the territory-level public statistics
(``_context_table``) and their medians, the territories' most frequent identity answers
(``_modes``), the stage history and wave-to-wave scores, and the
fields common to every context (study, wave, stage names, score range, models, the spec's
by-type items and the population column).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.config import StudyConfig
from evalterritoire.report.breakdowns import Breakdowns
from evalterritoire.report.comparability import describe_breaks, without_broken_trends
from evalterritoire.report.context import SMALL_CELL, Columns, StudyArtefacts, _num, short_label
from evalterritoire.report.grid import EvaluationGrid
from evalterritoire.report.lookup import _Lookup, compute_descriptive_estimates
from evalterritoire.report.sections import Sections, _models
from evalterritoire.report.spec import ReportSpec
from evalterritoire.report.stages import _history, _means, _wave_scores


@dataclass(frozen=True)
class _Wave:
    """One wave's inputs of the report contexts, prepared once for all territories."""

    config: StudyConfig
    codebook: Codebook
    grid: EvaluationGrid
    spec: ReportSpec
    artefacts: StudyArtefacts
    columns: Columns
    sections: Sections
    responses: pd.DataFrame
    by_code: Mapping[str, pd.DataFrame]
    maturity: pd.DataFrame | None
    mat_rows: Mapping[str, Mapping[str, Any]]
    codes: tuple[str, ...]
    #: Maturity dimension → short chart label.
    labels: Mapping[str, str]
    centroids: Mapping[int, Mapping[str, float]]
    national_means: Mapping[str, float]
    ctx_table: pd.DataFrame
    ctx_median: Mapping[str, float]
    history: tuple[Mapping[str, Any], ...]
    wave_scores: tuple[Mapping[str, Any], ...]
    common: Mapping[str, Any]
    methodology: Mapping[str, Any]
    #: Territory code → its records of ``history``, of ``wave_scores`` (in their order) and its
    #: design-based medians (item → median, None below the minimum cell).
    history_by_code: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    scores_by_code: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    medians_by_code: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    #: Variable → the positions of its rows in the small-area fits table, in table order.
    fit_rows: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    #: Territory code → its quotable rows, and the empty table (``Sections.quotable_by_territory``).
    quotable: tuple[Mapping[str, pd.DataFrame], pd.DataFrame] | None = None
    #: Column → territory code → its most frequent answer (:func:`_modes`).
    modes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: Variable → the annex summary of its first small-area fit (filled as the reports ask).
    fit_summaries: dict[str, Mapping[str, Any] | None] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """The study's stage names."""
        return tuple(self.config.maturity.stage_names)

    @property
    def n_stages(self) -> int:
        """Number of stages of the study."""
        return len(self.names)

    @property
    def min_n(self) -> int:
        """Estimates on fewer respondents are flagged « indicatif »."""
        return self.config.min_n


def _prepare_wave(
    config: StudyConfig,
    codebook: Codebook,
    grid: EvaluationGrid,
    spec: ReportSpec,
    artefacts: StudyArtefacts,
) -> _Wave:
    """Everything the contexts of one wave share."""
    if artefacts.trend_breaks:  # no trend across an unacknowledged change of an item
        profiles = without_broken_trends(artefacts.profiles, artefacts.trend_breaks)
        artefacts = replace(artefacts, profiles=profiles)
    columns = Columns.from_codebook(codebook)
    responses = _responses(artefacts, columns.territory)
    estimates = artefacts.estimates
    rules = config.publication
    if estimates is None and not responses.empty:
        estimates = compute_descriptive_estimates(
            responses, codebook, min_n=config.min_n, wave=config.wave, publication=rules
        )
    breakdowns = (
        Breakdowns(config, codebook, spec, columns, responses, rules)
        if not responses.empty and columns.territory in responses.columns
        else None
    )
    sections = Sections(
        _Lookup(estimates), codebook, spec, columns, config.min_n, rules, breakdowns
    )
    labels = {
        dim: spec.dimension_label(dim, short_label(label))
        for dim, label in codebook.dimensions.items()
    }
    maturity = _maturity(artefacts)
    mat_rows = (
        {str(r["territory"]): r for r in maturity.to_dict(orient="records")}
        if maturity is not None
        else {}
    )
    by_code = _by_territory(responses, columns.territory)
    ctx_table = _context_table(artefacts, codebook, columns.territory)
    history = tuple(_history(artefacts, tuple(config.maturity.stage_names)))
    wave_scores = tuple(
        _wave_scores(artefacts, config.wave, labels, score_range=codebook.score_range, rules=rules)
    )
    return _Wave(
        config=config,
        codebook=codebook,
        grid=grid,
        spec=spec,
        artefacts=artefacts,
        columns=columns,
        sections=sections,
        responses=responses,
        by_code=by_code,
        maturity=maturity,
        mat_rows=mat_rows,
        codes=tuple(sorted(set(by_code) | set(mat_rows))),
        labels=labels,
        centroids=_centroids(maturity, labels),
        national_means=_means(maturity, labels) if maturity is not None else {},
        ctx_table=ctx_table,
        ctx_median=_context_medians(ctx_table, codebook),
        history=history,
        wave_scores=wave_scores,
        common=_common(config, artefacts, codebook, spec, columns),
        methodology=_methodology(config, artefacts, labels),
        history_by_code=_by_code(history),
        scores_by_code=_by_code(wave_scores),
        medians_by_code=_territory_medians(artefacts.item_medians, config.publication.min_cell),
        fit_rows=_fit_rows(artefacts.smallarea),
        modes=_modes(responses, columns),
        quotable=sections.quotable_by_territory(responses) if by_code else None,
    )


def _modes(responses: pd.DataFrame, columns: Columns) -> dict[str, dict[str, str]]:
    """The identity columns' most frequent answer in each territory, in one grouped pass.

    What :func:`~.sections._modal` gives on each territory's responses: the most frequent
    non-missing answer as text, the first in sorted order among the ties (a territory without
    an answer is left out).
    """
    territory = columns.territory
    if territory is None or territory not in responses.columns:
        return {}
    wanted = (columns.territory_name, columns.territory_level, columns.region_name, columns.region)
    codes = responses[territory]
    out: dict[str, dict[str, str]] = {}
    for col in dict.fromkeys(c for c in wanted if c is not None and c in responses.columns):
        values = responses[col].astype("string")
        known = (codes.notna() & values.notna()).to_numpy(dtype=bool)
        counts: dict[str, dict[str, int]] = {}
        pairs = zip(codes[known].tolist(), values[known].tolist(), strict=True)
        for (code, value), n in Counter(pairs).items():
            counts.setdefault(str(code), {})[value] = n
        out[col] = {
            code: min(v for v, n in by_value.items() if n == max(by_value.values()))
            for code, by_value in counts.items()
        }
    return out


def _fit_rows(fits: pd.DataFrame | None) -> dict[str, tuple[int, ...]]:
    """Variable → the positions of its rows in the small-area fits table (none missing)."""
    if fits is None or fits.empty or "variable" not in fits.columns:
        return {}
    out: dict[str, list[int]] = {}
    for pos, variable in enumerate(fits["variable"].tolist()):
        if isinstance(variable, str):
            out.setdefault(variable, []).append(pos)
    return {variable: tuple(rows) for variable, rows in out.items()}


def _by_code(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Mapping[str, Any], ...]]:
    """Records grouped by their ``territory``, each group in the records' order."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        out.setdefault(rec["territory"], []).append(rec)
    return {code: tuple(recs) for code, recs in out.items()}


def _territory_medians(
    table: pd.DataFrame | None, min_cell: int
) -> dict[str, dict[str, float | None]]:
    """Territory code → item → its design-based median (None below ``min_cell`` respondents).

    From the estimate step's ``item_medians.parquet`` (``quantile`` 0,5 of the territory
    domains); a later row of the same item wins.
    """
    if table is None or table.empty or "domain_type" not in table.columns:
        return {}
    rows = table[(table["domain_type"] == "territory") & (table["quantile"] == 0.5)]
    codes = rows["domain"].astype(str).tolist()
    out: dict[str, dict[str, float | None]] = {}
    for code, r in zip(codes, rows.to_dict(orient="records"), strict=True):
        value = _num(r["estimate"]) if int(r["n"] or 0) >= min_cell else None
        out.setdefault(code, {})[str(r["variable"])] = value
    return out


def _responses(artefacts: StudyArtefacts, territory: str | None) -> pd.DataFrame:
    """The responses, territory codes as text (an empty table when there are none)."""
    responses = artefacts.responses if artefacts.responses is not None else pd.DataFrame()
    if territory is not None and territory in responses.columns:
        responses = responses.assign(**{territory: responses[territory].astype("string")})
    return responses


def _by_territory(responses: pd.DataFrame, territory: str | None) -> dict[str, pd.DataFrame]:
    if territory is None or territory not in responses.columns:
        return {}
    return {str(k): g for k, g in responses.groupby(territory, sort=True)}


def _maturity(artefacts: StudyArtefacts) -> pd.DataFrame | None:
    """The maturity table, territory codes as text, sorted by code."""
    maturity = artefacts.maturity
    if maturity is None:
        return None
    return maturity.assign(territory=maturity["territory"].astype("string")).sort_values(
        "territory", kind="mergesort"
    )


def _centroids(
    maturity: pd.DataFrame | None, labels: Mapping[str, str]
) -> dict[int, dict[str, float]]:
    """Mean dimension scores of each stage's territories."""
    if maturity is None or "stage" not in maturity.columns:
        return {}
    return {int(s): _means(g, labels) for s, g in maturity.groupby("stage", sort=True)}


def _context_table(
    artefacts: StudyArtefacts, codebook: Codebook, territory: str | None
) -> pd.DataFrame:
    """Territory-level public statistics, indexed by territory code.

    The study's context table, else the territory-level items found in the responses.
    """
    ctx_ids = [v.id for v in codebook.of_type(level="territory")]
    frames = []
    if territory is None:
        territory = "territory"  # no territory role: an empty table
    elif artefacts.context is not None and territory in artefacts.context.columns:
        frames.append(artefacts.context)
    elif artefacts.responses is not None:
        cols = [c for c in ctx_ids if c in artefacts.responses.columns]
        if cols and territory in artefacts.responses.columns:
            frames.append(artefacts.responses[[territory, *cols]].drop_duplicates(territory))
    if not frames:
        return pd.DataFrame({territory: pd.Series(dtype="string")}).set_index(territory)
    table = frames[0].copy()
    table[territory] = table[territory].astype("string")
    return table.drop_duplicates(territory).set_index(territory)


def _context_medians(ctx_table: pd.DataFrame, codebook: Codebook) -> dict[str, float]:
    """Median over territories of each territory-level item of the codebook."""
    ctx_ids = {v.id for v in codebook.of_type(level="territory")}
    out = {}
    for col in ctx_table.columns:
        values = pd.to_numeric(ctx_table[col], errors="coerce")
        if col in ctx_ids and values.notna().any():
            out[col] = float(values.median())
    return out


def _common(
    config: StudyConfig,
    artefacts: StudyArtefacts,
    codebook: Codebook,
    spec: ReportSpec,
    columns: Columns,
) -> dict[str, Any]:
    """The fields every context of the wave has in common."""
    titles = {m.name: m.description for m in config.models}
    return {
        "study_name": config.name,
        "wave": config.wave,
        "min_n": config.min_n,
        "stage_names": tuple(config.maturity.stage_names),
        "score_range": codebook.score_range,
        "n_dimensions": len(codebook.dimensions),
        "models": tuple(
            {**m, "title": titles.get(str(m.get("model")), "")} for m in _models(artefacts.models)
        ),
        "by_type_items": dict(spec.by_type),
        "by_type_scale": _item_scale(codebook, next(iter(spec.by_type.values()), None)),
        "population_variable": columns.population or "",
        "publication": _publication(config),
    }


def _publication(config: StudyConfig) -> dict[str, Any]:
    """The study's publication rules, for the legend and the annex."""
    from dataclasses import asdict

    rules = asdict(config.publication)
    covariates = rules.get("smallarea_covariates")
    if not isinstance(covariates, str):
        rules["smallarea_covariates"] = list(covariates)
    return rules


def _item_scale(codebook: Codebook, item: str | None) -> dict[str, Any]:
    """An item's range and the labels of its ends (``{}`` without an item or a range)."""
    if item is None:
        return {}
    lo, hi = codebook.value_range(item)
    if lo is None or hi is None:
        return {}
    labels = codebook.value_labels(item)
    return {
        "low": float(lo),
        "high": float(hi),
        "low_label": str(labels.get(lo, labels.get(int(lo), ""))),
        "high_label": str(labels.get(hi, labels.get(int(hi), ""))),
    }


def _methodology(
    config: StudyConfig, artefacts: StudyArtefacts, labels: Mapping[str, str]
) -> dict[str, Any]:
    """Design, calibration, small-n rules and clustering of the methodological annex."""
    d, c = config.design, config.calibration
    return {
        "weight": d.weight or "",
        "strata": d.strata or "",
        "psu": d.psu or "",
        "fpc": d.fpc or "",
        "lonely_psu": d.lonely_psu,
        "calibration": c.method,
        "has_intervals": artefacts.estimates is not None,
        "min_n": config.min_n,
        "small_cell": SMALL_CELL,
        "cluster_method": config.maturity.method,
        "random_state": config.random_state,
        "trend_breaks": describe_breaks(artefacts.trend_breaks, labels),
    }
