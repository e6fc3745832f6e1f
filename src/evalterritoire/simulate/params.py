"""Parameters of the simulator's generating model: the ground truth the pipeline must recover.

Owns the stage model (first-wave shares, transition matrix, latent profiles by stage), the
variance components, the respondent-type effects and shares, the coefficients of the four model
outcomes (linear, logistic, ordinal, mixed), the fragility ↔ context links, the special-answer
rates and the regions. Constants only (no draws, no I/O).
"""

from __future__ import annotations

import numpy as np

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
