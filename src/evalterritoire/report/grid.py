"""The maturity-adapted evaluation grid, loaded from data (``data/evaluation_grid.yaml``).

The stage assigned to a territory selects (a) the evaluation questions, (b) which thresholds
(verdicts) are allowed, (c) which charts are shown and (d) the tone. In the shipped grid an
emerging or structuring territory never receives the Wilder-type threshold reading (≥ 4 force,
3–3,9 à discuter, < 3 préoccupation), which is reserved for consolidated and disseminating
initiatives. The grid names no questionnaire item (that is the report spec's job).

Owns the grid's value objects (:class:`Band`, :class:`StageGrid`, :class:`EvaluationGrid`),
:func:`load_grid` with its validation (every malformed entry is refused with a
:class:`~evalterritoire.errors.GridError` naming the file, the key and the problem), the mapping
of a study's stages onto the grid's (:meth:`EvaluationGrid.stage_key`, any number of stages on
either side), :func:`band_for`, and the bounded YAML reading shared with the report spec.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from evalterritoire.codebook import normalise_text
from evalterritoire.codebook.safeyaml import load_yaml_file
from evalterritoire.errors import EvalTerritoireError, GridError

__all__ = [
    "CHART_IDS",
    "Band",
    "EvaluationGrid",
    "StageGrid",
    "band_for",
    "default_grid_path",
    "load_grid",
]

#: Chart ids a stage may list: the figures of :data:`evalterritoire.report.figures.CHARTS` and
#: the table-shaped charts of :data:`evalterritoire.report.tables.STAGE_TABLES`.
CHART_IDS: tuple[str, ...] = (
    "stakeholders",
    "agreement",
    "benefit_burden",
    "waves",
    "fragilities",
    "profile",
    "profile_banded",
    "milestones",
    "fragility_table",
    "essaimage_table",
)
#: Largest grid or report spec file read (bytes).
MAX_FILE_BYTES = 2_000_000
_KEY = re.compile(r"[a-z][a-z0-9_]*")
_NO_BANDS = "none"


@dataclass(frozen=True)
class Band:
    """A reading band on the study's dimension-score scale (Wilder Collaboration Factors logic).

    A score ``s`` is in the band when ``low <= s < high``; ``colour`` shades the figure.
    """

    key: str
    label: str
    low: float
    high: float
    colour: str = ""

    def to_record(self) -> dict[str, Any]:
        """The band as JSON-compatible values (for a report context)."""
        return {
            "key": self.key,
            "label": self.label,
            "low": self.low,
            "high": self.high,
            "colour": self.colour,
        }


@dataclass(frozen=True)
class StageGrid:
    """What the evaluation grid prescribes for one stage.

    Attributes
    ----------
    key : str
        Identifier (``emergence``, ``structuration``… in the shipped grid).
    number : int
        Rank, 1 = least mature.
    name : str
        French stage name.
    section_title : str
        Title of the stage-specific block of the report.
    posture : str
        Evaluation posture (developmental, formative, summative...).
    signals : str
        What characterises the stage.
    tone : str
        How the report speaks.
    questions : tuple of str
        Evaluation questions.
    charts : tuple of str
        Chart ids (:data:`CHART_IDS`) of the stage block. The dimension profile is drawn for
        every stage in the « stade attribué » section, compared with the stage centroid, with
        reading bands only when ``bands`` is not empty.
    recommendations : tuple of str
        Typical recommendations, phrased as next steps.
    do_not : tuple of str
        What this report must not do.
    bands : tuple of Band
        Threshold reading allowed (empty: no pass/fail verdict at this stage).
    reading_intro : str
        How scores are read at this stage.
    band_legend : str
        Sentence the profile figure's caption adds when it shades the bands.
    """

    key: str
    number: int
    name: str
    section_title: str
    posture: str
    signals: str
    tone: str
    questions: tuple[str, ...]
    charts: tuple[str, ...]
    recommendations: tuple[str, ...]
    do_not: tuple[str, ...]
    bands: tuple[Band, ...]
    reading_intro: str
    band_legend: str = ""

    @property
    def allows_verdicts(self) -> bool:
        """Whether threshold verdicts (force / à discuter / préoccupation) may be shown."""
        return bool(self.bands)

    def to_record(self) -> dict[str, Any]:
        """The stage entry as JSON-compatible values: what a report context carries."""
        return {
            "key": self.key,
            "number": self.number,
            "name": self.name,
            "section_title": self.section_title,
            "posture": self.posture,
            "signals": self.signals,
            "tone": self.tone,
            "questions": list(self.questions),
            "charts": list(self.charts),
            "recommendations": list(self.recommendations),
            "do_not": list(self.do_not),
            "bands": [band.to_record() for band in self.bands],
            "band_legend": self.band_legend,
            "reading_intro": self.reading_intro,
        }


@dataclass(frozen=True)
class EvaluationGrid:
    """A loaded, validated evaluation grid (immutable). Build it with :func:`load_grid`.

    Attributes
    ----------
    name : str
        Title of the grid.
    stages : tuple of StageGrid
        Stages, least mature first.
    common_sections : tuple of str
        Sections every report has, in order.
    band_sets : mapping of str to tuple of Band
        Named threshold readings.
    source : str
        File name the grid was read from.
    sha256 : str
        Digest of the file's bytes.
    """

    name: str
    stages: tuple[StageGrid, ...]
    common_sections: tuple[str, ...] = ()
    band_sets: Mapping[str, tuple[Band, ...]] = field(default_factory=dict)
    source: str = ""
    sha256: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        """Stage keys, least mature first."""
        return tuple(s.key for s in self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def __iter__(self) -> Iterator[StageGrid]:
        return iter(self.stages)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def stage(self, key: str) -> StageGrid:
        """The entry of a stage key.

        Raises
        ------
        GridError
            For a key the grid does not have.
        """
        for entry in self.stages:
            if entry.key == key:
                return entry
        raise GridError(
            f"evaluation grid {self.source or self.name}: no stage {key!r} "
            f"(stages: {', '.join(self.keys)})"
        )

    def stage_key(self, stage: int, n_stages: int, stage_label: str = "") -> str:
        """Map a study stage (0-based, ``n_stages`` stages) to the key of a grid stage.

        The label is matched first (a study stage named ``"Consolidation / maturité"`` follows
        the grid stage keyed or named ``consolidation``); otherwise the rank is mapped
        proportionally onto the grid's stages, rounding down so that a territory is never
        judged with a later stage's grid than its rank supports. Works for any number of
        stages on either side.

        Parameters
        ----------
        stage : int
            0 = least mature.
        n_stages : int
            Number of stages of the study.
        stage_label : str, optional
            The study's stage name.

        Returns
        -------
        str
            One of :attr:`keys`.
        """
        label = normalise_text(stage_label)
        if label:
            for entry in self.stages:
                if label.startswith(entry.key) or label.startswith(normalise_text(entry.name)):
                    return entry.key
        last = len(self.stages) - 1
        if n_stages <= 1:
            return self.stages[0].key
        rank = int(stage * last // (n_stages - 1))
        return self.stages[max(0, min(rank, last))].key

    def stage_for(self, stage: int, n_stages: int, stage_label: str = "") -> StageGrid:
        """The grid entry a study stage follows (see :meth:`stage_key`)."""
        return self.stage(self.stage_key(stage, n_stages, stage_label))


def band_for(score: float | None, bands: Sequence[Band]) -> Band | None:
    """The reading band of a dimension score, or None when there is no band (no verdict allowed).

    Parameters
    ----------
    score : float or None
        Score on the study's dimension-score scale (the scale of the maturity items).
    bands : sequence of Band
        A stage's bands (:attr:`StageGrid.bands`), ascending.
    """
    if score is None or not bands or score != score:
        return None
    for band in bands:
        if band.low <= score < band.high:
            return band
    return bands[-1] if score >= bands[-1].high else bands[0]


# --------------------------------------------------------------------------- loading
def default_grid_path() -> Path:
    """Path of the evaluation grid shipped with the package."""
    return Path(str(resources.files("evalterritoire") / "data" / "evaluation_grid.yaml"))


def _read_yaml(path: Path, what: str, error: type[EvalTerritoireError]) -> tuple[Any, str]:
    """Parsed content and SHA-256 of a small YAML data file, or one clear ``error``.

    Read by :func:`evalterritoire.codebook.safeyaml.load_yaml_file`: at most
    :data:`MAX_FILE_BYTES`, no aliases, bounded depth.
    """
    return load_yaml_file(path, what, error, max_bytes=MAX_FILE_BYTES, allow_aliases=False)


def load_grid(path: str | Path | None = None) -> EvaluationGrid:
    """Load and validate an evaluation grid.

    Parameters
    ----------
    path : str or Path, optional
        YAML file. ``None`` or ``"default"`` loads the grid shipped with the package.

    Returns
    -------
    EvaluationGrid
        The validated grid.

    Raises
    ------
    GridError
        When the file is missing, is not YAML, or an entry is malformed (the message names the
        file, the key and the problem).
    """
    if path is None or str(path) == "default":
        path = default_grid_path()
    path = Path(path)
    raw, digest = _read_yaml(path, "evaluation grid", GridError)
    return _parse_grid(raw, path.name, digest)


# --------------------------------------------------------------------------- validation
class _Reader:
    """Typed access to the entries of one data file; errors name the file and the key.

    Shared with the report spec's loader (``what`` and ``error`` name the kind of file).
    """

    def __init__(
        self,
        source: str,
        *,
        what: str = "evaluation grid",
        error: type[EvalTerritoireError] = GridError,
    ) -> None:
        self.source = source
        self.what = what
        self.error = error

    def fail(self, where: str, problem: str) -> EvalTerritoireError:
        return self.error(f"{self.what} {self.source}: {where}: {problem}")

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def text(self, entry: Mapping[str, Any], key: str, where: str) -> str:
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            got = "nothing" if value is None else f"{type(value).__name__} {value!r}"
            raise self.fail(f"{where}.{key}", f"expected a non-empty text, got {got}")
        return value.strip()

    def texts(self, entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        value = entry.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail(f"{where}.{key}", "expected a non-empty list of texts")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{where}.{key}[{i}]", f"expected a non-empty text, got {item!r}")
            out.append(item.strip())
        return tuple(out)

    def number(self, entry: Mapping[str, Any], key: str, where: str) -> float:
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise self.fail(f"{where}.{key}", f"expected a number, got {value!r}")
        return float(value)

    def unknown(self, entry: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
        extra = sorted(str(k) for k in entry if k not in allowed)
        if extra:
            raise self.fail(
                where, f"unknown key(s) {', '.join(extra)} (allowed: {', '.join(allowed)})"
            )


_GRID_KEYS = ("name", "common_sections", "band_sets", "stages")
_BAND_SET_KEYS = ("legend", "bands")
_BAND_KEYS = ("key", "label", "low", "high", "colour")
_STAGE_KEYS = (
    "key", "number", "name", "section_title", "posture", "signals", "tone", "reading_intro",
    "bands", "charts", "questions", "recommendations", "do_not",
)  # fmt: skip
_STAGE_TEXTS = ("name", "section_title", "posture", "signals", "tone", "reading_intro")
_STAGE_LISTS = ("questions", "recommendations", "do_not")


def _parse_grid(raw: Any, source: str, digest: str) -> EvaluationGrid:
    read = _Reader(source)
    top = read.mapping(raw, "top level")
    read.unknown(top, _GRID_KEYS, "top level")
    band_sets = _parse_band_sets(read, top.get("band_sets") or {})
    stages = _parse_stages(read, top.get("stages"), band_sets)
    return EvaluationGrid(
        name=read.text(top, "name", "top level"),
        stages=stages,
        common_sections=read.texts(top, "common_sections", "top level"),
        band_sets={name: bands for name, (bands, _) in band_sets.items()},
        source=source,
        sha256=digest,
    )


def _parse_band_sets(read: _Reader, raw: Any) -> dict[str, tuple[tuple[Band, ...], str]]:
    """Band set name → (bands, legend)."""
    out = {}
    for name, entry in read.mapping(raw, "band_sets").items():
        where = f"band_sets.{name}"
        if not _KEY.fullmatch(str(name)) or name == _NO_BANDS:
            raise read.fail(where, "a band set name is lower-case letters, digits and _")
        entry = read.mapping(entry, where)
        read.unknown(entry, _BAND_SET_KEYS, where)
        bands = _parse_bands(read, entry.get("bands"), f"{where}.bands")
        legend = entry.get("legend")
        if legend is None:
            legend = (
                "Bandes : "
                + ", ".join(
                    f"{b.label.lower()} ({b.low:g} à {b.high:g})".replace(".", ",") for b in bands
                )
                + "."
            )
        elif not isinstance(legend, str):
            raise read.fail(f"{where}.legend", f"expected a text, got {legend!r}")
        out[str(name)] = (bands, legend.strip())
    return out


def _parse_bands(read: _Reader, raw: Any, where: str) -> tuple[Band, ...]:
    if not isinstance(raw, list) or not raw:
        raise read.fail(where, "expected a non-empty list of bands")
    bands: list[Band] = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        entry = read.mapping(entry, at)
        read.unknown(entry, _BAND_KEYS, at)
        key = read.text(entry, "key", at)
        low, high = read.number(entry, "low", at), read.number(entry, "high", at)
        if not low < high:
            raise read.fail(at, f"low ({low:g}) must be below high ({high:g})")
        if bands and low != bands[-1].high:
            raise read.fail(
                at, f"bands must be ascending and contiguous: low {low:g} does not continue "
                f"the previous band's high {bands[-1].high:g}"
            )  # fmt: skip
        if any(b.key == key for b in bands):
            raise read.fail(f"{at}.key", f"duplicate band key {key!r}")
        colour = entry.get("colour", "")
        if not isinstance(colour, str):
            raise read.fail(f"{at}.colour", f"expected a colour text, got {colour!r}")
        bands.append(Band(key, read.text(entry, "label", at), low, high, colour.strip()))
    return tuple(bands)


def _parse_stages(
    read: _Reader, raw: Any, band_sets: Mapping[str, tuple[tuple[Band, ...], str]]
) -> tuple[StageGrid, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise read.fail("stages", "expected a list of at least two stages, least mature first")
    stages = [_parse_stage(read, entry, i, band_sets) for i, entry in enumerate(raw)]
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        if stage.key in seen:
            raise read.fail(f"stages[{i}].key", f"duplicate stage key {stage.key!r}")
        seen.add(stage.key)
    return tuple(stages)


def _parse_stage(
    read: _Reader, raw: Any, index: int, band_sets: Mapping[str, tuple[tuple[Band, ...], str]]
) -> StageGrid:
    where = f"stages[{index}]"
    entry = read.mapping(raw, where)
    read.unknown(entry, _STAGE_KEYS, where)
    key = read.text(entry, "key", where)
    where = f"stages.{key}"
    if not _KEY.fullmatch(key):
        raise read.fail(f"{where}.key", "a stage key is lower-case letters, digits and _")
    number = entry.get("number", index + 1)
    if number != index + 1 or isinstance(number, bool):
        raise read.fail(f"{where}.number", f"expected {index + 1} (its rank), got {number!r}")
    charts = read.texts(entry, "charts", where) if entry.get("charts") != [] else ()
    unknown = [c for c in charts if c not in CHART_IDS]
    if unknown:
        raise read.fail(
            f"{where}.charts",
            f"unknown chart(s) {', '.join(unknown)} (charts: {', '.join(CHART_IDS)})",
        )
    bands, legend = _stage_bands(read, entry.get("bands"), f"{where}.bands", band_sets)
    texts = {k: read.text(entry, k, where) for k in _STAGE_TEXTS}
    lists = {k: read.texts(entry, k, where) for k in _STAGE_LISTS}
    return StageGrid(
        key=key, number=index + 1, **texts, **lists, charts=charts, bands=bands, band_legend=legend
    )


def _stage_bands(
    read: _Reader,
    raw: Any,
    where: str,
    band_sets: Mapping[str, tuple[tuple[Band, ...], str]],
) -> tuple[tuple[Band, ...], str]:
    if raw is None or raw == _NO_BANDS:
        return (), ""
    if not isinstance(raw, str) or raw not in band_sets:
        known = ", ".join([*band_sets, _NO_BANDS])
        raise read.fail(where, f"unknown band set {raw!r} (band sets: {known})")
    return band_sets[raw]
