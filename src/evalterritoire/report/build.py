"""Assembly of the report contexts: :func:`build_contexts` (national, then each territory).

Owns the orchestration of one wave's contexts from its :class:`StudyArtefacts`: the descriptive
fallback when estimates are missing, the territory-level public statistics table
(``_context_table``), the stage decision of each territory (« entre deux stades » below
:data:`BETWEEN_THRESHOLD`, grid §6, and the grid it follows), the territory contexts, the
national context (``_national``: stage distribution, territories, transition matrix, headline
items, reliability, ingestion summary) and the methodology block (``_methodology``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.config import StudyConfig
from evalterritoire.errors import RenderError
from evalterritoire.report.context import (
    DIMENSION_SHORT,
    NAME_COL,
    SMALL_CELL,
    TERRITORY_COL,
    ReportContext,
    StudyArtefacts,
    _clean,
    _num,
    short_label,
)
from evalterritoire.report.grid import EvaluationGrid, load_grid
from evalterritoire.report.lookup import _Lookup, compute_descriptive_estimates
from evalterritoire.report.sections import (
    AGREEMENT_ITEMS,
    BY_TYPE_ITEMS,
    DYNAMIC_ITEMS,
    ESSAIMAGE_ITEMS,
    MILESTONE_ITEMS,
    PARTNERSHIP_ITEMS,
    RESULT_ITEMS,
    STAGE_INDICATORS,
    _agreement,
    _composition,
    _declared_distribution,
    _fragilities,
    _free_text,
    _freins,
    _items,
    _levels,
    _median,
    _modal,
    _models,
    _nsp_by_dimension,
    _numeric,
    _option_label,
    _respondent_mix,
    _weighted_by_type,
)
from evalterritoire.report.stages import (
    _history,
    _means,
    _neighbour_stage,
    _profile,
    _score_range,
    _stage_label,
    _wave_scores,
)

#: Below this stage probability (or robustness) a territory is « entre deux stades » (grid §6).
BETWEEN_THRESHOLD = 0.6


def _context_table(artefacts: StudyArtefacts, codebook: Codebook) -> pd.DataFrame:
    ctx_ids = [v.id for v in codebook.of_type(level="territory")]
    frames = []
    if artefacts.context is not None and TERRITORY_COL in artefacts.context.columns:
        frames.append(artefacts.context)
    elif artefacts.responses is not None:
        cols = [c for c in ctx_ids if c in artefacts.responses.columns]
        if cols and TERRITORY_COL in artefacts.responses.columns:
            frames.append(
                artefacts.responses[[TERRITORY_COL, *cols]].drop_duplicates(TERRITORY_COL)
            )
    if not frames:
        return pd.DataFrame({TERRITORY_COL: pd.Series(dtype="string")})
    table = frames[0].copy()
    table[TERRITORY_COL] = table[TERRITORY_COL].astype("string")
    return table.drop_duplicates(TERRITORY_COL).set_index(TERRITORY_COL)


def build_contexts(
    config: StudyConfig,
    codebook: Codebook,
    artefacts: StudyArtefacts,
    *,
    grid: EvaluationGrid | None = None,
) -> list[ReportContext]:
    """Build the national context and one context per territory.

    Parameters
    ----------
    config : StudyConfig
        The study (name, wave, ``min_n``, stage names, ``[report] grid``).
    codebook : Codebook
        Labels, dimensions, fragility domains.
    artefacts : StudyArtefacts
        The wave's tables; missing tables leave their sections empty.
    grid : EvaluationGrid, optional
        The evaluation grid; by default the study's (``config.report.grid``).

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
    """
    if artefacts.responses is None and artefacts.maturity is None:
        raise RenderError("no responses and no maturity table: run ingest and maturity first")
    grid = grid if grid is not None else load_grid(config.report.grid)
    min_n = config.min_n
    names = tuple(config.maturity.stage_names)
    n_stages = len(names)
    responses = artefacts.responses if artefacts.responses is not None else pd.DataFrame()
    if TERRITORY_COL in responses.columns:
        responses = responses.assign(**{TERRITORY_COL: responses[TERRITORY_COL].astype("string")})
    estimates = artefacts.estimates
    if estimates is None and not responses.empty:
        estimates = compute_descriptive_estimates(
            responses, codebook, min_n=min_n, wave=config.wave
        )
    lookup = _Lookup(estimates)
    dims = dict(codebook.dimensions)
    maturity = artefacts.maturity
    if maturity is not None:
        maturity = maturity.assign(territory=maturity["territory"].astype("string")).sort_values(
            "territory", kind="mergesort"
        )
    score_range = _score_range(maturity, dims)
    national_means = _means(maturity, dims) if maturity is not None else {}
    centroids = (
        {int(s): _means(g, dims) for s, g in maturity.groupby("stage", sort=True)}
        if maturity is not None and "stage" in maturity.columns
        else {}
    )
    ctx_table = _context_table(artefacts, codebook)
    ctx_median = {
        c: float(pd.to_numeric(ctx_table[c], errors="coerce").median())
        for c in ctx_table.columns
        if c.startswith("ctx_") and pd.to_numeric(ctx_table[c], errors="coerce").notna().any()
    }
    models = _models(artefacts.models)
    by_code = (
        {str(k): g for k, g in responses.groupby(TERRITORY_COL, sort=True)}
        if TERRITORY_COL in responses.columns
        else {}
    )
    codes = sorted(
        set(by_code) | (set(maturity["territory"].astype(str)) if maturity is not None else set())
    )
    mat_rows = (
        {str(r["territory"]): r for r in maturity.to_dict(orient="records")}
        if maturity is not None
        else {}
    )
    history = _history(artefacts, names)
    wave_scores = _wave_scores(artefacts, config.wave, dims)
    common = {
        "study_name": config.name,
        "wave": config.wave,
        "min_n": min_n,
        "stage_names": names,
        "score_range": score_range,
        "models": tuple(models),
    }

    contexts = [
        _national(config, codebook, grid, artefacts, lookup, responses, maturity, mat_rows, common)
    ]
    for code in codes:
        frame = by_code.get(code, pd.DataFrame(columns=responses.columns))
        row = mat_rows.get(code, {})
        domain = ("territory", code)
        stage = int(row["stage"]) if _num(row.get("stage")) is not None else None
        stage_label = str(row.get("stage_label") or _stage_label(names, stage))
        prob = _num(row.get("stage_probability"))
        robust = _num(row.get("stage_robustness"))
        uncertain = (prob is not None and prob < BETWEEN_THRESHOLD) or (
            robust is not None and robust < BETWEEN_THRESHOLD
        )
        other = (
            _neighbour_stage(row, dims, centroids, stage, n_stages)
            if uncertain and stage is not None
            else None
        )
        between = other is not None
        # grid §6: between two stages, the report follows the EARLIER stage's grid
        report_stage = min(stage, other) if stage is not None and other is not None else stage
        report_label = stage_label if report_stage == stage else _stage_label(names, report_stage)
        key = (
            grid.stage_key(report_stage, n_stages, report_label) if report_stage is not None else ""
        )
        declared = _num(row.get("stage_declared"))
        declared_i = int(declared) if declared is not None else None
        respondents = _respondent_mix(frame, codebook)
        n_resp = int(_num(row.get("n")) or len(frame))
        n_types = len(respondents)
        indicative = bool(row.get("is_indicative") or False) or n_resp < SMALL_CELL or n_types < 2
        context_row = (
            ctx_table.loc[code].to_dict() if code in ctx_table.index else {}  # type: ignore[union-attr]
        )
        lookup_items = _items(lookup, domain, codebook, PARTNERSHIP_ITEMS, min_n)
        small = tuple(sorted(lookup.small.get(domain, set())))
        entry = grid.stage(key) if key else None
        milestones = _items(lookup, domain, codebook, MILESTONE_ITEMS, min_n)
        for m in milestones:
            m["done"] = m["estimate"] is not None and m["estimate"] >= 0.5
        next_stage: dict[str, Any] = {}
        if between and stage is not None and other is not None:
            # « vers le stade suivant » : the later of the two stages, with the missing milestones
            later = max(stage, other)
            later_label = stage_label if later == stage else _stage_label(names, later)
            nxt = grid.stage_for(later, n_stages, later_label)
            next_stage = {
                "stage": later,
                "key": nxt.key,
                "name": later_label,
                "is_assigned": later == stage,
                "signals": nxt.signals,
                "missing_milestones": [m["label"] for m in milestones if not m["done"]],
            }
        contexts.append(
            ReportContext(
                **common,
                territory=code,
                territory_name=str(row.get("territory_name") or _modal(frame, NAME_COL) or code),
                is_national=False,
                identity={
                    "level": _option_label(
                        codebook, "id_territoire_niveau", _modal(frame, "id_territoire_niveau")
                    ),
                    "region": _modal(frame, "id_region_nom") or _modal(frame, "id_region_code"),
                    "population": _num(context_row.get("ctx_population")),
                    "start_year": _median(frame, "dyn_annee_debut"),
                    "n_organisations": _median(frame, "dyn_nb_organisations"),
                },
                context_indicators=tuple(
                    {
                        "variable": c,
                        "label": codebook.label(c) if c in codebook else c,
                        "value": _num(context_row.get(c)),
                        "median": ctx_median.get(c),
                        "type": codebook[c].type if c in codebook else "decimal",
                    }
                    for c in sorted(ctx_median)
                    if _num(context_row.get(c)) is not None
                ),
                composition=tuple(_composition(lookup, domain, codebook, min_n)),
                stage=stage,
                stage_label=stage_label,
                grid_key=key,
                stage_grid=entry.to_record() if entry else {},
                assigned_grid_key=grid.stage_key(stage, n_stages, stage_label)
                if stage is not None
                else "",
                report_stage=report_stage,
                report_stage_label=report_label if report_stage is not None else "",
                stage_probability=prob,
                stage_robustness=robust,
                between_stages=between,
                other_stage=other,
                other_stage_label=_stage_label(names, other),
                stage_declared=declared_i,
                stage_declared_label=_stage_label(names, declared_i),
                stage_gap=(declared_i - stage)
                if declared_i is not None and stage is not None
                else None,
                declared_distribution=tuple(
                    _declared_distribution(lookup, domain, codebook, min_n, frame)
                ),
                free_text=tuple(_free_text(frame, codebook, n_resp, min_n)),
                profile=tuple(
                    _profile(
                        row,
                        dims,
                        centroids.get(stage, {}) if stage is not None else {},
                        national_means,
                    )
                )
                if row
                else (),
                fragilities=tuple(
                    _fragilities(lookup, domain, codebook, min_n, context_row, ctx_median, frame)
                ),
                partnership=tuple(lookup_items),
                dynamic=tuple(_items(lookup, domain, codebook, DYNAMIC_ITEMS, min_n)),
                dyn_statut=tuple(_levels(lookup, domain, codebook, "dyn_statut", min_n, frame)),
                agreement=tuple(_agreement(frame, codebook, AGREEMENT_ITEMS)),
                milestones=tuple(milestones),
                results=tuple(_items(lookup, domain, codebook, RESULT_ITEMS, min_n)),
                essaimage=tuple(_items(lookup, domain, codebook, ESSAIMAGE_ITEMS, min_n)),
                stage_indicators=tuple(
                    _items(
                        lookup,
                        domain,
                        codebook,
                        [
                            i
                            for i in _numeric(codebook, STAGE_INDICATORS.get(entry.key, ()))
                            if i not in MILESTONE_ITEMS
                            # items of the stage's own table are not shown twice
                            and not ("essaimage_table" in entry.charts and i in ESSAIMAGE_ITEMS)
                        ],
                        min_n,
                    )
                )
                if entry
                else (),
                by_type=tuple(_weighted_by_type(frame, codebook, BY_TYPE_ITEMS)),
                freins=tuple(_freins(lookup, domain, codebook, min_n)),
                nsp=tuple(_nsp_by_dimension(lookup, domain, codebook)),
                respondents=tuple(respondents),
                n_respondents=n_resp,
                n_types=n_types,
                is_indicative=indicative,
                small_n=small,
                history=tuple(h for h in history if h["territory"] == code),
                wave_scores=tuple(s for s in wave_scores if s["territory"] == code),
                recommendations=entry.recommendations if entry else (),
                next_stage=next_stage,
                methodology=_methodology(config, artefacts),
            )
        )
    return contexts


def _national(
    config: StudyConfig,
    codebook: Codebook,
    grid: EvaluationGrid,
    artefacts: StudyArtefacts,
    lookup: _Lookup,
    responses: pd.DataFrame,
    maturity: pd.DataFrame | None,
    mat_rows: Mapping[str, Mapping[str, Any]],
    common: Mapping[str, Any],
) -> ReportContext:
    names = tuple(config.maturity.stage_names)
    domain = ("national", "")
    dims = dict(codebook.dimensions)
    distribution, territories, stage_profiles = [], [], []
    if maturity is not None and "stage" in maturity.columns:
        total = len(maturity)
        for s in range(len(names)):
            sub = maturity[maturity["stage"] == s]
            distribution.append(
                {
                    "stage": s,
                    "label": _stage_label(names, s),
                    "grid_key": grid.stage_key(s, len(names), _stage_label(names, s)),
                    "n_territories": len(sub),
                    "share": len(sub) / total if total else None,
                }
            )
            means = _means(sub, dims)
            for dim, label in dims.items():
                if dim in means:
                    stage_profiles.append(
                        {
                            "stage": s,
                            "dimension": dim,
                            "label": DIMENSION_SHORT.get(dim, short_label(label)),
                            "score": means[dim],
                            "n_territories": len(sub),
                        }
                    )
        for code, r in mat_rows.items():
            stage = int(r["stage"]) if _num(r.get("stage")) is not None else None
            territories.append(
                {
                    "territory": code,
                    "territory_name": str(r.get("territory_name") or code),
                    "stage": stage,
                    "stage_label": str(r.get("stage_label") or _stage_label(names, stage)),
                    "stage_probability": _num(r.get("stage_probability")),
                    "n": int(_num(r.get("n")) or 0),
                    "is_indicative": bool(r.get("is_indicative") or False),
                }
            )
    matrix = []
    tr = artefacts.transitions
    if tr is not None and not tr.empty:
        counts = tr.groupby(["from_wave", "to_wave", "from_stage", "to_stage"]).size()
        for (fw, tw, fs, ts), n in sorted(counts.items()):
            matrix.append(
                {
                    "from_wave": int(fw),
                    "to_wave": int(tw),
                    "from_stage": int(fs),
                    "to_stage": int(ts),
                    "from_label": _stage_label(names, int(fs)),
                    "to_label": _stage_label(names, int(ts)),
                    "n_territories": int(n),
                }
            )
    headline = _items(
        lookup,
        domain,
        codebook,
        (
            "part_existe",
            "part_evalue_resultats",
            "part_bilan_relation",
            "dyn_savoir_piloter",
            "dyn_animateur_existe",
            "mat_gouv_instance",
            "res_reussite_globale",
            "res_effets_fragilites",
        ),
        config.min_n,
    )
    reliability = []
    rel = artefacts.reliability
    if rel is not None and not rel.empty:
        if "wave" in rel.columns and (rel["wave"] == config.wave).any():
            rel = rel[rel["wave"] == config.wave]
        if "item" in rel.columns:  # one summary row per dimension (item == "")
            rel = rel[rel["item"].fillna("").astype(str) == ""]
        reliability = [
            {
                **_clean(r),
                "label": DIMENSION_SHORT.get(str(r.get("dimension")), r.get("dimension")),
            }
            for r in rel.to_dict(orient="records")
        ]
    ingestion: dict[str, Any] = {}
    if artefacts.ingestion:
        aliases = {
            "n_rows": ("n_rows", "rows_read"),
            "n_valid": ("n_valid", "rows_valid"),
            "n_quarantined": ("n_quarantined", "rows_quarantined"),
            "status": ("status",),
        }
        for key, names in aliases.items():
            for name in names:
                value = artefacts.ingestion.get(name)
                if isinstance(value, int | str) and not isinstance(value, bool):
                    ingestion[key] = value
                    break
    respondents = _respondent_mix(responses, codebook)
    return ReportContext(
        **common,
        territory="",
        territory_name="Ensemble des territoires enquêtés",
        is_national=True,
        identity={"n_territories": len(territories)},
        fragilities=tuple(_fragilities(lookup, domain, codebook, config.min_n, {}, {}, responses)),
        partnership=tuple(_items(lookup, domain, codebook, PARTNERSHIP_ITEMS, config.min_n)),
        dynamic=tuple(_items(lookup, domain, codebook, DYNAMIC_ITEMS, config.min_n)),
        dyn_statut=tuple(_levels(lookup, domain, codebook, "dyn_statut", config.min_n, responses)),
        results=tuple(_items(lookup, domain, codebook, RESULT_ITEMS, config.min_n)),
        nsp=tuple(_nsp_by_dimension(lookup, domain, codebook)),
        respondents=tuple(respondents),
        n_respondents=len(responses),
        n_types=len(respondents),
        declared_distribution=tuple(
            _declared_distribution(lookup, domain, codebook, config.min_n, responses)
        ),
        stage_distribution=tuple(distribution),
        territories=tuple(territories),
        transition_matrix=tuple(matrix),
        headline=tuple(headline),
        stage_profiles=tuple(stage_profiles),
        reliability=tuple(reliability),
        ingestion=ingestion,
        methodology=_methodology(config, artefacts),
    )


def _methodology(config: StudyConfig, artefacts: StudyArtefacts) -> dict[str, Any]:
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
    }
