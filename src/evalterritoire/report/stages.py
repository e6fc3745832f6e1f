"""Stage and dimension-score records of the report contexts (maturity-derived sections).

Owns what is read from the maturity, transitions and profiles tables: stage labels
(``_stage_label``), a territory's dimension profile against its stage centroid and the
national mean (``_profile``: each score a record with the interval of a bounded mean, its
status and, from the estimates table when it holds the scores, the Fay–Herriot estimate where
the direct one is not publishable; ``_means``), the stage membership probabilities
(``_stage_probabilities``), the neighbouring stage of a territory « entre deux stades »
(``_neighbour_stage``, grid §6), the stage history across waves (``_history``) and the
wave-to-wave dimension scores (``_wave_scores``, with their intervals and statuses).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from evalterritoire.config import PublicationConfig
from evalterritoire.estimates import compute_intervals
from evalterritoire.report.context import StudyArtefacts, _num
from evalterritoire.report.lookup import _Lookup, _record, judge


def _stage_label(names: Sequence[str], stage: int | None) -> str:
    if stage is None:
        return ""
    return names[stage] if 0 <= stage < len(names) else f"Stade {stage + 1}"


def _score_rows(
    scores: Sequence[Mapping[str, Any]], score_range: tuple[float, float], rules: PublicationConfig
) -> list[dict[str, Any]]:
    """Dimension scores (``estimate``, ``se``, ``df``, ``n``) as judged estimate rows.

    The interval is that of a bounded mean on the score scale (logit of the rescaled score,
    t with the territory's design df; the normal quantile when the df is unknown).
    """
    if not scores:
        return []
    frame = pd.DataFrame(list(scores))
    lo, hi, method = compute_intervals(
        "bounded_mean",
        frame["estimate"].astype(float),
        frame["se"].astype(float),
        frame["df"].astype(float),
        frame["n"].astype(float),
        low=score_range[0],
        high=score_range[1],
    )
    frame = frame.assign(
        ci_low=lo, ci_high=hi, interval=method, kind="bounded_mean", estimator="direct",
        range_low=score_range[0], range_high=score_range[1],
    )  # fmt: skip
    return judge(frame, rules).to_dict(orient="records")


def _profile(
    row: Mapping[str, Any],
    labels: Mapping[str, str],
    centroids: Mapping[str, float],
    national: Mapping[str, float],
    *,
    score_range: tuple[float, float] = (1.0, 5.0),
    rules: PublicationConfig | None = None,
    lookup: _Lookup | None = None,
    domain: tuple[str, str] | None = None,
    min_n: int = 30,
) -> list[dict[str, Any]]:
    """A territory's dimension scores (``labels``: dimension → short label) as records.

    The estimates table's ``score_<dim>`` rows when it holds them (the Fay–Herriot estimate
    stands in where the direct one is not publishable), else the maturity table's score with
    its design SE and df. ``score`` is the shown value (None when suppressed).
    """
    rules = rules if rules is not None else PublicationConfig()
    n_all = _num(row.get("n")) or 0
    direct = [
        {
            "estimate": _num(row.get(f"score_{dim}")),
            "se": _num(row.get(f"se_{dim}")),
            "df": _num(row.get("df")),
            "n": _num(row.get(f"n_{dim}")) or n_all,
        }
        for dim in labels
    ]
    found = [
        lookup.mean(domain, f"score_{dim}") if lookup is not None and domain is not None else None
        for dim in labels
    ]
    # the maturity table's scores are judged only when the estimates table lacks one of them
    judge_direct = not all(found)
    known = [d for d in direct if d["estimate"] is not None] if judge_direct else []
    judged = iter(_score_rows(known, score_range, rules))
    out = []
    for (dim, label), base, estimated in zip(labels.items(), direct, found, strict=True):
        rec = next(judged) if judge_direct and base["estimate"] is not None else None
        rec = estimated or rec
        record = _record(rec, dim, label, min_n, kind="mean")
        record.update(
            dimension=dim,
            model_variable=f"score_{dim}",
            score=record["estimate"],
            centroid=centroids.get(dim),
            national=national.get(dim),
        )
        out.append(record)
    return out


def _stage_probabilities(row: Mapping[str, Any], names: Sequence[str]) -> list[dict[str, Any]]:
    """The membership probability of every stage (``p_stage_<s>`` of the maturity table)."""
    out = []
    for s, name in enumerate(names):
        p = _num(row.get(f"p_stage_{s}"))
        if p is not None:
            out.append({"stage": s, "label": name, "probability": p})
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
    artefacts: StudyArtefacts,
    wave: int,
    labels: Mapping[str, str],
    *,
    score_range: tuple[float, float] = (1.0, 5.0),
    rules: PublicationConfig | None = None,
) -> list[dict[str, Any]]:
    """Each territory's dimension scores at every wave up to ``wave`` (empty with one wave).

    Each score has the interval of a bounded mean (the wave's territory df) and a status; a
    suppressed score has no value (``score`` None).
    """
    rules = rules if rules is not None else PublicationConfig()
    table = artefacts.profiles if artefacts.profiles is not None else artefacts.maturity
    if table is None or "wave" not in table.columns or "territory" not in table.columns:
        return []
    table = table[table["wave"] <= wave]
    base = []
    for r in table.to_dict(orient="records"):
        n_wave = int(_num(r.get("n")) or 0)
        for dim, label in labels.items():
            score = _num(r.get(f"score_{dim}"))
            if score is None:
                continue
            n_dim = _num(r.get(f"n_{dim}"))
            base.append(
                {
                    "territory": str(r["territory"]),
                    "wave": int(r["wave"]),
                    "dimension": dim,
                    "label": label,
                    "estimate": score,
                    "se": _num(r.get(f"se_{dim}")),
                    "df": _num(r.get("df")),
                    "n": int(n_dim) if n_dim is not None else n_wave,
                    "n_wave": n_wave,
                }
            )
    out = []
    for rec in _score_rows(base, score_range, rules):
        record = _record(rec, rec["dimension"], rec["label"], 0)
        record.update(
            territory=rec["territory"],
            wave=rec["wave"],
            dimension=rec["dimension"],
            score=record["estimate"],
            n=rec["n_wave"],
            n_dimension=rec["n"],
        )
        out.append(record)
    order = {dim: i for i, dim in enumerate(labels)}
    out.sort(key=lambda s: (s["territory"], order[s["dimension"]], s["wave"]))
    return out if len({s["wave"] for s in out}) > 1 else []
