"""Text encodings of a delimited export: bytes → text, or a clear rejection.

Owns :func:`_decode`: a forced encoding (``--encoding``), a byte-order mark (UTF-8, UTF-16),
UTF-16 without one (told by its NUL bytes), ASCII and UTF-8, then Windows-1252; a file mixing
UTF-8 lines with lines that are not is rejected naming the lines and bytes, as is binary content.
"""

from __future__ import annotations

from evalterritoire.errors import FileRejectedError


def _decode(data: bytes, name: str, forced: str | None) -> tuple[str | None, str, list[str]]:
    """Return (text, encoding name, warnings); raise FileRejectedError when undecidable.

    ``text`` is None for pure ASCII without a forced encoding: the bytes are already the UTF-8
    text (no decoding of a large file into a string only to encode it back). The order: a forced
    encoding, a byte-order mark, UTF-16 without one (NUL bytes), ASCII, UTF-8, then cp1252
    (a file mixing UTF-8 lines and lines that are not is rejected).
    """
    if forced:
        return _decode_forced(data, name, forced)
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return _decode_bom(data, name)
    if b"\x00" in data[:4096]:
        return _decode_utf16_without_bom(data, name)
    if data.isascii():
        return None, "utf-8", []
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    _reject_mixed_encodings(data, name)
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileRejectedError(
            f"{name}: unknown encoding (neither UTF-8 nor Windows-1252: line {line}, "
            f"byte 0x{data[exc.start]:02X})"
        ) from None
    return text, "cp1252", [f"{name}: decoded as Windows-1252 (cp1252), not UTF-8"]


def _decode_forced(data: bytes, name: str, forced: str) -> tuple[str, str, list[str]]:
    """Decode with the encoding the user gave (``--encoding``)."""
    try:
        return data.decode(forced), forced, []
    except LookupError:
        raise FileRejectedError(f"{name}: unknown encoding {forced!r}") from None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileRejectedError(
            f"{name}: cannot be decoded as {forced} (line {line}, byte 0x{data[exc.start]:02X})"
        ) from None


def _decode_bom(data: bytes, name: str) -> tuple[str, str, list[str]]:
    """Decode a file starting with a UTF-8 or UTF-16 byte-order mark."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig", []
        except UnicodeDecodeError as exc:
            line = data[: exc.start + 3].count(b"\n") + 1
            raise FileRejectedError(
                f"{name}: UTF-8 BOM but invalid UTF-8 at line {line} "
                f"(byte 0x{data[exc.start + 3]:02X}); re-export the file as UTF-8"
            ) from None
    try:
        return data.decode("utf-16"), "utf-16", []
    except UnicodeDecodeError:
        raise FileRejectedError(f"{name}: UTF-16 BOM but the text is not valid UTF-16") from None


def _decode_utf16_without_bom(data: bytes, name: str) -> tuple[str, str, list[str]]:
    """Decode UTF-16 told by its NUL bytes (every other byte); anything else is binary."""
    head = data[:4096]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    enc = "utf-16-le" if odd > 0.4 * len(head) / 2 and even == 0 else None
    enc = "utf-16-be" if even > 0.4 * len(head) / 2 and odd == 0 else enc
    if enc:
        try:
            return data.decode(enc), enc, [f"{name}: UTF-16 without BOM detected ({enc})"]
        except UnicodeDecodeError:
            pass
    raise FileRejectedError(f"{name}: binary content (NUL bytes): not a text survey export")


def _reject_mixed_encodings(data: bytes, name: str) -> None:
    """Reject a file with both UTF-8 lines and lines that are not UTF-8, naming them."""
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
