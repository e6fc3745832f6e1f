"""Evaluator parameters of a report template: declared, checked, applied and shown.

A template declares its parameters in its ``parameters`` cell (papermill's convention): one
``name: type = default  # help`` line each. :func:`declared_parameters` reads that declaration
(:func:`papermill.inspect_notebook`) and :func:`check_parameters` holds the ``-p name=value``
of the command line against it: an unknown name, a value of the wrong type (``int``, ``float``,
``bool``, ``str``) or a name that evalterritoire sets itself is one clear
:class:`~evalterritoire.errors.StudyConfigError` (exit status 2) naming the parameters the
template accepts; command-line text is converted to the declared type.

Inside the template, :func:`apply_parameters` returns the report context the evaluator asked
for (a new frozen context; nothing is recomputed from the data):

* ``suppression_threshold`` — values resting on fewer answers than this are not shown (status
  ``suppressed``); it can only be stricter than the study's own rule;
* ``band_thresholds`` — the cut points of the reading bands (``"3;4"``), applied only where the
  stage's grid entry has reading bands (the other stages refuse banded verdicts);
* ``stage_override`` — a stage (name or grid key) the evaluator retains instead of the computed
  one; the report follows that stage's grid entry and says so (:func:`render_parameter_notes`);
* ``equal_type_weight`` — « regards croisés »: the by-type table gains a row giving each actor
  type the same weight;
* ``comparison_group`` — territory codes (``"200039470;200040715"``) of the wave that replace
  the five statistically similar territories as the report's comparison group: the profile's
  comparison column, the « L'essentiel » sentence and the annex's list use their mean scores
  (read from their contexts, beside this one's; nothing recomputed from the data);
* ``observatory_name`` and ``observatory_logo`` — shown on the cover (:func:`render_observatory`;
  the logo, PNG, JPEG or SVG up to 1 Mo, is embedded in the page).

:func:`render_parameter_notes` lists, at the top of the report, every parameter that changed it.
The written parts (« L'essentiel », the answers to the questions, the reasons of the
recommendations, the stage-change explanation) are written at build time for the computed stage
and the study's rule: under an override or a stricter threshold only what stays true is kept
(:func:`_written_parts`), so a value the evaluator masks is masked everywhere.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from dataclasses import fields, replace
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalterritoire.errors import RenderError, StudyConfigError

if TYPE_CHECKING:
    from evalterritoire.report.context import ReportContext

__all__ = [
    "AUTOMATIC_PARAMETERS",
    "apply_parameters",
    "check_parameters",
    "declared_parameters",
    "render_observatory",
    "render_parameter_notes",
]

#: Parameters evalterritoire sets itself for every report.
AUTOMATIC_PARAMETERS = ("territory", "wave", "context_path", "grid_path")
_TYPES: Mapping[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
#: Context fields the evaluator's threshold never walks (no figure of the territory in them).
_UNMASKED_FIELDS = frozenset({"identity", "quality", "stage_grid", "colophon", "glossary"})
#: The context fields a chosen comparison group is computed from (after the other parameters).
_GROUP_INPUTS = ("profile", "essentiel", "stage_label", "stage", "stage_grid")
#: The keys of an estimate record that carry its value.
_VALUE_KEYS = ("estimate", "score", "se", "ci_low", "ci_high", "nsp_share", "share")
#: Parent keys that mirror a nested record's value (``child key → parent key``).
_MIRRORS = {"nsp": "nsp_share", "alliance": "alliance_share"}
_LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_MAX_LOGO_BYTES = 1024 * 1024


def declared_parameters(template: str | Path) -> dict[str, dict[str, Any]]:
    """The parameters a template declares: name → ``{"type", "default", "help"}``.

    Parameters
    ----------
    template : str or Path
        A jupytext ``.py`` or ``.ipynb`` template.

    Returns
    -------
    dict
        In declaration order; ``type`` is the declared annotation (``int``, ``float``, ``bool``,
        ``str``) or ``None`` when the template gives none.
    """
    import papermill as pm

    from evalterritoire.render.notebook import build_notebook

    path = Path(template)
    if path.suffix == ".py":
        import tempfile

        import nbformat

        with tempfile.TemporaryDirectory(prefix="et-params-") as tmp:
            nb_path = Path(tmp) / f"{path.stem}.ipynb"
            nb_path.write_text(nbformat.writes(build_notebook(path)), encoding="utf-8")
            found = pm.inspect_notebook(str(nb_path))
    else:
        found = pm.inspect_notebook(str(path))
    return {
        name: {
            "type": spec.get("inferred_type_name")
            if spec.get("inferred_type_name") in _TYPES
            else None,
            "default": spec.get("default"),
            "help": spec.get("help", ""),
        }
        for name, spec in found.items()
    }


def _convert(name: str, value: Any, kind: str | None) -> Any:
    """A command-line value converted to its declared type, or a clear error."""
    if kind is None or not isinstance(value, str):
        target = _TYPES.get(kind or "")
        if target is None or (
            isinstance(value, target) and not (target is int and isinstance(value, bool))
        ):
            return value
        if target is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        raise StudyConfigError(f"-p {name}: expects {kind}, got {value!r}")
    text = value.strip()
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text.replace(",", "."))
        if kind == "bool":
            lowered = text.lower()
            if lowered in {"true", "1", "oui", "yes"}:
                return True
            if lowered in {"false", "0", "non", "no"}:
                return False
            raise ValueError
    except ValueError:
        raise StudyConfigError(f"-p {name}: expects {kind}, got {value!r}") from None
    return value


def check_parameters(template: str | Path, given: Mapping[str, Any]) -> dict[str, Any]:
    """Hold the evaluator's parameters against the template's declaration.

    Parameters
    ----------
    template : str or Path
        The report template.
    given : mapping
        ``name → value`` (command-line text or Python literals).

    Returns
    -------
    dict
        The values converted to their declared types.

    Raises
    ------
    StudyConfigError
        For an unknown name, a value of the wrong type, or a parameter evalterritoire sets
        (exit status 2).
    """
    declared = declared_parameters(template)
    accepted = [n for n in declared if n not in AUTOMATIC_PARAMETERS]
    checked: dict[str, Any] = {}
    for name, value in given.items():
        if name in AUTOMATIC_PARAMETERS:
            raise StudyConfigError(f"-p {name}=… is set by evalterritoire itself")
        if name not in declared:
            raise StudyConfigError(
                f"unknown report parameter {name!r} for template {Path(template).name}; "
                f"accepted: {', '.join(accepted) or '(none)'}"
            )
        checked[name] = _convert(name, value, declared[name]["type"])
    return checked


# --------------------------------------------------------------------------- applied in a report
def _is_record(value: Any) -> bool:
    return isinstance(value, Mapping) and "status" in value and "interval" in value


def _mask(value: Any, threshold: int) -> tuple[Any, int]:
    """``value`` with every estimate record on fewer than ``threshold`` answers suppressed.

    Walks mappings and sequences; a record's value keys become None and its status
    ``suppressed``; what a parent mirrors of a masked child (``X`` of ``X__record``,
    ``nsp_share``, ``alliance_share``, the ``shares`` of a distribution) is masked with it.
    Returns the new value and the number of records newly masked.
    """
    if isinstance(value, list | tuple):
        pairs = [_mask(v, threshold) for v in value]
        return type(value)(v for v, _ in pairs), sum(k for _, k in pairs)
    if not isinstance(value, Mapping):
        return value, 0
    out, hidden, masked_children = {}, 0, []
    for key, child in value.items():
        out[key], k = _mask(child, threshold)
        hidden += k
        if k and (_is_record(child) or key == "records"):
            masked_children.append(key)
    for key in masked_children:
        if key.endswith("__record"):
            out[key[: -len("__record")]] = None
        elif key in _MIRRORS and _MIRRORS[key] in out:
            out[_MIRRORS[key]] = None
        elif key == "records":  # one share hidden gives the others away
            out["shares"] = dict.fromkeys(out.get("shares") or {})
            out["status"] = "suppressed"
    n = _num_or_none(out.get("n"))
    if _is_record(out) and out.get("status") != "suppressed" and n is not None and n < threshold:
        out.update({k: None for k in _VALUE_KEYS if k in out}, status="suppressed")
        hidden += 1
    return out, hidden


def _num_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bands(stage_grid: Mapping[str, Any], thresholds: str) -> dict[str, Any]:
    bands = [dict(b) for b in stage_grid.get("bands", ())]
    try:
        cuts = [float(t.strip().replace(",", ".")) for t in re.split(r"[;/ ]+", thresholds.strip())]
    except ValueError:
        raise RenderError(
            f"band_thresholds {thresholds!r}: expected numbers separated by ';'"
        ) from None
    lo, hi = bands[0]["low"], bands[-1]["high"]
    edges = [lo, *cuts, hi]
    if len(cuts) != len(bands) - 1 or any(a >= b for a, b in pairwise(edges)):
        raise RenderError(
            f"band_thresholds {thresholds!r}: expected {len(bands) - 1} increasing cut point(s) "
            f"strictly between {lo:g} and {hi:g}"
        )
    for band, low, high in zip(bands, edges, edges[1:], strict=False):
        band.update(low=low, high=high)
    return {**stage_grid, "bands": bands}


def _override_stage(ctx: ReportContext, wanted: str, grid_path: str) -> dict[str, Any]:
    from evalterritoire.report.grid import load_grid

    grid = load_grid(grid_path or None)
    names = list(ctx.stage_names)
    entries = list(grid)
    index = next(
        (
            i
            for i, (name, entry) in enumerate(zip(names, entries, strict=False))
            if wanted.strip().lower() in {name.lower(), entry.key.lower(), entry.name.lower()}
        ),
        None,
    )
    if index is None:
        raise RenderError(f"stage_override {wanted!r}: choose among {', '.join(names)}")
    entry = entries[index]
    return {
        "stage": index,
        "stage_label": names[index],
        "report_stage": index,
        "report_stage_label": names[index],
        "grid_key": entry.key,
        "stage_grid": entry.to_record(),
        "recommendations": entry.recommendations,
    }


def _equal_type_row(ctx: ReportContext) -> tuple[Any, ...]:
    rows = [r for r in ctx.by_type if not r.get("is_equal_weight")]
    items = [v for v in ctx.by_type_items.values() if v]
    if not rows or not items:
        return ctx.by_type
    row: dict[str, Any] = {"label": "Moyenne à poids égal par type d'acteur", "type": "",
                           "is_equal_weight": True, "is_small_n": False,
                           "n": sum(int(r.get("n") or 0) for r in rows)}  # fmt: skip
    for item in items:
        values = [float(r[item]) for r in rows if r.get(item) is not None]
        row[item] = sum(values) / len(values) if values else None
        row[f"n_{item}"] = sum(int(r.get(f"n_{item}") or 0) for r in rows)
    return (*rows, row)


def _chosen_group(ctx: ReportContext, codes_text: str, context_path: str) -> dict[str, Any]:
    """The evaluator's comparison group: its territories, their mean scores, the sentence."""
    from evalterritoire.manifest import safe_filename
    from evalterritoire.report.context import ReportContext
    from evalterritoire.report.narrative import chosen_group_comparison
    from evalterritoire.report.neighbours import CHOSEN_METHOD, group_means

    codes = list(dict.fromkeys(c for c in re.split(r"[;,\s]+", codes_text) if c))
    if not context_path:
        raise RenderError("comparison_group: the report's context file is not known")
    folder = Path(context_path).parent
    group = []
    for code in codes:
        if code == ctx.territory:
            raise RenderError(f"comparison_group: {code} is the territory of the report itself")
        path = folder / f"{safe_filename(code)}.json"
        if not path.is_file():
            raise RenderError(f"comparison_group: no territory {code!r} in wave {ctx.wave}")
        group.append(ReportContext.from_json(path))
    group.sort(key=lambda g: g.territory)
    means = group_means(group)
    profile = tuple({**p, "neighbours": means.get(str(p["dimension"]))} for p in ctx.profile)
    sentences = chosen_group_comparison(replace(ctx, profile=profile), means, len(group))
    records = tuple(
        {"territory": g.territory, "name": g.territory_name, "stage_label": g.stage_label,
         "distance": None}
        for g in group
    )  # fmt: skip
    return {
        "neighbours": records,
        "neighbour_method": CHOSEN_METHOD,
        "profile": profile,
        "essentiel": {**ctx.essentiel, "comparison": tuple(sentences)} if ctx.essentiel else {},
    }


def _written_parts(
    ctx: ReportContext, changes: Mapping[str, Any], *, overridden: bool
) -> dict[str, Any]:
    """The narrative under a stage override or a stricter threshold (written at build time).

    The sentences of « L'essentiel », the answers and the stage-change explanation were written
    from the computed stage and the study's publication rule: under the evaluator's stricter
    threshold they could quote a figure it hides, and under an override they answer another
    stage's questions. They are replaced by what stays true — the stage paragraph, the retained
    stage's questions with a plain note, its grid's recommendations — so that a value masked by
    the evaluator is masked everywhere.
    """
    grid = changes.get("stage_grid", ctx.stage_grid)
    if overridden:
        note = (
            "Pas de réponse rédigée : le rapport suit le stade retenu par l'évaluateur, les "
            "réponses tirées de l'enquête portent sur les questions du stade calculé "
            f"(« {ctx.stage_label} ») ; voir les tableaux ci-dessous."
        )
    else:
        note = (
            "Pas de réponse rédigée sous le seuil de masquage choisi par l'évaluateur : voir "
            "les tableaux ci-dessous."
        )
    essentiel = {"stage": tuple(ctx.essentiel.get("stage", ()))} if ctx.essentiel else {}
    written: dict[str, Any] = {
        "essentiel": essentiel,
        "answers": tuple({"question": q, "sentences": (note,)} for q in grid.get("questions", ())),
        "stage_change": {},
        "recommendation_reasons": (),  # the reasons quote scores
    }
    if overridden:
        written["recommendations"] = tuple(grid.get("recommendations", ()))
        written["model_sentences"] = ()
    return written


def apply_parameters(ctx: ReportContext, **params: Any) -> ReportContext:
    """The context the evaluator's parameters ask for (see the module docstring).

    Parameters
    ----------
    ctx : ReportContext
        The context built by the report step.
    **params
        ``suppression_threshold`` (int, 0: the study's rule), ``band_thresholds`` (str),
        ``stage_override`` (str), ``equal_type_weight`` (bool), ``comparison_group`` (str:
        territory codes separated by ``;``), ``context_path`` (str: this report's context, whose
        folder holds the group's), ``grid_path`` (str: the study's evaluation grid, "" for the
        shipped one); other names are ignored here.

    Returns
    -------
    ReportContext
        A new context; ``applied_parameters`` in its ``identity`` lists what changed (French).
    """
    changes: dict[str, Any] = {}
    override = str(params.get("stage_override") or "").strip()
    threshold = int(params.get("suppression_threshold") or 0)
    # each evaluator parameter in turn: the context's changes and the notice's sentence
    notes = [
        _stage_override(ctx, changes, override, str(params.get("grid_path") or "")),
        _band_thresholds(ctx, changes, str(params.get("band_thresholds") or "").strip()),
        _suppression(ctx, changes, threshold),
        _type_weight(ctx, changes, bool(params.get("equal_type_weight"))),
        _comparison_group(
            ctx,
            changes,
            str(params.get("comparison_group") or "").strip(),
            str(params.get("context_path") or ""),
        ),
    ]
    if override or threshold > 0:
        changes.update(_written_parts(ctx, changes, overridden=bool(override)))
    if not changes:
        return ctx
    identity = {**ctx.identity, "applied_parameters": tuple(n for n in notes if n)}
    out = replace(ctx, **changes, identity=identity)
    if threshold > 0:  # the quality box counts what this variant shows
        from evalterritoire.report.quality import _quality

        out = replace(
            out, quality=_quality(getattr(out, f.name) for f in fields(out) if f.name != "quality")
        )
    return out


def _stage_override(ctx: ReportContext, changes: dict[str, Any], override: str, grid: str) -> str:
    """The stage retained by the evaluator (its grid entry replaces the computed stage's)."""
    if not override:
        return ""
    computed = ctx.stage_label
    changes.update(_override_stage(ctx, override, grid))
    return (
        f"Stade retenu par l'évaluateur : {changes['stage_label']} "
        f"(stade calculé à partir de l'enquête : {computed})."
    )


def _band_thresholds(ctx: ReportContext, changes: dict[str, Any], thresholds: str) -> str:
    """The evaluator's cut points of the reading bands (stages with bands only)."""
    grid = changes.get("stage_grid", ctx.stage_grid)
    if not thresholds or not grid.get("bands"):
        return ""
    changes["stage_grid"] = _bands(grid, thresholds)
    return f"Seuils de lecture fixés par l'évaluateur : {thresholds}."


def _suppression(ctx: ReportContext, changes: dict[str, Any], threshold: int) -> str:
    """Mask every value resting on fewer than ``threshold`` answers (and what mirrors it)."""
    if threshold <= 0:
        return ""
    hidden = 0
    for f in fields(ctx):
        if f.name in _UNMASKED_FIELDS:
            continue
        masked, k = _mask(getattr(ctx, f.name), threshold)
        if k:
            changes[f.name], hidden = masked, hidden + k
    # the variant's rule: legends, the quality box and the annex say « moins de <threshold> »
    publication = dict(ctx.publication or {})
    publication["min_cell"] = max(int(publication.get("min_cell", 5)), threshold)
    changes["publication"] = publication
    if ctx.n_respondents < threshold and ctx.free_text:
        changes["free_text"] = ()  # no quotation under the evaluator's threshold
    from evalterritoire.report.phrases import plural_fr

    return (
        f"Valeurs reposant sur moins de {threshold} réponses masquées ({hidden} "
        f"{plural_fr(hidden, 'chiffre')})."
    )


def _type_weight(ctx: ReportContext, changes: dict[str, Any], equal: bool) -> str:
    """Regards croisés: add the row giving every actor type the same weight."""
    if not equal:
        return ""
    changes["by_type"] = _equal_type_row(replace(ctx, by_type=changes.get("by_type", ctx.by_type)))
    return "Regards croisés : une ligne donne le même poids à chaque type d'acteur."


def _comparison_group(
    ctx: ReportContext, changes: dict[str, Any], chosen: str, context_path: str
) -> str:
    """The evaluator's comparison group, instead of the similar territories."""
    if not chosen:
        return ""
    current = replace(ctx, **{k: v for k, v in changes.items() if k in _GROUP_INPUTS})
    group = _chosen_group(current, chosen, context_path)
    changes.update(group)
    from evalterritoire.report.phrases import plural_fr

    size = len(group["neighbours"])
    return (
        f"Groupe de comparaison choisi par l'évaluateur ({size} "
        f"{plural_fr(size, 'territoire')}, liste en annexe) au lieu des territoires similaires."
    )


def render_parameter_notes(ctx: ReportContext) -> str:
    """A notice listing the evaluator's parameters that changed this report (or "")."""
    notes = ctx.identity.get("applied_parameters") or ()
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        '<aside class="notice et-parameters" aria-label="Paramètres de l\'évaluateur">'
        f"<p>Ce rapport a été paramétré par l'évaluateur :</p><ul>{items}</ul></aside>"
    )


def render_observatory(name: str = "", logo: str = "") -> str:
    """The observatory's name and logo for the cover (safe HTML; "" when neither is given).

    Raises
    ------
    RenderError
        When the logo is missing, too large or not a PNG, JPEG or SVG file.
    """
    parts = []
    if logo:
        path = Path(logo)
        suffix = path.suffix.lower()
        if suffix not in {*_LOGO_TYPES, ".svg"} or not path.is_file():
            raise RenderError(f"observatory_logo {logo!r}: expected an existing PNG, JPEG or SVG")
        if path.stat().st_size > _MAX_LOGO_BYTES:
            raise RenderError(f"observatory_logo {logo!r}: larger than 1 Mo")
        data = path.read_bytes()
        mime = _LOGO_TYPES.get(suffix, "image/svg+xml")
        uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        alt = f"Logo de {name}" if name else "Logo de l'observatoire"
        parts.append(f'<img class="et-logo" src="{uri}" alt="{html.escape(alt)}"/>')
    if name:
        parts.append(f'<p class="et-observatory">{html.escape(name)}</p>')
    return f'<div class="et-publisher">{"".join(parts)}</div>' if parts else ""
