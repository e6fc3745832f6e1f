"""The national context (« synthèse nationale ») of one wave: :func:`_national`.

Owns the stage distribution and mean stage profiles, the territories with their stage, the
transition matrix between waves, the headline items (the report spec's ``headline``), the
reliability of the dimensions and the ingestion summary; the content sections are the
territory reports' own (:class:`~evalterritoire.report.sections.Sections`) on the national
domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from evalterritoire.report.context import ReportContext, _clean, _num
from evalterritoire.report.quality import _quality
from evalterritoire.report.stages import _means, _stage_label
from evalterritoire.report.wave import _Wave

#: Names an ingestion report may give its counts (current first).
_INGESTION_ALIASES = {
    "n_rows": ("n_rows", "rows_read"),
    "n_valid": ("n_valid", "rows_valid"),
    "n_quarantined": ("n_quarantined", "rows_quarantined"),
    "status": ("status",),
}


def _national(wave: _Wave) -> ReportContext:
    """The national context: every territory together."""
    domain = ("national", "")
    sections, spec, responses = wave.sections, wave.spec, wave.responses
    distribution, stage_profiles = _stage_distribution(wave)
    territories = _territories(wave)
    respondents = sections.respondent_mix(responses)
    content = dict(
        fragilities=tuple(sections.fragilities(domain, {}, {}, responses)),
        partnership=tuple(sections.items(domain, spec.section("partnership"))),
        dynamic=tuple(sections.items(domain, spec.section("dynamic"))),
        status_levels=tuple(sections.levels(domain, spec.status, responses)),
        results=tuple(sections.items(domain, spec.section("results"))),
        nsp=tuple(sections.nsp_by_dimension(domain, wave.labels)),
        declared_distribution=tuple(sections.declared(domain, responses)),
        headline=tuple(sections.items(domain, spec.section("headline"))),
    )
    return ReportContext(
        **wave.common,
        territory="",
        territory_name="Ensemble des territoires enquêtés",
        is_national=True,
        identity={"n_territories": len(territories)},
        **content,
        quality=_quality(content.values()),
        respondents=tuple(respondents),
        n_respondents=len(responses),
        n_types=len(respondents),
        stage_distribution=tuple(distribution),
        territories=tuple(territories),
        transition_matrix=tuple(_transition_matrix(wave)),
        stage_profiles=tuple(stage_profiles),
        reliability=tuple(_reliability(wave)),
        ingestion=_ingestion_summary(wave.artefacts.ingestion),
        methodology=wave.methodology,
    )


def _stage_distribution(wave: _Wave) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Territories per stage (with the grid stage each follows) and each stage's profile."""
    maturity, names = wave.maturity, wave.names
    distribution: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    if maturity is None or "stage" not in maturity.columns:
        return distribution, profiles
    total = len(maturity)
    for s in range(len(names)):
        sub = maturity[maturity["stage"] == s]
        label = _stage_label(names, s)
        distribution.append(
            {
                "stage": s,
                "label": label,
                "grid_key": wave.grid.stage_key(s, len(names), label),
                "n_territories": len(sub),
                "share": len(sub) / total if total else None,
            }
        )
        means = _means(sub, wave.labels)
        profiles.extend(
            {
                "stage": s,
                "dimension": dim,
                "label": short,
                "score": means[dim],
                "n_territories": len(sub),
            }
            for dim, short in wave.labels.items()
            if dim in means
        )
    return distribution, profiles


def _territories(wave: _Wave) -> list[dict[str, Any]]:
    """Every territory with its stage (when stages were computed)."""
    if wave.maturity is None or "stage" not in wave.maturity.columns:
        return []
    out = []
    for code, r in wave.mat_rows.items():
        stage = int(r["stage"]) if _num(r.get("stage")) is not None else None
        out.append(
            {
                "territory": code,
                "territory_name": str(r.get("territory_name") or code),
                "stage": stage,
                "stage_label": str(r.get("stage_label") or _stage_label(wave.names, stage)),
                "stage_probability": _num(r.get("stage_probability")),
                "n": int(_num(r.get("n")) or 0),
                "is_indicative": bool(r.get("is_indicative") or False),
            }
        )
    return out


def _transition_matrix(wave: _Wave) -> list[dict[str, Any]]:
    """Number of territories for each stage change between two waves."""
    tr = wave.artefacts.transitions
    if tr is None or tr.empty:
        return []
    counts = tr.groupby(["from_wave", "to_wave", "from_stage", "to_stage"]).size()
    return [
        {
            "from_wave": int(fw),
            "to_wave": int(tw),
            "from_stage": int(fs),
            "to_stage": int(ts),
            "from_label": _stage_label(wave.names, int(fs)),
            "to_label": _stage_label(wave.names, int(ts)),
            "n_territories": int(n),
        }
        for (fw, tw, fs, ts), n in sorted(counts.items())
    ]


def _reliability(wave: _Wave) -> list[dict[str, Any]]:
    """Reliability (alpha) of each dimension at this wave, one summary row per dimension."""
    rel: pd.DataFrame | None = wave.artefacts.reliability
    if rel is None or rel.empty:
        return []
    if "wave" in rel.columns and (rel["wave"] == wave.config.wave).any():
        rel = rel[rel["wave"] == wave.config.wave]
    if "item" in rel.columns:  # one summary row per dimension (item == "")
        rel = rel[rel["item"].fillna("").astype(str) == ""]
    weighted = _design_alpha(wave.artefacts.dimension_alpha)
    return [
        {
            **_clean(r),
            **weighted.get(str(r.get("dimension")), {}),
            "label": wave.spec.dimension_label(str(r.get("dimension")), r.get("dimension")),
        }
        for r in rel.to_dict(orient="records")
    ]


def _design_alpha(table: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """Dimension → its design-based alpha (``design_alpha``) and 95 % interval (R svycralpha)."""
    if table is None or table.empty:
        return {}
    return {
        str(r["dimension"]): {
            "design_alpha": _num(r.get("estimate")),
            "design_ci_low": _num(r.get("ci_low")),
            "design_ci_high": _num(r.get("ci_high")),
        }
        for r in table.to_dict(orient="records")
    }


def _ingestion_summary(ingestion: Mapping[str, Any] | None) -> dict[str, Any]:
    """Rows read, kept and quarantined, whatever names the ingestion report gives them."""
    out: dict[str, Any] = {}
    for key, names in _INGESTION_ALIASES.items():
        for name in names:
            value = (ingestion or {}).get(name)
            if isinstance(value, int | str) and not isinstance(value, bool):
                out[key] = value
                break
    return out
