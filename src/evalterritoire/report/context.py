"""The report context value objects, their JSON round trip and their shared vocabulary.

Owns :class:`StudyArtefacts` (the wave's artefact tables handed to the builders),
:class:`ReportContext` (one report's content as JSON-compatible values) with its deterministic
:meth:`~ReportContext.to_json` / :meth:`~ReportContext.from_json`, the JSON-cleaning helpers
``_clean`` and ``_num``, the indented JSON writer :func:`dumps_indented` (the text of
``json.dumps(indent=1, sort_keys=True)`` without the standard library's pure-Python indenting
encoder), and the names every builder module shares: the schema version, the small-cell
threshold, the columns of the responses table the reports read (:class:`Columns`, from the
codebook's roles) and :func:`short_label`. Imports nothing from the other report modules.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evalterritoire.codebook import Codebook
from evalterritoire.errors import RenderError

if TYPE_CHECKING:  # pandas is not imported by a report kernel (only the builders use it)
    import pandas as pd

#: Version of the JSON layout of a context (bumped when fields change meaning).
SCHEMA_VERSION = 2
#: Cells below this many respondents are flagged (grid §1: n < 5 « indicatif »).
SMALL_CELL = 5


@dataclass(frozen=True)
class Columns:
    """The columns of the responses table the reports read, from the codebook's roles.

    Each is None when the codebook declares no variable of that role; ``free_text`` lists the
    open answers that may be quoted.
    """

    territory: str | None = None
    territory_name: str | None = None
    territory_level: str | None = None
    region: str | None = None
    region_name: str | None = None
    respondent_type: str | None = None
    respondent_id: str | None = None
    weight: str | None = None
    consent: str | None = None
    declared_stage: str | None = None
    population: str | None = None
    free_text: tuple[str, ...] = ()

    @classmethod
    def from_codebook(cls, codebook: Codebook) -> Columns:
        """Resolve every role the reports use."""
        single = {f.name for f in fields(cls)} - {"free_text"}
        return cls(
            **{role: codebook.column(role) for role in sorted(single)},
            free_text=tuple(v.id for v in codebook.with_role("free_text")),
        )


def short_label(text: str, *, limit: int = 60) -> str:
    """A short display label: the text before a parenthesis or colon, cut at ``limit``."""
    out = text.split(" (")[0].split(" :")[0].strip()
    if len(out) > limit:
        out = out[: limit - 1].rstrip() + "…"
    return out


@dataclass(frozen=True)
class StudyArtefacts:
    """The wave's artefact tables (each None when its step has not run).

    Attributes
    ----------
    responses : DataFrame or None
        Typed valid rows (``responses.parquet``).
    estimates : DataFrame or None
        Long estimates table (``estimates.parquet``).
    maturity : DataFrame or None
        One row per territory (``maturity.parquet``).
    transitions : DataFrame or None
        Stage changes between waves (``transitions.parquet``).
    models : DataFrame or None
        Tidy coefficient table (``models.parquet``).
    reliability : DataFrame or None
        Reliability (alpha) per dimension (``reliability.parquet``).
    ingestion : dict or None
        Ingestion report (``ingestion.json``).
    context : DataFrame or None
        Territory-level public statistics (``ctx_*`` columns keyed by territory code).
    profiles : DataFrame or None
        Territory profiles of every wave (``profiles.parquet``: ``wave``, ``territory``,
        ``score_<dimension>``), for the wave-to-wave charts.
    smallarea : DataFrame or None
        The Fay–Herriot fits of the territory statistics (``smallarea.parquet``), for the
        annex of the reports that show model-based estimates.
    item_medians : DataFrame or None
        Design-based medians of the count items, nationally and by territory
        (``item_medians.parquet``), for the identity card.
    dimension_alpha : DataFrame or None
        Design-based Cronbach's alpha of each dimension with its interval
        (``dimension_alpha.parquet``), for the synthesis' annex.
    trend_breaks : tuple of dict
        Unacknowledged item changes between the waves' codebooks
        (:func:`evalterritoire.report.comparability.find_trend_breaks`): no trend is drawn
        across them.
    later_waves : tuple of (int, tuple of str)
        The study's later waves built in the same run, each with the territory codes it
        reports on, so that an earlier wave's reports link forward to them.
    """

    responses: pd.DataFrame | None = None
    estimates: pd.DataFrame | None = None
    maturity: pd.DataFrame | None = None
    transitions: pd.DataFrame | None = None
    models: pd.DataFrame | None = None
    reliability: pd.DataFrame | None = None
    ingestion: Mapping[str, Any] | None = None
    context: pd.DataFrame | None = None
    profiles: pd.DataFrame | None = None
    smallarea: pd.DataFrame | None = None
    dimension_alpha: pd.DataFrame | None = None
    item_medians: pd.DataFrame | None = None
    trend_breaks: tuple[Mapping[str, Any], ...] = ()
    later_waves: tuple[tuple[int, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class ReportContext:
    """Everything one report shows (territory or national), as JSON-compatible values.

    Records are dicts of plain values (str, int, float, bool, None, lists). Every estimate
    record carries ``estimate``, ``ci_low``, ``ci_high`` (None when suppressed or not
    estimable), ``n``, ``status`` (``publishable`` / ``fragile`` / ``suppressed``, None when
    there is no estimate), ``reason`` (``;``-separated codes of
    :mod:`evalterritoire.estimates.publication`), ``interval`` (the method: ``korn_graubard``,
    ``logit_scale``, ``log_scale``, ``t``, ``model_*`` or ``not_estimable``), ``estimator``
    (``direct`` or ``fay_herriot``: « estimation modélisée »), ``quantity`` (its kind) and its
    range, so that every published figure has its n, its interval and its status — and a
    suppressed one has no value at all.
    """

    study_name: str
    wave: int
    territory: str
    territory_name: str
    is_national: bool
    min_n: int
    schema_version: int = SCHEMA_VERSION
    stage_names: tuple[str, ...] = ()
    # identity and context
    identity: Mapping[str, Any] = field(default_factory=dict)
    context_indicators: tuple[Mapping[str, Any], ...] = ()
    composition: tuple[Mapping[str, Any], ...] = ()
    # stage and justification
    stage: int | None = None
    stage_label: str = ""
    #: Grid stage key the report follows (the earlier stage when between two stages).
    grid_key: str = ""
    #: The evaluation grid's entry of ``grid_key`` (name, section title, posture, signals, tone,
    #: questions, charts, recommendations, do_not, bands, band legend, reading intro): the
    #: template renders the stage block from it, without the grid file.
    stage_grid: Mapping[str, Any] = field(default_factory=dict)
    #: Grid stage key of the assigned stage (``grid_key`` unless between two stages).
    assigned_grid_key: str = ""
    #: The report spec's by-type items (``benefit``, ``burden``, ``trust`` → item id): the keys
    #: of the ``by_type`` records.
    by_type_items: Mapping[str, str] = field(default_factory=dict)
    #: Scale of the by-type items: ``low``, ``high`` and their labels ``low_label``, ``high_label``.
    by_type_scale: Mapping[str, Any] = field(default_factory=dict)
    #: Item of the codebook's ``population`` role (shown apart from the context indicators).
    population_variable: str = ""
    #: Study stage whose grid the report follows (``stage`` unless between two stages).
    report_stage: int | None = None
    report_stage_label: str = ""
    stage_probability: float | None = None
    #: Membership probability of every stage (``stage``, ``label``, ``probability``).
    stage_probabilities: tuple[Mapping[str, Any], ...] = ()
    stage_robustness: float | None = None
    between_stages: bool = False
    #: The neighbouring stage the territory shares its membership with (between stages).
    other_stage: int | None = None
    other_stage_label: str = ""
    stage_declared: int | None = None
    stage_declared_label: str = ""
    stage_gap: int | None = None
    declared_distribution: tuple[Mapping[str, Any], ...] = ()
    #: A few short excerpts of respondents' free text, shown escaped (« paroles d'acteurs »).
    free_text: tuple[Mapping[str, Any], ...] = ()
    score_range: tuple[float, float] = (1.0, 5.0)
    n_dimensions: int = 0
    profile: tuple[Mapping[str, Any], ...] = ()
    # content sections
    fragilities: tuple[Mapping[str, Any], ...] = ()
    partnership: tuple[Mapping[str, Any], ...] = ()
    dynamic: tuple[Mapping[str, Any], ...] = ()
    status_levels: tuple[Mapping[str, Any], ...] = ()
    agreement: tuple[Mapping[str, Any], ...] = ()
    milestones: tuple[Mapping[str, Any], ...] = ()
    results: tuple[Mapping[str, Any], ...] = ()
    essaimage: tuple[Mapping[str, Any], ...] = ()
    stage_indicators: tuple[Mapping[str, Any], ...] = ()
    by_type: tuple[Mapping[str, Any], ...] = ()
    freins: tuple[Mapping[str, Any], ...] = ()
    nsp: tuple[Mapping[str, Any], ...] = ()
    respondents: tuple[Mapping[str, Any], ...] = ()
    n_respondents: int = 0
    n_types: int = 0
    is_indicative: bool = False
    #: Publication rules of the study (``min_cell``, thresholds) for the legend and the annex.
    publication: Mapping[str, Any] = field(default_factory=dict)
    #: Figures of the report by status (``publishable``, ``fragile``, ``suppressed``,
    #: ``modelled``, ``not_estimable``, and ``reasons``: count of each reason code).
    quality: Mapping[str, Any] = field(default_factory=dict)
    #: Fay–Herriot fits of the model-based figures this report shows (annex).
    smallarea_fits: tuple[Mapping[str, Any], ...] = ()
    models: tuple[Mapping[str, Any], ...] = ()
    history: tuple[Mapping[str, Any], ...] = ()
    wave_scores: tuple[Mapping[str, Any], ...] = ()
    recommendations: tuple[str, ...] = ()
    #: Why each recommendation is proposed (aligned with ``recommendations``).
    recommendation_reasons: tuple[str, ...] = ()
    next_stage: Mapping[str, Any] = field(default_factory=dict)
    # narrative (report.narrative), comparison group (report.neighbours), colophon
    #: « L'essentiel »: ``stage``, ``strengths``, ``attention``, ``change``, ``comparison``
    #: (lists of French sentences).
    essentiel: Mapping[str, Any] = field(default_factory=dict)
    #: Each evaluative question of the stage with its ``sentences``.
    answers: tuple[Mapping[str, Any], ...] = ()
    #: What the national models estimate for the territory's stage, in plain French.
    model_sentences: tuple[str, ...] = ()
    #: The stage move since the previous wave and the sentences explaining it (``{}``: none).
    stage_change: Mapping[str, Any] = field(default_factory=dict)
    #: The statistically similar territories (``territory``, ``name``, ``stage_label``,
    #: ``distance``) and how they are found (``neighbour_method``).
    neighbours: tuple[Mapping[str, Any], ...] = ()
    neighbour_method: str = ""
    #: Sentence templates comparing the territory with a comparison group the evaluator
    #: chooses at render time (``chosen_group_*`` of the report spec).
    group_sentences: Mapping[str, str] = field(default_factory=dict)
    #: The study's later waves in which this territory has a report (links between waves).
    later_waves: tuple[int, ...] = ()
    #: Producer, data, version, commit, how to cite, confidentiality.
    colophon: Mapping[str, Any] = field(default_factory=dict)
    #: Acronyms of the report's text with their expansion (``term``, ``definition``).
    glossary: tuple[Mapping[str, Any], ...] = ()
    # national only
    stage_distribution: tuple[Mapping[str, Any], ...] = ()
    territories: tuple[Mapping[str, Any], ...] = ()
    transition_matrix: tuple[Mapping[str, Any], ...] = ()
    headline: tuple[Mapping[str, Any], ...] = ()
    #: Mean of each dimension score over territories, wave by wave (report.trends).
    score_trend: tuple[Mapping[str, Any], ...] = ()
    #: Territories at each stage, wave by wave.
    stage_by_wave: tuple[Mapping[str, Any], ...] = ()
    #: Territories whose stage changed since the previous wave.
    stage_changes: tuple[Mapping[str, Any], ...] = ()
    stage_profiles: tuple[Mapping[str, Any], ...] = ()
    reliability: tuple[Mapping[str, Any], ...] = ()
    ingestion: Mapping[str, Any] = field(default_factory=dict)
    methodology: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ serialisation
    def to_data(self) -> dict[str, Any]:
        """The context as JSON-ready values (what :meth:`to_json` writes, before the text)."""
        return {f.name: _clean(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> str:
        """Deterministic JSON text (sorted keys, floats rounded to 6 decimals, final newline)."""
        return dumps_indented(self.to_data())

    @classmethod
    def from_json(cls, source: str | Path) -> ReportContext:
        """Load a context from a JSON file path (or from JSON text).

        Raises
        ------
        RenderError
            When the file is missing, is not a context, or has another schema version.
        """
        text = str(source)
        if isinstance(source, Path) or not text.lstrip().startswith("{"):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise RenderError(f"context file {path} cannot be read ({exc.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RenderError(f"context is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise RenderError(
                f"not a report context of schema version {SCHEMA_VERSION}: rebuild the contexts"
            )
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise RenderError(f"report context has unknown field(s): {', '.join(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    # ------------------------------------------------------------------ helpers
    @property
    def title(self) -> str:
        """Report title."""
        if self.is_national:
            return f"{self.study_name} — synthèse {self.wave}"
        return f"{self.territory_name} — rapport d'évaluation {self.wave}"

    @property
    def n_stages(self) -> int:
        """Number of stages of the study."""
        return len(self.stage_names)

    @property
    def allows_verdicts(self) -> bool:
        """Whether the stage the report follows allows threshold verdicts (reading bands)."""
        return bool(self.stage_grid.get("bands"))


_INFINITIES = (math.inf, -math.inf)


def _clean(value: Any) -> Any:
    """JSON-ready copy: numpy scalars → Python, NaN → None, floats rounded, tuples → lists.

    A dataclass instance is cleaned field by field (as ``dataclasses.asdict`` would turn it
    into a dict); the copy is made here, without ``asdict``'s deep copy of every value. The
    exact built-in types (most of a context) are answered first, by their type alone, the same
    way the general checks below answer them.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if value != value or value in _INFINITIES:
            return None
        r = round(value, 6)
        return 0.0 if r == 0 else r
    if kind is dict:
        return {str(k): _clean(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_clean(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _clean(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            return None
        r = round(f, 6)
        return 0.0 if r == 0 else r
    # a pandas missing value exists only once pandas is imported (by the builders): a report
    # kernel never imports it
    pandas = sys.modules.get("pandas")
    if value is None or (pandas is not None and (value is pandas.NA or value is pandas.NaT)):
        return None
    return value if isinstance(value, str) else str(value)


class _UnsupportedError(Exception):
    """A value the fast writer leaves to :func:`json.dumps` (not a cleaned JSON value)."""


def dumps_indented(data: Any) -> str:
    """``json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True, allow_nan=False)`` + newline.

    The same text, written without the standard library's pure-Python indenting encoder (its
    generators cost most of a context's writing time): strings are escaped by the same C
    function, numbers by ``repr`` as it does. A value other than a dict with text keys, a list,
    text, an int, a finite float, a bool or None is left to :func:`json.dumps` whole.

    A dict or list holding only such scalars (most records) is written by the standard
    library's C encoder in one call, its item separator carrying the line break and the
    indentation of its level (the encoder json.dumps uses without indentation, with the same
    escaping, number texts, literals and key order).
    """
    parts: list[str] = []
    try:
        _write(data, parts, 0)
    except _UnsupportedError:
        return (
            json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True, allow_nan=False) + "\n"
        )
    parts.append("\n")
    return "".join(parts)


_ESCAPE = json.encoder.encode_basestring  # the C escaper json.dumps uses (ensure_ascii=False)
_INDENTS = ["\n" + " " * level for level in range(64)]


def _float(value: float) -> str:
    if math.isfinite(value):
        return float.__repr__(value)
    raise _UnsupportedError  # json.dumps(allow_nan=False) raises on it


#: The text of each scalar type, as ``json.dumps`` writes it.
_SCALARS: dict[type, Any] = {
    str: _ESCAPE,
    float: _float,
    int: int.__repr__,
    bool: {True: "true", False: "false"}.__getitem__,
    type(None): lambda _: "null",
}


_LEAVES = frozenset(_SCALARS)


def _refuse(value: Any) -> Any:
    raise TypeError(f"not JSON: {type(value).__name__}")


def _leaf_encoder(level: int) -> Any:
    """The C encoder of a container of scalars at ``level`` (None without the C module)."""
    make = json.encoder.c_make_encoder
    if make is None:
        return None
    encoder = _LEAF_ENCODERS.get(level)
    if encoder is None:
        sep = "," + _INDENTS[level + 1]
        encoder = make(None, _refuse, _ESCAPE, None, ": ", sep, True, False, False)
        _LEAF_ENCODERS[level] = encoder
    return encoder


_LEAF_ENCODERS: dict[int, Any] = {}


def _write_leaf(value: dict | list, parts: list[str], level: int) -> bool:
    """Write a non-empty container of scalars (text keys) in one C call; False if it is not one."""
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or type(item) not in _LEAVES:
                return False
    else:
        for item in value:
            if type(item) not in _LEAVES:
                return False
    encoder = _leaf_encoder(level)
    if encoder is None:
        return False
    try:
        text = "".join(encoder(value, 0))
    except ValueError:  # a float that is not finite: json.dumps(allow_nan=False) raises on it
        raise _UnsupportedError from None
    parts.append(text[0] + _INDENTS[level + 1] + text[1:-1] + _INDENTS[level] + text[-1])
    return True


def _write(value: Any, parts: list[str], level: int) -> None:
    """Append the indented JSON text of ``value`` (at nesting ``level``) to ``parts``."""
    kind = type(value)
    if kind is dict:
        if not value:
            parts.append("{}")
            return
        if level + 1 >= len(_INDENTS):
            raise _UnsupportedError
        if _write_leaf(value, parts, level):
            return
        sep = "," + _INDENTS[level + 1]
        lead = "{" + _INDENTS[level + 1]
        for key in sorted(value):
            if type(key) is not str:
                raise _UnsupportedError
            item = value[key]
            scalar = _SCALARS.get(type(item))
            if scalar is not None:
                parts.append(lead + _ESCAPE(key) + ": " + scalar(item))
            else:
                parts.append(lead + _ESCAPE(key) + ": ")
                _write(item, parts, level + 1)
            lead = sep
        parts.append(_INDENTS[level] + "}")
    elif kind is list:
        if not value:
            parts.append("[]")
            return
        if level + 1 >= len(_INDENTS):
            raise _UnsupportedError
        if _write_leaf(value, parts, level):
            return
        sep = "," + _INDENTS[level + 1]
        lead = "[" + _INDENTS[level + 1]
        for item in value:
            scalar = _SCALARS.get(type(item))
            if scalar is not None:
                parts.append(lead + scalar(item))
            else:
                parts.append(lead)
                _write(item, parts, level + 1)
            lead = sep
        parts.append(_INDENTS[level] + "]")
    else:
        scalar = _SCALARS.get(kind)
        if scalar is None:
            raise _UnsupportedError
        parts.append(scalar(value))


def with_list_field(text: str, key: str, items: list[Any]) -> str | None:
    """:func:`dumps_indented` text of a dict whose top-level ``key`` is ``[]``, with ``items``.

    The text the dict with ``items`` (JSON-ready values) under ``key`` is written as, made by
    writing ``items`` in place of the empty list (a newline is never inside a JSON string, so
    the line ``"key": []`` one space in is that field); None when the field is not found once
    or ``items`` is not plain JSON (then write the dict again).
    """
    marker = "\n " + _ESCAPE(key) + ": []"
    at = text.find(marker)
    if at < 0 or text.find(marker, at + 1) >= 0:
        return None
    parts = [text[:at], marker[:-2]]
    try:
        _write(items, parts, 1)
    except _UnsupportedError:
        return None
    parts.append(text[at + len(marker) :])
    return "".join(parts)


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f
