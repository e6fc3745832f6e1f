"""Ingestion: one fixture per situation of messy_exports.md, exact counts and messages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalterritoire.ingest.files import (
    SITUATIONS,
    combine_results,
    ingest_file,
    write_ingest_outputs,
)
from evalterritoire.ingest.report import IngestResult
from evalterritoire.ingest.schemas import (
    build_failure_table,
    build_response_schema,
    compute_schema_failures,
)

FIX = Path(__file__).resolve().parent / "fixtures" / "ingest"

# file: (status, rows_read, rows_valid, rows_quarantined, blank_lines, encoding, delimiter)
EXPECTED = {
    "valid.csv": ("ok", 6, 6, 0, 0, "utf-8", ";"),
    "utf8_bom.csv": ("ok", 6, 6, 0, 0, "utf-8-sig", ";"),
    "utf16.txt": ("ok", 6, 6, 0, 0, "utf-16", "\t"),
    "cp1252.csv": ("ok", 3, 3, 0, 0, "cp1252", ";"),
    "garbled.csv": ("ok", 2, 2, 0, 0, "utf-8", ";"),
    "comma.csv": ("ok", 6, 6, 0, 0, "utf-8", ","),
    "pipe.csv": ("ok", 6, 6, 0, 0, "utf-8", "|"),
    "tab.tsv": ("ok", 6, 6, 0, 0, "utf-8", "\t"),
    "numbers.csv": ("partial", 6, 3, 3, 0, "utf-8", ";"),
    "field_count.csv": ("partial", 4, 2, 2, 0, "utf-8", ";"),
    "multiline.csv": ("partial", 5, 4, 1, 0, "utf-8", ";"),
    "labels.csv": ("partial", 6, 5, 1, 0, "utf-8", ";"),
    "specials.csv": ("partial", 6, 3, 3, 0, "utf-8", ";"),
    "header_synonyms.csv": ("ok", 3, 3, 0, 0, "utf-8", ";"),
    "trailing_delimiter.csv": ("ok", 3, 3, 0, 0, "utf-8", ";"),
    "trailing_data.csv": ("partial", 3, 2, 1, 0, "utf-8", ";"),
    "duplicates.csv": ("partial", 5, 1, 4, 0, "utf-8", ";"),
    "dates.csv": ("partial", 6, 4, 2, 0, "utf-8", ";"),
    "sci_ids.csv": ("partial", 2, 1, 1, 0, "utf-8", ";"),
    "insee.csv": ("partial", 4, 3, 1, 0, "utf-8", ";"),
    "blank_footer.csv": ("partial", 9, 3, 2, 4, "utf-8", ";"),
    "wrong_scale.csv": ("partial", 12, 12, 0, 0, "utf-8", ";"),
    "multiselect.csv": ("partial", 6, 5, 1, 0, "utf-8", ";"),
    "kobo.csv": ("partial", 3, 2, 1, 0, "utf-8", ";"),
    "incoherent.csv": ("partial", 3, 1, 2, 0, "utf-8", ";"),
    "workbook.xlsx": ("partial", 6, 4, 2, 0, None, None),
    "spss.sav": ("partial", 6, 5, 1, 0, "UTF-8", None),
    "export.parquet": ("ok", 4, 4, 0, 0, None, None),
}

REJECTED = {
    "mixed_encoding.csv": "mixed encodings — lines 2 are UTF-8 but 1 line(s) are not "
    "(line 3 byte 0xE9)",
    "duplicated_header.csv": "duplicated column names on line 1: 'dyn_savoir_piloter' (column 15) "
    "and 'dyn_savoir_piloter' (column 16)",
    "qualtrics.csv": "Qualtrics-style header rows (question texts / ImportId) on line(s) 2, 3",
    "missing_required.csv": "missing required column(s) id_vague, id_type_repondant "
    "(did you mean 'Type de repondnat'?)",
    "workbook_ambiguous.xlsx": "several sheets have the required columns ('Vague A', 'Vague B'); "
    "pass --sheet NAME",
    "empty.csv": "the file is empty",
    "header_only.csv": "header without data",
    "fake.xls": "this is an HTML page, not a spreadsheet",
    "not_a_survey.csv": "no delimiter found",
}


@pytest.fixture(scope="module")
def results(codebook) -> dict[str, IngestResult]:
    return {name: ingest_file(FIX / name, codebook) for name in [*EXPECTED, *REJECTED]}


def _messages(result: IngestResult) -> list[str]:
    return [e["message"] for e in result.report["errors"]]


def _rules(result: IngestResult) -> list[tuple]:
    return [(e["line"], e["column"], e["rule"]) for e in result.report["errors"]]


def _norm(result: IngestResult, column: str, kind: str) -> tuple[int, str] | None:
    for n in result.report["normalisations"]:
        if n["column"] == column and n["kind"] == kind:
            return n["count"], n["example"]
    return None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_and_no_loss(results, name):
    res = results[name]
    rep = res.report
    status, read, valid, quar, blank, enc, delim = EXPECTED[name]
    assert (rep["status"], rep["rows_read"], rep["rows_valid"]) == (status, read, valid)
    assert (rep["rows_quarantined"], rep["blank_lines"]) == (quar, blank)
    assert (rep["encoding"], rep["delimiter"]) == (enc, delim)
    assert rep["rows_valid"] + rep["rows_quarantined"] + rep["blank_lines"] == rep["rows_read"]
    assert len(res.valid) == valid
    assert len(res.quarantine) == quar
    assert res.exit_code == {"ok": 0, "partial": 1}[status]
    for err in rep["errors"]:
        assert name in err["message"]
        if err["line"] is not None:
            assert f"line {err['line']}" in err["message"]


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_files(results, name):
    res = results[name]
    assert res.status == "rejected"
    assert res.exit_code == 2
    assert res.report["rows_valid"] == 0
    assert res.valid.empty
    msg = res.report["errors"][0]["message"]
    assert msg.startswith(name)
    assert REJECTED[name] in msg
    assert res.summary().startswith(f"{name} : fichier rejeté")


def test_every_situation_has_a_fixture():
    assert len(SITUATIONS) == 30
    assert len(EXPECTED) + len(REJECTED) >= 30


def test_valid_typed_values(results):
    v = results["valid.csv"].valid
    assert list(v["id_repondant"]) == ["R003", "R004", "R005", "R006", "R002", "R001"]
    assert v["id_territoire_code"].is_monotonic_increasing
    r1 = v.set_index("id_repondant")
    assert r1.loc["R001", "id_poids"] == 1.5
    assert r1.loc["R004", "dyn_savoir_piloter__special"] == "nsp"
    assert math.isnan(r1.loc["R004", "dyn_savoir_piloter"])
    assert r1.loc["R001", "part_types_partenaires__collectivites"] == 1.0
    assert r1.loc["R001", "part_types_partenaires__associations"] == 1.0
    assert r1.loc["R001", "part_types_partenaires__etat"] == 0.0
    assert math.isnan(r1.loc["R003", "part_types_partenaires__etat"])
    assert r1.loc["R001", "id_date_collecte"] == pd.Timestamp("2025-03-15")
    assert r1.loc["R001", "source_line"] == 2
    assert r1.loc["R001", "source_file"] == "valid.csv"
    assert v["dyn_savoir_piloter"].dtype == np.float64
    assert v["id_territoire_niveau"].dtype == "str"
    # same typed content whatever the text encoding or delimiter
    cols = [c for c in v.columns if c != "source_file"]
    for other in ("utf8_bom.csv", "utf16.txt", "comma.csv", "pipe.csv", "tab.tsv"):
        pd.testing.assert_frame_equal(results[other].valid[cols], v[cols])


def test_cp1252_and_garbled(results):
    res = results["cp1252.csv"]
    assert "cp1252.csv: decoded as Windows-1252 (cp1252), not UTF-8" in res.report["warnings"]
    names = set(res.valid["id_territoire_nom"])
    assert names == {"Saint-Étienne", "L’Haÿ-les-Roses", "Cœur de Savoie"}
    warn = [w for w in results["garbled.csv"].report["warnings"] if "double-encoded" in w]
    assert warn == [
        "garbled.csv: column 'id_territoire_nom' has text that looks double-encoded "
        "(e.g. 'Saint-Ã‰tienne') on 1 row(s), lines 2; not repaired"
    ]
    assert "Saint-Ã‰tienne" in set(results["garbled.csv"].valid["id_territoire_nom"])


def test_numbers(results):
    res = results["numbers.csv"]
    assert _rules(res) == [
        (4, "dyn_savoir_piloter", "not_integer"),
        (5, "part_nb_actifs", "not_a_number"),
        (6, "part_nb_actifs", "not_a_number"),
    ]
    assert _messages(res)[0] == (
        "numbers.csv line 4, column dyn_savoir_piloter: not a whole number (never truncated) "
        "(value '2.5')"
    )
    v = res.valid.set_index("id_repondant")
    assert v.loc["R001", "id_poids"] == 1200.5
    assert v.loc["R002", "id_poids"] == 1000.0
    assert v.loc["R006", "id_poids"] == 2.25
    assert v.loc["R001", "frag_emploi_priorite"] == 4.0
    assert v.loc["R002", "part_nb_actifs"] == 1.0
    assert v.loc["R006", "part_nb_actifs__special"] == "refus"
    assert _norm(res, "id_poids", "thousands_separator") == (1, "1\u202f000")
    assert _norm(res, "id_poids", "decimal_comma") == (3, "1\u00a0200,5")
    assert _norm(res, "frag_emploi_priorite", "integral_float") == (1, "4.0")
    assert _norm(res, "part_nb_actifs", "integral_float") == (1, "1,0")
    q = res.quarantine
    assert list(q["source_line"]) == [4, 5, 6]
    assert q.loc[0, "raw"].startswith("R003;2025-1;2025;2025-03-17;13055")


def test_structural_errors(results):
    res = results["field_count.csv"]
    assert _messages(res) == [
        "field_count.csv line 3: 17 field(s) where the header has 16 (unquoted delimiter?)",
        "field_count.csv line 4: 10 field(s) where the header has 16 (unquoted delimiter?)",
    ]
    assert res.quarantine.loc[0, "raw"].startswith("R002;2025-1;2025;2025-03-16;69123;Lyon;3e;")
    multi = results["multiline.csv"]
    v = multi.valid.set_index("id_repondant")
    assert v.loc["R001", "id_territoire_nom"] == "Paris\n(Ville de)"
    assert v.loc["R001", "source_line"] == 2
    assert v.loc["R002", "source_line"] == 4  # the quoted newline shifts physical lines
    assert v.loc["R005", "source_line"] == 7
    assert _rules(multi) == [(5, "", "unclosed_quote")]
    assert multi.quarantine.loc[0, "raw"].startswith('R003;2025-1;2025;2025-03-17;13055;"Marseille')


def test_labels_aliases_and_specials(results):
    res = results["labels.csv"]
    v = res.valid.set_index("id_repondant")
    assert v.loc["R001", "dyn_savoir_piloter"] == 5.0
    assert v.loc["R002", "dyn_savoir_piloter"] == 4.0
    assert v.loc["R003", "dyn_savoir_piloter"] == 3.0
    assert list(v.loc[["R001", "R002", "R003"], "id_consentement"]) == [1.0, 1.0, 0.0]
    assert v.loc["R004", "id_type_repondant"] == "association"
    assert v.loc["R004", "id_territoire_niveau"] == "epci"
    assert v.loc["R006", "id_type_repondant"] == "elu_autre"
    assert _norm(res, "dyn_savoir_piloter", "label_to_code") == (2, "Tout à fait d'accord")
    assert _norm(res, "id_consentement", "alias") == (1, "O")
    assert _messages(res) == [
        "labels.csv line 6, column dyn_savoir_piloter: unknown label; expected codes 1, 2, 3, 4, 5 "
        "or the special codes -1 (« Ne sait pas »), -2 (« Ne souhaite pas répondre ») "
        "(value 'Bof')"
    ]
    sp = results["specials.csv"]
    assert _rules(sp) == [
        (5, "dyn_savoir_piloter", "out_of_range"),
        (6, "id_consentement", "special_not_allowed"),
        (7, "dyn_savoir_piloter", "special_not_allowed"),
    ]
    assert _messages(sp)[1] == (
        "specials.csv line 6, column id_consentement: special code 'nsp' is not declared for this "
        "item (value 'NSP')"
    )
    s = sp.valid.set_index("id_repondant")
    assert s.loc["R001", "dyn_savoir_piloter__special"] == "nsp"
    assert s.loc["R001", "frag_emploi_priorite__special"] == "refus"
    assert s.loc["R002", "part_nb_actifs__special"] == "nsp"
    assert math.isnan(s.loc["R003", "dyn_savoir_piloter"])
    assert pd.isna(s.loc["R003", "dyn_savoir_piloter__special"])
    assert _norm(sp, "dyn_savoir_piloter", "missing_spelling") == (1, ".")
    assert _norm(sp, "dyn_savoir_piloter", "special_code") == (2, "NSP")


def test_headers(results):
    res = results["header_synonyms.csv"]
    assert _norm(res, "id_poids", "header_synonym") == (1, "Pondération")
    assert _norm(res, "id_annee", "header_synonym") == (1, "Année")
    assert list(res.valid["id_poids"]) == [0.75, 2.0, 1.5]  # sorted by territory code
    assert _norm(results["trailing_delimiter.csv"], "(column 17)", "empty_unnamed_column_dropped")
    td = results["trailing_data.csv"]
    assert _messages(td) == [
        "trailing_data.csv line 3, column (column 17, unnamed): data in a column without a header "
        "name (value 'oups')"
    ]


def test_profiles_and_header_row(codebook):
    q = ingest_file(FIX / "qualtrics.csv", codebook, profile="qualtrics")
    assert (q.status, q.report["rows_read"], q.report["rows_valid"]) == ("ok", 3, 3)
    assert "qualtrics.csv: line 3 skipped as an extra header row" in q.report["warnings"]
    h = ingest_file(FIX / "qualtrics.csv", codebook, header_row=1)
    assert h.status == "ok"
    assert h.report["rows_valid"] == 3
    bad = ingest_file(FIX / "valid.csv", codebook, profile="spss")
    assert bad.status == "rejected"
    assert "unknown profile 'spss'" in bad.report["errors"][0]["message"]


def test_duplicates(results):
    res = results["duplicates.csv"]
    assert [e["rule"] for e in res.report["errors"]] == ["duplicate_id"] * 4
    assert _messages(res)[0] == (
        "duplicates.csv line 2, column id_repondant: respondent id 'R001' appears 2 times in "
        "wave '2025-1' (lines 2, 4): exact copies (value 'R001')"
    )
    assert (
        "conflicting copies, columns differing: id_poids, frag_emploi_priorite"
        in (_messages(res)[1])
    )
    assert list(res.quarantine["respondent_id"]) == ["R001", "R002", "R001", "R002"]


def test_dates_ids_and_territory_codes(results):
    d = results["dates.csv"]
    v = d.valid.set_index("id_repondant")
    assert v.loc["R001", "id_date_collecte"] == pd.Timestamp("2024-03-15")  # Excel serial 45366
    assert v.loc["R002", "id_date_collecte"] == pd.Timestamp("2024-03-15")
    assert v.loc["R003", "id_date_collecte"] == pd.Timestamp("2024-04-03")  # day first
    assert v.loc["R006", "id_date_collecte__special"] == "nsp"
    assert _rules(d) == [
        (5, "id_date_collecte", "impossible_date"),
        (6, "id_date_collecte", "ambiguous_date"),
    ]
    assert _rules(results["sci_ids.csv"]) == [(2, "id_repondant", "scientific_notation")]
    ins = results["insee.csv"]
    assert set(ins.valid["id_territoire_code"]) == {"01004", "2A004", "75056"}
    assert _norm(ins, "id_territoire_code", "zero_pad") == (1, "1004")
    assert (
        "insee.csv: column 'id_territoire_code': 1 territory code(s) of 4 digits zero-padded to "
        "5 (e.g. '1004'): a spreadsheet dropped the leading zero; check the codes against the "
        "source"
    ) in ins.report["warnings"]
    assert _rules(ins) == [(5, "id_territoire_code", "pattern")]


def test_blank_and_footer_lines(results):
    res = results["blank_footer.csv"]
    assert _rules(res) == [(8, "", "footer_line"), (9, "", "footer_line")]
    assert list(res.quarantine["raw"]) == ["Total;3;;;;;;;;;;;;;;", "Source : enquête 2025"]


def test_wrong_scale_is_one_column_error(results):
    res = results["wrong_scale.csv"]
    assert _rules(res) == [(None, "dyn_savoir_piloter", "wrong_scale")]
    assert (
        "11 of 12 answers are outside the scale (codes 1, 2, 3, 4, 5; values seen 0–10)"
        in (_messages(res)[0])
    )
    assert res.valid["dyn_savoir_piloter"].isna().all()
    assert res.exit_code == 1


def test_multi_select(results):
    res = results["multiselect.csv"]
    v = res.valid.set_index("id_repondant")
    assert v.loc["R001", "part_types_partenaires__ess"] == 1.0
    assert v.loc["R001", "part_types_partenaires__associations"] == 1.0
    assert v.loc["R001", "part_types_partenaires__collectivites"] == 0.0
    assert v.loc["R002", "part_types_partenaires__etat"] == 1.0
    assert v.loc["R006", "part_types_partenaires__fondations"] == 1.0
    assert v.loc["R005", "part_types_partenaires__special"] == "nsp"
    assert v.loc[
        "R007", ["part_types_partenaires__ess", "part_types_partenaires__etat"]
    ].tolist() == [
        1.0,
        1.0,
    ]
    assert _rules(res) == [(5, "part_types_partenaires", "unknown_option")]
    assert "unknown option 'les voisins'" in _messages(res)[0]
    kobo = results["kobo.csv"]
    assert sorted(e["column"] for e in kobo.report["errors"]) == [
        "part_types_partenaires__associations",
        "part_types_partenaires__collectivites",
    ]
    assert "text='collectivites', part_types_partenaires/associations=1" in _messages(kobo)[0]


def test_incoherence(results):
    res = results["incoherent.csv"]
    assert _rules(res) == [
        (3, "part_existe+part_nb_actifs", "incoherent"),
        (4, "part_existe+part_types_partenaires", "incoherent"),
    ]
    # the codebook rule "if part_existe in [0] then … in [0, missing]" keeps its wording
    first = res.report["errors"][0]
    assert first["value"] == "part_existe=0, part_nb_actifs=4"
    assert first["message"] == (
        "incoherent.csv line 3, column part_existe+part_nb_actifs: part_existe = 0 (non) but "
        "part_nb_actifs is answered positively (value 'part_existe=0, part_nb_actifs=4')"
    )


def test_xlsx(results, codebook):
    res = results["workbook.xlsx"]
    assert res.report["sheet"] == "Données"
    assert res.report["format"] == "xlsx"
    assert _rules(res) == [
        (3, "dyn_savoir_piloter", "excel_error"),
        (4, "frag_emploi_priorite", "formula_without_value"),
    ]
    v = res.valid.set_index("id_repondant")
    assert v.loc["R001", "id_poids"] == 1.5
    assert v.loc["R001", "frag_emploi_priorite"] == 7.0
    forced = ingest_file(FIX / "workbook_ambiguous.xlsx", codebook, sheet="Vague B")
    assert forced.status == "ok"
    assert forced.report["sheet"] == "Vague B"
    missing = ingest_file(FIX / "workbook.xlsx", codebook, sheet="Feuil9")
    assert (
        "no sheet 'Feuil9'; sheets are 'Notice', 'Données'"
        in missing.report["errors"][0]["message"]
    )


def test_sav_user_missing(results):
    res = results["spss.sav"]
    v = res.valid.set_index("id_repondant")
    assert v.loc["R002", "dyn_savoir_piloter__special"] == "nsp"  # 9 = "NSP" (user-missing)
    assert v.loc["R004", "dyn_savoir_piloter__special"] == "refus"  # 99 = "Refus"
    assert v.loc["R001", "dyn_savoir_piloter"] == 4.0
    assert v.loc["R003", "id_type_repondant"] == "elu_maire"  # via the SPSS value label
    assert v.loc["R004", "id_territoire_niveau"] == "epci"
    assert _rules(res) == [(7, "dyn_savoir_piloter", "unknown_label")]  # 77 "Sans avis"
    assert (
        "spss.sav: 3 SPSS user-missing value(s) mapped through value labels"
        in (res.report["warnings"])
    )


def test_outputs_are_deterministic(results, tmp_path):
    res = results["numbers.csv"]
    a = write_ingest_outputs(res, tmp_path / "a")
    b = write_ingest_outputs(res, tmp_path / "b")
    for key in ("responses", "quarantine", "report"):
        assert a[key].read_bytes() == b[key].read_bytes()
    report = json.loads(a["report"].read_text(encoding="utf-8"))
    assert report["file"] == "numbers.csv"
    assert str(FIX) not in a["report"].read_text()
    back = pd.read_parquet(a["responses"])
    assert len(back) == 3
    assert list(back["source_line"]) == list(res.valid["source_line"])
    q = pd.read_csv(a["quarantine"], dtype=str, keep_default_na=False)
    assert list(q.columns) == [
        "source_file",
        "source_line",
        "respondent_id",
        "n_reasons",
        "reasons",
        "raw",
    ]
    assert list(q["source_line"]) == ["4", "5", "6"]


def test_combine_results(codebook):
    a = ingest_file(FIX / "valid.csv", codebook)
    b = ingest_file(FIX / "numbers.csv", codebook)
    both = combine_results([a, b])
    rep = both.report
    assert rep["rows_read"] == 12
    assert rep["files"] == ["valid.csv", "numbers.csv"]
    # R001, R002 and R006 are valid in both files → every copy quarantined
    assert rep["rows_valid"] == 0 + 3 - 3 + 6 - 3
    assert rep["rows_quarantined"] == 3 + 6
    assert rep["rows_valid"] + rep["rows_quarantined"] + rep["blank_lines"] == rep["rows_read"]
    assert both.status == "partial"
    rejected = combine_results([a, ingest_file(FIX / "empty.csv", codebook)])
    assert rejected.status == "rejected"
    assert rejected.exit_code == 2


def test_programmer_errors_and_unreadable_paths(codebook, tmp_path):
    with pytest.raises(TypeError):
        ingest_file(FIX / "valid.csv", {"not": "a codebook"})  # type: ignore[arg-type]
    gone = ingest_file(tmp_path / "absent.csv", codebook)
    assert gone.status == "rejected"
    assert gone.report["file"] == "absent.csv"
    with pytest.raises(ValueError, match="at least one"):
        combine_results([])


def test_schema_catches_typed_errors(codebook):
    frame = pd.DataFrame(
        {
            "source_file": pd.Series(["f.csv", "f.csv"], dtype="str"),
            "source_line": np.array([2, 3]),
            "id_repondant": pd.Series(["R1", "R2"], dtype="str"),
            "dyn_savoir_piloter": [4.0, 7.0],
            "id_territoire_niveau": pd.Series(["commune", "canton"], dtype="str"),
        }
    )
    schema = build_response_schema(codebook, columns=frame.columns)
    failures = compute_schema_failures(frame, schema)
    table = build_failure_table(failures, frame, id_col="id_repondant")
    assert list(table.columns) == ["file", "line", "respondent_id", "column", "rule", "value"]
    assert table[["line", "respondent_id", "column", "value"]].values.tolist() == [
        [3.0, "R2", "dyn_savoir_piloter", "7.0"],
        [3.0, "R2", "id_territoire_niveau", "canton"],
    ]


def _valid_lines() -> tuple[str, list[str]]:
    header, *rows = (FIX / "valid.csv").read_text(encoding="utf-8").splitlines()
    return header, rows


def test_same_id_in_another_wave_is_not_a_duplicate(codebook, tmp_path):
    header, rows = _valid_lines()
    other_wave = rows[0].replace(";2025-1;2025;", ";2024-1;2024;", 1)
    assert other_wave != rows[0]
    path = tmp_path / "waves.csv"
    path.write_text("\n".join([header, *rows, other_wave]) + "\n", encoding="utf-8")
    res = ingest_file(path, codebook)
    assert res.status == "ok"
    assert res.report["rows_valid"] == len(rows) + 1
    assert (res.valid["id_repondant"] == "R001").sum() == 2


def test_pandas_renamed_duplicate_header_is_rejected(codebook, tmp_path):
    header, rows = _valid_lines()
    path = tmp_path / "mangled.csv"
    path.write_text(
        "\n".join([header + ";dyn_savoir_piloter.1", *(r + ";4" for r in rows)]) + "\n",
        encoding="utf-8",
    )
    res = ingest_file(path, codebook)
    assert res.status == "rejected"
    assert res.exit_code == 2
    msg = res.report["errors"][0]["message"]
    assert "duplicated column names on line 1" in msg
    assert "'dyn_savoir_piloter.1' (column 17, a copy of 'dyn_savoir_piloter')" in msg


def test_header_row_beyond_the_file(codebook):
    res = ingest_file(FIX / "valid.csv", codebook, header_row=99)
    assert res.status == "rejected"
    assert res.report["errors"][0]["message"] == (
        "valid.csv: --header-row 99 is beyond the end of the file (7 line(s))"
    )


def test_sheet_on_a_csv_is_said_to_be_ignored(codebook):
    res = ingest_file(FIX / "valid.csv", codebook, sheet="Données")
    assert res.status == "ok"
    assert (
        "valid.csv: --sheet 'Données' ignored: the file is not a workbook"
        in (res.report["warnings"])
    )


def test_garbled_text_repaired_only_on_request(codebook):
    plain = ingest_file(FIX / "garbled.csv", codebook)
    assert "Saint-Ã‰tienne" in set(plain.valid["id_territoire_nom"])
    assert not any(n["kind"] == "mojibake_repaired" for n in plain.report["normalisations"])
    res = ingest_file(FIX / "garbled.csv", codebook, repair_mojibake=True)
    assert res.status == "ok"
    assert res.report["rows_valid"] == 2
    assert set(res.valid["id_territoire_nom"]) == {"Saint-Étienne", "Lyon"}
    assert _norm(res, "id_territoire_nom", "mojibake_repaired") == (
        1,
        "Saint-Ã‰tienne → Saint-Étienne",
    )
    assert not any("not repaired" in w for w in res.report["warnings"])
    assert (
        "garbled.csv: column 'id_territoire_nom': double-encoded text repaired on 1 row(s) "
        "(e.g. 'Saint-Ã‰tienne' → 'Saint-Étienne'), as asked"
    ) in res.report["warnings"]


def test_likert_written_as_float(codebook, tmp_path):
    header, rows = _valid_lines()
    cells = rows[0].split(";")
    j = header.split(";").index("dyn_savoir_piloter")
    cells[j] = "4.0"
    half = rows[1].split(";")
    half[j] = "2.5"
    path = tmp_path / "likert_float.csv"
    path.write_text("\n".join([header, ";".join(cells), ";".join(half), *rows[2:]]) + "\n")
    res = ingest_file(path, codebook)
    assert res.report["rows_valid"] == len(rows) - 1
    assert res.valid.set_index("id_repondant").loc["R001", "dyn_savoir_piloter"] == 4.0
    assert _rules(res) == [(3, "dyn_savoir_piloter", "not_integer")]


def test_schema_row_failure_keeps_a_flagged_cell_reported_once(codebook, monkeypatch):
    """An Excel error cell is one reason, even when the schema also fails another row."""
    import evalterritoire.ingest.validate as validate

    def one_row_fails(frame, schema):
        return pd.DataFrame(
            {
                "index": [0],
                "column": ["source_line"],
                "check": ["greater_than_or_equal_to(1)"],
                "failure_case": ["0"],
            }
        )

    monkeypatch.setattr(validate, "compute_schema_failures", one_row_fails)
    res = ingest_file(FIX / "workbook.xlsx", codebook)
    on_error_cell = [
        e["rule"]
        for e in res.report["errors"]
        if e["line"] == 3 and e["column"] == "dyn_savoir_piloter"
    ]
    assert on_error_cell == ["excel_error"]
    assert res.report["rows_quarantined"] == 3
    assert res.report["rows_valid"] + res.report["rows_quarantined"] == res.report["rows_read"]
