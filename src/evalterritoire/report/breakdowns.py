"""Design-based breakdowns a report needs that the estimates table does not hold.

Owns :class:`Breakdowns`, built once per wave: the share of chosen answer levels of an item
(the fragility alliances' « fort ou très fort »), the agreement items' answers grouped into
disagreement / neutral / agreement / « ne sait pas », and the means of the by-type items for
each **actor group** of a territory, where the types with fewer than ``min_cell`` respondents
are merged into one « autres acteurs » group (:func:`~evalterritoire.estimates.merge_small_groups`)
so that no breakdown shows one person, nor lets one be recovered by subtraction (when every
type is merged, a territory has no by-type breakdown).

Every figure is estimated with the study's design (:func:`~evalterritoire.design.build_design`
on the responses with the derived columns; the estimators of :mod:`evalterritoire.estimates`),
gets the interval of its kind of quantity and is judged by the publication rules, like the
estimates table. When no design can be built from the responses (a study without design
columns), the figures are weighted descriptive estimates without interval: fragile at best.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.config import PublicationConfig, StudyConfig
from evalterritoire.errors import EvalTerritoireError
from evalterritoire.estimates import (
    OTHER_GROUP,
    compute_intervals,
    estimate_mean,
    estimate_proportion,
    interval_kind,
    merge_small_groups,
)
from evalterritoire.report.context import Columns, short_label
from evalterritoire.report.lookup import _Columns, _record, _weights, judge
from evalterritoire.report.spec import ReportSpec

#: Label of the merged group of small actor types.
OTHER_LABEL = "Autres acteurs (types regroupés)"
#: Agreement groups, in display order (``nsp``: « ne sait pas »).
AGREEMENT_GROUPS = (
    ("disagree", "Désaccord"),
    ("neutral", "Neutre"),
    ("agree", "Accord"),
    ("nsp", "Ne sait pas"),
)
_GROUP = "__groupe_acteurs"


def actor_groups(types: pd.Series, territories: pd.Series, min_cell: int) -> pd.Series:
    """Each respondent's displayed actor group within their territory (see the module).

    The respondents per type of every territory are counted in one grouped pass; a respondent
    without a territory or a type has no group.
    """
    codes = territories.astype("string")
    kinds = types.astype("string")
    known = (codes.notna() & kinds.notna()).to_numpy(dtype=bool)
    groups = np.full(len(types), None, dtype=object)
    if known.any():
        pairs = list(zip(codes[known].tolist(), kinds[known].tolist(), strict=True))
        counts: dict[str, dict[str, int]] = {}
        for (code, kind), n in Counter(pairs).items():
            counts.setdefault(code, {})[kind] = n
        shown = {
            (code, kind): group
            for code, by_kind in counts.items()
            for kind, group in merge_small_groups(by_kind, min_cell).items()
        }
        groups[known] = [shown[pair] for pair in pairs]
    return pd.Series(pd.array(groups, dtype="string"), index=types.index)


class Breakdowns:
    """The wave's design-based breakdowns (see the module)."""

    def __init__(
        self,
        config: StudyConfig,
        codebook: Codebook,
        spec: ReportSpec,
        columns: Columns,
        responses: pd.DataFrame,
        rules: PublicationConfig,
    ) -> None:
        self.codebook, self.spec, self.columns, self.rules = codebook, spec, columns, rules
        self.min_n = config.min_n
        self.territory = columns.territory
        frame, self.derived = self._derived(responses)
        self.frame = frame
        self.design = self._design(config, frame)
        self.tables = self._estimate()
        self._shares_index = _ShareIndex(self.tables.get("shares"))
        self._by_type_index = (
            _ByTypeIndex(self.tables["by_type"], self.territory)
            if "by_type" in self.tables
            else None
        )

    # ------------------------------------------------------------------ preparation
    def _derived(self, responses: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Responses + the derived columns (alliance, agreement, actor group)."""
        extra: dict[str, Any] = {}
        derived: dict[str, Any] = {"alliance": {}, "agreement": {}}
        levels = [float(v) for v in self.spec.alliance_levels]
        for dom in self.codebook.fragility_domains:
            item = self.spec.alliance_item(dom)
            if item is None or item not in responses.columns:
                continue
            values = pd.to_numeric(responses[item], errors="coerce")
            col = f"__alliance_{dom}"
            extra[col] = np.where(values.isna(), np.nan, values.isin(levels).astype(float))
            derived["alliance"][dom] = col
        for item in self.spec.agreement:
            if item in responses.columns and item in self.codebook:
                col = f"__accord_{item}"
                extra[col] = _agreement_groups(responses, self.codebook[item], self.codebook)
                derived["agreement"][item] = col
        type_col = self.columns.respondent_type
        if type_col and type_col in responses.columns and self.territory in responses.columns:
            extra[_GROUP] = actor_groups(
                responses[type_col], responses[self.territory], self.rules.min_cell
            )
        frame = responses.assign(**extra) if extra else responses
        return frame, derived

    def _design(self, config: StudyConfig, frame: pd.DataFrame) -> Any:
        """The study's design on the responses, or None when it cannot be built from them."""
        if frame.empty:
            return None
        from evalterritoire.design.survey import build_design

        try:
            return build_design(frame, config.design, config.calibration)
        except (EvalTerritoireError, KeyError, ValueError):
            return None

    def _estimate(self) -> dict[str, pd.DataFrame]:
        """Every breakdown, nationally and by territory (design-based when possible)."""
        shares = [*self.derived["alliance"].values(), *self.derived["agreement"].values()]
        by_type = [i for i in self.spec.by_type.values() if i in self.frame.columns]
        out: dict[str, pd.DataFrame] = {}
        if shares:
            out["shares"] = self._shares(shares)
        if by_type and _GROUP in self.frame.columns:
            out["by_type"] = self._by_type(by_type)
        return out

    def _shares(self, cols: Sequence[str]) -> pd.DataFrame:
        parts = []
        for by in (None, self.territory):
            if self.design is not None:
                got = estimate_proportion(self.design, list(cols), by=by, interval="beta")
            else:
                got = _descriptive(self.frame, cols, by, self.columns.weight, share=True)
            got["domain"] = "" if by is None else got[by].astype("string")
            parts.append(got)
        table = pd.concat(parts, ignore_index=True)
        table["kind"] = "share"
        table["range_low"], table["range_high"] = 0.0, 1.0
        return self._judge(table, n_rows=self._rows(table))

    def _by_type(self, items: Sequence[str]) -> pd.DataFrame:
        by = [self.territory, _GROUP]
        if self.design is not None:
            table = estimate_mean(self.design, list(items), by=by)
        else:
            table = _descriptive(self.frame, items, by, self.columns.weight, share=False)
        ranges = {i: self.codebook.value_range(i) for i in items}
        table["range_low"] = [_float(ranges[v][0]) for v in table["variable"]]
        table["range_high"] = [_float(ranges[v][1]) for v in table["variable"]]
        table["kind"] = [
            interval_kind("mean", ranges[v][0], ranges[v][1]) for v in table["variable"]
        ]
        return self._judge(table)

    def _rows(self, table: pd.DataFrame) -> np.ndarray:
        """R's ``nrow()`` of each domain's subset (the Korn–Graubard df adjustment)."""
        if self.design is None or self.design.calibration.get("method", "none") != "none":
            return np.full(len(table), float(len(self.frame)))
        counts = self.frame[self.territory].astype("string").value_counts()
        return np.array(
            [
                float(len(self.frame)) if d == "" else float(counts.get(d, 0))
                for d in table["domain"]
            ]
        )

    def _judge(self, table: pd.DataFrame, n_rows: Any = None) -> pd.DataFrame:
        if self.design is None:
            table["ci_low"], table["ci_high"], table["interval"] = np.nan, np.nan, "not_estimable"
        else:
            lo, hi, method = compute_intervals(
                table["kind"].to_numpy(dtype=object),
                table["estimate"],
                table["se"],
                table["df"],
                table["n"],
                low=table["range_low"],
                high=table["range_high"],
                n_rows=n_rows,
            )
            table["ci_low"], table["ci_high"], table["interval"] = lo, hi, method
        table["estimator"] = "direct"
        table["is_small_n"] = table["n"] < self.min_n
        return judge(table, self.rules)

    # ------------------------------------------------------------------ accessors
    def alliance(self, domain: tuple[str, str], dom: str) -> dict[str, Any] | None:
        """The share answering a strong impact of alliances on a fragility domain."""
        col = self.derived["alliance"].get(dom)
        row = self._share_row(domain, col, "1")
        if row is None:
            return None
        return _record(row, col, "", self.min_n, kind="share")

    def agreement(self, domain: tuple[str, str]) -> list[dict[str, Any]]:
        """Each agreement item's grouped answers; a bar with a hidden share is hidden whole."""
        out = []
        for item, col in self.derived["agreement"].items():
            recs = {key: self._share_row(domain, col, key) for key, _ in AGREEMENT_GROUPS}
            present = {k: r for k, r in recs.items() if r is not None}
            if not present:
                continue
            records = {
                k: _record(r, col, label, self.min_n, kind="share")
                for k, label in AGREEMENT_GROUPS
                if (r := present.get(k)) is not None
            }
            statuses = [r["status"] for r in records.values()]
            suppressed = "suppressed" in statuses
            shares = {k: (None if suppressed else r["estimate"]) for k, r in records.items()}
            worst = max(statuses, key=_severity)
            n = max(int(r["n"]) for r in records.values())
            out.append(
                {
                    "variable": item,
                    "label": self.codebook[item].label_short
                    or short_label(self.codebook[item].label_fr, limit=160),
                    "groups": [[k, label] for k, label in AGREEMENT_GROUPS if k in records],
                    "shares": shares,
                    "records": records,
                    "n": n,
                    "status": worst,
                    "reason": ";".join(
                        sorted({c for r in records.values() for c in r["reason"].split(";") if c})
                    ),
                    "is_small_n": n < self.min_n,
                }
            )
        return out

    def by_type(self, code: str) -> list[dict[str, Any]]:
        """Means of the by-type items for each actor group of a territory."""
        index = self._by_type_index
        if index is None:
            return []
        labels = (
            self.codebook.value_labels(self.columns.respondent_type)
            if self.columns.respondent_type in self.codebook
            else {}
        )
        items = list(self.spec.by_type.values())
        out = []
        for group, rows in index.groups(code):
            rec: dict[str, Any] = {
                "type": str(group),
                "label": OTHER_LABEL
                if group == OTHER_GROUP
                else short_label(labels.get(group, str(group)), limit=40),
            }
            n_group = 0
            for item in items:
                r = _record(index.row(rows, item), item, "", self.min_n)
                rec[item] = r["estimate"]
                rec[f"{item}__record"] = r
                rec[f"n_{item}"] = r["n"]
                n_group = max(n_group, r["n"])
            rec["n"] = n_group
            rec["is_small_n"] = n_group < self.rules.min_cell
            out.append(rec)
        out.sort(key=lambda r: (r["type"] == OTHER_GROUP, -r["n"], r["type"]))
        # every type merged: the one group is the whole territory, not a breakdown
        return [] if [r["type"] for r in out] == [OTHER_GROUP] else out

    def _share_row(
        self, domain: tuple[str, str], col: str | None, level: str
    ) -> Mapping[str, Any] | None:
        if col is None:
            return None
        return self._shares_index.row(col, level, domain[1])


class _ShareIndex:
    """The shares table by (variable, level, domain): the first matching row, as a record.

    A record is what ``table.iloc[i].to_dict()`` gives (the table has text columns, so a row
    is boxed to Python values like :class:`~evalterritoire.report.lookup._Columns` boxes it).
    """

    def __init__(self, table: pd.DataFrame | None) -> None:
        self.positions: dict[tuple[str, str, str], int] = {}
        self.columns = _Columns(table) if table is not None else None
        if table is None:
            return
        keys = zip(
            table["variable"].astype("string").tolist(),
            table["level"].astype("string").tolist(),
            table["domain"].astype("string").tolist(),
            strict=True,
        )
        for pos, key in enumerate(keys):
            if not any(pd.isna(k) for k in key):
                self.positions.setdefault(key, pos)

    def row(self, variable: str, level: str, domain: str) -> dict[str, Any] | None:
        pos = self.positions.get((variable, level, domain))
        return None if pos is None or self.columns is None else self.columns.record(pos)


class _ByTypeIndex:
    """The by-type table by territory, actor group (sorted) and item: first rows as records."""

    def __init__(self, table: pd.DataFrame, territory: str | None) -> None:
        self.columns = _Columns(table)
        self.by_code: dict[str, dict[str, dict[str, int]]] = {}
        codes = table[territory].astype("string").tolist()
        groups = table[_GROUP].astype("string").tolist()
        variables = table["variable"].tolist()
        for pos, (code, group, variable) in enumerate(zip(codes, groups, variables, strict=True)):
            if pd.isna(code) or pd.isna(group):
                continue
            rows = self.by_code.setdefault(code, {}).setdefault(group, {})
            rows.setdefault(variable, pos)

    def groups(self, code: str) -> list[tuple[str, dict[str, int]]]:
        """A territory's actor groups in sorted order, each with its item → row position."""
        return sorted(self.by_code.get(code, {}).items())

    def row(self, rows: Mapping[str, int], item: str) -> dict[str, Any] | None:
        pos = rows.get(item)
        return None if pos is None else self.columns.record(pos)


def _severity(status: str | None) -> int:
    order = ("publishable", "fragile", "suppressed")
    return order.index(status) if status in order else len(order)


def _float(value: Any) -> float:
    return float(value) if value is not None else np.nan


def _agreement_groups(responses: pd.DataFrame, var: Any, codebook: Codebook) -> pd.Series:
    """Disagreement / neutral / agreement (halves of the item's scale) or « ne sait pas »."""
    codes = sorted(float(c) for c in codebook.value_labels(var.id))
    values = pd.to_numeric(responses[var.id], errors="coerce")
    half = len(codes) // 2
    low, high = set(codes[:half]), set(codes[len(codes) - half :])
    out = pd.Series(pd.NA, index=responses.index, dtype="string")
    out[values.isin(low)] = "disagree"
    out[values.isin(high)] = "agree"
    out[values.notna() & ~values.isin(low | high)] = "neutral"
    if var.special_col and var.special_col in responses.columns:
        nsp = (responses[var.special_col].astype("string") == "nsp").fillna(False)
        out[nsp.to_numpy(dtype=bool)] = "nsp"
    return out


def _descriptive(
    frame: pd.DataFrame,
    cols: Sequence[str],
    by: str | Sequence[str] | None,
    weight: str | None,
    *,
    share: bool,
) -> pd.DataFrame:
    """Weighted shares (every level) or means without variance, in the estimators' layout."""
    keys = [] if by is None else ([by] if isinstance(by, str) else list(by))
    w = _weights(frame, weight)
    groups = frame.groupby(keys, sort=True, dropna=True) if keys else [((), frame)]
    rows = []
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        labels = dict(zip(keys, key, strict=True))
        for col in cols:
            values = sub[col]
            ok = values.notna().to_numpy() & (w.loc[sub.index] > 0).to_numpy()
            if not ok.any():
                continue
            ww = w.loc[sub.index].to_numpy()[ok]
            if share:
                text = values[ok].astype("string").str.replace(r"\.0$", "", regex=True)
                for level in sorted(set(text)):
                    est = float(ww[(text == level).to_numpy()].sum() / ww.sum())
                    rows.append({**labels, "variable": col, "level": level, "estimate": est,
                                 "se": np.nan, "df": np.nan, "n": int(ok.sum())})  # fmt: skip
            else:
                est = float(np.average(pd.to_numeric(values[ok]).to_numpy(float), weights=ww))
                rows.append({**labels, "variable": col, "estimate": est, "se": np.nan,
                             "df": np.nan, "n": int(ok.sum())})  # fmt: skip
    columns = [*keys, "variable", *(["level"] if share else []), "estimate", "se", "df", "n"]
    return pd.DataFrame(rows, columns=columns)
