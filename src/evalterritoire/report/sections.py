"""Content sections of the report contexts, shared by the national and territory reports.

Owns the item catalogues each section shows (partnership, dynamic, results, milestones,
agreement, essaimage, by-type items, national benchmarks, free-text limits) and the builders
turning estimates or responses into section records: item estimates (``_items``), level
distributions (``_levels``, ``_declared_distribution``, ``_composition``, ``_freins``),
fragilities, NSP shares by dimension, agreement distributions, by-type matrix, respondent mix,
identity helpers (``_modal``, ``_median``, ``_option_label``), « paroles d'acteurs »
(``_free_text``) and the model coefficient table (``_models``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.report.context import (
    CONSENT_COL,
    DIMENSION_SHORT,
    RESPONDENT_COL,
    SMALL_CELL,
    TYPE_COL,
    _clean,
    _num,
    short_label,
)
from evalterritoire.report.lookup import _Lookup, _record, _weights

#: « Paroles d'acteurs »: at most this many free-text excerpts, each cut at this many characters.
FREE_TEXT_MAX = 3
FREE_TEXT_CHARS = 240

#: Items shown as agreement distributions (stacked bars with the NSP share visible).
AGREEMENT_ITEMS = (
    "dyn_savoir_piloter",
    "dyn_volonte_politique",
    "dyn_innovation_source",
    "mat_inter_qui_fait_quoi",
    "mat_inter_confiance",
    "mat_inter_nouveaux_liens",
    "mat_diag_langage_commun",
)
#: Milestones (yes/no) shown as a checklist « fait / à faire ».
MILESTONE_ITEMS = (
    "dyn_animateur_existe",
    "dyn_espace_coconstruction",
    "mat_inter_cartographie",
    "mat_diag_realise",
    "mat_gouv_instance",
    "mat_eval_pratiquee",
)
PARTNERSHIP_ITEMS = (
    "part_existe",
    "part_formalisation",
    "part_evalue_resultats",
    "part_bilan_relation",
    "part_satisfaction",
    "part_nb_actifs",
)
DYNAMIC_ITEMS = (
    "dyn_savoir_piloter",
    "dyn_volonte_politique",
    "dyn_innovation_source",
    "mat_inter_nb_rencontres",
    "mat_action_nb_projets",
    "mat_mse_etp_animation",
)
RESULT_ITEMS = (
    "res_synergie",
    "res_decloisonnement",
    "res_benefices_organisation",
    "res_charge_excessive",
    "res_effets_fragilites",
    "res_habitants_beneficient",
    "res_reussite_globale",
)
#: Items split by actor type (benefit / burden / trust matrix).
BY_TYPE_ITEMS = ("res_benefices_organisation", "res_charge_excessive", "mat_inter_confiance")
ESSAIMAGE_ITEMS = (
    "mat_ess_visibilite",
    "mat_ess_transfert",
    "mat_ess_reseaux_pairs",
    "mat_ess_nb_sollicitations",
    "mat_eval_capitalisation",
    "mat_pos_legitimite",
)
#: Codebook items each grid stage looks at first (its « indicateurs du stade » table).
STAGE_INDICATORS: dict[str, tuple[str, ...]] = {
    "emergence": (
        "dyn_statut",
        "dyn_composition",
        "mat_inter_qui_fait_quoi",
        "mat_inter_confiance",
        "mat_inter_nouveaux_liens",
        "mat_inter_nb_rencontres",
        "dyn_animateur_existe",
        "dyn_espace_coconstruction",
        "mat_inter_cartographie",
        "mat_diag_realise",
        "dyn_savoir_piloter",
        "dyn_freins",
        "dyn_innovation_source",
    ),
    "structuration": (
        "mat_gouv_roles_clairs",
        "mat_gouv_decision_partagee",
        "mat_gouv_ouverture",
        "mat_pos_catalyse_vs_operation",
        "mat_pos_articulation",
        "mat_gouv_instance",
        "mat_cadre_engagements_formalises",
        "mat_action_nb_projets",
        "mat_action_passage",
        "mat_action_copilotage",
        "res_synergie",
        "res_benefices_organisation",
        "res_charge_excessive",
    ),
    "consolidation": (
        "res_effets_fragilites",
        "res_habitants_beneficient",
        "res_reussite_globale",
        "mat_action_duree",
        "mat_action_mutualisation",
        "mat_mse_financement_duree",
        "mat_mse_diversite_ressources",
        "mat_cadre_securise",
        "mat_eval_partagee",
        "mat_eval_apprentissage",
        "mat_eval_capitalisation",
        "part_evalue_resultats",
        "part_bilan_relation",
    ),
    "essaimage": (
        "mat_ess_visibilite",
        "mat_ess_transfert",
        "mat_ess_nb_sollicitations",
        "mat_ess_reseaux_pairs",
        "mat_eval_capitalisation",
        "mat_pos_legitimite",
        "res_effets_fragilites",
        "res_habitants_beneficient",
        "res_charge_excessive",
    ),
}
#: National reference points quoted by the grid (Observatoire des partenariats).
NATIONAL_BENCHMARKS = {
    "part_evalue_resultats": (0.20, "repère national : environ 1 partenariat sur 5"),
    "part_bilan_relation": (0.38, "repère national : 38 %"),
}


# ---------------------------------------------------- sections from estimates
def _items(
    lookup: _Lookup, domain, codebook: Codebook, items: Sequence[str], min_n: int
) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if item not in codebook:
            continue
        var = codebook[item]
        if var.type == "binary":
            rec, kind = lookup.proportion(domain, item), "share"
        else:
            rec, kind = lookup.mean(domain, item), "mean"
        scale = codebook.scales.get(var.scale or "")
        scale_max = None
        if scale is not None and var.type in {"likert", "rating"}:
            scale_max = int(scale.max if scale.max is not None else max(scale.values))
        nsp = lookup.nsp(domain, item)
        bench = NATIONAL_BENCHMARKS.get(item)
        out.append(
            _record(
                rec,
                item,
                short_label(var.label_fr, limit=110),
                min_n,
                kind=kind,
                scale_max=scale_max,
                nsp_share=_num(nsp.get("estimate")) if nsp else None,
                benchmark=bench[0] if bench else None,
                benchmark_label=bench[1] if bench else "",
            )
        )
    return out


def _numeric(codebook: Codebook, items: Sequence[str]) -> list[str]:
    kinds = {"likert", "rating", "binary", "count", "decimal"}
    return [i for i in items if i in codebook and codebook[i].type in kinds]


def _levels(
    lookup: _Lookup,
    domain,
    codebook: Codebook,
    var_id: str,
    min_n: int,
    frame: pd.DataFrame | None = None,
):
    if var_id not in codebook:
        return []
    codes = [str(code) for code in codebook.value_labels(var_id)]
    recs = {code: lookup.proportion(domain, var_id, code) for code in codes}
    if all(r is None for r in recs.values()):  # ordinal items are published as means only
        shares, n = _response_shares(frame, var_id, codes)
        if n:
            recs = {c: {"estimate": shares[c], "n": n, "is_small_n": n < min_n} for c in codes}
    found = [r for r in recs.values() if r is not None]
    n = max((int(_num(r.get("n")) or 0) for r in found), default=0)
    out = []
    for code, label in codebook.value_labels(var_id).items():
        rec = _record(recs[str(code)], str(code), short_label(label, limit=60), min_n)
        if recs[str(code)] is None and found:  # a level nobody chose: 0 % of the same n
            rec.update(estimate=0.0, n=n, is_small_n=n < min_n)
        out.append(rec)
    return out


def _response_shares(
    frame: pd.DataFrame | None, var_id: str, codes: Sequence[str]
) -> tuple[dict[str, float], int]:
    """Weighted shares of some codes among valid answers (descriptive, no interval)."""
    if frame is None or var_id not in frame.columns or frame.empty:
        return {}, 0
    values = pd.to_numeric(frame[var_id], errors="coerce")
    w = _weights(frame)
    ok = values.notna() & (w > 0)
    total = float(w[ok].sum())
    if not ok.any() or total <= 0:
        return {}, 0
    shares = {c: float(w[ok & (values == float(c))].sum() / total) for c in codes}
    return shares, int(ok.sum())


def _declared_distribution(
    lookup: _Lookup, domain, codebook: Codebook, min_n: int, frame: pd.DataFrame | None = None
):
    out = _levels(lookup, domain, codebook, "stade_auto", min_n, frame)
    for rec in out:
        rec["kind"] = "share"
    return out


def _composition(lookup: _Lookup, domain, codebook: Codebook, min_n: int):
    if "dyn_composition" not in codebook:
        return []
    var = codebook["dyn_composition"]
    out = []
    for opt, label in var.options.items():
        rec = lookup.proportion(domain, var.id, opt)
        if rec is not None:
            out.append(_record(rec, opt, label, min_n))
    return out


def _freins(lookup: _Lookup, domain, codebook: Codebook, min_n: int) -> list[dict[str, Any]]:
    if "dyn_freins" not in codebook:
        return []
    var = codebook["dyn_freins"]
    out = []
    for opt, label in var.options.items():
        rec = lookup.proportion(domain, var.id, opt)
        if rec is not None:
            out.append(_record(rec, f"{var.id}__{opt}", label, min_n, kind="share"))
    out.sort(key=lambda r: (-(r["estimate"] or 0), r["variable"]))
    return out[:5]


def _fragilities(
    lookup: _Lookup,
    domain,
    codebook: Codebook,
    min_n: int,
    context_row: Mapping[str, Any],
    context_median: Mapping[str, float],
    frame: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    ctx_by_domain: dict[str, list[str]] = {}
    for var in codebook.of_type(level="territory"):
        if var.fragility:
            ctx_by_domain.setdefault(var.fragility, []).append(var.id)
    out = []
    for dom, label in codebook.fragility_domains.items():
        prio_id, alli_id = f"frag_{dom}_priorite", f"frag_{dom}_impact_alliances"
        rec = _record(
            lookup.mean(domain, prio_id),
            prio_id,
            short_label(label.split(",")[0], limit=32),
            min_n,
            domain=dom,
        )
        rec["full_label"] = label
        strong = [lookup.proportion(domain, alli_id, lv) for lv in ("3", "4")]
        if any(s is not None for s in strong):
            rec["alliance_share"] = sum(_num(s.get("estimate")) or 0.0 for s in strong if s)
            rec["alliance_n"] = max(int(_num(s.get("n")) or 0) for s in strong if s)
        else:  # likert items are published as means: share « fort / très fort » from responses
            shares, n = _response_shares(frame, alli_id, ("3", "4"))
            rec["alliance_share"] = sum(shares.values()) if n else None
            rec["alliance_n"] = n
        objective = []
        for ctx_id in ctx_by_domain.get(dom, []):
            value = _num(context_row.get(ctx_id))
            if value is not None:
                objective.append(
                    {
                        "variable": ctx_id,
                        "label": codebook.label(ctx_id),
                        "value": value,
                        "median": context_median.get(ctx_id),
                    }
                )
        rec["objective"] = objective
        if rec["estimate"] is not None or rec["alliance_share"] is not None:
            out.append(rec)
    out.sort(key=lambda r: (-(r["estimate"] if r["estimate"] is not None else -1), r["domain"]))
    return out


def _nsp_by_dimension(lookup: _Lookup, domain, codebook: Codebook) -> list[dict[str, Any]]:
    out = []
    for dim, label in codebook.dimensions.items():
        shares, ns = [], []
        for var in codebook.dimension_items(dim, likert_only=False):
            rec = lookup.nsp(domain, var.id)
            if rec is not None and _num(rec.get("estimate")) is not None:
                shares.append(float(rec["estimate"]))
                ns.append(int(_num(rec.get("n")) or 0))
        if shares:
            out.append(
                {
                    "dimension": dim,
                    "label": DIMENSION_SHORT.get(dim, short_label(label)),
                    "nsp_share": float(np.mean(shares)),
                    "n": max(ns),
                    "n_items": len(shares),
                }
            )
    return out


# ---------------------------------------------------- sections from responses
def _agreement(
    frame: pd.DataFrame, codebook: Codebook, items: Sequence[str]
) -> list[dict[str, Any]]:
    """Weighted distribution of agreement items over levels 1–5 plus NSP (descriptive)."""
    out = []
    w_all = _weights(frame)
    for item in items:
        if item not in frame.columns or item not in codebook:
            continue
        var = codebook[item]
        v = pd.to_numeric(frame[item], errors="coerce")
        special = (
            frame[var.special_col].astype("string")
            if var.special_col and var.special_col in frame.columns
            else pd.Series(pd.NA, index=frame.index, dtype="string")
        )
        nsp = (special == "nsp").fillna(False)
        ok = (v.notna() | nsp) & (w_all > 0)
        total = float(w_all[ok].sum())
        n = int(ok.sum())
        if not n or total <= 0:
            continue
        shares = {
            str(level): float(w_all[ok & (v == level)].sum() / total) for level in range(1, 6)
        }
        shares["nsp"] = float(w_all[ok & nsp].sum() / total)
        out.append(
            {
                "variable": item,
                "label": short_label(var.label_fr, limit=90),
                "shares": shares,
                "n": n,
                "is_small_n": n < SMALL_CELL,
            }
        )
    return out


def _weighted_by_type(
    frame: pd.DataFrame, codebook: Codebook, items: Sequence[str]
) -> list[dict[str, Any]]:
    if TYPE_COL not in frame.columns or frame.empty:
        return []
    labels = codebook.value_labels(TYPE_COL) if TYPE_COL in codebook else {}
    w = _weights(frame)
    out = []
    for rtype, idx in sorted(frame.groupby(TYPE_COL, sort=True).groups.items()):
        rec: dict[str, Any] = {
            "type": str(rtype),
            "label": short_label(labels.get(rtype, str(rtype)), limit=40),
        }
        n_type = 0
        for item in items:
            if item not in frame.columns:
                continue
            v = pd.to_numeric(frame.loc[idx, item], errors="coerce").astype("float64")
            ok = v.notna() & (w.loc[idx] > 0)
            n = int(ok.sum())
            n_type = max(n_type, n)
            rec[item] = float(np.average(v[ok], weights=w.loc[idx][ok])) if n else None
            rec[f"n_{item}"] = n
        rec["n"] = n_type
        rec["is_small_n"] = n_type < SMALL_CELL
        out.append(rec)
    return out


def _respondent_mix(frame: pd.DataFrame, codebook: Codebook) -> list[dict[str, Any]]:
    if TYPE_COL not in frame.columns or frame.empty:
        return []
    labels = codebook.value_labels(TYPE_COL) if TYPE_COL in codebook else {}
    counts = frame[TYPE_COL].astype("string").value_counts(dropna=True)
    total = int(counts.sum())
    out = [
        {
            "type": str(t),
            "label": short_label(labels.get(t, str(t)), limit=50),
            "n": int(c),
            "share": c / total if total else None,
        }
        for t, c in counts.items()
    ]
    out.sort(key=lambda r: (-r["n"], r["type"]))
    return out


def _modal(frame: pd.DataFrame, col: str) -> str:
    if col not in frame.columns:
        return ""
    counts = frame[col].astype("string").dropna().value_counts()
    if counts.empty:
        return ""
    top = counts[counts == counts.max()].index
    return str(sorted(top)[0])


def _median(frame: pd.DataFrame, col: str) -> float | None:
    if col not in frame.columns:
        return None
    v = pd.to_numeric(frame[col], errors="coerce").median()
    return None if pd.isna(v) else float(v)


def _option_label(codebook: Codebook, var_id: str, key: str) -> str:
    if not key or var_id not in codebook:
        return key
    return codebook.value_labels(var_id).get(key, key)


def _natural_key(value: Any) -> tuple[int, int, str]:
    text = str(value)
    return (0, int(text), text) if text.isdigit() else (1, 0, text)


def _free_text(
    frame: pd.DataFrame, codebook: Codebook, n_respondents: int, min_n: int
) -> list[dict[str, Any]]:
    """A few short free-text excerpts (« paroles d'acteurs »), anonymous and deterministic.

    Only for a territory with at least ``min_n`` respondents; only the text is kept (no
    respondent id, type or other identifying column); respondents who did not consent are
    skipped; excerpts are taken in respondent-id order, whitespace-collapsed, de-duplicated and
    cut at :data:`FREE_TEXT_CHARS` characters. The text is raw here and escaped when rendered.
    """
    if frame.empty or n_respondents < min_n:
        return []
    text_vars = [
        v for v in codebook.of_type("text") if v.block != "identification" and v.id in frame.columns
    ]
    if not text_vars:
        return []
    rows = frame
    if CONSENT_COL in rows.columns:
        consent = pd.to_numeric(rows[CONSENT_COL], errors="coerce")
        rows = rows[consent.isna() | (consent > 0)]
    if RESPONDENT_COL in rows.columns:
        ids = rows[RESPONDENT_COL].tolist()
        rows = rows.iloc[sorted(range(len(ids)), key=lambda i: _natural_key(ids[i]))]
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for var in text_vars:
        for value in rows[var.id].tolist():
            if value is None or value is pd.NA or (isinstance(value, float) and value != value):
                continue
            text = " ".join(str(value).split())
            if not text or text.casefold() in seen:
                continue
            seen.add(text.casefold())
            if len(text) > FREE_TEXT_CHARS:
                text = text[: FREE_TEXT_CHARS - 1].rstrip() + "…"
            out.append(
                {"variable": var.id, "question": short_label(var.label_fr, limit=90), "text": text}
            )
            if len(out) >= FREE_TEXT_MAX:
                return out
    return out


# --------------------------------------------------------------------- models
def _models(models: pd.DataFrame | None) -> list[dict[str, Any]]:
    from evalterritoire.models.fit import MODEL_COLUMNS

    if models is None or models.empty:
        return []
    shown = MODEL_COLUMNS[: MODEL_COLUMNS.index("flags") + 1]  # model … flags, not fit statistics
    keep = [c for c in shown if c in models.columns and c != "df"]
    frame = models[keep].copy()
    frame = frame[~frame["term"].astype("string").isin(["Intercept", "const"])]
    # models.parquet is already ordered: the study's models in order, terms in formula order
    return [_clean(r) for r in frame.to_dict(orient="records")]
