"""Content sections of the report contexts, shared by the national and territory reports.

Owns :class:`Sections`, which turns estimates or responses into section records for the items
the report spec names (:mod:`evalterritoire.report.spec`) and the columns the codebook's roles
name (:class:`~evalterritoire.report.context.Columns`): item estimates (``items``), level
distributions (``levels``, ``declared``, ``composition``, ``barriers``), fragilities, NSP shares
by dimension, agreement distributions, by-type matrix, respondent mix and « paroles d'acteurs »
(``free_text``); plus the identity helpers (``_modal``, ``_median``, ``_option_label``), the
numeric-item filter of the stage indicators (``_numeric``) and the model coefficient table
(``_models``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, Variable
from evalterritoire.config import PublicationConfig
from evalterritoire.estimates import (
    OTHER_GROUP,
    complementary_suppression,
    merge_small_groups,
)
from evalterritoire.report.breakdowns import OTHER_LABEL, Breakdowns
from evalterritoire.report.context import Columns, _clean, _num, short_label
from evalterritoire.report.lookup import VALUE_FIELDS, _Lookup, _record, _weights, judge
from evalterritoire.report.spec import ReportSpec

#: The one line of the respondents' table when no actor type reaches ``min_cell``.
ALL_TYPES_LABEL = "Tous types d'acteurs (aucun n'atteint le seuil de publication)"
#: « Paroles d'acteurs »: at most this many free-text excerpts, each cut at this many characters.
FREE_TEXT_MAX = 3
FREE_TEXT_CHARS = 240
#: The most cited barriers shown.
BARRIERS_SHOWN = 5
#: Item types a stage's indicator table shows (levels and multi-select items have sections).
_INDICATOR_TYPES = frozenset({"likert", "rating", "binary", "count", "decimal"})

Domain = tuple[str, str]


class Sections:
    """Builders of the content sections of one wave's contexts.

    Parameters
    ----------
    lookup : _Lookup
        The wave's estimates, indexed.
    codebook : Codebook
        Labels, scales, dimensions, fragility domains.
    spec : ReportSpec
        Which items feed which section.
    columns : Columns
        The responses' columns by role.
    min_n : int
        The study's ``min_n`` (``is_small_n`` of the records).
    rules : PublicationConfig
        The publication rules (``min_cell`` for the actor-type and free-text policies).
    breakdowns : Breakdowns, optional
        The wave's design-based breakdowns (alliances, agreement, actor groups).
    """

    def __init__(
        self,
        lookup: _Lookup,
        codebook: Codebook,
        spec: ReportSpec,
        columns: Columns,
        min_n: int,
        rules: PublicationConfig | None = None,
        breakdowns: Breakdowns | None = None,
    ) -> None:
        self.lookup = lookup
        self.codebook = codebook
        self.spec = spec
        self.columns = columns
        self.min_n = min_n
        self.rules = rules if rules is not None else PublicationConfig()
        self.breakdowns = breakdowns

    def weights(self, frame: pd.DataFrame) -> pd.Series:
        """Response weights (1 without a weight column)."""
        return _weights(frame, self.columns.weight)

    # ------------------------------------------------ sections from estimates
    def items(self, domain: Domain, items: Sequence[str]) -> list[dict[str, Any]]:
        """Item records: estimate (share of yes or mean), interval, n, NSP share, benchmark."""
        return [self._item(domain, self.codebook[i]) for i in items if i in self.codebook]

    def _item(self, domain: Domain, var: Variable) -> dict[str, Any]:
        if var.type == "binary":
            rec, kind = self.lookup.proportion(domain, var.id), "share"
        else:
            rec, kind = self.lookup.mean(domain, var.id), "mean"
        scale = self.codebook.scales.get(var.scale or "")
        scale_max = None
        if scale is not None and var.type in {"likert", "rating"}:
            scale_max = int(scale.max if scale.max is not None else max(scale.values))
        nsp = _record(self.lookup.nsp(domain, var.id), var.id, "", self.min_n, kind="share")
        bench = self.spec.benchmarks.get(var.id)
        return _record(
            rec,
            var.id,
            var.label_fr,  # tables show the full question; charts its short label
            self.min_n,
            short=var.label_short or short_label(var.label_fr, limit=60),
            kind=kind,
            scale_max=scale_max,
            nsp_share=nsp["estimate"],
            nsp=nsp,
            benchmark=bench[0] if bench else None,
            benchmark_label=bench[1] if bench else "",
        )

    def levels(
        self, domain: Domain, var_id: str | None, frame: pd.DataFrame | None = None
    ) -> list[dict[str, Any]]:
        """Share of each labelled level of an item (from the responses when not estimated).

        The shares add up to 100 %: when exactly one is suppressed, the smallest shown one is
        suppressed too (reason ``secondary``), so that none can be recovered by subtraction.
        """
        if var_id is None or var_id not in self.codebook:
            return []
        labels = self.codebook.value_labels(var_id)
        codes = [str(code) for code in labels]
        recs = {code: self.lookup.proportion(domain, var_id, code) for code in codes}
        if all(r is None for r in recs.values()):  # ordinal items are published as means only
            recs = self._response_levels(frame, var_id, codes)
        found = [r for r in recs.values() if r is not None]
        n = max((int(_num(r.get("n")) or 0) for r in found), default=0)
        out = []
        for code, label in labels.items():
            rec = _record(recs[str(code)], str(code), short_label(label, limit=60), self.min_n)
            if recs[str(code)] is None and found:  # a level nobody chose: 0 % of the same n
                zero = _zero_row(found[0], n, self.rules)
                rec.update(_record(zero, str(code), rec["label"], self.min_n))
            out.append(rec)
        return _secondary(out)

    def _response_levels(
        self, frame: pd.DataFrame | None, var_id: str, codes: Sequence[str]
    ) -> dict[str, Any]:
        """Weighted shares of an item's levels from the responses, judged without interval."""
        shares, n = _response_shares(frame, var_id, codes, self.columns.weight)
        if not n:
            return dict.fromkeys(codes)
        rows = pd.DataFrame(
            {
                "estimate": [shares[c] for c in codes],
                "se": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "df": np.nan,
                "n": n,
                "kind": "share",
                "interval": "not_estimable",
                "estimator": "direct",
                "is_small_n": n < self.min_n,
            }
        )
        return dict(zip(codes, judge(rows, self.rules).to_dict(orient="records"), strict=True))

    def declared(self, domain: Domain, frame: pd.DataFrame | None = None) -> list[dict[str, Any]]:
        """How respondents place the initiative themselves (the declared-stage role)."""
        out = self.levels(domain, self.columns.declared_stage, frame)
        for rec in out:
            rec["kind"] = "share"
        return out

    def composition(self, domain: Domain) -> list[dict[str, Any]]:
        """Share of respondents citing each kind of actor as involved."""
        var_id = self.spec.composition
        if var_id is None or var_id not in self.codebook:
            return []
        out = []
        for opt, label in self.codebook[var_id].options.items():
            rec = self.lookup.proportion(domain, var_id, opt)
            if rec is not None:
                out.append(_record(rec, opt, label, self.min_n))
        return out

    def barriers(self, domain: Domain) -> list[dict[str, Any]]:
        """The most cited barriers (:data:`BARRIERS_SHOWN`), most cited first."""
        var_id = self.spec.barriers
        if var_id is None or var_id not in self.codebook:
            return []
        out = []
        for opt, label in self.codebook[var_id].options.items():
            rec = self.lookup.proportion(domain, var_id, opt)
            if rec is not None:
                out.append(_record(rec, f"{var_id}__{opt}", label, self.min_n, kind="share"))
        out.sort(key=lambda r: (-(r["estimate"] or 0), r["variable"]))
        return out[:BARRIERS_SHOWN]

    def nsp_by_dimension(self, domain: Domain, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """« Ne sait pas » share of each dimension's items, as records with a status.

        The estimates table's ``nsp_<dim>`` (each respondent's share of « ne sait pas » among
        the dimension's items asked, averaged with the design); without it, the mean of the
        items' shares (no interval: fragile at best).
        """
        out = []
        for dim in self.codebook.dimensions:
            rec = self.lookup.mean(domain, f"nsp_{dim}")
            if rec is None:
                rec = self._nsp_average(domain, dim)
            if rec is None:
                continue
            record = _record(rec, dim, labels[dim], self.min_n, kind="share")
            record.update(dimension=dim, model_variable=f"nsp_{dim}", nsp_share=record["estimate"])
            out.append(record)
        return out

    def _nsp_average(self, domain: Domain, dim: str) -> dict[str, Any] | None:
        shares, ns = [], []
        for var in self.codebook.dimension_items(dim, likert_only=False):
            rec = self.lookup.nsp(domain, var.id)
            if rec is not None and _num(rec.get("estimate")) is not None:
                shares.append(float(rec["estimate"]))
                ns.append(int(_num(rec.get("n")) or 0))
        if not shares:
            return None
        row = pd.DataFrame(
            {"estimate": [float(np.mean(shares))], "se": np.nan, "ci_low": np.nan,
             "ci_high": np.nan, "df": np.nan, "n": max(ns), "kind": "share",
             "interval": "not_estimable", "estimator": "direct"}
        )  # fmt: skip
        return judge(row, self.rules).iloc[0].to_dict()

    # ------------------------------------------------ fragilities
    def fragilities(
        self,
        domain: Domain,
        context_row: Mapping[str, Any],
        context_median: Mapping[str, float],
        frame: pd.DataFrame | None = None,
    ) -> list[dict[str, Any]]:
        """Fragility domains, highest perceived priority first.

        Each record: the perceived priority, the share who think alliances can act strongly and
        the domain's objective indicators (the territory's public statistics).
        """
        out = []
        for dom, label in self.codebook.fragility_domains.items():
            rec = self._priority(domain, dom, label)
            rec.update(self._alliances(domain, dom, frame))
            rec["objective"] = self._objective(dom, context_row, context_median)
            if rec["estimate"] is not None or rec["alliance_share"] is not None:
                out.append(rec)
        out.sort(key=lambda r: (-(r["estimate"] if r["estimate"] is not None else -1), r["domain"]))
        return out

    def _priority(self, domain: Domain, dom: str, label: str) -> dict[str, Any]:
        prio_id = self.spec.priority_item(dom)
        rec = _record(
            self.lookup.mean(domain, prio_id) if prio_id else None,
            prio_id or "",
            short_label(label.split(",")[0], limit=60),
            self.min_n,
            domain=dom,
        )
        rec["full_label"] = label
        return rec

    def _alliances(self, domain: Domain, dom: str, frame: pd.DataFrame | None) -> dict[str, Any]:
        """Share answering a strong impact of alliances (a record with its status), and its n."""
        alli_id = self.spec.alliance_item(dom)
        rec = None
        if alli_id is not None and self.breakdowns is not None:
            rec = self.breakdowns.alliance(domain, dom)
        if rec is None:
            return {"alliance_share": None, "alliance_n": 0, "alliance": None}
        return {"alliance_share": rec["estimate"], "alliance_n": rec["n"], "alliance": rec}

    def _objective(
        self, dom: str, context_row: Mapping[str, Any], context_median: Mapping[str, float]
    ) -> list[dict[str, Any]]:
        """The territory's public statistics of one fragility domain, with their median."""
        out = []
        for var in self.codebook.of_type(level="territory"):
            value = _num(context_row.get(var.id))
            if var.fragility == dom and value is not None:
                out.append(
                    {
                        "variable": var.id,
                        "label": self.codebook.label(var.id),
                        "value": value,
                        "median": context_median.get(var.id),
                    }
                )
        return out

    # ------------------------------------------------ sections from responses
    def agreement(self, domain: Domain) -> list[dict[str, Any]]:
        """Agreement items' answers grouped (disagreement / neutral / agreement / NSP)."""
        return self.breakdowns.agreement(domain) if self.breakdowns is not None else []

    def by_type(self, code: str) -> list[dict[str, Any]]:
        """Means of the by-type items for each actor group (small types merged)."""
        return self.breakdowns.by_type(code) if self.breakdowns is not None else []

    def respondent_mix(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Respondents by type (n and share), most numerous first; small types merged.

        Types with fewer than ``min_cell`` respondents are shown together as « autres
        acteurs » (at least two types, at least ``min_cell`` respondents), never alone; when
        no type reaches ``min_cell``, one line gathers them all (:data:`ALL_TYPES_LABEL`).
        """
        type_col = self.columns.respondent_type
        if type_col is None or type_col not in frame.columns or frame.empty:
            return []
        labels = self.codebook.value_labels(type_col) if type_col in self.codebook else {}
        counts = frame[type_col].astype("string").value_counts(dropna=True)
        total = int(counts.sum())
        groups = merge_small_groups(counts.to_dict(), self.rules.min_cell)
        merged: dict[str, int] = {}
        for key, count in counts.items():
            merged[groups[key]] = merged.get(groups[key], 0) + int(count)
        every = set(merged) == {OTHER_GROUP}  # no type reaches min_cell: one line, all types
        out = [
            {
                "type": str(t),
                "label": ALL_TYPES_LABEL
                if every
                else OTHER_LABEL
                if t == OTHER_GROUP
                else short_label(labels.get(t, str(t)), limit=50),
                "n": int(c),
                "share": c / total if total else None,
                "status": "publishable" if c >= self.rules.min_cell else "suppressed",
            }
            for t, c in merged.items()
        ]
        out.sort(key=lambda r: (r["type"] == OTHER_GROUP, -r["n"], r["type"]))
        return out

    def free_text(
        self, frame: pd.DataFrame, n_respondents: int, rows: pd.DataFrame | None = None
    ) -> list[dict[str, Any]]:
        """A few short free-text excerpts (« paroles d'acteurs »), anonymous and deterministic.

        The confidentiality rule of the figures, applied to quotes: an excerpt is drawn only
        from a pool of at least ``min_cell`` respondents of the territory who answered the
        question and consented (so that any quote could be anyone's of ``min_cell`` people);
        only the text is kept (no respondent id, type or other identifying column); excerpts
        are taken in respondent-id order, whitespace-collapsed, de-duplicated and cut at
        :data:`FREE_TEXT_CHARS` characters. The text is raw here and escaped when rendered. The
        quotable answers are the codebook's ``free_text`` role. ``rows`` are the frame's
        quotable rows when they are already known (:meth:`quotable_by_territory`).
        """
        if frame.empty or n_respondents < self.rules.min_cell:
            return []
        text_vars = [self.codebook[c] for c in self.columns.free_text if c in frame.columns]
        if not text_vars:
            return []
        rows = self._quotable_rows(frame) if rows is None else rows
        text_vars = [v for v in text_vars if _pool(rows[v.id]) >= self.rules.min_cell]
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for var in text_vars:
            for value in rows[var.id].tolist():
                text = _excerpt(value, seen)
                if text is None:
                    continue
                question = short_label(var.label_fr, limit=90)
                out.append({"variable": var.id, "question": question, "text": text})
                if len(out) >= FREE_TEXT_MAX:
                    return out
        return out

    def quotable_by_territory(
        self, responses: pd.DataFrame
    ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame] | None:
        """Each territory's quotable rows, in one pass over the responses.

        Territory code → the territory's rows of the responses' quotable rows, in their
        order: what ``_quotable_rows`` gives on the territory's responses (the same consent
        filter, row by row, and the same stable sort by respondent id); and the empty table of
        a territory without a quotable row. None when the responses have no territory column
        or no unique row labels.
        """
        territory = self.columns.territory
        if territory is None or territory not in responses.columns:
            return None
        if not responses.index.is_unique:
            return None
        rows = self._quotable_rows(responses)
        codes = responses[territory].astype("string").reindex(rows.index)
        groups = {str(code): group for code, group in rows.groupby(codes, sort=False)}
        return groups, rows.iloc[:0]

    def _quotable_rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows of respondents who consented (or were not asked), in respondent-id order."""
        consent_col, id_col = self.columns.consent, self.columns.respondent_id
        keep = dict.fromkeys([consent_col, id_col, *self.columns.free_text])
        rows = frame[[c for c in keep if c is not None and c in frame.columns]]
        if consent_col is not None and consent_col in rows.columns:
            consent = pd.to_numeric(rows[consent_col], errors="coerce")
            rows = rows[consent.isna() | (consent > 0)]
        if id_col is not None and id_col in rows.columns:
            ids = rows[id_col].tolist()
            rows = rows.iloc[sorted(range(len(ids)), key=lambda i: _natural_key(ids[i]))]
        return rows


# ---------------------------------------------------------------- helpers
def _pool(values: pd.Series) -> int:
    """Respondents with a non-empty answer to a free-text question."""
    text = values.astype("string").str.strip()
    return int((text.notna() & (text != "")).sum())


def _zero_row(like: Mapping[str, Any], n: int, rules: PublicationConfig) -> dict[str, Any]:
    """A level nobody chose: 0 % of the same respondents (no interval of its own)."""
    row = {**like, "estimate": 0.0, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": n}
    row.update(interval="not_estimable", estimator="direct", kind="share")
    return judge(pd.DataFrame([row]), rules).iloc[0].to_dict()


def _secondary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Complementary suppression of a distribution's records (see :meth:`Sections.levels`)."""
    values = [r.get("estimate") for r in records]
    flags = complementary_suppression([r.get("status") == "suppressed" for r in records], values)
    for rec, hide in zip(records, flags, strict=True):
        if hide and rec.get("status") != "suppressed":
            rec.update(dict.fromkeys(VALUE_FIELDS), status="suppressed")
            rec["reason"] = ";".join(filter(None, [rec.get("reason"), "secondary"]))
    return records


def _numeric(codebook: Codebook, items: Sequence[str]) -> list[str]:
    """The items a stage's indicator table can show (scores, shares, counts)."""
    return [i for i in items if i in codebook and codebook[i].type in _INDICATOR_TYPES]


def _response_shares(
    frame: pd.DataFrame | None, var_id: str, codes: Sequence[str], weight: str | None
) -> tuple[dict[str, float], int]:
    """Weighted shares of some codes among valid answers (descriptive, no interval)."""
    if frame is None or var_id not in frame.columns or frame.empty:
        return {}, 0
    values = pd.to_numeric(frame[var_id], errors="coerce")
    w = _weights(frame, weight)
    ok = values.notna() & (w > 0)
    total = float(w[ok].sum())
    if not ok.any() or total <= 0:
        return {}, 0
    shares = {c: float(w[ok & (values == float(c))].sum() / total) for c in codes}
    return shares, int(ok.sum())


def _excerpt(value: Any, seen: set[str]) -> str | None:
    """A whitespace-collapsed, cut excerpt of an answer not quoted yet (``seen``), or None."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = " ".join(str(value).split())
    if not text or text.casefold() in seen:
        return None
    seen.add(text.casefold())
    if len(text) > FREE_TEXT_CHARS:
        text = text[: FREE_TEXT_CHARS - 1].rstrip() + "…"
    return text


def _modal(frame: pd.DataFrame, col: str | None) -> str:
    if col is None or col not in frame.columns:
        return ""
    counts = frame[col].astype("string").dropna().value_counts()
    if counts.empty:
        return ""
    top = counts[counts == counts.max()].index
    return str(sorted(top)[0])


def _median(frame: pd.DataFrame, col: str | None) -> float | None:
    if col is None or col not in frame.columns:
        return None
    v = pd.to_numeric(frame[col], errors="coerce").median()
    return None if pd.isna(v) else float(v)


def _option_label(codebook: Codebook, var_id: str | None, key: str) -> str:
    if not key or var_id is None or var_id not in codebook:
        return key
    return codebook.value_labels(var_id).get(key, key)


def _natural_key(value: Any) -> tuple[int, int, str]:
    text = str(value)
    return (0, int(text), text) if text.isdigit() else (1, 0, text)


# --------------------------------------------------------------------- models
def _models(models: pd.DataFrame | None) -> list[dict[str, Any]]:
    from evalterritoire.models.fit import MODEL_COLUMNS

    if models is None or models.empty:
        return []
    shown = MODEL_COLUMNS[: MODEL_COLUMNS.index("flags") + 1]  # model … flags, not fit statistics
    keep = [c for c in shown if c in models.columns and c != "df"]
    frame = models[keep].copy()
    frame = frame[~frame["term"].astype("string").isin(["Intercept", "const"])]
    # models.parquet is already ordered: the study's models in order, terms in formula order
    return [_clean(r) for r in frame.to_dict(orient="records")]
