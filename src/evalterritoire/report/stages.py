"""Stage and dimension-score records of the report contexts (maturity-derived sections).

Owns what is read from the maturity, transitions and profiles tables: stage labels
(``_stage_label``), a territory's dimension profile against
its stage centroid and the national mean (``_profile``, ``_means``), the neighbouring stage of a
territory « entre deux stades » (``_neighbour_stage``, grid §6), the stage history across waves
(``_history``) and the wave-to-wave dimension scores (``_wave_scores``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from evalterritoire.report.context import StudyArtefacts, _num


def _stage_label(names: Sequence[str], stage: int | None) -> str:
    if stage is None:
        return ""
    return names[stage] if 0 <= stage < len(names) else f"Stade {stage + 1}"


def _profile(
    row: Mapping[str, Any],
    labels: Mapping[str, str],
    centroids: Mapping[str, float],
    national: Mapping[str, float],
) -> list[dict[str, Any]]:
    """A territory's dimension scores (``labels``: dimension → short label) with intervals."""
    out = []
    for dim, label in labels.items():
        score = _num(row.get(f"score_{dim}"))
        se = _num(row.get(f"se_{dim}"))
        out.append(
            {
                "dimension": dim,
                "label": label,
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
    artefacts: StudyArtefacts, wave: int, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Each territory's dimension scores at every wave up to ``wave`` (empty with one wave)."""
    table = artefacts.profiles if artefacts.profiles is not None else artefacts.maturity
    if table is None or "wave" not in table.columns or "territory" not in table.columns:
        return []
    table = table[table["wave"] <= wave]
    out = []
    for r in table.to_dict(orient="records"):
        n_wave = int(_num(r.get("n")) or 0)
        for dim, label in labels.items():
            score = _num(r.get(f"score_{dim}"))
            if score is not None:
                se = _num(r.get(f"se_{dim}"))
                n_dim = _num(r.get(f"n_{dim}"))
                out.append(
                    {
                        "territory": str(r["territory"]),
                        "wave": int(r["wave"]),
                        "dimension": dim,
                        "label": label,
                        "score": score,
                        "se": se,
                        "ci_low": score - 1.96 * se if se is not None else None,
                        "ci_high": score + 1.96 * se if se is not None else None,
                        "n": n_wave,
                        "n_dimension": int(n_dim) if n_dim is not None else n_wave,
                    }
                )
    order = {dim: i for i, dim in enumerate(labels)}
    out.sort(key=lambda s: (s["territory"], order[s["dimension"]], s["wave"]))
    return out if len({s["wave"] for s in out}) > 1 else []
