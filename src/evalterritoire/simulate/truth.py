"""The ground truth the simulator knows: the study's models and ``truth.json``.

Owns :func:`_model_specs` (the four study models — linear, logistic, ordinal, mixed — with the
coefficients that generated their outcomes, kept to those the codebook can express) and
:func:`_truth` (the ``ground_truth/truth.json`` document: true stages, stage model, models,
fragility links, territories and design). The pipeline never reads it; tests and evaluations do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evalterritoire.codebook import Codebook
from evalterritoire.config import DEFAULT_STAGE_NAMES
from evalterritoire.simulate.params import (
    BETA_CHOMAGE,
    CHOMAGE_REF,
    DECLARED_BIAS_P,
    FRAGILITY_BASE,
    FRAGILITY_LINKS,
    LOGIT_QPV,
    LOGIT_STAGE,
    MIX_DENSITE,
    MIX_SD_RESIDUAL,
    MIX_SD_TERRITORY,
    MIX_STAGE,
    ORD_CUTS,
    ORD_PAUVRETE,
    ORD_STAGE,
    PROFILE,
    SD_DRIFT,
    SD_HALO,
    SD_ITEM,
    SD_RESPONDENT_DIM,
    SD_TERRITORY,
    STAGE_SHARES,
    TRANSITIONS,
    TYPE_EFFECT,
)
from evalterritoire.simulate.population import _Population


# --------------------------------------------------------------------------- ground truth
def _model_specs(cb: Codebook) -> list[dict[str, Any]]:
    """The four study models, with the terms of their generating truth.

    Only the models whose variables (``needs``) the codebook has are kept.
    """
    specs = [_linear_spec(cb), _logistic_spec(), _ordinal_spec(), _mixed_spec()]
    known = set(cb.ids)
    return [s for s in specs if all(k in known for k in s["needs"])]


def _linear_spec(cb: Codebook) -> dict[str, Any]:
    """Global maturity score by stage, respondent type and unemployment (latent scale)."""
    type_keys = sorted(cb.role("respondent_type").options) if cb.role("respondent_type") else []
    ref = type_keys[0] if type_keys else ""
    dims = [d for d in cb.dimensions if d in PROFILE]
    stage_gap = [float(np.mean([PROFILE[d][s] - PROFILE[d][0] for d in dims])) for s in range(4)]
    return {
        "name": "moteurs_maturite",
        "kind": "linear",
        "formula": "score_global ~ C(stage) + C(id_type_repondant) + ctx_taux_chomage",
        "description": "Score global de maturité selon le stade, le type d'acteur et le chômage",
        "truth": {
            "Intercept": round(
                float(np.mean([PROFILE[d][0] for d in dims]))
                + TYPE_EFFECT.get(ref, 0.0)
                - BETA_CHOMAGE * CHOMAGE_REF,
                4,
            ),
            **{f"C(stage)[T.{s}]": round(stage_gap[s], 4) for s in range(1, 4)},
            **{
                f"C(id_type_repondant)[T.{k}]": round(TYPE_EFFECT[k] - TYPE_EFFECT[ref], 4)
                for k in type_keys[1:]
                if k in TYPE_EFFECT and ref in TYPE_EFFECT
            },
            "ctx_taux_chomage": BETA_CHOMAGE,
        },
        "scale": "latent 1–5 scale before rounding/clipping; observed estimates are slightly "
        "attenuated. Reference type = first in sorted order (patsy default).",
        "needs": ["ctx_taux_chomage", "id_type_repondant"],
    }


def _logistic_spec() -> dict[str, Any]:
    """An identified animator, by stage and the presence of a priority neighbourhood."""
    return {
        "name": "animation_identifiee",
        "kind": "logistic",
        "formula": "dyn_animateur_existe ~ C(stage) + ctx_presence_qpv",
        "description": "Existence d'un animateur identifié selon le stade et la présence d'un QPV",
        "truth": {
            "Intercept": LOGIT_STAGE[0],
            **{f"C(stage)[T.{s}]": round(LOGIT_STAGE[s] - LOGIT_STAGE[0], 4) for s in range(1, 4)},
            "ctx_presence_qpv": LOGIT_QPV,
        },
        "scale": "log-odds (exact generating model, respondent-level Bernoulli)",
        "needs": ["dyn_animateur_existe", "ctx_presence_qpv"],
    }


def _ordinal_spec() -> dict[str, Any]:
    """Perceived dynamic of co-construction (cumulative logit), by stage and poverty."""
    return {
        "name": "perception_dynamique",
        "kind": "ordinal",
        "formula": "dyn_statut ~ C(stage) + ctx_taux_pauvrete",
        "description": "Perception de la dynamique de co-construction (logit cumulatif)",
        "truth": {
            **{f"C(stage)[T.{s}]": round(ORD_STAGE[s] - ORD_STAGE[0], 4) for s in range(1, 4)},
            "ctx_taux_pauvrete": ORD_PAUVRETE,
            **{f"cut_{k}/{k + 1}": ORD_CUTS[k] - ORD_STAGE[0] for k in range(3)},
        },
        "scale": "proportional-odds logit: P(dyn_statut > k) = logistic(x'b - cut_k)",
        "needs": ["dyn_statut", "ctx_taux_pauvrete"],
    }


def _mixed_spec() -> dict[str, Any]:
    """Perceived success, by stage and density, with a random territory intercept."""
    return {
        "name": "reussite_percue",
        "kind": "mixed",
        "groups": "id_territoire_code",
        "formula": "res_reussite_globale ~ C(stage) + ctx_grille_densite",
        "description": "Note de réussite perçue, effet aléatoire du territoire",
        "truth": {
            "Intercept": MIX_STAGE[0],
            **{f"C(stage)[T.{s}]": round(MIX_STAGE[s] - MIX_STAGE[0], 4) for s in range(1, 4)},
            "ctx_grille_densite": MIX_DENSITE,
            "sd(territory intercept)": MIX_SD_TERRITORY,
            "sd(residual)": MIX_SD_RESIDUAL,
        },
        "scale": "0–10 rating before rounding/clipping",
        "needs": ["res_reussite_globale", "ctx_grille_densite"],
    }


def _truth(
    cb: Codebook,
    pop: _Population,
    waves: Sequence[int],
    seed: int,
    n_territories: int,
    n_respondents: int,
    specs: Sequence[Mapping[str, Any]],
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``truth.json`` document: parameters, true stages, generating models, territories."""
    return {
        "synthetic": True,
        "generator": "evalterritoire.simulate.simulate_waves",
        "seed": seed,
        "parameters": {
            "n_territories": n_territories,
            "n_respondents": n_respondents,
            "waves": list(waves),
            "codebook": cb.name,
            "codebook_sha256": cb.sha256,
        },
        "stage_names": list(DEFAULT_STAGE_NAMES),
        "stages": {
            str(w): {pop.codes[t]: int(pop.stages[i, t]) for t in range(n_territories)}
            for i, w in enumerate(waves)
        },
        "stage_model": _stage_model(data["dims"]),
        "models": [
            {k: v for k, v in s.items() if k not in {"needs", "description"}} for s in specs
        ],
        "fragility_links": {
            d: {
                "context": c,
                "centre": centre,
                "slope": slope,
                "base": FRAGILITY_BASE,
                "item": f"frag_{d}_priorite",
            }
            for d, (c, centre, slope) in FRAGILITY_LINKS.items()
        },
        "territories": _territories(pop),
        "design": {
            "strata_fpc": dict(sorted(pop.fpc.items())),
            "weights": "id_poids = (N_h / n_h) × (PSU frame size / PSU sample size) × "
            "(population share / sample share of the type) / response rate(stratum, type)",
        },
    }


def _stage_model(dims: Sequence[str]) -> dict[str, Any]:
    """How stages and answers were drawn: shares, transitions, latent means, noise, effects."""
    return {
        "first_wave_shares": list(STAGE_SHARES),
        "transition_matrix": TRANSITIONS.tolist(),
        "profile_latent_means": {d: list(PROFILE[d]) for d in dims if d in PROFILE},
        "sd": {
            "territory": SD_TERRITORY,
            "drift": SD_DRIFT,
            "halo": SD_HALO,
            "respondent_dimension": SD_RESPONDENT_DIM,
            "item": SD_ITEM,
        },
        "type_effects": TYPE_EFFECT,
        "ctx_taux_chomage_effect": BETA_CHOMAGE,
        "ctx_taux_chomage_reference": CHOMAGE_REF,
        "stade_auto": "declared = true stage + territory bias (−1, 0, +1 with P = "
        f"{', '.join(map(str, DECLARED_BIAS_P))}, shared by the territory's actors, "
        "see territories[].declared_bias) + respondent shift (−1 with P = 0.12, +1 with "
        "P = 0.18), clipped to 1..4; NSP 5 % (13 % in emerging territories)",
    }


def _territories(pop: _Population) -> list[dict[str, Any]]:
    """Each territory (by code): name, level, region, stratum, PSUs, declared-stage bias."""
    return [
        {
            "code": pop.codes[t],
            "name": pop.names[t],
            "niveau": pop.niveau[t],
            "region": pop.region[t],
            "stratum": pop.stratum[t],
            "n_psu": int(pop.n_psu[t]),
            "declared_bias": int(pop.declared_bias[t]),
        }
        for t in np.argsort(pop.codes)
    ]
