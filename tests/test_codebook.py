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
    assert codebook.by_role("weight").id == "id_poids"
    assert codebook.by_role("territory_code").id == "id_territoire_code"
    assert codebook.by_role("respondent_type").id == "id_type_repondant"
    assert codebook.by_role("stratum").id == "id_strate"
    assert codebook.by_role("psu").id == "id_psu"
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


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda raw: raw.pop("variables"), "missing required key 'variables'"),
        (
            lambda raw: raw["variables"][0].update(type="likertt"),
            "variables[0]' (id 'id_repondant').type",
        ),
        (lambda raw: raw["variables"].append(dict(raw["variables"][0])), "duplicate variable id"),
        (lambda raw: raw["variables"][0].update(id="Bad Id"), "snake_case"),
        (lambda raw: raw["variables"][0].pop("label_fr"), "missing required key 'label_fr'"),
        (lambda raw: raw["variables"][0].update(colour="red"), "unknown key(s) ['colour']"),
        (lambda raw: raw["special_codes"]["nsp"].update(code="x"), "special_codes.nsp"),
    ],
)
def test_malformed_codebook_names_key_and_problem(tmp_path, mutate, expected):
    raw = _default_raw()
    mutate(raw)
    path = _write(tmp_path, yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    with pytest.raises(CodebookError) as info:
        load_codebook(path)
    assert expected in str(info.value)
    assert "cb.yaml" in str(info.value)


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
