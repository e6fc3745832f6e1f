"""Scan rendered reports for figures that are not fit to publish (issue « publishable numbers »).

A reader's check of the HTML a report ships, independent of the code that built it: the text
of the page, its tables, its figures' alt texts and captions, and any CSV beside it.
:func:`scan_report` returns the defects of one page, :func:`scan_reports` of every page and
CSV under a folder. The defects (``Finding.kind``):

* ``outside_range``: an interval leaving its scale — a share outside 0–100 %, a score « x/10 »
  outside 0–10, « x/k » (k ≠ 10) outside 1–k, or a judged figure (``<span class="et-est">``)
  outside the ``data-range-low`` / ``data-range-high`` it declares;
* ``negative_bound``: a negative lower bound (every quantity a report shows is non-negative;
  the model-coefficient tables, whose header has « Terme », are not scanned);
* ``collapsed``: an interval shown as a point (« 4,0 [4,0 ; 4,0] »);
* ``below_min_cell``: a figure or count resting on fewer than ``min_cell`` respondents — a
  judged figure shown with ``data-n`` below it, « n = k » with k < ``min_cell``, a line of a
  respondents-by-type table, or a CSV row with an ``n`` below it and a value;
* ``no_status``: a judged figure without ``data-status``, or a suppressed one showing digits.

The same text rules read reports made before the publication statuses existed, so that the
defects of two builds can be counted the same way (``scripts/scan_reports.py``).
"""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFECTS", "Finding", "scan_report", "scan_reports"]

#: The kinds of defect, in report order.
DEFECTS = ("outside_range", "negative_bound", "collapsed", "below_min_cell", "no_status")

_NUM = r"[−-]?\d+(?:,\d+)?"
_INTERVAL = re.compile(
    rf"(?P<value>{_NUM})(?P<unit>\s?%|/\d+)?(?:\s?\*)?\s*"
    rf"\[(?P<low>{_NUM})(?P<pct>\s?%)?\s?;\s?(?P<high>{_NUM})\s?%?\]"
)
_N_EQ = re.compile(r"\bn\s?=\s?(\d+)\b")
_IMAGE = re.compile(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+")
_TABLE = re.compile(r"<table\b.*?</table>", re.S)
_SPAN_OPEN = re.compile(r'<span class="et-est[^"]*"(?P<attrs>[^>]*)>')
_SPAN_TAG = re.compile(r"<(/?)span\b")
_ATTR = re.compile(r'data-([a-z-]+)="([^"]*)"')
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Finding:
    """One defect of a page: its kind and the text it was found in (cut to 120 characters)."""

    kind: str
    excerpt: str


def _number(text: str) -> float:
    return float(text.replace("−", "-").replace(",", "."))


def _plain(fragment: str) -> str:
    """Visible text of an HTML fragment, alt texts included, spaces normalised."""
    alts = " ".join(re.findall(r'alt="([^"]*)"', fragment))
    text = _TAG.sub(" ", fragment) + " " + alts
    text = html.unescape(html.unescape(text))
    text = re.sub(r"(?<=\d)\u202f(?=\d)", "", text)  # thousands separator
    return re.sub(r"[\u00a0\u202f ]+", " ", text)


def _range(match: re.Match[str]) -> tuple[float, float] | None:
    """The scale of an interval read in text (None when the text does not say it)."""
    unit = (match.group("unit") or "").strip()
    if unit == "%" or match.group("pct"):
        return 0.0, 100.0
    if unit.startswith("/"):
        top = float(unit[1:])
        return (0.0, top) if top == 10 else (1.0, top)
    return None


def _text_findings(text: str, min_cell: int) -> Iterator[Finding]:
    for m in _INTERVAL.finditer(text):
        low, high, excerpt = _number(m.group("low")), _number(m.group("high")), m.group(0)
        scale = _range(m)
        if scale is not None and (low < scale[0] - 1e-9 or high > scale[1] + 1e-9):
            yield Finding("outside_range", excerpt)
        if low < 0:
            yield Finding("negative_bound", excerpt)
        if m.group("low") == m.group("high"):
            yield Finding("collapsed", excerpt)
    for m in _N_EQ.finditer(text):
        if int(m.group(1)) < min_cell:
            start = max(0, m.start() - 60)
            yield Finding("below_min_cell", text[start : m.end()].strip())


def _judged(page: str) -> Iterator[tuple[dict[str, str], str]]:
    """Each judged figure: its ``data-*`` attributes and its visible text."""
    for m in _SPAN_OPEN.finditer(page):
        depth, pos = 1, m.end()
        for tag in _SPAN_TAG.finditer(page, m.end()):
            depth += -1 if tag.group(1) else 1
            pos = tag.start()
            if depth == 0:
                break
        yield dict(_ATTR.findall(m.group("attrs"))), _plain(page[m.end() : pos]).strip()


def _span_findings(page: str, min_cell: int) -> Iterator[Finding]:
    """The judged figures (``et-est`` spans) against the attributes they declare."""
    for attrs, body in _judged(page):
        status = attrs.get("status")
        if status is None or (status == "suppressed" and re.search(r"\d", body)):
            yield Finding("no_status", body[:120])
            continue
        if status == "suppressed":
            continue
        if "n" in attrs and int(attrs["n"]) < min_cell:
            yield Finding("below_min_cell", f"{body[:100]} (n = {attrs['n']})")
        bounds = re.search(rf"\[({_NUM})\s?%?\s?;\s?({_NUM})\s?%?\]", body)
        if bounds is None:
            continue
        low, high = _number(bounds.group(1)), _number(bounds.group(2))
        lo, hi = attrs.get("range-low"), attrs.get("range-high")
        if (lo is not None and low < float(lo) - 1e-9) or (
            hi is not None and high > float(hi) + 1e-9
        ):
            yield Finding("outside_range", body[:120])


def _respondent_tables(page: str, min_cell: int) -> Iterator[Finding]:
    """Lines of a respondents-by-type table on fewer than ``min_cell`` respondents."""
    for table in _TABLE.findall(page):
        if "Répondants par type" not in table:
            continue
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
            cells = [_plain(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            if len(cells) >= 2 and re.fullmatch(r"\d+", cells[1]) and int(cells[1]) < min_cell:
                yield Finding("below_min_cell", " | ".join(cells)[:120])


def scan_report(page: str, *, min_cell: int = 5) -> list[Finding]:
    """The defects of one rendered report (see the module)."""
    page = _IMAGE.sub("", page)
    scanned = _TABLE.sub(lambda t: "" if ">Terme<" in t.group(0) else t.group(0), page)
    findings = list(_span_findings(scanned, min_cell))
    findings += _respondent_tables(scanned, min_cell)
    findings += _text_findings(_plain(scanned), min_cell)
    return findings


def _scan_csv(path: Path, min_cell: int) -> Iterator[Finding]:
    """Rows of a CSV download with a value resting on fewer than ``min_cell`` respondents."""
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            n, value = row.get("n"), row.get("estimate")
            if n and value and re.fullmatch(r"\d+", n) and int(n) < min_cell:
                yield Finding("below_min_cell", f"{path.name}: {row}"[:120])


def scan_reports(folder: str | Path, *, min_cell: int = 5) -> dict[str, list[Finding]]:
    """The defects of every HTML page and CSV file under a folder, by relative path."""
    root = Path(folder)
    out: dict[str, list[Finding]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix == ".html":
            found = scan_report(path.read_text(encoding="utf-8"), min_cell=min_cell)
        elif path.suffix == ".csv":
            found = list(_scan_csv(path, min_cell))
        else:
            continue
        out[str(path.relative_to(root))] = found
    return out
