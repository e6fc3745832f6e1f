"""Ingestion driven by the codebook's roles and rules, with a small instrument of its own.

The codebook here names its columns unlike the shipped one (``ident``, ``vague``, ``commune``),
declares an integer wave and rules of other shapes than "if no then 0 or missing": the checks
must follow the codebook, not the reference instrument.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evalterritoire.codebook import load_codebook
from evalterritoire.errors import CodebookError
from evalterritoire.ingest.files import combine_results, ingest_file

CODEBOOK = {
    "codebook": {"name": "petit", "version": "1"},
    "scales": {"nombre": {"type": "count", "min": 0}},
    "variables": [
        {"id": "ident", "label_fr": "Identifiant", "type": "identifier", "required": True},
        {"id": "vague", "label_fr": "Vague", "type": "count", "scale": "nombre", "role": "wave"},
        {"id": "commune", "label_fr": "Commune", "type": "territory_code"},
        {
            "id": "statut",
            "label_fr": "Statut",
            "type": "categorical",
            "options": {"pub": "Public", "asso": "Associatif", "autre": "Autre"},
        },
        {"id": "nb", "label_fr": "Nombre", "type": "count", "scale": "nombre"},
        {
            "id": "canaux",
            "label_fr": "Canaux",
            "type": "multi_select",
            "options": {"mail": "Courriel", "tel": "Téléphone"},
        },
    ],
    "rules": [
        {
            "id": "autre_peu",
            "if": {"variable": "statut", "in": ["autre"]},
            "then": {"variables": ["nb"], "in": [1, 2, "missing"]},
        },
        {
            "id": "public_sans_canal",
            "if": {"variable": "statut", "in": ["pub", "asso"]},
            "then": {"variables": ["canaux"], "in": [0]},
        },
    ],
}

HEADER = "ident;vague;commune;statut;nb;canaux"


def _codebook(tmp_path: Path, **changes):
    raw = yaml.safe_load(yaml.safe_dump(CODEBOOK))
    for key, value in changes.items():
        raw[key] = value
    path = tmp_path / "codebook.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_codebook(path)


def _ingest(tmp_path: Path, codebook, *rows: str, name: str = "export.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return ingest_file(path, codebook)


def _reasons(result) -> list[tuple[int, str, str, str, str]]:
    return [
        (e["line"], e["column"], e["value"], e["rule"], e["message"].split(": ", 1)[1])
        for e in result.report["errors"]
    ]


def test_rule_with_a_categorical_gate_and_a_list_of_allowed_codes(tmp_path):
    cb = _codebook(tmp_path, rules=CODEBOOK["rules"][:1])
    res = _ingest(
        tmp_path,
        cb,
        "a1;2024;01001;autre;1;",
        "a2;2024;01001;autre;3;",  # 3 is not allowed when statut is autre
        "a3;2024;01002;autre;;",  # no answer is allowed
        "a4;2024;01002;pub;5;",  # the rule does not apply to pub
        "a5;2024;01002;autre;0;",  # 0 is not allowed either
    )
    assert _reasons(res) == [
        (
            3,
            "statut+nb",
            "statut=autre, nb=3",
            "incoherent",
            "statut = autre (autre), so nb must be one of 1, 2 or no answer, but it is 3 "
            "(rule 'autre_peu') (value 'statut=autre, nb=3')",
        ),
        (
            6,
            "statut+nb",
            "statut=autre, nb=0",
            "incoherent",
            "statut = autre (autre), so nb must be one of 1, 2 or no answer, but it is 0 "
            "(rule 'autre_peu') (value 'statut=autre, nb=0')",
        ),
    ]
    assert list(res.quarantine["source_line"]) == [3, 6]
    assert list(res.quarantine["respondent_id"]) == ["a2", "a5"]
    assert sorted(res.valid["ident"]) == ["a1", "a3", "a4"]


def test_rule_on_a_multi_select_counts_its_ticked_options(tmp_path):
    cb = _codebook(tmp_path, rules=CODEBOOK["rules"][1:])
    res = _ingest(
        tmp_path,
        cb,
        "b1;2024;01001;pub;;mail tel",  # two options ticked
        "b2;2024;01001;asso;;",  # no answer: "missing" is not allowed by this rule
        "b3;2024;01001;autre;;tel",  # rule does not apply
    )
    assert [(line, value) for line, _, value, _, _ in _reasons(res)] == [
        (2, "statut=pub, canaux=2"),
        (3, "statut=asso, canaux=missing"),
    ]
    assert _reasons(res)[1][4].startswith(
        "statut = asso (associatif), so canaux must be 0, but it is missing "
        "(rule 'public_sans_canal')"
    )
    assert list(res.valid["ident"]) == ["b3"]


def test_rule_gated_on_no_answer(tmp_path):
    rule = {
        "id": "sans_statut",
        "if": {"variable": "statut", "in": ["missing"]},
        "then": {"variables": ["nb"], "in": ["missing"]},
    }
    cb = _codebook(tmp_path, rules=[rule])
    res = _ingest(tmp_path, cb, "c1;2024;01001;;4;", "c2;2024;01001;;;", "c3;2024;01001;pub;4;")
    assert [(line, value) for line, _, value, _, _ in _reasons(res)] == [
        (2, "statut=missing, nb=4")
    ]
    assert "so nb must be no answer, but it is 4" in _reasons(res)[0][4]


def test_rule_with_a_word_for_a_numeric_variable_is_a_codebook_error(tmp_path):
    rule = {
        "id": "mal_ecrite",
        "if": {"variable": "nb", "in": ["beaucoup"]},
        "then": {"variables": ["canaux"], "in": [0]},
    }
    cb = _codebook(tmp_path, rules=[rule])
    with pytest.raises(CodebookError, match=r"rule 'mal_ecrite'.*'beaucoup'.*'nb'"):
        _ingest(tmp_path, cb, "d1;2024;01001;pub;1;")


def test_duplicates_are_sought_per_integer_wave(tmp_path):
    cb = _codebook(tmp_path, rules=[])
    res = _ingest(
        tmp_path,
        cb,
        "e1;2024;01001;pub;1;",
        "e1;2025;01001;pub;1;",  # same id, another wave: another response
        "e2;2025;01001;pub;1;",
        "e2;2025;01001;pub;2;",  # same id, same wave: both copies out
    )
    assert _reasons(res) == [
        (
            line,
            "ident",
            "e2",
            "duplicate_id",
            "respondent id 'e2' appears 2 times in wave '2025' (lines 4, 5): conflicting "
            "copies, columns differing: nb (value 'e2')",
        )
        for line in (4, 5)
    ]
    assert list(res.valid["ident"]) == ["e1", "e1"]
    assert list(res.valid["vague"]) == [2024, 2025]


def test_without_a_wave_role_duplicates_are_sought_in_the_whole_file(tmp_path):
    variables = [dict(v) for v in CODEBOOK["variables"]]
    del variables[1]["role"]
    cb = _codebook(tmp_path, variables=variables, rules=[])
    assert cb.role("wave") is None
    res = _ingest(tmp_path, cb, "f1;2024;01001;pub;1;", "f1;2025;01001;pub;1;")
    assert [(line, rule) for line, _, _, rule, _ in _reasons(res)] == [
        (2, "duplicate_id"),
        (3, "duplicate_id"),
    ]
    assert "appears 2 times (lines 2, 3): conflicting copies" in _reasons(res)[0][4]


def test_valid_rows_are_ordered_by_the_territory_and_respondent_id_roles(tmp_path):
    cb = _codebook(tmp_path, rules=[])
    res = _ingest(
        tmp_path,
        cb,
        "g3;2024;01002;pub;1;",
        "g2;2024;01001;pub;1;",
        "g1;2024;01002;pub;1;",
        "g0;2024;;pub;1;",  # no territory: last
    )
    assert list(res.valid["ident"]) == ["g2", "g1", "g3", "g0"]
    assert list(res.valid["source_line"]) == [3, 4, 2, 5]


def test_combined_files_use_the_codebook_roles(tmp_path):
    cb = _codebook(tmp_path, rules=[])
    a = _ingest(tmp_path, cb, "h2;2024;01002;pub;1;", "h1;2024;01001;pub;1;", name="a.csv")
    b = _ingest(tmp_path, cb, "h1;2024;01001;pub;1;", "h3;2024;01001;pub;1;", name="b.csv")
    both = combine_results([a, b])
    assert list(both.valid["ident"]) == ["h3", "h2"]
    assert [(e["column"], e["value"], e["rule"]) for e in both.report["errors"]] == [
        ("ident", "h1", "duplicate_id"),
        ("ident", "h1", "duplicate_id"),
    ]
    assert list(both.quarantine["reasons"].str.split(":").str[0]) == ["ident", "ident"]
    assert both.report["rows_valid"] + both.report["rows_quarantined"] == 4
