"""One simulated wave: respondents, design weights, latent maturity and every answer.

Owns the cell states (valid, not asked, blank, NSP, refusal, not concerned), :class:`_Wave` and
:func:`_simulate_wave`, which draws the respondents of a wave (territory, PSU, respondent type,
role in the démarche, dates, design weights) and their latent maturity, then
:func:`_fill_items` with the generating model of each answer: Likert items from the latent,
the logistic / ordinal / mixed model outcomes, the declared stage, fragility priorities linked
to the context, milestones, routing filters and generic answers for the other variables. No
I/O; the order of the draws is part of the byte-identical contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from evalterritoire.codebook import Codebook, Variable
from evalterritoire.simulate.params import (
    BETA_CHOMAGE,
    BLANK_RATE,
    CHOMAGE_REF,
    FRAGILITY_BASE,
    FRAGILITY_LINKS,
    LOGIT_QPV,
    LOGIT_STAGE,
    MIX_DENSITE,
    MIX_SD_RESIDUAL,
    MIX_STAGE,
    N_STAGES,
    NSP_BASE,
    NSP_EMERGING,
    NSP_EMERGING_DIMS,
    ORD_CUTS,
    ORD_PAUVRETE,
    ORD_STAGE,
    PROFILE,
    REFUS_RATE,
    REGIONS,
    SD_DRIFT,
    SD_HALO,
    SD_ITEM,
    SD_RESPONDENT_DIM,
    TYPE_EFFECT,
    TYPE_SHARES,
)
from evalterritoire.simulate.population import _Population

# --------------------------------------------------------------------------- one wave
# Cell states (besides a valid value).
_VALID, _NOT_ASKED, _BLANK, _NSP, _REFUS, _NC = 0, 1, 2, 3, 4, 5

_COMMENTS = (
    "On commence à peine à se connaître.",
    "Les réunions sont régulières ; la gouvernance se met en place.",
    "Des actions concrètes fonctionnent depuis plusieurs années.",
    'Le "comité de pilotage" se réunit, mais les habitants sont peu associés.',
    "D'autres territoires viennent nous voir pour s'en inspirer.",
    "Le financement de l'animation reste fragile,\nsurtout après 2026.",
    "Difficile à dire : je ne participe qu'aux ateliers.",
)


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
    """Draw one wave, in the order of the byte-identical contract.

    Respondents per territory, their PSUs, types, roles in the démarche, design weights and
    submission dates; rows shuffled into submission order; latent maturity; every answer.
    """
    stage_t = pop.stages[w_index]
    counts = _allocate(rng, n_resp, pop.size, 4)
    territory = np.repeat(np.arange(len(pop.codes)), counts)
    psu, psu_frame_size, psu_m = _sample_psus(rng, pop, counts)
    rtype_var = cb.role("respondent_type")
    type_keys = list(rtype_var.options) if rtype_var else list(TYPE_SHARES)
    samp = np.array([TYPE_SHARES.get(k, (0.03, 0.03))[0] for k in type_keys])
    popsh = np.array([TYPE_SHARES.get(k, (0.03, 0.03))[1] for k in type_keys])
    tidx = rng.choice(len(type_keys), n_resp, p=samp / samp.sum())
    if n_resp >= len(type_keys):
        tidx[rng.permutation(n_resp)[: len(type_keys)]] = np.arange(len(type_keys))
    rtype = np.array(type_keys)[tidx]
    role = _roles(rng, cb, rtype, stage_t[territory])
    weight = _design_weights(rng, pop, territory, tidx, (samp, popsh), psu_frame_size / psu_m)
    start_day = date(wave, 3, 1)
    day = np.sort(rng.integers(0, 120, n_resp))
    dates = [start_day + timedelta(days=int(d)) for d in day]
    order_ = rng.permutation(n_resp)  # export rows come in submission order
    territory, psu, weight, rtype, role, tidx = (
        territory[order_], psu[order_], weight[order_], rtype[order_], role[order_], tidx[order_]
    )  # fmt: skip
    wv = _Wave(wave, n_resp, territory, psu, weight, rtype, role, dates)
    st = stage_t[territory]
    type_eff = np.array([TYPE_EFFECT.get(k, 0.0) for k in type_keys])[tidx]
    wv.latent = _latent(rng, pop, territory, st, type_eff, dims)
    groups = _groups(cb, rtype, role)
    _fill_items(rng, wv, pop, cb, dims, groups, st, wv.latent.mean(axis=1))
    return wv


def _sample_psus(
    rng: np.random.Generator, pop: _Population, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each respondent's PSU label, its PSU's frame size and sample size.

    Respondents are spread over the PSUs sampled in their territory, at least 2 per PSU.
    """
    n_resp = int(counts.sum())
    psu_idx = np.empty(n_resp, dtype=int)
    psu_frame_size = np.empty(n_resp)
    psu_m = np.empty(n_resp)
    start = 0
    for t in range(len(pop.codes)):
        k = int(min(pop.n_psu[t], counts[t] // 2))
        alloc = _allocate(rng, int(counts[t]), np.ones(k), 2)
        local = np.repeat(np.arange(k), alloc)
        psu_idx[start : start + counts[t]] = local
        psu_frame_size[start : start + counts[t]] = pop.psu_frame[t][local]
        psu_m[start : start + counts[t]] = alloc[local]
        start += counts[t]
    territory = np.repeat(np.arange(len(pop.codes)), counts)
    codes = np.array(pop.codes)
    psu = np.char.add(np.char.add(codes[territory].astype(str), "-"),
                      np.char.zfill((psu_idx + 1).astype(str), 2))  # fmt: skip
    return psu, psu_frame_size, psu_m


def _roles(rng: np.random.Generator, cb: Codebook, rtype: np.ndarray, st: np.ndarray) -> np.ndarray:
    """Role in the démarche: insiders are more frequent in mature territories."""
    n_resp = len(rtype)
    is_org = cb.group_masks({"respondent_type": rtype})["organisations"]
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
    return np.where(
        insider,
        np.where(u < p_pilote, "pilote",
                 np.where(u < p_pilote + (1 - p_pilote) * 0.6, "partenaire_actif",
                          "partenaire_occasionnel")),
        np.where(u < 0.6, "informe", "non_implique"),
    ).astype(object)  # fmt: skip


def _design_weights(
    rng: np.random.Generator,
    pop: _Population,
    territory: np.ndarray,
    tidx: np.ndarray,
    type_shares: tuple[np.ndarray, np.ndarray],
    psu_ratio: np.ndarray,
) -> np.ndarray:
    """Design weights: inverse inclusion probability × mild non-response adjustment.

    Stratum (PSUs in the frame / PSUs sampled) × PSU (frame size / respondents) × respondent
    type (population share / sample share) / response rate of the (stratum, type) cell.
    """
    samp, popsh = type_shares
    n_t = len(pop.codes)
    strata = np.array(pop.stratum)[territory]
    n_h = {h: int(sum(pop.n_psu[t] for t in range(n_t) if pop.stratum[t] == h)) for h in pop.fpc}
    stage1 = np.array([pop.fpc[h] / n_h[h] for h in strata])
    type_ratio = (popsh / samp * samp.sum() / popsh.sum())[tidx]
    cell = rng.uniform(0.72, 0.95, (len(pop.fpc), len(samp)))
    h_index = {h: i for i, h in enumerate(sorted(pop.fpc))}
    resp_rate = cell[[h_index[h] for h in strata], tidx]
    return stage1 * psu_ratio * type_ratio / resp_rate


def _latent(
    rng: np.random.Generator,
    pop: _Population,
    territory: np.ndarray,
    st: np.ndarray,
    type_eff: np.ndarray,
    dims: Sequence[str],
) -> np.ndarray:
    """Latent maturity (respondent × dimension), as in :mod:`evalterritoire.simulate.waves`."""
    n_resp = len(territory)
    prof = np.array([PROFILE.get(d, (2.0, 2.6, 3.2, 3.7)) for d in dims]).T  # (S, D)
    drift = rng.normal(0, SD_DRIFT, (len(pop.codes), len(dims)))
    chom = pop.context["ctx_taux_chomage"][territory]
    return (
        prof[st]
        + pop.tau[territory]
        + drift[territory]
        + (type_eff + BETA_CHOMAGE * (chom - CHOMAGE_REF))[:, None]
        + rng.normal(0, SD_HALO, n_resp)[:, None]
        + rng.normal(0, SD_RESPONDENT_DIM, (n_resp, len(dims)))
    )


def _groups(cb: Codebook, rtype: np.ndarray, role: np.ndarray) -> dict[str, np.ndarray]:
    return cb.group_masks({"respondent_type": rtype, "respondent_role": role})


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


#: Design columns and the respondent type: drawn with the respondents, not as answers.
_NOT_ANSWERS_TYPES = frozenset({"weight", "stratum", "psu", "fpc", "respondent_type"})
_NOT_ANSWERS_IDS = frozenset({"id_poids", "id_strate", "id_psu", "id_fpc", "id_type_repondant"})
#: What a kind of item returns: (values, states), or None when the variable is not of its kind.
_Drawn = tuple[np.ndarray, np.ndarray] | None


@dataclass
class _Answering:
    """What the answers of a wave depend on, and the filters earlier answers set."""

    wv: _Wave
    pop: _Population
    cb: Codebook
    groups: Mapping[str, np.ndarray]
    st: np.ndarray  # true stage of each respondent's territory
    general: np.ndarray  # mean latent maturity of each respondent
    dim_pos: dict[str, int]
    ctx: dict[str, np.ndarray] = field(init=False)  # territory context, per respondent
    # item id -> respondents filtered out by an earlier answer (conditional questions)
    filtered: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ctx = {k: v[self.wv.territory] for k, v in self.pop.context.items()}

    @property
    def n(self) -> int:
        return self.wv.n

    @property
    def t(self) -> np.ndarray:
        return self.wv.territory

    @property
    def emerging(self) -> np.ndarray:
        return self.st == 0


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
    """Every answer of the wave, item by item in codebook order.

    Who is asked (routing, filters set by earlier answers), the cell states (NSP, refusal,
    blank), then the values from the item's generating model.
    """
    ans = _Answering(wv, pop, cb, groups, st, general, {d: i for i, d in enumerate(dims)})
    for var in cb.of_type():
        if var.type in _NOT_ANSWERS_TYPES or var.id in _NOT_ANSWERS_IDS:
            continue
        asked = _asked(var, groups, ans.n)
        if var.id in ans.filtered:
            asked = asked & ~ans.filtered[var.id]
        p_nsp: np.ndarray | float = NSP_BASE
        if var.dimension in NSP_EMERGING_DIMS or var.id == "dyn_savoir_piloter":
            p_nsp = NSP_BASE + NSP_EMERGING * ans.emerging
        state = _states(rng, var, asked, p_nsp)
        lo, hi = _scale_bounds(cb, var)
        value, state = _answer(rng, ans, var, asked, state, lo, hi)
        _store(rng, wv, var, value, state)


def _answer(
    rng: np.random.Generator,
    ans: _Answering,
    var: Variable,
    asked: np.ndarray,
    state: np.ndarray,
    lo: int,
    hi: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The values of one item (and its states, when the model changes them).

    The first kind of item that recognises the variable draws it; any other variable gets a
    generic answer of its type.
    """
    for kind in (
        _identification_answer,
        _latent_answer,
        _model_answer,
        _milestone_answer,
        _special_answer,
    ):
        found = kind(rng, ans, var, asked, state, lo, hi)
        if found is not None:
            return found
    return _generic(rng, ans.cb, var, ans.n, ans.general, ans.st, lo, hi), state


def _identification_answer(
    rng: np.random.Generator,
    ans: _Answering,
    var: Variable,
    asked: np.ndarray,
    state: np.ndarray,
    lo: int,
    hi: int,
) -> _Drawn:
    """Identification and dates: always answered (no NSP, no refusal)."""
    if var.type in {"identifier", "territory_code", "date"} or var.id.startswith("id_"):
        value = _identification(rng, ans.wv, ans.pop, var, ans.n)
        return value, np.where(np.isin(state, (_NSP, _REFUS)), _VALID, state)
    return None


def _latent_answer(
    rng: np.random.Generator,
    ans: _Answering,
    var: Variable,
    asked: np.ndarray,
    state: np.ndarray,
    lo: int,
    hi: int,
) -> _Drawn:
    """Likert items of a maturity dimension, from the respondent's latent maturity."""
    if var.type == "likert" and var.dimension in ans.dim_pos and not var.milestone:
        latent = ans.wv.latent[:, ans.dim_pos[var.dimension]]
        value = _likert(rng, latent + rng.normal(0, 0.15), lo, hi)
        if var.reverse_coded:  # the answer disagrees when maturity is high
            value = lo + hi - value
        return value, state
    if var.id == "dyn_savoir_piloter" and "gouvernance" in ans.dim_pos:
        return _likert(rng, ans.wv.latent[:, ans.dim_pos["gouvernance"]], lo, hi), state
    return None


def _model_answer(
    rng: np.random.Generator,
    ans: _Answering,
    var: Variable,
    asked: np.ndarray,
    state: np.ndarray,
    lo: int,
    hi: int,
) -> _Drawn:
    """The outcomes of the study's models, the declared stage and the fragility ratings."""
    n, st, ctx, vid = ans.n, ans.st, ans.ctx, var.id
    if vid == "dyn_animateur_existe":
        p = _sigmoid(np.array(LOGIT_STAGE)[st] + LOGIT_QPV * ctx["ctx_presence_qpv"])
        value = (rng.random(n) < p).astype(float)
        ans.filtered["dyn_animateur_porteur"] = (value == 0) | (state != _VALID)
        return value, state
    if vid == "dyn_statut":
        lat = np.array(ORD_STAGE)[st] + ORD_PAUVRETE * ctx["ctx_taux_pauvrete"]
        lat = lat + rng.logistic(0, 1, n)
        return (lat[:, None] > np.array(ORD_CUTS)[None, :]).sum(axis=1).astype(float), state
    if vid == "res_reussite_globale":
        mean = (np.array(MIX_STAGE)[st] + MIX_DENSITE * ctx["ctx_grille_densite"]
                + ans.pop.u_mixed[ans.t])  # fmt: skip
        return np.clip(np.rint(mean + rng.normal(0, MIX_SD_RESIDUAL, n)), lo, hi), state
    if vid == "stade_auto":
        u = rng.random(n)
        shift = np.select([u < 0.12, u < 0.30], [-1, 1], 0)  # slight optimism
        value = np.clip(st + ans.pop.declared_bias[ans.t] + shift, 0, N_STAGES - 1) + lo
        return value, _states(rng, var, asked, 0.05 + 0.08 * ans.emerging)
    if var.fragility is not None and var.type == "rating":
        return _fragility(rng, var.fragility, ctx, ans.pop, ans.t, n, lo, hi), state
    return None


def _milestone_answer(
    rng: np.random.Generator,
    ans: _Answering,
    var: Variable,
    asked: np.ndarray,
    state: np.ndarray,
    lo: int,
    hi: int,
) -> _Drawn:
    """Milestones: reached with the latent maturity (yes/no) or growing with the stage."""
    if var.type in {"binary"} and var.milestone and var.dimension in ans.dim_pos:
        p = _sigmoid(2.0 * (ans.wv.latent[:, ans.dim_pos[var.dimension]] - 2.8))
        value = (rng.random(ans.n) < p).astype(float)
        if var.id == "mat_eval_pratiquee":
            ans.filtered["mat_eval_types"] = (value == 0) | (state != _VALID)
        return value, state
    if var.type == "count" and var.milestone:
        return rng.poisson(np.exp(0.3 + 0.55 * ans.st)).astype(float), state
    if var.type == "decimal" and var.milestone:
        return np.round(rng.gamma(2.0, 0.15 + 0.25 * ans.st), 1), state
    return None


def _special_answer(
    rng: np.random.Generator,
    ans: _Answering,
    var: Variable,
    asked: np.ndarray,
    state: np.ndarray,
    lo: int,
    hi: int,
) -> _Drawn:
    """Partnership filter, start year, role and seniority in the démarche, top priority."""
    n, st, vid = ans.n, ans.st, var.id
    if vid == "part_existe":
        value = (rng.random(n) < 0.8).astype(float)
        out = (value == 0) | (state != _VALID)
        for other in ans.cb.of_type():
            if other.id.startswith("part_") and "filtre" in other.special_codes:
                ans.filtered[other.id] = out
        return value, state
    if vid == "dyn_annee_debut":
        year = np.clip(ans.wv.wave - 1 - 2 * st - rng.poisson(1.0, n), 1990, ans.wv.wave)
        return year.astype(float), state
    if vid == "prof_role_demarche":
        state = np.where(state == _REFUS, _VALID, state)
        return ans.wv.role.copy(), np.where(state == _NSP, _VALID, state)
    if vid == "prof_anciennete_demarche":
        value = np.clip(rng.poisson(1 + 1.5 * st), 0, 30).astype(float)
        not_concerned = np.where(state == _VALID, _NC, state)
        return value, np.where(ans.groups["insiders"], state, not_concerned)
    if vid == "frag_priorite_1":
        return _top_priority(ans.wv, ans.cb, var, rng), state
    return None


def _store(
    rng: np.random.Generator, wv: _Wave, var: Variable, value: np.ndarray, state: np.ndarray
) -> None:
    """Keep an item's values and states; most free-text answers are left blank."""
    vid = var.id
    if var.type == "multi_select":
        wv.multi[vid] = value
        wv.values[vid] = np.zeros(wv.n)
    else:
        wv.values[vid] = value
    if var.type == "text" and not vid.startswith("id_"):
        state = np.where((state == _VALID) & (rng.random(wv.n) < 0.85), _BLANK, state)
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
