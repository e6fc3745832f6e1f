"""`evalterritoire codebook import` (XLSForm, LimeSurvey, SPSS, Qualtrics) and `codebook diff`.

Fixtures: tests/fixtures/importers/, written by make_fixtures.py (one questionnaire of another
observatory, « Baromètre des coopérations locales », as each tool stores it, with its export).
Each imported codebook must load and ingest the tool's export with the expected valid and
quarantined rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from evalterritoire.cli import main
from evalterritoire.codebook import diff_codebooks, import_codebook, load_codebook
from evalterritoire.errors import CodebookError
from evalterritoire.ingest.files import ingest_file

FIX = Path(__file__).parent / "fixtures" / "importers"


def _imported(tmp_path: Path, source: str) -> tuple[Path, dict]:
    result = import_codebook(FIX / source)
    path = tmp_path / "codebook.yaml"
    path.write_text(result.to_yaml(), encoding="utf-8")
    return path, result


def _reasons(result) -> dict[int, str]:
    q = result.quarantine
    return {int(r.source_line): str(r.reasons) for r in q.itertuples()}


# --------------------------------------------------------------------------- XLSForm
def test_xlsform_maps_types_choices_constraints_routing_and_groups(tmp_path):
    path, _result = _imported(tmp_path, "kobo_form.xlsx")
    cb = load_codebook(path)
    assert cb["coop_existe"].type == "binary"
    assert dict(cb.scales[cb["coop_existe"].scale].aliases) == {"oui": 1, "non": 0}
    assert cb["coop_confiance"].type == "likert"
    assert cb.special_codes[cb["coop_confiance"].special_codes[0]].code == 99
    assert cb["coop_domaines"].type == "multi_select"
    assert cb["coop_domaines"].max_choices == 3
    assert set(cb["coop_domaines"].options) == {"emploi", "mobilite", "numerique", "culture"}
    assert (cb["coop_nb"].min, cb["coop_nb"].max, cb["coop_nb"].required) == (1, 50, True)
    assert cb["code_commune"].pattern == "^[0-9]{5}$"
    assert (cb["satisfaction"].min, cb["satisfaction"].max) == (0, 10)
    assert cb["coop_nb"].relevant is not None
    assert cb["satisfaction"].relevant is None
    assert cb["coop_nb"].block == "cooperation"
    # labels in French although the form also has English
    assert cb["profil"].label_fr == "Vous répondez en tant que"
    assert cb["profil"].options["elu"] == "Élu·e"
    # metadata and calculations ignored, with their group prefix
    assert cb.columns.ignores("cooperation/score")
    assert cb.columns.ignores("_submission_time")
    assert "score" not in {v.id for v in cb.variables}


def test_xlsform_roles_are_guessed_and_reported(tmp_path):
    path, result = _imported(tmp_path, "kobo_form.xlsx")
    cb = load_codebook(path)
    assert cb.role("territory").id == "code_commune"
    assert cb.role("weight").id == "poids"
    assert cb.role("respondent_type").id == "profil"
    guessed = " ".join(result.guessed)
    for vid in ("code_commune", "poids", "profil"):
        assert vid in guessed
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Codebook imported from kobo_form.xlsx (XLSForm)")
    assert "# Guessed (confirm):" in text


def test_kobo_export_ingests_with_the_imported_codebook(tmp_path):
    path, _ = _imported(tmp_path, "kobo_form.xlsx")
    result = ingest_file(FIX / "kobo_export.csv", load_codebook(path))
    reasons = _reasons(result)
    # lines 2, 3, 4, 8 valid; 5 answered although not asked, 6 broken constraint,
    # 7 required answer missing, 9 select_multiple text and 0/1 column disagree
    assert sorted(reasons) == [5, 6, 7, 9]
    assert "answered_not_asked" in reasons[5]
    assert "coop_existe=0" in reasons[5]
    assert "out_of_range" in reasons[6]
    assert "'80'" in reasons[6]
    assert "required" in reasons[7]
    assert "multi_select_mismatch" in reasons[9]
    valid = result.valid.set_index("source_line")
    assert sorted(valid.index) == [2, 3, 4, 8]
    # « not asked » (no cooperation), « ne sait pas » (99), « not answered » are distinct
    assert pd.isna(valid.loc[3, "coop_nb"])
    assert valid.loc[3, "coop_nb__special"] == "non_pose"
    assert pd.isna(valid.loc[4, "coop_confiance"])
    assert valid.loc[4, "coop_confiance__special"] == "nsp"
    assert pd.isna(valid.loc[8, "satisfaction"])
    assert valid.loc[2, "coop_domaines__numerique"] == 1
    assert valid.loc[4, "code_commune"] == "01004"


def test_xlsform_untranslatable_routing_and_constraint_are_reported(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    survey = book.active
    survey.title = "survey"
    for row in (
        ["type", "name", "label", "relevant", "constraint"],
        ["integer", "age", "Âge", "", ". >= 18 and . < today()"],
        ["integer", "enfants", "Enfants", "", ". > 0 and . < 20"],
        ["decimal", "surface", "Surface", "", ". > 0"],
        ["text", "motif", "Motif", "string-length(${age}) > 1", ""],
        ["geopoint", "lieu", "Lieu", "", ""],
    ):
        survey.append(row)
    book.save(tmp_path / "form.xlsx")
    result = import_codebook(tmp_path / "form.xlsx")
    unmapped = "\n".join(result.unmapped)
    assert "motif: routing" in unmapped
    assert "age: constraint" in unmapped
    assert "lieu: type geopoint" in unmapped
    variables = {v["id"]: v for v in result.data["variables"]}
    assert variables["age"]["min"] == 18
    assert (variables["enfants"]["min"], variables["enfants"]["max"]) == (1, 19)
    assert variables["surface"]["min"] == 0
    assert "surface: strict bound '. > 0' kept as inclusive" in unmapped
    assert any("territory" in n for n in result.needed)


def test_not_a_questionnaire_is_one_clear_error(tmp_path):
    (tmp_path / "x.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(CodebookError, match="not a questionnaire file"):
        import_codebook(tmp_path / "x.txt")
    with pytest.raises(CodebookError, match="file not found"):
        import_codebook(tmp_path / "absent.xlsx")


# --------------------------------------------------------------------------- SPSS
def test_sav_labels_user_missing_and_measures_become_the_codebook(tmp_path):
    path, result = _imported(tmp_path, "spss_export.sav")
    cb = load_codebook(path)
    assert cb["profil"].type == "respondent_type"
    assert cb["profil"].options["1"] == "Élu·e"
    assert cb["coop"].type == "binary"  # 1 = Oui, 2 = Non
    assert dict(cb.scales[cb["coop"].scale].aliases) == {"2": 0}
    # ordinal measure: a scale although its labels use no scale word
    assert cb["confiance"].type == "likert"
    codes = {
        cb.special_codes[k].code: cb.special_codes[k].kind for k in cb["confiance"].special_codes
    }
    assert codes == {9: "dont_know", 99: "refused"}
    assert [cb.special_codes[k].code for k in cb["nb_partenaires"].special_codes] == [999]
    assert (cb["poids"].type, cb["nb_partenaires"].type, cb["date_reunion"].type) == (
        "weight",
        "count",
        "date",
    )
    assert cb.role("respondent_id").id == "id"
    assert cb.role("territory").id == "code_insee"
    assert any("no routing" in u for u in result.unmapped)


def test_sav_ingests_with_its_own_imported_codebook(tmp_path):
    path, _ = _imported(tmp_path, "spss_export.sav")
    result = ingest_file(FIX / "spss_export.sav", load_codebook(path))
    reasons = _reasons(result)
    assert sorted(reasons) == [5, 6]
    assert "unknown_option" in reasons[5]
    assert "'7'" in reasons[5]
    assert "weight" in reasons[6]
    valid = result.valid.set_index("source_line")
    assert sorted(valid.index) == [2, 3, 4, 7]
    # « Ne sait pas » coded 9 here and 999 there: each resolves on its own item
    assert valid.loc[3, "confiance__special"] == "nsp_9"
    assert valid.loc[7, "nb_partenaires__special"] == "nsp"
    assert valid.loc[7, "confiance__special"] == "refus"
    assert valid.loc[4, "coop"] == 0
    assert pd.isna(valid.loc[4, "date_reunion"])


# --------------------------------------------------------------------------- LimeSurvey
def test_lss_maps_arrays_multiple_choice_numbers_and_relevance(tmp_path):
    path, result = _imported(tmp_path, "limesurvey.lss")
    cb = load_codebook(path)
    assert cb.name == "Baromètre des coopérations locales"
    # an array: one likert item per subquestion, its export header kept, A1… as aliases
    conf = cb["conf_sq001"]
    assert conf.type == "likert"
    assert "CONF[SQ001]" in conf.synonyms
    assert dict(cb.scales[conf.scale].aliases) == {"A1": 1, "A2": 2, "A3": 3, "A4": 4}
    assert cb.special_codes[conf.special_codes[0]].spellings[0] == "A99"
    assert conf.label_fr == "Diriez-vous que… — les partenaires se font confiance"
    assert cb["domaines"].type == "multi_select"
    assert list(cb["domaines"].options) == ["SQ001", "SQ002", "SQ003"]
    assert dict(cb.scales[cb["coop"].scale].aliases) == {"Y": 1, "N": 0}
    assert (cb["nbpart"].type, cb["nbpart"].min, cb["nbpart"].max) == ("count", 1, 50)
    assert cb["codecom"].pattern == "^[0-9]{5}$"
    assert cb["profil"].label_fr == "Vous répondez en tant que"  # HTML removed
    assert cb["coop"].label_fr == "Votre structure coopère-t-elle avec d'autres ?"
    assert cb["conf_sq002"].relevant.text == "coop = 1 and answered(nbpart)"
    assert cb["domaines"].relevant is not None
    assert cb["avis"].relevant is None
    assert any("avis: routing 'strlen(CONF_SQ001) > 0'" in u for u in result.unmapped)
    assert cb.blocks["g20"] == "Coopérations"


def test_limesurvey_export_ingests_with_the_imported_codebook(tmp_path):
    path, _ = _imported(tmp_path, "limesurvey.lss")
    result = ingest_file(FIX / "limesurvey_export.csv", load_codebook(path))
    reasons = _reasons(result)
    assert sorted(reasons) == [5, 6, 7, 8]
    assert "answered_not_asked" in reasons[5]
    assert "out_of_range" in reasons[6]
    assert "'75O56'" in reasons[7]
    assert "'A9'" in reasons[8]
    valid = result.valid.set_index("source_line")
    assert valid.loc[2, "conf_sq001"] == 3
    assert valid.loc[2, "domaines__SQ003"] == 1
    assert valid.loc[2, "domaines__SQ002"] == 0
    assert valid.loc[3, "nbpart__special"] == "non_pose"
    assert valid.loc[3, "conf_sq001__special"] == "non_pose"
    assert pd.isna(valid.loc[4, "conf_sq001"])
    assert valid.loc[4, "conf_sq001__special"] == "nsp"
    assert valid.loc[4, "poids"] == pytest.approx(0.8)


def test_lss_with_a_dtd_or_another_document_is_refused(tmp_path):
    bomb = tmp_path / "bomb.lss"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><document/>')
    with pytest.raises(CodebookError, match="DTD or entity"):
        import_codebook(bomb)
    other = tmp_path / "other.lss"
    other.write_text("<document><LimeSurveyDocType>Theme</LimeSurveyDocType></document>")
    with pytest.raises(CodebookError, match="not a LimeSurvey survey structure"):
        import_codebook(other)


# --------------------------------------------------------------------------- Qualtrics
def test_qsf_maps_choices_matrix_validation_and_display_logic(tmp_path):
    path, result = _imported(tmp_path, "qualtrics.qsf")
    cb = load_codebook(path)
    assert cb.role("respondent_id").id == "responseid"
    assert cb["coop"].type == "binary"  # recode values 1 / 0
    assert cb["domaines"].type == "multi_select"
    assert dict(cb["domaines"].options) == {"1": "Emploi", "2": "Mobilité", "3": "Numérique"}
    statement = cb["confiance_2"]
    assert statement.type == "likert"
    assert statement.label_fr == "Diriez-vous que… — l'information circule bien"
    kinds = {cb.special_codes[k].code: cb.special_codes[k].kind for k in statement.special_codes}
    assert kinds == {99: "dont_know", -9: "not_asked"}
    assert (cb["nb_partenaires"].min, cb["nb_partenaires"].max) == (1, 50)
    assert cb["nb_partenaires"].required
    assert cb["poids"].type == "weight"
    assert cb["nb_partenaires"].relevant.text == "(coop = 1)"
    assert cb["precision"].relevant is None  # embedded-data logic: reported, not guessed
    assert any(u.startswith("precision: routing") for u in result.unmapped)
    assert "qid8" not in {v.id for v in cb.variables}  # descriptive text
    assert set(cb.blocks.values()) == {"Votre structure", "Coopérations"}


def test_qualtrics_export_ingests_with_the_imported_codebook(tmp_path):
    path, _ = _imported(tmp_path, "qualtrics.qsf")
    result = ingest_file(FIX / "qualtrics_export.csv", load_codebook(path), profile="qualtrics")
    reasons = _reasons(result)
    assert sorted(reasons) == [7, 8, 9, 10]
    assert "domaines: answered_not_asked" in reasons[7]
    assert "out_of_range" in reasons[8]
    assert "profil: required" in reasons[9]
    assert "99 (« Ne sait pas »)" in reasons[10]
    valid = result.valid.set_index("source_line")
    assert sorted(valid.index) == [4, 5, 6]
    assert valid.loc[4, "domaines__3"] == 1
    assert valid.loc[5, "confiance_1__special"] == "non_pose"
    assert valid.loc[6, "confiance_1__special"] == "nsp"
    assert valid.loc[6, "confiance_2"] == 2


def test_qsf_that_is_not_a_survey_is_refused(tmp_path):
    bad = tmp_path / "bad.qsf"
    bad.write_text('{"SurveyEntry": {}}', encoding="utf-8")
    with pytest.raises(CodebookError, match="not a Qualtrics survey file"):
        import_codebook(bad)
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CodebookError, match="not readable JSON"):
        import_codebook(bad)


# --------------------------------------------------------------------------- fixtures
def test_fixtures_are_what_the_committed_script_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", FIX / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_all(tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written
    for name in written:
        assert (tmp_path / name).read_bytes() == (FIX / name).read_bytes(), name


# --------------------------------------------------------------------------- CLI
def test_cli_codebook_import_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cb.yaml"
    code = main(["codebook", "import", str(FIX / "kobo_form.xlsx"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "guessed, to confirm" in printed
    assert "poids plays the role weight" in printed
    assert load_codebook(out).role("weight").id == "poids"


def test_cli_codebook_import_refuses_other_files(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("a,b\n", encoding="utf-8")
    code = main(["codebook", "import", str(tmp_path / "x.csv")])
    assert code == 2
    assert "not a questionnaire file" in capsys.readouterr().err


# --------------------------------------------------------------------------- diff
def _variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(import_codebook(FIX / "kobo_form.xlsx").to_yaml())
    edit(data)
    path = tmp_path / f"v{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_diff_lists_wording_scale_options_added_and_removed(tmp_path):
    old = _variant(tmp_path, lambda d: None)

    def edit(d):
        by_id = {v["id"]: v for v in d["variables"]}
        by_id["coop_nb"]["label_fr"] = "Avec combien de partenaires ?"
        by_id["profil"]["options"]["collectif"] = "Collectif d'habitants"
        d["scales"]["accord"]["values"][5] = "Totalement d'accord"
        by_id["satisfaction"]["max"] = 5
        d["variables"] = [v for v in d["variables"] if v["id"] != "commentaire"]
        d["variables"].append({"id": "remarque", "label_fr": "Une remarque ?", "type": "text"})
        by_id["nom_commune"]["label_fr"] = "nom  de la Commune"  # typography only

    new = _variant(tmp_path, edit)
    diff = diff_codebooks(load_codebook(old), load_codebook(new))
    kinds = {(c.item, c.kind) for c in diff}
    assert kinds == {
        ("coop_nb", "wording"),
        ("profil", "options"),
        ("coop_confiance", "scale"),
        ("satisfaction", "scale"),
        ("commentaire", "removed"),
        ("remarque", "added"),
    }
    assert set(diff.breaking()) == {"coop_nb", "profil", "coop_confiance", "satisfaction"}
    text = diff.describe()
    assert "« Avec combien de structures ? » → « Avec combien de partenaires ? »" in text


def test_diff_of_identical_codebooks_is_empty_and_cli_exit_codes(tmp_path, capsys):
    old = _variant(tmp_path, lambda d: None)
    same = _variant(tmp_path, lambda d: None)
    assert not diff_codebooks(load_codebook(old), load_codebook(same))
    assert main(["codebook", "diff", str(old), str(same)]) == 0
    assert "no item changed" in capsys.readouterr().out

    def reword(d):
        d["variables"][1]["label_fr"] = "Code INSEE de la commune"

    new = _variant(tmp_path, reword)
    assert main(["codebook", "diff", str(old), str(new)]) == 1
    assert "code_commune: wording changed" in capsys.readouterr().out


def test_comparability_breaks_respect_acknowledgements(tmp_path):
    from evalterritoire.codebook.diff import comparability_breaks

    old = load_codebook(_variant(tmp_path, lambda d: None))

    def rescale(d):
        d["scales"]["accord"]["values"] = {1: "Non", 2: "Plutôt non", 3: "Plutôt oui"}

    new = load_codebook(_variant(tmp_path, rescale))
    assert set(comparability_breaks(old, new)) == {"coop_confiance"}
    assert comparability_breaks(old, new, {"coop_confiance"}) == {}


# --------------------------------------------------------------------------- messy exports
def _kobo_rows() -> list[list[str]]:
    lines = (FIX / "kobo_export.csv").read_text(encoding="utf-8").splitlines()
    return [line.split(";") for line in lines]


def _write(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    path.write_bytes("\n".join(";".join(r) for r in rows).encode(encoding) + b"\n")
    return path


def test_messy_kobo_export_holds_with_an_imported_codebook(tmp_path):
    """cp1252, header variants, labels for codes, decimal comma, « 99.0 », a duplicate id and a
    blank line: the rules of messy_exports.md hold for a codebook that is not ours."""
    cb = load_codebook(_imported(tmp_path, "kobo_form.xlsx")[0])
    rows = _kobo_rows()
    col = {h: j for j, h in enumerate(rows[0])}
    rows[0][col["identification/nom_commune"]] = "Nom-Commune"  # not the form's name
    rows[1][col["cooperation/coop_existe"]] = "Oui"
    rows[2][col["cooperation/coop_existe"]] = "NON"
    rows[1][col["identification/poids"]] = "1,5"
    rows[1][col["cooperation/coop_confiance"]] = "PLUTÔT D’ACCORD "
    rows[3][col["cooperation/coop_confiance"]] = "99.0"
    rows[7][col["cooperation/coop_confiance"]] = "Neutre"  # no such label
    duplicate = list(rows[1])
    rows = [*rows[:3], [""] * len(rows[0]), *rows[3:], duplicate]
    result = ingest_file(_write(tmp_path / "messy.csv", rows, "cp1252"), cb)
    report = result.report
    assert report["encoding"] == "cp1252"
    assert (
        report["rows_valid"] + report["rows_quarantined"] + report["blank_lines"]
        == (report["rows_read"])
    )
    assert report["blank_lines"] == 1
    reasons = _reasons(result)
    # the two copies of the first respondent, the unknown label, and the fixture's own four
    dup_lines = [line for line, r in reasons.items() if "duplicate" in r]
    assert len(dup_lines) == 2
    unknown = next(r for r in reasons.values() if "'Neutre'" in r)
    assert "coop_confiance" in unknown
    assert "99 (« Ne sait pas »)" in unknown  # the declared special code among accepted values
    valid = result.valid.set_index("source_line")
    assert valid.loc[3, "coop_existe"] == 0
    assert valid.loc[5, "coop_confiance__special"] == "nsp"
    assert valid["nom_commune"].notna().all()


def test_scale_change_on_a_small_file_with_an_imported_codebook(tmp_path):
    cb = load_codebook(_imported(tmp_path, "kobo_form.xlsx")[0])
    rows = _kobo_rows()
    col = rows[0].index("cooperation/coop_confiance")
    # six answers of the asked rows, five of them on a 0–10 scale (a 1–4 item)
    for k, value in {1: "9", 3: "7", 5: "8", 6: "10", 7: "2", 8: "6"}.items():
        rows[k][col] = value
    result = ingest_file(_write(tmp_path / "scale.csv", rows), cb)
    wrong = [e for e in result.report["errors"] if e.get("rule") == "wrong_scale"]
    assert len(wrong) == 1
    assert "coop_confiance" in wrong[0]["message"]
    assert "5 of 6 answers are outside the scale" in wrong[0]["message"]
    assert result.valid["coop_confiance"].isna().all()


def test_unmapped_column_with_answers_rejects_with_a_suggestion(tmp_path):
    cb = load_codebook(_imported(tmp_path, "kobo_form.xlsx")[0])
    rows = _kobo_rows()
    rows[0][rows[0].index("identification/poids")] = "Pondération finale"
    rows[0].append("Observations")
    for row in rows[1:]:
        row.append("vu")
    result = ingest_file(_write(tmp_path / "extra.csv", rows), cb)
    assert result.exit_code == 2
    message = result.summary()
    assert "'Pondération finale' (column 8, 8 answer(s); → poids (the weight role)?)" in message
    assert "'Observations' (column 31, 8 answer(s))" in message


def test_cli_codebook_import_unwritable_out_is_one_message(tmp_path, capsys):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    code = main(
        ["codebook", "import", str(FIX / "kobo_form.xlsx"), "--out", str(tmp_path / "file" / "c")]
    )
    assert code == 2
    assert "cannot write" in capsys.readouterr().err
