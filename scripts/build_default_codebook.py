"""Build the package's default codebook from the reference instrument.

Developer tool, not used at run time: ``python scripts/build_default_codebook.py
[../shared/domain/instrument.yaml]`` rewrites ``src/evalterritoire/data/codebook.yaml``.
Item ids are copied unchanged; the format is reshaped so that every variable states its
``type`` explicitly and carries its aliases, header synonyms, range or pattern.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INSTRUMENT = ROOT.parent / "shared" / "domain" / "instrument.yaml"
OUT = ROOT / "src" / "evalterritoire" / "data" / "codebook.yaml"

SCALE_TYPE = {
    "accord5": "likert",
    "frequence5": "likert",
    "satisfaction5": "likert",
    "evolution5": "likert",
    "impact4": "likert",
    "evolution_fragilites5": "likert",
    "priorite_0_10": "rating",
    "note_0_10": "rating",
    "oui_non": "binary",
    "dynamique4": "ordinal",
    "stade4": "ordinal",
    "choix_unique": "categorical",
    "choix_multiple": "multi_select",
    "count": "count",
    "annee": "count",
    "decimal": "decimal",
    "decimal_pos": "decimal",
    "texte": "text",
}

ID_TYPES = {
    "id_repondant": "identifier",
    "id_territoire_code": "territory_code",
    "id_type_repondant": "respondent_type",
    "id_poids": "weight",
    "id_strate": "stratum",
    "id_psu": "psu",
    "id_fpc": "fpc",
    "id_date_collecte": "date",
}

#: Column roles (README "Codebook format"): the code asks the codebook for these, never for ids.
#: The design and identity types imply theirs (identifier → respondent_id, weight → weight…).
ROLES = {
    "id_vague": "wave",
    "id_date_collecte": "collection_date",
    "id_territoire_nom": "territory_name",
    "id_territoire_niveau": "territory_level",
    "id_region_code": "region",
    "id_region_nom": "region_name",
    "prof_role_demarche": "respondent_role",
    "id_consentement": "consent",
    "stade_auto": "declared_stage",
    "stade_commentaire": "free_text",
    "ctx_population": "population",
}

#: Cross-column coherence rules (README "Codebook format", key `rules`).
RULES = [
    {
        "id": "sans_partenariat",
        "label_fr": "Sans partenariat, les questions sur les partenariats restent sans réponse ou à 0",
        "if": {"variable": "part_existe", "in": [0]},
        "then": {
            "variables": [
                "part_nb_actifs",
                "part_types_partenaires",
                "part_modes",
                "part_echelle",
                "part_objectifs",
            ],
            "in": [0, "missing"],
        },
    },
    {
        "id": "sans_evaluation",
        "label_fr": "Sans évaluation pratiquée, aucun type d'évaluation n'est coché",
        "if": {"variable": "mat_eval_pratiquee", "in": [0]},
        "then": {"variables": ["mat_eval_types"], "in": [0, "missing"]},
    },
]

HEADER_SYNONYMS = {
    "id_repondant": [
        "id",
        "identifiant",
        "id répondant",
        "réponse id",
        "response id",
        "responseid",
        "_uuid",
        "n° répondant",
        "numéro de répondant",
    ],
    "id_vague": ["vague", "wave"],
    "id_annee": ["année", "annee", "year"],
    "id_date_collecte": [
        "date",
        "date de réponse",
        "date de soumission",
        "submitdate",
        "_submission_time",
    ],
    "id_territoire_code": [
        "code territoire",
        "code_territoire",
        "code insee",
        "codgeo",
        "code commune",
        "code epci",
        "territoire (code)",
    ],
    "id_territoire_nom": ["territoire", "nom territoire", "libellé territoire", "commune"],
    "id_territoire_niveau": ["niveau territoire", "niveau"],
    "id_region_code": ["code région", "code region", "reg"],
    "id_region_nom": ["région", "region"],
    "id_type_repondant": [
        "type de répondant",
        "type répondant",
        "profil",
        "catégorie de répondant",
    ],
    "id_poids": [
        "pondération",
        "ponderation",
        "poids",
        "weight",
        "coef",
        "coefficient de pondération",
    ],
    "id_strate": ["strate", "stratum"],
    "id_psu": ["psu", "grappe", "cluster", "upe"],
    "id_fpc": ["fpc", "taille population strate", "n population"],
    "id_consentement": ["consentement", "consent"],
    "id_mode_collecte": ["mode de collecte", "mode"],
}

# Label aliases per scale: accepted spellings beyond the declared labels. Matching is exact
# after normalisation (NFC, apostrophe unification, casefold, accent stripping, trimming).
SCALE_ALIASES = {
    "oui_non": {
        "o": 1,
        "oui": 1,
        "yes": 1,
        "y": 1,
        "vrai": 1,
        "true": 1,
        "n": 0,
        "non": 0,
        "no": 0,
        "faux": 0,
        "false": 0,
    },
    "satisfaction5": {
        "pas du tout satisfaite": 1,
        "plutot pas satisfaite": 2,
        "moyennement satisfaite": 3,
        "plutot satisfaite": 4,
        "tres satisfaite": 5,
    },
    "accord5": {"ni d'accord, ni pas d'accord": 3, "ni d'accord ni en desaccord": 3},
}

SPECIAL_SPELLINGS = {
    "nsp": ["nsp", "ne sait pas", "ne sais pas", "je ne sais pas", "ns", "nspp", "-1"],
    "refus": ["refus", "ne souhaite pas répondre", "nr", "non réponse", "non-réponse", "-2"],
    "nc": ["non concerné", "non concernée", "sans objet", "n/a", "na", "nc", "-3"],
    "filtre": ["non posé", "non pose", "filtre", "-9"],
}

RANGES = {
    "priorite_0_10": (0, 10),
    "note_0_10": (0, 10),
    "count": (0, None),
    "annee": (1990, 2100),
    "decimal_pos": (0, None),
}

PATTERNS = {
    "id_region_code": r"^(0[1-6]|[1-9][0-9])$",
    "id_territoire_code": r"^[0-9A-Za-z_-]{1,20}$",
}

ITEM_ALIASES = {
    "id_type_repondant": {
        "elu": "elu_autre",
        "elue": "elu_autre",
        "élu(e)": "elu_autre",
        "mairesse": "elu_maire",
        "agent": "agent_collectivite",
        "technicien": "agent_collectivite",
        "technicienne": "agent_collectivite",
        "association": "association",
        "entreprise": "entreprise",
        "habitant": "citoyen",
        "habitante": "citoyen",
        "citoyenne": "citoyen",
        "citoyen": "citoyen",
        "animateur": "catalyseur",
        "animatrice": "catalyseur",
        "chercheur": "acteur_academique",
        "chercheuse": "acteur_academique",
    },
    "prof_role_demarche": {"pilote": "pilote", "animateur": "pilote", "animatrice": "pilote"},
}


def build(instrument: dict) -> dict:
    """The default codebook (a YAML-ready dict) from the reference instrument."""
    scales = {}
    for sid, sc in instrument["scales"].items():
        entry = {"type": SCALE_TYPE[sid]}
        if "values" in sc:
            entry["values"] = {int(k): v for k, v in sc["values"].items()}
        if sid in RANGES:
            lo, hi = RANGES[sid]
            entry["min"] = lo
            if hi is not None:
                entry["max"] = hi
        elif "min" in sc:
            entry["min"] = sc["min"]
            if "max" in sc:
                entry["max"] = sc["max"]
        if "anchors" in sc:
            entry["anchors"] = {int(k): v for k, v in sc["anchors"].items()}
        if sid in SCALE_ALIASES:
            entry["aliases"] = SCALE_ALIASES[sid]
        if sc.get("note"):
            entry["note"] = sc["note"]
        scales[sid] = entry

    special = {}
    kinds = {"nsp": "dont_know", "refus": "refused", "nc": "not_applicable", "filtre": "not_asked"}
    for key, sc in instrument["special_codes"].items():
        special[key] = {
            "code": sc["code"],
            "label_fr": sc["label_fr"],
            "kind": kinds[key],
            "spellings": SPECIAL_SPELLINGS[key],
        }

    variables = []
    for block in instrument["blocks"]:
        for it in block["items"]:
            scale = it["scale"]
            vtype = ID_TYPES.get(it["id"], SCALE_TYPE[scale])
            feeds = it.get("feeds", "")
            var = {
                "id": it["id"],
                "label_fr": it["label_fr"],
                "label_en": it.get("label_en", ""),
                "type": vtype,
                "scale": scale,
                "block": block["block"],
                "feeds": feeds,
                "required": bool(it.get("required", False)),
            }
            if feeds.startswith("maturity:"):
                var["dimension"] = feeds.split(":", 1)[1]
                if vtype != "likert":
                    var["milestone"] = True
            if feeds.startswith("fragility:") and feeds != "fragility:all":
                var["fragility"] = feeds.split(":", 1)[1]
            if it.get("options"):
                var["options"] = {str(k): v for k, v in it["options"].items()}
            if it.get("max_choices"):
                var["max_choices"] = it["max_choices"]
            if it.get("special_codes"):
                var["special_codes"] = list(it["special_codes"])
            if it.get("asked_to"):
                var["asked_to"] = list(it["asked_to"])
            if it.get("reverse_coded"):
                var["reverse_coded"] = True
            if it.get("key_indicator_for_stages"):
                var["key_indicator_for_stages"] = list(it["key_indicator_for_stages"])
            if it.get("level"):
                var["level"] = it["level"]
            if it["id"] in PATTERNS:
                var["pattern"] = PATTERNS[it["id"]]
            if it["id"] in HEADER_SYNONYMS:
                var["synonyms"] = HEADER_SYNONYMS[it["id"]]
            if it["id"] in ITEM_ALIASES:
                var["aliases"] = ITEM_ALIASES[it["id"]]
            if it["id"] == "id_vague":
                var["type"] = "text"
            if it["id"] in ROLES:
                var["role"] = ROLES[it["id"]]
            variables.append(var)

    blocks = {b["block"]: b["title_fr"] for b in instrument["blocks"]}
    return {
        "codebook": {
            "name": "evalterritoire — questionnaire de référence",
            "version": "1.0.0",
            "source": "instrument " + str(instrument["meta"]["version"]),
            "language": "fr",
        },
        "missing_spellings": ["", "."],
        "special_codes": special,
        "scales": scales,
        "blocks": blocks,
        "maturity_dimensions": dict(instrument["maturity_dimensions"]),
        "fragility_domains": {k: v["label_fr"] for k, v in instrument["fragility_domains"].items()},
        "respondent_groups": {
            "organisations": instrument["respondent_routing"]["groups"]["organisations"],
            "steering_roles": instrument["respondent_routing"]["groups"]["steering_roles"],
            "insiders": {
                "respondent_role": ["pilote", "partenaire_actif", "partenaire_occasionnel"]
            },
            "porteurs": {
                "respondent_type": ["catalyseur", "agent_collectivite", "elu_maire"],
                "respondent_role": ["pilote"],
            },
        },
        "scoring": {
            "min_item_share": 2 / 3,
            "reverse_max": 6,
        },
        "variables": variables,
        "rules": RULES,
    }


HEADER = """\
# evalterritoire default codebook — generated by scripts/build_default_codebook.py from the
# reference instrument (shared/domain/instrument.yaml). Item ids are stable: never rename one once
# data exist. The format is documented in README.md ("Codebook format").
"""


def main(argv: list[str]) -> int:
    """Write ``src/evalterritoire/data/codebook.yaml``; ``argv[1]``: another instrument."""
    src = Path(argv[1]) if len(argv) > 1 else DEFAULT_INSTRUMENT
    instrument = yaml.safe_load(src.read_text(encoding="utf-8"))
    out = build(instrument)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(out, allow_unicode=True, sort_keys=False, width=100)
    OUT.write_text(HEADER + text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(out['variables'])} variables")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
