"""The synthesis over the waves: score trend, stages by wave, who changed stage.

Owns :func:`trend_fields`, the national context's view across the waves the study has run:

- ``score_trend``: the mean over territories of each dimension score at each wave (from the
  profiles of every wave), the national trend of the headline maturity figures;
- ``stage_by_wave``: the number of territories at each stage, wave by wave (stage history);
- ``stage_changes``: the territories whose stage differs between the previous wave and this
  one, with both stages (the transition matrix of the same two waves is
  :attr:`~evalterritoire.report.context.ReportContext.transition_matrix`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from evalterritoire.report.context import _num
from evalterritoire.report.stages import _stage_label
from evalterritoire.report.wave import _Wave

__all__ = ["trend_fields"]


def trend_fields(wave: _Wave) -> dict[str, Any]:
    """``score_trend``, ``stage_by_wave`` and ``stage_changes`` of the national context."""
    return {
        "score_trend": tuple(_score_trend(wave)),
        "stage_by_wave": tuple(_stage_by_wave(wave)),
        "stage_changes": tuple(_stage_changes(wave)),
    }


def _score_trend(wave: _Wave) -> list[dict[str, Any]]:
    profiles = wave.artefacts.profiles
    if profiles is None or "wave" not in profiles.columns:
        return []
    profiles = profiles[profiles["wave"] <= wave.config.wave]
    if profiles["wave"].nunique() < 2:
        return []
    out = []
    for dim, label in wave.labels.items():
        col = f"score_{dim}"
        if col not in profiles.columns:
            continue
        means = pd.to_numeric(profiles[col], errors="coerce").groupby(profiles["wave"]).mean()
        out.extend(
            {"dimension": dim, "label": label, "wave": int(w), "mean": float(m)}
            for w, m in sorted(means.items())
            if _num(m) is not None
        )
    return out


def _stage_by_wave(wave: _Wave) -> list[dict[str, Any]]:
    counts = Counter((h["wave"], h["stage"]) for h in wave.history)
    waves = sorted({w for w, _ in counts})
    return [
        {
            "wave": w,
            "stage": s,
            "label": _stage_label(wave.names, s),
            "n_territories": counts.get((w, s), 0),
        }
        for w in waves
        for s in range(wave.n_stages)
    ]


def _stage_changes(wave: _Wave) -> list[dict[str, Any]]:
    by_code: dict[str, dict[int, dict[str, Any]]] = {}
    for h in wave.history:
        by_code.setdefault(h["territory"], {})[h["wave"]] = h
    now = wave.config.wave
    earlier = sorted({w for stages in by_code.values() for w in stages if w < now})
    if not earlier:
        return []
    before = earlier[-1]
    out = []
    for code in sorted(by_code):
        stages = by_code[code]
        if now in stages and before in stages and stages[now]["stage"] != stages[before]["stage"]:
            row = wave.mat_rows.get(code, {})
            out.append(
                {
                    "territory": code,
                    "name": str(row.get("territory_name") or code),
                    "from_wave": before,
                    "from_label": stages[before]["stage_label"],
                    "to_label": stages[now]["stage_label"],
                    "direction": "up" if stages[now]["stage"] > stages[before]["stage"] else "down",
                }
            )
    return out
