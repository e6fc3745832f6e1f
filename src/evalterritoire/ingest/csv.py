"""Delimited text exports (CSV, TSV, TXT): bytes → :class:`~evalterritoire.ingest.raw._Raw`.

Owns the decoding (BOM, UTF-8, UTF-16 without BOM, cp1252; mixed encodings rejected), the
delimiter sniffing, the record scan with physical start lines (RFC 4180 quotes, vectorised in
:mod:`evalterritoire.ingest.scan`, stray-quote recovery), the structural checks of each record (field count,
blank and footer lines) and the parsing of the good records with pyarrow into dictionary-encoded
text cells.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from evalterritoire.codebook import Codebook, normalise_text
from evalterritoire.errors import FileRejectedError
from evalterritoire.ingest.raw import _FOOTER, _factorize_rows, _locate_header, _Raw

DELIMITERS = (";", ",", "\t", "|")
_DELIM_NAMES = {";": "semicolon", ",": "comma", "\t": "tab", "|": "pipe"}


def _decode(data: bytes, name: str, forced: str | None) -> tuple[str | None, str, list[str]]:
    """Return (text, encoding name, warnings); raise FileRejectedError when undecidable.

    ``text`` is None for pure ASCII without a forced encoding: the bytes are already the UTF-8
    text (no decoding of a large file into a string only to encode it back).
    """
    if forced:
        try:
            return data.decode(forced), forced, []
        except LookupError:
            raise FileRejectedError(f"{name}: unknown encoding {forced!r}") from None
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise FileRejectedError(
                f"{name}: cannot be decoded as {forced} (line {line}, byte 0x{data[exc.start]:02X})"
            ) from None
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig", []
        except UnicodeDecodeError as exc:
            line = data[: exc.start + 3].count(b"\n") + 1
            raise FileRejectedError(
                f"{name}: UTF-8 BOM but invalid UTF-8 at line {line} "
                f"(byte 0x{data[exc.start + 3]:02X}); re-export the file as UTF-8"
            ) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16", []
        except UnicodeDecodeError:
            raise FileRejectedError(
                f"{name}: UTF-16 BOM but the text is not valid UTF-16"
            ) from None
    head = data[:4096]
    if b"\x00" in head:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        enc = "utf-16-le" if odd > 0.4 * len(head) / 2 and even == 0 else None
        enc = "utf-16-be" if even > 0.4 * len(head) / 2 and odd == 0 else enc
        if enc:
            try:
                return data.decode(enc), enc, [f"{name}: UTF-16 without BOM detected ({enc})"]
            except UnicodeDecodeError:
                pass
        raise FileRejectedError(f"{name}: binary content (NUL bytes): not a text survey export")
    if data.isascii():
        return None, "utf-8", []
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    utf8_lines, bad_lines = [], []
    for i, line in enumerate(data.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8_lines.append(i)
        except UnicodeDecodeError as exc:
            bad_lines.append((i, line[exc.start]))
    if utf8_lines and bad_lines:
        ex = ", ".join(f"line {ln} byte 0x{b:02X}" for ln, b in bad_lines[:5])
        raise FileRejectedError(
            f"{name}: mixed encodings — lines {', '.join(map(str, utf8_lines[:5]))} are UTF-8 "
            f"but {len(bad_lines)} line(s) are not ({ex}); re-export the file in one encoding"
        )
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileRejectedError(
            f"{name}: unknown encoding (neither UTF-8 nor Windows-1252: line {line}, "
            f"byte 0x{data[exc.start]:02X})"
        ) from None
    return text, "cp1252", [f"{name}: decoded as Windows-1252 (cp1252), not UTF-8"]


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
    import pyarrow as pa
    import pyarrow.csv as pacsv

    text, enc, warnings = _decode(data, name, encoding)
    buf = data if text is None or enc == "utf-8" else text.encode("utf-8")
    del text
    if not buf or buf.isspace():
        raise FileRejectedError(f"{name}: the file is empty")
    from evalterritoire.ingest.scan import newlines, scan_records

    arr = np.frombuffer(buf, dtype=np.uint8)
    nl = newlines(arr)
    line_starts = np.concatenate([[0], nl + 1])

    def line_of(pos: np.ndarray) -> np.ndarray:
        return np.searchsorted(nl, pos, side="left") + 1

    n_lines = len(line_starts) - (1 if len(buf) and buf.endswith(b"\n") else 0)
    if header_row is not None and header_row > n_lines:
        raise FileRejectedError(
            f"{name}: --header-row {header_row} is beyond the end of the file ({n_lines} line(s))"
        )

    # physical lines for header / delimiter sniffing
    head_lines: list[tuple[int, str]] = []
    for i in range(min(len(line_starts), 400)):
        s = line_starts[i]
        e = nl[i] if i < len(nl) else len(buf)
        ln = buf[s:e].decode("utf-8").rstrip("\r")
        if ln.strip():
            head_lines.append((i + 1, ln))
        if len(head_lines) >= 30:
            break
    if not head_lines:
        raise FileRejectedError(f"{name}: the file is empty (blank lines only)")
    from_line = header_row or head_lines[0][0]
    sniff = [ln for i, ln in head_lines if i >= from_line]
    delim = delimiter
    if delim is None:
        delim = _sniff_delimiter(sniff)
        if delim is None:
            raise FileRejectedError(
                f"{name}: no delimiter found (tried ; , tab |): not a delimited survey export"
            )
    elif len(delim) != 1:
        raise FileRejectedError(f"{name}: the delimiter must be one character, got {delim!r}")
    dcode = ord(delim)

    # header among the first non-blank physical lines
    cands = [(ln, _split_fields(txt, delim)) for ln, txt in head_lines if ln >= from_line][:12]
    hidx, extra = _locate_header(cands, codebook, name, header_row, profile)
    header = [h.strip() for h in cands[hidx][1]]
    header_line = cands[hidx][0]
    n_fields = len(header)
    last_header = cands[extra[-1]][0] if extra else header_line
    for k in extra:
        warnings.append(f"{name}: line {cands[k][0]} skipped as an extra header row")
    skipped_before = sum(1 for ln, _ in head_lines if ln < header_line)
    if skipped_before:
        warnings.append(
            f"{name}: {skipped_before} non-blank line(s) before the header line {header_line} skipped"
        )
    broken: list[tuple[int, int]] = []

    # rebuild records after the header with the header's field count (stray-quote breaking)
    n_total = len(buf)
    data_start = int(line_starts[last_header]) if last_header < len(line_starts) else n_total
    pieces_s, pieces_e, pieces_q, pieces_d = [], [], [], []
    pos = data_start
    while pos < n_total:
        st, en, qc, dc, unclosed = scan_records(arr, pos, dcode, nl)
        cut = len(st) - 1 if unclosed and len(st) else None
        multi = np.flatnonzero(line_of(en) - line_of(st) > 0) if len(st) else np.zeros(0, int)
        for k in multi:
            if cut is not None and k >= cut:
                break
            rec = buf[st[k] : en[k]].decode("utf-8").rstrip("\r")
            if len(_split_fields(rec, delim)) != n_fields:
                cut = int(k)
                break
        if cut is None:
            pieces_s.append(st)
            pieces_e.append(en)
            pieces_q.append(qc)
            pieces_d.append(dc)
            break
        pieces_s.append(st[:cut])
        pieces_e.append(en[:cut])
        pieces_q.append(qc[:cut])
        pieces_d.append(dc[:cut])
        i_nl = np.searchsorted(nl, st[cut])
        ln_end = int(nl[i_nl]) if i_nl < len(nl) else n_total
        broken.append((int(st[cut]), ln_end))
        pos = ln_end + 1
    starts = np.concatenate(pieces_s) if pieces_s else np.zeros(0, np.int64)
    ends = np.concatenate(pieces_e) if pieces_e else np.zeros(0, np.int64)
    qcount = np.concatenate(pieces_q) if pieces_q else np.zeros(0, np.int64)
    dcount = np.concatenate(pieces_d) if pieces_d else np.zeros(0, np.int64)
    # strip the \r of CRLF
    cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13) if len(ends) else np.zeros(0, bool)
    ends_nocr = ends - cr.astype(np.int64)
    lengths = ends_nocr - starts

    # field counts = delimiters outside quotes + 1 (csv module after a broken quote)
    fcount = dcount + 1
    if broken:
        for k in np.flatnonzero(qcount > 0):
            rec = buf[starts[k] : ends_nocr[k]].decode("utf-8")
            fcount[k] = len(_split_fields(rec, delim))
            dcount[k] = fcount[k] - 1

    # blank records: nothing but delimiters / whitespace
    blank = lengths == 0
    short = np.flatnonzero(~blank & (lengths - dcount <= 16))
    for k in short:
        rec = buf[starts[k] : ends_nocr[k]].decode("utf-8")
        if not rec.replace(delim, "").strip():
            blank[k] = True
    good = ~blank & (fcount == n_fields)
    # summary lines ("Total", "Source :") with the right field count
    if len(starts):
        first = arr[np.minimum(starts, max(n_total - 1, 0))]
        second = arr[np.minimum(starts + 1, max(n_total - 1, 0))]
        initial = np.where(first == ord('"'), second, first)  # first letter, quote or not
        for k in np.flatnonzero(good & np.isin(initial, list(b"TtSs"))):
            head = buf[starts[k] : min(int(ends_nocr[k]), int(starts[k]) + 40)]
            if _FOOTER.match(normalise_text(head.decode("utf-8", "replace").lstrip('"'))):
                good[k] = False
    bad = np.flatnonzero(~blank & ~good)
    bad_records = []
    for k in bad:
        raw = buf[starts[k] : ends_nocr[k]].decode("utf-8")
        rule, msg = _structural_reason(raw, int(fcount[k]), n_fields, delim)
        bad_records.append(
            {"line": int(line_of(starts[k : k + 1])[0]), "raw": raw, "rule": rule, "message": msg}
        )
    for s, e in broken:
        raw = buf[s:e].decode("utf-8").rstrip("\r")
        bad_records.append(
            {
                "line": int(line_of(np.array([s]))[0]),
                "raw": raw,
                "rule": "unclosed_quote",
                "message": "a quote opened on this line is never closed (or unbalanced); the line is "
                "kept here and reading resumes on the next line",
            }
        )
    blank_lines = int(blank.sum())

    # parse good records with pyarrow (dictionary-encoded text cells)
    g = np.flatnonzero(good)
    names = [f"c{j}" for j in range(n_fields)]
    dict_type = pa.dictionary(pa.int32(), pa.string())
    multi_line = bool(len(g)) and bool((line_of(ends_nocr[g]) > line_of(starts[g])).any())
    use_quotes = bool(qcount[g].any()) if len(g) else False

    def parse_with_arrow(source) -> Any:
        return pacsv.read_csv(
            source,
            # ~128 blocks: small enough for both threads, few enough to unify dictionaries cheaply
            read_options=pacsv.ReadOptions(
                column_names=names, block_size=int(np.clip(len(buf) // 128, 1 << 20, 1 << 22))
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delim,
                quote_char='"' if use_quotes else False,
                double_quote=True,
                newlines_in_values=multi_line,
                ignore_empty_lines=True,
                invalid_row_handler=lambda row: "skip",
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, dict_type),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
                check_utf8=False,
            ),
        )

    codes: list[np.ndarray] = []
    uniques: list[np.ndarray] = []
    table = None
    keep_rows = None  # rows of the table to keep when it holds more than the good records
    if len(g) and not broken:
        # the whole data region in place: Arrow skips the records with a wrong field count and
        # empty lines; blank-looking and footer records it parsed are dropped afterwards
        parsed = np.flatnonzero((fcount == n_fields) & (lengths > 0))
        try:
            table = parse_with_arrow(pa.BufferReader(pa.py_buffer(buf)[int(starts[0]) :]))
            if table.num_rows != len(parsed):
                table = None
            elif len(parsed) != len(g):
                keep_rows = good[parsed]
        except (pa.ArrowInvalid, pa.ArrowException):
            table = None
    if table is None and len(g):
        try:
            src = pa.BufferReader(pa.py_buffer(_join_runs(buf, starts, ends, ends_nocr, g)))
            table = parse_with_arrow(src)
            if table.num_rows != len(g):
                table = None
        except (pa.ArrowInvalid, pa.ArrowException):
            table = None
        keep_rows = None
    if table is not None:
        table = table.unify_dictionaries()
        for j in range(n_fields):
            col = table.column(j)
            if col.num_chunks:
                idx_arr = np.concatenate(
                    [c.indices.to_numpy(zero_copy_only=False) for c in col.chunks]
                )
                dic = np.asarray(col.chunks[0].dictionary.to_pylist(), dtype=object)
            else:
                idx_arr, dic = np.zeros(0, np.int64), np.array([], dtype=object)
            if keep_rows is not None:
                idx_arr = idx_arr[keep_rows]
            codes.append(idx_arr.astype(np.int32, copy=False))
            uniques.append(dic)
    else:
        rows = [_split_fields(buf[starts[k] : ends_nocr[k]].decode("utf-8"), delim) for k in g]
        codes, uniques = _factorize_rows(rows, n_fields)
    lines = line_of(starts[g]).astype(np.int64)
    g_starts, g_ends = starts[g], ends_nocr[g]

    def raw_text(pos: np.ndarray) -> list[str]:
        return [buf[g_starts[p] : g_ends[p]].decode("utf-8") for p in pos]

    norms: list[tuple[str, str, int, str]] = []
    return _Raw(
        header=header,
        header_line=header_line,
        codes=codes,
        uniques=uniques,
        lines=lines,
        raw_text=raw_text,
        bad_records=bad_records,
        blank_lines=blank_lines,
        meta={
            "format": "csv" if delim != "\t" else "tsv",
            "encoding": enc,
            "delimiter": delim,
            "sheet": None,
            "header_line": header_line,
        },
        warnings=warnings,
        norms=norms,
    )


def _structural_reason(raw: str, n: int, expected: int, delim: str) -> tuple[str, str]:
    if _FOOTER.match(normalise_text(raw.replace(delim, " ").strip('" '))):
        return (
            "footer_line",
            f"summary/footer line ('Total', 'Source :'), not a response ({n} field(s))",
        )
    return "field_count", f"{n} field(s) where the header has {expected} (unquoted delimiter?)"
