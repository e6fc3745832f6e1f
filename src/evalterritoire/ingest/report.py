"""Result and report of the ingest step: :class:`IngestResult` and the report it carries.

Owns the result type, the empty quarantine table and its column types, the skeleton of
``ingestion.json`` and the rejected result, what the checks of one file found
(:class:`_Findings`: warnings, cell/row errors collected by :class:`_Errors`, normalisations
counted by :func:`_norm_add`, column-level errors), and :func:`_assemble`, which turns the typed
valid rows and the findings of one file into the quarantine table and the report, asserting
``rows_valid + rows_quarantined + blank_lines == rows_read``.

Imports no other ingest module, so that every one of them can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.errors import IngestError


@dataclass
class IngestResult:
    """Outcome of ingesting one export (or several combined).

    Attributes
    ----------
    valid : DataFrame
        Typed valid rows (codebook columns, ``source_file``, ``source_line``), sorted by
        territory code, respondent id, file and line.
    quarantine : DataFrame
        One row per quarantined record: ``source_file``, ``source_line``, ``respondent_id``,
        ``n_reasons``, ``reasons``, ``raw``.
    report : dict
        The ingestion report (see ``ingestion.json``).
    codebook : Codebook or None
        The codebook the rows were typed with (None for a rejected file); its roles name the
        respondent id and territory columns when results are combined.
    """

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict[str, Any]
    codebook: Codebook | None = field(default=None, repr=False, compare=False)

    @property
    def status(self) -> str:
        """``ok``, ``partial`` or ``rejected``."""
        return str(self.report["status"])

    @property
    def exit_code(self) -> int:
        """0 all rows valid, 1 some rows quarantined (or column errors), 2 rejected."""
        return {"ok": 0, "partial": 1, "rejected": 2}[self.status]

    def summary(self) -> str:
        """Short human summary (French)."""
        r = self.report
        if self.status == "rejected":
            msgs = "; ".join(e["message"] for e in r["errors"][:3])
            return f"{r['file']} : fichier rejeté — {msgs}"
        lines = [
            f"{r['file']} : {r['status']} — {r['rows_read']} enregistrement(s) lu(s), "
            f"{r['rows_valid']} valide(s), {r['rows_quarantined']} en quarantaine, "
            f"{r['blank_lines']} ligne(s) vide(s)",
            f"  format {r['format']}, encodage {r['encoding']}, séparateur {r['delimiter']!r}"
            + (f", feuille {r['sheet']!r}" if r.get("sheet") else ""),
        ]
        if r["normalisations"]:
            total = sum(n["count"] for n in r["normalisations"])
            lines.append(f"  {total} normalisation(s) ({len(r['normalisations'])} sorte(s))")
        for w in r["warnings"][:5]:
            lines.append(f"  avertissement : {w}")
        for e in r["errors"][:5]:
            lines.append(f"  erreur : {e['message']}")
        if len(r["errors"]) > 5:
            lines.append(f"  … et {len(r['errors']) - 5} autre(s) erreur(s) (voir ingestion.json)")
        return "\n".join(lines)


QUARANTINE_COLUMNS = ["source_file", "source_line", "respondent_id", "n_reasons", "reasons", "raw"]


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_file": pd.Series([], dtype=str),
            "source_line": pd.Series([], dtype="int64"),
            "respondent_id": pd.Series([], dtype=str),
            "n_reasons": pd.Series([], dtype="int64"),
            "reasons": pd.Series([], dtype=str),
            "raw": pd.Series([], dtype=str),
        }
    )


def _base_report(name: str) -> dict[str, Any]:
    return {
        "file": name,
        "files": [name],
        "status": "rejected",
        "format": None,
        "encoding": None,
        "delimiter": None,
        "sheet": None,
        "header_line": None,
        "columns": {},
        "rows_read": 0,
        "rows_valid": 0,
        "rows_quarantined": 0,
        "blank_lines": 0,
        "normalisations": [],
        "warnings": [],
        "errors": [],
        "reference_lists": [],
    }


def _rejected(name: str, message: str, meta: Mapping[str, Any] | None = None) -> IngestResult:
    report = _base_report(name)
    report.update({k: v for k, v in (meta or {}).items() if k in report})
    report["status"] = "rejected"
    report["errors"] = [
        {"line": None, "column": "", "value": "", "rule": "file_rejected", "message": message}
    ]
    return IngestResult(pd.DataFrame(), _empty_quarantine(), report)


def _norm_add(
    norms: dict[tuple[str, str], list], column: str, kind: str, count: int, example: str
) -> None:
    if count <= 0:
        return
    entry = norms.setdefault((column, kind), [0, example])
    entry[0] += int(count)


class _Errors:
    """Cell/row errors of one file, collected as parallel lists (row position in the raw table).

    :meth:`add` takes the positions of the rows at fault and, for each, the column, the value
    shown, the rule broken and the detail (one string for all, or one per row).
    """

    def __init__(self) -> None:
        self.pos: list[np.ndarray] = []
        self.col: list[str] = []
        self.value: list[np.ndarray] = []
        self.rule: list[np.ndarray] = []
        self.detail: list[np.ndarray] = []

    def add(self, pos, col: str, value, rule, detail) -> None:
        pos = np.asarray(pos, dtype=np.int64)
        if not len(pos):
            return
        n = len(pos)

        def arr(x):
            return (
                np.asarray(x, dtype=object)
                if not isinstance(x, str)
                else np.full(n, x, dtype=object)
            )

        self.pos.append(pos)
        self.col.append(col)
        self.value.append(arr(value))
        self.rule.append(arr(rule))
        self.detail.append(arr(detail))

    def frame(self) -> pd.DataFrame:
        if not self.pos:
            return pd.DataFrame({"pos": [], "column": [], "value": [], "rule": [], "detail": []})
        return pd.DataFrame(
            {
                "pos": np.concatenate(self.pos),
                "column": np.concatenate(
                    [
                        np.full(len(p), c, dtype=object)
                        for p, c in zip(self.pos, self.col, strict=True)
                    ]
                ),
                "value": np.concatenate(self.value),
                "rule": np.concatenate(self.rule),
                "detail": np.concatenate(self.detail),
            }
        ).astype(object)


@dataclass
class _Findings:
    """What the checks of one file found, on the way to its report.

    Attributes
    ----------
    name : str
        File name (starts every message).
    warnings : list of str
        Warnings of the report, in the order they were found (the reader's first).
    errors : _Errors
        Cell and row errors: each sends its row to quarantine.
    norms : dict
        Normalisation counters, ``(column, kind) → [count, example]`` (:func:`_norm_add`).
    column_errors : list of dict
        Column-level errors of the report (wrong scale, schema checks of a whole column): they
        quarantine no row.
    columns_ignored, columns_kept : list of str
        Headers the codebook's ``columns: ignore:`` dropped and ``columns: keep:`` kept.
    not_in_reference : dict
        Variable id → number of distinct values not in its reference list.
    reference_lists : list of dict
        The report's ``reference_lists`` (:mod:`evalterritoire.ingest.references`).
    """

    name: str
    warnings: list[str]
    errors: _Errors = field(default_factory=_Errors)
    norms: dict[tuple[str, str], list] = field(default_factory=dict)
    column_errors: list[dict[str, Any]] = field(default_factory=list)
    columns_ignored: list[str] = field(default_factory=list)
    columns_kept: list[str] = field(default_factory=list)
    not_in_reference: dict[str, int] = field(default_factory=dict)
    reference_lists: list[dict[str, Any]] = field(default_factory=list)


def _assemble(
    raw, valid: pd.DataFrame, err: pd.DataFrame, found: _Findings, id_j, codebook
) -> IngestResult:
    """The result of one file: valid rows, the quarantine table and the report.

    ``err`` is the frame of the cell/row errors kept (:meth:`_Errors.frame`), ``id_j`` the raw
    column of the respondent id (None when absent). Raises :class:`IngestError` when
    ``rows_valid + rows_quarantined + blank_lines != rows_read``.
    """
    name = found.name
    err_records, reasons = _error_records(raw, err, name)
    quarantine = _quarantine_table(raw, reasons, name, id_j)
    rows_read = raw.n_rows + len(raw.bad_records) + raw.blank_lines
    n_q = len(quarantine)
    if len(valid) + n_q + raw.blank_lines != rows_read:
        raise IngestError(
            f"{name}: internal error, row accounting broken "
            f"({len(valid)} valid + {n_q} quarantined + {raw.blank_lines} blank != {rows_read} read)"
        )
    report = _base_report(name)
    report.update(
        {k: raw.meta.get(k) for k in ("format", "encoding", "delimiter", "sheet", "header_line")}
    )
    report["columns"] = {"read": len(raw.header), "typed": int(valid.shape[1])}
    if found.columns_ignored:
        report["columns"]["ignored"] = list(found.columns_ignored)
    if found.columns_kept:
        report["columns"]["kept"] = list(found.columns_kept)
    report.update(
        rows_read=int(rows_read),
        rows_valid=len(valid),
        rows_quarantined=int(n_q),
        blank_lines=int(raw.blank_lines),
        normalisations=[
            {"column": c, "kind": k, "count": int(v[0]), "example": v[1]}
            for (c, k), v in sorted(found.norms.items())
        ],
        warnings=list(found.warnings),
        errors=found.column_errors + err_records,
        reference_lists=list(found.reference_lists),
    )
    report["status"] = "ok" if n_q == 0 and not found.column_errors else "partial"
    if rows_read == raw.blank_lines:
        return _rejected(name, f"{name}: header without data (no response rows)", report)
    return IngestResult(valid, quarantine, report, codebook)


def _error_records(
    raw, err: pd.DataFrame, name: str
) -> tuple[list[dict[str, Any]], dict[int, list[str]]]:
    """The report's error records and the quarantine reasons of every row position at fault.

    Error records cover the cell/row errors and the structurally bad records, sorted by line.
    """
    records = []
    reasons: dict[int, list[str]] = {}
    if len(err):
        err = err.assign(line=raw.lines[err["pos"].to_numpy(dtype=np.int64)])
        err = err.sort_values(["line", "column", "rule"], kind="stable")
        for pos, col, value, rl, dtl, line in err[
            ["pos", "column", "value", "rule", "detail", "line"]
        ].itertuples(index=False):
            v = "" if value is None else _clip(str(value))
            msg = f"{name} line {line}, column {col}: {dtl} (value {v!r})"
            records.append(
                {"line": int(line), "column": str(col), "value": v, "rule": str(rl), "message": msg}
            )
            reasons.setdefault(int(pos), []).append(f"{col}: {rl} — {dtl} (value {v!r})")
    for b in raw.bad_records:
        msg = f"{name} line {b['line']}: {b['message']}"
        records.append(
            {
                "line": b["line"],
                "column": "",
                "value": b["raw"][:200],
                "rule": b["rule"],
                "message": msg,
            }
        )
    records.sort(key=lambda e: (e["line"] if e["line"] is not None else -1, e["column"], e["rule"]))
    return records, reasons


def _clip(text: str, limit: int = 200) -> str:
    """A value as shown in a message or an error record (a long cell is cut, marked « … »)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quarantine_table(raw, reasons: dict[int, list[str]], name: str, id_j) -> pd.DataFrame:
    """One row per quarantined record: the rows at fault, then the structurally bad records."""
    qpos = np.array(sorted(reasons), dtype=np.int64)
    raw_txt = raw.raw_text(qpos) if len(qpos) else []
    ids_raw = [
        str(raw.uniques[id_j][raw.codes[id_j][p]]).strip() if id_j is not None else "" for p in qpos
    ]
    bad = raw.bad_records
    q = pd.DataFrame(
        {
            "source_file": [name] * (len(qpos) + len(bad)),
            "source_line": [int(raw.lines[p]) for p in qpos] + [int(b["line"]) for b in bad],
            "respondent_id": ids_raw + [""] * len(bad),
            "n_reasons": [len(reasons[int(p)]) for p in qpos] + [1] * len(bad),
            "reasons": [" | ".join(reasons[int(p)]) for p in qpos]
            + [f"{b['rule']} — {b['message']}" for b in bad],
            "raw": list(raw_txt) + [b["raw"] for b in bad],
        }
    )
    return (
        _quarantine_types(q)
        .sort_values(["source_file", "source_line"], kind="stable")
        .reset_index(drop=True)
    )


def _quarantine_types(q: pd.DataFrame) -> pd.DataFrame:
    return q.astype(
        {
            "source_file": "str",
            "source_line": "int64",
            "respondent_id": "str",
            "n_reasons": "int64",
            "reasons": "str",
            "raw": "str",
        }
    )
