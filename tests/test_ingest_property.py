"""Property: random corruption of a valid export never raises and never loses a row."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalterritoire.ingest.files import ingest_file

VALID = (Path(__file__).resolve().parent / "fixtures" / "ingest" / "valid.csv").read_bytes()
LINES = VALID.split(b"\n")

_JUNK = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\n\r'),
    max_size=12,
)


@st.composite
def corruptions(draw, *, allow_quotes: bool) -> bytes:
    """A valid export with random cells replaced, delimiters deleted, bytes, truncated lines."""
    lines = [ln.split(b";") for ln in LINES[1:-1]]
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["junk", "delete_delim", "bytes", "truncate", "blank", "dup"]))
        i = draw(st.integers(0, len(lines) - 1))
        cells = lines[i]
        if op == "junk" and cells:
            j = draw(st.integers(0, len(cells) - 1))
            cells[j] = draw(_JUNK).encode("utf-8")
        elif op == "delete_delim" and len(cells) > 1:
            j = draw(st.integers(0, len(cells) - 2))
            cells[j : j + 2] = [cells[j] + cells[j + 1]]
        elif op == "bytes":
            alphabet = (
                bytes(range(256))
                if allow_quotes
                else bytes(b for b in range(256) if b not in (34, 10, 13))
            )
            raw = draw(st.binary(min_size=1, max_size=6))
            raw = bytes(alphabet[b % len(alphabet)] for b in raw)
            j = draw(st.integers(0, len(cells) - 1)) if cells else 0
            if cells:
                cells[j] = cells[j] + raw
        elif op == "truncate":
            text = b";".join(cells)
            cut = draw(st.integers(0, max(len(text) - 1, 0)))
            lines[i] = text[:cut].split(b";")
        elif op == "blank":
            lines.insert(i, [b""])
        elif op == "dup":
            lines.insert(i, list(cells))
    body = b"\n".join(b";".join(c) for c in lines)
    return LINES[0] + b"\n" + body + b"\n"


def _check(result, data: bytes) -> None:
    rep = result.report
    assert rep["status"] in {"ok", "partial", "rejected"}
    assert result.exit_code in {0, 1, 2}
    assert rep["rows_valid"] + rep["rows_quarantined"] + rep["blank_lines"] == rep["rows_read"]
    assert len(result.valid) == rep["rows_valid"]
    assert len(result.quarantine) == rep["rows_quarantined"]
    assert isinstance(result.summary(), str)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=corruptions(allow_quotes=False))
def test_quote_free_corruption_loses_no_line(data, codebook, tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    result = ingest_file(path, codebook)
    _check(result, data)
    if result.status != "rejected":
        # without quotes every physical line after the header is exactly one record
        physical = data.split(b"\n")[1:]
        if physical and physical[-1] == b"":
            physical = physical[:-1]
        assert result.report["rows_read"] == len(physical)
        lines = sorted(
            [*result.valid["source_line"].tolist(), *result.quarantine["source_line"].tolist()]
        )
        assert len(set(lines)) == len(lines)
        assert all(2 <= ln <= len(physical) + 1 for ln in lines)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=corruptions(allow_quotes=True))
def test_any_corruption_never_raises(data, codebook, tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    result = ingest_file(path, codebook)
    _check(result, data)
    if result.status != "rejected":
        physical = data.split(b"\n")[1:]
        if physical and physical[-1] == b"":
            physical = physical[:-1]
        # records may span lines only through quotes; never more records than lines
        assert result.report["rows_read"] <= len(physical)
