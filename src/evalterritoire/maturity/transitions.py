"""Stage transitions between consecutive waves and their transition matrix.

Owns :func:`compute_transitions` (one row per territory staged in two consecutive waves) and
:func:`compute_transition_matrix` (counts or row shares from stage i to stage j).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from evalterritoire.errors import MaturityError


def compute_transitions(stages: pd.DataFrame, stage_names: Sequence[str]) -> pd.DataFrame:
    """Stage changes between consecutive waves.

    Parameters
    ----------
    stages : DataFrame
        ``territory``, ``wave``, ``stage`` (int, NA allowed) for every territory and wave.
    stage_names : sequence of str
        Stage labels, least mature first.

    Returns
    -------
    DataFrame
        ``territory``, ``from_wave``, ``to_wave``, ``from_stage``, ``to_stage``, ``from_label``,
        ``to_label``, ``changed`` for each territory staged in two consecutive waves of the table;
        sorted by ``from_wave``, ``territory``.
    """
    cols = ["territory", "from_wave", "to_wave", "from_stage", "to_stage", "from_label",
            "to_label", "changed"]  # fmt: skip
    missing = {"territory", "wave", "stage"} - set(stages.columns)
    if missing:
        raise MaturityError(f"stage table lacks column(s) {', '.join(sorted(missing))}")
    st = stages[["territory", "wave", "stage"]].dropna()
    st = st.assign(territory=st["territory"].astype("string"), wave=st["wave"].astype(int),
                   stage=st["stage"].astype(int))  # fmt: skip
    waves = sorted(st["wave"].unique().tolist())
    parts = []
    for w0, w1 in itertools.pairwise(waves):
        a = st[st["wave"] == w0].rename(columns={"stage": "from_stage"}).drop(columns="wave")
        b = st[st["wave"] == w1].rename(columns={"stage": "to_stage"}).drop(columns="wave")
        m = a.merge(b, on="territory", how="inner")
        m["from_wave"], m["to_wave"] = w0, w1
        parts.append(m)
    if not parts:
        out = pd.DataFrame({c: pd.Series(dtype="int64") for c in cols})
        for c in ("territory", "from_label", "to_label"):
            out[c] = out[c].astype("string")
        return out.assign(changed=out["changed"].astype(bool))
    out = pd.concat(parts, ignore_index=True)
    names = list(stage_names)

    def label(s: int) -> str:
        return names[s] if 0 <= s < len(names) else f"Stade {s + 1}"

    out["from_label"] = pd.array([label(s) for s in out["from_stage"]], dtype="string")
    out["to_label"] = pd.array([label(s) for s in out["to_stage"]], dtype="string")
    out["changed"] = (out["from_stage"] != out["to_stage"]).astype(bool)
    out = out.astype({"from_wave": "int64", "to_wave": "int64", "from_stage": "int64",
                      "to_stage": "int64"})  # fmt: skip
    return (
        out[cols].sort_values(["from_wave", "territory"], kind="mergesort").reset_index(drop=True)
    )


def compute_transition_matrix(
    transitions: pd.DataFrame, n_stages: int, *, normalize: bool = False
) -> pd.DataFrame:
    """Counts (or row shares) of territories from stage i (rows) to stage j (columns)."""
    mat = np.zeros((n_stages, n_stages))
    for a, b in zip(transitions["from_stage"], transitions["to_stage"], strict=True):
        if 0 <= a < n_stages and 0 <= b < n_stages:
            mat[int(a), int(b)] += 1
    if normalize:
        rows = mat.sum(axis=1, keepdims=True)
        mat = np.divide(mat, rows, out=np.full_like(mat, np.nan), where=rows > 0)
    frame = pd.DataFrame(mat, index=pd.RangeIndex(n_stages, name="from_stage"),
                         columns=pd.RangeIndex(n_stages, name="to_stage"))  # fmt: skip
    return frame if normalize else frame.astype(np.int64)
