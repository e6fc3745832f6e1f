"""How a judged figure is written in a report: value, interval or words, status marks.

Every estimate a report shows goes through :func:`render_estimate` (tables) or
:func:`figure_text` (chart annotations and alt texts), which obey the record's status:

* **suppressed**: the conventional mark « s » (:data:`SUPPRESSED_MARK`) and no value;
* **fragile**: the value with the marker :data:`FRAGILE_MARK` (« à lire avec prudence »);
* **model-based** (``estimator = "fay_herriot"``): the words « estimation modélisée »;
* an interval that cannot be estimated is said in words (:func:`interval_words`), never
  drawn as a point; an interval is written with as many decimals as needed for its bounds to
  differ (:func:`display_decimals`, up to three more than usual), the value with the same.

In HTML the figure is a ``<span class="et-est">`` whose ``data-*`` attributes carry its status,
estimator, interval method, n (not for a suppressed figure, whose n may be below ``min_cell``)
and the range of the quantity in displayed units, so that a
reader's tool (and the report scan of the tests) can check every number. :func:`legend` is
the legend of the marks; :func:`n_text` writes a number of respondents without revealing one
below ``min_cell``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from evalterritoire.report.french import (
    MISSING,
    NBSP,
    fmt_count,
    fmt_number,
    is_missing,
)

__all__ = [
    "FRAGILE_MARK",
    "MODEL_LABEL",
    "SUPPRESSED_MARK",
    "display_decimals",
    "figure_text",
    "interval_words",
    "legend",
    "n_text",
    "render_estimate",
    "shown",
]

#: Mark of a suppressed figure (« secret » or insufficient precision).
SUPPRESSED_MARK = "s"
#: Marker of a fragile figure.
FRAGILE_MARK = "*"
#: Label of a model-based (Fay–Herriot) figure.
MODEL_LABEL = "estimation modélisée"
_EXTRA_DECIMALS = 3


def shown(rec: Mapping[str, Any] | None) -> bool:
    """Whether a record has a value a report may show (not suppressed, an estimate)."""
    return bool(rec) and rec.get("status") != "suppressed" and not is_missing(rec.get("estimate"))


def _scale(rec: Mapping[str, Any], percent: bool) -> float:
    return 100.0 if percent else 1.0


def display_decimals(rec: Mapping[str, Any], base: int, *, percent: bool = False) -> int:
    """Decimals for a figure: ``base``, more when its interval would round to a point."""
    low, high = rec.get("ci_low"), rec.get("ci_high")
    if is_missing(low) or is_missing(high):
        return base
    k = _scale(rec, percent)
    for decimals in range(base, base + _EXTRA_DECIMALS + 1):
        if fmt_number(float(low) * k, decimals) != fmt_number(float(high) * k, decimals):
            return decimals
    return base + _EXTRA_DECIMALS


def interval_words(rec: Mapping[str, Any]) -> str:
    """Why a figure has no interval, in plain French (empty when it has one)."""
    if not is_missing(rec.get("ci_low")) and not is_missing(rec.get("ci_high")):
        return ""
    reasons = str(rec.get("reason") or "")
    if rec.get("interval") == "not_estimable" or "not_estimable" in reasons:
        if rec.get("se") is not None and not is_missing(rec.get("se")) and float(rec["se"]) == 0:
            return "intervalle non estimable : toutes les réponses sont identiques"
        return "intervalle non estimable (une seule unité de tirage ou pas de variance)"
    return "intervalle non calculé"


def _number(value: float, decimals: int, percent: bool) -> str:
    if percent:
        return f"{fmt_number(value * 100, decimals)}{NBSP}%"
    return fmt_number(value, decimals)


def value_and_interval(
    rec: Mapping[str, Any], *, percent: bool, base: int, scale_max: int | None = None
) -> tuple[str, str]:
    """The value and its interval (or the words saying there is none), as text."""
    decimals = display_decimals(rec, base, percent=percent)
    value = _number(float(rec["estimate"]), decimals, percent)
    if scale_max is not None and not percent:
        value = f"{value}/{scale_max}"
    words = interval_words(rec)
    if words:
        return value, words
    low = _number(float(rec["ci_low"]), decimals, percent)
    high = _number(float(rec["ci_high"]), decimals, percent)
    return value, f"[{low}{NBSP}; {high}]"


def n_text(n: Any, min_cell: int) -> str:
    """``n = 42``, or ``n < 5`` below the confidentiality threshold."""
    if is_missing(n):
        return f"n{NBSP}={NBSP}{MISSING}"
    if int(n) < min_cell:
        return f"n{NBSP}<{NBSP}{fmt_count(min_cell)}"
    return f"n{NBSP}={NBSP}{fmt_count(n)}"


def _range_attrs(rec: Mapping[str, Any], percent: bool) -> str:
    k = _scale(rec, percent)
    low = 0.0 if rec.get("quantity") == "share" else rec.get("range_low")
    high = 1.0 if rec.get("quantity") == "share" else rec.get("range_high")
    out = ""
    if not is_missing(low):
        out += f' data-range-low="{float(low) * k:g}"'
    if not is_missing(high):
        out += f' data-range-high="{float(high) * k:g}"'
    return out


def render_estimate(
    rec: Mapping[str, Any] | None,
    *,
    percent: bool = False,
    base: int = 1,
    scale_max: int | None = None,
    interval: bool = True,
) -> str:
    """One figure as HTML (see the module); an em dash when there is no estimate."""
    if not rec or rec.get("status") is None:
        return MISSING
    status = str(rec["status"])
    attrs = (
        f'class="et-est et-{html.escape(status)}" data-status="{html.escape(status)}"'
        f' data-estimator="{html.escape(str(rec.get("estimator") or "direct"))}"'
        f' data-interval="{html.escape(str(rec.get("interval") or ""))}"'
        + ("" if status == "suppressed" else f' data-n="{int(rec.get("n") or 0)}"')
        + _range_attrs(rec, percent)
    )
    if status == "suppressed":
        return (
            f'<span {attrs}><abbr class="mark-s" title="estimation non publiable">'
            f"{SUPPRESSED_MARK}</abbr></span>"
        )
    value, ci = value_and_interval(rec, percent=percent, base=base, scale_max=scale_max)
    parts = [html.escape(value)]
    if interval and ci:
        parts.append(f'<span class="ci">{html.escape(ci)}</span>')
    if status == "fragile":
        parts.append(
            f'<span class="mark-f" title="estimation fragile : à lire avec prudence">'
            f"{FRAGILE_MARK}</span>"
        )
    if rec.get("estimator") == "fay_herriot":
        parts.append(f'<span class="mark-m">{MODEL_LABEL}</span>')
    return f"<span {attrs}>{' '.join(parts)}</span>"


def figure_text(
    rec: Mapping[str, Any] | None,
    *,
    percent: bool = False,
    base: int = 1,
    scale_max: int | None = None,
    interval: bool = False,
) -> str:
    """A figure as plain text for charts and alt texts (« s » when suppressed)."""
    if not rec or rec.get("status") is None:
        return MISSING
    if rec["status"] == "suppressed":
        return f"{SUPPRESSED_MARK} (non publiable)"
    value, ci = value_and_interval(rec, percent=percent, base=base, scale_max=scale_max)
    text = f"{value} {ci}" if interval and ci else value
    if rec["status"] == "fragile":
        text += f" {FRAGILE_MARK}"
    if rec.get("estimator") == "fay_herriot":
        text += f" ({MODEL_LABEL})"
    return text


def legend(min_cell: int) -> str:
    """The legend of the marks, as HTML."""
    return (
        '<p class="et-legend">'
        f'<abbr class="mark-s">{SUPPRESSED_MARK}</abbr> : estimation non publiable (moins de '
        f"{fmt_count(min_cell)}{NBSP}répondants, ou précision insuffisante) ; "
        f'<span class="mark-f">{FRAGILE_MARK}</span> : estimation fragile, à lire avec '
        f'prudence ; <span class="mark-m">{MODEL_LABEL}</span> : valeur d\'un modèle qui '
        "complète les réponses du territoire par celles des territoires comparables (voir "
        "l'annexe) ; intervalles de confiance à 95 % entre crochets.</p>"
    )
