"""Diagnostics of the maturity step (``maturity_diagnostics.json``).

Owns the clustering's summary (k and its choice, silhouette, BIC, bootstrap stability,
centroids, stage counts), the agreement of the statistical stages with the declared ones, and
the wave's reliability and transitions summaries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.config import MaturityConfig
from evalterritoire.maturity.agreement import compute_stage_agreement
from evalterritoire.maturity.clustering import MaturityClustering
from evalterritoire.maturity.transitions import compute_transition_matrix


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _stage_diagnostics(
    clf: MaturityClustering,
    dims: list[str],
    cur: pd.DataFrame,
    maturity_cfg: MaturityConfig,
    min_n: int,
) -> dict[str, Any]:
    """The clustering (k, its choice, quality, centroids) and the stages of the wave's table."""
    k, names = clf.n_stages_, clf.stage_names_
    return {
        "n_stages": int(k),
        "n_stages_requested": maturity_cfg.n_stages,
        "stage_names": list(names),
        "k_selection": [
            {key: (_finite(v) if key != "k" else int(v)) for key, v in row.items()}
            for row in clf.selection_.to_dict(orient="records")
        ],
        "silhouette": _finite(clf.silhouette_),
        "bic": _finite(clf.bic_),
        "stability_ari": _finite(clf.stability_),
        "n_bootstrap": len(clf.stability_scores_),
        "centroids": {
            names[s]: {d: float(v) for d, v in zip(dims, clf.centers_[s], strict=True)}
            for s in range(k)
        },
        "stage_counts": {names[s]: int((cur["stage"] == s).sum()) for s in range(k)},
        "n_territories": len(cur),
        "n_indicative": int(cur["is_indicative"].sum()),
        "n_unscored": int(cur["stage"].isna().sum()),
        "min_n": int(min_n),
    }


def _agreement_diagnostics(cur: pd.DataFrame, codebook: Codebook, k: int) -> dict[str, Any]:
    """Agreement of the statistical stages with the declared ones (kappas, confusion)."""
    declared = codebook.column("declared_stage")
    declared_levels = (len(codebook.value_labels(declared)) if declared is not None else k) or k
    agreement = compute_stage_agreement(
        cur["stage"], cur["stage_declared"], k, n_declared=declared_levels
    )
    return {
        "n": agreement["n"],
        "n_missing": agreement["n_missing"],
        "agreement": _finite(agreement["agreement"]),
        "kappa": _finite(agreement["kappa"]),
        "kappa_linear": _finite(agreement["kappa_linear"]),
        "kappa_quadratic": _finite(agreement["kappa_quadratic"]),
        "confusion": agreement["confusion"].to_numpy().tolist(),
    }


def _wave_diagnostics(
    reliability: pd.DataFrame,
    wave: int,
    unreliable: list[str],
    transitions: pd.DataFrame,
    clf: MaturityClustering,
) -> dict[str, Any]:
    """The wave's dimension alphas and the stage transitions that lead to it."""
    rel_cur = reliability[(reliability["wave"] == wave) & (reliability["item"] == "")]
    return {
        "alpha": {r.dimension: _finite(r.alpha) for r in rel_cur.itertuples()},
        "unreliable_dimensions": unreliable,
        "transition_matrix": compute_transition_matrix(transitions, clf.n_stages_)
        .to_numpy()
        .tolist(),
        "n_changed": int(transitions["changed"].sum()),
    }
