"""Comparing two versions of a codebook: ``evalterritoire codebook diff OLD NEW``.

An observatory changes its questionnaire a little every year. :func:`diff_codebooks` lists,
item by item, what changed between two codebooks:

* ``added`` / ``removed`` items (by id);
* ``wording``: the French label changed (compared after normalising case, accents, spaces and
  apostrophes, so a typographic fix is not a change);
* ``scale``: the item's type, its scale's points and labels, its bounds (``min`` / ``max``) or
  its reverse coding changed;
* ``options``: the option keys or labels of a categorical or multi-select item changed;
* ``special_codes``: the special codes the item accepts changed.

A change of wording, scale or options breaks the comparability of an item across waves: the
study refuses to draw its trend until ``study.toml`` acknowledges it
(:func:`comparability_breaks`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from evalterritoire.codebook.model import Codebook, Variable
from evalterritoire.codebook.text import normalise_text

__all__ = ["BREAKING_KINDS", "CodebookDiff", "ItemChange", "comparability_breaks", "diff_codebooks"]

#: Kinds of change that make an item's answers incomparable across the two versions.
BREAKING_KINDS = frozenset({"wording", "scale", "options"})


@dataclass(frozen=True)
class ItemChange:
    """One change of one item.

    Attributes
    ----------
    item : str
        Variable id.
    kind : str
        ``added``, ``removed``, ``wording``, ``scale``, ``options`` or ``special_codes``.
    old, new : str
        What the item had and has (in words; empty for an added or removed item).
    """

    item: str
    kind: str
    old: str = ""
    new: str = ""

    def describe(self) -> str:
        """One line in words."""
        if self.kind in {"added", "removed"}:
            return f"{self.item}: {self.kind} ({self.old or self.new})"
        return f"{self.item}: {self.kind} changed: {self.old} → {self.new}"


@dataclass(frozen=True)
class CodebookDiff:
    """The changes between two codebooks (empty when every item is the same)."""

    old: str
    new: str
    changes: tuple[ItemChange, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __iter__(self) -> Iterator[ItemChange]:
        return iter(self.changes)

    def breaking(self) -> dict[str, tuple[ItemChange, ...]]:
        """Items present in both versions whose answers are no longer comparable."""
        out: dict[str, list[ItemChange]] = {}
        for change in self.changes:
            if change.kind in BREAKING_KINDS:
                out.setdefault(change.item, []).append(change)
        return {k: tuple(v) for k, v in sorted(out.items())}

    def describe(self) -> str:
        """The changes, one per line, for the command line."""
        if not self.changes:
            return f"{self.old} → {self.new}: no item changed"
        lines = [f"{self.old} → {self.new}: {len(self.changes)} change(s)"]
        lines += [f"  {c.describe()}" for c in self.changes]
        return "\n".join(lines)


def _scale_words(var: Variable, codebook: Codebook) -> str:
    """The item's measurement in words: type, scale points, bounds, reverse coding."""
    parts = [var.type]
    scale = codebook.scales.get(var.scale) if var.scale else None
    if scale is not None:
        if scale.values:
            parts.append(
                "{"
                + ", ".join(f"{k}: {normalise_text(v)}" for k, v in sorted(scale.values.items()))
                + "}"
            )
        else:
            lo = "" if scale.min is None else f"{scale.min:g}"
            hi = "" if scale.max is None else f"{scale.max:g}"
            parts.append(f"[{lo}, {hi}]" if lo or hi else scale.type)
    if var.min is not None or var.max is not None:
        lo = "" if var.min is None else f"{var.min:g}"
        hi = "" if var.max is None else f"{var.max:g}"
        parts.append(f"range [{lo}, {hi}]")
    if var.reverse_coded:
        parts.append("reverse coded")
    return " ".join(parts)


def _options_words(var: Variable) -> str:
    return ", ".join(f"{k}: {normalise_text(v)}" for k, v in sorted(var.options.items()))


def _special_words(var: Variable, codebook: Codebook) -> str:
    codes = [codebook.special_codes[k] for k in var.special_codes if k in codebook.special_codes]
    return ", ".join(sorted(f"{sc.code} ({sc.kind})" for sc in codes)) or "none"


def _item_changes(old: Variable, new: Variable, a: Codebook, b: Codebook) -> list[ItemChange]:
    out = []
    if normalise_text(old.label_fr) != normalise_text(new.label_fr):
        out.append(ItemChange(old.id, "wording", f"« {old.label_fr} »", f"« {new.label_fr} »"))
    for kind, before, after in (
        ("scale", _scale_words(old, a), _scale_words(new, b)),
        ("options", _options_words(old), _options_words(new)),
        ("special_codes", _special_words(old, a), _special_words(new, b)),
    ):
        if before != after:
            out.append(ItemChange(old.id, kind, before or "none", after or "none"))
    return out


def diff_codebooks(old: Codebook, new: Codebook) -> CodebookDiff:
    """The item changes from ``old`` to ``new`` (module docstring), sorted by item.

    Parameters
    ----------
    old, new : Codebook
        Two versions of a codebook.

    Returns
    -------
    CodebookDiff
        Added, removed and changed items; false when nothing changed.
    """
    before = {v.id: v for v in old.variables}
    after = {v.id: v for v in new.variables}
    changes: list[ItemChange] = []
    for vid in sorted(set(before) | set(after)):
        if vid not in after:
            changes.append(ItemChange(vid, "removed", old=f"« {before[vid].label_fr} »"))
        elif vid not in before:
            changes.append(ItemChange(vid, "added", new=f"« {after[vid].label_fr} »"))
        else:
            changes += _item_changes(before[vid], after[vid], old, new)
    label = lambda cb: f"{cb.name} {cb.version}".strip()  # noqa: E731
    return CodebookDiff(label(old), label(new), tuple(changes))


def comparability_breaks(
    old: Codebook, new: Codebook, acknowledged: frozenset[str] | set[str] = frozenset()
) -> dict[str, tuple[ItemChange, ...]]:
    """Items whose trend across the two versions must not be drawn (not acknowledged).

    Parameters
    ----------
    old, new : Codebook
        The codebooks of two waves.
    acknowledged : set of str
        Item ids whose change the study acknowledges (``study.toml``).

    Returns
    -------
    dict
        Item id → its breaking changes, for the items not acknowledged.
    """
    breaks = diff_codebooks(old, new).breaking()
    return {k: v for k, v in breaks.items() if k not in acknowledged}
