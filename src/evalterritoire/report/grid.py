"""The maturity-adapted evaluation grid as data (source: ``shared/domain/evaluation_grid.md``).

The stage assigned to a territory selects (a) the evaluation questions, (b) which thresholds
(verdicts) are allowed, (c) which charts are shown and (d) the tone. An emerging or structuring
territory never receives the Wilder-type threshold reading (≥ 4 force, 3–3,9 à discuter,
< 3 préoccupation), which is reserved for consolidated and disseminating initiatives.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalterritoire.codebook import normalise_text

__all__ = [
    "COMMON_SECTIONS",
    "STAGE_KEYS",
    "WILDER_BANDS",
    "Band",
    "StageGrid",
    "band_for",
    "get_stage_grid",
    "grid_stage_key",
]


@dataclass(frozen=True)
class Band:
    """A reading band on the 1–5 dimension-score scale (Wilder Collaboration Factors logic)."""

    key: str
    label: str
    low: float
    high: float


#: Wilder-type reading, legitimate from the consolidation stage on only.
WILDER_BANDS: tuple[Band, ...] = (
    Band("preoccupation", "Préoccupation", 1.0, 3.0),
    Band("a_discuter", "À discuter", 3.0, 4.0),
    Band("force", "Force", 4.0, 5.0),
)

#: Sections every report has (grid §1), in order.
COMMON_SECTIONS: tuple[str, ...] = (
    "Carte d'identité du territoire",
    "Stade attribué et sa justification",
    "Fragilités",
    "Pratiques partenariales, dynamique et pilotage",
    "Recommandations",
    "Annexe méthodologique",
)


@dataclass(frozen=True)
class StageGrid:
    """What the evaluation grid prescribes for one stage.

    Attributes
    ----------
    key : str
        ``emergence``, ``structuration``, ``consolidation`` or ``essaimage``.
    number : int
        1–4.
    name : str
        French stage name.
    section_title : str
        Title of the stage-specific block of the report.
    posture : str
        Evaluation posture (developmental, formative, summative...).
    signals : str
        What characterises the stage.
    tone : str
        How the report speaks.
    questions : tuple of str
        Evaluation questions.
    indicators : tuple of str
        Codebook item ids the stage looks at first.
    charts : tuple of str
        Chart ids (see :mod:`evalterritoire.report.figures`) of the stage block. The nine-dimension
        profile is drawn for every stage in the « stade attribué » section, compared with the
        stage centroid, with reading bands only when ``bands`` is not empty.
    recommendations : tuple of str
        Typical recommendations, phrased as next steps.
    do_not : tuple of str
        What this report must not do.
    bands : tuple of Band
        Threshold reading allowed (empty: no pass/fail verdict at this stage).
    reading_intro : str
        How scores are read at this stage.
    """

    key: str
    number: int
    name: str
    section_title: str
    posture: str
    signals: str
    tone: str
    questions: tuple[str, ...]
    indicators: tuple[str, ...]
    charts: tuple[str, ...]
    recommendations: tuple[str, ...]
    do_not: tuple[str, ...]
    bands: tuple[Band, ...]
    reading_intro: str

    @property
    def allows_verdicts(self) -> bool:
        """Whether threshold verdicts (force / à discuter / préoccupation) may be shown."""
        return bool(self.bands)


_EMERGENCE = StageGrid(
    key="emergence",
    number=1,
    name="Émergence",
    section_title="Ce que la démarche a déjà permis, ce qui reste à explorer",
    posture=(
        "Évaluation développementale et apprenante : aider à clarifier l'intention, documenter "
        "ce qui se passe, repérer ce qui marche ; l'objectif est de « se conter », rendre la "
        "démarche racontable et compréhensible. Pas d'objectifs chiffrés imposés de l'extérieur."
    ),
    signals=(
        "Démarche récente ou informelle ; forte part de « ne sait pas » sur la gouvernance, le "
        "pilotage et le modèle économique ; pas encore d'instance de pilotage ; peu de jalons ; "
        "interconnaissance en construction."
    ),
    tone=(
        "Les niveaux bas et les « ne sait pas » sont présentés comme un point de départ "
        "(ligne de base), pas comme un échec."
    ),
    questions=(
        "Qui sont les acteurs concernés, qui est déjà mobilisé et qui manque (élus, techniciens, associations, entreprises, habitants) ?",
        "Les acteurs se connaissent-ils mieux qu'avant ? De nouvelles relations de travail sont-elles nées ?",
        "Existe-t-il un début de constat partagé sur les fragilités du territoire ? Les priorités perçues convergent-elles entre types d'acteurs et avec les indicateurs objectifs ?",
        "Qui anime ? Ce rôle est-il reconnu, et est-il distinct d'un rôle d'opérateur de projets ?",
        "Quelles sont les conditions favorables et les freins (volonté politique, temps, financement de l'animation, méconnaissance) ?",
        "Quelle théorie du changement implicite les acteurs portent-ils (pourquoi s'allier, pour quoi faire) ?",
    ),
    indicators=(
        "dyn_statut",
        "dyn_composition",
        "mat_inter_qui_fait_quoi",
        "mat_inter_confiance",
        "mat_inter_nouveaux_liens",
        "mat_inter_nb_rencontres",
        "dyn_animateur_existe",
        "dyn_espace_coconstruction",
        "mat_inter_cartographie",
        "mat_diag_realise",
        "dyn_savoir_piloter",
        "dyn_freins",
        "dyn_innovation_source",
    ),
    charts=("stakeholders", "agreement", "milestones"),
    recommendations=(
        "Cartographier les parties prenantes (métiers, personnes, compétences, degré d'implication) pour identifier les ressources mobilisables et les manques, et repérer ce qui existe ailleurs (WikiRésilience).",
        "Créer des espaces de co-construction pour monter en compétence collectivement, décloisonner, réaliser un diagnostic partagé, permettre la formation par les pairs (WikiRésilience).",
        "Connaître au préalable les acteurs et les ressources, reconnaître leurs différences comme complémentarités, élargir progressivement le cercle (WikiRésilience).",
        "Impliquer dès le départ les acteurs les plus concernés, y compris les habitants « experts cachés du territoire » ; identifier les enjeux communs et aligner les intérêts.",
        "Construire un langage commun à partir d'un diagnostic partagé (IMPL module 1 ; CR-DSU : partage de la connaissance et des représentations, culture commune).",
        "S'assurer d'une volonté politique capable d'inviter (« pouvoir d'invitation »).",
        "S'inspirer de pairs : rencontres des pionniers, voyages d'étude, témoignages.",
    ),
    do_not=(
        "Ne pas juger l'impact sur les fragilités.",
        "Ne pas exiger de modèle économique sécurisé ni de cadre juridique.",
        "Ne pas appliquer de lecture à seuils de type Wilder.",
        "Ne pas classer le territoire face à des territoires plus avancés.",
    ),
    bands=(),
    reading_intro=(
        "À ce stade, les scores décrivent une ligne de base : ils ne sont pas lus comme des "
        "réussites ou des échecs, et le territoire n'est pas classé."
    ),
)

_STRUCTURATION = StageGrid(
    key="structuration",
    number=2,
    name="Structuration",
    section_title="Ce qui se structure, points de vigilance",
    posture=(
        "Évaluation développementale puis formative : aider à stabiliser le modèle d'animation et "
        "de gouvernance, clarifier la théorie du changement, définir les premiers indicateurs "
        "partagés (on commence à « se compter »). Les critères sont construits avec les "
        "partenaires (évaluation partagée)."
    ),
    signals=(
        "Un animateur identifié, une instance de pilotage multi-acteurs, des priorités communes, "
        "premières actions collectives, engagements en cours de formalisation ; « ne sait pas » en "
        "baisse."
    ),
    tone=(
        "Constructif, centré sur les choix d'organisation : les fragilités de gouvernance sont "
        "formulées comme des décisions à prendre."
    ),
    questions=(
        "Les rôles et responsabilités sont-ils clairs ? Les décisions sont-elles réellement partagées ?",
        "L'animateur reste-t-il un catalyseur (faire travailler ensemble) ou glisse-t-il vers un rôle d'opérateur de projets ?",
        "Le passage de la réflexion à l'action s'opère-t-il (actions lancées, co-pilotage d'expérimentations) ?",
        "La démarche s'articule-t-elle avec les dispositifs existants sans doublon ?",
        "Les 4 facteurs clés de pérennité sont-ils en préparation : positionnement, modèle socio-économique, gouvernance, cadre technique ?",
        "La démarche reste-t-elle ouverte aux nouveaux entrants ?",
        "Quels indicateurs de résultat les partenaires choisissent-ils pour la suite ?",
    ),
    indicators=(
        "mat_gouv_roles_clairs",
        "mat_gouv_decision_partagee",
        "mat_gouv_ouverture",
        "mat_pos_catalyse_vs_operation",
        "mat_pos_articulation",
        "mat_gouv_instance",
        "mat_cadre_engagements_formalises",
        "mat_action_nb_projets",
        "mat_action_passage",
        "mat_action_copilotage",
        "res_synergie",
        "res_benefices_organisation",
        "res_charge_excessive",
    ),
    charts=("benefit_burden", "milestones"),
    recommendations=(
        "Clarifier les rôles, formaliser les engagements (charte, convention), tout en gardant la porte ouverte aux nouveaux entrants (WikiRésilience).",
        "Distinguer catalyse et opération : si l'animateur devient porteur des solutions, il perd temps, moyens et légitimité pour l'animation transversale ; choisir explicitement (Le RAMEAU).",
        "Passer de la réflexion à l'action avec quelques chantiers à effet levier (IMPL : 3 ou 4 fiches chantiers « en mode exécution »).",
        "Financer les personnes (l'animation) et pas seulement les investissements ; commencer à construire un modèle économique.",
        "Co-construire le dispositif d'évaluation (« évaluation partagée ») : choisir ensemble quelques indicateurs, documenter les récits.",
        "Articuler la démarche avec les tiers-lieux et les dispositifs existants plutôt que créer un nouveau silo (Le RAMEAU).",
        "Communiquer sur les étapes de construction et valoriser les partenaires et leurs complémentarités (WikiRésilience).",
    ),
    do_not=(
        "Ne pas conclure sur l'impact.",
        "Ne pas sanctionner l'absence de mesure d'impact.",
        "Ne pas lire des moyennes basses sur le modèle économique ou le cadre technique comme un échec : elles sont attendues à ce stade.",
    ),
    bands=(),
    reading_intro=(
        "Le profil est comparé au profil moyen des territoires du même stade (et non à celui des "
        "territoires plus avancés) ; les écarts signalent des choix d'organisation à discuter."
    ),
)

_CONSOLIDATION = StageGrid(
    key="consolidation",
    number=3,
    name="Consolidation",
    section_title="Évaluation de la démarche consolidée",
    posture=(
        "Évaluation formative puis sommative : la valeur de la démarche peut être jugée sur des "
        "critères explicites (pertinence, cohérence, efficacité, efficience, impact, durabilité ; "
        "produit, équilibre et valorisation du partenariat). « Se compter » devient central."
    ),
    signals=(
        "Actions collectives durables, financement de l'animation sécurisé, ressources "
        "diversifiées, cadre juridique clarifié, évaluation pratiquée et partagée, légitimité "
        "reconnue."
    ),
    tone=(
        "Évaluatif et exigeant mais équilibré : reconnaître les acquis, nommer les faiblesses "
        "avec des seuils explicites, proposer des priorités."
    ),
    questions=(
        "Efficacité et contribution sociétale : quels effets sur les fragilités ciblées ? Les indicateurs objectifs évoluent-ils dans le bon sens, avec prudence sur l'attribution ?",
        "Pertinence : les actions répondent-elles aux fragilités jugées prioritaires et mesurées objectivement ?",
        "Efficience : ressources mobilisées (ETP d'animation, contributions non financières) au regard des actions et des résultats.",
        "Équilibre du partenariat : chaque partenaire y trouve-t-il son compte (bénéfices et charge) ? La confiance est-elle solide ?",
        "Pérennité : positionnement, modèle socio-économique, gouvernance et cadre technique sont-ils sécurisés ?",
        "Apprentissage : l'évaluation nourrit-elle réellement les décisions ?",
        "La démarche est-elle prête à être transmise (capitalisation, documentation) ?",
    ),
    indicators=(
        "res_effets_fragilites",
        "res_habitants_beneficient",
        "res_reussite_globale",
        "mat_action_duree",
        "mat_action_mutualisation",
        "mat_mse_financement_duree",
        "mat_mse_diversite_ressources",
        "mat_cadre_securise",
        "mat_eval_partagee",
        "mat_eval_apprentissage",
        "mat_eval_capitalisation",
        "part_evalue_resultats",
        "part_bilan_relation",
    ),
    charts=("waves", "benefit_burden", "fragility_table"),
    recommendations=(
        "Inscrire le financement dans la durée et diversifier le modèle socio-économique (« inventer des modèles économiques », « donner de la valeur à la catalyse territoriale »).",
        "Incarner et structurer dans la durée : gouvernance partagée (par exemple une SCIC), élargissement des parties prenantes, transparence en continu.",
        "Sécuriser le cadre technique (juridique, fiscal, social, accès au droit commun), 4e facteur clé de pérennité.",
        "Passer d'une évaluation de l'activité à une évaluation des résultats partagée et, si pertinent, à une mesure d'impact proportionnée (impliquer les parties prenantes, ne retenir que ce qui est significatif, ne pas surévaluer, vérifier).",
        "Capitaliser (documenter méthodes et outils, co-produire des contenus) pour préparer la transmission.",
        "Valoriser : démontrer l'intérêt des parties prenantes et l'impact positif sur le territoire ; mettre en avant les réussites et la prise de risque des initiateurs.",
    ),
    do_not=(
        "Ne pas attribuer à la démarche seule l'évolution d'indicateurs macro (chômage, pauvreté).",
        "Ne pas comparer sans ajustement de contexte des territoires de tailles et de fragilités différentes.",
    ),
    bands=WILDER_BANDS,
    reading_intro=(
        "Lecture à seuils explicites (inventaire Wilder) : un score moyen ≥ 4 est une force, "
        "de 3 à 3,9 un point à discuter, < 3 une préoccupation."
    ),
)

_ESSAIMAGE = StageGrid(
    key="essaimage",
    number=4,
    name="Essaimage",
    section_title="Bilan et transmission",
    posture=(
        "Évaluation sommative du modèle et évaluation du transfert : qu'est-ce qui est "
        "transférable (principes, méthodes) et à quelles conditions ? Les indicateurs deviennent "
        "quantitatifs pour mesurer l'effet à plus grande échelle ; transmettre des principes "
        "plutôt que dupliquer un modèle figé."
    ),
    signals=(
        "Outils ou méthodes transmis, sollicitations extérieures, participation à des réseaux de "
        "pairs, visibilité au-delà des partenaires, légitimité élevée."
    ),
    tone=(
        "Bilan et transmission : mettre en valeur le rôle pionnier, expliciter les conditions de "
        "réussite et les limites, s'adresser aussi aux territoires qui voudraient s'en inspirer."
    ),
    questions=(
        "Quels éléments de la démarche sont documentés et transférables (méthodes, outils, compétences du catalyseur) ?",
        "Les territoires qui s'en inspirent obtiennent-ils des résultats comparables, après adaptation à leur contexte ?",
        "L'essaimage fragilise-t-il la démarche d'origine (charge, dispersion de l'animateur) ?",
        "Les résultats tiennent-ils dans la durée et à plus grande échelle (effets, coûts) ?",
        "La démarche contribue-t-elle à la reconnaissance de l'innovation sociale territoriale (plaidoyer, réseaux, politiques publiques) ?",
    ),
    indicators=(
        "mat_ess_visibilite",
        "mat_ess_transfert",
        "mat_ess_nb_sollicitations",
        "mat_ess_reseaux_pairs",
        "mat_eval_capitalisation",
        "mat_pos_legitimite",
        "res_effets_fragilites",
        "res_habitants_beneficient",
        "res_charge_excessive",
    ),
    charts=("waves", "essaimage_table"),
    recommendations=(
        "Concrétiser, capitaliser et diffuser : co-produire outils et contenus, médiatiser à tous les niveaux (local, national, international).",
        "Trouver des ambassadeurs et organiser les témoignages de pairs ; voyages d'étude ; plateformes de partage d'outils.",
        "Transmettre des principes et accompagner l'adaptation locale (« il n'y a pas d'innovation sociétale sans ancrage territorial », Le RAMEAU), plutôt que dupliquer.",
        "Préserver la fonction d'animation du territoire d'origine (ne pas épuiser le catalyseur).",
        "Contribuer au plaidoyer (grand public, institutions, acteurs économiques) et à la reconnaissance de l'innovation sociale territoriale.",
    ),
    do_not=(
        "Ne pas exiger que les territoires essaimés reproduisent à l'identique.",
        "Ne pas évaluer un territoire essaimé avec la grille du territoire d'origine : il repart lui-même en émergence.",
    ),
    bands=WILDER_BANDS,
    reading_intro=(
        "Lecture à seuils explicites (inventaire Wilder) : un score moyen ≥ 4 est une force, "
        "de 3 à 3,9 un point à discuter, < 3 une préoccupation ; la stabilité dans le temps "
        "compte autant que le niveau."
    ),
)

_GRIDS: dict[str, StageGrid] = {
    g.key: g for g in (_EMERGENCE, _STRUCTURATION, _CONSOLIDATION, _ESSAIMAGE)
}
#: Grid stage keys, least mature first.
STAGE_KEYS: tuple[str, ...] = tuple(_GRIDS)


def get_stage_grid(key: str) -> StageGrid:
    """The grid entry of a stage key (``emergence`` ... ``essaimage``).

    Raises
    ------
    KeyError
        For an unknown key.
    """
    return _GRIDS[key]


def grid_stage_key(stage: int, n_stages: int, stage_label: str = "") -> str:
    """Map a study stage (0-based, ``n_stages`` stages) to a grid stage key.

    The label is matched first (``"Consolidation / maturité"`` → ``consolidation``); otherwise
    the rank is mapped proportionally onto the four grid stages, rounding down so that a
    territory is never judged with a later stage's grid than its rank supports.

    Parameters
    ----------
    stage : int
        0 = least mature.
    n_stages : int
        Number of stages of the study.
    stage_label : str, optional
        The study's stage name.

    Returns
    -------
    str
        One of :data:`STAGE_KEYS`.
    """
    label = normalise_text(stage_label)
    for key in STAGE_KEYS:
        if label.startswith(key) or label.startswith(normalise_text(_GRIDS[key].name)):
            return key
    if n_stages <= 1:
        return STAGE_KEYS[0]
    rank = int(stage * (len(STAGE_KEYS) - 1) // (n_stages - 1))
    return STAGE_KEYS[max(0, min(rank, len(STAGE_KEYS) - 1))]


def band_for(score: float | None, grid: StageGrid) -> Band | None:
    """The reading band of a 1–5 score, or None when the stage allows no verdict."""
    if score is None or not grid.bands or score != score:
        return None
    for band in grid.bands:
        if band.low <= score < band.high:
            return band
    return grid.bands[-1] if score >= grid.bands[-1].high else grid.bands[0]
