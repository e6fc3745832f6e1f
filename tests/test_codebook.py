"""Codebook loading, lookups and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evalterritoire.codebook import load_codebook, normalise_text
from evalterritoire.errors import CodebookError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "domain" / "instrument.yaml"
# A copy of the reference instrument, so that a clean checkout without ../shared tests the same.
INSTRUMENT = Path(__file__).parent / "fixtures" / "shared" / "instrument.yaml"


def test_instrument_copy_is_the_reference_when_available():
    copy = INSTRUMENT.read_bytes()
    assert b"maturity_dimensions" in copy
    if SHARED.is_file():  # beside the project: the copy must not drift from the reference
        assert copy == SHARED.read_bytes()


def test_default_codebook_implements_the_instrument(codebook):
    instrument = yaml.safe_load(INSTRUMENT.read_text(encoding="utf-8"))
    item_ids = [item["id"] for block in instrument["blocks"] for item in block["items"]]
    assert len(item_ids) == len(set(item_ids))
    missing = [i for i in item_ids if i not in codebook]
    assert missing == []
    assert set(codebook.dimensions) == set(instrument["maturity_dimensions"])
    assert set(codebook.fragility_domains) == set(instrument["fragility_domains"])
    assert set(codebook.special_codes) == set(instrument["special_codes"])
    for block in instrument["blocks"]:
        for item in block["items"]:
            assert codebook[item["id"]].label_fr, item["id"]


def test_roles_and_types(codebook):
    assert codebook.column("weight") == "id_poids"
    assert codebook.column("territory") == "id_territoire_code"
    assert codebook.column("respondent_type") == "id_type_repondant"
    assert codebook.column("stratum") == "id_strate"
    assert codebook.column("psu") == "id_psu"
    assert codebook.column("wave") == "id_vague"
    assert codebook.column("respondent_role") == "prof_role_demarche"
    likert = codebook.of_type("likert")
    assert likert
    assert all(v.scale for v in likert)
    assert len(codebook.dimensions) == 9
    for dim in codebook.dimensions:
        assert codebook.dimension_items(dim), dim


def test_labels_and_lookups(codebook):
    var = codebook.of_type("likert")[0]
    lookup = codebook.value_lookup(var.id)
    labels = codebook.value_labels(var.id)
    for code, label in labels.items():
        assert lookup[normalise_text(label)] == code
    specials = codebook.special_lookup
    assert specials[normalise_text("NSP")] == "nsp"
    assert specials[normalise_text("Ne sait pas")] == "nsp"
    assert codebook.header_lookup[normalise_text("id_territoire_code")] == "id_territoire_code"


def test_typed_columns_convention(codebook):
    multi = codebook.of_type("multi_select")[0]
    assert multi.option_cols()
    assert all(c.startswith(f"{multi.id}__") for c in multi.option_cols())
    with_special = next(v for v in codebook.of_type("likert") if v.special_codes)
    assert with_special.special_col == f"{with_special.id}__special"


def test_normalise_text():
    assert normalise_text("  Tout à fait\u00a0d’accord ") == normalise_text("tout a fait d'accord")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cb.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _default_raw() -> dict:
    from evalterritoire.codebook import default_codebook_path

    return yaml.safe_load(default_codebook_path().read_text(encoding="utf-8"))


def _var(raw: dict, var_id: str) -> dict:
    return next(v for v in raw["variables"] if v["id"] == var_id)


# (mutation of the default codebook, key named in the message, problem named in the message)
MALFORMED = {
    "no variables": (
        lambda raw: raw.pop("variables"),
        "(top level)",
        "missing required key 'variables'",
    ),
    "unknown type": (
        lambda raw: raw["variables"][0].update(type="likertt"),
        "variables[0]' (id 'id_repondant').type",
        "must be one of",
    ),
    "duplicate id": (
        lambda raw: raw["variables"].append(dict(raw["variables"][0])),
        "(id 'id_repondant')",
        "duplicate variable id",
    ),
    "bad id": (
        lambda raw: raw["variables"][0].update(id="Bad Id"),
        "variables[0]'.id",
        "snake_case",
    ),
    "no label": (
        lambda raw: raw["variables"][0].pop("label_fr"),
        "(id 'id_repondant')",
        "missing required key 'label_fr'",
    ),
    "unknown key": (
        lambda raw: raw["variables"][0].update(colour="red"),
        "(id 'id_repondant')",
        "unknown key(s) ['colour']",
    ),
    "special code not int": (
        lambda raw: raw["special_codes"]["nsp"].update(code="x"),
        "special_codes.nsp",
        "'code' must be an integer, got 'x'",
    ),
    # values of the wrong YAML type (were TypeError: unhashable → "internal error")
    "type is a list": (
        lambda raw: raw["variables"][0].update(type=["identifier"]),
        "variables[0]' (id 'id_repondant').type",
        "expected a string, got list ['identifier']",
    ),
    "type is a mapping": (
        lambda raw: raw["variables"][0].update(type={"a": 1}),
        "(id 'id_repondant').type",
        "expected a string, got dict",
    ),
    "scale is a list": (
        lambda raw: _var(raw, "mat_pos_role_clair").update(scale=["accord5"]),
        "(id 'mat_pos_role_clair').scale",
        "expected a string, got list",
    ),
    "dimension is a mapping": (
        lambda raw: _var(raw, "mat_pos_role_clair").update(dimension={"positionnement": 1}),
        "(id 'mat_pos_role_clair').dimension",
        "expected a string, got dict",
    ),
    "fragility is a list": (
        lambda raw: _var(raw, "frag_emploi_priorite").update(fragility=["emploi"]),
        "(id 'frag_emploi_priorite').fragility",
        "expected a string, got list",
    ),
    "level is a list": (
        lambda raw: _var(raw, "ctx_population").update(level=["territory"]),
        "(id 'ctx_population').level",
        "expected a string, got list",
    ),
    "block is a mapping": (
        lambda raw: raw["variables"][0].update(block={"identification": 1}),
        "(id 'id_repondant').block",
        "expected a string, got dict",
    ),
    "label is a list": (
        lambda raw: raw["variables"][0].update(label_fr=["a", "b"]),
        "(id 'id_repondant').label_fr",
        "expected a text label, got list",
    ),
    "synonyms is a mapping": (
        lambda raw: raw["variables"][0].update(synonyms={"id": "x"}),
        "(id 'id_repondant').synonyms",
        "expected a list of strings, got dict",
    ),
    "alias target is a list": (
        lambda raw: _var(raw, "id_type_repondant")["aliases"].update(elu=["elu_autre"]),
        "(id 'id_type_repondant').aliases",
        "alias 'elu' must map to an option key or a code, got list",
    ),
    "alias to an unknown scale code": (
        lambda raw: _var(raw, "mat_pos_role_clair").update(aliases={"bof": 9}),
        "(id 'mat_pos_role_clair').aliases",
        "alias 'bof' maps to unknown code 9 of scale 'accord5'",
    ),
    "scale alias target is a list": (
        lambda raw: raw["scales"]["accord5"]["aliases"].update(bof=[3]),
        "scales.accord5'.aliases",
        "alias 'bof' must map to an integer code, got list",
    ),
    "scale label is a mapping": (
        lambda raw: raw["scales"]["accord5"]["values"].update({1: {"fr": "x"}}),
        "scales.accord5'.values.1",
        "expected a text label, got dict",
    ),
    "scale type is a list": (
        lambda raw: raw["scales"]["accord5"].update(type=["likert"]),
        "scales.accord5'.type",
        "expected a string, got list",
    ),
    "anchor code not an integer": (
        lambda raw: raw["scales"]["priorite_0_10"]["anchors"].update(haut="x"),
        "scales.priorite_0_10'.anchors",
        "code 'haut' is not an integer",
    ),
    "special kind is a list": (
        lambda raw: raw["special_codes"]["nsp"].update(kind=["dont_know"]),
        "special_codes.nsp'.kind",
        "expected a string, got list",
    ),
    "max_choices is a boolean": (
        lambda raw: _var(raw, "part_types_partenaires").update(max_choices=True),
        "(id 'part_types_partenaires').max_choices",
        "must be a positive integer, got True",
    ),
    "dimension label is a list": (
        lambda raw: raw["maturity_dimensions"].update(gouvernance=["a"]),
        "key 'maturity_dimensions.gouvernance'",
        "expected a text label, got list",
    ),
    # ambiguities
    "synonym claimed twice": (
        lambda raw: raw["variables"][1]["synonyms"].append("Identifiant"),
        "variables[1]' (id 'id_vague').synonyms",
        "header name 'Identifiant' is already claimed by variable 'id_repondant' (its synonym)",
    ),
    "synonym equal to another id": (
        lambda raw: raw["variables"][1]["synonyms"].append("ID_ANNEE"),
        "variables[1]' (id 'id_vague').synonyms",
        "header name 'ID_ANNEE' is already claimed by variable 'id_annee' (its id)",
    ),
    "synonym equal to another label": (
        lambda raw: raw["variables"][1]["synonyms"].append("annee de  collecte"),
        "variables[1]' (id 'id_vague').synonyms",
        "header name 'annee de  collecte' is already claimed by variable 'id_annee' (its label_fr)",
    ),
    "unknown block": (
        lambda raw: raw["variables"][0].update(block="identite"),
        "(id 'id_repondant').block",
        "unknown block 'identite' (declared: identification, profil",
    ),
    "no identifier": (
        lambda raw: raw["variables"][0].update(type="text"),
        "key 'variables'",
        "no variable of type 'identifier'",
    ),
    "spelling of two special codes": (
        lambda raw: raw["special_codes"]["refus"]["spellings"].append("Nsp "),
        "special_codes.refus'.spellings",
        "spelling 'Nsp ' is already used by special code 'nsp'",
    ),
    "unknown role": (
        lambda raw: _var(raw, "id_vague").update(role="vague"),
        "(id 'id_vague').role",
        "unknown role 'vague' (roles: respondent_id, wave",
    ),
    "role contradicting the type": (
        lambda raw: _var(raw, "id_poids").update(role="territory"),
        "(id 'id_poids').role",
        "a weight variable plays the role 'weight', not 'territory'",
    ),
    "role held twice": (
        lambda raw: _var(raw, "id_annee").update(role="wave"),
        "key 'variables'",
        "more than one variable with role 'wave': ['id_vague', 'id_annee']",
    ),
    "group on an unknown role": (
        lambda raw: raw["respondent_groups"].update(jeunes={"age": ["18-25"]}),
        "respondent_groups.jeunes",
        "condition on 'age'",
    ),
    "rule on an unknown variable": (
        lambda raw: raw["rules"][0]["if"].update(variable="part_existe_bis"),
        "rules[0]'.if.variable",
        "unknown variable 'part_existe_bis'",
    ),
    "rule without values": (
        lambda raw: raw["rules"][0]["then"].update({"in": []}),
        "rules[0]'.then.in",
        "needs at least one value",
    ),
    "unknown top-level key": (
        lambda raw: raw.update(regles=[]),
        "(top level)",
        "unknown key(s) ['regles']",
    ),
    "numeric code of two special codes": (
        lambda raw: raw["special_codes"]["refus"].update(code=-1),
        "special_codes.refus'.code",
        "spelling '-1' is already used by special code 'nsp'",
    ),
}


@pytest.mark.parametrize(("mutate", "key", "problem"), MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_codebook_names_key_and_problem(tmp_path, mutate, key, problem):
    raw = _default_raw()
    mutate(raw)
    path = _write(tmp_path, yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    with pytest.raises(CodebookError) as info:
        load_codebook(path)
    message = str(info.value)
    assert message.startswith("cb.yaml: codebook ")
    assert key in message
    assert problem in message


def test_roles_groups_and_rules_are_data(codebook):
    assert codebook.role("respondent_id").id == "id_repondant"
    assert codebook.role("territory_name").id == "id_territoire_nom"
    assert codebook.column("declared_stage") == "stade_auto"
    assert [v.id for v in codebook.with_role("free_text")] == ["stade_commentaire"]
    with pytest.raises(CodebookError, match="unknown column role 'territoire'"):
        codebook.role("territoire")
    masks = codebook.group_masks(
        {
            "respondent_type": ["catalyseur", "catalyseur", "citoyen", None],
            "respondent_role": ["pilote", "informe", "pilote", ""],
        }
    )
    assert masks["all"].tolist() == [True] * 4
    assert masks["porteurs"].tolist() == [True, False, False, False]
    assert masks["insiders"].tolist() == [True, False, True, False]
    assert masks["organisations"].tolist() == [True, True, False, False]
    assert codebook.groups_for({"respondent_type": "citoyen"}) == {"all"}
    rule = codebook.rules[0]
    assert (rule.if_variable, rule.if_values, rule.then_values) == (
        "part_existe",
        (0,),
        (0, "missing"),
    )


def test_a_codebook_without_a_role_says_which_step_needs_it(tmp_path):
    raw = _default_raw()
    _var(raw, "id_vague").pop("role")
    cb = load_codebook(_write(tmp_path, yaml.safe_dump(raw, allow_unicode=True)))
    assert cb.column("wave") is None
    with pytest.raises(CodebookError) as info:
        cb.require("wave", "the duplicate key of a wave")
    message = str(info.value)
    assert "declares no variable with role 'wave'" in message
    assert "needed for the duplicate key of a wave" in message
    assert "add 'role: wave'" in message


def test_permitted_variations_still_load(tmp_path):
    """Absent optional keys, own synonyms equal to the own label, unquoted numeric labels."""
    raw = _default_raw()
    raw["variables"][0]["synonyms"].append("IDENTIFIANT DU REPONDANT")
    raw["variables"][0].pop("block")
    raw["scales"]["accord5"]["values"]["3"] = 3
    raw["special_codes"]["nsp"]["spellings"].append("NSP")  # same code, same spelling twice
    cb = load_codebook(_write(tmp_path, yaml.safe_dump(raw, allow_unicode=True)))
    assert cb["id_repondant"].block == ""
    assert cb.scales["accord5"].values[3] == "3"
    assert cb.special_lookup["nsp"] == "nsp"


def test_unknown_scale_is_refused(tmp_path):
    raw = _default_raw()
    likert = next(v for v in raw["variables"] if v["type"] == "likert")
    likert["scale"] = "nope"
    path = _write(tmp_path, yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    with pytest.raises(CodebookError, match=r"unknown scale 'nope'"):
        load_codebook(path)


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(CodebookError, match="invalid YAML at line 2"):
        load_codebook(_write(tmp_path, "a: [1,\nb: : :\n"))
    with pytest.raises(CodebookError, match="cannot be read"):
        load_codebook(tmp_path / "absent.yaml")


def test_codebook_is_deterministic(codebook):
    again = load_codebook("default")
    assert again.sha256 == codebook.sha256
    assert again.ids == codebook.ids
