"""Model inputs and labels: the fitted rows, their model matrix and the terms' French labels.

Private part of :mod:`evalterritoire.models.fit`: ``_Data`` (outcome, model matrix, rows, groups and
territories of a fit) built by ``_prepare`` from a formula, the collinearity screen, the French
labels of patsy terms and cut-points from the codebook, ``_Estimation``, what each family's
fit hands to the common inference code, ``_Model`` (that fit on the kept columns, with its
design) and ``_Notes`` (the flags and messages the steps of a fit collect).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from evalterritoire.errors import ModelError
from evalterritoire.models.formula import check_formula, check_no_constant_terms

if TYPE_CHECKING:
    from evalterritoire.codebook import Codebook
    from evalterritoire.config import ModelSpec
    from evalterritoire.design.survey import SurveyDesign

_STAGE_COL = "stage"
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LEVEL_TERM = re.compile(
    r"^(?:C\((?P<cvar>[A-Za-z_]\w*)[^)]*\)|(?P<var>[A-Za-z_]\w*))\[T\.(?P<lvl>.+)\]$"
)


# --------------------------------------------------------------------------- data
@dataclass
class _Data:
    y: np.ndarray
    X: np.ndarray
    terms: list[str]
    rows: np.ndarray  # positions in the frame / design
    outcome: str
    levels: np.ndarray | None = None
    groups: np.ndarray | None = None
    territory: np.ndarray | None = None
    dropped: list[str] = field(default_factory=list)


def _referenced(formula: str, frame: pd.DataFrame) -> list[str]:
    cols = set(frame.columns)
    seen: list[str] = []
    for tok in _TOKEN.findall(formula):
        if tok in cols and tok not in seen:
            seen.append(tok)
    return seen


def _plain(series: pd.Series) -> pd.Series:
    """A column patsy understands: numbers as float/int, anything else as object with None."""
    if isinstance(series.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(series):
        return series.astype(object).where(series.notna(), None)
    values = series.astype(float)
    finite = values.dropna()
    if len(finite) and np.all(np.mod(finite.to_numpy(), 1.0) == 0):
        return values.astype("int64")
    return values


def _prepare(spec: ModelSpec, frame: pd.DataFrame, design: SurveyDesign, territory: str | None):
    """The fit's data: complete rows of the design's domain, outcome and model matrix.

    ``territory`` is the territory column (codebook role), kept for the influence check.
    """
    if len(frame) != len(design.data):
        raise ModelError(
            f"model '{spec.name}': the frame has {len(frame)} rows but the design "
            f"{len(design.data)}; build the design from the same rows"
        )
    cols = _formula_columns(spec, frame)
    needed = [*cols, spec.groups] if spec.kind == "mixed" else cols
    mask = design.domain_mask & frame[needed].notna().all(axis=1).to_numpy()
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        raise ModelError(f"model '{spec.name}': no respondent has every variable of the formula")
    sub = pd.DataFrame({c: _plain(frame[c].iloc[rows]) for c in cols})
    sub.index = pd.RangeIndex(rows.size)
    y_df, x_df = _design_matrices(spec, sub)
    y = y_df.iloc[:, 0].to_numpy(dtype=float)
    data = _Data(
        y=y,
        X=x_df.to_numpy(dtype=float),
        terms=[str(c) for c in x_df.columns],
        rows=rows,
        outcome=str(y_df.columns[0]),
    )
    _check_outcome(spec, data)
    if spec.kind == "mixed":
        data.groups = frame[spec.groups].iloc[rows].astype(str).to_numpy()
    if territory is not None and territory in frame.columns:
        data.territory = frame[territory].iloc[rows].astype(str).to_numpy()
    return data


def _formula_columns(spec: ModelSpec, frame: pd.DataFrame) -> list[str]:
    """Columns the formula names; the outcome (and a mixed model's groups) must exist."""
    lhs = spec.formula.split("~", 1)[0]
    cols = _referenced(spec.formula, frame)
    if not _referenced(lhs, frame):
        raise ModelError(
            f"model '{spec.name}': outcome '{lhs.strip()}' is not a column of the data"
        )
    if spec.kind == "mixed" and (not spec.groups or spec.groups not in frame.columns):
        raise ModelError(f"model '{spec.name}': unknown grouping column '{spec.groups}'")
    check_formula(spec.formula, frame.columns, name=spec.name)  # before patsy evaluates it
    return cols


def _design_matrices(spec: ModelSpec, sub: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outcome (one column) and model matrix from the formula (patsy, no Python evaluated)."""
    import patsy

    env = patsy.EvalEnvironment([{"np": np}])
    try:
        y_df, x_df = patsy.dmatrices(
            spec.formula, sub, return_type="dataframe", NA_action="raise", eval_env=env
        )
    except Exception as exc:  # patsy raises PatsyError and whatever the formula evaluates
        raise ModelError(f"model '{spec.name}': formula '{spec.formula}': {exc}") from exc
    if spec.kind == "ordinal":  # the cut-points play the intercept
        x_df = x_df.drop(columns=[c for c in x_df.columns if c == "Intercept"])
        check_no_constant_terms(spec.name, x_df)
    if y_df.shape[1] == 2 and str(y_df.columns[1]).endswith("[True]"):
        y_df = y_df.iloc[:, [1]]
    if y_df.shape[1] != 1:
        raise ModelError(
            f"model '{spec.name}': the outcome must be one numeric column, got "
            f"{', '.join(map(str, y_df.columns))}"
        )
    return y_df, x_df


def _check_outcome(spec: ModelSpec, data: _Data) -> None:
    """Logistic outcomes are 0/1; ordinal ones integer codes, recoded 0..k (``data.levels``)."""
    y = data.y
    if spec.kind == "logistic":
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            raise ModelError(
                f"model '{spec.name}': a logistic outcome takes 0/1 values, found "
                f"{y[bad][0]:g} (write e.g. 'I({data.outcome} >= 2) ~ …')"
            )
    if spec.kind == "quasipoisson" and (y < 0).any():
        raise ModelError(
            f"model '{spec.name}': a quasi-Poisson outcome is a count or rate ≥ 0, found "
            f"{y[y < 0][0]:g}"
        )
    if spec.kind == "ordinal":
        if np.any(np.mod(y, 1.0) != 0):
            raise ModelError(f"model '{spec.name}': an ordinal outcome needs integer codes")
        levels, codes = np.unique(y, return_inverse=True)
        if levels.size < 2:
            raise ModelError(f"model '{spec.name}': the outcome takes a single value")
        data.levels = levels
        data.y = codes.astype(float)


def _independent_columns(X: np.ndarray, w: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Keep columns in order, dropping those (nearly) spanned by earlier ones (R ``qr``)."""
    Xs = X * np.sqrt(w)[:, None]
    keep: list[int] = []
    for j in range(Xs.shape[1]):
        col = Xs[:, j]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        if keep:
            basis = Xs[:, keep]
            coef, *_ = np.linalg.lstsq(basis, col, rcond=None)
            resid = col - basis @ coef
        else:
            resid = col
        if np.linalg.norm(resid) > tol * norm:
            keep.append(j)
    return np.asarray(keep, dtype=int)


# --------------------------------------------------------------------------- labels
def _level_label(var: str, level: str, codebook: Codebook | None, stage_names: Mapping) -> str:
    if var == _STAGE_COL:
        try:
            return f"Stade : {stage_names[int(float(level))]}"
        except (KeyError, ValueError):
            return f"Stade : {level}"
    if codebook is not None and var in codebook.ids:
        labels = codebook.value_labels(var)
        key: Any = level
        if key not in labels:
            try:
                key = int(float(level))
            except ValueError:
                key = level
        lab = labels.get(key, labels.get(str(key), level))
        return f"{_short(codebook.label(var))} : {lab}"
    return f"{var} : {level}"


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def term_label(term: str, codebook: Codebook | None, stage_names: Mapping | None = None) -> str:
    """French label of a model term (``C(stage)[T.2]`` → ``Stade : Consolidation``)."""
    stage_names = stage_names or {}
    if term in {"Intercept", "const"}:
        return "Constante"
    parts = []
    for factor in term.split(":"):
        m = _LEVEL_TERM.match(factor)
        if m:
            var = m.group("cvar") or m.group("var")
            parts.append(_level_label(var, m.group("lvl"), codebook, stage_names))
        elif codebook is not None and factor in codebook.ids:
            parts.append(_short(codebook.label(factor)))
        elif factor == _STAGE_COL:
            parts.append("Stade (rang)")
        else:
            parts.append(factor)
    return " × ".join(parts)


def _cut_label(a: Any, b: Any, outcome: str, codebook: Codebook | None) -> str:
    labels = (
        codebook.value_labels(outcome) if codebook is not None and outcome in codebook.ids else {}
    )

    def lab(v):
        return labels.get(int(v), labels.get(str(int(v)), _num(v)))

    return f"Seuil « {lab(a)} » | « {lab(b)} »"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# --------------------------------------------------------------------------- fitting
@dataclass
class _Estimation:
    """What a family's fit hands to the common inference code (one entry per coefficient)."""

    beta: np.ndarray
    names: list[str]
    labels: list[str]
    U: np.ndarray  # (n, d) estimating-equation contributions, already design-weighted if any
    A: np.ndarray  # (d, d) derivative of −Σ U
    L: np.ndarray | None  # A = L'R row by row (exact territory deletion); None: one-step
    R: np.ndarray | None
    converged: bool
    separation: np.ndarray | None = None  # direction over the coefficients
    r2: float = np.nan
    r2_kind: str = ""
    loglik: float = np.nan
    n_params: int = 0  # table's n_params (mixed: + variance components)
    extra_rows: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # codes for every row
    messages: list[str] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Notes:
    """Flags of every row of the table (codes, first seen first) and the diagnostics' messages."""

    codes: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def flag(self, code: str, message: str | None = None) -> None:
        if code not in self.codes:
            self.codes.append(code)
        if message is not None:
            self.messages.append(message)


@dataclass
class _Model:
    """A family's fit on the kept columns, with the design its variance comes from."""

    X: np.ndarray  # model matrix without the collinear columns
    terms: list[str]
    dropped: list[str]  # collinear terms, left out
    w: np.ndarray  # design weights of the fitted rows, normalised to mean 1
    est: _Estimation
    var_design: SurveyDesign
    design_df: int
    n_psu: int | None  # None for replicate designs
