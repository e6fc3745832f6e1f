"""Reading the entries of a codebook file: typed values with messages naming the key.

Helpers shared by :mod:`evalterritoire.codebook.load` (the variables and their sections) and
:mod:`evalterritoire.codebook.sections` (reference lists, column rules, routing and soft
bounds): each returns the entry typed as expected, or raises one
:class:`~evalterritoire.errors.CodebookError` naming the key and the problem, with any value
of the file shown bounded (:func:`~evalterritoire.codebook.safeyaml.short_repr`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from evalterritoire.codebook.safeyaml import short_repr as _show
from evalterritoire.errors import CodebookError

__all__: list[str] = []

#: Longest key path or problem a message carries (a file's value is never echoed whole).
_MAX_MESSAGE = 600


def _fail(where: str, problem: str) -> CodebookError:
    """The error naming the key and the problem (each bounded: no value is echoed whole)."""
    return CodebookError(f"codebook {_clip(where)}: {_clip(problem)}")


def _clip(text: str, limit: int = _MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _as_mapping(value: Any, where: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _describe(value: Any) -> str:
    """Type and value of a malformed entry, for messages (``list ['a', 'b']``)."""
    return f"{type(value).__name__} {_show(value)}"


def _as_str(value: Any, where: str, *, default: str | None = None) -> str | None:
    """A string entry (``None`` gives ``default``); anything else names the key and problem."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise _fail(where, f"expected a string, got {_describe(value)}")
    return value


def _as_label(value: Any, where: str, *, default: str = "") -> str:
    """A label: a string or a plain number written unquoted in YAML (``1: 1``)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(where, f"expected a text label, got {_describe(value)}")
    return str(value)


def _as_code(value: Any, where: str) -> int:
    """An integer code given as an integer or as integer text (``"3"``, ``"-1"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _fail(where, f"code {_show(value)} is not an integer")


def _as_str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | Mapping) or not isinstance(value, Iterable):
        raise _fail(where, f"expected a list of strings, got {_describe(value)}")
    out = tuple(value)
    for item in out:
        if not isinstance(item, str):
            raise _fail(where, f"expected a list of strings, found {_show(item)}")
    return out


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"expected a number, got {_show(value)}")
    return value
