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
