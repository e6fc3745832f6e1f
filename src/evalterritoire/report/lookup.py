"""Estimates for the report builders: the estimates-table index and its descriptive fallback.

Owns ``_Lookup`` (the long ``estimates.parquet`` table indexed by domain, variable, level and
statistic, with the shares of binary and multiple-choice items), ``_record`` (one estimate as a
context record carrying its n, interval and small-n flag), the response weights ``_weights``
and :func:`compute_descriptive_estimates` (weighted point estimates in the same layout, without
design intervals, used when ``estimates.parquet`` is missing; its per-domain totals are
``_DomainTotals``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, Variable
from evalterritoire.report.context import _num

_YES_LEVELS = ("1", "1.0", "oui", "True", "true")


# ----------------------------------------------------------- estimates lookup
class _Lookup:
    """Index of the long estimates table by (domain_type, domain, variable, level, statistic)."""

    def __init__(self, estimates: pd.DataFrame | None) -> None:
        self.rows: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self.small: dict[tuple[str, str], set[str]] = {}
        if estimates is None or estimates.empty:
            return
        cols = ["domain_type", "domain", "variable", "level", "statistic"]
        frame = estimates.copy()
        for col in cols:
            frame[col] = frame[col].astype("string").fillna("")
        for rec in frame.to_dict(orient="records"):
            key = tuple(str(rec[c]) for c in cols)
            self.rows[key] = rec  # type: ignore[index]
            if rec.get("is_small_n") is True:
                self.small.setdefault((key[0], key[1]), set()).add(key[2])

    def get(self, domain: tuple[str, str], variable: str, levels: Sequence[str], stat: str):
        for level in levels:
            rec = self.rows.get((domain[0], domain[1], variable, level, stat))
            if rec is not None:
                return rec
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


def _record(
    rec: Mapping[str, Any] | None, variable: str, label: str, min_n: int, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"variable": variable, "label": label, **extra}
    if rec is None:
        out.update(estimate=None, ci_low=None, ci_high=None, se=None, n=0, is_small_n=True)
        return out
    n = int(_num(rec.get("n")) or 0)
    small = rec.get("is_small_n")
    out.update(
        estimate=_num(rec.get("estimate")),
        ci_low=_num(rec.get("ci_low")),
        ci_high=_num(rec.get("ci_high")),
        se=_num(rec.get("se")),
        n=n,
        is_small_n=bool(small) if small is not None and small is not pd.NA else n < min_n,
    )
    return out


# ------------------------------------------------------- descriptive fallback
def _weights(frame: pd.DataFrame, weight: str | None) -> pd.Series:
    """The response weights (the codebook's ``weight`` role), or 1 without that column."""
    if weight is not None and weight in frame.columns:
        w = pd.to_numeric(frame[weight], errors="coerce").astype("float64")
        return w.fillna(0.0)
    return pd.Series(1.0, index=frame.index)


def compute_descriptive_estimates(
    responses: pd.DataFrame, codebook: Codebook, *, min_n: int, wave: int
) -> pd.DataFrame:
    """Weighted point estimates in the estimates-table layout, without design intervals.

    Used when ``estimates.parquet`` is missing: national and territory domains, means of
    numeric items, shares of each level of coded items, NSP shares. ``se``, ``ci_low``,
    ``ci_high`` are missing (the reports then show no interval rather than a false one). The
    territory and weight columns are the codebook's roles.
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
    return frame.sort_values(
        ["domain_type", "domain", "variable", "level", "statistic"], kind="mergesort"
    ).reset_index(drop=True)


class _DomainTotals:
    """Weighted totals of the national domain and of each territory, as estimates-table rows."""

    def __init__(self, responses: pd.DataFrame, codebook: Codebook, *, min_n: int, wave: int):
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
                        "estimate": float(e),
                        "se": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
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
