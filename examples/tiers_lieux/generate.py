"""Generate the synthetic data of the example study (deterministic; no real respondent).

``python examples/tiers_lieux/generate.py`` rewrites ``contexte_bassins.csv`` and the two waves'
exports ``2024/export_2024.csv`` and ``2025/export_2025.csv``: 18 fictional « bassins de vie »
in three départements, about 25 respondents each per wave, answering the example's own
questionnaire (``codebook.yaml``). Each bassin has a true stage (1 to 3) that drives its answers;
a few bassins move between the waves. The exports look like a form tool's: ``;`` separators,
decimal commas, French answer labels, « Je ne sais pas », blank cells where a question was not
asked, and one incoherent row per wave (a user who filled in the staff numbers) that ingestion
must quarantine.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20240917
NAMES = [
    "Val de Brière", "Pays des Mauges", "Haut-Bocage", "Côte de Lumière", "Marais breton",
    "Pays de Retz", "Vallée du Loir", "Plateau de Segré", "Layon et Aubance", "Pays yonnais",
    "Bocage vendéen", "Estuaire nord", "Erdre et Gesvres", "Saumurois", "Sèvre et Maine",
    "Baugeois", "Pays de Châteaubriant", "Sud Vendée",
]  # fmt: skip
DEPARTEMENTS = ["44", "49", "85"]
TYPES = {  # share of the sample, base design weight
    "gestionnaire": (0.12, 1.2),
    "collectivite": (0.20, 4.0),
    "association": (0.24, 6.0),
    "entreprise": (0.14, 9.0),
    "usager": (0.30, 35.0),
}
TYPE_LABELS = {
    "gestionnaire": "Gestionnaire d'un tiers-lieu",
    "collectivite": "Élu·e ou agent d'une collectivité",
    "association": "Association partenaire",
    "entreprise": "Entreprise partenaire",
    "usager": "Usager ou usagère",
}
AGREE = {1: "Pas du tout", 2: "Plutôt non", 3: "Plutôt oui", 4: "Tout à fait"}
STAGES = {1: "Amorçage", 2: "Développement", 3: "Rayonnement"}
FREINS = ["Le financement", "L'essoufflement des bénévoles", "Les locaux", "Le manque de reconnaissance", "Autre frein"]  # fmt: skip
#: Mean answer on the 1–4 scale per dimension, by true stage (cooperation, ressources, ancrage).
PROFILE = {1: (1.8, 1.7, 2.0), 2: (2.6, 2.4, 2.7), 3: (3.35, 3.15, 3.4)}
ITEMS = {
    "cooperation": ["coop_connait", "coop_projets", "coop_confiance"],
    "ressources": ["ress_financement", "ress_hybride", "ress_equipe"],
    "ancrage": ["anc_besoins", "anc_utilite", "anc_difficile"],
}
COMMENTS = [
    "Le tiers-lieu a permis de rencontrer des structures que nous ne connaissions pas.",
    "Il manque encore une instance où décider ensemble.",
    "Les financements sont trop courts pour embaucher une animatrice.",
    "Beaucoup d'habitants ne savent pas encore ce qui s'y passe.",
    "Les ateliers numériques ont fait venir un nouveau public.",
    "La commune s'est engagée par une convention, c'est un vrai tournant.",
]
HEADER = [
    "N° réponse", "annee", "code_bassin", "Bassin de vie", "code_dep", "profil", "implication",
    "coef", "strate", "grappe", "accord_citation", "coop_connait", "coop_projets",
    "coop_confiance", "coop_comite", "ress_financement", "ress_hybride", "ress_equipe",
    "ress_etp", "ress_benevoles", "anc_besoins", "anc_utilite", "anc_difficile",
    "anc_convention", "enjeu_emploi", "enjeu_mobilite", "enjeu_numerique", "nb_partenaires",
    "freins", "satisfaction", "stade_percu", "commentaire",
]  # fmt: skip


def _fr(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}".replace(".", ",")


def _bassins(rng: np.random.Generator) -> list[dict]:
    stages_2024 = np.repeat([1, 2, 3], 6)
    rng.shuffle(stages_2024)
    moves = {3: +1, 7: +1, 11: +1, 14: -1}  # bassin index → change of stage in 2025
    out = []
    for i, name in enumerate(NAMES):
        s24 = int(stages_2024[i])
        s25 = int(np.clip(s24 + moves.get(i, 0), 1, 3))
        out.append(
            {
                "code": f"BV{101 + i}",
                "name": name,
                "dep": DEPARTEMENTS[i % 3],
                "stages": {2024: s24, 2025: s25},
                "effect": rng.normal(0, 0.2, 3),
                "psus": int(rng.integers(2, 5)),
                "pop": int(rng.integers(12_000, 95_000)),
                "chomage": round(float(rng.normal(7.5, 1.5)), 1),
                "rural": round(float(rng.uniform(15, 75)), 1),
            }
        )
    return out


def _agree(rng: np.random.Generator, latent: float, nsp: float) -> str:
    if rng.random() < nsp:
        return "Je ne sais pas"
    return AGREE[int(np.clip(np.rint(latent + rng.normal(0, 0.55)), 1, 4))]


def _respondent(rng, bassin: dict, wave: int, number: int) -> dict[str, str]:
    stage = bassin["stages"][wave]
    kinds = list(TYPES)
    kind = kinds[rng.choice(len(kinds), p=[TYPES[k][0] for k in kinds])]
    if kind == "gestionnaire":
        implication = "Au cœur du projet"
    else:
        implication = rng.choice(
            ["Au cœur du projet", "Contributeur ou contributrice", "Observateur ou observatrice"],
            p=[0.15, 0.45, 0.40] if kind != "usager" else [0.05, 0.25, 0.70],
        )
    involved = implication != "Observateur ou observatrice"
    halo = rng.normal(0, 0.3)
    row = {
        "N° réponse": f"{wave}-{bassin['code']}-{number:03d}",
        "annee": str(wave),
        "code_bassin": bassin["code"],
        "Bassin de vie": bassin["name"],
        "code_dep": bassin["dep"],
        "profil": TYPE_LABELS[kind],
        "implication": implication,
        "coef": _fr(TYPES[kind][1] * float(rng.lognormal(0, 0.2)), 3),
        "strate": bassin["dep"],
        "grappe": f"{bassin['code']}-{int(rng.integers(1, bassin['psus'] + 1))}",
        "accord_citation": "Oui" if rng.random() < 0.7 else "Non",
    }
    for d, (dim, items) in enumerate(ITEMS.items()):
        latent = PROFILE[stage][d] + bassin["effect"][d] + halo
        for item in items:
            asked = not (
                (item == "coop_confiance" and not involved)
                or (dim == "ressources" and item != "ress_equipe" and kind == "usager")
            )
            nsp = 0.04 if kind != "usager" else 0.12
            value = _agree(rng, latent, nsp) if asked else ""
            if item == "anc_difficile" and value in {v for v in AGREE.values()}:
                mirrored = {v: k for k, v in AGREE.items()}[value]
                value = AGREE[5 - mirrored]
            row[item] = value
    row["coop_comite"] = "Oui" if rng.random() < (0.15, 0.55, 0.9)[stage - 1] else "Non"
    row["anc_convention"] = "Oui" if rng.random() < (0.25, 0.6, 0.85)[stage - 1] else "Non"
    if kind == "gestionnaire":
        row["ress_etp"] = _fr(float(rng.gamma(2.0, 0.6 + 0.7 * (stage - 1))), 1)
        row["ress_benevoles"] = str(int(rng.poisson(4 + 4 * (stage - 1))))
    else:
        row["ress_etp"] = row["ress_benevoles"] = ""
    for key, base in (("enjeu_emploi", bassin["chomage"] - 1), ("enjeu_mobilite", 4 + bassin["rural"] / 20), ("enjeu_numerique", 5.5)):  # fmt: skip
        row[key] = str(int(np.clip(np.rint(base + rng.normal(0, 1.6)), 0, 10)))
    partner = kind in {"gestionnaire", "collectivite", "association", "entreprise"}
    row["nb_partenaires"] = str(int(rng.poisson(2 + 3 * (stage - 1)))) if partner else ""
    picks = rng.choice(len(FREINS), size=int(rng.integers(1, 3)), replace=False)
    row["freins"] = ", ".join(FREINS[p] for p in sorted(picks))
    row["satisfaction"] = str(int(np.clip(np.rint(3.5 + 1.6 * stage + rng.normal(0, 1.4)), 0, 10)))
    declared = int(np.clip(stage + rng.choice([-1, 0, 0, 0, 1]), 1, 3))
    row["stade_percu"] = STAGES[declared] if rng.random() > 0.08 else "Je ne sais pas"
    row["commentaire"] = COMMENTS[int(rng.integers(len(COMMENTS)))] if rng.random() < 0.2 else ""
    return row


def main() -> None:
    """Write the context file and the two exports."""
    rng = np.random.default_rng(SEED)
    bassins = _bassins(rng)
    with (HERE / "contexte_bassins.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["code_bassin", "pop_bassin", "taux_chomage_bassin", "part_rural"])
        for b in bassins:
            writer.writerow([b["code"], b["pop"], b["chomage"], b["rural"]])
    for wave in (2024, 2025):
        rows = []
        for b in bassins:
            for number in range(1, int(rng.integers(20, 31)) + 1):
                rows.append(_respondent(rng, b, wave, number))
        bad = next(r for r in rows if r["profil"] == TYPE_LABELS["usager"])
        bad["ress_etp"] = "2,5"  # an incoherent answer: ingestion quarantines it
        out = HERE / str(wave) / f"export_{wave}.csv"
        out.parent.mkdir(exist_ok=True)
        with out.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=HEADER, delimiter=";")
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {out.relative_to(HERE)}: {len(rows)} rows")


if __name__ == "__main__":
    main()
