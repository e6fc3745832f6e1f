"""Report contexts: one frozen :class:`ReportContext` per territory, plus the national one.

A context holds everything a report shows, already computed, as plain JSON-compatible values,
so that a report template only formats and draws (no wrangling in notebook cells). Contexts
are built from the wave's artefact tables (``docs/artefacts.md``) gathered in a
:class:`StudyArtefacts`; each table may be missing when its step has not run, and the
corresponding sections are then empty rather than invented.

Serialisation is deterministic: :meth:`ReportContext.to_json` sorts keys, rounds floats to six
decimals and contains no timestamp or absolute path, so two runs give byte-identical files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.config import StudyConfig
from evalterritoire.errors import RenderError
from evalterritoire.grid import get_stage_grid, grid_stage_key

__all__ = [
    "BETWEEN_THRESHOLD",
    "SCHEMA_VERSION",
    "SMALL_CELL",
    "ReportContext",
    "StudyArtefacts",
    "build_contexts",
    "compute_descriptive_estimates",
    "short_label",
]

#: Version of the JSON layout of a context (bumped when fields change meaning).
SCHEMA_VERSION = 1
#: Cells below this many respondents are flagged (grid §1: n < 5 « indicatif »).
SMALL_CELL = 5
#: Below this stage probability (or robustness) a territory is « entre deux stades » (grid §6).
BETWEEN_THRESHOLD = 0.6
#: « Paroles d'acteurs »: at most this many free-text excerpts, each cut at this many characters.
FREE_TEXT_MAX = 3
FREE_TEXT_CHARS = 240

TERRITORY_COL = "id_territoire_code"
NAME_COL = "id_territoire_nom"
TYPE_COL = "id_type_repondant"
WEIGHT_COL = "id_poids"
RESPONDENT_COL = "id_repondant"
CONSENT_COL = "id_consentement"

#: Short French labels of the nine maturity dimensions (charts need short axis labels).
DIMENSION_SHORT: dict[str, str] = {
    "positionnement": "Positionnement",
    "modele_socio_eco": "Modèle socio-économique",
    "gouvernance": "Gouvernance",
    "cadre_technique": "Cadre technique",
    "interconnaissance": "Interconnaissance",
    "diagnostic_partage": "Diagnostic partagé",
    "action_collective": "Action collective",
    "evaluation": "Évaluation",
    "essaimage": "Essaimage",
}

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
#: National reference points quoted by the grid (Observatoire des partenariats).
NATIONAL_BENCHMARKS = {
    "part_evalue_resultats": (0.20, "repère national : environ 1 partenariat sur 5"),
    "part_bilan_relation": (0.38, "repère national : 38 %"),
}
_YES_LEVELS = ("1", "1.0", "oui", "True", "true")


def short_label(text: str, *, limit: int = 60) -> str:
    """A short display label: the text before a parenthesis or colon, cut at ``limit``."""
    out = text.split(" (")[0].split(" :")[0].strip()
    if len(out) > limit:
        out = out[: limit - 1].rstrip() + "…"
    return out


@dataclass(frozen=True)
class StudyArtefacts:
    """The wave's artefact tables (each None when its step has not run).

    Attributes
    ----------
    responses : DataFrame or None
        Typed valid rows (``responses.parquet``).
    estimates : DataFrame or None
        Long estimates table (``estimates.parquet``).
    maturity : DataFrame or None
        One row per territory (``maturity.parquet``).
    transitions : DataFrame or None
        Stage changes between waves (``transitions.parquet``).
    models : DataFrame or None
        Tidy coefficient table (``models.parquet``).
    reliability : DataFrame or None
        Reliability (alpha) per dimension (``reliability.parquet``).
    ingestion : dict or None
        Ingestion report (``ingestion.json``).
    context : DataFrame or None
        Territory-level public statistics (``ctx_*`` columns keyed by territory code).
    profiles : DataFrame or None
        Territory profiles of every wave (``profiles.parquet``: ``wave``, ``territory``,
        ``score_<dimension>``), for the wave-to-wave charts.
    """

    responses: pd.DataFrame | None = None
    estimates: pd.DataFrame | None = None
    maturity: pd.DataFrame | None = None
    transitions: pd.DataFrame | None = None
    models: pd.DataFrame | None = None
    reliability: pd.DataFrame | None = None
    ingestion: Mapping[str, Any] | None = None
    context: pd.DataFrame | None = None
    profiles: pd.DataFrame | None = None


@dataclass(frozen=True)
class ReportContext:
    """Everything one report shows (territory or national), as JSON-compatible values.

    Records are dicts of plain values (str, int, float, bool, None, lists). Estimates carry
    ``estimate``, ``ci_low``, ``ci_high``, ``n`` and ``is_small_n`` so that every published
    figure has its n and its interval.
    """

    study_name: str
    wave: int
    territory: str
    territory_name: str
    is_national: bool
    min_n: int
    schema_version: int = SCHEMA_VERSION
    stage_names: tuple[str, ...] = ()
    # identity and context
    identity: Mapping[str, Any] = field(default_factory=dict)
    context_indicators: tuple[Mapping[str, Any], ...] = ()
    composition: tuple[Mapping[str, Any], ...] = ()
    # stage and justification
    stage: int | None = None
    stage_label: str = ""
    #: Grid stage key the report follows (the earlier stage when between two stages).
    grid_key: str = ""
    #: Study stage whose grid the report follows (``stage`` unless between two stages).
    report_stage: int | None = None
    report_stage_label: str = ""
    stage_probability: float | None = None
    stage_robustness: float | None = None
    between_stages: bool = False
    #: The neighbouring stage the territory shares its membership with (between stages).
    other_stage: int | None = None
    other_stage_label: str = ""
    stage_declared: int | None = None
    stage_declared_label: str = ""
    stage_gap: int | None = None
    declared_distribution: tuple[Mapping[str, Any], ...] = ()
    #: A few short excerpts of respondents' free text, shown escaped (« paroles d'acteurs »).
    free_text: tuple[Mapping[str, Any], ...] = ()
    score_range: tuple[float, float] = (1.0, 5.0)
    profile: tuple[Mapping[str, Any], ...] = ()
    # content sections
    fragilities: tuple[Mapping[str, Any], ...] = ()
    partnership: tuple[Mapping[str, Any], ...] = ()
    dynamic: tuple[Mapping[str, Any], ...] = ()
    dyn_statut: tuple[Mapping[str, Any], ...] = ()
    agreement: tuple[Mapping[str, Any], ...] = ()
    milestones: tuple[Mapping[str, Any], ...] = ()
    results: tuple[Mapping[str, Any], ...] = ()
    essaimage: tuple[Mapping[str, Any], ...] = ()
    stage_indicators: tuple[Mapping[str, Any], ...] = ()
    by_type: tuple[Mapping[str, Any], ...] = ()
    freins: tuple[Mapping[str, Any], ...] = ()
    nsp: tuple[Mapping[str, Any], ...] = ()
    respondents: tuple[Mapping[str, Any], ...] = ()
    n_respondents: int = 0
    n_types: int = 0
    is_indicative: bool = False
    small_n: tuple[str, ...] = ()
    models: tuple[Mapping[str, Any], ...] = ()
    history: tuple[Mapping[str, Any], ...] = ()
    wave_scores: tuple[Mapping[str, Any], ...] = ()
    recommendations: tuple[str, ...] = ()
    next_stage: Mapping[str, Any] = field(default_factory=dict)
    # national only
    stage_distribution: tuple[Mapping[str, Any], ...] = ()
    territories: tuple[Mapping[str, Any], ...] = ()
    transition_matrix: tuple[Mapping[str, Any], ...] = ()
    headline: tuple[Mapping[str, Any], ...] = ()
    stage_profiles: tuple[Mapping[str, Any], ...] = ()
    reliability: tuple[Mapping[str, Any], ...] = ()
    ingestion: Mapping[str, Any] = field(default_factory=dict)
    methodology: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> str:
        """Deterministic JSON text (sorted keys, floats rounded to 6 decimals, final newline)."""
        data = _clean(asdict(self))
        return (
            json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True, allow_nan=False) + "\n"
        )

    @classmethod
    def from_json(cls, source: str | Path) -> ReportContext:
        """Load a context from a JSON file path (or from JSON text).

        Raises
        ------
        RenderError
            When the file is missing, is not a context, or has another schema version.
        """
        text = str(source)
        if isinstance(source, Path) or not text.lstrip().startswith("{"):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise RenderError(f"context file {path} cannot be read ({exc.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RenderError(f"context is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise RenderError(
                f"not a report context of schema version {SCHEMA_VERSION}: rebuild the contexts"
            )
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise RenderError(f"report context has unknown field(s): {', '.join(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    # ------------------------------------------------------------------ helpers
    @property
    def title(self) -> str:
        """Report title."""
        if self.is_national:
            return f"{self.study_name} — synthèse {self.wave}"
        return f"{self.territory_name} — rapport d'évaluation {self.wave}"

    @property
    def n_stages(self) -> int:
        """Number of stages of the study."""
        return len(self.stage_names)


def _clean(value: Any) -> Any:
    """JSON-ready copy: numpy scalars → Python, NaN → None, floats rounded, tuples → lists."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            return None
        r = round(f, 6)
        return 0.0 if r == 0 else r
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return value if isinstance(value, str) else str(value)


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


# --------------------------------------------------------------------------- estimates lookup
class _Lookup:
    """Index of the long estimates table by (domain_type, domain, variable, level, statistic)."""

    def __init__(self, estimates: pd.DataFrame | None) -> None:
        self.rows: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self.small: dict[tuple[str, str], set[str]] = {}
        if estimates is None or estimates.empty:
            return
        cols = ["domain_type", "domain", "variable", "level", "statistic"]
        frame = estimates.copy()
        for col in cols:
            frame[col] = frame[col].astype("string").fillna("")
        for rec in frame.to_dict(orient="records"):
            key = tuple(str(rec[c]) for c in cols)
            self.rows[key] = rec  # type: ignore[index]
            if rec.get("is_small_n") is True:
                self.small.setdefault((key[0], key[1]), set()).add(key[2])

    def get(self, domain: tuple[str, str], variable: str, levels: Sequence[str], stat: str):
        for level in levels:
            rec = self.rows.get((domain[0], domain[1], variable, level, stat))
            if rec is not None:
                return rec
        return None

    def proportion(self, domain: tuple[str, str], variable: str, level: str | None = None):
        """Share of a level (``None`` = yes for a binary item; ``var__opt`` handled)."""
        if level is None:
            return self.get(domain, variable, _YES_LEVELS, "proportion")
        rec = self.get(domain, variable, (level,), "proportion")
        if rec is None:
            rec = self.get(domain, f"{variable}__{level}", (*_YES_LEVELS, ""), "proportion")
        if rec is None:
            rec = self.get(domain, f"{variable}__{level}", ("",), "mean")
        return rec

    def mean(self, domain: tuple[str, str], variable: str):
        return self.get(domain, variable, ("",), "mean")

    def nsp(self, domain: tuple[str, str], variable: str):
        return self.get(domain, variable, ("",), "nsp_share")


def _record(
    rec: Mapping[str, Any] | None, variable: str, label: str, min_n: int, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"variable": variable, "label": label, **extra}
    if rec is None:
        out.update(estimate=None, ci_low=None, ci_high=None, se=None, n=0, is_small_n=True)
        return out
    n = int(_num(rec.get("n")) or 0)
    small = rec.get("is_small_n")
    out.update(
        estimate=_num(rec.get("estimate")),
        ci_low=_num(rec.get("ci_low")),
        ci_high=_num(rec.get("ci_high")),
        se=_num(rec.get("se")),
        n=n,
        is_small_n=bool(small) if small is not None and small is not pd.NA else n < min_n,
    )
    return out


# --------------------------------------------------------------------------- descriptive fallback
def _weights(frame: pd.DataFrame) -> pd.Series:
    if WEIGHT_COL in frame.columns:
        w = pd.to_numeric(frame[WEIGHT_COL], errors="coerce").astype("float64")
        return w.fillna(0.0)
    return pd.Series(1.0, index=frame.index)


def compute_descriptive_estimates(
    responses: pd.DataFrame, codebook: Codebook, *, min_n: int, wave: int
) -> pd.DataFrame:
    """Weighted point estimates in the estimates-table layout, without design intervals.

    Used when ``estimates.parquet`` is missing: national and territory domains, means of
    numeric items, shares of each level of coded items, NSP shares. ``se``, ``ci_low``,
    ``ci_high`` are missing (the reports then show no interval rather than a false one).
    """
    weights = _weights(responses).to_numpy(dtype=float)
    if TERRITORY_COL in responses.columns:
        codes, group = np.unique(
            responses[TERRITORY_COL].astype(str).to_numpy(), return_inverse=True
        )
    else:
        codes, group = np.array([], dtype=str), np.zeros(len(responses), dtype=int)
    n_groups = len(codes)
    domains = [("national", "")] + [("territory", str(c)) for c in codes]
    rows: list[dict[str, Any]] = []

    def sums(values: np.ndarray) -> np.ndarray:
        """National total then one total per territory."""
        by_group = np.bincount(group, weights=values, minlength=n_groups) if n_groups else []
        return np.concatenate([[values.sum()], by_group])

    def add(var: str, level: str, stat: str, est: np.ndarray, n: np.ndarray) -> None:
        for (dtype, dom), e, k in zip(domains, est, n, strict=True):
            if k > 0 and np.isfinite(e):
                rows.append(
                    {
                        "wave": wave,
                        "domain_type": dtype,
                        "domain": dom,
                        "variable": var,
                        "level": level,
                        "statistic": stat,
                        "estimate": float(e),
                        "se": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "df": np.nan,
                        "n": int(k),
                        "deff": np.nan,
                        "is_small_n": bool(k < min_n),
                    }
                )

    def nsp_share(var) -> None:
        if not var.special_col or var.special_col not in responses.columns:
            return
        special = responses[var.special_col].astype("string")
        nsp = (special == "nsp").fillna(False).to_numpy(dtype=bool)
        answered = (special.notna() & (special != "filtre")).fillna(False).to_numpy(dtype=bool)
        return nsp, answered

    with np.errstate(invalid="ignore", divide="ignore"):
        for var in codebook.of_type("likert", "rating", "binary", "ordinal", "count", "decimal"):
            if var.id not in responses.columns or var.block == "identification":
                continue
            values = pd.to_numeric(responses[var.id], errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            )
            ok = ~np.isnan(values) & (weights > 0)
            w = np.where(ok, weights, 0.0)
            n = sums(ok.astype(float))
            total = sums(w)
            add(var.id, "", "mean", sums(np.where(ok, values, 0.0) * w) / total, n)
            if var.type in {"binary", "ordinal", "likert"}:
                for level in np.unique(values[ok]):
                    add(
                        var.id,
                        str(int(level)),
                        "proportion",
                        sums(w * (values == level)) / total,
                        n,
                    )
            special = nsp_share(var)
            if special is not None:
                nsp, answered = special
                asked = (ok | answered).astype(float)
                add(var.id, "", "nsp_share", sums(nsp.astype(float)) / sums(asked), sums(asked))
        for var in codebook.of_type("multi_select", "categorical"):
            if var.block == "identification":
                continue
            if var.type == "multi_select":
                cols = [c for c in var.option_cols() if c in responses.columns]
                if not cols:
                    continue
                block = responses[cols].apply(pd.to_numeric, errors="coerce")
                block = block.to_numpy(dtype=float, na_value=np.nan)
                ok = ~np.isnan(block).all(axis=1) & (weights > 0)
                w = np.where(ok, weights, 0.0)
                n, total = sums(ok.astype(float)), sums(w)
                for j, col in enumerate(cols):
                    ticked = np.nan_to_num(block[:, j]) * w
                    add(var.id, col.split("__", 1)[1], "proportion", sums(ticked) / total, n)
            elif var.id in responses.columns:
                values = responses[var.id].astype("string")
                ok = (values.notna().to_numpy(dtype=bool)) & (weights > 0)
                w = np.where(ok, weights, 0.0)
                n, total = sums(ok.astype(float)), sums(w)
                text = values.fillna("").to_numpy(dtype=object)
                for level in sorted(set(text[ok])):
                    add(var.id, str(level), "proportion", sums(w * (text == level)) / total, n)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(
        ["domain_type", "domain", "variable", "level", "statistic"], kind="mergesort"
    ).reset_index(drop=True)


# --------------------------------------------------------------------------- builders
def _stage_label(names: Sequence[str], stage: int | None) -> str:
    if stage is None:
        return ""
    return names[stage] if 0 <= stage < len(names) else f"Stade {stage + 1}"


def _score_range(maturity: pd.DataFrame | None, dims: Iterable[str]) -> tuple[float, float]:
    if maturity is None:
        return (1.0, 5.0)
    cols = [f"score_{d}" for d in dims if f"score_{d}" in maturity.columns]
    if not cols:
        return (1.0, 5.0)
    top = pd.to_numeric(maturity[cols].stack(), errors="coerce").max()
    if pd.notna(top) and top > 5.0 + 1e-9:
        return (0.0, 100.0) if top > 10 else (0.0, 10.0)
    return (1.0, 5.0)


def _profile(
    row: Mapping[str, Any],
    dims: Mapping[str, str],
    centroids: Mapping[str, float],
    national: Mapping[str, float],
) -> list[dict[str, Any]]:
    out = []
    for dim, label in dims.items():
        score = _num(row.get(f"score_{dim}"))
        se = _num(row.get(f"se_{dim}"))
        out.append(
            {
                "dimension": dim,
                "label": DIMENSION_SHORT.get(dim, short_label(label)),
                "score": score,
                "se": se,
                "ci_low": score - 1.96 * se if score is not None and se is not None else None,
                "ci_high": score + 1.96 * se if score is not None and se is not None else None,
                "centroid": centroids.get(dim),
                "national": national.get(dim),
            }
        )
    return out


def _means(frame: pd.DataFrame, dims: Iterable[str]) -> dict[str, float]:
    out = {}
    for dim in dims:
        col = f"score_{dim}"
        if col in frame.columns:
            v = pd.to_numeric(frame[col], errors="coerce").mean()
            if pd.notna(v):
                out[dim] = float(v)
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


def _models(models: pd.DataFrame | None) -> list[dict[str, Any]]:
    from evalterritoire.models import MODEL_COLUMNS

    if models is None or models.empty:
        return []
    shown = MODEL_COLUMNS[: MODEL_COLUMNS.index("flags") + 1]  # model … flags, not fit statistics
    keep = [c for c in shown if c in models.columns and c != "df"]
    frame = models[keep].copy()
    frame = frame[~frame["term"].astype("string").isin(["Intercept", "const"])]
    # models.parquet is already ordered: the study's models in order, terms in formula order
    return [_clean(r) for r in frame.to_dict(orient="records")]


def _declared_distribution(
    lookup: _Lookup, domain, codebook: Codebook, min_n: int, frame: pd.DataFrame | None = None
):
    out = _levels(lookup, domain, codebook, "stade_auto", min_n, frame)
    for rec in out:
        rec["kind"] = "share"
    return out


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
    config: StudyConfig, codebook: Codebook, artefacts: StudyArtefacts
) -> list[ReportContext]:
    """Build the national context and one context per territory.

    Parameters
    ----------
    config : StudyConfig
        The study (name, wave, ``min_n``, stage names).
    codebook : Codebook
        Labels, dimensions, fragility domains.
    artefacts : StudyArtefacts
        The wave's tables; missing tables leave their sections empty.

    Returns
    -------
    list of ReportContext
        National first, then territories sorted by code.

    Raises
    ------
    RenderError
        When neither responses nor the maturity table is available (nothing to report on).
    """
    if artefacts.responses is None and artefacts.maturity is None:
        raise RenderError("no responses and no maturity table: run ingest and maturity first")
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
        _national(config, codebook, artefacts, lookup, responses, maturity, mat_rows, common)
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
            grid_stage_key(report_stage, n_stages, report_label) if report_stage is not None else ""
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
        grid = get_stage_grid(key) if key else None
        milestones = _items(lookup, domain, codebook, MILESTONE_ITEMS, min_n)
        for m in milestones:
            m["done"] = m["estimate"] is not None and m["estimate"] >= 0.5
        next_stage: dict[str, Any] = {}
        if between and stage is not None and other is not None:
            # « vers le stade suivant » : the later of the two stages, with the missing milestones
            later = max(stage, other)
            later_label = stage_label if later == stage else _stage_label(names, later)
            nxt = get_stage_grid(grid_stage_key(later, n_stages, later_label))
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
                            for i in _numeric(codebook, grid.indicators)
                            if i not in MILESTONE_ITEMS
                            # items of the stage's own table are not shown twice
                            and not ("essaimage_table" in grid.charts and i in ESSAIMAGE_ITEMS)
                        ],
                        min_n,
                    )
                )
                if grid
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
                recommendations=grid.recommendations if grid else (),
                next_stage=next_stage,
                methodology=_methodology(config, artefacts),
            )
        )
    return contexts


def _neighbour_stage(
    row: Mapping[str, Any],
    dims: Mapping[str, str],
    centroids: Mapping[int, Mapping[str, float]],
    stage: int,
    n_stages: int,
) -> int | None:
    """The adjacent stage a territory « entre deux stades » shares its membership with.

    The nearer (Euclidean distance over the dimension scores) of the two adjacent stages'
    centroids. Without scores or centroids to compare, the earlier neighbour is chosen: erring
    early protects against judging an initiative too soon (grid §6). ``None`` for a study with
    a single stage.
    """
    candidates = [s for s in (stage - 1, stage + 1) if 0 <= s < n_stages]
    if not candidates:
        return None
    scores = {d: _num(row.get(f"score_{d}")) for d in dims}

    def distance(s: int) -> float | None:
        centre = centroids.get(s, {})
        pairs = [(v, centre[d]) for d, v in scores.items() if v is not None and d in centre]
        return math.fsum((v - c) ** 2 for v, c in pairs) if pairs else None

    dist = {s: distance(s) for s in candidates}
    known = [s for s in candidates if dist[s] is not None]
    if not known:
        return candidates[0]
    return min(known, key=lambda s: (dist[s], s))  # ties go to the earlier stage


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


def _numeric(codebook: Codebook, items: Sequence[str]) -> list[str]:
    kinds = {"likert", "rating", "binary", "count", "decimal"}
    return [i for i in items if i in codebook and codebook[i].type in kinds]


def _option_label(codebook: Codebook, var_id: str, key: str) -> str:
    if not key or var_id not in codebook:
        return key
    return codebook.value_labels(var_id).get(key, key)


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


def _history(artefacts: StudyArtefacts, names: Sequence[str]) -> list[dict[str, Any]]:
    tr = artefacts.transitions
    if tr is None or tr.empty:
        return []
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in tr.to_dict(orient="records"):
        code = str(r["territory"])
        for side in ("from", "to"):
            wave, stage = _num(r.get(f"{side}_wave")), _num(r.get(f"{side}_stage"))
            if wave is None or stage is None:
                continue
            label = r.get(f"{side}_label") or _stage_label(names, int(stage))
            out[(code, int(wave))] = {
                "territory": code,
                "wave": int(wave),
                "stage": int(stage),
                "stage_label": str(label),
            }
    return [out[k] for k in sorted(out)]


def _wave_scores(
    artefacts: StudyArtefacts, wave: int, dims: Mapping[str, str]
) -> list[dict[str, Any]]:
    table = artefacts.profiles if artefacts.profiles is not None else artefacts.maturity
    if table is None or "wave" not in table.columns or "territory" not in table.columns:
        return []
    table = table[table["wave"] <= wave]
    out = []
    for r in table.to_dict(orient="records"):
        n_wave = int(_num(r.get("n")) or 0)
        for dim in dims:
            score = _num(r.get(f"score_{dim}"))
            if score is not None:
                se = _num(r.get(f"se_{dim}"))
                n_dim = _num(r.get(f"n_{dim}"))
                out.append(
                    {
                        "territory": str(r["territory"]),
                        "wave": int(r["wave"]),
                        "dimension": dim,
                        "label": DIMENSION_SHORT.get(dim, dim),
                        "score": score,
                        "se": se,
                        "ci_low": score - 1.96 * se if se is not None else None,
                        "ci_high": score + 1.96 * se if se is not None else None,
                        "n": n_wave,
                        "n_dimension": int(n_dim) if n_dim is not None else n_wave,
                    }
                )
    order = {dim: i for i, dim in enumerate(dims)}
    out.sort(key=lambda s: (s["territory"], order[s["dimension"]], s["wave"]))
    return out if len({s["wave"] for s in out}) > 1 else []


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


def _national(
    config: StudyConfig,
    codebook: Codebook,
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
                    "grid_key": grid_stage_key(s, len(names), _stage_label(names, s)),
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
