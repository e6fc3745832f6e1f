"""Report figures drawn from a :class:`~evalterritoire.report.context.ReportContext`.

One palette (Okabe–Ito, readable with colour-vision deficiencies), French labels and decimal
commas on every axis, n printed next to every bar (« n < 5 » below the confidentiality
threshold), intervals drawn when the estimates carry them. Every figure obeys its status
(:mod:`evalterritoire.report.display`): a suppressed one is not drawn and its place says « s »,
a fragile one is hatched and marked « * », a model-based one says « modélisée » (and the
caption « estimation modélisée »); the alt texts follow the same rules. Figures are drawn with matplotlib's
object API (no pyplot global state, no ``bbox_inches="tight"``, fixed dpi) and returned as
:class:`ReportFigure` objects holding deterministic PNG bytes and an alt text; in a notebook
they display themselves as an ``<figure>`` with an ``<img alt=…>`` embedded as base64.

Every figure is drawn on the caching Agg canvas of :mod:`evalterritoire.report.canvas` (renderers
shared by figures of the same size, glyph layouts and bitmaps kept between figures and reports):
the same bytes as matplotlib's own Agg canvas, without measuring and rasterising the same texts
again in every figure; each text laid out once, each figure drawn once (not twice, as
``savefig`` does with a layout engine); each figure's empty axes copied from a kept skeleton;
the cyclic garbage collector paused while a figure is drawn.

seaborn is deliberately not imported here: its import costs about a second per kernel and the
charts only need its "whitegrid" look, reproduced in :data:`STYLE`.
"""

from __future__ import annotations

import base64
import html
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalterritoire.report.canvas import (
    Subplots,
    new_canvas,
    new_figure,
    note_ticks,
    paused_gc,
    png_bytes,
    text_layouts,
)
from evalterritoire.report.display import (
    MODEL_LABEL,
    SUPPRESSED_MARK,
    figure_text,
    n_text,
    shown,
)
from evalterritoire.report.french import (
    NBSP,
    fmt_number,
    fmt_percent,
    fmt_words,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from evalterritoire.report.context import ReportContext

__all__ = [
    "CHARTS",
    "DPI",
    "PALETTE",
    "STAGE_COLOURS",
    "ReportFigure",
    "build_agreement_figure",
    "build_benefit_burden_figure",
    "build_fragilities_figure",
    "build_headline_figure",
    "build_profile_figure",
    "build_stage_distribution_figure",
    "build_stage_figures",
    "build_stage_profiles_figure",
    "build_stakeholders_figure",
    "build_waves_figure",
]

#: Fixed resolution (pixels per inch) of every figure.
DPI = 100
#: Okabe–Ito colours.
PALETTE = {
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#8C8C8C",
    "ink": "#1F2933",
}
STAGE_COLOURS = (PALETTE["orange"], PALETTE["sky"], PALETTE["green"], PALETTE["blue"])
NSP_COLOUR = "#FFFFFF"
#: Shading of a reading band whose grid entry declares no colour.
BAND_COLOUR = "#EEEEEE"

STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.facecolor": "white",
    "axes.edgecolor": "#CCCCCC",
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#E6E6E6",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "legend.frameon": False,
    "svg.hashsalt": "evalterritoire",
}


@dataclass(frozen=True)
class ReportFigure:
    """A rendered figure: PNG bytes, alt text (for screen readers) and a caption.

    Attributes
    ----------
    key : str
        Chart id (``profile``, ``agreement``...).
    png : bytes
        Deterministic PNG image.
    alt : str
        Text alternative describing what the figure shows, with its numbers.
    caption : str
        Caption shown under the figure (source, n, how to read it).
    """

    key: str
    png: bytes
    alt: str
    caption: str

    def to_html(self) -> str:
        """An escaped ``<figure>`` embedding the PNG as a data URI."""
        data = base64.b64encode(self.png).decode("ascii")
        return (
            f'<figure class="et-figure" id="fig-{html.escape(self.key)}">'
            f'<img src="data:image/png;base64,{data}" alt="{html.escape(self.alt)}"/>'
            f"<figcaption>{html.escape(self.caption)}</figcaption></figure>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


# --------------------------------------------------------------------------- helpers
#: The axes of most figures: one subplot.
ONE_AXES = Subplots()


def _finish(key: str, fig: Figure, alt: str, caption: str) -> ReportFigure:
    new_canvas(fig)
    png = png_bytes(fig, metadata={"Software": None})
    note_ticks(fig)
    return ReportFigure(key=key, png=png, alt=alt, caption=caption)


def _draw(
    key: str,
    width: float,
    height: float,
    body: Callable[[Figure, Any], tuple[str, str]],
    *,
    axes: Subplots = ONE_AXES,
    layout: str | None = "constrained",
):
    """Draw a figure with the house style: ``body(fig, axes)`` draws on the new ``axes``.

    ``layout=None`` when ``axes`` places the subplots itself: constrained layout measures
    every text of every axes, twice; a figure whose labels are short and known (small
    multiples) is laid out with fixed margins instead, several times faster. The figure and
    its empty axes come from :func:`~evalterritoire.report.canvas.new_figure` (a kept copy of
    the same skeleton). The garbage collector is paused meanwhile
    (:func:`~evalterritoire.report.canvas.paused_gc`).
    """
    import matplotlib as mpl

    with paused_gc(), mpl.rc_context(STYLE), text_layouts():
        fig, made = new_figure(width, height, DPI, layout, axes)
        alt, caption = body(fig, made)
        return _finish(key, fig, alt, caption)


def _fr_axis(axis, decimals: int = 1, *, percent: bool = False) -> None:
    from matplotlib.ticker import FuncFormatter

    if percent:
        axis.set_major_formatter(FuncFormatter(lambda v, _: fmt_percent(v, 0)))
    else:
        axis.set_major_formatter(FuncFormatter(lambda v, _: fmt_number(v, decimals)))


def _wrap(text: str, width: int = 38) -> str:
    return _plain("\n".join(textwrap.wrap(text, width)) or text)


def _plain(text: str) -> str:
    """Neutralise matplotlib mathtext: a ``$`` in data must print as a dollar sign."""
    return str(text).replace("$", r"\$")


def _n_text(n: int, min_cell: int = 5) -> str:
    return n_text(n, min_cell)


def _min_cell(ctx: ReportContext) -> int:
    return int((ctx.publication or {}).get("min_cell", 5))


def _short(rec: Mapping[str, Any], **kw: Any) -> str:
    """A figure's value for a chart label: « * » when fragile, « (modélisée) » when modelled."""
    text = figure_text(rec, **kw)
    return text.replace(f"({MODEL_LABEL})", "(modélisée)")


def _notes(records: Sequence[Mapping[str, Any]]) -> str:
    """The caption sentence on the marks the figure uses (empty when it uses none)."""
    statuses = {r.get("status") for r in records}
    notes = []
    if "suppressed" in statuses:
        notes.append("« s » : valeur non publiable (trop peu de répondants ou trop imprécise)")
    if "fragile" in statuses:
        notes.append("hachuré et « * » : valeur fragile, à lire avec prudence")
    if any(r.get("estimator") == "fay_herriot" and shown(r) for r in records):
        notes.append(f"« modélisée » : {MODEL_LABEL} (voir l'annexe)")
    return (" " + " ; ".join(notes) + ".") if notes else ""


def _fit_labels(fig: Figure, ax, labels: Sequence[Any], *, minimum: float) -> None:
    """Widen ``ax``'s x range so that every label drawn right of its anchor stays inside.

    The figure is laid out (not rendered) to measure the labels; the x range then grows (never
    below ``minimum``) until the right end of the widest label is within the axes.
    Deterministic: the same figure always gets the same range.
    """
    if not labels:
        return
    renderer = fig.canvas.get_renderer()
    for _ in range(3):
        engine = fig.get_layout_engine()
        if engine is not None:
            engine.execute(fig)
        right_px = max(t.get_window_extent(renderer).x1 for t in labels)
        inverse = ax.transData.inverted()
        right = inverse.transform((right_px, 0))[0]
        lo, hi = ax.get_xlim()
        if right <= hi:
            return
        ax.set_xlim(lo, max(minimum, right + 0.02 * (right - lo)))


def _empty(ax, message: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color=PALETTE["grey"])


# --------------------------------------------------------------------------- territory figures
def build_profile_figure(ctx: ReportContext, *, banded: bool = False) -> ReportFigure:
    """Nine-dimension profile with intervals vs the stage centroid (and national mean).

    ``banded=True`` shades the reading bands of the stage's grid entry (the Wilder reading in
    the shipped grid); it is refused for stages whose grid allows no verdict (emerging,
    structuring), so such a report can never show them. A suppressed score has no bar (« s »).
    """
    if banded and (not ctx.allows_verdicts or ctx.is_indicative):
        banded = False  # no verdict before consolidation, nor on an indicative (small-n) report
    rows = [p for p in ctx.profile if p.get("status") is not None]
    lo, hi = ctx.score_range

    def body(fig: Figure, ax) -> tuple[str, str]:
        if not rows:
            _empty(ax, "Profil non disponible (stades non calculés)")
            return "Profil non disponible.", "Profil de maturité non disponible."
        if banded:
            _draw_bands(ax, ctx.stage_grid["bands"], lo, hi)
        _draw_profile_bars(ax, ctx, rows)
        _draw_profile_markers(ax, ctx, rows)
        ax.set_yticks(list(range(len(rows))), [_plain(r["label"]) for r in rows][::-1])
        ax.set_xlim(lo, hi)
        ax.grid(axis="y", visible=False)
        _fr_axis(ax.xaxis, 0 if hi - lo > 10 else 1)
        ax.set_xlabel(f"Score moyen ({fmt_number(lo, 0)} à {fmt_number(hi, 0)})")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
        return _profile_texts(ctx, rows, banded)

    return _draw("profile_banded" if banded else "profile", 8.0, 4.6, body)


def _draw_bands(ax, bands: Sequence[Mapping[str, Any]], lo: float, hi: float) -> None:
    """Shade the reading bands (defined by the grid on the score scale) within ``[lo, hi]``."""
    for band in bands:
        ax.axvspan(
            max(lo, band["low"]),
            min(hi, band["high"]),
            color=band.get("colour") or BAND_COLOUR,
            zorder=0,
            label=band["label"],
        )


def _draw_profile_bars(ax, ctx: ReportContext, rows: Sequence[Mapping[str, Any]]) -> None:
    """One bar per shown dimension (first at the top), its interval and its value at the right."""
    lo, hi = ctx.score_range
    colour = STAGE_COLOURS[min(ctx.stage or 0, len(STAGE_COLOURS) - 1)]
    first = True
    for yi, r in zip(range(len(rows)), rows[::-1], strict=True):
        if shown(r):
            ax.barh(
                yi,
                r["score"] - lo,
                left=lo,
                color=colour,
                height=0.6,
                hatch="//" if r.get("status") == "fragile" else None,
                alpha=0.6 if r.get("status") == "fragile" else 1.0,
                label=_plain(ctx.territory_name[:40]) if first else None,
                zorder=2,
            )
            first = False
            if r.get("ci_low") is not None and r.get("ci_high") is not None:
                ax.plot(
                    [r["ci_low"], r["ci_high"]], [yi, yi], color=PALETTE["ink"], lw=1.2, zorder=3
                )
        ax.text(
            hi + (hi - lo) * 0.01,
            yi,
            _short(r, base=1),
            va="center",
            fontsize=8,
            color=PALETTE["ink"],
        )


def _draw_profile_markers(ax, ctx: ReportContext, rows: Sequence[Mapping[str, Any]]) -> None:
    """The stage centroid (diamonds) and, where verdicts are allowed, the national mean."""
    y = list(range(len(rows)))
    cent = [r.get("centroid") for r in rows][::-1]
    if any(c is not None for c in cent):
        ax.scatter(
            [c if c is not None else float("nan") for c in cent],
            y,
            marker="D",
            color=PALETTE["ink"],
            s=28,
            zorder=4,
            label=_plain(f"Profil moyen du stade {ctx.stage_label}"),
        )
    if ctx.allows_verdicts:
        nat = [r.get("national") for r in rows][::-1]
        ax.scatter(
            [c if c is not None else float("nan") for c in nat],
            y,
            marker="|",
            color=PALETTE["vermillion"],
            s=160,
            linewidths=2,
            zorder=4,
            label="Moyenne des territoires",
        )


def _profile_texts(
    ctx: ReportContext, rows: Sequence[Mapping[str, Any]], banded: bool
) -> tuple[str, str]:
    """Alt text and caption of the profile figure."""
    parts = "; ".join(f"{r['label']} {figure_text(r, base=1)}" for r in rows)
    alt = f"Profil de maturité sur {len(rows)} dimensions : {parts}."
    caption = (
        f"Scores de dimension du territoire ({n_text(ctx.n_respondents, _min_cell(ctx))}), intervalle à 95 % "
        f"en trait noir ; losange : profil moyen des territoires du stade {ctx.stage_label}."
        + _notes(rows)
    )
    if banded:
        caption += " " + ctx.stage_grid.get("band_legend", "")
    if ctx.is_indicative:
        caption += " Effectif faible : lecture indicative, scores non classés."
    return alt, caption


#: Colours of the grouped agreement answers (disagreement, neutral, agreement, « ne sait pas »).
AGREEMENT_GROUP_COLOURS = {
    "disagree": "#D8B365",
    "neutral": "#E3E3E3",
    "agree": "#5AB4AC",
    "nsp": NSP_COLOUR,
}


def build_agreement_figure(ctx: ReportContext) -> ReportFigure:
    """Stacked agreement bars (disagreement / neutral / agreement) and « ne sait pas » (hatched).

    An item whose distribution has a suppressed share is not drawn (« s »): with one share
    hidden, the others would give it away.
    """
    rows = list(ctx.agreement)
    min_cell = _min_cell(ctx)
    drawable = any(r.get("status") != "suppressed" for r in rows)

    def body(fig: Figure, ax) -> tuple[str, str]:
        if not rows:
            _empty(ax, "Aucune réponse d'accord disponible")
            return "Aucune donnée.", "Aucune réponse disponible."
        if not drawable:  # an empty frame of « s » says less than one sentence
            _empty(ax, "Aucune répartition des réponses d'accord n'est publiable pour ce "
                   "territoire\n(trop peu de répondants par réponse, ou précision insuffisante).")  # fmt: skip
            text = (
                "Aucune répartition des réponses d'accord n'est publiable pour ce territoire "
                f"({len(rows)} affirmations : trop peu de répondants par réponse, ou précision "
                "insuffisante)."
            )
            return text, text
        y = list(range(len(rows)))[::-1]
        for yi, r in zip(y, rows, strict=True):
            _draw_agreement_bar(ax, yi, r, min_cell)
        ax.set_yticks(y, [_wrap(r["label"], 44) for r in rows], fontsize=8)
        ax.set_ylim(-0.75, len(rows) - 0.25)  # room for a last label of three lines
        ax.set_xlim(0, 1)
        _fr_axis(ax.xaxis, percent=True)
        ax.grid(axis="y", visible=False)
        _agreement_legend(ax, rows[0]["groups"])
        alt = "Répartition des réponses d'accord : " + "; ".join(_agreement_alt(r) for r in rows)
        caption = (
            "Répartition pondérée des réponses (désaccord, neutre, accord), « ne sait pas » "
            "compris (hachuré) : ils sont une information, pas une non-réponse."
            + _notes([rec for r in rows for rec in r.get("records", {}).values()])
        )
        return alt + ".", caption

    height = 0.55 * max(len(rows), 2) + 1.6 if drawable else 1.1
    return _draw("agreement", 8.6, height, body)


def _agreement_alt(r: Mapping[str, Any]) -> str:
    recs = r.get("records", {})
    if r.get("status") == "suppressed" or not recs:
        return f"{r['label']} : répartition non publiable"
    return f"{r['label']} : " + ", ".join(
        f"{label.lower()} {figure_text(recs[key], percent=True, base=0)}"
        for key, label in r["groups"]
        if key in recs
    )


def _draw_agreement_bar(ax, yi: float, r: Mapping[str, Any], min_cell: int) -> None:
    """One item's stacked groups (shares of 8 % or more printed), « s » when not publishable."""
    if r.get("status") == "suppressed":
        ax.text(0.01, yi, "s (répartition non publiable)", va="center", fontsize=8,
                color=PALETTE["grey"])  # fmt: skip
        return
    left = 0.0
    recs = r.get("records", {})
    for key, _ in r["groups"]:
        width = r["shares"].get(key) or 0.0
        fragile = recs.get(key, {}).get("status") == "fragile"
        ax.barh(
            yi,
            width,
            left=left,
            color=AGREEMENT_GROUP_COLOURS.get(key, BAND_COLOUR),
            height=0.62,
            edgecolor=PALETTE["grey"] if key == "nsp" else "white",
            hatch="///" if key == "nsp" else None,
            linewidth=0.6,
        )
        if width >= 0.08 and key != "nsp":
            ax.text(
                left + width / 2,
                yi,
                fmt_percent(width) + (" *" if fragile else ""),
                ha="center",
                va="center",
                fontsize=7.5,
                color=PALETTE["ink"],
            )
        left += width
    ax.text(
        1.01,
        yi,
        f"NSP {fmt_percent(r['shares'].get('nsp') or 0.0)}\n{_n_text(r['n'], min_cell)}",
        va="center",
        fontsize=7.5,
        transform=ax.get_yaxis_transform(),
    )


def _agreement_legend(ax, groups: Sequence[Sequence[str]]) -> None:
    """The answer groups and « ne sait pas », below the axes."""
    from matplotlib.patches import Patch

    handles = [
        Patch(
            facecolor=AGREEMENT_GROUP_COLOURS.get(key, BAND_COLOUR),
            edgecolor=PALETTE["grey"] if key == "nsp" else None,
            hatch="///" if key == "nsp" else None,
            label=label,
        )
        for key, label in groups
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.4, -0.08), ncol=4, fontsize=8)


def build_fragilities_figure(ctx: ReportContext, *, top: int = 8) -> ReportFigure:
    """Perceived priority (/10, with interval and n) and the share who think alliances can act.

    A suppressed priority has no bar (« s »), a fragile one is hatched.
    """
    rows = [r for r in ctx.fragilities if r.get("status") is not None][:top]
    min_cell = _min_cell(ctx)
    alliances = bool(rows) and _has_alliances(rows)

    def body(fig: Figure, made) -> tuple[str, str]:
        if not rows:
            _empty(made, "Priorités de fragilités non disponibles")
            return "Aucune donnée.", "Aucune donnée de fragilités."
        if alliances:
            ax1, ax2 = made
            ax2.set_xlim(0, 1.3)
        else:
            ax1 = made
        y = list(range(len(rows)))[::-1]
        value_labels = _draw_priorities(ax1, rows, y, min_cell)
        if alliances:
            _draw_alliances(ax2, rows, y, min_cell)
        ax1.set_yticks(y, [_wrap(r["label"], 26) for r in rows], fontsize=9)
        ax1.set_xlim(0, 13.5)
        ax1.set_xticks([0, 2, 4, 6, 8, 10])
        _fr_axis(ax1.xaxis, 0)
        ax1.set_title("Priorité perçue (moyenne sur 10)")
        if alliances:
            ax2.set_xlim(0, 1.35)
            ax2.set_xticks([0, 0.5, 1])
            _fr_axis(ax2.xaxis, percent=True)
            ax2.set_title("Les alliances\npeuvent agir")
        _fit_labels(fig, ax1, value_labels, minimum=13.5)
        if alliances:
            ax2.set_xlabel("part « fort » ou « très fort »", fontsize=8)
        for ax in (ax1, ax2) if alliances else (ax1,):
            ax.grid(axis="y", visible=False)
        alt = "Fragilités les plus prioritaires : " + "; ".join(
            f"{r['label']} {figure_text(r, base=1, scale_max=10)}"
            + (
                f", alliances pouvant agir : {figure_text(r['alliance'], percent=True, base=0)}"
                if r.get("alliance")
                else ""
            )
            for r in rows
        )
        records = [*rows, *(r["alliance"] for r in rows if r.get("alliance"))]
        caption = (
            "Priorité moyenne accordée à chaque fragilité (0 à 10, comme les études PHARE) avec "
            "son intervalle de confiance à 95 %"
            + (
                ", et part des répondants jugeant l'impact possible des alliances fort ou très fort."
                if alliances
                else "."
            )
            + _notes(records)
        )
        return alt + ".", caption

    axes = (
        Subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]}) if alliances else ONE_AXES
    )
    return _draw("fragilities", 8.6, 0.42 * len(rows) + 1.5, body, axes=axes)


def _has_alliances(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the fragility records carry the alliances item (the report spec may omit it)."""
    return any(r.get("alliance_n") for r in rows)


def _draw_priorities(ax, rows: Sequence[Mapping[str, Any]], y: Sequence[float], min_cell: int):
    """Priority bars (hatched when fragile), intervals and value labels; the labels."""
    value_labels = []
    for yi, r in zip(y, rows, strict=True):
        fragile = r.get("status") == "fragile"
        right = 0.0
        if shown(r):
            ax.barh(
                yi,
                r["estimate"],
                color=PALETTE["blue"],
                height=0.6,
                hatch="//" if fragile else None,
                alpha=0.55 if fragile else 1.0,
            )
            right = r["estimate"]
            if r.get("ci_low") is not None and r.get("ci_high") is not None:
                ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color=PALETTE["ink"], lw=1.2)
                right = max(r["ci_high"], r["estimate"])
        # the label starts a few points right of the interval's upper end (or of the bar)
        value_labels.append(
            ax.annotate(
                f"{_short(r, base=1, scale_max=10)} ({_n_text(r['n'], min_cell)})",
                (right, yi),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color=PALETTE["ink"],
                annotation_clip=False,
            )
        )
    return value_labels


def _draw_alliances(ax, rows: Sequence[Mapping[str, Any]], y: Sequence[float], min_cell: int):
    """Share judging the alliances' possible impact strong, with its n."""
    for yi, r in zip(y, rows, strict=True):
        rec = r.get("alliance")
        if not rec:
            continue
        share = rec["estimate"] if shown(rec) else None
        if share is not None:
            fragile = rec.get("status") == "fragile"
            ax.barh(yi, share, color=PALETTE["green"], height=0.6,
                    hatch="//" if fragile else None, alpha=0.55 if fragile else 1.0)  # fmt: skip
        ax.text(
            (share or 0.0) + 0.02,
            yi,
            f"{_short(rec, percent=True, base=0)} ({_n_text(rec['n'], min_cell)})",
            va="center",
            fontsize=8,
        )


def build_stakeholders_figure(ctx: ReportContext) -> ReportFigure:
    """Which actor types are involved (share of respondents citing them) and who answered.

    Only the shares that may be shown are drawn; the respondents' types with fewer than
    ``min_cell`` respondents are merged (« autres acteurs »).
    """
    comp = [r for r in ctx.composition if shown(r)]
    hidden = [r for r in ctx.composition if r.get("status") == "suppressed"]
    mix = [r for r in ctx.respondents if r.get("status", "publishable") != "suppressed"]
    min_cell = _min_cell(ctx)

    def body(fig: Figure, made) -> tuple[str, str]:
        if not comp and not mix:
            _empty(made, "Composition non disponible")
            return "Aucune donnée.", "Composition non disponible."
        ax1, ax2 = made
        if comp:
            comp_sorted = sorted(comp, key=lambda r: (-r["estimate"], r["variable"]))
            y = list(range(len(comp_sorted)))[::-1]
            colours = [
                PALETTE["green"] if r["estimate"] >= 0.5 else PALETTE["orange"] for r in comp_sorted
            ]
            ax1.barh(y, [r["estimate"] for r in comp_sorted], color=colours, height=0.6,
                     hatch=["//" if r.get("status") == "fragile" else None for r in comp_sorted])  # fmt: skip
            for yi, r in zip(y, comp_sorted, strict=True):
                ax1.text(
                    r["estimate"] + 0.02, yi, _short(r, percent=True, base=0), va="center",
                    fontsize=8,
                )  # fmt: skip
            ax1.set_yticks(y, [_wrap(r["label"], 24) for r in comp_sorted], fontsize=8)
            ax1.set_xlim(0, 1.3)
            _fr_axis(ax1.xaxis, percent=True)
            ax1.set_title(
                f"Acteurs cités comme impliqués ({_n_text(comp_sorted[0]['n'], min_cell)})"
            )
            ax1.grid(axis="y", visible=False)
        else:
            ax1.axis("off")
        if mix:
            _draw_mix(ax2, mix, min_cell)
        else:
            ax2.axis("off")
        present = [r["label"] for r in comp if r["estimate"] >= 0.5]
        absent = [r["label"] for r in comp if r["estimate"] < 0.5]
        answered = ", ".join(f"{r['label']} {r['n']}" for r in mix)
        alt = (
            f"Acteurs cités par la majorité : {', '.join(present) or 'aucun'}. "
            f"Acteurs peu cités : {', '.join(absent) or 'aucun'}. "
            + (
                f"Parts non publiables : {', '.join(r['label'] for r in hidden)}. "
                if hidden
                else ""
            )
            + f"Répondants : {answered}."
        )
        caption = (
            "Vert : type d'acteur cité par au moins la moitié des répondants ; orange : peu "
            "cité (manque possible). À droite, la composition des répondants de l'enquête "
            f"(types de moins de {fmt_number(min_cell, 0)} répondants regroupés)."
            + _notes([*comp, *hidden])
        )
        return alt, caption

    height = 0.32 * max(len(comp), len(mix), 4) + 1.3
    axes = Subplots(1, 2, gridspec_kw={"width_ratios": [1, 1]}) if comp or mix else ONE_AXES
    return _draw("stakeholders", 8.6, height, body, axes=axes)


def _draw_mix(ax, mix: Sequence[Mapping[str, Any]], min_cell: int) -> None:
    """Respondents by (merged) type."""
    from matplotlib.ticker import MaxNLocator

    y = list(range(len(mix)))[::-1]
    ax.barh(y, [r["n"] for r in mix], color=PALETTE["sky"], height=0.6)
    for yi, r in zip(y, mix, strict=True):
        ax.text(r["n"] + 0.1, yi, fmt_number(r["n"], 0), va="center", fontsize=8)
    ax.set_yticks(y, [_wrap(r["label"], 24) for r in mix], fontsize=8)
    ax.set_xlim(0, max(r["n"] for r in mix) * 1.15 + 0.5)
    ax.set_title(f"Répondants par type ({_n_text(sum(r['n'] for r in mix), min_cell)})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _fr_axis(ax.xaxis, 0)
    ax.grid(axis="y", visible=False)


def build_benefit_burden_figure(ctx: ReportContext) -> ReportFigure:
    """Benefits, burden and trust by actor group (mean on the items' scale, n per group).

    The items are the report spec's ``by_type`` (``ctx.by_type_items``); the types with fewer
    than ``min_cell`` respondents are merged (« autres acteurs »); a suppressed mean is not
    drawn, a fragile one is hollow.
    """
    items = ctx.by_type_items
    min_cell = _min_cell(ctx)
    rows = [r for r in ctx.by_type if any(shown(r.get(f"{i}__record")) for i in items.values())]
    series = tuple(
        (items[key], label, colour, marker)
        for key, label, colour, marker in (
            ("benefit", "Bénéfices pour l'organisation", PALETTE["green"], "o"),
            ("burden", "Charge excessive", PALETTE["vermillion"], "s"),
            ("trust", "Confiance mutuelle", PALETTE["blue"], "D"),
        )
        if key in items
    )

    def body(fig: Figure, ax) -> tuple[str, str]:
        if not rows:
            ax.axis("off")
            ax.text(0.5, 0.5, "Non disponible", ha="center", color=PALETTE["grey"])
            none = (
                f"Aucun type d'acteur ne réunit {fmt_number(min_cell, 0)} répondants : pas de "
                "lecture par type, pour qu'aucune réponse individuelle ne soit reconnaissable."
            )
            return none, "Bénéfices et charge par type non publiés. " + none
        y = list(range(len(rows)))[::-1]
        for item, label, colour, marker in series:
            recs = [r.get(f"{item}__record") for r in rows]
            xs = [rec["estimate"] if shown(rec) else float("nan") for rec in recs]
            faces = ["white" if rec and rec.get("status") == "fragile" else colour for rec in recs]
            ax.scatter(xs, y, color=faces, edgecolors=colour, marker=marker, s=46, label=label,
                       zorder=3)  # fmt: skip
        for yi, r in zip(y, rows, strict=True):
            vals = [r[f"{i}__record"]["estimate"] for i, *_ in series
                    if shown(r.get(f"{i}__record"))]  # fmt: skip
            ax.plot([min(vals), max(vals)], [yi, yi], color="#BBBBBB", lw=2, zorder=2)
            ax.text(
                1.01,
                yi,
                _n_text(r["n"], min_cell),
                va="center",
                fontsize=8,
                transform=ax.get_yaxis_transform(),
            )
        ax.set_yticks(y, [_wrap(r["label"], 30) for r in rows], fontsize=8)
        lo, hi, label = _by_type_axis(ctx)
        ax.set_xlim(lo, hi)
        ax.set_xticks(range(round(lo), round(hi) + 1))
        _fr_axis(ax.xaxis, 0)
        ax.set_xlabel(label)
        ax.grid(axis="y", visible=False)
        ax.legend(loc="upper center", bbox_to_anchor=(0.45, -0.16), ncol=3, fontsize=8)
        alt = "Bénéfices, charge et confiance par type d'acteur : " + "; ".join(
            f"{r['label']} : "
            + ", ".join(
                f"{lab.split()[0].lower()} {figure_text(r.get(f'{i}__record'), base=1)}"
                for i, lab, *_ in series
            )
            + f" ({_n_text(r['n'], min_cell)})"
            for r in rows
        )
        records = [r.get(f"{i}__record") for r in rows for i, *_ in series]
        caption = (
            "Moyennes pondérées par type d'acteur ; les types de moins de "
            f"{fmt_number(min_cell, 0)} répondants sont regroupés (« autres acteurs »). "
            "Marqueur creux : valeur fragile. Un écart entre types se lit côte à côte, pas en "
            "moyenne." + _notes([r for r in records if r])
        )
        return alt + ".", caption

    return _draw("benefit_burden", 8.6, 0.42 * len(rows) + 1.6, body)


def _by_type_axis(ctx: ReportContext) -> tuple[float, float, str]:
    """Range and title of the by-type axis, from the items' scale (« 1 = … , 5 = … »)."""
    scale = ctx.by_type_scale
    if not scale:
        lo, hi = ctx.score_range
        return lo, hi, f"Moyenne ({fmt_number(lo, 0)} à {fmt_number(hi, 0)})"
    lo, hi = scale["low"], scale["high"]
    ends = [
        f"{fmt_number(value, 0)} = {text[:1].lower()}{text[1:]}"
        for value, text in ((lo, scale.get("low_label")), (hi, scale.get("high_label")))
        if text
    ]
    title = "Accord moyen (" + ", ".join(ends) + ")" if ends else "Accord moyen"
    return lo, hi, title


def build_waves_figure(ctx: ReportContext) -> ReportFigure:
    """Small multiples: each dimension's score at each wave (same territory), with intervals.

    Each point carries its 95 % interval (a bounded mean's, on the logit of the rescaled score)
    and the x labels give the number of respondents of the territory at each wave, so that an
    apparent change can be read against its uncertainty.
    """
    rows = list(ctx.wave_scores)
    waves = _WaveAxis(rows, ctx.min_n, _min_cell(ctx)) if rows else None
    dims: list[str] = []
    for r in rows:
        if r["dimension"] not in dims:
            dims.append(r["dimension"])

    def body(fig: Figure, axes) -> tuple[str, str]:
        if waves is None:
            _empty(axes, "Une seule vague disponible")
            return "Une seule vague disponible.", "Pas encore d'évolution entre vagues."
        colour = STAGE_COLOURS[min(ctx.stage or 0, len(STAGE_COLOURS) - 1)]
        lines, has_ci = [], False
        for i, ax in enumerate(axes.flat):
            if i >= len(dims):
                ax.axis("off")
                continue
            recs = sorted((r for r in rows if r["dimension"] == dims[i]), key=lambda r: r["wave"])
            line, with_ci = _draw_wave_panel(ax, recs, colour, waves, ctx.score_range)
            lines.append(line)
            has_ci = has_ci or with_ci
        return _waves_texts(ctx, waves, lines, has_ci)

    grid = ONE_AXES
    if waves is not None:
        grid = Subplots(
            -(-len(dims) // 3),
            3,
            sharex=True,
            sharey=True,
            squeeze=False,
            gridspec_kw={
                "left": 0.06,
                "right": 0.98,
                "top": 0.95,
                "bottom": 0.14 if any(waves.small.values()) else 0.11,
                "hspace": 0.32,
                "wspace": 0.1,
            },
        )
    return _draw("waves", 8.0, 5.8, body, axes=grid, layout=None)


class _WaveAxis:
    """The waves of a territory's scores, their respondents and the x tick labels."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], min_n: int, min_cell: int = 5) -> None:
        self.min_cell = min_cell
        self.waves = sorted({r["wave"] for r in rows})
        self.n_by_wave = {
            w: max(int(r.get("n") or 0) for r in rows if r["wave"] == w) for w in self.waves
        }
        self.small = {w: self.n_by_wave[w] < min_n for w in self.waves}
        self.tick_labels = [
            f"{w}\n{n_text(self.n_by_wave[w], self.min_cell)}"
            + (f"\n{NBSP}indicatif" if self.small[w] else "")
            for w in self.waves
        ]


def _draw_wave_panel(
    ax,
    recs: Sequence[Mapping[str, Any]],
    colour: str,
    waves: _WaveAxis,
    score_range: tuple[float, float],
) -> tuple[str, bool]:
    """One dimension's scores across waves; its alt-text line and whether it has intervals.

    A suppressed score is not drawn (its wave shows « s »), a fragile one is drawn hollow with
    its marker; the alt text writes each score as displayed (:func:`figure_text`).
    """
    pts = [(r["wave"], r) for r in recs if shown(r)]
    ax.plot([w for w, _ in pts], [float(r["estimate"]) for _, r in pts], color=colour, lw=2)
    has_ci = False
    for w, r in pts:
        v, low, high = float(r["estimate"]), r.get("ci_low"), r.get("ci_high")
        if low is not None and high is not None:
            has_ci = True
            ax.plot([w, w], [low, high], color=PALETTE["ink"], lw=1.2, zorder=3)
        hollow = waves.small[w] or r.get("status") == "fragile"
        ax.plot([w], [v], marker="o", color=colour, zorder=4,
                markerfacecolor="white" if hollow else colour)  # fmt: skip
        # the value sits right of its point, clear of the vertical interval
        ax.annotate(figure_text(r, base=1), (w, v), xytext=(5, 0), textcoords="offset points",
                    ha="left", va="center", fontsize=8)  # fmt: skip
    for r in recs:
        if not shown(r):
            mid = (score_range[0] + score_range[1]) / 2
            ax.annotate(SUPPRESSED_MARK, (r["wave"], mid), ha="center", va="center", fontsize=9,
                        color=PALETTE["ink"])  # fmt: skip
    ax.set_title(_plain(recs[0]["label"]), fontsize=9)
    ax.set_ylim(*score_range)
    ax.set_yticks(range(round(score_range[0]), round(score_range[1]) + 1))
    ax.set_xticks(waves.waves, waves.tick_labels, fontsize=7.5)
    ax.set_xlim(waves.waves[0] - 0.4, waves.waves[-1] + 0.6)
    _fr_axis(ax.yaxis, 0)
    ax.grid(axis="x", visible=False)
    values = [figure_text(r, base=1, interval=True) for r in recs]
    return f"{recs[0]['label']} {' → '.join(values)}", has_ci


def _waves_texts(
    ctx: ReportContext, waves: _WaveAxis, lines: Sequence[str], has_ci: bool
) -> tuple[str, str]:
    """Alt text and caption of the wave-to-wave figure."""
    lo, hi = ctx.score_range
    per_wave = ", ".join(f"{w} : {n_text(waves.n_by_wave[w], waves.min_cell)}" for w in waves.waves)
    alt = f"Évolution des scores entre vagues (répondants {per_wave}) : " + "; ".join(lines) + "."
    caption = (
        "Score de chaque dimension du territoire à chaque vague (même questionnaire, "
        f"échelle {fmt_number(lo, 0)} à {fmt_number(hi, 0)})"
        + (", avec son intervalle de confiance à 95 % (trait vertical)" if has_ci else "")
        + f". Répondants du territoire par vague : {per_wave}."
    )
    if any(waves.small.values()):
        caption += (
            f" Point creux : vague de moins de {fmt_number(ctx.min_n, 0)} répondants, "
            "lecture indicative."
        )
    return alt, caption


# --------------------------------------------------------------------------- national figures
def build_stage_distribution_figure(ctx: ReportContext) -> ReportFigure:
    """Number of territories per stage."""
    rows = list(ctx.stage_distribution)

    def body(fig: Figure, ax) -> tuple[str, str]:
        if not rows:
            ax.axis("off")
            return "Aucune donnée.", "Stades non calculés."
        x = list(range(len(rows)))
        counts = [r["n_territories"] for r in rows]
        ax.bar(x, counts, color=[STAGE_COLOURS[i % 4] for i in x], width=0.6)
        for xi, r in zip(x, rows, strict=True):
            ax.text(
                xi,
                r["n_territories"],
                f"{fmt_number(r['n_territories'], 0)} ({fmt_percent(r['share'])})",
                ha="center",
                va="bottom",
                fontsize=9,
            )
        ax.set_xticks(x, [_plain(r["label"]) for r in rows])
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("Nombre de territoires")
        ax.set_ylim(0, max(counts) * 1.18 + 0.5)
        _fr_axis(ax.yaxis, 0)
        ax.grid(axis="x", visible=False)
        alt = "Territoires par stade : " + "; ".join(
            f"{r['label']} {r['n_territories']} ({fmt_percent(r['share'])})" for r in rows
        )
        caption = f"Répartition des {fmt_number(sum(counts), 0)} territoires enquêtés par stade."
        return alt + ".", caption

    return _draw("stage_distribution", 7.0, 3.4, body)


def build_stage_profiles_figure(ctx: ReportContext) -> ReportFigure:
    """Mean dimension profile of each stage (one line per stage)."""
    rows = list(ctx.stage_profiles)

    def body(fig: Figure, ax) -> tuple[str, str]:
        if not rows:
            ax.axis("off")
            return "Aucune donnée.", "Profils non disponibles."
        dims = []
        for r in rows:
            if r["label"] not in dims:
                dims.append(r["label"])
        x = list(range(len(dims)))
        for s in sorted({r["stage"] for r in rows}):
            sub = {r["label"]: r for r in rows if r["stage"] == s}
            ax.plot(
                x,
                [sub[d]["score"] if d in sub else float("nan") for d in dims],
                marker="o",
                color=STAGE_COLOURS[s % 4],
                lw=2,
                label=_plain(
                    f"{ctx.stage_names[s] if s < len(ctx.stage_names) else s} "
                    f"({next(iter(sub.values()))['n_territories']} terr.)"
                ),
            )
        ax.set_xticks(x, [_wrap(d, 14) for d in dims], fontsize=8)
        lo, hi = ctx.score_range
        ax.set_ylim(lo, hi)
        _fr_axis(ax.yaxis, 1)
        ax.set_ylabel("Score moyen")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, fontsize=8)
        alt = f"Profil moyen de chaque stade sur les {fmt_words(len(dims), feminine=True)} dimensions."
        caption = "Moyenne des scores de dimension des territoires de chaque stade."
        return alt, caption

    return _draw("stage_profiles", 8.6, 4.2, body)


def build_headline_figure(ctx: ReportContext) -> ReportFigure:
    """National headline shares with their intervals and n."""
    rows = [r for r in ctx.headline if r.get("kind") == "share" and r.get("estimate") is not None]

    def body(fig: Figure, ax) -> tuple[str, str]:
        if not rows:
            ax.axis("off")
            return "Aucune donnée.", "Chiffres clés non disponibles."
        y = list(range(len(rows)))[::-1]
        ax.barh(y, [r["estimate"] for r in rows], color=PALETTE["blue"], height=0.55)
        for yi, r in zip(y, rows, strict=True):
            if r.get("ci_low") is not None and r.get("ci_high") is not None:
                ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color=PALETTE["ink"], lw=1.4)
            ax.text(
                1.01,
                yi,
                f"{fmt_percent(r['estimate'])}  {_n_text(r['n'], r['is_small_n'])}",
                va="center",
                fontsize=8,
                transform=ax.get_yaxis_transform(),
            )
            if r.get("benchmark") is not None:
                ax.plot(r["benchmark"], yi, marker="v", color=PALETTE["vermillion"], ms=8)
        ax.set_yticks(y, [_wrap(r.get("short") or r["label"], 46) for r in rows], fontsize=8)
        ax.set_xlim(0, 1)
        _fr_axis(ax.xaxis, percent=True)
        ax.grid(axis="y", visible=False)
        alt = "Chiffres clés : " + "; ".join(
            f"{r.get('short') or r['label']} {fmt_percent(r['estimate'])}" for r in rows
        )
        has_ci = any(r.get("ci_low") is not None for r in rows)
        caption = (
            "Parts pondérées"
            + (
                " avec intervalle de confiance à 95 % (trait noir)"
                if has_ci
                else " (sans intervalle)"
            )
            + " ; triangle : repère national publié (Observatoire des partenariats)."
        )
        return alt + ".", caption

    return _draw("headline", 8.6, 0.55 * len(rows) + 1.2, body)


CHARTS: dict[str, Callable[[ReportContext], ReportFigure]] = {
    "stakeholders": build_stakeholders_figure,
    "agreement": build_agreement_figure,
    "fragilities": build_fragilities_figure,
    "profile": build_profile_figure,
    "profile_banded": lambda ctx: build_profile_figure(ctx, banded=True),
    "benefit_burden": build_benefit_burden_figure,
    "waves": build_waves_figure,
}


def build_stage_figures(
    ctx: ReportContext, charts: Sequence[str] | None = None
) -> list[ReportFigure]:
    """The figures the evaluation grid lists for the territory's stage (table charts skipped)."""
    if charts is None:
        charts = ctx.stage_grid.get("charts", ())
    return [CHARTS[c](ctx) for c in charts if c in CHARTS]
