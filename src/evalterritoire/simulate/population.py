"""The synthetic population of territories, drawn once for all waves.

Owns :class:`_Population` (codes, names, levels, regions, strata, ``ctx_*`` context, PSU frame,
fpc, persistent territory effects, the true stage of every territory in every wave and the
territory's declared-stage bias) and :func:`_build_population`, which draws it from the
population generator of :func:`evalterritoire.simulate.waves._generate`. The order of the draws is
part of the byte-identical contract: do not reorder them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evalterritoire.simulate.params import (
    DECLARED_BIAS_P,
    MIX_SD_TERRITORY,
    N_STAGES,
    REGIONS,
    SD_TERRITORY,
    STAGE_SHARES,
    TRANSITIONS,
)

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
    """Draw the population of territories, in the order of the byte-identical contract.

    Geography, codes and names, context, sampling frame, territory effects (size, ``tau``,
    mixed-model intercept), true stages and, last, the declared-stage bias.
    """
    region, niveau, grille, stratum = _geography(rng, n_t)
    codes, names = _codes_and_names(rng, niveau, region)
    context = _context(rng, niveau, grille)
    n_psu, psu_frame, fpc = _sampling_frame(rng, stratum)
    size = np.exp(rng.normal(0, 0.35, n_t))
    tau = rng.normal(0, SD_TERRITORY, (n_t, len(dims)))
    u_mixed = rng.normal(0, MIX_SD_TERRITORY, n_t)
    stages = _true_stages(rng, n_t, n_waves)
    # drawn last so that every other draw is unchanged by it
    declared_bias = rng.choice([-1, 0, 1], n_t, p=DECLARED_BIAS_P)
    return _Population(codes, names, niveau, region, stratum, context, n_psu, psu_frame, fpc,
                       size, tau, u_mixed, stages, declared_bias)  # fmt: skip


def _geography(
    rng: np.random.Generator, n_t: int
) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """Region, administrative level, density grid (1 dense … 7 rural) and stratum."""
    reg_codes = sorted(REGIONS)
    region = [reg_codes[i] for i in rng.integers(0, len(reg_codes), n_t)]
    niv_keys = [k for k, _ in _NIVEAUX]
    niv_p = np.array([p for _, p in _NIVEAUX])
    niveau = [niv_keys[i] for i in rng.choice(len(niv_keys), n_t, p=niv_p / niv_p.sum())]
    grille = rng.choice(np.arange(1, 8), n_t, p=[0.08, 0.12, 0.15, 0.2, 0.2, 0.15, 0.1])
    grille = np.where(np.array(niveau) == "qpv", rng.integers(1, 3, n_t), grille)
    rural = grille >= 5
    stratum = [
        f"{REGIONS[r][1]}_{'rural' if is_r else 'urbain'}"
        for r, is_r in zip(region, rural, strict=True)
    ]
    return region, niveau, grille, stratum


def _codes_and_names(
    rng: np.random.Generator, niveau: Sequence[str], region: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Distinct official-looking codes (by level and département) and French names."""
    codes: list[str] = []
    names: list[str] = []
    used: set[str] = set()
    roots = list(_ROOTS)
    order = rng.permutation(len(roots))
    for i in range(len(niveau)):
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
    return codes, names


def _context(
    rng: np.random.Generator, niveau: Sequence[str], grille: np.ndarray
) -> dict[str, np.ndarray]:
    """The ``ctx_*`` public statistics of each territory (population, poverty, density…)."""
    n_t = len(niveau)
    niveau_arr = np.array(niveau)
    rural = grille >= 5
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
    return {
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


def _sampling_frame(
    rng: np.random.Generator, stratum: Sequence[str]
) -> tuple[np.ndarray, list[np.ndarray], dict[str, int]]:
    """PSUs sampled per territory, the frame size of each PSU, and each stratum's PSU count."""
    n_t = len(stratum)
    n_psu = _clip(2 + rng.poisson(1.5, n_t), 2, 6).astype(int)
    psu_frame = [rng.integers(40, 400, k) for k in n_psu]
    fpc: dict[str, int] = {}
    for h in sorted(set(stratum)):
        sampled = int(sum(n_psu[i] for i in range(n_t) if stratum[i] == h))
        fpc[h] = int(np.ceil(sampled * rng.uniform(2.5, 6.0)))
    return n_psu, psu_frame, fpc


def _true_stages(rng: np.random.Generator, n_t: int, n_waves: int) -> np.ndarray:
    """True stage of every territory in every wave: first-wave shares, then a Markov chain.

    Every stage is present in the first wave (when there are enough territories).
    """
    stages = np.empty((n_waves, n_t), dtype=int)
    first = rng.choice(N_STAGES, n_t, p=STAGE_SHARES)
    if n_t >= N_STAGES:
        first[rng.permutation(n_t)[:N_STAGES]] = np.arange(N_STAGES)
    stages[0] = first
    for w in range(1, n_waves):
        u = rng.random(n_t)
        cum = np.cumsum(TRANSITIONS[stages[w - 1]], axis=1)
        stages[w] = (u[:, None] > cum).sum(axis=1).clip(0, N_STAGES - 1)
    return stages
