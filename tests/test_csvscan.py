"""The vectorised record scan agrees with a plain byte-by-byte reading of RFC 4180 quoting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalterritoire.ingest.scan import scan_records

FIX = Path(__file__).resolve().parent / "fixtures" / "ingest"
CSV_FIXTURES = sorted(p for p in FIX.iterdir() if p.suffix in {".csv", ".tsv"})


def _reference(data: bytes, start: int, delim: int):
    """Byte-by-byte state machine: the specification the numpy passes must meet."""
    starts, stops, quotes, delims = [], [], [], []
    inside, q, d, begin = False, 0, 0, start
    for i in range(start, len(data)):
        c = data[i]
        if c == 34:
            inside, q = not inside, q + 1
        elif c == delim and not inside:
            d += 1
        elif c == 10 and not inside:
            starts.append(begin)
            stops.append(i)
            quotes.append(q)
            delims.append(d)
            inside, q, d, begin = False, 0, 0, i + 1
    if begin < len(data) or inside:
        starts.append(begin)
        stops.append(len(data))
        quotes.append(q)
        delims.append(d)
    return starts, stops, quotes, delims, inside


def _check(data: bytes, start: int, delim: bytes) -> None:
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    got = scan_records(arr, start, delim[0], nl)
    want = _reference(data, start, delim[0])
    for a, b in zip(got[:4], want[:4], strict=True):
        assert a.tolist() == b
    assert got[4] == want[4]


def test_known_records():
    data = b'a;b\n"c;\nd";e\r\n;\n"open;x'
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    starts, stops, quotes, delims, unclosed = scan_records(arr, 0, ord(";"), nl)
    assert starts.tolist() == [0, 4, 14, 16]
    assert stops.tolist() == [3, 13, 15, len(data)]
    assert quotes.tolist() == [0, 2, 0, 1]
    assert delims.tolist() == [1, 1, 1, 0]  # the ';' inside quotes is not a delimiter
    assert unclosed is True
    _check(data, 0, b";")


@pytest.mark.parametrize("path", CSV_FIXTURES, ids=lambda p: p.name)
def test_fixtures(path):
    data = path.read_bytes()
    _check(data, 0, b";")
    _check(data, data.find(b"\n") + 1, b",")


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b";", b'"', b"\n", b"\r\n", b",", b"\xc3\xa9"])).map(
        b"".join
    ),
    start=st.integers(0, 5),
)
def test_random_bytes(data, start):
    _check(data, min(start, len(data)), b";")
