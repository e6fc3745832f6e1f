"""Delimited text exports (CSV, TSV, TXT): bytes → :class:`~evalterritoire.ingest.raw._Raw`.

Owns the steps of :func:`_read_csv`: the text as UTF-8 bytes (decoded by
:mod:`evalterritoire.ingest.encoding`), the delimiter sniffing, the header among the first
lines, the record scan with physical start lines (RFC 4180 quotes, vectorised in
:mod:`evalterritoire.ingest.scan`, stray-quote recovery), the structural checks of each record
(field count, blank and footer lines) and the parsing of the good records with pyarrow into
dictionary-encoded text cells.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalterritoire.codebook import Codebook, normalise_text
from evalterritoire.codebook.workbook import MAX_CELL_CHARS, MAX_COLUMNS
from evalterritoire.errors import FileRejectedError
from evalterritoire.ingest.encoding import _decode
from evalterritoire.ingest.raw import _FOOTER, _factorize_rows, _locate_header, _Raw

DELIMITERS = (";", ",", "\t", "|")
_DELIM_NAMES = {";": "semicolon", ",": "comma", "\t": "tab", "|": "pipe"}


def _split_fields(text: str, delim: str) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=False))
    except csv.Error:
        return text.split(delim)
    out: list[str] = []
    for k, r in enumerate(rows):
        if k and out:
            out[-1] += "\n" + (r[0] if r else "")
            out.extend(r[1:])
        else:
            out.extend(r)
    return out if rows else [""]


def _sniff_delimiter(lines: list[str]) -> str | None:
    best, best_score = None, (-1, -1)
    for d in DELIMITERS:
        counts = [len(_split_fields(ln, d)) for ln in lines]
        if not counts or counts[0] < 2:
            continue
        score = (sum(c == counts[0] for c in counts), counts[0])
        if score > best_score:
            best, best_score = d, score
    return best


def _join_runs(
    buf: bytes, starts: np.ndarray, ends: np.ndarray, ends_nocr: np.ndarray, keep: np.ndarray
) -> bytes:
    """The records ``keep`` (sorted positions), newline-terminated, copied run by run.

    ``ends`` is the position of each record's newline and ``ends_nocr`` its end without a
    carriage return. Records that follow each other in the file (the next one starts right after
    this one's newline) are copied as one slice of ``buf``, so the cost is one ``memcpy`` per run
    of kept records rather than one per record.
    """
    if not len(keep):
        return b""
    adjacent = starts[keep[1:]] == ends[keep[:-1]] + 1
    brk = np.flatnonzero(~adjacent) + 1
    first = keep[np.concatenate([[0], brk])]
    last = keep[np.concatenate([brk - 1, [len(keep) - 1]])]
    mv = memoryview(buf)
    parts: list[Any] = []
    for a, b in zip(starts[first].tolist(), ends_nocr[last].tolist(), strict=True):
        parts.append(mv[a:b])
        parts.append(b"\n")
    return b"".join(parts)


@dataclass
class _Text:
    """The export as UTF-8 bytes with its physical lines (newline positions, line starts)."""

    buf: bytes
    arr: np.ndarray  # the bytes as uint8, no copy
    nl: np.ndarray  # positions of the newlines
    line_starts: np.ndarray

    @classmethod
    def of(cls, buf: bytes) -> _Text:
        from evalterritoire.ingest.scan import newlines

        arr = np.frombuffer(buf, dtype=np.uint8)
        nl = newlines(arr)
        return cls(buf, arr, nl, np.concatenate([[0], nl + 1]))

    @property
    def n_lines(self) -> int:
        """Number of physical lines (a final newline ends the last line, it opens none)."""
        return len(self.line_starts) - (1 if self.buf.endswith(b"\n") else 0)

    def line_of(self, pos: np.ndarray) -> np.ndarray:
        """1-based physical line of each byte position."""
        return np.searchsorted(self.nl, pos, side="left") + 1

    def decode(self, start: int, stop: int) -> str:
        """The text of the bytes ``start:stop``."""
        return self.buf[start:stop].decode("utf-8")


@dataclass
class _Records:
    """Bounds of the data records (byte positions) and what the scan counted in each.

    ``ends`` is the position of each record's newline, ``ends_nocr`` its end without a carriage
    return; ``broken`` holds the (start, end) of the lines where an unbalanced quote was cut.
    """

    starts: np.ndarray
    ends: np.ndarray
    ends_nocr: np.ndarray
    qcount: np.ndarray  # quotes per record
    fcount: np.ndarray  # fields per record
    broken: list[tuple[int, int]]

    @property
    def lengths(self) -> np.ndarray:
        return self.ends_nocr - self.starts


def _read_csv(
    data: bytes,
    name: str,
    codebook: Codebook,
    *,
    encoding: str | None,
    delimiter: str | None,
    header_row: int | None,
    profile: str,
) -> _Raw:
    """Read a delimited export into its raw table: decode, sniff, header, records, cells."""
    buf, enc, warnings = _utf8_bytes(data, name, encoding)
    text = _Text.of(buf)
    if header_row is not None and header_row > text.n_lines:
        raise FileRejectedError(
            f"{name}: --header-row {header_row} is beyond the end of the file "
            f"({text.n_lines} line(s))"
        )
    head = _head_lines(text, name)
    from_line = header_row or head[0][0]
    delim = _choose_delimiter([ln for i, ln in head if i >= from_line], delimiter, name)
    header, header_line, last_header = _find_header(
        head, from_line, delim, codebook, name, header_row, profile, warnings
    )
    if len(header) > MAX_COLUMNS:
        raise FileRejectedError(
            f"{name}: the header on line {header_line} has {len(header):,} columns, more than "
            f"the {MAX_COLUMNS:,} allowed"
        )
    rec = _scan_data(text, last_header, delim, len(header))
    blank, good = _classify(text, rec, delim, len(header))
    bad_records = _bad_records(text, rec, ~blank & ~good, delim, len(header))
    codes, uniques = _cells(text, rec, good, delim, len(header))
    g = np.flatnonzero(good)
    long_cells = _long_cells(codes, uniques) if (rec.lengths[g] > MAX_CELL_CHARS).any() else []
    g_starts, g_ends = rec.starts[g], rec.ends_nocr[g]

    def raw_text(pos: np.ndarray) -> list[str]:
        return [text.decode(g_starts[p], g_ends[p]) for p in pos]

    return _Raw(
        header=header,
        header_line=header_line,
        codes=codes,
        uniques=uniques,
        lines=text.line_of(g_starts).astype(np.int64),
        raw_text=raw_text,
        bad_records=bad_records,
        cell_errors=long_cells,
        blank_lines=int(blank.sum()),
        meta={
            "format": "csv" if delim != "\t" else "tsv",
            "encoding": enc,
            "delimiter": delim,
            "sheet": None,
            "header_line": header_line,
        },
        warnings=warnings,
        norms=[],
    )


def _long_cells(
    codes: list[np.ndarray], uniques: list[np.ndarray]
) -> list[tuple[int, int, str, str, str]]:
    """The cells longer than :data:`~evalterritoire.codebook.workbook.MAX_CELL_CHARS` characters.

    Returned as the reader's cell flags ``(row position, column, shown value, rule, detail)``:
    each such row is quarantined (rule ``cell_too_long``), its raw line kept.
    """
    out = []
    for j, (c, u) in enumerate(zip(codes, uniques, strict=True)):
        long = [k for k, text in enumerate(u) if len(text) > MAX_CELL_CHARS]
        for pos in np.flatnonzero(np.isin(c, long)) if long else ():
            text = u[c[pos]]
            out.append(
                (
                    int(pos),
                    j,
                    text[:80] + "…",
                    "cell_too_long",
                    f"a cell of {len(text):,} characters, more than the {MAX_CELL_CHARS:,} "
                    "allowed (Excel's limit)",
                )
            )
    return out


def _utf8_bytes(data: bytes, name: str, encoding: str | None) -> tuple[bytes, str, list[str]]:
    """The export as UTF-8 bytes (the input itself when it already is), its encoding, warnings."""
    text, enc, warnings = _decode(data, name, encoding)
    buf = data if text is None or enc == "utf-8" else text.encode("utf-8")
    if not buf or buf.isspace():
        raise FileRejectedError(f"{name}: the file is empty")
    return buf, enc, warnings


def _head_lines(text: _Text, name: str) -> list[tuple[int, str]]:
    """The first 30 non-blank physical lines (within the first 400), with their numbers."""
    head: list[tuple[int, str]] = []
    for i in range(min(len(text.line_starts), 400)):
        stop = text.nl[i] if i < len(text.nl) else len(text.buf)
        ln = text.decode(text.line_starts[i], stop).rstrip("\r")
        if ln.strip():
            head.append((i + 1, ln))
        if len(head) >= 30:
            break
    if not head:
        raise FileRejectedError(f"{name}: the file is empty (blank lines only)")
    return head


def _choose_delimiter(lines: list[str], forced: str | None, name: str) -> str:
    """The delimiter given (one character), else the one sniffed on the first lines."""
    if forced is not None:
        if len(forced) != 1:
            raise FileRejectedError(f"{name}: the delimiter must be one character, got {forced!r}")
        return forced
    delim = _sniff_delimiter(lines)
    if delim is None:
        raise FileRejectedError(
            f"{name}: no delimiter found (tried ; , tab |): not a delimited survey export"
        )
    return delim


def _find_header(
    head: list[tuple[int, str]],
    from_line: int,
    delim: str,
    codebook: Codebook,
    name: str,
    header_row: int | None,
    profile: str,
    warnings: list[str],
) -> tuple[list[str], int, int]:
    """The header among the first non-blank lines: (cells, its line, the last header line).

    Extra header rows (Qualtrics) and non-blank lines before the header are skipped with a
    warning.
    """
    cands = [(ln, _split_fields(txt, delim)) for ln, txt in head if ln >= from_line][:12]
    hidx, extra = _locate_header(cands, codebook, name, header_row, profile)
    header_line = cands[hidx][0]
    for k in extra:
        warnings.append(f"{name}: line {cands[k][0]} skipped as an extra header row")
    skipped_before = sum(1 for ln, _ in head if ln < header_line)
    if skipped_before:
        warnings.append(
            f"{name}: {skipped_before} non-blank line(s) before the header line {header_line} skipped"
        )
    last_header = cands[extra[-1]][0] if extra else header_line
    return [h.strip() for h in cands[hidx][1]], header_line, last_header


def _scan_data(text: _Text, last_header: int, delim: str, n_fields: int) -> _Records:
    """The records after the header, cut where a stray quote breaks the field count.

    The vectorised scan (:func:`~evalterritoire.ingest.scan.scan_records`) honours quotes; a
    multi-line record whose field count is not the header's, or an unclosed quote, is cut: its
    first line becomes a broken record and the scan resumes on the next line.
    """
    from evalterritoire.ingest.scan import scan_records

    n_total = len(text.buf)
    pos = int(text.line_starts[last_header]) if last_header < len(text.line_starts) else n_total
    pieces: list[tuple[np.ndarray, ...]] = []
    broken: list[tuple[int, int]] = []
    while pos < n_total:
        st, en, qc, dc, unclosed = scan_records(text.arr, pos, ord(delim), text.nl)
        cut = _first_broken(text, st, en, unclosed, delim, n_fields)
        if cut is None:
            pieces.append((st, en, qc, dc))
            break
        pieces.append((st[:cut], en[:cut], qc[:cut], dc[:cut]))
        i_nl = np.searchsorted(text.nl, st[cut])
        ln_end = int(text.nl[i_nl]) if i_nl < len(text.nl) else n_total
        broken.append((int(st[cut]), ln_end))
        pos = ln_end + 1
    starts, ends, qcount, dcount = (
        np.concatenate([p[k] for p in pieces]) if pieces else np.zeros(0, np.int64)
        for k in range(4)
    )
    # strip the \r of CRLF
    cr = (
        (ends > starts) & (text.arr[np.maximum(ends - 1, 0)] == 13)
        if len(ends)
        else np.zeros(0, bool)
    )
    ends_nocr = ends - cr.astype(np.int64)
    # field counts = delimiters outside quotes + 1 (csv module after a broken quote)
    fcount = dcount + 1
    if broken:
        for k in np.flatnonzero(qcount > 0):
            fcount[k] = len(_split_fields(text.decode(starts[k], ends_nocr[k]), delim))
    return _Records(starts, ends, ends_nocr, qcount, fcount, broken)


def _first_broken(
    text: _Text, st: np.ndarray, en: np.ndarray, unclosed: bool, delim: str, n_fields: int
) -> int | None:
    """Index of the first record to cut, or None when every scanned record stands.

    A record is cut at an unclosed quote, or when it spans several lines with a field count
    other than the header's (a stray quote swallowed the newlines).
    """
    cut = len(st) - 1 if unclosed and len(st) else None
    multi = np.flatnonzero(text.line_of(en) - text.line_of(st) > 0) if len(st) else []
    for k in multi:
        if cut is not None and k >= cut:
            break
        rec = text.decode(st[k], en[k]).rstrip("\r")
        if len(_split_fields(rec, delim)) != n_fields:
            return int(k)
    return cut


def _classify(
    text: _Text, rec: _Records, delim: str, n_fields: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which records are blank and which are good (two boolean masks).

    A blank record holds nothing but delimiters and spaces; a good one has the header's field
    count and is not a summary line ("Total", "Source :").
    """
    lengths = rec.lengths
    dcount = rec.fcount - 1
    blank = lengths == 0
    for k in np.flatnonzero(~blank & (lengths - dcount <= 16)):
        if not text.decode(rec.starts[k], rec.ends_nocr[k]).replace(delim, "").strip():
            blank[k] = True
    good = ~blank & (rec.fcount == n_fields)
    if len(rec.starts):
        last = max(len(text.buf) - 1, 0)
        first = text.arr[np.minimum(rec.starts, last)]
        second = text.arr[np.minimum(rec.starts + 1, last)]
        initial = np.where(first == ord('"'), second, first)  # first letter, quote or not
        for k in np.flatnonzero(good & np.isin(initial, list(b"TtSs"))):
            head = text.buf[rec.starts[k] : min(int(rec.ends_nocr[k]), int(rec.starts[k]) + 40)]
            if _FOOTER.match(normalise_text(head.decode("utf-8", "replace").lstrip('"'))):
                good[k] = False
    return blank, good


def _bad_records(
    text: _Text, rec: _Records, bad: np.ndarray, delim: str, n_fields: int
) -> list[dict[str, Any]]:
    """The structurally bad records (field count, footer lines, broken quotes), with reasons."""
    out = []
    for k in np.flatnonzero(bad):
        raw = text.decode(rec.starts[k], rec.ends_nocr[k])
        rule, msg = _structural_reason(raw, int(rec.fcount[k]), n_fields, delim)
        out.append(
            {
                "line": int(text.line_of(rec.starts[k : k + 1])[0]),
                "raw": raw,
                "rule": rule,
                "message": msg,
            }
        )
    for s, e in rec.broken:
        out.append(
            {
                "line": int(text.line_of(np.array([s]))[0]),
                "raw": text.decode(s, e).rstrip("\r"),
                "rule": "unclosed_quote",
                "message": "a quote opened on this line is never closed (or unbalanced); the line is "
                "kept here and reading resumes on the next line",
            }
        )
    return out


def _cells(
    text: _Text, rec: _Records, good: np.ndarray, delim: str, n_fields: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The text cells of the good records, dictionary-encoded per column (codes, uniques).

    Parsed with pyarrow when it agrees with the scan on the records, else with the csv module.
    """
    g = np.flatnonzero(good)
    table, keep_rows = _arrow_table(text, rec, good, delim, n_fields) if len(g) else (None, None)
    if table is None:
        rows = [_split_fields(text.decode(rec.starts[k], rec.ends_nocr[k]), delim) for k in g]
        return _factorize_rows(rows, n_fields)
    table = table.unify_dictionaries()
    codes: list[np.ndarray] = []
    uniques: list[np.ndarray] = []
    for j in range(n_fields):
        col = table.column(j)
        if col.num_chunks:
            idx_arr = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in col.chunks])
            dic = np.asarray(col.chunks[0].dictionary.to_pylist(), dtype=object)
        else:
            idx_arr, dic = np.zeros(0, np.int64), np.array([], dtype=object)
        if keep_rows is not None:
            idx_arr = idx_arr[keep_rows]
        codes.append(idx_arr.astype(np.int32, copy=False))
        uniques.append(dic)
    return codes, uniques


def _arrow_table(
    text: _Text, rec: _Records, good: np.ndarray, delim: str, n_fields: int
) -> tuple[Any, np.ndarray | None]:
    """The good records parsed by pyarrow (dictionary-encoded text), or (None, None).

    First the whole data region in place: Arrow skips the records with a wrong field count and
    empty lines; blank-looking and footer records it parsed are dropped afterwards through the
    returned row mask. When that disagrees with the scan, the good records alone, copied run by
    run (:func:`_join_runs`).
    """
    import pyarrow as pa

    g = np.flatnonzero(good)
    parse = _arrow_parser(text, rec, g, delim, n_fields)
    if not rec.broken:
        parsed = np.flatnonzero((rec.fcount == n_fields) & (rec.lengths > 0))
        try:
            table = parse(pa.BufferReader(pa.py_buffer(text.buf)[int(rec.starts[0]) :]))
            if table.num_rows == len(parsed):
                return table, (good[parsed] if len(parsed) != len(g) else None)
        except (pa.ArrowInvalid, pa.ArrowException):
            pass
    try:
        joined = _join_runs(text.buf, rec.starts, rec.ends, rec.ends_nocr, g)
        table = parse(pa.BufferReader(pa.py_buffer(joined)))
        return (table, None) if table.num_rows == len(g) else (None, None)
    except (pa.ArrowInvalid, pa.ArrowException):
        return None, None


def _arrow_parser(text: _Text, rec: _Records, g: np.ndarray, delim: str, n_fields: int):
    """A pyarrow CSV parser of a source into ``n_fields`` dictionary-encoded text columns."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{j}" for j in range(n_fields)]
    multi_line = bool((text.line_of(rec.ends_nocr[g]) > text.line_of(rec.starts[g])).any())
    read_options = pacsv.ReadOptions(
        # ~128 blocks: small enough for both threads, few enough to unify dictionaries cheaply
        column_names=names,
        block_size=int(np.clip(len(text.buf) // 128, 1 << 20, 1 << 22)),
    )
    parse_options = pacsv.ParseOptions(
        delimiter=delim,
        quote_char='"' if bool(rec.qcount[g].any()) else False,
        double_quote=True,
        newlines_in_values=multi_line,
        ignore_empty_lines=True,
        invalid_row_handler=lambda row: "skip",
    )
    convert_options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.dictionary(pa.int32(), pa.string())),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        null_values=[],
        check_utf8=False,
    )

    def parse(source) -> Any:
        return pacsv.read_csv(
            source,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )

    return parse


def _structural_reason(raw: str, n: int, expected: int, delim: str) -> tuple[str, str]:
    if _FOOTER.match(normalise_text(raw.replace(delim, " ").strip('" '))):
        return (
            "footer_line",
            f"summary/footer line ('Total', 'Source :'), not a response ({n} field(s))",
        )
    return "field_count", f"{n} field(s) where the header has {expected} (unquoted delimiter?)"
