"""Estimates for the report builders: the estimates-table index and its descriptive fallback.

Owns ``_Lookup`` (the long ``estimates.parquet`` table indexed by domain, variable, level,
statistic and estimator; for each figure it picks the estimate a report shows: the direct one
when publishable, else the Fay–Herriot one when it is judged better, see :func:`choose`),
``_record`` (one estimate as a context record carrying its n, interval, interval method,
status and reasons, with its values removed when suppressed), the response weights
``_weights`` and :func:`compute_descriptive_estimates` (weighted point estimates in the same
layout, without design intervals, used when ``estimates.parquet`` is missing; its per-domain
totals are ``_DomainTotals``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.core.dtypes.cast import maybe_box_native

from evalterritoire.codebook import Codebook, Variable
from evalterritoire.config import PublicationConfig
from evalterritoire.estimates import STATUSES, assess_publication, interval_kind
from evalterritoire.report.context import _num

_YES_LEVELS = ("1", "1.0", "oui", "True", "true")
_KEY = ("domain_type", "domain", "variable", "level", "statistic")
#: The key of a row within its domain.
_ROW_KEY = ("variable", "level", "statistic", "estimator")
#: Fields of an estimate record that carry a value (removed when the estimate is suppressed).
VALUE_FIELDS = ("estimate", "ci_low", "ci_high", "se")


def _rank(row: Mapping[str, Any] | None) -> int:
    return _rank_of((row or {}).get("status"))


def _rank_of(status: Any) -> int:
    """The rank of a row's ``status`` value (a missing status ranks as suppressed)."""
    status = str(status or "suppressed")
    return STATUSES.index(status) if status in STATUSES else len(STATUSES)


def choose(
    direct: Mapping[str, Any] | None, model: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """The estimate a report shows for one figure.

    The direct estimate when it is publishable; otherwise the Fay–Herriot estimate
    (« estimation modélisée ») when its status is better than the direct one's (a modelled
    estimate never stands in for a value suppressed for confidentiality: the model has no row
    below ``min_cell`` respondents); otherwise the direct estimate with its status.
    """
    if direct is None or model is None:
        return direct if direct is not None else model
    if _rank(direct) == 0 or _rank(model) >= _rank(direct):
        return direct
    return {**model, "direct_status": direct.get("status"), "direct_reason": direct.get("reason")}


# ----------------------------------------------------------- estimates lookup
class _Lookup:
    """Index of the long estimates table by domain, variable, level, statistic (and estimator).

    Built once per wave without turning the table into Python records: the rows are grouped by
    domain in one pass, a domain's key index is made the first time it is asked for, and a row
    becomes a record only when it is looked up — the same record (same keys in the same order,
    same Python values) as ``DataFrame.to_dict(orient="records")`` of the table whose key
    columns are text with missing values as ``""`` (:class:`_Columns`). A key found twice keeps
    its last row.
    """

    def __init__(self, estimates: pd.DataFrame | None) -> None:
        self._table: _Columns | None = None
        self._domains: dict[tuple[str, str], np.ndarray] = {}
        self._index: dict[tuple[str, str], dict[tuple[str, ...], int]] = {}
        if estimates is None or estimates.empty:
            return
        frame = estimates.assign(
            **{col: estimates[col].astype("string").fillna("") for col in _KEY}
        )
        estimator = frame["estimator"] if "estimator" in frame.columns else None
        frame["estimator"] = (
            estimator.astype("string").fillna("direct") if estimator is not None else "direct"
        )
        frame["estimator"] = frame["estimator"].astype("string")
        self._table = _Columns(frame)
        codes, uniques = pd.factorize(
            pd.MultiIndex.from_arrays([frame["domain_type"], frame["domain"]]), sort=False
        )
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        for i, (dtype, dom) in enumerate(uniques):
            self._domains[(str(dtype), str(dom))] = order[bounds[i] : bounds[i + 1]]

    def _rows(self, domain: tuple[str, str]) -> dict[tuple[str, ...], int]:
        """The domain's key → row position (built at its first use)."""
        index = self._index.get(domain)
        if index is None:
            index = {}
            positions = self._domains.get(domain)
            if positions is not None and self._table is not None:
                keys = [self._table.text(c, positions) for c in _ROW_KEY]
                for pos, *key in zip(positions.tolist(), *keys, strict=True):
                    index[tuple(key)] = pos
            self._index[domain] = index
        return index

    def row(self, domain: tuple[str, str], variable: str, level: str, stat: str, estimator: str):
        """The record of one row of the table, or None."""
        pos = self._rows(domain).get((variable, level, stat, estimator))
        if pos is None or self._table is None:
            return None
        return self._table.record(pos)

    def get(self, domain: tuple[str, str], variable: str, levels: Sequence[str], stat: str):
        """:func:`choose` between the direct and the Fay–Herriot row of the first level found.

        The statuses decide first; only the chosen row becomes a record.
        """
        rows = self._rows(domain)
        table = self._table
        if table is None:
            return None
        for level in levels:
            direct = rows.get((variable, level, stat, "direct"))
            model = rows.get((variable, level, stat, "fay_herriot"))
            if direct is None and model is None:
                continue
            if direct is None or model is None:
                return table.record(direct if direct is not None else model)
            status = table.value(direct, "status")
            if _rank_of(status) == 0 or _rank_of(table.value(model, "status")) >= _rank_of(status):
                return table.record(direct)
            return {
                **table.record(model),
                "direct_status": status,
                "direct_reason": table.value(direct, "reason"),
            }
        return None

    def proportion(self, domain: tuple[str, str], variable: str, level: str | None = None):
        """Share of a level (``None`` = yes for a binary item; ``var__opt`` handled)."""
        if level is None:
            return self.get(domain, variable, _YES_LEVELS, "proportion")
        rec = self.get(domain, variable, (level,), "proportion")
        if rec is None:
            rec = self.get(domain, f"{variable}__{level}", (*_YES_LEVELS, ""), "proportion")
        if rec is None:
            rec = self.get(domain, f"{variable}__{level}", ("",), "mean")
        return rec

    def mean(self, domain: tuple[str, str], variable: str):
        return self.get(domain, variable, ("",), "mean")

    def nsp(self, domain: tuple[str, str], variable: str):
        return self.get(domain, variable, ("",), "nsp_share")


class _Columns:
    """A table kept as columns, each row turned into a record on demand.

    :meth:`record` gives what ``DataFrame.to_dict(orient="records")`` gives for that row:
    numpy numbers as Python numbers, text columns as ``str`` (missing values as the column's
    boxed missing value: None for ``string``), other columns as pandas iterates them, boxed
    like ``to_dict`` boxes object and extension columns.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.names: list[str] = [str(c) for c in frame.columns]
        self.getters: list[Any] = []
        self.codes: dict[str, tuple[np.ndarray, list[Any]]] = {}
        for name, (_, series) in zip(self.names, frame.items(), strict=True):
            dtype = series.dtype
            if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
                self.getters.append(series.to_numpy().item)
            elif isinstance(dtype, pd.StringDtype):
                codes, uniques = pd.factorize(series, use_na_sentinel=True)
                values = [maybe_box_native(v) for v in uniques]
                if (codes < 0).any():
                    at = int(np.flatnonzero(codes < 0)[0])
                    values.append(maybe_box_native(next(iter(series.iloc[at : at + 1]))))
                self.codes[name] = (codes, values)  # code -1: the last value, the missing one
                self.getters.append(_coded(codes, values))
            else:
                boxed = dtype == np.dtype(object) or not isinstance(dtype, np.dtype)
                values = [maybe_box_native(v) if boxed else v for v in series]
                self.getters.append(values.__getitem__)
        #: Column name → its place in ``names`` (the last of a repeated name, as in a record).
        self.position = {name: at for at, name in enumerate(self.names)}

    def record(self, pos: int) -> dict[str, Any]:
        """The row at ``pos`` as a record."""
        return {name: get(pos) for name, get in zip(self.names, self.getters, strict=True)}

    def value(self, pos: int, name: str) -> Any:
        """``record(pos).get(name)``: one value of the row at ``pos`` (None without the column)."""
        at = self.position.get(name)
        return None if at is None else self.getters[at](pos)

    def text(self, name: str, positions: np.ndarray) -> list[str]:
        """The values of a text column at some rows."""
        codes, values = self.codes[name]
        return [values[c] for c in codes[positions].tolist()]


def _coded(codes: np.ndarray, values: list[Any]) -> Any:
    def get(pos: int) -> Any:
        return values[codes[pos]]

    return get


def _record(
    rec: Mapping[str, Any] | None, variable: str, label: str, min_n: int, **extra: Any
) -> dict[str, Any]:
    """One figure of a report: value, interval and its method, n, status and reasons.

    A suppressed figure keeps its n, status and reasons but loses its values (nothing of it
    reaches a table, a chart, an alt text or a download); a record without an estimate has
    the status None (nothing to show).
    """
    out: dict[str, Any] = {"variable": variable, "label": label, **extra}
    if rec is None:
        out.update(
            estimate=None, ci_low=None, ci_high=None, se=None, n=0, is_small_n=True,
            status=None, reason="", interval="", estimator="", quantity="",
            range_low=None, range_high=None,
        )  # fmt: skip
        return out
    n = int(_num(rec.get("n")) or 0)
    small = rec.get("is_small_n")
    status = rec.get("status")
    out.update(
        estimate=_num(rec.get("estimate")),
        ci_low=_num(rec.get("ci_low")),
        ci_high=_num(rec.get("ci_high")),
        se=_num(rec.get("se")),
        n=n,
        is_small_n=bool(small) if small is not None and small is not pd.NA else n < min_n,
        status=str(status) if status is not None and status is not pd.NA else None,
        reason=str(rec.get("reason") or ""),
        interval=str(rec.get("interval") or ""),
        estimator=str(rec.get("estimator") or "direct"),
        quantity=str(rec.get("kind") or ""),
        range_low=_num(rec.get("range_low")),
        range_high=_num(rec.get("range_high")),
    )
    if rec.get("direct_status"):
        out["direct_status"] = str(rec["direct_status"])
        out["direct_reason"] = str(rec.get("direct_reason") or "")
    if out["status"] == "suppressed":
        out.update(dict.fromkeys(VALUE_FIELDS))
    return out


def judge(frame: pd.DataFrame, rules: PublicationConfig) -> pd.DataFrame:
    """``status`` and ``reason`` columns for a frame in the estimates layout (any source)."""
    status, reason = assess_publication(frame, rules)
    return frame.assign(status=status, reason=reason)


# ------------------------------------------------------- descriptive fallback
def _weights(frame: pd.DataFrame, weight: str | None) -> pd.Series:
    """The response weights (the codebook's ``weight`` role), or 1 without that column."""
    if weight is not None and weight in frame.columns:
        w = pd.to_numeric(frame[weight], errors="coerce").astype("float64")
        return w.fillna(0.0)
    return pd.Series(1.0, index=frame.index)


def compute_descriptive_estimates(
    responses: pd.DataFrame,
    codebook: Codebook,
    *,
    min_n: int,
    wave: int,
    publication: PublicationConfig | None = None,
) -> pd.DataFrame:
    """Weighted point estimates in the estimates-table layout, without design intervals.

    Used when ``estimates.parquet`` is missing: national and territory domains, means of
    numeric items, shares of each level of coded items, NSP shares. ``se``, ``ci_low``,
    ``ci_high`` are missing (the reports then say that no interval could be computed rather
    than show a false one), so no row is better than fragile; rows on fewer than ``min_cell``
    respondents are suppressed. The territory and weight columns are the codebook's roles.
    """
    table = _DomainTotals(responses, codebook, min_n=min_n, wave=wave)
    with np.errstate(invalid="ignore", divide="ignore"):
        for var in codebook.of_type("likert", "rating", "binary", "ordinal", "count", "decimal"):
            if var.id in responses.columns and var.block != "identification":
                table.add_numeric(var)
        for var in codebook.of_type("multi_select", "categorical"):
            if var.block == "identification":
                continue
            if var.type == "multi_select":
                table.add_multi_select(var)
            elif var.id in responses.columns:
                table.add_categorical(var)
    frame = pd.DataFrame(table.rows)
    if frame.empty:
        return frame
    frame = judge(frame, publication or PublicationConfig())
    return frame.sort_values(
        ["domain_type", "domain", "variable", "level", "statistic"], kind="mergesort"
    ).reset_index(drop=True)


class _DomainTotals:
    """Weighted totals of the national domain and of each territory, as estimates-table rows."""

    def __init__(self, responses: pd.DataFrame, codebook: Codebook, *, min_n: int, wave: int):
        self.codebook = codebook
        self.responses = responses
        self.min_n = min_n
        self.wave = wave
        self.weights = _weights(responses, codebook.column("weight")).to_numpy(dtype=float)
        territory = codebook.column("territory")
        if territory is not None and territory in responses.columns:
            codes, self.group = np.unique(
                responses[territory].astype(str).to_numpy(), return_inverse=True
            )
        else:
            codes, self.group = np.array([], dtype=str), np.zeros(len(responses), dtype=int)
        self.n_groups = len(codes)
        self.domains = [("national", "")] + [("territory", str(c)) for c in codes]
        self.rows: list[dict[str, Any]] = []

    def sums(self, values: np.ndarray) -> np.ndarray:
        """National total then one total per territory."""
        by_group = (
            np.bincount(self.group, weights=values, minlength=self.n_groups)
            if self.n_groups
            else []
        )
        return np.concatenate([[values.sum()], by_group])

    def add(self, var: str, level: str, stat: str, est: np.ndarray, n: np.ndarray) -> None:
        """One row per domain with a finite estimate resting on at least one answer."""
        lo, hi = (0.0, 1.0) if stat != "mean" else self.codebook.value_range(var)
        kind = interval_kind(stat, lo, hi)
        for (dtype, dom), e, k in zip(self.domains, est, n, strict=True):
            if k > 0 and np.isfinite(e):
                self.rows.append(
                    {
                        "wave": self.wave,
                        "domain_type": dtype,
                        "domain": dom,
                        "variable": var,
                        "level": level,
                        "statistic": stat,
                        "estimator": "direct",
                        "estimate": float(e),
                        "se": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "interval": "not_estimable",
                        "kind": kind,
                        "range_low": np.nan if lo is None else float(lo),
                        "range_high": np.nan if hi is None else float(hi),
                        "df": np.nan,
                        "n": int(k),
                        "deff": np.nan,
                        "is_small_n": bool(k < self.min_n),
                    }
                )

    def add_numeric(self, var: Variable) -> None:
        """Mean, shares of each level (coded items) and « ne sait pas » share of an item."""
        values = pd.to_numeric(self.responses[var.id], errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        ok = ~np.isnan(values) & (self.weights > 0)
        w = np.where(ok, self.weights, 0.0)
        n = self.sums(ok.astype(float))
        total = self.sums(w)
        self.add(var.id, "", "mean", self.sums(np.where(ok, values, 0.0) * w) / total, n)
        if var.type in {"binary", "ordinal", "likert"}:
            for level in np.unique(values[ok]):
                share = self.sums(w * (values == level)) / total
                self.add(var.id, str(int(level)), "proportion", share, n)
        special = self._special(var)
        if special is not None:
            nsp, answered = special
            asked = (ok | answered).astype(float)
            share = self.sums(nsp.astype(float)) / self.sums(asked)
            self.add(var.id, "", "nsp_share", share, self.sums(asked))

    def _special(self, var: Variable) -> tuple[np.ndarray, np.ndarray] | None:
        """« Ne sait pas » answers and answers given (filtered rows excluded), or None."""
        if not var.special_col or var.special_col not in self.responses.columns:
            return None
        special = self.responses[var.special_col].astype("string")
        nsp = (special == "nsp").fillna(False).to_numpy(dtype=bool)
        answered = (special.notna() & (special != "filtre")).fillna(False).to_numpy(dtype=bool)
        return nsp, answered

    def add_multi_select(self, var: Variable) -> None:
        """Share of respondents ticking each option, among those who answered the item."""
        cols = [c for c in var.option_cols() if c in self.responses.columns]
        if not cols:
            return
        block = self.responses[cols].apply(pd.to_numeric, errors="coerce")
        block = block.to_numpy(dtype=float, na_value=np.nan)
        ok = ~np.isnan(block).all(axis=1) & (self.weights > 0)
        w = np.where(ok, self.weights, 0.0)
        n, total = self.sums(ok.astype(float)), self.sums(w)
        for j, col in enumerate(cols):
            ticked = np.nan_to_num(block[:, j]) * w
            self.add(var.id, col.split("__", 1)[1], "proportion", self.sums(ticked) / total, n)

    def add_categorical(self, var: Variable) -> None:
        """Share of each option of a single-choice item."""
        values = self.responses[var.id].astype("string")
        ok = (values.notna().to_numpy(dtype=bool)) & (self.weights > 0)
        w = np.where(ok, self.weights, 0.0)
        n, total = self.sums(ok.astype(float)), self.sums(w)
        text = values.fillna("").to_numpy(dtype=object)
        for level in sorted(set(text[ok])):
            share = self.sums(w * (text == level)) / total
            self.add(var.id, str(level), "proportion", share, n)
