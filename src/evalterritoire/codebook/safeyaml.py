"""Bounded YAML reading for every YAML file the package loads (codebook, grid, report spec).

A YAML file is data a user may receive from someone else, so reading it is bounded:

* the file size (:data:`MAX_YAML_BYTES` unless the caller gives its own limit);
* the nesting depth (:data:`MAX_DEPTH`): a deeply nested file would otherwise exhaust Python's
  recursion in the YAML composer (an « internal error »);
* the number of nodes *once aliases are expanded* (:data:`MAX_NODES`): a few kilobytes of
  anchors and aliases (« billion laughs ») describe billions of values, which any later walk
  (a message, a hash, a JSON dump) would expand. A caller may also refuse aliases outright.

Every refusal is one :class:`~evalterritoire.errors.EvalTerritoireError` (of the caller's class)
naming the file and the limit, never echoing a value of the file; :func:`short_repr` gives
the bounded representation the loaders use when a message must show a value.
"""

from __future__ import annotations

import hashlib
import reprlib
from pathlib import Path
from typing import Any

import yaml

from evalterritoire.errors import EvalTerritoireError

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_YAML_BYTES", "load_yaml_file", "short_repr"]

#: Largest YAML file read (bytes): a codebook of thousands of items is a few hundred kB.
MAX_YAML_BYTES = 5_000_000
#: Deepest nesting of mappings and sequences (a codebook needs 6).
MAX_DEPTH = 64
#: Most nodes of a document, every alias counted as the nodes it stands for (the shipped
#: codebook has about 4,500).
MAX_NODES = 500_000

_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 6
_REPR.maxlevel = 3


def short_repr(value: Any) -> str:
    """``repr`` of a value read from a file, bounded in length and depth (for messages).

    Examples
    --------
    >>> short_repr(["a", "b"])
    "['a', 'b']"
    >>> len(short_repr("x" * 10_000)) < 100
    True
    """
    return _REPR.repr(value)


class _Refused(yaml.YAMLError):
    """A limit of the bounded loader was reached (the message says which)."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """Safe loader counting depth and expanded nodes while it composes the document."""

    allow_aliases = True

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._size_of: dict[int, int] = {}

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if not self.allow_aliases:
                raise _Refused("aliases are not allowed", event.start_mark)
            target = self.anchors.get(event.anchor)
            self._count(self._size_of.get(id(target), 1), event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(
                f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark
            )
        start = self._nodes
        self._count(1, self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._size_of[id(node)] = self._nodes - start
        return node

    def _count(self, n: int, mark: Any) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise _Refused(
                f"more than {MAX_NODES:,} values once its aliases are expanded "
                "(anchors and aliases that multiply themselves?)",
                mark,
            )


class _NoAliasLoader(_BoundedLoader):
    allow_aliases = False


def load_yaml_file(
    path: str | Path,
    what: str,
    error: type[EvalTerritoireError],
    *,
    max_bytes: int = MAX_YAML_BYTES,
    allow_aliases: bool = True,
) -> tuple[Any, str]:
    """Parse a YAML file within the limits of this module.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file is, to start messages (``"codebook"``, ``"evaluation grid"``).
    error : type of EvalTerritoireError
        Class of the error raised for every problem.
    max_bytes : int, default :data:`MAX_YAML_BYTES`
        Largest accepted file.
    allow_aliases : bool, default True
        Accept anchors and aliases (each alias counted as the nodes it stands for).

    Returns
    -------
    (object, str)
        The parsed content and the SHA-256 of the file's bytes.

    Raises
    ------
    EvalTerritoireError
        Of class ``error``: unreadable, too large, not UTF-8, invalid YAML, too deep, too many
        nodes once aliases are expanded, or an alias where none is allowed (the message names
        the file, the line and the limit, never a value).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{what} {path}: {size:,} bytes, more than the {max_bytes:,} allowed")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{what} {path}: cannot be read ({exc.strerror})") from None
    loader_class = _BoundedLoader if allow_aliases else _NoAliasLoader
    try:
        text = data.decode("utf-8")
        loader = loader_class(text)
        try:
            raw = loader.get_single_data()
        finally:
            loader.dispose()
    except UnicodeDecodeError:
        raise error(f"{what} {path}: not UTF-8 text") from None
    except RecursionError:
        raise error(f"{what} {path}: invalid YAML (nested too deeply)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        detail = f" ({str(problem)[:200]})" if problem else ""
        raise error(f"{what} {path}: invalid YAML{where}{detail}") from None
    return raw, hashlib.sha256(data).hexdigest()
