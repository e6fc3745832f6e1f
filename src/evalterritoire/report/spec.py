"""The report spec: which codebook items feed which report section, loaded from data.

The evaluation grid (:mod:`evalterritoire.report.grid`) says what each stage's report asks and
may conclude, without naming the questionnaire; the report spec (``data/report_spec.yaml`` for
the shipped codebook, or a study's own file) says which items of the instrument answer it: the
item tables of each section, agreement distributions, milestones, the by-type comparison, the
fragility items, national benchmarks, the dimensions' short labels and each grid stage's
indicators. Columns playing a *role* (territory, weight, respondent type…) are not named here:
they come from the codebook's roles.

Owns :class:`ReportSpec` and :func:`load_report_spec`, whose validation refuses a malformed
entry or an item the codebook lacks with a :class:`~evalterritoire.errors.ReportSpecError`
naming the file, the key and the item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from evalterritoire.codebook import Codebook
from evalterritoire.errors import ReportSpecError
from evalterritoire.report.grid import EvaluationGrid, _read_yaml, _Reader
from evalterritoire.report.phrases import (
    SLOTS,
    NarrativeSpec,
    check_against_grid,
    check_slots,
    parse_narrative,
)

__all__ = ["ITEM_SECTIONS", "ReportSpec", "default_report_spec_path", "load_report_spec"]

#: Sections shown as item tables (``items:`` of the spec).
ITEM_SECTIONS = ("partnership", "dynamic", "results", "essaimage", "headline")
#: Items compared by respondent type (``by_type:``).
BY_TYPE_KEYS = ("benefit", "burden", "trust")
#: Identity-card figures (``identity:``).
IDENTITY_KEYS = ("start_year", "n_organisations")
#: Item types an item table, the identity card or the by-type comparison can show.
SCORED_TYPES = frozenset({"likert", "rating", "binary", "ordinal", "count", "decimal"})
_DOMAIN = "{domain}"
_TOP_KEYS = (
    "identity", "status", "composition", "barriers", "items", "agreement", "milestones",
    "by_type", "fragilities", "benchmarks", "dimension_labels", "stages", "narrative",
)  # fmt: skip


@dataclass(frozen=True)
class ReportSpec:
    """A loaded report spec, checked against a codebook (immutable).

    Build it with :func:`load_report_spec`.

    Attributes
    ----------
    identity : mapping of str to str
        Identity-card figure (``start_year``, ``n_organisations``) → item.
    status, composition, barriers : str or None
        The item shown level by level; the multi-select items of the actors involved and of
        the barriers cited.
    items : mapping of str to tuple of str
        Item-table section (:data:`ITEM_SECTIONS`) → items.
    agreement, milestones : tuple of str
        Agreement-distribution items; yes/no milestone items.
    by_type : mapping of str to str
        ``benefit``, ``burden``, ``trust`` → item compared by respondent type.
    fragility_priority, fragility_alliances : str
        Item id patterns, ``{domain}`` standing for a fragility domain key.
    alliance_levels : tuple of str
        Codes of the alliances scale counted as a strong impact.
    benchmarks : mapping of str to (float, str)
        Item → national reference share and its label.
    dimension_labels : mapping of str to str
        Maturity dimension → short chart label.
    stages : mapping of str to tuple of str
        Grid stage key → the indicators its block looks at first.
    narrative : NarrativeSpec
        What the written parts of the reports are built from (answers of the evaluative
        questions, targets of the recommendations, sentence templates, colophon).
    source, sha256 : str
        File name and digest of its bytes.
    """

    identity: Mapping[str, str] = field(default_factory=dict)
    status: str | None = None
    composition: str | None = None
    barriers: str | None = None
    items: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    agreement: tuple[str, ...] = ()
    milestones: tuple[str, ...] = ()
    by_type: Mapping[str, str] = field(default_factory=dict)
    fragility_priority: str = ""
    fragility_alliances: str = ""
    alliance_levels: tuple[str, ...] = ()
    benchmarks: Mapping[str, tuple[float, str]] = field(default_factory=dict)
    dimension_labels: Mapping[str, str] = field(default_factory=dict)
    stages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    narrative: NarrativeSpec = field(default_factory=NarrativeSpec)
    source: str = ""
    sha256: str = ""

    def section(self, name: str) -> tuple[str, ...]:
        """The items of an item-table section (empty when the spec gives none)."""
        return self.items.get(name, ())

    def indicators(self, stage_key: str) -> tuple[str, ...]:
        """The indicators of a grid stage's block (empty when the spec gives none)."""
        return self.stages.get(stage_key, ())

    def priority_item(self, domain: str) -> str | None:
        """Id of a fragility domain's perceived-priority item, or None."""
        return self.fragility_priority.replace(_DOMAIN, domain) or None

    def alliance_item(self, domain: str) -> str | None:
        """Id of a fragility domain's impact-of-alliances item, or None."""
        return self.fragility_alliances.replace(_DOMAIN, domain) or None

    def dimension_label(self, dimension: str, default: str) -> str:
        """Short chart label of a maturity dimension (``default`` when the spec has none)."""
        return self.dimension_labels.get(dimension, default)

    def check_grid(self, grid: EvaluationGrid) -> None:
        """Refuse stage blocks for stages the evaluation grid does not have.

        Raises
        ------
        ReportSpecError
            Naming the spec, the stage key and the grid's stages.
        """
        unknown = [key for key in self.stages if key not in grid]
        if unknown:
            raise ReportSpecError(
                f"report spec {self.source}: stages: {', '.join(map(repr, unknown))} "
                f"not in the evaluation grid {grid.source or grid.name} (stages: "
                f"{', '.join(grid.keys)}); give the study a report spec with one block per "
                "stage of its grid"
            )
        check_against_grid(
            self.narrative,
            grid,
            lambda where, problem: ReportSpecError(
                f"report spec {self.source}: {where}: {problem}"
            ),
        )


def default_report_spec_path() -> Path:
    """Path of the report spec shipped with the package (for the shipped codebook)."""
    return Path(str(resources.files("evalterritoire") / "data" / "report_spec.yaml"))


def load_report_spec(path: str | Path | None, codebook: Codebook) -> ReportSpec:
    """Load a report spec and check every item it names against the codebook.

    Parameters
    ----------
    path : str or Path or None
        YAML file. ``None`` or ``"default"`` loads the spec shipped with the package.
    codebook : Codebook
        The study's codebook.

    Returns
    -------
    ReportSpec
        The validated spec.

    Raises
    ------
    ReportSpecError
        When the file is missing, is not YAML, an entry is malformed, or an item is not in the
        codebook or has the wrong type (the message names the file, the key and the item).
    """
    if path is None or str(path) == "default":
        path = default_report_spec_path()
    path = Path(path)
    raw, digest = _read_yaml(path, "report spec", ReportSpecError)
    read = _SpecReader(path.name, codebook)
    top = read.mapping(raw if raw is not None else {}, "top level")
    read.unknown(top, _TOP_KEYS, "top level")
    return ReportSpec(
        **_parse_identity_and_sections(read, top),
        **_parse_fragilities(read, top.get("fragilities")),
        benchmarks=_parse_benchmarks(read, top.get("benchmarks")),
        dimension_labels=_parse_dimension_labels(read, top.get("dimension_labels")),
        stages=_parse_stages(read, top.get("stages")),
        narrative=_parse_narrative(read, top.get("narrative")),
        source=path.name,
        sha256=digest,
    )


# --------------------------------------------------------------------------- validation
class _SpecReader(_Reader):
    """The grid's typed reader, raising ReportSpecError, plus checks against a codebook."""

    def __init__(self, source: str, codebook: Codebook) -> None:
        super().__init__(source, what="report spec", error=ReportSpecError)
        self.codebook = codebook

    def item(self, value: Any, where: str, types: Sequence[str] = ()) -> str:
        """An item id of the codebook (of one of ``types`` when given)."""
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected an item id, got {value!r}")
        if value not in self.codebook:
            raise self.fail(
                where, f"unknown item {value!r} (not in codebook {self.codebook.name!r})"
            )
        kind = self.codebook[value].type
        if types and kind not in types:
            raise self.fail(
                where, f"item {value!r} is of type {kind}, expected {' or '.join(sorted(types))}"
            )
        return value

    def optional_item(self, entry: Mapping[str, Any], key: str, types: Sequence[str]):
        value = entry.get(key)
        return None if value is None else self.item(value, key, types)

    def items(self, value: Any, where: str, types: Sequence[str] = ()) -> tuple[str, ...]:
        """A list of codebook item ids."""
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list of item ids, got {type(value).__name__}")
        return tuple(self.item(v, f"{where}[{i}]", types) for i, v in enumerate(value))


def _parse_identity_and_sections(read: _SpecReader, top: Mapping[str, Any]) -> dict[str, Any]:
    identity = read.mapping(top.get("identity") or {}, "identity")
    read.unknown(identity, IDENTITY_KEYS, "identity")
    items = read.mapping(top.get("items") or {}, "items")
    read.unknown(items, ITEM_SECTIONS, "items")
    by_type = read.mapping(top.get("by_type") or {}, "by_type")
    read.unknown(by_type, BY_TYPE_KEYS, "by_type")
    return {
        "identity": {k: read.item(v, f"identity.{k}", SCORED_TYPES) for k, v in identity.items()},
        "status": read.optional_item(top, "status", ("ordinal", "categorical", "likert")),
        "composition": read.optional_item(top, "composition", ("multi_select",)),
        "barriers": read.optional_item(top, "barriers", ("multi_select",)),
        "items": {k: read.items(v, f"items.{k}", SCORED_TYPES) for k, v in items.items()},
        "agreement": read.items(top.get("agreement"), "agreement", ("likert",)),
        "milestones": read.items(top.get("milestones"), "milestones", ("binary",)),
        "by_type": {k: read.item(v, f"by_type.{k}", SCORED_TYPES) for k, v in by_type.items()},
    }


def _parse_fragilities(read: _SpecReader, raw: Any) -> dict[str, Any]:
    """Item patterns of the fragility domains, each resolved for every domain of the codebook."""
    if raw is None:
        return {}
    entry = read.mapping(raw, "fragilities")
    read.unknown(entry, ("priority", "alliances", "alliance_levels"), "fragilities")
    patterns = {}
    for key, types in (("priority", ("rating", "likert", "decimal")), ("alliances", ("likert",))):
        if key == "alliances" and entry.get(key) is None:
            if entry.get("alliance_levels") is not None:
                raise read.fail("fragilities.alliance_levels", "given without an alliances item")
            continue
        pattern = read.text(entry, key, "fragilities")
        if _DOMAIN not in pattern:
            raise read.fail(f"fragilities.{key}", f"the pattern {pattern!r} lacks {_DOMAIN}")
        for domain in read.codebook.fragility_domains:
            read.item(pattern.replace(_DOMAIN, domain), f"fragilities.{key} ({domain})", types)
        patterns[key] = pattern
    out = {"fragility_priority": patterns["priority"]}
    if "alliances" in patterns:
        out["fragility_alliances"] = patterns["alliances"]
        out["alliance_levels"] = _alliance_levels(read, entry, patterns["alliances"])
    return out


def _alliance_levels(read: _SpecReader, entry: Mapping, pattern: str) -> tuple[str, ...]:
    """Codes of the alliances scale counted as a strong impact (checked against the scale)."""
    levels = entry.get("alliance_levels")
    if not isinstance(levels, list) or not levels:
        raise read.fail("fragilities.alliance_levels", "expected a non-empty list of codes")
    first = pattern.replace(_DOMAIN, next(iter(read.codebook.fragility_domains), ""))
    codes = set(read.codebook.value_labels(first)) if first in read.codebook else set()
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int) or (codes and level not in codes):
            raise read.fail(
                "fragilities.alliance_levels",
                f"{level!r} is not a code of the alliances scale ({sorted(codes)})",
            )
    return tuple(str(level) for level in levels)


def _parse_benchmarks(read: _SpecReader, raw: Any) -> dict[str, tuple[float, str]]:
    out = {}
    for item, entry in read.mapping(raw or {}, "benchmarks").items():
        where = f"benchmarks.{item}"
        read.item(item, where, ("binary",))
        entry = read.mapping(entry, where)
        read.unknown(entry, ("value", "label"), where)
        value = read.number(entry, "value", where)
        if not 0.0 <= value <= 1.0:
            raise read.fail(f"{where}.value", f"a share is between 0 and 1, got {value:g}")
        out[str(item)] = (value, read.text(entry, "label", where))
    return out


def _parse_dimension_labels(read: _SpecReader, raw: Any) -> dict[str, str]:
    labels = read.mapping(raw or {}, "dimension_labels")
    for dim in labels:
        if dim not in read.codebook.dimensions:
            raise read.fail(
                f"dimension_labels.{dim}",
                f"unknown dimension (codebook dimensions: {', '.join(read.codebook.dimensions)})",
            )
    return {str(dim): read.text(labels, dim, "dimension_labels") for dim in labels}


def _parse_stages(read: _SpecReader, raw: Any) -> dict[str, tuple[str, ...]]:
    out = {}
    for key, entry in read.mapping(raw or {}, "stages").items():
        where = f"stages.{key}"
        entry = read.mapping(entry, where)
        read.unknown(entry, ("indicators",), where)
        out[str(key)] = read.items(entry.get("indicators"), f"{where}.indicators")
    return out


def _parse_narrative(read: _SpecReader, raw: Any) -> NarrativeSpec:
    narrative = parse_narrative(read, raw, tuple(read.codebook.dimensions))
    check_slots(narrative.sentences, SLOTS, read.fail)
    return narrative
