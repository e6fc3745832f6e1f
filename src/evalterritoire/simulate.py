"""Synthetic survey waves with known ground truth, for the demo study and for tests.

:func:`simulate_waves` writes, for each wave, a raw export that looks like a real French
LimeSurvey or Sphinx export (``;`` separator, decimal comma, French answer labels, "NSP",
blank cells, multi-select answers joined in one cell, ``dd/mm/yyyy`` dates), the wave's
``study.toml``, the calibration margins and a territory-level context file. The ground truth
(true stage of every territory in every wave, the coefficients that generated the model
outcomes, the fragility ↔ context links, seed and parameters) goes to a separate directory,
``<out>/ground_truth/``, which the pipeline never reads.

Generative model (one latent per respondent and maturity dimension, on the 1–5 Likert scale)::

    eta[i, d] = PROFILE[stage(t), d] + tau[t, d] + drift[t, d, wave]
                + TYPE_EFFECT[type(i)] + BETA_CHOMAGE * (ctx_taux_chomage[t] - 8.5)
                + halo[i] + noise[i, d]
    item j of d: clip(rint(eta[i, d] + offset[j] + noise[i, j]), 1, 5); reverse-coded: 6 - that

Stages follow a Markov chain between consecutive waves (most territories stay, some move up one
stage, a few move down one). Everything is drawn from one seeded :class:`numpy.random.Generator`
tree (``SeedSequence(seed)``), so the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, Variable, load_codebook
from evalterritoire.config import DEFAULT_STAGE_NAMES
from evalterritoire.errors import StudyConfigError

__all__ = ["SimulationResult", "simulate_waves"]

# --------------------------------------------------------------------------- parameters
N_STAGES = 4
#: Share of territories in each stage in the first wave (emergence is the majority situation).
STAGE_SHARES = (0.35, 0.30, 0.22, 0.13)
# Territory-level bias of the declared stage (−1, 0, +1): actors of a territory share a view.
DECLARED_BIAS_P = (0.10, 0.65, 0.25)
#: Stage transition matrix between consecutive waves (rows: from, columns: to).
TRANSITIONS = np.array(
    [
        [0.80, 0.20, 0.00, 0.00],
        [0.06, 0.76, 0.18, 0.00],
        [0.00, 0.06, 0.80, 0.14],
        [0.00, 0.00, 0.08, 0.92],
    ]
)
#: Latent dimension means by stage (rows) — each stage has its own shape, not just a shift.
PROFILE = {
    "positionnement": (2.12, 3.1, 3.55, 4.07),
    "modele_socio_eco": (1.6, 2.12, 3.16, 3.81),
    "gouvernance": (1.73, 3.0, 3.42, 3.81),
    "cadre_technique": (1.86, 2.55, 3.29, 3.68),
    "interconnaissance": (2.55, 3.55, 3.85, 4.2),
    "diagnostic_partage": (2.3, 3.45, 3.81, 4.07),
    "action_collective": (1.73, 2.38, 3.55, 4.2),
    "evaluation": (1.47, 1.99, 3.16, 4.07),
    "essaimage": (1.34, 1.6, 2.25, 3.68),
}
SD_TERRITORY = 0.20  # persistent territory × dimension effect
SD_DRIFT = 0.08  # wave-specific territory × dimension drift
SD_HALO = 0.30  # respondent general factor
SD_RESPONDENT_DIM = 0.30  # respondent × dimension noise
SD_ITEM = 0.55  # respondent × item noise
#: Respondent-type effects on every maturity latent (linear model truth).
TYPE_EFFECT = {
    "elu_maire": 0.25,
    "elu_autre": 0.15,
    "agent_collectivite": 0.20,
    "association": 0.0,
    "entreprise": -0.15,
    "citoyen": -0.30,
    "catalyseur": 0.45,
    "institution_publique": 0.05,
    "acteur_academique": -0.05,
    "financeur_fondation": 0.10,
    "autre": -0.20,
}
#: (sample share, population share) of each respondent type.
TYPE_SHARES = {
    "elu_maire": (0.08, 0.04),
    "elu_autre": (0.09, 0.10),
    "agent_collectivite": (0.11, 0.10),
    "association": (0.20, 0.22),
    "entreprise": (0.14, 0.20),
    "citoyen": (0.16, 0.20),
    "catalyseur": (0.04, 0.01),
    "institution_publique": (0.07, 0.05),
    "acteur_academique": (0.04, 0.03),
    "financeur_fondation": (0.03, 0.02),
    "autre": (0.04, 0.03),
}
BETA_CHOMAGE = -0.05
CHOMAGE_REF = 8.5
#: Logistic truth: logit P(dyn_animateur_existe = Oui) = a[stage] + b * ctx_presence_qpv.
LOGIT_STAGE = (-1.2, 0.2, 1.2, 2.0)
LOGIT_QPV = 0.7
#: Ordinal truth (proportional odds): latent = d[stage] + b * ctx_taux_pauvrete + Logistic(0, 1).
ORD_STAGE = (0.0, 1.5, 3.0, 4.2)
ORD_PAUVRETE = -0.08
ORD_CUTS = (-0.8, 0.8, 2.6)
#: Mixed truth: res_reussite_globale = b[stage] + g * ctx_grille_densite + u[t] + e (0–10).
MIX_STAGE = (3.0, 4.3, 5.5, 6.5)
MIX_DENSITE = 0.25
MIX_SD_TERRITORY = 0.5
MIX_SD_RESIDUAL = 1.4
#: Fragility priority (0–10) ≈ base + slope * (context − centre) + noise.
FRAGILITY_LINKS = {
    "emploi": ("ctx_taux_chomage", 8.5, 0.45),
    "pauvrete_pouvoir_achat": ("ctx_taux_pauvrete", 14.0, 0.20),
    "sante": ("ctx_apl_mg", 3.5, -1.0),
    "numerique": ("ctx_ifn_score", 5.0, 0.50),
    "vieillissement": ("ctx_part_75_plus", 10.0, 0.35),
    "mobilite": ("ctx_grille_densite", 4.0, 0.50),
    "education_jeunesse": ("ctx_part_non_diplomes", 20.0, 0.15),
    "lien_social": ("ctx_part_menages_1_personne", 35.0, 0.10),
}
FRAGILITY_BASE = 5.5
NSP_BASE = 0.03
NSP_EMERGING = 0.12  # extra NSP on steering-type dimensions in emerging territories
NSP_EMERGING_DIMS = ("gouvernance", "modele_socio_eco", "cadre_technique")
BLANK_RATE = 0.02
REFUS_RATE = 0.004

REGIONS = {
    "11": ("Île-de-France", "centre_idf", ("77", "78", "91", "95")),
    "24": ("Centre-Val de Loire", "centre_idf", ("18", "28", "36", "41")),
    "27": ("Bourgogne-Franche-Comté", "nord_est", ("21", "25", "39", "71")),
    "28": ("Normandie", "ouest", ("14", "27", "50", "61")),
    "32": ("Hauts-de-France", "nord_est", ("02", "59", "60", "62")),
    "44": ("Grand Est", "nord_est", ("08", "10", "51", "88")),
    "52": ("Pays de la Loire", "ouest", ("44", "49", "53", "85")),
    "53": ("Bretagne", "ouest", ("22", "29", "35", "56")),
    "75": ("Nouvelle-Aquitaine", "sud_ouest", ("16", "19", "24", "87")),
    "76": ("Occitanie", "sud_ouest", ("09", "12", "46", "81")),
    "84": ("Auvergne-Rhône-Alpes", "sud_est", ("01", "03", "07", "43")),
    "93": ("Provence-Alpes-Côte d'Azur", "sud_est", ("04", "05", "83", "84")),
}
_ROOTS = (
    "Argance", "Lignon", "Vézère", "Serein", "Aubrac", "Brenne", "Ternois", "Perche", "Mauges",
    "Combrailles", "Livradois", "Othe", "Puisaye", "Thiérache", "Boischaut", "Gâtine",
    "Quercy Blanc", "Bocage", "Marais", "Causses", "Vallons", "Trois Rivières", "Haut-Doubs",
    "Sologne", "Val d'Oise", "Plateau", "Coteaux", "Forez", "Bassin Minier", "Pévèle",
    "Ségala", "Morvan", "Pays Fort", "Haute-Lande", "Bresse", "Dombes", "Vexin", "Hurepoix",
    "Caux", "Bray", "Médoc", "Armagnac", "Lauragais", "Minervois", "Diois", "Trièves",
)  # fmt: skip
_NIVEAUX = (("epci", 0.62), ("pays_petr", 0.10), ("commune", 0.12), ("qpv", 0.06),
            ("bassin_vie", 0.10))  # fmt: skip
_COMMENTS = (
    "On commence à peine à se connaître.",
    "Les réunions sont régulières ; la gouvernance se met en place.",
    "Des actions concrètes fonctionnent depuis plusieurs années.",
    'Le "comité de pilotage" se réunit, mais les habitants sont peu associés.',
    "D'autres territoires viennent nous voir pour s'en inspirer.",
    "Le financement de l'animation reste fragile,\nsurtout après 2026.",
    "Difficile à dire : je ne participe qu'aux ateliers.",
)
_TOOLS = ("sphinx", "limesurvey")


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate_waves` wrote.

    Attributes
    ----------
    out_dir : Path
        Root output directory.
    waves : tuple of int
        Simulated waves, in order.
    n_territories, n_respondents, seed : int
        Parameters of the simulation.
    study_files : tuple of Path
        One ``study.toml`` per wave.
    exports : tuple of Path
        One raw export per wave.
    truth_path : Path
        ``ground_truth/truth.json``.
    files : tuple of Path
        Every file written, sorted.
    stage_counts : mapping of int to tuple of int
        Number of territories in each true stage (0..3), per wave.
    """

    out_dir: Path
    waves: tuple[int, ...]
    n_territories: int
    n_respondents: int
    seed: int
    study_files: tuple[Path, ...]
    exports: tuple[Path, ...]
    truth_path: Path
    files: tuple[Path, ...] = ()
    stage_counts: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    def summary(self) -> str:
        """One human-readable paragraph (used by ``evalterritoire simulate``)."""
        lines = [
            f"SYNTHETIC data: {len(self.waves)} wave(s) ({', '.join(map(str, self.waves))}), "
            f"{self.n_territories} territories, {self.n_respondents} respondents per wave, "
            f"seed {self.seed} → {self.out_dir}",
        ]
        for wave, study, export in zip(self.waves, self.study_files, self.exports, strict=True):
            counts = " / ".join(str(c) for c in self.stage_counts.get(wave, ()))
            lines.append(f"  {wave}: {export.name} · {study.name} · true stages 0–3: {counts}")
        lines.append(f"  ground truth (never read by the pipeline): {self.truth_path}")
        lines.append(f"  {len(self.files)} files written")
        return "\n".join(lines)


# --------------------------------------------------------------------------- population
@dataclass
class _Population:
    codes: list[str]
    names: list[str]
    niveau: list[str]
    region: list[str]
    stratum: list[str]
    context: dict[str, np.ndarray]
    n_psu: np.ndarray
    psu_frame: list[np.ndarray]  # actors in the frame of each PSU, per territory
    fpc: dict[str, int]
    size: np.ndarray
    tau: np.ndarray  # (T, D)
    u_mixed: np.ndarray  # (T,)
    stages: np.ndarray  # (W, T)
    declared_bias: np.ndarray  # (T,) shared self-perception of the territory's actors


def _clip(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(x, lo, hi)


def _build_population(
    rng: np.random.Generator, n_t: int, n_waves: int, dims: Sequence[str]
) -> _Population:
    reg_codes = sorted(REGIONS)
    region = [reg_codes[i] for i in rng.integers(0, len(reg_codes), n_t)]
    niv_keys = [k for k, _ in _NIVEAUX]
    niv_p = np.array([p for _, p in _NIVEAUX])
    niveau = [niv_keys[i] for i in rng.choice(len(niv_keys), n_t, p=niv_p / niv_p.sum())]
    grille = rng.choice(np.arange(1, 8), n_t, p=[0.08, 0.12, 0.15, 0.2, 0.2, 0.15, 0.1])
    niveau_arr = np.array(niveau)
    grille = np.where(niveau_arr == "qpv", rng.integers(1, 3, n_t), grille)
    rural = grille >= 5
    stratum = [
        f"{REGIONS[r][1]}_{'rural' if is_r else 'urbain'}"
        for r, is_r in zip(region, rural, strict=True)
    ]

    # codes and names
    codes: list[str] = []
    names: list[str] = []
    used: set[str] = set()
    roots = list(_ROOTS)
    order = rng.permutation(len(roots))
    for i in range(n_t):
        root = roots[order[i % len(roots)]]
        if i >= len(roots):
            root = f"{root} {['Nord', 'Sud', 'Est', 'Ouest', 'Centre'][(i // len(roots)) % 5]}"
        dep = REGIONS[region[i]][2][int(rng.integers(0, 4))]
        while True:
            if niveau[i] == "commune":
                code = f"{dep}{int(rng.integers(1, 999)):03d}"
            elif niveau[i] == "qpv":
                code = f"QP0{dep}{int(rng.integers(1, 99)):03d}"
            else:
                code = f"2000{int(rng.integers(10000, 99999)):05d}"
            if code not in used:
                used.add(code)
                break
        codes.append(code)
        prefix = {
            "epci": "Communauté de communes " if i % 3 else "Communauté d'agglomération ",
            "pays_petr": "PETR Pays ",
            "commune": "Saint-Martin-en-" if i % 2 else "Ville de ",
            "qpv": "Quartier des Peupliers – ",
            "bassin_vie": "Bassin de vie ",
        }[niveau[i]]
        names.append(prefix + root)

    qpv = np.where(niveau_arr == "qpv", 1, (rng.random(n_t) < np.where(rural, 0.1, 0.4)))
    pop_ranges = {
        "epci": (15_000, 250_000),
        "pays_petr": (40_000, 200_000),
        "commune": (2_000, 60_000),
        "qpv": (1_500, 10_000),
        "bassin_vie": (20_000, 120_000),
    }
    lo = np.array([pop_ranges[n][0] for n in niveau], dtype=float)
    hi = np.array([pop_ranges[n][1] for n in niveau], dtype=float)
    population = np.rint(np.exp(rng.uniform(np.log(lo), np.log(hi)))).astype(int)
    pauvrete = _clip(rng.normal(14, 3.5, n_t) + 10 * qpv * (niveau_arr == "qpv"), 6, 40)
    chomage = _clip(rng.normal(8.5, 2.0, n_t), 4, 18)
    context = {
        "ctx_population": population,
        "ctx_grille_densite": grille.astype(int),
        "ctx_taux_pauvrete": np.round(pauvrete, 1),
        "ctx_taux_chomage": np.round(chomage, 1),
        "ctx_edi_quintile": _clip(
            np.rint((pauvrete - 6) / 5 + rng.normal(0, 0.7, n_t)), 1, 5
        ).astype(int),
        "ctx_apl_mg": np.round(_clip(rng.normal(4.0, 0.8, n_t) - 0.25 * (grille - 4), 1, 7), 2),
        "ctx_ifn_score": np.round(_clip(rng.normal(5.0, 1.5, n_t), 1, 10), 2),
        "ctx_part_75_plus": np.round(
            _clip(rng.normal(10, 2.5, n_t) + 0.8 * (grille - 4), 3, 22), 1
        ),
        "ctx_part_menages_sans_voiture": np.round(
            _clip(rng.normal(14, 3, n_t) - 3 * (grille - 4), 3, 45), 1
        ),
        "ctx_part_non_diplomes": np.round(_clip(rng.normal(20, 4.5, n_t), 8, 40), 1),
        "ctx_part_menages_1_personne": np.round(
            _clip(rng.normal(35, 4, n_t) - 2 * (grille - 4), 20, 55), 1
        ),
        "ctx_presence_qpv": qpv.astype(int),
    }

    n_psu = _clip(2 + rng.poisson(1.5, n_t), 2, 6).astype(int)
    psu_frame = [rng.integers(40, 400, k) for k in n_psu]
    fpc: dict[str, int] = {}
    for h in sorted(set(stratum)):
        sampled = int(sum(n_psu[i] for i in range(n_t) if stratum[i] == h))
        fpc[h] = int(np.ceil(sampled * rng.uniform(2.5, 6.0)))
    size = np.exp(rng.normal(0, 0.35, n_t))
    tau = rng.normal(0, SD_TERRITORY, (n_t, len(dims)))
    u_mixed = rng.normal(0, MIX_SD_TERRITORY, n_t)

    stages = np.empty((n_waves, n_t), dtype=int)
    first = rng.choice(N_STAGES, n_t, p=STAGE_SHARES)
    if n_t >= N_STAGES:
        first[rng.permutation(n_t)[:N_STAGES]] = np.arange(N_STAGES)
    stages[0] = first
    for w in range(1, n_waves):
        u = rng.random(n_t)
        cum = np.cumsum(TRANSITIONS[stages[w - 1]], axis=1)
        stages[w] = (u[:, None] > cum).sum(axis=1).clip(0, N_STAGES - 1)
    # drawn last so that every other draw is unchanged by it
    declared_bias = rng.choice([-1, 0, 1], n_t, p=DECLARED_BIAS_P)
    return _Population(codes, names, niveau, region, stratum, context, n_psu, psu_frame, fpc,
                       size, tau, u_mixed, stages, declared_bias)  # fmt: skip


# --------------------------------------------------------------------------- one wave
# Cell states (besides a valid value).
_VALID, _NOT_ASKED, _BLANK, _NSP, _REFUS, _NC = 0, 1, 2, 3, 4, 5


@dataclass
class _Wave:
    wave: int
    n: int
    territory: np.ndarray  # index into population
    psu: np.ndarray  # PSU label
    weight: np.ndarray
    rtype: np.ndarray  # type keys
    role: np.ndarray  # role keys ("" when refused)
    dates: list[date]
    values: dict[str, np.ndarray] = field(default_factory=dict)  # typed values (float/obj)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    multi: dict[str, np.ndarray] = field(default_factory=dict)  # (n, k) 0/1
    latent: np.ndarray | None = None  # (n, D)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _allocate(rng: np.random.Generator, total: int, p: np.ndarray, minimum: int) -> np.ndarray:
    base = np.full(len(p), minimum)
    return base + rng.multinomial(total - minimum * len(p), p / p.sum())


def _simulate_wave(
    rng: np.random.Generator,
    pop: _Population,
    cb: Codebook,
    w_index: int,
    wave: int,
    n_resp: int,
    dims: Sequence[str],
) -> _Wave:
    n_t = len(pop.codes)
    stage_t = pop.stages[w_index]
    counts = _allocate(rng, n_resp, pop.size, 4)
    territory = np.repeat(np.arange(n_t), counts)
    # PSUs: at least 2 respondents in each PSU sampled in the territory.
    psu_idx = np.empty(n_resp, dtype=int)
    psu_frame_size = np.empty(n_resp)
    psu_m = np.empty(n_resp)
    start = 0
    for t in range(n_t):
        k = int(min(pop.n_psu[t], counts[t] // 2))
        alloc = _allocate(rng, int(counts[t]), np.ones(k), 2)
        local = np.repeat(np.arange(k), alloc)
        psu_idx[start : start + counts[t]] = local
        psu_frame_size[start : start + counts[t]] = pop.psu_frame[t][local]
        psu_m[start : start + counts[t]] = alloc[local]
        start += counts[t]
    codes = np.array(pop.codes)
    psu = np.char.add(np.char.add(codes[territory].astype(str), "-"),
                      np.char.zfill((psu_idx + 1).astype(str), 2))  # fmt: skip

    rtype_var = cb.by_role("respondent_type")
    type_keys = list(rtype_var.options) if rtype_var else list(TYPE_SHARES)
    samp = np.array([TYPE_SHARES.get(k, (0.03, 0.03))[0] for k in type_keys])
    popsh = np.array([TYPE_SHARES.get(k, (0.03, 0.03))[1] for k in type_keys])
    tidx = rng.choice(len(type_keys), n_resp, p=samp / samp.sum())
    if n_resp >= len(type_keys):
        tidx[rng.permutation(n_resp)[: len(type_keys)]] = np.arange(len(type_keys))
    rtype = np.array(type_keys)[tidx]

    # Role in the démarche: insiders are more frequent in mature territories.
    st = stage_t[territory]
    orgs = set(cb.respondent_groups.get("organisations", ()))
    is_org = np.isin(rtype, list(orgs))
    p_insider = np.where(
        rtype == "catalyseur",
        0.95,
        np.where(
            is_org, np.array([0.5, 0.6, 0.7, 0.75])[st], np.array([0.08, 0.12, 0.18, 0.22])[st]
        ),
    )
    insider = rng.random(n_resp) < p_insider
    p_pilote = np.select(
        [rtype == "catalyseur", np.isin(rtype, ["agent_collectivite", "elu_maire"])],
        [0.8, 0.3],
        0.08,
    )
    u = rng.random(n_resp)
    role = np.where(
        insider,
        np.where(u < p_pilote, "pilote",
                 np.where(u < p_pilote + (1 - p_pilote) * 0.6, "partenaire_actif",
                          "partenaire_occasionnel")),
        np.where(u < 0.6, "informe", "non_implique"),
    ).astype(object)  # fmt: skip

    # Design weights: inverse inclusion probability × mild non-response adjustment.
    strata = np.array(pop.stratum)[territory]
    n_h = {h: int(sum(pop.n_psu[t] for t in range(n_t) if pop.stratum[t] == h)) for h in pop.fpc}
    stage1 = np.array([pop.fpc[h] / n_h[h] for h in strata])
    type_ratio = (popsh / samp * samp.sum() / popsh.sum())[tidx]
    cell = rng.uniform(0.72, 0.95, (len(pop.fpc), len(type_keys)))
    h_index = {h: i for i, h in enumerate(sorted(pop.fpc))}
    resp_rate = cell[[h_index[h] for h in strata], tidx]
    weight = stage1 * (psu_frame_size / psu_m) * type_ratio / resp_rate

    start_day = date(wave, 3, 1)
    day = np.sort(rng.integers(0, 120, n_resp))
    dates = [start_day + timedelta(days=int(d)) for d in day]
    order_ = rng.permutation(n_resp)  # export rows come in submission order
    territory, psu, weight, rtype, role, tidx = (
        territory[order_], psu[order_], weight[order_], rtype[order_], role[order_], tidx[order_]
    )  # fmt: skip
    wv = _Wave(wave, n_resp, territory, psu, weight, rtype, role, dates)

    # Latent maturity.
    st = stage_t[territory]
    prof = np.array([PROFILE.get(d, (2.0, 2.6, 3.2, 3.7)) for d in dims]).T  # (S, D)
    drift = rng.normal(0, SD_DRIFT, (n_t, len(dims)))
    chom = pop.context["ctx_taux_chomage"][territory]
    type_eff = np.array([TYPE_EFFECT.get(k, 0.0) for k in type_keys])[tidx]
    latent = (
        prof[st]
        + pop.tau[territory]
        + drift[territory]
        + (type_eff + BETA_CHOMAGE * (chom - CHOMAGE_REF))[:, None]
        + rng.normal(0, SD_HALO, n_resp)[:, None]
        + rng.normal(0, SD_RESPONDENT_DIM, (n_resp, len(dims)))
    )
    wv.latent = latent
    general = latent.mean(axis=1)

    groups = _groups(cb, rtype, role)
    _fill_items(rng, wv, pop, cb, dims, groups, st, general)
    return wv


def _groups(cb: Codebook, rtype: np.ndarray, role: np.ndarray) -> dict[str, np.ndarray]:
    rg = cb.respondent_groups
    insiders = np.isin(role, list(rg.get("insider_roles", ("pilote",))))
    return {
        "all": np.ones(len(rtype), dtype=bool),
        "organisations": np.isin(rtype, list(rg.get("organisations", ()))),
        "steering_roles": np.isin(rtype, list(rg.get("steering_roles", ()))),
        "insiders": insiders,
        "porteurs": (role == "pilote") & np.isin(rtype, list(rg.get("porteur_types", ()))),
    }


def _asked(var: Variable, groups: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    if not var.asked_to:
        return np.ones(n, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    for g in var.asked_to:
        mask |= groups.get(g, np.zeros(n, dtype=bool))
    return mask


def _states(
    rng: np.random.Generator, var: Variable, asked: np.ndarray, p_nsp: np.ndarray | float
) -> np.ndarray:
    n = len(asked)
    state = np.where(asked, _VALID, _NOT_ASKED)
    u = rng.random(n)
    p_nsp = np.broadcast_to(np.asarray(p_nsp, dtype=float), (n,))
    if "nsp" in var.special_codes:
        state = np.where(asked & (u < p_nsp), _NSP, state)
    if "refus" in var.special_codes:
        state = np.where(asked & (u >= p_nsp) & (u < p_nsp + REFUS_RATE), _REFUS, state)
    if not var.required:
        blank = rng.random(n) < BLANK_RATE
        state = np.where((state == _VALID) & blank, _BLANK, state)
    return state


def _likert(rng: np.random.Generator, center: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.rint(center + rng.normal(0, SD_ITEM, len(center))), lo, hi)


def _scale_bounds(cb: Codebook, var: Variable) -> tuple[int, int]:
    lo, hi = cb.value_range(var.id)
    return int(lo if lo is not None else 1), int(hi if hi is not None else 5)


def _fill_items(
    rng: np.random.Generator,
    wv: _Wave,
    pop: _Population,
    cb: Codebook,
    dims: Sequence[str],
    groups: Mapping[str, np.ndarray],
    st: np.ndarray,
    general: np.ndarray,
) -> None:
    n = wv.n
    t = wv.territory
    ctx = {k: v[t] for k, v in pop.context.items()}
    dim_pos = {d: i for i, d in enumerate(dims)}
    emerging = st == 0
    fixed = {"id_poids", "id_strate", "id_psu", "id_fpc", "id_type_repondant"}
    # Conditional answers set by earlier items (filters): id -> mask of respondents filtered out.
    filtered: dict[str, np.ndarray] = {}

    for var in cb.of_type():
        if var.type in {"weight", "stratum", "psu", "fpc", "respondent_type"} or var.id in fixed:
            continue
        asked = _asked(var, groups, n)
        if var.id in filtered:
            asked = asked & ~filtered[var.id]
        p_nsp: np.ndarray | float = NSP_BASE
        if var.dimension in NSP_EMERGING_DIMS or var.id == "dyn_savoir_piloter":
            p_nsp = NSP_BASE + NSP_EMERGING * emerging
        state = _states(rng, var, asked, p_nsp)
        lo, hi = _scale_bounds(cb, var)
        vid = var.id
        value: np.ndarray
        if var.type in {"identifier", "territory_code", "date"} or vid.startswith("id_"):
            value = _identification(rng, wv, pop, var, n)
            state = np.where(np.isin(state, (_NSP, _REFUS)), _VALID, state)
        elif var.type == "likert" and var.dimension in dim_pos and not var.milestone:
            value = _likert(rng, wv.latent[:, dim_pos[var.dimension]] + rng.normal(0, 0.15), lo, hi)
            if var.reverse_coded:  # the answer disagrees when maturity is high
                value = lo + hi - value
        elif vid == "dyn_savoir_piloter" and "gouvernance" in dim_pos:
            value = _likert(rng, wv.latent[:, dim_pos["gouvernance"]], lo, hi)
        elif vid == "dyn_animateur_existe":
            p = _sigmoid(np.array(LOGIT_STAGE)[st] + LOGIT_QPV * ctx["ctx_presence_qpv"])
            value = (rng.random(n) < p).astype(float)
            filt = (value == 0) | (state != _VALID)
            filtered["dyn_animateur_porteur"] = filt
        elif vid == "dyn_statut":
            lat = np.array(ORD_STAGE)[st] + ORD_PAUVRETE * ctx["ctx_taux_pauvrete"]
            lat = lat + rng.logistic(0, 1, n)
            value = (lat[:, None] > np.array(ORD_CUTS)[None, :]).sum(axis=1).astype(float)
        elif vid == "res_reussite_globale":
            mean = (np.array(MIX_STAGE)[st] + MIX_DENSITE * ctx["ctx_grille_densite"]
                    + pop.u_mixed[t])  # fmt: skip
            value = np.clip(np.rint(mean + rng.normal(0, MIX_SD_RESIDUAL, n)), lo, hi)
        elif vid == "stade_auto":
            u = rng.random(n)
            shift = np.select([u < 0.12, u < 0.30], [-1, 1], 0)  # slight optimism
            value = np.clip(st + pop.declared_bias[t] + shift, 0, N_STAGES - 1) + lo
            p_nsp = 0.05 + 0.08 * emerging
            state = _states(rng, var, asked, p_nsp)
        elif var.fragility is not None and var.type == "rating":
            value = _fragility(rng, var.fragility, ctx, pop, t, n, lo, hi)
        elif var.type in {"binary"} and var.milestone and var.dimension in dim_pos:
            p = _sigmoid(2.0 * (wv.latent[:, dim_pos[var.dimension]] - 2.8))
            value = (rng.random(n) < p).astype(float)
            if vid == "mat_eval_pratiquee":
                filtered["mat_eval_types"] = (value == 0) | (state != _VALID)
        elif var.type == "count" and var.milestone:
            value = rng.poisson(np.exp(0.3 + 0.55 * st)).astype(float)
        elif var.type == "decimal" and var.milestone:
            value = np.round(rng.gamma(2.0, 0.15 + 0.25 * st), 1)
        elif vid == "part_existe":
            value = (rng.random(n) < 0.8).astype(float)
            out = (value == 0) | (state != _VALID)
            for other in cb.of_type():
                if other.id.startswith("part_") and "filtre" in other.special_codes:
                    filtered[other.id] = out
        elif vid == "dyn_annee_debut":
            value = np.clip(wv.wave - 1 - 2 * st - rng.poisson(1.0, n), 1990, wv.wave).astype(float)
        elif vid == "prof_role_demarche":
            value = wv.role.copy()
            state = np.where(state == _REFUS, _VALID, state)
            state = np.where(state == _NSP, _VALID, state)
        elif vid == "prof_anciennete_demarche":
            value = np.clip(rng.poisson(1 + 1.5 * st), 0, 30).astype(float)
            state = np.where(groups["insiders"], state, np.where(state == _VALID, _NC, state))
        elif vid == "frag_priorite_1":
            value = _top_priority(wv, cb, var, rng)
        else:
            value = _generic(rng, cb, var, n, general, st, lo, hi)
        if var.type == "multi_select":
            wv.multi[vid] = value
            wv.values[vid] = np.zeros(n)
        else:
            wv.values[vid] = value
        if var.type == "text" and not vid.startswith("id_"):
            state = np.where((state == _VALID) & (rng.random(n) < 0.85), _BLANK, state)
        wv.state[vid] = state


def _identification(
    rng: np.random.Generator, wv: _Wave, pop: _Population, var: Variable, n: int
) -> np.ndarray:
    t = wv.territory
    vid = var.id
    if var.type == "identifier":
        return np.arange(1, n + 1).astype(str).astype(object)
    if var.type == "territory_code":
        return np.array(pop.codes, dtype=object)[t]
    if var.type == "date":
        return np.array([d.strftime("%d/%m/%Y") for d in wv.dates], dtype=object)
    table: dict[str, Any] = {
        "id_vague": np.full(n, str(wv.wave), dtype=object),
        "id_annee": np.full(n, float(wv.wave)),
        "id_territoire_nom": np.array(pop.names, dtype=object)[t],
        "id_territoire_niveau": np.array(pop.niveau, dtype=object)[t],
        "id_region_code": np.array(pop.region, dtype=object)[t],
        "id_region_nom": np.array([REGIONS[r][0] for r in pop.region], dtype=object)[t],
        "id_consentement": np.ones(n),
    }
    if vid in table:
        return table[vid]
    if vid == "id_sous_type":
        out = np.full(n, "", dtype=object)
        u = rng.random(n)
        out[wv.rtype == "association"] = np.where(u < 0.45, "asso_employeuse",
                                                  "asso_non_employeuse")[wv.rtype == "association"]  # fmt: skip
        ent = np.array(["ent_tpe", "ent_pme", "ent_eti_ge", "ent_ess"])[
            np.searchsorted([0.5, 0.78, 0.86, 1.0], u)
        ]
        out[wv.rtype == "entreprise"] = ent[wv.rtype == "entreprise"]
        com = np.array(["commune_moins_2000", "commune_2000_19999", "commune_20000_plus"])[
            np.searchsorted([0.55, 0.9, 1.0], u)
        ]
        out[wv.rtype == "elu_maire"] = com[wv.rtype == "elu_maire"]
        return out
    return _generic(rng, None, var, n, np.full(n, 3.0), np.zeros(n, dtype=int), 0, 0)


def _fragility(
    rng: np.random.Generator,
    domain: str,
    ctx: Mapping[str, np.ndarray],
    pop: _Population,
    t: np.ndarray,
    n: int,
    lo: int,
    hi: int,
) -> np.ndarray:
    mean = np.full(n, FRAGILITY_BASE)
    link = FRAGILITY_LINKS.get(domain)
    if link and link[0] in ctx:
        name, centre, slope = link
        mean = mean + slope * (ctx[name] - centre)
    mean = mean + rng.normal(0, 0.5, len(pop.codes))[t]  # territory × domain effect
    return np.clip(np.rint(mean + rng.normal(0, 1.8, n)), lo, hi)


def _top_priority(wv: _Wave, cb: Codebook, var: Variable, rng: np.random.Generator) -> np.ndarray:
    keys = list(var.options)
    scores = np.full((wv.n, len(keys)), -np.inf)
    for j, key in enumerate(keys):
        vid = f"frag_{key}_priorite"
        if vid in wv.values:
            valid = wv.state[vid] == _VALID
            scores[:, j] = np.where(valid, wv.values[vid], -1.0)
    scores = scores + rng.random(scores.shape) * 0.5
    return np.array(keys, dtype=object)[scores.argmax(axis=1)]


def _generic(
    rng: np.random.Generator,
    cb: Codebook | None,
    var: Variable,
    n: int,
    general: np.ndarray,
    st: np.ndarray,
    lo: int,
    hi: int,
) -> np.ndarray:
    if var.type in {"likert", "ordinal"}:
        mid = (lo + hi) / 2
        raw = _likert(rng, mid + 0.7 * (general - 3.0) * (hi - lo) / 4, lo, hi)
        return (lo + hi - raw) if var.reverse_coded else raw
    if var.type == "rating":
        return np.clip(np.rint(5 + 1.2 * (general - 3) + rng.normal(0, 1.8, n)), lo, hi)
    if var.type == "binary":
        return (rng.random(n) < _sigmoid(general - 2.8)).astype(float)
    if var.type in {"categorical", "respondent_type"}:
        keys = list(var.options)
        p = rng.dirichlet(np.full(len(keys), 2.0))
        return np.array(keys, dtype=object)[rng.choice(len(keys), n, p=p)]
    if var.type == "multi_select":
        k = len(var.options)
        p = rng.uniform(0.12, 0.55, k)
        keys = list(var.options)
        if "aucune" in keys:
            p[keys.index("aucune")] = 0.0
        u = rng.random((n, k))
        ticked = u < p[None, :]
        none = ~ticked.any(axis=1)
        ticked[none, np.argmax(p[None, :] - u[none], axis=1)] = True
        if var.max_choices:
            rank = np.where(ticked, rng.random((n, k)), 2.0).argsort(axis=1).argsort(axis=1)
            ticked &= rank < var.max_choices
        return ticked.astype(np.int8)
    if var.type == "count":
        lam = 3.0 + 2.0 * st if var.id.startswith(("dyn_", "part_")) else 2.0
        return np.maximum(rng.poisson(lam, n), max(lo, 0)).astype(float)
    if var.type == "decimal":
        return np.round(rng.gamma(2.0, 1.0, n), 1)
    if var.type == "text":
        return np.array(_COMMENTS, dtype=object)[rng.integers(0, len(_COMMENTS), n)]
    return np.full(n, "", dtype=object)


# --------------------------------------------------------------------------- raw export
_HEADERS = {
    "sphinx": {
        "id_repondant": "N° répondant",
        "id_annee": "Année",
        "id_date_collecte": "Date de réponse",
        "id_territoire_code": "Code territoire",
        "id_territoire_nom": "Territoire",
        "id_type_repondant": "Type de répondant",
        "id_poids": "Pondération",
        "id_strate": "Strate",
        "id_psu": "Grappe",
    },
    "limesurvey": {
        "id_repondant": "Réponse ID",
        "id_date_collecte": "Date de soumission",
        "id_poids": "poids",
    },
}
_SPECIAL_TEXT = {
    "sphinx": {_NSP: "NSP", _REFUS: "Refus", _NC: "Non concerné"},
    "limesurvey": {_NSP: "Ne sait pas", _REFUS: "Ne souhaite pas répondre", _NC: "Sans objet"},
}
_MULTI_SEP = ", "


def _fr_number(values: np.ndarray, decimals: int) -> np.ndarray:
    text = np.char.mod(f"%.{decimals}f", np.asarray(values, dtype=float))
    return np.char.replace(text, ".", ",").astype(object)


def _label_cells(labels: Mapping[Any, str], values: np.ndarray, tool: str) -> np.ndarray:
    if tool == "sphinx":  # full answers; Excel FR turns ' into typographic apostrophes
        labels = {k: v.replace("'", "\u2019") for k, v in labels.items()}
    elif set(labels) == {0, 1}:  # LimeSurvey answer codes: yes/no questions export Y / N
        labels = {1: "Y", 0: "N"}
    else:  # LimeSurvey answer codes
        labels = {k: str(k) for k in labels}
    return pd.Series(values, dtype=object).map(dict(labels)).fillna("").to_numpy(dtype=object)


def _export_column(
    var: Variable, wv: _Wave, pop: _Population, cb: Codebook, tool: str
) -> np.ndarray:
    n = wv.n
    if var.type == "weight":
        return _fr_number(wv.weight, 4)
    if var.type == "stratum":
        return np.array(pop.stratum, dtype=object)[wv.territory]
    if var.type == "psu":
        return wv.psu.astype(object)
    if var.type == "fpc":
        return np.array([str(pop.fpc[h]) for h in pop.stratum], dtype=object)[wv.territory]
    if var.type == "respondent_type":
        return _label_cells(var.options, wv.rtype, tool)
    state = wv.state[var.id]
    value = wv.values[var.id]
    if var.type == "multi_select":
        labels = list(var.options.values()) if tool == "sphinx" else list(var.options)
        if tool == "sphinx":
            labels = [lab.replace("'", "\u2019") for lab in labels]
        ticked = wv.multi[var.id]
        cells = np.array(
            [
                _MULTI_SEP.join(lab for lab, on in zip(labels, row, strict=True) if on)
                for row in ticked
            ],
            dtype=object,
        )
    elif var.options:
        cells = _label_cells(var.options, value, tool)
    elif var.type in {"likert", "ordinal", "binary"} and var.scale in cb.scales:
        codes = np.nan_to_num(np.asarray(value, dtype=float)).astype(int)
        cells = _label_cells(cb.scales[var.scale].values, codes, tool)
    elif var.type in {"rating", "count"}:
        cells = np.char.mod("%d", np.nan_to_num(np.asarray(value, dtype=float))).astype(object)
    elif var.type == "decimal":
        cells = _fr_number(value, 1)
    else:
        cells = np.asarray(value, dtype=object)
    special = _SPECIAL_TEXT[tool]
    out = np.where(state == _VALID, cells, "").astype(object)
    for code, text in special.items():
        out[state == code] = text
    return out[:n]


def _write_export(path: Path, wv: _Wave, pop: _Population, cb: Codebook, tool: str) -> None:
    import csv
    import io

    variables = cb.of_type()
    headers = [_HEADERS[tool].get(v.id, v.id) for v in variables]
    columns = [_export_column(v, wv, pop, cb, tool) for v in variables]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n" if tool == "sphinx" else "\n")
    writer.writerow(headers)
    writer.writerows(zip(*columns, strict=True))
    encoding = "cp1252" if tool == "sphinx" else "utf-8-sig"
    path.write_bytes(buffer.getvalue().encode(encoding))


# --------------------------------------------------------------------------- side files
def _margins(
    rng: np.random.Generator, wv: _Wave, pop: _Population, cb: Codebook
) -> list[tuple[str, str, int]]:
    rtype_var = cb.by_role("respondent_type")
    type_keys = list(rtype_var.options) if rtype_var else sorted(set(wv.rtype))
    by_type = np.array([wv.weight[wv.rtype == k].sum() for k in type_keys])
    by_type = by_type * np.exp(rng.normal(0, 0.04, len(by_type)))  # true totals ≠ HT sums
    grand = float(np.round(by_type.sum(), -1))
    type_tot = _round_to_total(by_type, grand)
    regions = np.array(pop.region)[wv.territory]
    reg_keys = sorted(set(regions))
    by_reg = np.array([wv.weight[regions == r].sum() for r in reg_keys])
    by_reg = by_reg * np.exp(rng.normal(0, 0.04, len(by_reg)))
    reg_tot = _round_to_total(by_reg, grand)
    rows = [("id_type_repondant", k, int(v)) for k, v in zip(type_keys, type_tot, strict=True)]
    rows += [("id_region_code", k, int(v)) for k, v in zip(reg_keys, reg_tot, strict=True)]
    return rows


def _round_to_total(values: np.ndarray, total: float) -> np.ndarray:
    scaled = values / values.sum() * total
    out = np.maximum(np.floor(scaled), 1)
    out[np.argmax(scaled - out)] += total - out.sum()
    return out


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(type(value))


def _model_specs(cb: Codebook) -> list[dict[str, Any]]:
    """The four study models, with the terms of their generating truth."""
    type_keys = (
        sorted(cb.by_role("respondent_type").options) if cb.by_role("respondent_type") else []
    )
    ref = type_keys[0] if type_keys else ""
    dims = [d for d in cb.dimensions if d in PROFILE]
    stage_gap = [float(np.mean([PROFILE[d][s] - PROFILE[d][0] for d in dims])) for s in range(4)]
    specs = [
        {
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
        },
        {
            "name": "animation_identifiee",
            "kind": "logistic",
            "formula": "dyn_animateur_existe ~ C(stage) + ctx_presence_qpv",
            "description": "Existence d'un animateur identifié selon le stade et la présence d'un QPV",
            "truth": {
                "Intercept": LOGIT_STAGE[0],
                **{
                    f"C(stage)[T.{s}]": round(LOGIT_STAGE[s] - LOGIT_STAGE[0], 4)
                    for s in range(1, 4)
                },
                "ctx_presence_qpv": LOGIT_QPV,
            },
            "scale": "log-odds (exact generating model, respondent-level Bernoulli)",
            "needs": ["dyn_animateur_existe", "ctx_presence_qpv"],
        },
        {
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
        },
        {
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
        },
    ]
    known = set(cb.ids)
    return [s for s in specs if all(k in known for k in s["needs"])]


def _study_toml(
    wave: int,
    waves: Sequence[int],
    export_name: str,
    tool: str,
    seed: int,
    specs: Sequence[Mapping[str, Any]],
) -> str:
    previous = [f"../{w}/study.toml" for w in sorted((w for w in waves if w < wave), reverse=True)]
    lines = [
        "# SYNTHETIC demo study written by `evalterritoire simulate` — not real survey data.",
        "[study]",
        f"name = {_toml(f'Étude de démonstration (données synthétiques) — vague {wave}')}",
        f"wave = {wave}",
        'codebook = "default"',
        f"exports = {_toml([export_name])}",
        'context = "contexte_territoires.csv"',
        f"previous_waves = {_toml(previous)}",
        f"random_state = {seed}",
        "min_n = 30",
        'build_dir = "../../build/{wave}"',
        'reports_dir = "../../reports/{wave}"',
        "",
        "[ingest]",
        f"profile = {_toml(tool)}",
        "",
        "[design]",
        'weight = "id_poids"',
        'strata = "id_strate"',
        'psu = "id_psu"',
        'fpc = "id_fpc"',
        'lonely_psu = "fail"',
        "",
        "[calibration]",
        'method = "rake"',
        f"margins = {_toml(f'marges_{wave}.csv')}",
        "",
        "[maturity]",
        "n_stages = 4",
        f"stage_names = {_toml(list(DEFAULT_STAGE_NAMES))}",
        'method = "kmeans"',
        f"reference_wave = {min(waves)}",
    ]
    for spec in specs:
        lines += [
            "",
            "[[models]]",
            f"name = {_toml(spec['name'])}",
            f"kind = {_toml(spec['kind'])}",
        ]
        lines.append(f"formula = {_toml(spec['formula'])}")
        if "groups" in spec:
            lines.append(f"groups = {_toml(spec['groups'])}")
        lines.append(f"description = {_toml(spec['description'])}")
        lines.append("superpopulation = true")
        lines.append("small_sample = true")
    lines += ["", "[report]", 'formats = ["html"]', ""]
    return "\n".join(lines)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    import csv
    import io

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8"))


def _fmt_ctx(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.2f}".rstrip("0").rstrip(".")
    return str(int(value))


_README = """# Demo study — SYNTHETIC data

**Every file under this directory is synthetic.** It was generated by the package's simulator
(`src/evalterritoire/simulate.py`); no real territory, person or organisation is described, and
territory names and codes are invented. Regenerate it byte for byte with:

```
{command}
```

(`make demo-data` runs exactly this.)

## Files

- `<wave>/export_<tool>_<wave>.csv` — the raw export of the wave, as a survey tool would write
  it: `{first}` looks like a Sphinx export (Windows-1252, CRLF, French headers for the
  identification columns, "NSP", typographic apostrophes), later waves like a LimeSurvey export
  (UTF-8 with BOM, item-id headers, "Ne sait pas"). Both use `;`, decimal commas, French answer
  labels, multi-select answers joined with ", " in one cell, `dd/mm/yyyy` dates and blank cells
  for unanswered or routed-out questions.
- `<wave>/study.toml` — the study file of the wave (design columns, raking to the margins,
  4 maturity stages with the first wave as reference, four models: linear, logistic, ordinal,
  mixed).
- `<wave>/marges_<wave>.csv` — known population totals (`variable,level,total`) by respondent
  type and by region, used for raking.
- `<wave>/contexte_territoires.csv` — territory-level public-data-like context (`ctx_*`
  variables of the codebook), one row per territory, UTF-8, `,` and decimal points.
- `ground_truth/truth.json`, `ground_truth/stages.csv` — what the simulator knows and the
  pipeline must recover: true stage of each territory in each wave (0 = Émergence … 3 =
  Essaimage), the coefficients that generated the model outcomes (with their formulas), the
  fragility ↔ context links, the design, the seed and all parameters. The pipeline never reads
  this directory; tests and evaluations do.

## Design

{n_territories} territories in {n_strata} strata (region group × urban/rural); the primary sampling
units are clusters of 2–6 per territory (`id_psu`, nested in territories and strata); `id_fpc` is
the number of PSUs in the stratum's population; `id_poids` is the inverse inclusion probability
with a mild non-response adjustment by stratum × respondent type. About {n_respondents} respondents
per wave, all eleven respondent types.
"""


# --------------------------------------------------------------------------- entry point
def simulate_waves(
    out_dir: str | Path,
    *,
    n_territories: int,
    n_respondents: int,
    waves: Sequence[int],
    seed: int,
    codebook: Codebook | str | Path | None = None,
) -> SimulationResult:
    """Write synthetic raw exports, study files, margins, context and ground truth.

    Parameters
    ----------
    out_dir : str or Path
        Output root; each wave goes to ``<out_dir>/<wave>/`` and the ground truth to
        ``<out_dir>/ground_truth/``.
    n_territories : int
        Number of territories (≥ 4 so that all four stages are present).
    n_respondents : int
        Respondents per wave (≥ 4 per territory).
    waves : sequence of int
        Wave years, e.g. ``[2023, 2024, 2025]`` (distinct).
    seed : int
        Seed of the random generator; the same arguments give byte-identical files.
    codebook : Codebook, path or None
        Codebook describing the instrument (default: the codebook shipped with the package).

    Returns
    -------
    SimulationResult
        Paths written and a :meth:`SimulationResult.summary`.

    Raises
    ------
    StudyConfigError
        When the parameters cannot produce a valid study.
    """
    waves = tuple(int(w) for w in waves)
    if not waves or len(set(waves)) != len(waves) or list(waves) != sorted(waves):
        raise StudyConfigError(f"waves must be distinct increasing years, got {list(waves)}")
    if any(not 1990 <= w <= 2100 for w in waves):
        raise StudyConfigError(f"waves must be years between 1990 and 2100, got {list(waves)}")
    if n_territories < N_STAGES:
        raise StudyConfigError(f"need at least {N_STAGES} territories, got {n_territories}")
    if n_respondents < 4 * n_territories:
        raise StudyConfigError(
            f"need at least 4 respondents per territory ({4 * n_territories}), got {n_respondents}"
        )
    if seed < 0:
        raise StudyConfigError(f"seed must be ≥ 0, got {seed}")
    cb = codebook if isinstance(codebook, Codebook) else load_codebook(codebook)
    out = Path(out_dir)
    data = _generate(cb, n_territories, n_respondents, waves, seed)
    pop: _Population = data["population"]
    written: list[Path] = []
    specs = _model_specs(cb)
    ctx_vars = [v.id for v in cb.variables if v.level == "territory" and v.id in pop.context]

    study_files, exports = [], []
    for i, wave in enumerate(waves):
        wv: _Wave = data["waves"][i]
        tool = _TOOLS[0] if i == 0 and len(waves) > 1 else _TOOLS[1]
        wdir = out / str(wave)
        wdir.mkdir(parents=True, exist_ok=True)
        export = wdir / f"export_{tool}_{wave}.csv"
        _write_export(export, wv, pop, cb, tool)
        margins = wdir / f"marges_{wave}.csv"
        _write_csv(margins, ["variable", "level", "total"], data["margins"][i])
        context = wdir / "contexte_territoires.csv"
        order = np.argsort(pop.codes)
        _write_csv(
            context,
            ["id_territoire_code", *ctx_vars],
            [[pop.codes[t], *(_fmt_ctx(pop.context[c][t]) for c in ctx_vars)] for t in order],
        )
        study = wdir / "study.toml"
        study.write_bytes(_study_toml(wave, waves, export.name, tool, seed, specs).encode("utf-8"))
        written += [export, margins, context, study]
        study_files.append(study)
        exports.append(export)

    gt = out / "ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    stages_csv = gt / "stages.csv"
    rows = sorted(
        (pop.codes[t], wave, int(pop.stages[i, t]))
        for i, wave in enumerate(waves)
        for t in range(n_territories)
    )
    _write_csv(stages_csv, ["territory", "wave", "true_stage"], rows)
    truth_path = gt / "truth.json"
    truth = _truth(cb, pop, waves, seed, n_territories, n_respondents, specs, data)
    truth_path.write_bytes(
        (json.dumps(truth, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")
    )
    readme = out / "README.md"
    command = (
        f"evalterritoire simulate --territories {n_territories} --respondents {n_respondents} "
        f"--waves {','.join(map(str, waves))} --seed {seed} --out {out.name or out}"
    )
    readme.write_bytes(
        _README.format(
            command=command,
            first=waves[0],
            n_territories=n_territories,
            n_strata=len(pop.fpc),
            n_respondents=n_respondents,
        ).encode("utf-8")
    )
    written += [stages_csv, truth_path, readme]
    counts = {
        wave: tuple(int((pop.stages[i] == s).sum()) for s in range(N_STAGES))
        for i, wave in enumerate(waves)
    }
    return SimulationResult(
        out_dir=out,
        waves=waves,
        n_territories=n_territories,
        n_respondents=n_respondents,
        seed=seed,
        study_files=tuple(study_files),
        exports=tuple(exports),
        truth_path=truth_path,
        files=tuple(sorted(written)),
        stage_counts=counts,
    )


def _generate(
    cb: Codebook, n_territories: int, n_respondents: int, waves: Sequence[int], seed: int
) -> dict[str, Any]:
    """All random draws (no I/O): population, waves, margins."""
    dims = list(cb.dimensions)
    seq = np.random.SeedSequence(seed)
    pop_seq, *wave_seqs = seq.spawn(1 + len(waves))
    pop = _build_population(np.random.default_rng(pop_seq), n_territories, len(waves), dims)
    out_waves, margins = [], []
    for i, (wave, ws) in enumerate(zip(waves, wave_seqs, strict=True)):
        rng = np.random.default_rng(ws)
        wv = _simulate_wave(rng, pop, cb, i, wave, n_respondents, dims)
        out_waves.append(wv)
        margins.append(_margins(rng, wv, pop, cb))
    return {"population": pop, "waves": out_waves, "margins": margins, "dims": dims}


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
    dims = data["dims"]
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
        "stage_model": {
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
        },
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
        "territories": [
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
        ],
        "design": {
            "strata_fpc": dict(sorted(pop.fpc.items())),
            "weights": "id_poids = (N_h / n_h) × (PSU frame size / PSU sample size) × "
            "(population share / sample share of the type) / response rate(stratum, type)",
        },
    }
