"""The study's estimates table (``estimates.parquet``): every item, every domain, judged.

:func:`compute_study_tables` estimates every codebook item nationally and by each domain type
(one vectorised pass per domain type, :mod:`.engine`), gives each row the interval of its kind
of quantity (:mod:`.intervals`: Korn–Graubard for shares, logit of the rescaled mean for bounded
means, log for counts), adds the Fay–Herriot estimate of every territory statistic
(:mod:`.smallarea`, ``estimator = "fay_herriot"``) and judges every row with the study's
publication rules (:mod:`.publication`: ``status`` and ``reason``).
:func:`compute_study_estimates` returns the table alone.

Memory: the (respondents × statistics) matrix is held as :class:`CompactColumns` (each column
in the narrowest dtype that keeps its values exactly: answers, 0/1 indicators and small
counts as ``int8`` codes with ``-128`` for NaN, other values in ``float16``/``float32`` when
exact) and handed to the engine by blocks of ``float64`` columns, so it never
exists whole as ``float64``; the estimates are bit-identical to those of the whole matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.config import PublicationConfig
from evalterritoire.design.survey import SurveyDesign
from evalterritoire.errors import EstimationError
from evalterritoire.estimates.engine import _design_rows, _domain_sums, _domains, _engine, _numeric
from evalterritoire.estimates.intervals import compute_intervals, interval_kind
from evalterritoire.estimates.publication import assess_publication
from evalterritoire.estimates.smallarea import (
    SMALLAREA_FIT_COLUMNS,
    compute_smallarea_estimates,
)

__all__ = [
    "STUDY_ESTIMATE_COLUMNS",
    "CompactColumns",
    "StudyTables",
    "compute_domain_variance_factors",
    "compute_study_estimates",
    "compute_study_tables",
]

STUDY_ESTIMATE_COLUMNS = (
    "wave",
    "domain_type",
    "domain",
    "variable",
    "level",
    "statistic",
    "estimator",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "interval",
    "kind",
    "range_low",
    "range_high",
    "df",
    "n",
    "deff",
    "is_small_n",
    "status",
    "reason",
)
_MEAN_TYPES = frozenset({"likert", "rating", "ordinal", "count", "decimal"})
_KEYS = ["domain_type", "domain", "variable", "level", "statistic", "estimator"]


@dataclass(frozen=True)
class StudyTables:
    """The estimates table and the small-area fits (``smallarea.parquet``)."""

    estimates: pd.DataFrame
    smallarea: pd.DataFrame


@dataclass(frozen=True)
class _Column:
    """One published statistic of the study table."""

    variable: str
    level: str
    statistic: str
    kind: str
    low: float
    high: float


def _column(var: Any, codebook: Any, level: str, statistic: str) -> _Column:
    if statistic == "mean":
        lo, hi = codebook.value_range(var.id)
    else:
        lo, hi = 0.0, 1.0
    low = float(lo) if lo is not None else np.nan
    high = float(hi) if hi is not None else np.nan
    kind = interval_kind(statistic, lo, hi)
    return _Column(var.id, level, statistic, kind, low, high)


def _study_columns(
    design: SurveyDesign, codebook: Any, scores: Mapping[str, tuple[float, float]] | None = None
) -> tuple[CompactColumns, list[_Column]]:
    """Typed responses → one float column per published statistic (NaN = not counted)."""
    data = design.data
    cols: list[np.ndarray] = []
    meta: list[_Column] = []
    for name, (lo, hi) in sorted((scores or {}).items()):
        cols.append(_narrowest(_numeric(design, [name])[:, 0]))
        meta.append(_Column(name, "", "mean", "bounded_mean", float(lo), float(hi)))
    for var in codebook.variables:
        if var.level != "respondent":
            continue
        got = _item_columns(design, codebook, var)
        if got is None:
            continue
        item_cols, item_meta, answered = got
        cols += [_narrowest(c) for c in item_cols]  # narrow at once: never all float64
        meta += item_meta
        special = data[var.special_col] if var.special_col and var.special_col in data else None
        if special is not None:
            given, nsp = _special_flags(special)
            asked = answered | given
            cols.append(_narrowest(np.where(asked, nsp, np.nan)))
            meta.append(_column(var, codebook, "", "nsp_share"))
    if not cols:
        raise EstimationError("no codebook item of the responses can be estimated")
    return CompactColumns(cols), meta


def _special_flags(special: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a special code other than ``filtre``, and the 0/1 « ne sait pas » rows.

    A ``category`` column (read lean) is judged on its codes, without converting its rows.
    """
    if isinstance(special.dtype, pd.CategoricalDtype):
        labels = list(special.cat.categories.astype("string"))
        codes = special.cat.codes.to_numpy()
        filtre = labels.index("filtre") if "filtre" in labels else -2
        nsp = labels.index("nsp") if "nsp" in labels else -2
        return (codes >= 0) & (codes != filtre), (codes == nsp).astype(float)
    sp = special.astype("string")
    given = (sp.notna() & (sp != "filtre")).to_numpy()
    return given, (sp == "nsp").fillna(False).to_numpy(float)


class CompactColumns:
    """The study's (rows × statistics) float matrix, each column in its narrowest exact dtype.

    Answers on a scale, 0/1 indicators and small counts (whole numbers in ``[-127, 127]``,
    NaN for no answer) are held as ``int8`` codes, ``-128`` standing for NaN; other columns as
    ``float16`` (or ``float32``) when every value, NaN included, converts back to the same
    ``float64``, else ``float64``. ``values[:, a:b]`` gives a C-ordered ``float64`` block
    equal bit for bit to the same columns of ``np.column_stack`` of the float64 columns, so
    the estimates do not change; the whole matrix is never held as ``float64`` (a 1M-row
    study with ~500 statistics needs ~0.5 GiB instead of ~4 GiB).

    Parameters
    ----------
    columns : sequence of ndarray (n,)
        The float64 columns, in order.
    """

    def __init__(self, columns: list[np.ndarray]) -> None:
        self._columns = [_narrowest(np.asarray(c)) for c in columns]
        n = self._columns[0].shape[0] if self._columns else 0
        self.shape = (n, len(self._columns))

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns."""
        return sum(c.nbytes for c in self._columns)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:, 0 : self.shape[1]]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        if rows != slice(None) or not isinstance(cols, slice):
            raise EstimationError("CompactColumns takes [:, a:b] (every row, a range of columns)")
        picked = self._columns[cols]
        out = np.empty((self.shape[0], len(picked)))
        for j, col in enumerate(picked):
            out[:, j] = col
            if col.dtype == np.int8:
                out[col == _NAN_CODE, j] = np.nan
        return out


#: The ``int8`` code of NaN in :class:`CompactColumns`.
_NAN_CODE = np.int8(-128)


def _as_codes(column: np.ndarray) -> np.ndarray | None:
    """``column`` (float64) as ``int8`` codes (NaN → -128) when exact, else None.

    Exact: every value is a whole number in ``[-127, 127]`` and no zero is ``-0.0``.
    """
    nan = np.isnan(column)
    values = column[~nan]
    if values.size:
        if values.min() < -127 or values.max() > 127 or not np.all(values == np.round(values)):
            return None
        if np.signbit(values[values == 0]).any():
            return None
    codes = np.where(nan, 0.0, column).astype(np.int8)
    codes[nan] = _NAN_CODE
    return codes


def _narrowest(column: np.ndarray) -> np.ndarray:
    """``column`` as int8 codes, float16 or float32 when that is exact, else float64."""
    if column.dtype in (np.int8, np.float16, np.float32):  # already narrowed
        return column
    column = np.asarray(column, dtype=np.float64)
    codes = _as_codes(column)
    if codes is not None:
        return codes
    for dtype in (np.float16, np.float32):
        with np.errstate(over="ignore"):
            small = column.astype(dtype)
        if np.array_equal(small.astype(np.float64), column, equal_nan=True):
            return small
    return column


def _item_columns(design: SurveyDesign, codebook: Any, var: Any):
    """The statistics of one item: (columns, their descriptions, who answered), or None."""
    data = design.data
    cols: list[np.ndarray] = []
    meta: list[_Column] = []
    if var.type in _MEAN_TYPES or var.type == "binary":
        if var.id not in data:
            return None
        values = _numeric(design, [var.id])[:, 0]
        answered = ~np.isnan(values)
        if var.type == "binary":
            cols.append(np.where(answered, (values == 1).astype(float), np.nan))
            meta.append(_column(var, codebook, "1", "proportion"))
        else:
            cols.append(values)
            meta.append(_column(var, codebook, "", "mean"))
        if var.type == "ordinal":  # ordered levels are also published as shares
            for code in sorted(codebook.value_labels(var.id), key=float):
                hit = (values == float(code)).astype(float)
                cols.append(np.where(answered, hit, np.nan))
                meta.append(_column(var, codebook, str(code), "proportion"))
    elif var.type == "categorical":
        if var.id not in data:
            return None
        text = data[var.id].astype("string")
        answered = text.notna().to_numpy()
        for key in sorted(var.options):
            cols.append(np.where(answered, (text == key).fillna(False).to_numpy(float), np.nan))
            meta.append(_column(var, codebook, key, "proportion"))
    elif var.type == "multi_select":
        if not any(c in data for c in var.option_cols()):
            return None
        answered = np.zeros(len(data), dtype=bool)
        for key in sorted(var.options):
            col = f"{var.id}__{key}"
            if col not in data:
                continue
            values = _numeric(design, [col])[:, 0]
            answered |= ~np.isnan(values)
            cols.append(np.where(np.isnan(values), np.nan, (values == 1).astype(float)))
            meta.append(_column(var, codebook, key, "proportion"))
    else:
        return None
    return cols, meta, answered


def compute_study_tables(
    design: SurveyDesign,
    codebook: Any,
    *,
    domains: Mapping[str, str | None] | None = None,
    min_n: int,
    wave: int,
    publication: PublicationConfig | None = None,
    context: pd.DataFrame | None = None,
    scores: Mapping[str, tuple[float, float]] | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> StudyTables:
    """The long ``estimates.parquet`` table (every item, nationally and by each domain type).

    Parameters
    ----------
    design : SurveyDesign
        Design of the wave's typed responses.
    codebook : Codebook
        Item types decide the statistic: likert/rating/ordinal/count/decimal → ``mean`` (ordinal
        items also → proportion of every level of their scale); binary → proportion of
        ``"1"``; categorical → proportion of every option; multi-select → proportion of each
        option ticked; every item with special codes → ``nsp_share`` (share of "ne sait pas" among
        respondents asked, i.e. not filtered out). Items absent from the responses are skipped.
        The item's range (``value_range``) decides the kind of interval.
    domains : mapping, optional
        ``domain_type → column`` (e.g. ``{"territory": codebook.column("territory")}``);
        ``None`` skips the domain type, a column missing from the data is an error. Default:
        ``territory`` and ``respondent_type``, the columns of these codebook roles, and
        ``stage`` when the responses have a ``stage`` column.
    min_n : int
        ``is_small_n`` is ``n < min_n`` (the study's ``min_n``; the statuses follow
        ``publication``).
    wave : int
        Wave written in the ``wave`` column.
    publication : PublicationConfig, optional
        The study's publication rules (default: the documented defaults); ``smallarea = false``
        skips the Fay–Herriot rows.
    context : DataFrame, optional
        The territory context (indexed by territory code): the Fay–Herriot covariates. Without
        it the model has an intercept only.
    scores : mapping of str to (low, high), optional
        Derived respondent-level columns of the design's data and their range, estimated like
        the items as means under their own names: the pipeline passes the dimension scores
        ``score_<dim>`` (on the codebook's ``score_range``) and each respondent's share of
        « ne sait pas » among a dimension's items asked, ``nsp_<dim>`` (on [0, 1]).
    progress : callable, optional
        ``progress(label, total)`` → ``advance(n)``, called once before the domain passes
        with the number of domain × statistic estimates to make (the pipeline draws a bar).

    Returns
    -------
    StudyTables
        ``estimates``: columns :data:`STUDY_ESTIMATE_COLUMNS`, sorted by domain_type, domain,
        variable, level, statistic, estimator (``direct`` before ``fay_herriot``);
        ``smallarea``: one fit per territory statistic (:data:`SMALLAREA_FIT_COLUMNS`).
    """
    if not isinstance(design, SurveyDesign):
        raise EstimationError(f"design must be a SurveyDesign, got {type(design).__name__}")
    rules = publication if publication is not None else PublicationConfig()
    y, meta = _study_columns(design, codebook, scores)
    if domains is None:
        domains = _study_domains(codebook, design.data)
    tables, territory = [], None
    plan = [
        (dtype, col, _domains(design, [] if col is None else [col]))
        for dtype, col in _domain_plan(design, domains)
    ]
    advance = (
        progress("Estimations", sum(len(d[1]) for _, _, d in plan) * y.shape[1])
        if progress is not None
        else None
    )
    for dtype, col, found in plan:
        part, extra = _domain_table(design, y, meta, dtype, col, found, advance)
        tables.append(part)
        if dtype == "territory":
            territory = (part, extra)
    out = pd.concat(tables, ignore_index=True)
    out, fits = _with_smallarea(out, territory, context, rules, wave)
    return StudyTables(_finish(out, wave, min_n, rules), fits)


def _with_smallarea(
    out: pd.DataFrame,
    territory: tuple[pd.DataFrame, pd.DataFrame] | None,
    context: pd.DataFrame | None,
    rules: PublicationConfig,
    wave: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table with the Fay–Herriot rows of the territory statistics, and the fits."""
    fits = pd.DataFrame(columns=list(SMALLAREA_FIT_COLUMNS))
    if rules.smallarea and territory is not None:
        model, fits = compute_smallarea_estimates(
            territory[0],
            territory[1]["element_var"],
            context,
            variance_factor=territory[1]["variance_factor"],
            covariates=rules.smallarea_covariates,
            max_covariates=rules.smallarea_max_covariates,
            min_cell=rules.min_cell,
            wave=wave,
        )
        if not model.empty:
            lo, hi, method = compute_intervals(
                model["kind"].to_numpy(dtype=object),
                model["estimate"],
                model["se"],
                None,
                model["n"],
                low=model["range_low"],
                high=model["range_high"],
                model=True,
            )
            model = model.assign(ci_low=lo, ci_high=hi, interval=method)
            out = pd.concat([out, model], ignore_index=True)
    return out, fits


def compute_study_estimates(
    design: SurveyDesign,
    codebook: Any,
    *,
    domains: Mapping[str, str | None] | None = None,
    min_n: int,
    wave: int,
    publication: PublicationConfig | None = None,
    context: pd.DataFrame | None = None,
    scores: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """The estimates table of :func:`compute_study_tables` (same parameters)."""
    return compute_study_tables(
        design,
        codebook,
        domains=domains,
        min_n=min_n,
        wave=wave,
        publication=publication,
        context=context,
        scores=scores,
    ).estimates


def _finish(out: pd.DataFrame, wave: int, min_n: int, rules: PublicationConfig) -> pd.DataFrame:
    """Wave, small-n flag, statuses, types and the table's order."""
    out.insert(0, "wave", np.int64(wave))
    out["is_small_n"] = out["n"] < int(min_n)
    status, reason = assess_publication(out, rules)
    out["status"] = pd.array(status, dtype="string")
    out["reason"] = pd.array(reason, dtype="string")
    for col in ("domain_type", "domain", "variable", "level", "statistic", "estimator"):
        out[col] = out[col].astype("string")
    for col in ("interval", "kind"):
        out[col] = out[col].astype("string")
    out["df"] = out["df"].astype(np.int64)
    out["n"] = out["n"].astype(np.int64)
    out = out.sort_values(_KEYS, kind="stable").reset_index(drop=True)
    return out[list(STUDY_ESTIMATE_COLUMNS)]


def _study_domains(codebook: Any, data: pd.DataFrame) -> dict[str, str | None]:
    """Default domains: the codebook's territory and respondent type, the stage when known."""
    return {
        "territory": codebook.column("territory"),
        "respondent_type": codebook.column("respondent_type"),
        "stage": "stage" if "stage" in data.columns else None,
    }


def _domain_plan(
    design: SurveyDesign, domains: Mapping[str, str | None]
) -> list[tuple[str, str | None]]:
    """``(domain_type, column)`` to tabulate: national first, then the domain types by name."""
    plan: list[tuple[str, str | None]] = [("national", None)]
    for dtype in sorted(domains):
        col = domains[dtype]
        if col is None:
            continue
        if col not in design.data:
            raise EstimationError(f"domain column '{col}' ({dtype}) is not in the responses")
        plan.append((dtype, col))
    return plan


def _by_columns(
    function: Callable[..., np.ndarray],
    design: SurveyDesign,
    y: np.ndarray | CompactColumns,
    codes: np.ndarray,
    n_dom: int,
) -> np.ndarray:
    """``function(design, y, codes, n_dom)`` by blocks of columns (each column on its own).

    The per-column statistics are the same whatever the block; only a block of rows ×
    columns (32 MiB of float64) is expanded at a time.
    """
    width = max(1, 4 * 1024**2 // max(y.shape[0], 1))
    if y.shape[1] <= width:
        return function(design, y[:, 0 : y.shape[1]], codes, n_dom)
    parts = [
        function(design, y[:, j0 : j0 + width], codes, n_dom) for j0 in range(0, y.shape[1], width)
    ]
    return np.concatenate(parts, axis=1)


def _element_variances(
    design: SurveyDesign, y: np.ndarray, codes: np.ndarray, n_dom: int
) -> np.ndarray:
    """Weighted within-domain variance of each column, ``n / (n - 1)`` corrected (domains, p)."""
    valid = ~np.isnan(y)
    w = np.where(valid, design.weights[:, None], 0.0)
    y0 = np.where(valid, y, 0.0)
    wsum = _domain_sums(codes, n_dom, w)
    n = _domain_sums(codes, n_dom, valid.astype(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = _domain_sums(codes, n_dom, w * y0) / wsum
        second = _domain_sums(codes, n_dom, w * np.square(y0)) / wsum
        s2 = np.maximum(second - np.square(mean), 0.0) * n / (n - 1)
    return np.where(n > 1, s2, np.nan)


def compute_domain_variance_factors(
    design: SurveyDesign, y: np.ndarray, codes: np.ndarray, n_dom: int
) -> np.ndarray:
    """``E[v̂] / Var`` of each domain mean under a working model of independent answers.

    Parameters
    ----------
    design : SurveyDesign
        The design (its first stage: PSUs in strata).
    y : ndarray (n, p)
        The variables (NaN = no valid answer).
    codes : ndarray (n,)
        Domain of each row (``-1`` = none).
    n_dom : int
        Number of domains.

    Returns
    -------
    ndarray (n_dom, p)
        The ratios (1 where it cannot be computed, and for replicate designs). Dividing a
        domain mean's linearised variance by it gives a variance unbiased under the working
        model.

    Notes
    -----
    A domain's linearised variance centres its PSU totals on the domain's own mean, which
    costs one of its PSUs' worth of information: with ``k`` equal PSUs the estimator's
    expectation is ``(k - 1) / k`` of the variance (half of it for a territory in two PSUs),
    whatever the stratum's ``n_h / (n_h - 1)``. Under independent answers of equal variance the
    ratio is exactly, with ``W`` and ``S`` the sums of weights and of squared weights of the
    domain's valid rows (in a PSU ``a``, a stratum ``h``, the domain ``N``, ``Q``)::

        Σ_h n_h/(n_h - 1) [Σ_a∈h (S_a - 2 W_a S_a / N + W_a² Q / N²)
                           - (S_h - 2 W_h S_h / N + W_h² Q / N²) / n_h] / Q

    (Kott 1994's working-model logic, first stage, without the fpc). 1 for replicate designs.
    """
    p = y.shape[1]
    if design.is_replicate or not hasattr(design, "_stages"):
        return np.ones((n_dom, p))
    stage = design._stages[0]
    keep = codes >= 0
    valid = ~np.isnan(y[keep])
    w = np.where(valid, design.weights[keep][:, None], 0.0)
    psu = stage.unit[keep].astype(np.int64)
    g = np.int64(n_dom)
    cell, cell_keys = pd.factorize(psu * g + codes[keep], sort=False)
    cell_keys = np.asarray(cell_keys, dtype=np.int64)
    W_a = _domain_sums(cell.astype(np.int64), cell_keys.size, w)
    S_a = _domain_sums(cell.astype(np.int64), cell_keys.size, np.square(w))
    dom = cell_keys % g
    stratum = stage.group[cell_keys // g].astype(np.int64)
    N, Q = _domain_sums(dom, n_dom, W_a), _domain_sums(dom, n_dom, S_a)
    h_cell, h_keys = pd.factorize(stratum * g + dom, sort=False)
    h_keys = np.asarray(h_keys, dtype=np.int64)
    W_h = _domain_sums(h_cell.astype(np.int64), h_keys.size, W_a)
    S_h = _domain_sums(h_cell.astype(np.int64), h_keys.size, S_a)
    n_h = stage.n_in_group[h_keys // g].astype(float)[:, None]
    h_dom = h_keys % g
    with np.errstate(divide="ignore", invalid="ignore"):
        per_psu = S_a - 2 * W_a * S_a / N[dom] + np.square(W_a) * Q[dom] / np.square(N[dom])
        inner = _domain_sums(h_cell.astype(np.int64), h_keys.size, per_psu)
        centre = S_h - 2 * W_h * S_h / N[h_dom] + np.square(W_h) * Q[h_dom] / np.square(N[h_dom])
        term = np.where(n_h > 1, n_h / (n_h - 1), 0.0) * (inner - centre / n_h)
        factor = _domain_sums(h_dom, n_dom, term) / Q
    return np.where(np.isfinite(factor) & (factor > 0), factor, 1.0)


def _domain_table(
    design: SurveyDesign,
    y: np.ndarray | CompactColumns,
    meta: list[_Column],
    dtype: str,
    col: str | None,
    found: tuple[np.ndarray, pd.DataFrame],
    advance: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Every statistic of ``y`` in every domain of ``col`` (the whole sample when None).

    Also returns, for territories, the within-domain element variance of every row and the
    bias factor of its direct variance (:func:`compute_domain_variance_factors`), for the
    small-area model.
    """
    codes, labels = found
    n_dom = len(labels)
    done = [0]

    def counted(n: int) -> None:
        done[0] += n
        if advance is not None:
            advance(n)

    res = _engine(design, y, codes, n_dom, kind="mean", advance=counted)
    if advance is not None and done[0] < n_dom * y.shape[1]:
        advance(n_dom * y.shape[1] - done[0])
    df = design.domain_df(codes, n_dom)
    p = y.shape[1]
    dom_idx = np.repeat(np.arange(n_dom), p)
    col_idx = np.tile(np.arange(p), n_dom)
    kinds = np.array([m.kind for m in meta], dtype=object)[col_idx]
    low = np.array([m.low for m in meta])[col_idx]
    high = np.array([m.high for m in meta])[col_idx]
    rows = _design_rows(design, codes, n_dom)[dom_idx]
    se = np.sqrt(res["var"]).ravel()
    n = res["n"].ravel()
    lo, hi, method = compute_intervals(
        kinds, res["estimate"].ravel(), se, np.repeat(df, p), n, low=low, high=high, n_rows=rows
    )
    domain_text = (
        np.full(n_dom, "", dtype=object)
        if col is None
        else labels[col].astype("string").fillna("").to_numpy(dtype=object)
    )
    part = pd.DataFrame(
        {
            "domain_type": dtype,
            "domain": domain_text[dom_idx],
            "variable": np.array([m.variable for m in meta], dtype=object)[col_idx],
            "level": np.array([m.level for m in meta], dtype=object)[col_idx],
            "statistic": np.array([m.statistic for m in meta], dtype=object)[col_idx],
            "estimator": "direct",
            "estimate": res["estimate"].ravel(),
            "se": se,
            "ci_low": lo,
            "ci_high": hi,
            "interval": method,
            "kind": kinds,
            "range_low": low,
            "range_high": high,
            "df": np.repeat(df, p),
            "n": n.astype(np.int64),
            "deff": res["deff"].ravel(),
        }
    )
    keep = (part["n"] > 0).to_numpy()
    if dtype != "territory":
        return part[keep], pd.DataFrame(index=part.index[keep])
    extra = pd.DataFrame(
        {
            "element_var": _by_columns(_element_variances, design, y, codes, n_dom).ravel(),
            "variance_factor": _by_columns(
                compute_domain_variance_factors, design, y, codes, n_dom
            ).ravel(),
        },
        index=part.index,
    )
    return part[keep], extra[keep]
