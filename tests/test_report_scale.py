"""The report contexts at scale: indexes built once give what the per-territory filters gave.

The estimates lookup, the breakdown indexes and the nearest-neighbour distances are computed
once for all territories (issue « national scale »); these tests check that each gives the
same values, bit for bit, as the direct computation it replaces.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evalterritoire.estimates import OTHER_GROUP
from evalterritoire.report.lookup import _Columns, _Lookup
from evalterritoire.report.neighbours import _Block, _distances, _pairwise_sum


def _same(a, b) -> bool:
    """Same keys in the same order, same types, same values (NaN equal to NaN)."""
    if list(a) != list(b):
        return False
    for key in a:
        x, y = a[key], b[key]
        if type(x) is not type(y):
            return False
        if isinstance(x, float) and math.isnan(x):
            if not math.isnan(y):
                return False
        elif x != y:
            return False
    return True


def _estimates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "wave": [2025, 2025, 2025, 2025, 2025],
            "domain_type": pd.array(
                ["territory", "territory", "national", "territory", None], dtype="string"
            ),
            "domain": ["A", "B", "", "A", "A"],
            "variable": ["x", "x", "x", "x", "y"],
            "level": [None, "", "", "", "1"],
            "statistic": ["mean", "mean", "mean", "mean", "proportion"],
            "estimator": ["direct", "fay_herriot", "direct", "direct", "direct"],
            "estimate": [1.5, np.nan, -0.0, 2.5, 0.25],
            "n": np.array([10, 20, 30, 40, 50], dtype="int64"),
            "is_small_n": [True, False, False, True, False],
            "status": pd.array(
                ["publishable", None, "fragile", "fragile", "suppressed"], dtype="string"
            ),
            "reason": ["", "x", None, "", ""],
            "extra": pd.array([1, None, 3, 4, 5], dtype="Int64"),
            "obj": pd.Series([np.float64(1.0), "a", None, np.int64(3), True], dtype=object),
        }
    )


def test_columns_record_is_to_dict_record():
    frame = _estimates()
    records = frame.to_dict(orient="records")
    columns = _Columns(frame)
    for pos, expected in enumerate(records):
        assert _same(columns.record(pos), expected)
        assert _same(columns.record(pos), frame.iloc[pos].to_dict())


def test_lookup_gives_the_last_row_of_a_key_as_before():
    frame = _estimates()
    lookup = _Lookup(frame)
    keyed = frame.copy()
    for col in ("domain_type", "domain", "variable", "level", "statistic"):
        keyed[col] = keyed[col].astype("string").fillna("")
    keyed["estimator"] = keyed["estimator"].astype("string").fillna("direct")
    records = keyed.to_dict(orient="records")
    # rows 0 and 3 share a key (level None reads as ""): the later row wins
    assert _same(lookup.row(("territory", "A"), "x", "", "mean", "direct"), records[3])
    assert _same(lookup.row(("territory", "B"), "x", "", "mean", "fay_herriot"), records[1])
    assert _same(lookup.row(("", "A"), "y", "1", "proportion", "direct"), records[4])
    assert lookup.row(("territory", "C"), "x", "", "mean", "direct") is None
    assert lookup.mean(("national", ""), "x")["estimate"] == 0.0
    assert _Lookup(None).mean(("national", ""), "x") is None


def _reference(z: np.ndarray, i: int, j: int) -> float | None:
    """One block's mean squared difference of two territories, pair by pair."""
    if z.shape[1] == 0:
        return None
    diff = z[i] - z[j]
    diff = diff[~np.isnan(diff)]
    return float(np.mean(diff**2)) if diff.size else None


@pytest.mark.parametrize("n_context", [0, 3, 9, 20])
def test_vectorised_distances_equal_the_pairwise_definition(n_context):
    rng = np.random.default_rng(n_context)
    n = 40
    context = rng.standard_normal((n, n_context)) * 10 ** rng.uniform(-3, 3, (n, n_context))
    profile = rng.standard_normal((n, 5))
    context[rng.random(context.shape) < 0.15] = np.nan
    profile[rng.random(profile.shape) < 0.1] = np.nan
    profile[3] = np.nan  # a territory without any score
    blocks = _Block(context), _Block(profile)
    for i in range(n):
        got = _distances(*blocks, i)
        for j in range(n):
            parts = [
                b for b in (_reference(context, i, j), _reference(profile, i, j)) if b is not None
            ]
            expected = math.sqrt(sum(parts) / len(parts)) if parts else None
            if expected is None:
                assert math.isnan(got[j])
            else:
                assert float(got[j]) == expected


def test_pairwise_sum_is_numpys_summation():
    rng = np.random.default_rng(3)
    for m in [1, 2, 7, 8, 9, 16, 17, 130, 300]:
        rows = rng.standard_normal((25, m)) ** 2 * 10 ** rng.uniform(-5, 5, (25, m))
        got = _pairwise_sum([rows[:, c] for c in range(m)])
        assert [float(g) for g in got] == [float(np.add.reduce(r)) for r in rows]


def test_context_json_is_the_deep_copy_json_and_the_glossary_reads_either_form():
    import json
    from dataclasses import asdict, dataclass

    from evalterritoire.report.colophon import glossary
    from evalterritoire.report.context import ReportContext, _clean

    @dataclass(frozen=True)
    class Inner:
        value: float
        flag: np.bool_

    ctx = ReportContext(
        study_name="Étude",
        wave=2025,
        territory="01",
        territory_name="Ain",
        is_national=False,
        min_n=30,
        identity={"population": np.float64(1234.5678912), "inner": Inner(np.nan, np.bool_(True))},
        composition=({"n": np.int64(3), "share": 1e-9, "label": "EPCI"},),
        essentiel=("Un EPCI « solide ».",),
    )
    expected = json.dumps(
        _clean(asdict(ctx)), ensure_ascii=False, indent=1, sort_keys=True, allow_nan=False
    )
    assert ctx.to_json() == expected + "\n"
    terms = {"EPCI": "Établissement public", "PTCE": "Pôle territorial"}
    assert glossary(ctx.to_data(), terms) == glossary(ctx.to_json(), terms)
    assert [g["term"] for g in glossary(ctx.to_data(), terms)] == ["EPCI"]


def test_glossary_word_search_answers_as_the_regex_did():
    import random
    import re

    from evalterritoire.report.colophon import _occurs_as_word

    rng = random.Random(5)
    alphabet = ["E", "P", "C", "I", "-", "_", " ", "é", "É", "1", "«", "\u00a0", '"', "x"]
    terms = ["EPCI", "PETR", "IC", "É1", "C-I", "x_", "-", "é"]
    for _ in range(4000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        for term in terms:
            expected = re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", text) is not None
            assert _occurs_as_word(term, text) is expected, (term, text)
    # every character class the regex sees as a word character, and a few it does not
    for ch in ("a", "Ω", "٣", "²", "_", "-", "·", "'", "\u202f", "中"):
        expected = re.search(r"(?<![\w-])EPCI(?![\w-])", f"{ch}EPCI") is not None
        assert _occurs_as_word("EPCI", f"{ch}EPCI") is expected, ch


# ----------------------------------------------------- one grouped pass per wave (phase 6)
def _former_actor_groups(types, territories, min_cell):
    """The per-territory loop ``actor_groups`` replaced (the reference)."""
    from evalterritoire.estimates import merge_small_groups

    out = pd.Series(pd.NA, index=types.index, dtype="string")
    frame = pd.DataFrame({"t": territories.astype("string"), "k": types.astype("string")})
    for _, idx in frame.dropna().groupby("t", sort=True).groups.items():
        counts = frame.loc[idx, "k"].value_counts().to_dict()
        out.loc[idx] = frame.loc[idx, "k"].map(merge_small_groups(counts, min_cell))
    return out


@pytest.mark.parametrize("min_cell", [1, 3, 5])
def test_actor_groups_in_one_pass_equal_the_per_territory_loop(min_cell):
    from evalterritoire.report.breakdowns import actor_groups

    rng = np.random.default_rng(11)
    n = 300
    territories = pd.Series(rng.choice(["A", "B", "C", "D", "E", None], n), dtype="string")
    kinds = rng.choice(["1", "2", "3", "4", None], n, p=[0.5, 0.3, 0.1, 0.05, 0.05])
    types = pd.Series(kinds, dtype=object)
    types[(territories == "D").fillna(False).to_numpy()] = "4"  # D: one type only
    in_e = np.flatnonzero((territories == "E").fillna(False).to_numpy())
    types[in_e] = [str(1 + i % 4) for i in range(in_e.size)]  # E: every type small at 5+
    got = actor_groups(types, territories, min_cell)
    pd.testing.assert_series_equal(got, _former_actor_groups(types, territories, min_cell))
    assert got.isna().any()
    assert (got == OTHER_GROUP).any() == (min_cell > 1)


def test_actor_groups_of_no_respondent_or_no_known_territory():
    from evalterritoire.report.breakdowns import actor_groups

    for types, territories in [
        (pd.Series([], dtype="string"), pd.Series([], dtype="string")),
        (pd.Series(["1", "2"]), pd.Series([None, None], dtype="string")),
    ]:
        pd.testing.assert_series_equal(
            actor_groups(types, territories, 3), _former_actor_groups(types, territories, 3)
        )


def _identity_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "terr": pd.array(["A", "A", "A", "B", "B", "C", None, "D"], dtype="string"),
            "name": ["Ain", "Ain", "Aisne", None, None, "Cher", "Zz", "b"],
            # ties: the first in sorted order wins, whatever the order of the rows
            "level": ["z", "a", "z", "y", "x", None, "q", 3],
            "region": [1, 1, 2, 2, 1, 5, 9, 7],
        }
    )


def test_modes_in_one_pass_equal_the_modal_of_each_territory():
    from evalterritoire.report.context import Columns
    from evalterritoire.report.sections import _modal
    from evalterritoire.report.wave import _by_territory, _modes

    frame = _identity_frame()
    columns = Columns(
        territory="terr", territory_name="name", territory_level="level", region="region"
    )
    modes = _modes(frame, columns)
    by_code = _by_territory(frame, "terr")
    assert sorted(by_code) == ["A", "B", "C", "D"]
    for col in ("name", "level", "region"):
        for code, group in by_code.items():
            assert modes[col].get(code, "") == _modal(group, col), (col, code)
    assert "B" not in modes["name"]  # no answer: the empty mode
    assert modes["level"]["B"] == "x"
    assert modes["region"]["A"] == "1"
    assert _modes(frame, Columns(territory=None)) == {}
    assert _modes(frame.drop(columns="terr"), columns) == {}


def _sections(columns):
    from evalterritoire.config import PublicationConfig
    from evalterritoire.report.sections import Sections

    return Sections(_Lookup(None), None, None, columns, 5, PublicationConfig(min_cell=2))


def test_quotable_rows_in_one_pass_equal_each_territorys_rows():
    from evalterritoire.report.context import Columns
    from evalterritoire.report.wave import _by_territory

    frame = pd.DataFrame(
        {
            "terr": pd.array(["A", "B", "A", "A", "B", None, "C", "A"], dtype="string"),
            "id": ["10", "2", "9", "x1", "1", "3", "4", "9"],
            "consent": [1, 0, None, 1, 0, 1, 0, 2],
            "said": ["a", "b", "c", None, "e", "f", "g", "h"],
            "other": range(8),
        }
    )
    columns = Columns(territory="terr", respondent_id="id", consent="consent", free_text=("said",))
    sections = _sections(columns)
    groups, empty = sections.quotable_by_territory(frame)
    for code, group in _by_territory(frame, "terr").items():
        expected = sections._quotable_rows(group)
        pd.testing.assert_frame_equal(groups.get(code, empty), expected)
    assert list(groups["A"]["id"]) == ["9", "9", "10", "x1"]
    assert "B" not in groups
    assert "C" not in groups
    assert sections.quotable_by_territory(frame.set_index(pd.Index([0] * 8))) is None
    assert sections.quotable_by_territory(frame.drop(columns="terr")) is None


def test_lookup_chooses_as_choose_does_with_records_built_only_for_the_chosen_row():
    from evalterritoire.report.lookup import choose

    statuses = ["publishable", "fragile", "suppressed", None, "other"]
    rows = []
    for i, (d, m) in enumerate((d, m) for d in statuses for m in statuses):
        for estimator, status in (("direct", d), ("fay_herriot", m)):
            rows.append({"domain_type": "territory", "domain": f"T{i}", "variable": "x",
                         "level": "", "statistic": "mean", "estimator": estimator,
                         "estimate": float(i), "status": status, "reason": f"r{i}{estimator}"})  # fmt: skip
    rows.append({"domain_type": "territory", "domain": "U", "variable": "x", "level": "",
                 "statistic": "mean", "estimator": "fay_herriot", "estimate": 1.0,
                 "status": "fragile", "reason": ""})  # fmt: skip
    table = pd.DataFrame(rows)
    table["status"] = table["status"].astype("string")
    lookup = _Lookup(table)
    for i in range(len(statuses) ** 2):
        domain = ("territory", f"T{i}")
        expected = choose(
            lookup.row(domain, "x", "", "mean", "direct"),
            lookup.row(domain, "x", "", "mean", "fay_herriot"),
        )
        got = lookup.mean(domain, "x")
        assert _same(got, expected), i
    assert lookup.mean(("territory", "U"), "x")["estimator"] == "fay_herriot"
    assert lookup.mean(("territory", "V"), "x") is None
    no_status = _Lookup(table.drop(columns=["status", "reason"]))
    assert no_status.mean(("territory", "T0"), "x")["estimator"] == "direct"


_GLOSSARY_DATA = [
    {"a": ["EPCI", "x-EPCI", "EPCI_2"], "b": {"EPCI": 1}, "glossary": []},
    {"glossary": [], "t": "le PTCE, la CC", "n": [1.5, 10, -0.0], "e": {}, "z": [[], ["CC"]]},
    {"glossary": [], "k": "« SCoT »\n(EPCI)", "m": [None, True, "PETR:"]},
]
_GLOSSARY_TERMS = [
    {"EPCI": "e", "PTCE": "p", "CC": "c", "SCoT": "s", "PETR": "r", "1": "one", "true": "t"},
    {"EPCI": "e", "CC, la": "with a separator"},  # searched in the compact text
    {"": "empty"},
    {"b": "a key", '"': "a quote", 'EPCI"': "quote at the end", "null": "null"},
]


@pytest.mark.parametrize("data", _GLOSSARY_DATA)
@pytest.mark.parametrize("terms", _GLOSSARY_TERMS)
def test_glossary_in_the_written_text_is_the_glossary_of_the_values(data, terms):
    from evalterritoire.report.colophon import glossary, glossary_in_text
    from evalterritoire.report.context import dumps_indented

    assert glossary_in_text(dumps_indented(data), data, terms) == glossary(data, terms)


@pytest.mark.parametrize("data", _GLOSSARY_DATA)
def test_a_list_field_spliced_into_the_text_is_the_text_written_again(data):
    from evalterritoire.report.context import dumps_indented, with_list_field

    items = [{"term": "EPCI", "definition": "« établissement »\n"}, {"term": "x", "n": [1, {}]}]
    text = dumps_indented(data)
    assert with_list_field(text, "glossary", items) == dumps_indented({**data, "glossary": items})
    assert with_list_field(text, "glossary", []) == text
    assert with_list_field(text, "absent", items) is None
    assert with_list_field(dumps_indented({"k": {"glossary": []}}), "glossary", items) is None
    assert with_list_field(text, "glossary", [object()]) is None  # not plain JSON


def test_clean_answers_exact_types_as_their_subclasses_are_answered():
    from collections import OrderedDict

    from evalterritoire.report.context import _clean

    class Text(str):
        pass

    class Number(float):
        pass

    values = [1e-7, 4e-7, -1e-7, 0.1234565, math.nan, math.inf, -math.inf, 2.0, -0.0]
    for v in values:
        assert _same({"v": _clean(v)}, {"v": _clean(Number(v))})
        assert _same({"v": _clean(v)}, {"v": _clean(np.float64(v))})
    nested = {"a": [1, True, None, "x", (2.5, {"b": ()})], 3: [np.int64(4)]}
    plain, ordered = _clean(nested), _clean(OrderedDict(nested))
    assert plain == ordered == {"a": [1, True, None, "x", [2.5, {"b": []}]], "3": [4]}
    assert type(plain["a"][1]) is bool
    assert _clean(Text("é")) == "é"


def test_records_are_found_depth_first_in_any_container():
    from collections import OrderedDict

    from evalterritoire.report.quality import _records

    rec = {"status": "fragile", "interval": "t", "inner": {"status": "x", "interval": ""}}
    hidden = {"status": None, "interval": "t", "inner": [rec]}
    values = [rec, (hidden,), OrderedDict(k=rec), "status", 3, None, [[{"interval": 1}]]]
    found = _records(values)
    assert [id(r) for r in found] == [id(rec), id(rec["inner"])] * 3


def test_profile_judges_the_maturity_scores_only_for_what_the_estimates_lack():
    from evalterritoire.report.stages import _profile

    labels = {"d1": "Un", "d2": "Deux", "d3": "Trois"}
    row = {"n": 40, "df": 12.0, "score_d1": 3.2, "se_d1": 0.2, "score_d2": 2.1, "se_d2": 0.4,
           "n_d2": 35, "score_d3": None}  # fmt: skip
    domain = ("territory", "A")

    def lookup(dims):
        return _Lookup(
            pd.DataFrame(
                {
                    "domain_type": "territory",
                    "domain": "A",
                    "variable": [f"score_{d}" for d in dims],
                    "level": "",
                    "statistic": "mean",
                    "estimator": "direct",
                    "estimate": [4.0 + i for i in range(len(dims))],
                    "n": 33,
                    "status": "publishable",
                    "interval": "t",
                }
            )
        )

    alone = _profile(row, labels, {}, {})
    assert [r["status"] is None for r in alone] == [False, False, True]  # d3: no score
    some = _profile(row, labels, {}, {}, lookup=lookup(["d2"]), domain=domain)
    assert some[0] == alone[0]
    assert some[2] == alone[2]
    assert some[1]["score"] == 4.0
    every = _profile(row, labels, {}, {}, lookup=lookup(["d1", "d2", "d3"]), domain=domain)
    assert [r["score"] for r in every] == [4.0, 5.0, 6.0]
    assert all(r["n"] == 33 and r["interval"] == "t" for r in every)


def test_indented_writer_equals_json_dumps_on_random_nested_values():
    """Containers of scalars (written by the C encoder) at every depth, mixed with the rest."""
    import json
    import random

    from evalterritoire.report.context import dumps_indented

    rng = random.Random(3)
    scalars = [
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        1e-07,
        1e22,
        True,
        False,
        None,
        "",
        'é « x »\n\t"\\',
        "\u2028",
    ]

    def value(depth):
        roll = rng.random()
        if depth > 4 or roll < 0.4:
            return rng.choice(scalars)
        if roll < 0.7:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(["a", "b", "é", "z z", '"k"', "\\"]) + str(i): value(depth + 1)
                for i in range(rng.randint(0, 4))}  # fmt: skip

    for _ in range(400):
        data = value(0)
        expected = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True, allow_nan=False)
        assert dumps_indented(data) == expected + "\n"
    with pytest.raises(ValueError, match="JSON"):
        dumps_indented({"a": [1.0, math.nan]})
