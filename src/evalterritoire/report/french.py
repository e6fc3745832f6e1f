"""French number and text formatting for reports (decimal comma, narrow no-break spaces, « »).

French typography: ``1 234,5`` (narrow no-break space U+202F between thousands, decimal comma),
``12,3 %`` (no-break space before %), ``« texte »`` (no-break spaces inside guillemets),
``7,1/10``. Missing values print as an em dash. Every function is pure.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MISSING",
    "NBSP",
    "NNBSP",
    "fmt_count",
    "fmt_interval",
    "fmt_n",
    "fmt_number",
    "fmt_percent",
    "fmt_score",
    "fmt_words",
    "guillemets",
    "is_missing",
]

#: No-break space (before « % » and inside guillemets).
NBSP = "\u00a0"
#: Narrow no-break space (thousands separator).
NNBSP = "\u202f"
#: What a missing value prints as.
MISSING = "—"


def is_missing(value: Any) -> bool:
    """True for None, NaN, pandas NA and non-numeric placeholders."""
    if value is None:
        return True
    try:
        return bool(math.isnan(float(value)))
    except (TypeError, ValueError):
        return True


def fmt_number(value: Any, decimals: int = 1) -> str:
    """Format a number the French way.

    Parameters
    ----------
    value : float
        The number (None/NaN print as an em dash).
    decimals : int
        Digits after the decimal comma.

    Returns
    -------
    str
        e.g. ``fmt_number(12345.678, 1) == "12\u202f345,7"``.

    Examples
    --------
    >>> fmt_number(-0.04, 1)
    '0,0'
    """
    if is_missing(value):
        return MISSING
    number = round(float(value), decimals)
    if number == 0:
        number = 0.0  # no "-0,0"
    text = f"{abs(number):,.{decimals}f}"
    text = text.replace(",", NNBSP).replace(".", ",")
    return ("−" if number < 0 else "") + text


def fmt_count(value: Any) -> str:
    """Format an integer count with French thousands separators (``1 250``)."""
    return fmt_number(value, 0)


def fmt_percent(share: Any, decimals: int = 0) -> str:
    """Format a share in [0, 1] as a French percentage (``0.463 → "46 %"``)."""
    if is_missing(share):
        return MISSING
    return f"{fmt_number(float(share) * 100, decimals)}{NBSP}%"


def fmt_score(value: Any, scale_max: int | None = None, decimals: int = 1) -> str:
    """Format a mean score, optionally out of a maximum (``7,1/10``)."""
    text = fmt_number(value, decimals)
    if scale_max is None or text == MISSING:
        return text
    return f"{text}/{scale_max}"


def fmt_interval(low: Any, high: Any, decimals: int = 1, *, percent: bool = False) -> str:
    """Format a confidence interval as ``[3,2 ; 3,9]`` (French list separator)."""
    if is_missing(low) or is_missing(high):
        return ""
    if percent:
        return f"[{fmt_percent(low, decimals)}{NBSP}; {fmt_percent(high, decimals)}]"
    return f"[{fmt_number(low, decimals)}{NBSP}; {fmt_number(high, decimals)}]"


def fmt_n(n: Any) -> str:
    """Format a sample size as ``n = 1 250``."""
    return f"n{NBSP}={NBSP}{fmt_count(n)}"


_WORDS = (
    "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
    "onze", "douze", "treize", "quatorze", "quinze", "seize",
)  # fmt: skip


def fmt_words(n: int, *, feminine: bool = False) -> str:
    """A small whole number in French words (« neuf », « une »), else in figures.

    Parameters
    ----------
    n : int
        The number.
    feminine : bool, default False
        « une » rather than « un » (« une dimension »).
    """
    if 0 <= n < len(_WORDS):
        return "une" if (n == 1 and feminine) else _WORDS[n]
    return fmt_count(n)


def guillemets(text: str) -> str:
    """Quote with French guillemets and no-break spaces: ``« text »``."""
    return f"«{NBSP}{text}{NBSP}»"
